"""Cron on one real file, time injected: Chancy's own cron tests, runs taken on time and once, missed runs, the
unique-key rule, daylight-saving days stepped minute by minute, racing workers, bad rows, migrations."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import apsw
import pytest

from chancy_lite import Chancy, Job, QueuedJob, Reference, job
from chancy_lite.errors import InvalidCronError, MigrationsNeededError
from chancy_lite.plugins.cron import Cron, store_for
from chancy_lite.plugins.cron.store import DueRun
from chancy_lite.testing import Clock, drain
from chancy_lite.utils import from_micros, to_micros

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
START = dt.datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def app(db_path: str, clock: Clock) -> Iterator[Chancy]:
    with Chancy(db_path, clock=clock, plugins=[Cron(poll_interval=1)], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        yield chancy


@pytest.fixture
def raw(db_path: str, app: Chancy) -> Iterator[apsw.Connection]:
    conn = apsw.Connection(db_path)
    conn.set_busy_timeout(10_000)
    yield conn
    conn.close()


def noop(key: str, **fields: object) -> Job:
    return Job(func="tests.jobs.noop", unique_key=key, **fields)  # type: ignore[arg-type]


@job(unique_key="decorated")
def decorated() -> None:
    pass


# ---------------------------------------------------- Chancy's tests/plugins/test_cron.py


def test_schedule_job(app: Chancy) -> None:
    Cron.sync_schedule(app, "*/1 * * * *", noop("k"))
    schedules = Cron.sync_get_schedules(app, unique_keys=["k"])
    assert list(schedules) == ["k"]
    entry = schedules["k"]
    assert set(entry) == {"unique_key", "job", "cron", "timezone", "last_run", "next_run"}
    assert entry["unique_key"] == "k" and entry["cron"] == "*/1 * * * *" and entry["timezone"] == "Etc/UTC"
    assert entry["job"] == noop("k", scheduled_at=entry["job"].scheduled_at)
    assert entry["last_run"] is None and entry["next_run"] == dt.datetime(2030, 1, 1, 12, 1, tzinfo=UTC)


def test_unschedule_job(app: Chancy) -> None:
    Cron.sync_schedule(app, "*/1 * * * *", noop("k"))
    assert Cron.sync_unschedule(app, "k", "never-there") == 1
    assert Cron.sync_get_schedules(app) == {}
    assert Cron.sync_unschedule(app, "k") == 0


def test_update_existing_job_schedule(app: Chancy, clock: Clock) -> None:
    Cron.sync_schedule(app, "*/1 * * * *", noop("k"))
    clock.advance(minutes=1)
    Cron.sync_fire_due(app)
    Cron.sync_schedule(app, "0 3 * * *", noop("k", queue="other"), timezone="Europe/Paris")
    [entry] = Cron.sync_get_schedules(app).values()
    assert (entry["cron"], entry["timezone"], entry["job"].queue) == ("0 3 * * *", "Europe/Paris", "other")
    assert entry["next_run"] == dt.datetime(2030, 1, 2, 2, 0, tzinfo=UTC)  # 03:00 in Paris (UTC+1)
    assert entry["last_run"] == clock()  # kept, as Chancy


def test_fail_scheduling_without_unique_key(app: Chancy) -> None:
    with pytest.raises(ValueError, match="requires that each job has a unique_key"):
        Cron.sync_schedule(app, "*/1 * * * *", noop("a"), Job(func="tests.jobs.noop"))
    assert Cron.sync_get_schedules(app) == {}  # checked before anything is written


def test_get_schedules_all_and_filtered(app: Chancy) -> None:
    Cron.sync_schedule(app, "*/1 * * * *", noop("1"), noop("2"), noop("3"), decorated)
    assert list(Cron.sync_get_schedules(app)) == ["1", "2", "3", "decorated"]
    assert list(Cron.sync_get_schedules(app, unique_keys=["1", "3", "missing"])) == ["1", "3"]


def test_the_async_api(app: Chancy, clock: Clock) -> None:
    async def steps() -> None:
        await Cron.schedule(app, "*/5 * * * *", noop("k"), timezone=ZoneInfo("Asia/Tokyo"))
        assert (await Cron.get_schedules(app, unique_keys=["k"]))["k"]["timezone"] == "Asia/Tokyo"
        clock.advance(minutes=5)
        [fired] = await Cron.fire_due(app)
        ref = await Cron.run_now(app, "k")
        assert ref == Reference(fired.job_id)  # the pending job holds the key
        assert await Cron.unschedule(app, "k") == 1

    asyncio.run(steps())


# ---------------------------------------------------------------- input


@pytest.mark.parametrize(("cron", "zone", "message"), [
    ("every minute", "Etc/UTC", "croniter accepts"),
    ("61 * * * *", "Etc/UTC", "croniter accepts"),
    ("0 0 30 2 *", "Etc/UTC", "has no run"),
    ("* * * * *", "Europe/Atlantis", "unknown time zone 'Europe/Atlantis'"),
])
def test_an_invalid_expression_or_zone_is_refused_and_nothing_is_stored(
    app: Chancy, cron: str, zone: str, message: str
) -> None:
    with pytest.raises(InvalidCronError, match=message) as caught:
        Cron.sync_schedule(app, cron, noop("k"), timezone=zone)
    assert isinstance(caught.value, ValueError)
    assert Cron.sync_get_schedules(app) == {}


def test_zone_forms_are_stored_by_name(app: Chancy) -> None:
    Cron.sync_schedule(app, "* * * * *", noop("default"))
    Cron.sync_schedule(app, "* * * * *", noop("object"), timezone=NY)
    Cron.sync_schedule(app, "* * * * *", noop("name"), timezone="America/New_York")
    Cron.sync_schedule(app, "* * * * *", noop("utc"), timezone=UTC)
    zones = {k: v["timezone"] for k, v in Cron.sync_get_schedules(app).items()}
    assert zones == {"default": "Etc/UTC", "object": "America/New_York", "name": "America/New_York",
                     "utc": "Etc/UTC"}


def test_kwargs_that_are_not_json_are_refused_at_schedule_time(app: Chancy) -> None:
    with pytest.raises(TypeError, match="JSON"):
        Cron.sync_schedule(app, "* * * * *", noop("k", kwargs={"when": dt.date(2030, 1, 1)}))


def test_a_file_without_the_cron_table_says_how_to_create_it(db_path: str) -> None:
    with Chancy(db_path, no_default_plugins=True) as plain:  # migrated by an app without Cron
        plain.sync_migrate()
        with pytest.raises(MigrationsNeededError, match=r"no chancy_cron table.*plugins=\[Cron\(\)\]"):
            Cron.sync_schedule(plain, "* * * * *", noop("k"))
        with pytest.raises(MigrationsNeededError, match="no chancy_cron table"):
            Cron.sync_get_schedules(plain)
    with Chancy(db_path, plugins=[Cron()], no_default_plugins=True) as with_cron:
        assert with_cron.sync_is_up_to_date() is False
        assert with_cron.sync_migrate() == ["cron 0 -> 1"]
        Cron.sync_schedule(with_cron, "* * * * *", noop("k"))


# ------------------------------------------------------------------ runs


def test_a_run_is_taken_on_time_twice(app: Chancy, clock: Clock) -> None:
    Cron.sync_schedule(app, "*/5 * * * *", noop("k"))
    first = dt.datetime(2030, 1, 1, 12, 5, tzinfo=UTC)
    clock.set(first - dt.timedelta(microseconds=1))
    assert Cron.sync_fire_due(app) == []  # not a microsecond early
    for slot in (first, first + dt.timedelta(minutes=5)):
        clock.set(slot)
        [fired] = Cron.sync_fire_due(app)
        assert (fired.unique_key, from_micros(fired.due), fired.pushed) == ("k", slot, True)
        pushed = app.sync_get_job(fired.job_id)
        assert pushed is not None and pushed.scheduled_at == slot and pushed.created_at == slot
        assert pushed.unique_key == "k" and pushed.func == "tests.jobs.noop"
        [entry] = Cron.sync_get_schedules(app).values()
        assert entry["last_run"] == slot and entry["next_run"] == slot + dt.timedelta(minutes=5)
        assert Cron.sync_fire_due(app) == []  # taken: not again
        [done] = drain(app)
        assert done.state is QueuedJob.State.SUCCEEDED


def test_runs_missed_while_no_worker_ran_fire_once(app: Chancy, clock: Clock) -> None:
    Cron.sync_schedule(app, "*/5 * * * *", noop("k"))
    clock.advance(hours=3, minutes=1)  # 36 runs were missed
    [fired] = Cron.sync_fire_due(app)
    assert from_micros(fired.due) == dt.datetime(2030, 1, 1, 12, 5, tzinfo=UTC)  # the first missed run
    [entry] = Cron.sync_get_schedules(app).values()
    assert entry["next_run"] == dt.datetime(2030, 1, 1, 15, 5, tzinfo=UTC)  # the first after now
    assert Cron.sync_fire_due(app) == []
    assert len(app.sync_list_jobs()) == 1


def test_a_run_never_overlaps_an_unfinished_job_of_its_schedule(app: Chancy, clock: Clock) -> None:
    Cron.sync_schedule(app, "* * * * *", noop("k"))
    clock.advance(minutes=1)
    [first] = Cron.sync_fire_due(app)
    for _ in range(3):  # the job waits (no worker): later runs push nothing, and are used up
        clock.advance(minutes=1)
        [again] = Cron.sync_fire_due(app)
        assert (again.pushed, again.job_id) == (False, first.job_id)
    assert [str(j.id) for j in app.sync_list_jobs()] == [first.job_id]
    drain(app)
    clock.advance(minutes=1)
    [fresh] = Cron.sync_fire_due(app)  # finished: the next run pushes a new job
    assert fresh.pushed and fresh.job_id != first.job_id


def test_run_now_pushes_at_once_and_leaves_the_schedule_alone(app: Chancy, clock: Clock) -> None:
    Cron.sync_schedule(app, "0 3 * * *", noop("k", queue="nightly"))
    before = Cron.sync_get_schedules(app)
    ref = Cron.sync_run_now(app, "k")
    pushed = app.sync_get_job(ref)
    assert pushed is not None and pushed.scheduled_at == clock() and pushed.queue == "nightly"
    assert Cron.sync_get_schedules(app) == before
    assert Cron.sync_run_now(app, "k") == ref  # its job has not run yet: nothing new
    with pytest.raises(KeyError, match="no cron schedule has the key 'other'"):
        Cron.sync_run_now(app, "other")


def test_a_bad_stored_row_is_skipped_stays_due_and_the_others_run(
    app: Chancy, clock: Clock, raw: apsw.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    Cron.sync_schedule(app, "* * * * *", noop("bad-cron"), noop("bad-zone"), noop("bad-job"), noop("fine"))
    with raw:
        raw.execute("UPDATE chancy_cron SET cron = 'not cron' WHERE unique_key = 'bad-cron'")
        raw.execute("UPDATE chancy_cron SET timezone = 'Nowhere/Land' WHERE unique_key = 'bad-zone'")
        raw.execute("""UPDATE chancy_cron SET job = '{"f": "no-dots", "u": "bad-job"}' WHERE unique_key = 'bad-job'""")
    clock.advance(minutes=1)
    fired = Cron.sync_fire_due(app)
    assert [f.unique_key for f in fired] == ["fine"]
    with pytest.raises(ValueError, match=r"stored job of cron schedule 'bad-job' cannot be read.*cron remove bad-job"):
        Cron.sync_get_schedules(app)
    schedules = Cron.sync_get_schedules(app, unique_keys=["bad-cron", "bad-zone"])
    assert [row[0] for row in raw.execute("SELECT next_run FROM chancy_cron WHERE unique_key = 'bad-job'")] == [
        to_micros(START.replace(second=0) + dt.timedelta(minutes=1))]
    due = to_micros(START.replace(second=0) + dt.timedelta(minutes=1))
    for key in ("bad-cron", "bad-zone"):
        assert to_micros(schedules[key]["next_run"]) == due and schedules[key]["last_run"] is None
    assert [j.unique_key for j in app.sync_list_jobs()] == ["fine"]  # the bad job's transaction rolled back
    skipped = sorted(r.getMessage().split("'")[1] for r in caplog.records if "skipped" in r.getMessage())
    assert skipped == ["bad-cron", "bad-job", "bad-zone"]


# ------------------------------------------------------------ daylight saving


def fired_local_times(app: Chancy, clock: Clock, start: dt.datetime, hours: int) -> dict[str, list[str]]:
    """Step the clock minute by minute for ``hours`` (real hours) from ``start``, as a worker would, and
    list each schedule's runs by their local time."""
    seen: dict[str, list[str]] = {}
    clock.set(start)
    for _ in range(hours * 60):
        clock.advance(minutes=1)
        for fired in Cron.sync_fire_due(app):
            assert from_micros(fired.due) == clock()  # taken at its own minute, never late

            seen.setdefault(fired.unique_key, []).append(from_micros(fired.due).astimezone(NY).strftime("%H:%M %Z"))
        drain(app)
    return seen


def test_new_york_spring_forward_as_the_026_table_says(app: Chancy, clock: Clock) -> None:
    clock.set(dt.datetime(2025, 3, 9, 0, 0, tzinfo=NY))
    Cron.sync_schedule(app, "30 2 * * *", noop("fixed"), timezone=NY)
    Cron.sync_schedule(app, "*/30 * * * *", noop("wildcard"), timezone=NY)
    Cron.sync_schedule(app, "*/30 2 * * *", noop("wildcard-in-gap"), timezone=NY)
    seen = fired_local_times(app, clock, dt.datetime(2025, 3, 9, 0, 0, tzinfo=NY), 5)
    assert seen["fixed"] == ["03:00 EDT"]  # once, at the end of the gap
    assert seen["wildcard"] == ["00:30 EST", "01:00 EST", "01:30 EST", "03:00 EDT", "03:30 EDT", "04:00 EDT",
                                "04:30 EDT", "05:00 EDT", "05:30 EDT", "06:00 EDT"]  # only times that exist
    assert "wildcard-in-gap" not in seen  # a wildcard limited to the gap does not run that day


def test_new_york_fall_back_as_the_026_table_says(app: Chancy, clock: Clock) -> None:
    clock.set(dt.datetime(2025, 11, 2, 0, 0, tzinfo=NY))
    Cron.sync_schedule(app, "30 1 * * *", noop("fixed"), timezone=NY)
    Cron.sync_schedule(app, "*/30 * * * *", noop("wildcard"), timezone=NY)
    Cron.sync_schedule(app, "0 * * * *", noop("hourly"), timezone=NY)
    seen = fired_local_times(app, clock, dt.datetime(2025, 11, 2, 0, 0, tzinfo=NY), 4)
    assert seen["fixed"] == ["01:30 EDT"]  # once, in the first pass
    assert seen["wildcard"] == ["00:30 EDT", "01:00 EDT", "01:30 EDT", "01:00 EST", "01:30 EST", "02:00 EST",
                                "02:30 EST", "03:00 EST"]  # both passes
    assert seen["hourly"] == ["01:00 EDT", "01:00 EST", "02:00 EST", "03:00 EST"]


# ------------------------------------------------------------------- racing


A_ID, B_ID = str(uuid.uuid4()), str(uuid.uuid4())


def test_two_apps_taking_the_same_run_push_it_once(app: Chancy, db_path: str, clock: Clock) -> None:
    Cron.sync_schedule(app, "* * * * *", noop("k"))
    clock.advance(minutes=1)
    with Chancy(db_path, clock=clock, plugins=[Cron()], no_default_plugins=True) as other:
        mine, theirs = store_for(app), store_for(other)
        [run] = app.sync_run_store(mine.due_runs, now=app.now(), limit=10)
        [same] = other.sync_run_store(theirs.due_runs, now=app.now(), limit=10)
        assert run == same == DueRun("k", "* * * * *", "Etc/UTC", to_micros(clock().replace(second=0)))
        following = app.now() + 60_000_000
        first = other.sync_run_store(theirs.take_run, same, next_run=following, now=app.now(), new_id=A_ID)
        second = app.sync_run_store(mine.take_run, run, next_run=following, now=app.now(), new_id=B_ID)
    assert first is not None and first.pushed and second is None
    assert [str(j.id) for j in app.sync_list_jobs()] == [A_ID]


def test_racing_threads_on_their_own_connections_take_each_run_once(db_path: str, clock: Clock) -> None:
    keys = [f"k{i:02}" for i in range(40)]
    apps = [Chancy(db_path, clock=clock, plugins=[Cron()], no_default_plugins=True) for _ in range(4)]
    try:
        apps[0].sync_migrate()
        Cron.sync_schedule(apps[0], "* * * * *", *(noop(k) for k in keys))
        taken: list[tuple[str, int, bool]] = []
        for _ in range(5):
            clock.advance(minutes=1)
            barrier = threading.Barrier(len(apps))
            results: list[list[tuple[str, int, bool]]] = [[] for _ in apps]

            def take(i: int, results: list[list[tuple[str, int, bool]]] = results,
                     barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                results[i] = [(f.unique_key, f.due, f.pushed) for f in Cron.sync_fire_due(apps[i])]

            threads = [threading.Thread(target=take, args=(i,)) for i in range(len(apps))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            round_ = [item for part in results for item in part]
            assert sorted(key for key, _, _ in round_) == keys  # every run taken, by exactly one thread
            assert all(pushed for _, _, pushed in round_)
            taken.extend(round_)
            drain(apps[0])
        assert len(taken) == len(set(taken)) == 5 * len(keys)
        assert len(apps[0].sync_list_jobs(limit=1000)) == 5 * len(keys)
    finally:
        for chancy in apps:
            chancy.close()


# ---------------------------------------------------------------- schema


def test_migrations_create_and_drop_the_table_and_its_index(app: Chancy, raw: apsw.Connection) -> None:
    names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE name LIKE 'chancy_cron%'")}
    assert names == {"chancy_cron", "chancy_cron_next_run"}
    columns = [r[1] for r in raw.execute("PRAGMA table_info(chancy_cron)")]
    assert columns == ["unique_key", "job", "cron", "timezone", "last_run", "next_run"]
    plan = app.sync_run_store(lambda conn: conn.execute(
        "EXPLAIN QUERY PLAN " + store_for(app).q.DUE_SCHEDULES, {"now": 0, "limit": 1}).fetchall())
    assert any("chancy_cron_next_run" in row[-1] for row in plan)
    app.sync_migrate(to_version=0)
    assert raw.execute("SELECT name FROM sqlite_master WHERE name LIKE 'chancy%'").fetchall() == []


def test_a_custom_prefix_has_its_own_schedules(db_path: str, clock: Clock) -> None:
    with Chancy(db_path, prefix="other_", clock=clock, plugins=[Cron()], no_default_plugins=True) as other, \
            Chancy(db_path, clock=clock, plugins=[Cron()], no_default_plugins=True) as default:
        other.sync_migrate()
        default.sync_migrate()
        Cron.sync_schedule(other, "* * * * *", noop("mine"))
        assert Cron.sync_get_schedules(default) == {}
        clock.advance(minutes=1)
        assert Cron.sync_fire_due(default) == []
        [fired] = Cron.sync_fire_due(other)
        assert other.sync_get_job(fired.job_id) is not None and default.sync_get_job(fired.job_id) is None

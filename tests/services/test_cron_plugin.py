"""The Cron plugin's loop: a pass says how long to sleep (until the earliest next run, at most poll_interval), a
running worker takes runs on time, a schedule changed in this process wakes it at once, one changed by another
process is seen within poll_interval, and a bad row does not make it spin."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import subprocess
import sys
import time
from collections.abc import Iterator

import apsw
import pytest

from chancy_lite import Chancy, Job, Queue
from chancy_lite.hub import Event
from chancy_lite.plugins.cron import Cron
from chancy_lite.testing import Clock
from chancy_lite.utils import UTC
from chancy_lite.worker import Worker
from tests.worker_support import REPO, run_worker, until

START = dt.datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def noop(key: str) -> Job:
    return Job(func="tests.jobs.noop", unique_key=key)


@pytest.fixture
def clocked_cron(db_path: str, clock: Clock) -> Iterator[tuple[Chancy, Cron]]:
    plugin = Cron(poll_interval=60)
    with Chancy(db_path, clock=clock, plugins=[plugin], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        yield chancy, plugin


def test_a_pass_sleeps_until_the_earliest_next_run_at_most_poll_interval(
    clocked_cron: tuple[Chancy, Cron], clock: Clock
) -> None:
    app, plugin = clocked_cron
    worker = Worker(app, register_signal_handlers=False)
    fired: list[Event] = []
    worker.hub.on("cron.fired", fired.append)

    async def steps() -> list[float]:
        delays = [await plugin.tick(worker, app.now())]  # nothing scheduled: poll_interval
        Cron.sync_schedule(app, "0 * * * *", noop("hourly"))
        delays.append(await plugin.tick(worker, app.now()))  # an hour away: still poll_interval
        Cron.sync_schedule(app, "*/5 * * * * */10", noop("every-10-s"))  # a sixth field is seconds
        delays.append(await plugin.tick(worker, app.now()))
        clock.advance(seconds=7.5)
        delays.append(await plugin.tick(worker, app.now()))
        clock.advance(seconds=2.5)
        delays.append(await plugin.tick(worker, app.now()))  # takes the run due now, then 10 s to the next
        return delays

    assert asyncio.run(steps()) == [60.0, 60.0, 10.0, 2.5, 10.0]
    assert [(e.body["unique_key"], e.body["scheduled_for"], e.body["pushed"]) for e in fired] == [
        ("every-10-s", START + dt.timedelta(seconds=10), True)]


def test_a_full_batch_means_no_sleep(clocked_cron: tuple[Chancy, Cron], clock: Clock,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    app, plugin = clocked_cron
    monkeypatch.setattr("chancy_lite.plugins.cron.FIRE_BATCH", 2)
    Cron.sync_schedule(app, "* * * * *", *(noop(f"k{i}") for i in range(5)))
    clock.advance(minutes=1)
    worker = Worker(app, register_signal_handlers=False)

    async def steps() -> list[float]:
        return [await plugin.tick(worker, app.now()) for _ in range(4)]

    assert asyncio.run(steps()) == [0.0, 0.0, 60.0, 60.0]  # 2, 2, then the last one and the next run is 1 min away
    assert len(app.sync_list_jobs()) == 5


# ---------------------------------------------------- a running worker, real time


@pytest.fixture
def live(db_path: str) -> Iterator[Chancy]:
    """A migrated app on the real clock whose default queue is paused (these tests look at pushes, not runs)."""
    with Chancy(db_path, plugins=[Cron(poll_interval=3600)], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", state=Queue.State.PAUSED))
        yield chancy


def fired_events(worker: Worker) -> list[tuple[float, dict[str, object]]]:
    """(wall-clock time, body) of each ``cron.fired`` the worker's hub emits from now on."""
    seen: list[tuple[float, dict[str, object]]] = []
    worker.hub.on("cron.fired", lambda event: seen.append((time.time(), event.body)))
    return seen


def test_a_worker_takes_each_run_on_time_without_polling(live: Chancy) -> None:
    Cron.sync_schedule(live, "* * * * * */2", noop("every-2-s"))  # every 2 seconds; poll_interval is an hour

    async def body(worker: Worker) -> list[tuple[float, dict[str, object]]]:
        seen = fired_events(worker)
        await until(lambda: len(seen) >= 2, timeout=15)
        return seen

    seen = run_worker(live, body)
    late = [at - body["scheduled_for"].timestamp() for at, body in seen[:2]]  # type: ignore[union-attr]
    assert all(0 <= x < 1.0 for x in late), late
    assert [b["pushed"] for _, b in seen[:2]] == [True, False]  # the first job waits (paused queue): no overlap


def test_a_schedule_changed_in_this_process_wakes_the_worker(live: Chancy) -> None:
    async def body(worker: Worker) -> float:
        seen = fired_events(worker)
        await asyncio.sleep(0.3)  # the plugin has made its first pass and sleeps for its hour
        changed = time.time()
        await Cron.schedule(live, "* * * * * *", noop("every-second"))
        await until(lambda: seen, timeout=10)
        first = seen[0][0] - changed
        # The sync twin, from another thread, wakes it too (here: to stop taking runs at once).
        await asyncio.to_thread(Cron.sync_unschedule, live, "every-second")
        await asyncio.sleep(0.1)
        count = len(seen)
        await asyncio.to_thread(Cron.sync_schedule, live, "* * * * * *", noop("again"))
        await until(lambda: any(b["unique_key"] == "again" for _, b in seen), timeout=10)
        assert all(b["unique_key"] == "again" for _, b in seen[count:])
        return first

    first = run_worker(live, body)
    assert first < 2.0, first  # the next whole second, not poll_interval (an hour)


def test_a_schedule_changed_by_another_process_is_seen_within_poll_interval(db_path: str) -> None:
    with Chancy(db_path, plugins=[Cron(poll_interval=1)], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", state=Queue.State.PAUSED))
        script = (
            "import sys\nfrom chancy_lite import Chancy, Job\nfrom chancy_lite.plugins.cron import Cron\n"
            "with Chancy(sys.argv[1], plugins=[Cron()], no_default_plugins=True) as app:\n"
            "    Cron.sync_schedule(app, '* * * * * *', Job(func='tests.jobs.noop', unique_key='elsewhere'))\n"
        )

        async def body(worker: Worker) -> float:
            seen = fired_events(worker)
            await asyncio.sleep(0.3)
            changed = time.time()
            await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script, db_path], cwd=REPO, check=True,
                                    timeout=60)
            await until(lambda: seen, timeout=10)
            return seen[0][0] - changed

        delay = run_worker(chancy, body)
    assert delay < 1 + 2.0 + 2.0, delay  # poll_interval, the next whole second, and the subprocess's start


def test_a_bad_row_is_retried_every_poll_interval_not_in_a_loop(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chancy_lite.plugins.cron")
    with Chancy(db_path, plugins=[Cron(poll_interval=0.25)], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", state=Queue.State.PAUSED))
        Cron.sync_schedule(chancy, "* * * * * *", noop("bad"), noop("fine"))
        raw = apsw.Connection(db_path)
        with raw:
            raw.execute("UPDATE chancy_cron SET cron = 'broken' WHERE unique_key = 'bad'")
        raw.close()

        async def body(worker: Worker) -> int:
            seen = fired_events(worker)
            await asyncio.sleep(1.6)
            return len(seen)

        fine_runs = run_worker(chancy, body)
    skips = [r for r in caplog.records if "'bad' was skipped" in r.getMessage()]
    assert 2 <= len(skips) <= 10, len(skips)  # about every 0.25 s, not thousands of times
    assert fine_runs >= 1

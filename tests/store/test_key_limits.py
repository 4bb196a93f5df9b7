"""Per-key limits in the claim, with time passed in and no worker: a key's concurrency cap and window budget hold
exactly, jobs they hold back hold up nobody, a worker left with only held-back jobs knows when to look again, and
the end of a capped job wakes its queue."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator

import apsw
import pytest

from chancy_lite import Chancy, Job, QueuedJob, wake
from chancy_lite.child import ChildConfig, Runner
from chancy_lite.outcome import next_outcome
from chancy_lite.sql import CORE_MIGRATIONS
from tests.store.test_migrations import schema

State = QueuedJob.State
SECOND = 1_000_000
T0 = 1_900_000_000 * SECOND  # a whole multiple of every window used here
PAST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def noop(key: str | None = None, *, cap: int | None = None, rate: tuple[int, float] | None = None,
         queue: str = "default", priority: int = 0, max_attempts: int = 1) -> Job:
    """A job due long before T0, with a key's limits if given."""
    job = Job(func="tests.jobs.noop", queue=queue, priority=priority, max_attempts=max_attempts, scheduled_at=PAST)
    if cap is not None:
        job = job.with_concurrency(cap, key=key)
    if rate is not None:
        job = job.with_rate_limit(*rate, key=key)
    return job


def push(chancy: Chancy, *jobs: Job) -> list[str]:
    return [ref.identifier for batch in chancy.sync_push_many(jobs) for ref in batch]


def claim(chancy: Chancy, n: int, now: int, queue: str = "default", pid: int = 1) -> list[QueuedJob]:
    with chancy.transaction() as conn:
        return chancy.store.claim_jobs(conn, queue, n, now=now, worker_id="w", pid=pid, pid_start=None)


def finish(chancy: Chancy, job: QueuedJob, now: int, error: Exception | None = None, pid: int = 1) -> None:
    with chancy.transaction() as conn:
        assert chancy.store.complete_job(conn, next_outcome(job, error, now=now), worker_id="w", pid=pid,
                                         queue=job.queue)


def keys(jobs: list[QueuedJob]) -> list[str | None]:
    return [job.limit_key for job in jobs]


# ------------------------------------------------------------------ the cap


def test_a_cap_holds_within_one_batch_and_across_claims(chancy: Chancy) -> None:
    push(chancy, *[noop("k", cap=2)] * 5, *[noop()] * 3)
    first = claim(chancy, 10, T0)
    assert sorted(keys(first), key=str) == [None, None, None, "k", "k"]  # one batch, yet only two of k
    assert claim(chancy, 10, T0) == []  # two of k run: the other three wait
    finish(chancy, next(job for job in first if job.limit_key), T0)
    [again] = claim(chancy, 10, T0 + 1)
    assert again.limit_key == "k"
    assert claim(chancy, 10, T0 + 2) == []


def test_a_cap_counts_the_key_in_every_queue(chancy: Chancy) -> None:
    push(chancy, noop("k", cap=1, queue="a"), noop("k", cap=1, queue="b"), noop(queue="b"))
    [a] = claim(chancy, 5, T0, queue="a")
    [b] = claim(chancy, 5, T0, queue="b")
    assert (a.limit_key, b.limit_key) == ("k", None)
    finish(chancy, a, T0)
    assert keys(claim(chancy, 5, T0, queue="b")) == ["k"]


def test_retried_released_and_cancelled_jobs_leave_their_slot(chancy: Chancy) -> None:
    push(chancy, *[noop("k", cap=1, max_attempts=2)] * 3)
    [job] = claim(chancy, 1, T0)
    finish(chancy, job, T0, error=ValueError("again"))  # retrying: no longer running, its slot is free
    [second] = claim(chancy, 1, T0)
    assert second.limit_key == "k"
    chancy.sync_cancel_job(second.id)
    [third] = claim(chancy, 1, T0)
    with chancy.transaction() as conn:  # given back unstarted (a batch's rest, or a stopping worker)
        release = next_outcome(third, None, stopping=True, now=T0)
        assert chancy.store.complete_job(conn, release, worker_id="w", pid=1, queue="default")
    assert claim(chancy, 1, T0) != []


# --------------------------------------------------------------- the budget


def test_a_window_budget_holds_and_the_next_window_starts_afresh(chancy: Chancy) -> None:
    push(chancy, *[noop("api", rate=(2, 10))] * 5)
    assert len(claim(chancy, 1, T0 + 1 * SECOND)) == 1
    assert len(claim(chancy, 5, T0 + 2 * SECOND)) == 1  # one left in this window, though five were asked for
    assert claim(chancy, 5, T0 + 9 * SECOND) == []
    with chancy.connection() as conn:
        assert chancy.store.key_budget(conn, "api", now=T0 + 9 * SECOND) == (2, T0 + 10 * SECOND)
        assert chancy.store.key_budget(conn, "api", now=T0 + 10 * SECOND) is None  # that window is over
    assert len(claim(chancy, 5, T0 + 10 * SECOND)) == 2
    assert len(claim(chancy, 5, T0 + 20 * SECOND)) == 1


def test_a_cap_and_a_budget_on_one_key_both_hold(chancy: Chancy) -> None:
    push(chancy, *[noop("k", cap=1).with_rate_limit(2, 10)] * 4)
    [first] = claim(chancy, 5, T0)
    assert claim(chancy, 5, T0) == []  # the cap
    finish(chancy, first, T0)
    [second] = claim(chancy, 5, T0 + 1)
    finish(chancy, second, T0 + 2)
    assert claim(chancy, 5, T0 + 3) == []  # the budget: two claims in this window already
    assert len(claim(chancy, 5, T0 + 10 * SECOND)) == 1


def test_ended_windows_are_dropped_as_keys_spend(chancy: Chancy) -> None:
    push(chancy, *[noop(f"k{i}", rate=(1, 1)) for i in range(40)])
    assert len(claim(chancy, 64, T0)) == 40
    push(chancy, noop("late", rate=(1, 1)))
    claim(chancy, 1, T0 + 5 * SECOND)
    with chancy.connection() as conn:
        rows = conn.execute("SELECT count(*) FROM chancy_key_rate_limits").fetchall()[0][0]
    assert rows <= 40 + 1 - 16  # each spend drops up to 16 windows that ended


# ------------------------------------------------- nothing is held up behind


def test_held_back_jobs_hold_up_neither_unkeyed_jobs_nor_other_keys(chancy: Chancy) -> None:
    # A flood of one key, pushed first and at a higher priority, then another key and unkeyed jobs.
    push(chancy, *[noop("flood", cap=1, priority=5)] * 200, *[noop("calm", cap=1)] * 2, *[noop()] * 3)
    assert keys(claim(chancy, 1, T0)) == ["flood"]
    assert keys(claim(chancy, 1, T0)) == ["calm"]
    assert keys(claim(chancy, 10, T0)) == [None] * 3
    assert claim(chancy, 10, T0) == []


def test_priority_decides_between_a_keyed_job_and_an_unkeyed_one(chancy: Chancy) -> None:
    push(chancy, noop(), noop("k", cap=5, priority=3), noop(priority=1))
    assert [(j.limit_key, j.priority) for j in claim(chancy, 1, T0)] == [("k", 3)]
    assert [(j.limit_key, j.priority) for j in claim(chancy, 1, T0)] == [(None, 1)]


def test_a_job_not_due_yet_is_not_claimed_for_its_key(chancy: Chancy) -> None:
    push(chancy, dataclasses.replace(noop("k", cap=1), scheduled_at=FUTURE), noop("k", cap=1))
    [job] = claim(chancy, 5, T0)
    assert job.scheduled_at == PAST


def test_keyed_jobs_scheduled_later_hide_no_due_one_behind_them(chancy: Chancy) -> None:
    later = dataclasses.replace(noop("later", cap=5, priority=5), scheduled_at=FUTURE)
    push(chancy, *[later] * 100, noop("now", cap=5))
    assert keys(claim(chancy, 1, T0)) == ["now"]
    assert claim(chancy, 10, T0) == []


# ----------------------------------------------------- random interleavings


@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_never_exceed_a_cap_or_a_budget_and_leave_nothing_claimable(
    chancy: Chancy, seed: int
) -> None:
    """Pushes, claims of random sizes by several processes, successes, retries, give-backs and cancels, with time
    moving on: after every claim no key runs more jobs than its cap and no key was claimed more than its budget in
    a window."""
    rng = random.Random(seed)
    kinds = {
        "a": {"cap": 2}, "b": {"cap": 1, "rate": (3, 2.0)}, "c": {"rate": (2, 1.0)}, "d": {"cap": 3, "rate": (5, 0.5)},
    }
    limits = {key: (spec.get("cap"), spec.get("rate")) for key, spec in kinds.items()}
    claims: dict[tuple[str, int], int] = {}
    running: list[tuple[QueuedJob, int]] = []
    now = T0 + rng.randrange(SECOND)
    for _ in range(250):
        now += rng.choice((0, 1, 1000, 50_000, 300_000))
        action = rng.random()
        if action < 0.25:
            key = rng.choice([*kinds, None])
            spec = kinds.get(key or "", {})
            push(chancy, *[noop(key, cap=spec.get("cap"), rate=spec.get("rate"),  # type: ignore[arg-type]
                                priority=rng.choice((0, 0, 1)), max_attempts=2)] * rng.randint(1, 4))
        elif action < 0.65:
            pid = rng.randint(1, 4)
            got = claim(chancy, rng.choice((1, 1, 2, 5, 16)), now, pid=pid)
            running += [(job, pid) for job in got]
            for job in got:
                if job.rate_limit_window is not None:
                    window = round(job.rate_limit_window * SECOND)
                    bucket = (job.limit_key or "", now // window)
                    claims[bucket] = claims.get(bucket, 0) + 1
                    assert claims[bucket] <= (job.rate_limit or 0), (bucket, claims[bucket])
            check_caps(chancy, limits)
        elif running:
            job, pid = running.pop(rng.randrange(len(running)))
            choice = rng.random()
            if choice < 0.1:
                chancy.sync_cancel_job(job.id)
            else:
                outcome = next_outcome(job, ValueError("x") if choice < 0.3 else None, stopping=choice > 0.9,
                                       now=now)
                with chancy.transaction() as conn:
                    chancy.store.complete_job(conn, outcome, worker_id="w", pid=pid, queue="default")


def check_caps(chancy: Chancy, limits: dict[str, tuple[int | None, object]]) -> None:
    with chancy.connection() as conn:
        rows = conn.execute(
            "SELECT limit_key, count(*) FROM chancy_jobs WHERE state = 'running' AND limit_key IS NOT NULL"
            " GROUP BY limit_key"
        ).fetchall()
    for key, count in rows:
        cap = limits[key][0]
        assert cap is None or count <= cap, (key, count, cap)


def test_random_interleavings_take_every_claimable_job_when_the_batch_has_room(chancy: Chancy) -> None:
    rng = random.Random(99)
    kinds = {"a": {"cap": 2}, "b": {"rate": (3, 1.0)}, "c": {"cap": 1, "rate": (2, 1.0)}}
    now = T0
    running: list[QueuedJob] = []
    for _ in range(150):
        now += rng.choice((1, 200_000, 700_000))
        key = rng.choice([*kinds, None])
        spec = kinds.get(key or "", {})
        push(chancy, *[noop(key, cap=spec.get("cap"), rate=spec.get("rate"))] * rng.randint(0, 3))  # type: ignore[arg-type]
        if running and rng.random() < 0.5:
            finish(chancy, running.pop(rng.randrange(len(running))), now)
        running += claim(chancy, 500, now)  # room for everything: whatever is left waiting must be held back
        with chancy.connection() as conn:
            left = conn.execute(
                "SELECT limit_key, key_limits ->> 0, key_limits ->> 1 FROM chancy_jobs"
                " WHERE state IN ('pending', 'retrying') AND scheduled_at <= ?", (now,)
            ).fetchall()
            for key_, cap, rate in left:
                assert key_ is not None, "an unkeyed job was left behind"
                runs = conn.execute(
                    "SELECT count(*) FROM chancy_jobs WHERE limit_key = ? AND state = 'running'", (key_,)
                ).fetchall()[0][0]
                budget = chancy.store.key_budget(conn, key_, now=now)
                spent = rate is not None and budget is not None and budget[0] >= rate
                assert (cap is not None and runs >= cap) or spent, (key_, runs, budget)


# ------------------------------------------------------------ the plans


PLANS = {
    "CLAIM_JOB": ["chancy_jobs_claim_unkeyed", "chancy_jobs_claim_keyed"],
    "CLAIM_JOBS": ["chancy_jobs_claim_unkeyed", "chancy_jobs_claim_keyed"],
    "CLAIM_JOB_WITH_KEYED": ["chancy_jobs_claim_unkeyed"],
    "CLAIM_JOBS_WITH_KEYED": ["chancy_jobs_claim_unkeyed"],
    "KEYED_CANDIDATES": ["chancy_jobs_claim_keyed", "chancy_jobs_keyed_running"],
    "KEYED_HEADS": ["chancy_jobs_keyed_by_key", "chancy_jobs_keyed_running"],
    "NEXT_DUE_AFTER": ["chancy_jobs_due"],
    "NEXT_KEY_WINDOW_END": ["chancy_key_rate_limits_end"],
    "DROP_ENDED_KEY_WINDOWS": ["chancy_key_rate_limits_end"],
}


@pytest.mark.parametrize("statement", sorted(PLANS))
def test_the_claims_use_their_indexes_with_keyed_jobs_waiting(chancy: Chancy, statement: str) -> None:
    # Many finished rows, keyed and unkeyed jobs waiting, fresh statistics: every statement seeks, none scans.
    push(chancy, *[noop("k", cap=1)] * 50, *[noop(f"r{i}", rate=(1, 1)) for i in range(50)], *[noop()] * 50)
    push(chancy, *[noop(f"k{i % 7}", cap=3) for i in range(2000)], *[noop()] * 2000)
    with chancy.transaction() as conn:
        conn.execute("UPDATE chancy_jobs SET state = 'succeeded' WHERE rowid > 200")
        conn.executemany("INSERT INTO chancy_key_rate_limits VALUES (?, ?, ?, 1)",
                         [(f"old{i}", T0 - i * SECOND, T0 - i * SECOND + SECOND) for i in range(1, 3000)])
    claim(chancy, 5, T0)
    params = {"queue": "default", "now": T0, "worker_id": "w", "pid": 1, "pid_start": None, "n": 10, "scan": 36,
              "keyed": "[1, 2]"}
    args = {"NEXT_DUE_AFTER": ("default", T0), "NEXT_KEY_WINDOW_END": (T0,), "DROP_ENDED_KEY_WINDOWS": (T0,)}
    with chancy.connection() as conn:
        conn.execute("ANALYZE")
        plan = chancy.store.explain(conn, statement, args.get(statement, params))
    text = "\n".join(plan)
    for index in PLANS[statement]:
        assert f"USING COVERING INDEX {index} " in text, text
    assert not any(line.startswith("SCAN chancy_jobs") or line.startswith("SCAN chancy_key") for line in plan), text
    if statement in ("CLAIM_JOB", "CLAIM_JOBS"):
        assert "TEMP B-TREE" not in text, text  # the plain claim: the index serves the ORDER BY


# -------------------------------------------------- when to look again


@pytest.fixture
def runner(chancy: Chancy) -> Iterator[Runner]:
    config = ChildConfig(db_path=chancy.path, prefix=chancy.prefix, busy_timeout=5, synchronous="NORMAL",
                         queue="default", worker_id="w", key="key-limits-test", polling_interval=30)
    runner = Runner(config)
    yield runner
    runner.close()


def test_a_worker_left_with_held_back_jobs_sleeps_until_a_window_ends_or_a_job_falls_due(
    chancy: Chancy, runner: Runner
) -> None:
    clock = [T0 + 3 * SECOND]
    runner.now = lambda: clock[0]
    push(chancy, *[noop("api", rate=(1, 10))] * 2, *[noop("k", cap=1)] * 2)
    assert [len(runner.exchange()) for _ in range(3)] == [1, 1, 0]  # one of each key; the rest held back
    assert runner.idle_timeout() == pytest.approx(7.0)  # the api key's window ends at T0 + 10 s
    with chancy.connection() as conn:
        assert chancy.store.next_unblocked(conn, "default", now=clock[0]) == T0 + 10 * SECOND
    clock[0] = T0 + 10 * SECOND  # that window ended after the last claim: look again at once
    assert runner.idle_timeout() == 0.0
    assert [len(runner.exchange()) for _ in range(2)] == [1, 0]
    # A window is open (api's second claim): it ends at T0 + 20 s. Ending windows are looked at whatever their
    # key, so a worker may wake once per window end for nothing; it never sleeps past a window that matters.
    assert runner.idle_timeout() == pytest.approx(10.0)
    clock[0] = T0 + 21 * SECOND
    assert runner.idle_timeout() == 0.0 and runner.exchange() == []
    assert runner.idle_timeout() == 30.0  # only k waits, for its running job: until a wake-up (or the poll)
    push(chancy, dataclasses.replace(noop(), scheduled_at=dt.datetime(2030, 3, 17, 17, 47, 5, tzinfo=dt.UTC)))
    assert runner.idle_timeout() == pytest.approx(4.0)  # 25 s after T0, a plain job falls due


# ------------------------------------------------------------- wake-ups


def test_the_end_of_a_capped_job_wakes_its_queue_and_an_uncapped_one_does_not(chancy: Chancy) -> None:
    published: list[wake.Changes] = []
    with chancy.connection() as conn:
        conn.publisher = published.append
    push(chancy, noop("k", cap=1, queue="q"), noop("r", rate=(5, 1), queue="q"), noop(queue="q"))
    jobs = {job.limit_key: job for job in claim(chancy, 5, T0, queue="q")}
    published.clear()
    for key, woken in (("k", {"q": 1}), ("r", {}), (None, {})):
        with chancy.connection() as conn, conn:
            assert chancy.store.complete_job(conn, next_outcome(jobs[key], None, now=T0), worker_id="w", pid=1,
                                             queue="q")
        assert [(c.claimable, c.done) for c in published] == [(woken, True)]
        published.clear()


def test_cancelling_or_recovering_a_capped_job_wakes_its_queue(chancy: Chancy) -> None:
    published: list[wake.Changes] = []
    with chancy.connection() as conn:
        conn.publisher = published.append
    push(chancy, *[noop("k", cap=2, queue="q")] * 2)
    first, _ = claim(chancy, 5, T0, queue="q")
    published.clear()
    chancy.sync_cancel_job(first.id)
    assert [c.claimable for c in published] == [{"q": 1}]
    published.clear()
    with chancy.connection() as conn:
        recovered = chancy.store.recover_jobs(conn, "w", 1, lambda j: "died", now=T0)
    assert [state for _, state in recovered] == ["failed"]
    assert [c.claimable for c in published] == [{"q": 1}]


# ------------------------------------------------------------ migrations


def test_stepping_down_to_version_1_restores_the_version_1_schema(tmp_path: object, db_path: str) -> None:
    fresh_path = str(tmp_path) + "/v1.db"
    with Chancy(fresh_path) as fresh:
        fresh.sync_migrate(to_version=1)
    with Chancy(db_path) as app:
        app.sync_migrate()
        app.sync_migrate(to_version=1)
    assert len(CORE_MIGRATIONS) >= 2
    a, b = apsw.Connection(fresh_path), apsw.Connection(db_path)
    try:
        assert schema(a) == schema(b)
    finally:
        a.close()
        b.close()


def test_jobs_of_a_version_1_file_are_claimed_after_the_upgrade(db_path: str) -> None:
    with Chancy(db_path) as app:
        app.sync_migrate(to_version=1)
        with app.connection() as conn:
            conn.execute("INSERT INTO chancy_jobs (id, queue, func, created_at, scheduled_at) VALUES"
                         " ('00000000-0000-7000-8000-000000000001', 'default', 'tests.jobs.noop', 1, 1)")
        app.sync_migrate()
        [job] = claim(app, 5, T0)
    assert (str(job.id), job.limit_key, job.concurrency_max) == ("00000000-0000-7000-8000-000000000001", None, None)

"""The supervisor's services, each stepped with ``tick(now)`` on a real file and a controllable clock: no
worker started, no real-second waits (the service tier)."""

from __future__ import annotations

import asyncio
import datetime as dt

import apsw
import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.errors import ChancyError
from chancy_lite.plugin import Plugin
from chancy_lite.retry import Backoff, DatabaseRetry
from chancy_lite.testing import Clock
from chancy_lite.worker import Worker
from tests.conftest import START

State = QueuedJob.State
@pytest.fixture
def app(clocked: Chancy) -> Chancy:
    return clocked


def worker_for(app: Chancy, **options: object) -> Worker:
    return Worker(app, register_signal_handlers=False, **options)  # type: ignore[arg-type]


def claim_as_dead_process(app: Chancy, job: Job, *, worker_id: str = "gone", pid: int = 2**22 + 7) -> QueuedJob:
    """Write the crashed state (Oban's and River's way): a running row held by a process that does not exist."""
    ref = app.sync_push(job)
    with app.connection() as conn, conn:
        [claimed] = app.store.claim_jobs(conn, job.queue, 1, now=app.now(), worker_id=worker_id, pid=pid,
                                         pid_start=None)
    assert claimed.id == ref
    return claimed


def test_rescuer_recovers_jobs_of_a_dead_holder_counting_the_attempt(app: Chancy) -> None:
    once = claim_as_dead_process(app, Job(func="tests.jobs.noop"))
    twice = claim_as_dead_process(app, Job(func="tests.jobs.noop", max_attempts=3))
    worker = worker_for(app)
    asyncio.run(worker.rescuer.tick(app.now()))
    failed, retrying = app.sync_get_job(once), app.sync_get_job(twice)
    assert failed is not None and failed.state is State.FAILED and failed.attempts == 1
    assert "died" in failed.errors[0]["traceback"]
    assert retrying is not None and retrying.state is State.RETRYING and retrying.attempts == 1


def test_rescuer_leaves_a_live_holder_alone(app: Chancy) -> None:
    import os

    held = claim_as_dead_process(app, Job(func="tests.jobs.noop"), pid=os.getppid())  # alive: pytest's parent
    asyncio.run(worker_for(app).rescuer.tick(app.now()))
    job = app.sync_get_job(held)
    assert job is not None and job.state is State.RUNNING and job.attempts == 0


def test_heartbeat_writes_the_row_and_removes_expired_ones(app: Chancy, clock: Clock) -> None:
    old, new = worker_for(app, worker_id="old", heartbeat_timeout=60), worker_for(app, worker_id="new")
    asyncio.run(old.heartbeat.tick(app.now()))
    assert [w["worker_id"] for w in app.sync_get_all_workers()] == ["old"]
    clock.advance(seconds=61)
    asyncio.run(new.heartbeat.tick(app.now()))  # old's row expired a second ago: it goes
    assert [w["worker_id"] for w in app.sync_get_all_workers()] == ["new"]


def test_queue_watcher_resumes_a_queue_at_resume_at_and_says_when_to_look(app: Chancy, clock: Clock) -> None:
    # Tags no worker has: the watcher resumes the queue but starts no executor for it.
    app.sync_declare(Queue("later", tags={"nobody"}, state=Queue.State.PAUSED,
                           resume_at=START + dt.timedelta(seconds=30)))
    worker = worker_for(app, queue_change_poll_interval=600)
    assert asyncio.run(worker.queues.tick(app.now())) == pytest.approx(30)  # sleeps until resume_at, not 600 s
    assert app.sync_get_queue("later").state is Queue.State.PAUSED
    clock.advance(seconds=30)
    assert asyncio.run(worker.queues.tick(app.now())) is None
    assert app.sync_get_queue("later").state is Queue.State.ACTIVE and worker.executors == {}


def test_time_limit_backstop_kills_nothing_it_does_not_hold(app: Chancy, clock: Clock) -> None:
    from chancy_lite.job import Limit

    claim_as_dead_process(app, Job(func="tests.jobs.noop", limits=[Limit(Limit.Type.TIME, 1)]), worker_id="x")
    worker = worker_for(app)
    clock.advance(hours=1)
    assert asyncio.run(worker.time_limits.tick(app.now())) is None  # no executor of ours holds it: no kill


class Flaky(Plugin):
    runs = 0

    @staticmethod
    def get_identifier() -> str:
        return "flaky"

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        Flaky.runs += 1
        raise RuntimeError("plugin bug")


def test_plugin_runner_restarts_a_failed_plugin_after_its_backoff(db_path: str, clock: Clock) -> None:
    with Chancy(db_path, clock=clock, plugins=[Flaky()], no_default_plugins=True) as app:
        app.sync_migrate()
        worker = worker_for(app, backoff_initial=2.0, backoff_max=8.0)
        runner = worker.plugin_runner

        async def steps() -> list[int]:
            seen = []
            for seconds in (0, 0, 1, 1, 0, 4):  # failures wait 2 s, then 4 s
                clock.advance(seconds=seconds)
                await runner.tick(app.now())
                await asyncio.sleep(0)  # let a started plugin run
                seen.append(Flaky.runs)
            await runner.close()
            return seen

        Flaky.runs = 0
        assert asyncio.run(steps()) == [1, 1, 1, 2, 2, 3]


def test_backoff_is_full_jitter_capped_and_retries_only_transient_errors() -> None:
    backoff = Backoff(0.5, 4.0, max_retries=2)
    assert [backoff.delay(n, rand=lambda: 1.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.delay(3, rand=lambda: 0.25) == 1.0
    with pytest.raises(ValueError, match="backoff_initial"):
        Backoff(0, 1)
    retry = DatabaseRetry("test", calculate_delay=lambda n: 0.0, max_retries=2)

    async def run() -> None:
        busy = apsw.BusyError("database is locked")
        await retry.wait(busy)
        await retry.wait(busy)
        with pytest.raises(apsw.BusyError):
            await retry.wait(busy)  # a third consecutive failure: out of retries
        with pytest.raises(ChancyError):
            await retry.wait(ChancyError("not transient"))

    asyncio.run(run())

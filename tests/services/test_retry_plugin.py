"""RetryPlugin: retries after a backoff from meta["retry_settings"] (time injected), then on time with a real
worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from pathlib import Path

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.plugins.retry import RetryPlugin
from chancy_lite.testing import Clock, drain
from chancy_lite.utils import UTC
from chancy_lite.worker import Worker
from tests.worker_support import lines

State = QueuedJob.State
SETTINGS = {"retry_settings": {"backoff": 10, "backoff_factor": 2.0, "backoff_limit": 300, "backoff_jitter": [0, 0]}}


def test_a_failing_job_is_retried_after_the_backoff_then_fails(db_path: str) -> None:
    clock = Clock(dt.datetime(2030, 1, 1, tzinfo=UTC))
    with Chancy(db_path, clock=clock, plugins=[RetryPlugin(clock=clock)]) as chancy:
        chancy.sync_migrate()
        ref = chancy.sync_push(Job(func="tests.jobs.fail", max_attempts=3, meta=SETTINGS))
        start = clock()
        seen = []
        for wait in (0, 10, 20):
            clock.advance(seconds=wait)
            drain(chancy)
            job = chancy.sync_get_job(ref)
            assert job is not None
            seen.append((job.state, job.attempts, job.scheduled_at - start))
        assert seen == [
            (State.RETRYING, 1, dt.timedelta(seconds=10)),  # backoff * factor ** 0
            (State.RETRYING, 2, dt.timedelta(seconds=30)),  # then 10 * 2 ** 1 = 20 s later
            (State.FAILED, 3, dt.timedelta(seconds=30)),  # no attempts left: failed, not rescheduled
        ]
        assert job.meta == SETTINGS  # retry_settings are never modified


def test_a_retry_is_not_early_and_a_succeeding_job_is_left_alone(db_path: str) -> None:
    clock = Clock(dt.datetime(2030, 1, 1, tzinfo=UTC))
    with Chancy(db_path, clock=clock, plugins=[RetryPlugin(clock=clock)]) as chancy:
        chancy.sync_migrate()
        failing = chancy.sync_push(Job(func="tests.jobs.fail", max_attempts=2, meta=SETTINGS))
        fine = chancy.sync_push(Job(func="tests.jobs.noop", max_attempts=2, meta=SETTINGS))
        drain(chancy)
        clock.advance(seconds=9.999)
        assert drain(chancy) == []  # not due yet
        clock.advance(seconds=0.001)
        [retried] = drain(chancy)
        assert retried.id == failing and retried.state is State.FAILED and retried.attempts == 2
        done = chancy.sync_get_job(fine)
        assert done is not None and done.state is State.SUCCEEDED and done.attempts == 1


def test_with_a_real_worker_the_retry_starts_on_time(chancy: Chancy, tmp_path: Path) -> None:
    path = str(tmp_path / "attempts")
    settings = {"retry_settings": {"backoff": 0.5, "backoff_factor": 2.0, "backoff_jitter": [0, 0]}}
    chancy.plugins["chancy.retry_plugin"] = RetryPlugin()
    chancy.sync_declare(Queue("default", concurrency=1, polling_interval=60), upsert=True)

    async def run() -> QueuedJob | None:
        async with Worker(chancy, register_signal_handlers=False):
            ref = await chancy.push(Job(func="tests.jobs_procs.fail_until", kwargs={"path": path, "succeed_on": 3},
                                        max_attempts=3, meta=settings))
            return await chancy.wait_for_job(ref, timeout=20)

    job = asyncio.run(run())
    assert job is not None and job.state is State.SUCCEEDED and job.attempts == 3
    starts = [float(r[1]) for r in lines(path)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert 0.5 <= gaps[0] < 0.5 + 5 and 1.0 <= gaps[1] < 1.0 + 5, gaps  # due after 0.5 s, then 1 s; not a 60 s poll

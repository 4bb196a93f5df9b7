"""Cancelling a job that a child has claimed in a batch but not started yet (found by ``scripts/chaos``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from tests.worker_support import lines, run_worker, until


@pytest.mark.parametrize("executor", ["Process", "Threaded"])
def test_a_job_cancelled_after_its_claim_but_before_it_starts_never_runs(tmp_path: Path, executor: str) -> None:
    """A child claims several jobs at once; one cancelled while it waits its turn in the child must not run.

    The chaos run saw such a job run to the end 1.5 ms after its cancel (its result then dropped as stale): the
    child only honoured a cancel for the job it was running at that moment.
    """
    path = str(tmp_path / "stamps")
    with Chancy(str(tmp_path / "jobs.db")) as chancy:
        chancy.sync_migrate()
        # A wide batch window: the child claims everything below in one go, after timing the first job.
        chancy.sync_declare(Queue("default", concurrency=1, polling_interval=60, executor=Chancy.Executor[executor],
                                  executor_options={"batch_window": 30}))
        # Each function runs once first: a child gives its batch back before a function it has not run yet.
        warm = str(tmp_path / "warm-up")
        warm_ups = [
            chancy.sync_push(Job(func="tests.jobs.noop")),
            chancy.sync_push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": warm, "seconds": 0})),
            chancy.sync_push(Job(func="tests.jobs.stamp", kwargs={"path": warm})),
        ]
        batch = [
            *(Job(func="tests.jobs.noop") for _ in range(3)),
            Job(func="tests.jobs.pid_then_sleep", kwargs={"path": path, "seconds": 1.0}),
            Job(func="tests.jobs.stamp", kwargs={"path": path, "value": "cancelled-but-ran"}, max_attempts=3),
        ]
        refs: list = []

        async def body(worker: object) -> None:
            await chancy.wait_for_jobs(warm_ups, timeout=20)
            async for pushed in chancy.push_many(batch):
                refs.extend(pushed)
            slow, doomed = refs[-2], refs[-1]
            await until(lambda: lines(path), timeout=20, message="the slow job started")
            held = await chancy.get_job(doomed)
            assert held is not None and held.state is QueuedJob.State.RUNNING  # claimed with the slow one
            await chancy.cancel_job(doomed)
            await chancy.wait_for_job(slow, timeout=20)
            marker = await chancy.push(Job(func="tests.jobs.stamp", kwargs={"path": path, "value": "marker"}))
            await chancy.wait_for_job(marker, timeout=20)

        run_worker(chancy, body)
        assert [r[2] for r in lines(path)] == ["", "marker"]  # the slow job's stamp, then the marker
        job = chancy.sync_get_job(refs[-1])
        assert job is not None and job.state is QueuedJob.State.FAILED
        assert "cancelled" in job.errors[-1]["traceback"]

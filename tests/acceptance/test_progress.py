"""Live progress: a running job's ``context.progress()`` is visible to other processes while it runs, however
often it is called, on every executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.worker import Worker
from tests.worker_support import run_worker, until

State = QueuedJob.State
STEPS = 50_000  # far more reports than writes: they are coalesced


@pytest.mark.parametrize(
    ("executor", "func"),
    [(Chancy.Executor.Process, "tests.jobs.progress_then_wait"),
     (Chancy.Executor.Threaded, "tests.jobs.progress_then_wait"),
     (Chancy.Executor.Async, "tests.jobs.async_progress_then_wait")],
)
def test_progress_is_visible_while_the_job_runs(chancy: Chancy, tmp_path: Path, executor: str, func: str) -> None:
    chancy.sync_declare(Queue("default", executor=executor, concurrency=1))
    release = tmp_path / "release"

    async def body(worker: Worker) -> tuple[QueuedJob, QueuedJob | None]:
        ref = await chancy.push(Job(func=func, kwargs={"path": str(release), "steps": STEPS}))

        async def reported() -> QueuedJob | None:
            job = await chancy.get_job(ref)
            progress = job.meta.get("progress") if job is not None else None
            return job if progress and progress["done"] == STEPS else None

        # The last report shows while the job still runs, though it came within 0.25 s of the first.
        running = await until(reported, timeout=20, message="the last progress report to be saved")
        release.touch()
        return running, await chancy.wait_for_job(ref, timeout=20)

    running, done = run_worker(chancy, body)
    assert running.state is State.RUNNING
    assert running.meta["progress"]["total"] == STEPS and running.meta["progress"]["message"] == f"step {STEPS}"
    assert done is not None and done.state is State.SUCCEEDED and done.meta["progress"]["done"] == STEPS


@pytest.mark.parametrize(
    ("args", "message"),
    [((-1,), "done"), (("1",), "done"), ((True,), "done"), ((1, 0), "total"), ((1, -5), "total"),
     ((1, 2, 3), "message")],
)
def test_bad_progress_is_refused(args: tuple[object, ...], message: str) -> None:
    context = QueuedJob(id="00000000-0000-7000-8000-000000000000", func="f")
    with pytest.raises(ValueError, match=message):
        context.progress(*args)  # type: ignore[arg-type]
    context.progress(3, None, "no total yet")  # outside a worker: only meta changes
    assert context.meta["progress"]["done"] == 3 and context.meta["progress"]["total"] is None

"""Whatever a job raises is that job's failure, on every executor, and the worker goes on; a failure is
logged with its exception type and message (never the kwargs) where a user sees it by default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.worker import Worker
from tests.worker_support import REPO, Supervisor, run_worker

FAILED, SUCCEEDED = QueuedJob.State.FAILED, QueuedJob.State.SUCCEEDED
Process, Threaded, Async = Chancy.Executor.Process, Chancy.Executor.Threaded, Chancy.Executor.Async

ASYNC_RAISERS = ["tests.jobs_procs.async_exit", "tests.jobs_procs.async_interrupt"]
SYNC_RAISERS = ["tests.jobs_procs.exit_now", "tests.jobs.interrupt_job"]


@pytest.mark.parametrize("executor", [Process, Threaded, Async])
def test_system_exit_and_keyboard_interrupt_are_the_jobs_failure(chancy: Chancy, executor: str) -> None:
    chancy.sync_declare(Queue("q", concurrency=2, executor=executor, polling_interval=60), upsert=True)
    raisers = ASYNC_RAISERS + (SYNC_RAISERS if executor != Async else [])

    async def body(worker: Worker) -> tuple[list[QueuedJob], QueuedJob | None]:
        refs = [await chancy.push(Job(func=f, queue="q", max_attempts=2)) for f in raisers]
        jobs = await chancy.wait_for_jobs(refs, timeout=20)
        after = await chancy.push(Job(func="tests.jobs_procs.async_ok", queue="q"))
        return jobs, await chancy.wait_for_job(after, timeout=20)

    jobs, after = run_worker(chancy, body)
    for job in jobs:
        assert job.state is FAILED and job.attempts == 2, (job, job.errors)
        raised = "SystemExit" if "exit" in job.func else "KeyboardInterrupt"
        assert all(raised in e["traceback"] for e in job.errors), job.errors
    assert after is not None and after.state is SUCCEEDED  # the worker went on


def test_async_executor_worker_survives_system_exit_and_stops_cleanly(
    chancy: Chancy, db_path: str, tmp_path: Path
) -> None:
    """Before: the SystemExit escaped into the supervisor's loop, the worker was left half alive and exited with
    the job's code on the next SIGTERM."""
    chancy.sync_declare(Queue("loop", executor=Async, polling_interval=60))
    refs = [chancy.sync_push(Job(func=f, queue="loop")) for f in ASYNC_RAISERS]
    with Supervisor(db_path, log_path=tmp_path / "worker.log") as sup:
        sup.wait_ready()
        jobs = chancy.sync_wait_for_jobs(refs, timeout=20)
        ok = chancy.sync_wait_for_job(chancy.sync_push(Job(func="tests.jobs_procs.async_ok", queue="loop")),
                                      timeout=20)
        sup.signal(signal.SIGTERM)
        assert sup.wait(15) == 0, sup.log()
    assert [job.state for job in jobs] == [FAILED, FAILED]
    assert ok is not None and ok.state is SUCCEEDED


def test_a_failing_job_is_reported_on_stderr_without_logging_configured(db_path: str, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio
        from chancy_lite import Chancy, Job, Queue, Worker

        async def main():
            async with Chancy({db_path!r}) as chancy:
                await chancy.migrate()
                await chancy.declare(Queue("default", concurrency=1))
                for func in ("tests.jobs.fail", "tests.jobs_procs.async_exit"):
                    ref = await chancy.push(Job(func=func, kwargs={{"message": "disk quota exceeded"}}
                                                if func.endswith("fail") else {{"code": 7}}))
                    async with Worker(chancy, register_signal_handlers=False):
                        await chancy.wait_for_job(ref, timeout=20)
                secret = await chancy.push(Job(func="tests.jobs.fail", kwargs={{"message": "x", "token": "s3cr3t"}}))
                async with Worker(chancy, register_signal_handlers=False):
                    await chancy.wait_for_job(secret, timeout=20)

        asyncio.run(main())
    """))
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "tests.jobs.fail" in done.stderr and "ValueError: disk quota exceeded" in done.stderr, done.stderr
    assert "SystemExit: 7" in done.stderr, done.stderr
    assert "s3cr3t" not in done.stderr

"""Security defaults: an allow-list of job modules, and no kwargs in the logs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from chancy_lite import Chancy, Job, QueuedJob, Worker
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]


def test_allowed_modules_refuses_other_job_functions_with_a_clear_error(chancy: Chancy) -> None:
    allowed = chancy.sync_push(Job(func="tests.jobs.noop"))
    refused = chancy.sync_push(Job(func="os.getcwd", max_attempts=3))

    async def run() -> list[QueuedJob]:
        async with Worker(chancy, register_signal_handlers=False, allowed_modules=["tests.jobs"]):
            return await chancy.wait_for_jobs([allowed, refused], timeout=30)

    ok, bad = asyncio.run(run())
    assert ok.state is QueuedJob.State.SUCCEEDED
    assert bad.state is QueuedJob.State.FAILED
    assert "os.getcwd is not in this worker's allowed_modules (tests.jobs)" in bad.errors[-1]["traceback"]


def test_job_kwargs_are_not_written_to_the_worker_log(db_path: str) -> None:
    secret = "hunter2-0123456789abcdef"
    with Chancy(db_path) as chancy:
        chancy.sync_migrate()
        ref = chancy.sync_push(Job(func="tests.jobs.record", kwargs={"path": os.devnull, "value": secret}))
        worker = subprocess.Popen(
            [sys.executable, "-m", "chancy_lite.cli", "--db", db_path, "-vv", "worker", "start"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            wait_until(lambda: chancy.sync_get_job(ref).state is QueuedJob.State.SUCCEEDED, timeout=30)
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=30)
    assert ref.identifier in output  # the job was logged (debug level, children included)...
    assert secret not in output  # ...but never its arguments

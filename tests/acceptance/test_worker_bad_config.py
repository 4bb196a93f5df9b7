"""Workers given something that cannot work: one clear error at once, and the rest keeps running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.errors import ConfigurationError
from chancy_lite.testing import drain
from chancy_lite.worker import Worker
from tests.conftest import wait_until
from tests.worker_support import REPO, Supervisor, children_of

EXECUTOR_MODULE = """\
from chancy_lite.executors.thread import ThreadedExecutor


class Exec(ThreadedExecutor):
    pass
"""


def test_a_queue_whose_executor_cannot_be_loaded_is_reported_once_and_the_others_are_served(
    tmp_path: Path, db_path: str
) -> None:
    """A queue declared where its executor exists (another environment) meets a worker where it does not."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "elsewhere_executor.py").write_text(EXECUTOR_MODULE)
    with Chancy(db_path) as app:
        app.sync_migrate()
    declared = subprocess.run(
        [sys.executable, "-m", "chancy_lite.cli", "--db", db_path, "queue", "declare", "bad", "--executor",
         "elsewhere_executor.Exec", "--concurrency", "1"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(elsewhere), REPO])},
    )
    assert declared.returncode == 0, declared.stderr

    with Chancy(db_path) as app, Supervisor(
        db_path, "--no-migrate", "--queue", "good:1", "--shutdown-timeout", "5", log_path=tmp_path / "worker.log"
    ) as supervisor:
        supervisor.wait_ready()
        stuck = app.sync_push(Job(func="tests.jobs.noop", queue="bad"))
        done = app.sync_wait_for_job(app.sync_push(Job(func="tests.jobs.noop", queue="good")), timeout=30)
        assert done is not None and done.state is QueuedJob.State.SUCCEEDED, supervisor.log()

        # A queue change makes the worker look at every queue again: the bad one is not reported again.
        app.sync_declare(Queue("later", concurrency=1))
        wait_until(lambda: any("later" in w["queues"] for w in app.sync_get_all_workers()), timeout=30)
        done = app.sync_wait_for_job(app.sync_push(Job(func="tests.jobs.noop", queue="later")), timeout=30)
        assert done is not None and done.state is QueuedJob.State.SUCCEEDED, supervisor.log()
        [worker] = app.sync_get_all_workers()
        assert "bad" not in worker["queues"] and "good" in worker["queues"]
        assert app.sync_get_job(stuck).state is QueuedJob.State.PENDING  # type: ignore[union-attr]

        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0, supervisor.log()
        log = supervisor.log()
    mentions = [line for line in log.splitlines() if "elsewhere_executor.Exec" in line]
    assert len(mentions) == 1, log
    assert "ERROR" in mentions[0] and "'bad'" in mentions[0] and "cannot be imported" in mentions[0]
    assert "Traceback" not in log


@pytest.mark.parametrize("spelling", [":memory:", "sqlite://"])
def test_a_worker_on_a_memory_database_is_refused_at_start(spelling: str) -> None:
    """Its children would each open another, empty memory database: say so at once instead of hanging."""

    async def start() -> ConfigurationError:
        with Chancy(spelling) as app:
            app.sync_migrate()
            worker = Worker(app, register_signal_handlers=False, shutdown_timeout=2)
            try:
                with pytest.raises(ConfigurationError) as info:
                    await asyncio.wait_for(worker.start(), 30)
            finally:
                await worker.stop()
            return info.value

    before = children_of(os.getpid())
    message = str(asyncio.run(start()))
    assert ":memory:" in message and "database file" in message and "tmp_path" in message, message
    assert "chancy_lite.testing.drain()" in message
    assert children_of(os.getpid()) == before  # no child was started


def test_the_testing_helpers_say_the_same_about_memory_databases() -> None:
    with Chancy(":memory:") as app:
        app.sync_migrate()
        app.sync_push(Job(func="tests.jobs.noop"))
        with pytest.raises(ConfigurationError, match="needs a database file"):
            drain(app)


def test_executors_that_fail_to_build_or_start_are_reported_and_the_others_served(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    for name, executor in (("init", "tests.custom_executor.BrokenInit"), ("start", "tests.custom_executor.BrokenStart"),
                           ("hangs", "tests.custom_executor.StartHangs"),
                           ("zfine", "tests.custom_executor.CustomExecutor")):  # served after the others
        chancy.sync_declare(Queue(name, executor=executor, polling_interval=60))
    ref = chancy.sync_push(Job(func="tests.jobs.noop", queue="zfine"))

    async def main() -> tuple[set[str], QueuedJob | None]:
        worker = Worker(chancy, register_signal_handlers=False)
        worker.queues.start_timeout = 0.5
        async with worker:
            job = await chancy.wait_for_job(ref, timeout=20)
            await worker.queues.tick(chancy.now())  # once more: still one error line per queue
            return set(worker.executors), job

    served, job = asyncio.run(main())
    assert "zfine" in served and not served & {"init", "start", "hangs"}
    assert job is not None and job.state is QueuedJob.State.SUCCEEDED
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len([e for e in errors if "'init'" in e]) == 1 and "cannot build this executor" in str(errors)
    assert len([e for e in errors if "'start'" in e]) == 1 and "cannot start this executor" in str(errors)
    assert len([e for e in errors if "'hangs'" in e]) == 1 and "did not start within 0.5 s" in str(errors)


def test_an_abstract_executor_is_refused_at_declare(chancy: Chancy) -> None:
    from chancy_lite.errors import InvalidExecutorError

    with pytest.raises(InvalidExecutorError, match="abstract"):
        chancy.sync_declare(Queue("abstract", executor="chancy_lite.executors.base.Executor"))

"""Children forked from the worker's template process (chancy_lite.template), and spawned where asked or where the
template cannot fork safely. Real processes: who is whose parent, which process imported what, what dies with what."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.worker import Worker
from tests.conftest import wait_until
from tests.worker_support import Supervisor, children_of, gone, run_worker, templates_of, until, workers_of

SUCCEEDED = QueuedJob.State.SUCCEEDED


def declare(chancy: Chancy, concurrency: int = 2, **options: Any) -> None:
    chancy.sync_declare(Queue("default", state=Queue.State.PAUSED))  # no children but those of "t"
    chancy.sync_declare(Queue("t", concurrency=concurrency, polling_interval=60, executor_options=options),
                        upsert=True)


async def run_where(chancy: Chancy, n: int) -> list[QueuedJob]:
    refs = [await chancy.push(Job(func="tests.jobs_template.where", queue="t")) for _ in range(n)]
    jobs = await chancy.wait_for_jobs(refs, timeout=20)
    assert all(job.state is SUCCEEDED for job in jobs), [job.errors for job in jobs]
    return jobs


def test_children_are_forked_from_the_template_and_lead_their_own_groups(chancy: Chancy) -> None:
    declare(chancy, preload=["tests.jobs_template"])

    async def body(worker: Worker) -> tuple[list[QueuedJob], int | None, set[int]]:
        jobs = await run_where(chancy, 6)
        template = worker._template
        assert template is not None and template.pid is not None
        return jobs, template.pid, set(worker.executors["t"].held_pids())

    jobs, template_pid, children = run_worker(chancy, body)
    assert template_pid in children_of(os.getpid()) or gone(template_pid)  # ours (gone once the worker stopped)
    for job in jobs:
        assert job.meta["ppid"] == template_pid, job.meta  # forked by the template...
        assert job.meta["pgid"] == job.meta["pid"], job.meta  # ...and leading a process group of its own
        assert job.meta["imported_by"] == template_pid, job.meta  # the preloaded module came with the fork
    assert {job.meta["pid"] for job in jobs} <= children
    assert gone(template_pid)  # the worker stopped it


def test_start_method_spawn_starts_fresh_interpreters_and_no_template(chancy: Chancy) -> None:
    declare(chancy, start_method="spawn", preload=["tests.jobs_template"])

    async def body(worker: Worker) -> list[QueuedJob]:
        jobs = await run_where(chancy, 4)
        assert worker._template is None
        return jobs

    for job in run_worker(chancy, body):
        assert job.meta["ppid"] == os.getpid() and job.meta["pgid"] == job.meta["pid"], job.meta
        assert job.meta["imported_by"] == job.meta["pid"], job.meta  # imported by the child itself


def test_the_environment_variable_chooses_spawn_too(chancy: Chancy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANCY_LITE_START_METHOD", "spawn")
    declare(chancy)
    for job in run_worker(chancy, lambda worker: run_where(chancy, 2)):
        assert job.meta["ppid"] == os.getpid(), job.meta


def test_a_preloaded_module_that_starts_a_thread_makes_the_worker_spawn(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    """A thread in the template would be lost in every fork, holding whatever lock it held: no fork, then."""
    declare(chancy, preload=["tests.jobs_thread_at_import"])
    jobs = run_worker(chancy, lambda worker: run_where(chancy, 3))
    for job in jobs:
        assert job.meta["ppid"] == os.getpid(), job.meta  # spawned by the supervisor
    assert "a thread runs in the template (started-at-import)" in caplog.text


def test_a_killed_template_takes_its_children_along_and_the_worker_carries_on(chancy: Chancy) -> None:
    declare(chancy)

    async def body(worker: Worker) -> tuple[set[int], list[QueuedJob]]:
        await run_where(chancy, 2)
        executor: Any = worker.executors["t"]
        before = set(executor.held_pids())
        template = worker._template
        assert template is not None and template.pid is not None
        os.kill(template.pid, signal.SIGKILL)
        await until(lambda: all(gone(pid) for pid in before), timeout=10, message="the children exited")
        await until(lambda: len(executor.processes) == 2 and not set(executor.held_pids()) & before,
                    timeout=10, message="two new children")
        return before, await run_where(chancy, 2)

    before, jobs = run_worker(chancy, body)
    assert all(job.meta["pid"] not in before for job in jobs)


def test_a_killed_supervisor_takes_its_template_and_children_along(chancy: Chancy, db_path: str,
                                                                   tmp_path: Path) -> None:
    with Supervisor(db_path, "--queue", "default:2", log_path=tmp_path / "supervisor.log") as sup:
        sup.wait_ready()
        children = wait_until(lambda: len(workers_of(sup.pid)) == 2 and workers_of(sup.pid), timeout=15)
        [template] = templates_of(sup.pid)
        assert all(pid in children_of(template) for pid in children)
        sup.signal(signal.SIGKILL)
        sup.wait(5)
        wait_until(lambda: gone(template) and all(gone(pid) for pid in children), timeout=10,
                   message="the template and the children exited")


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_a_child_that_leaves_runs_its_exit_handlers(chancy: Chancy, tmp_path: Path, start_method: str) -> None:
    """A forked child skips the interpreter's teardown when it leaves, but not what a spawned child would do."""
    declare(chancy, concurrency=1, maximum_jobs_per_worker=1, start_method=start_method)
    path = tmp_path / "exited"

    async def body(worker: Worker) -> QueuedJob | None:
        ref = await chancy.push(Job(func="tests.jobs_template.at_exit", queue="t", kwargs={"path": str(path)}))
        job = await chancy.wait_for_job(ref, timeout=20)
        await until(path.exists, timeout=10, message="the exit handler ran")
        return job

    job = run_worker(chancy, body)
    assert job is not None and job.state is SUCCEEDED

"""Plugins' job hooks with a real worker: in process children (on copies, ``worker=None``), on the Async
executor and in the supervisor's recovery of a dead child's job (with the ``Worker``)."""

from __future__ import annotations

import os

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.worker import Worker
from tests.hook_plugins import Recorder, hook_log
from tests.worker_support import run_worker

State = QueuedJob.State


def test_hooks_run_in_the_children_that_run_the_jobs(db_path: str) -> None:
    with Chancy(db_path, plugins=[Recorder(db_path)]) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", concurrency=2))

        async def body(worker: Worker) -> list[QueuedJob]:
            refs = [await chancy.push(Job(func="tests.jobs.noop")) for _ in range(20)]
            refs.append(await chancy.push(Job(func="tests.jobs.fail")))
            return await chancy.wait_for_jobs(refs, timeout=30)

        jobs = run_worker(chancy, body)
        log = hook_log(db_path)
    assert all(j.state is (State.FAILED if j.func == "tests.jobs.fail" else State.SUCCEEDED) for j in jobs)
    for hook in ("starting", "in_transaction", "updated"):
        rows = [row for row in log if row[0] == hook]
        assert sorted(row[1] for row in rows) == sorted(str(j.id) for j in jobs), hook  # once per job
        assert {row[5] for row in rows} - {os.getpid()}, hook  # in the children, not the test process
        assert {row[4] for row in rows} == {None}, hook
    updated = {row[1]: row[2] for row in log if row[0] == "updated"}
    assert updated == {str(j.id): j.state.value for j in jobs}


def test_hooks_on_the_async_executor_get_the_worker(db_path: str) -> None:
    with Chancy(db_path, plugins=[Recorder(db_path)]) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("aio", executor=Chancy.Executor.Async))

        async def body(worker: Worker) -> QueuedJob | None:
            ref = await chancy.push(Job(func="tests.jobs.async_sleep", queue="aio", kwargs={"seconds": 0}))
            return await chancy.wait_for_job(ref, timeout=20)

        job = run_worker(chancy, body)
        log = hook_log(db_path)
    assert job is not None and job.state is State.SUCCEEDED
    assert [(row[0], row[4], row[5]) for row in log] == [
        ("starting", "Worker", os.getpid()), ("in_transaction", "Worker", os.getpid()),
        ("updated", "Worker", os.getpid()),
    ]


def test_a_job_whose_child_died_is_shown_to_plugins_by_the_supervisor(db_path: str) -> None:
    with Chancy(db_path, plugins=[Recorder(db_path)]) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", concurrency=1))

        async def body(worker: Worker) -> QueuedJob | None:
            ref = await chancy.push(Job(func="tests.jobs.die", max_attempts=1))
            return await chancy.wait_for_job(ref, timeout=20)

        job = run_worker(chancy, body)
        log = hook_log(db_path)
    assert job is not None and job.state is State.FAILED
    assert [(row[0], row[2]) for row in log if row[0] != "starting"] == [("in_transaction", "failed"),
                                                                         ("updated", "failed")]
    written = [row for row in log if row[0] != "starting"]
    assert {(row[4], row[5]) for row in written} == {("Worker", os.getpid())}  # by the supervisor

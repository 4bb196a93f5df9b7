"""The three executors: Process (default; coroutine jobs run in the child's own loop), Threaded
(sync jobs on threads of the supervisor) and Async (coroutines on the supervisor's loop)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from chancy_lite import Chancy, Job, Limit, Queue, QueuedJob
from chancy_lite.executors.asyncex import AsyncExecutor
from chancy_lite.executors.process import ProcessExecutor
from chancy_lite.executors.thread import ThreadedExecutor
from chancy_lite.worker import Worker
from tests.worker_support import lines, pids, run_worker, until

SUCCEEDED, FAILED = QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED
Process, Threaded, Async = Chancy.Executor.Process, Chancy.Executor.Threaded, Chancy.Executor.Async


def declare(chancy: Chancy, name: str, executor: str, concurrency: int = 2, **options: object) -> None:
    chancy.sync_declare(
        Queue(name, concurrency=concurrency, executor=executor, polling_interval=60, **options),  # type: ignore[arg-type]
        upsert=True,
    )


def errors_text(job: QueuedJob) -> str:
    return "\n".join(e["traceback"] for e in job.errors)


# ------------------------------------------------------------------- threaded


def test_threaded_executor_runs_sync_jobs_in_the_supervisor(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, "threads", Threaded, concurrency=3)
    path = str(tmp_path / "ran")

    async def body(worker: Worker) -> list[QueuedJob]:
        assert isinstance(worker.executors["threads"], ThreadedExecutor)
        refs = [await chancy.push(Job(func="tests.jobs.thread_name", queue="threads")) for _ in range(3)]
        refs += [await chancy.push(Job(func=f, queue="threads", kwargs={"items": ["x"]}))
                 for f in ("tests.jobs.ctx_generic", "tests.jobs_plain.ctx_generic")]
        refs.append(await chancy.push(Job(func="tests.jobs.stamp", queue="threads", kwargs={"path": path})))
        refs.append(await chancy.push(Job(func="tests.jobs.fail", queue="threads", max_attempts=2)))
        return await chancy.wait_for_jobs(refs, timeout=20)

    jobs = run_worker(chancy, body)
    for job in jobs[:3]:
        assert job.state is SUCCEEDED, job.errors
        assert job.meta["pid"] == os.getpid()
        assert job.meta["thread"].startswith("chancy-lite[threads]")
    for job in jobs[3:5]:
        assert job.state is SUCCEEDED and job.meta == {"items": ["x"], "injected": str(job.id)}
    assert jobs[5].state is SUCCEEDED and pids(path) == [os.getpid()]
    assert jobs[6].state is FAILED and jobs[6].attempts == 2 and [e["attempt"] for e in jobs[6].errors] == [0, 1]


def test_threaded_executor_time_limits_are_cooperative(chancy: Chancy, tmp_path: Path) -> None:
    """Chancy 0.26's model: a thread cannot be stopped from outside, so a TIME limit takes effect at the job's
    checkpoint() calls, and once more when it returns; a job that cannot checkpoint (no QueuedJob parameter)
    and a MEMORY limit are refused with a clear error instead of being ignored."""
    declare(chancy, "threads", Threaded, concurrency=4)
    stepped, blocked = str(tmp_path / "stepped"), str(tmp_path / "blocked")
    limit = [Limit(Limit.Type.TIME, 0.3)]

    async def body(worker: Worker) -> list[QueuedJob]:
        refs = [
            await chancy.push(Job(func="tests.jobs.checkpointed_steps", queue="threads", limits=limit,
                                  kwargs={"seconds": 30, "path": stepped})),
            await chancy.push(Job(func="tests.jobs.overrun_without_checkpoint", queue="threads", limits=limit,
                                  kwargs={"seconds": 0.6, "path": blocked})),
            await chancy.push(Job(func="tests.jobs.sleep_in_steps", queue="threads", limits=limit,
                                  kwargs={"seconds": 0.01})),
            await chancy.push(Job(func="tests.jobs.noop", queue="threads",
                                  limits=[Limit(Limit.Type.MEMORY, 2**30)])),
        ]
        return await chancy.wait_for_jobs(refs, timeout=20)

    stepped_job, blocked_job, no_context, memory = run_worker(chancy, body)
    assert stepped_job.state is FAILED and "TimeoutError: Job timed out." in errors_text(stepped_job)
    records = [r[2] for r in lines(stepped)]
    assert records[0] == "started True" and records[-1] == "TimeoutError 0.0" and "step" in records
    assert blocked_job.state is FAILED and "TimeoutError" in errors_text(blocked_job)
    assert [r[2] for r in lines(blocked)] == ["returned"]  # it ran to the end; its result was discarded
    assert no_context.state is FAILED
    assert "keyword-only parameter annotated QueuedJob" in errors_text(no_context)
    assert memory.state is FAILED and "does not support memory limits" in errors_text(memory)


def test_threaded_executor_cancels_python_code(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, "threads", Threaded, concurrency=2)
    cancelled = str(tmp_path / "cancelled")

    async def body(worker: Worker) -> QueuedJob | None:
        doomed = await chancy.push(Job(func="tests.jobs.sleep_in_steps", queue="threads",
                                       kwargs={"seconds": 30, "path": cancelled}, max_attempts=3))
        await until(lambda: lines(cancelled), timeout=10, message="the job started")
        await chancy.cancel_job(doomed)
        return await chancy.wait_for_job(doomed, timeout=10)

    doomed_job = run_worker(chancy, body)
    assert doomed_job is not None and doomed_job.state is FAILED and doomed_job.attempts == 1
    assert "cancelled" in errors_text(doomed_job)
    assert [r[2] for r in lines(cancelled)] == ["started", "JobCancelled"]


# ---------------------------------------------------------------------- async


def test_async_executor_runs_coroutines_concurrently_and_rejects_sync_functions(chancy: Chancy) -> None:
    declare(chancy, "loop", Async, concurrency=5)

    async def body(worker: Worker) -> tuple[list[QueuedJob], float, QueuedJob | None, QueuedJob | None]:
        assert isinstance(worker.executors["loop"], AsyncExecutor)
        started = time.monotonic()
        refs = [await chancy.push(Job(func="tests.jobs.async_sleep", queue="loop", kwargs={"seconds": 0.6}))
                for _ in range(5)]
        jobs = await chancy.wait_for_jobs(refs, timeout=10)
        elapsed = time.monotonic() - started
        ctx = await chancy.push(Job(func="tests.jobs.async_with_context", queue="loop"))
        sync = await chancy.push(Job(func="tests.jobs.noop", queue="loop", max_attempts=2))
        return jobs, elapsed, await chancy.wait_for_job(ctx, timeout=10), await chancy.wait_for_job(sync, timeout=10)

    jobs, elapsed, ctx_job, sync_job = run_worker(chancy, body)
    assert all(j.state is SUCCEEDED for j in jobs)
    # 5 x 0.6 s, concurrently: every job started before the first one finished.
    assert max(j.started_at for j in jobs) < min(j.completed_at for j in jobs), elapsed  # type: ignore[type-var]
    assert ctx_job is not None and ctx_job.state is SUCCEEDED and ctx_job.meta == {"injected": str(ctx_job.id)}
    assert sync_job is not None and sync_job.state is FAILED
    assert "AsyncExecutor does not support synchronous jobs: tests.jobs.noop" in errors_text(sync_job)


def test_async_executor_time_limit(chancy: Chancy) -> None:
    declare(chancy, "loop", Async)

    async def body(worker: Worker) -> QueuedJob | None:
        ref = await chancy.push(Job(func="tests.jobs.async_sleep", queue="loop", kwargs={"seconds": 30},
                                    limits=[Limit(Limit.Type.TIME, 0.5)]))
        return await chancy.wait_for_job(ref, timeout=10)

    job = run_worker(chancy, body)
    assert job is not None and job.state is FAILED
    assert "TimeoutError: the job exceeded its time limit of 0.5 s" in errors_text(job)
    assert (job.completed_at - job.started_at).total_seconds() < 3


def test_async_executor_cancel_running_job(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, "loop", Async)
    path = str(tmp_path / "cancel")

    async def body(worker: Worker) -> tuple[QueuedJob | None, QueuedJob | None]:
        ref = await chancy.push(Job(func="tests.jobs.async_cancellable", queue="loop", kwargs={"path": path},
                                    max_attempts=3))
        await until(lambda: lines(path), timeout=10, message="the job started")
        await chancy.cancel_job(ref)
        job = await chancy.wait_for_job(ref, timeout=5)
        after = await chancy.push(Job(func="tests.jobs.async_sleep", queue="loop", kwargs={"seconds": 0}))
        return job, await chancy.wait_for_job(after, timeout=10)

    job, after = run_worker(chancy, body)
    assert job is not None and job.state is FAILED and job.attempts == 1
    assert len(job.errors) == 1 and "cancelled" in job.errors[0]["traceback"]
    assert [r[2] for r in lines(path)] == ["started", "cancelled"]
    assert after is not None and after.state is SUCCEEDED
    final = chancy.sync_get_job(job.id)
    assert final is not None and final.state is FAILED and final.attempts == 1


# -------------------------------------------------------------------- process


def test_process_executor_runs_coroutine_jobs_with_limits_and_cancel(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, "default", Process, concurrency=2)
    path = str(tmp_path / "cancel")

    async def body(worker: Worker) -> list[QueuedJob | None]:
        ok = await chancy.push(Job(func="tests.jobs.async_with_context"))
        slow = await chancy.push(Job(func="tests.jobs.async_sleep", kwargs={"seconds": 30},
                                     limits=[Limit(Limit.Type.TIME, 0.5)]))
        results = [await chancy.wait_for_job(ok, timeout=10)]
        doomed = await chancy.push(Job(func="tests.jobs.async_cancellable", kwargs={"path": path}, max_attempts=3))
        await until(lambda: lines(path), timeout=10, message="the job started")
        await chancy.cancel_job(doomed)
        results.append(await chancy.wait_for_job(slow, timeout=10))
        results.append(await chancy.wait_for_job(doomed, timeout=10))
        return results

    ok_job, slow_job, doomed_job = run_worker(chancy, body)
    assert ok_job is not None and ok_job.state is SUCCEEDED and ok_job.meta == {"injected": str(ok_job.id)}
    assert slow_job is not None and slow_job.state is FAILED and "TimeoutError" in errors_text(slow_job)
    assert (slow_job.completed_at - slow_job.started_at).total_seconds() < 3
    assert doomed_job is not None and doomed_job.state is FAILED and doomed_job.attempts == 1
    assert "cancelled" in errors_text(doomed_job)
    assert [r[2] for r in lines(path)] == ["started", "cancelled"]


def test_process_children_are_replaced_after_maximum_jobs(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, "default", Process, concurrency=1, executor_options={"maximum_jobs_per_worker": 2})
    path = str(tmp_path / "pids")

    async def body(worker: Worker) -> list[QueuedJob]:
        refs = [await chancy.push(Job(func="tests.jobs.stamp", kwargs={"path": path, "value": str(i)}))
                for i in range(6)]
        return await chancy.wait_for_jobs(refs, timeout=20)

    jobs = run_worker(chancy, body)
    assert all(j.state is SUCCEEDED and j.errors == [] for j in jobs)
    assert [r[2] for r in lines(path)] == [str(i) for i in range(6)]
    by_child = pids(path)
    assert len(set(by_child)) == 3 and by_child[0] == by_child[1] != by_child[2] == by_child[3]


def test_switching_a_queue_executor_at_runtime(chancy: Chancy) -> None:
    declare(chancy, "switch", Process, concurrency=1)

    async def body(worker: Worker) -> None:
        assert isinstance(worker.executors["switch"], ProcessExecutor)
        for executor, cls, func in ((Threaded, ThreadedExecutor, "tests.jobs.noop"),
                                    (Async, AsyncExecutor, "tests.jobs.async_sleep"),
                                    (Process, ProcessExecutor, "tests.jobs.noop")):
            await chancy.declare(Queue("switch", concurrency=2, executor=executor, polling_interval=60), upsert=True)
            await until(lambda cls=cls: isinstance(worker.executors.get("switch"), cls), timeout=10,
                        message=f"the queue runs on {cls.__name__}")
            kwargs = {"seconds": 0} if func.endswith("async_sleep") else {}
            ref = await chancy.push(Job(func=func, queue="switch", kwargs=kwargs))
            job = await chancy.wait_for_job(ref, timeout=10)
            assert job is not None and job.state is SUCCEEDED, (cls, job)
        await asyncio.sleep(0)

    run_worker(chancy, body, queue_change_poll_interval=60)


def test_stop_past_shutdown_timeout_releases_thread_and_async_jobs(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, "threads", Threaded, concurrency=1)
    declare(chancy, "loop", Async, concurrency=1)
    threaded, looped = str(tmp_path / "threaded"), str(tmp_path / "looped")

    async def body(worker: Worker) -> list[str]:
        refs = [
            await chancy.push(Job(func="tests.jobs.sleep_in_steps", queue="threads",
                                  kwargs={"seconds": 60, "path": threaded})),
            await chancy.push(Job(func="tests.jobs.async_cancellable", queue="loop",
                                  kwargs={"seconds": 60, "path": looped})),
        ]
        await until(lambda: lines(threaded) and lines(looped), timeout=10, message="both jobs started")
        return [r.identifier for r in refs]

    started = time.monotonic()
    ids = run_worker(chancy, body, shutdown_timeout=0.5, stop_within=8)
    assert time.monotonic() - started < 12
    for job in chancy.sync_get_jobs(ids):
        assert job.state is QueuedJob.State.PENDING, job  # released: retryable, the attempt not counted
        assert job.attempts == 0 and job.errors == []

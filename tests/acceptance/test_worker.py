"""The worker, in-process, on real files with real child processes: context injection, ordering,
scheduling, retries, limits, cancellation, queue changes at runtime, wake-ups, a locked database."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Limit, Queue, QueuedJob
from chancy_lite.errors import MigrationsNeededError
from chancy_lite.utils import UTC
from chancy_lite.worker import Worker
from tests.conftest import wait_until
from tests.worker_support import REPO, Supervisor, gone, lines, pids, run_worker, until

SUCCEEDED, FAILED = QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED
MB = 1024 * 1024


def declare(chancy: Chancy, name: str = "default", **options: object) -> Queue:
    options.setdefault("concurrency", 1)
    options.setdefault("polling_interval", 60)
    return chancy.sync_declare(Queue(name, **options), upsert=True)  # type: ignore[arg-type]


def errors_text(job: QueuedJob) -> str:
    return "\n".join(e["traceback"] for e in job.errors)


# ------------------------------------------------------------- the job context


def test_context_is_injected_by_annotation_whatever_the_name(chancy: Chancy) -> None:
    declare(chancy, concurrency=2)
    funcs = [
        f"{module}.{name}"
        for module in ("tests.jobs", "tests.jobs_plain")  # with and without `from __future__ import annotations`
        for name in ("ctx_context", "ctx_job_info", "ctx_ctx")
    ] + ["tests.jobs_plain.ctx_string_annotation", "tests.jobs.ctx_unresolvable"]
    refs = [chancy.sync_push(Job(func=f)) for f in funcs]

    async def body(worker: Worker) -> list[QueuedJob]:
        return await chancy.wait_for_jobs(refs, timeout=20)

    jobs = run_worker(chancy, body)
    for func, job in zip(funcs, jobs, strict=True):
        assert job.state is SUCCEEDED, (func, job.errors)
        assert job.meta["injected"] == str(job.id), func


def test_generic_annotations_do_not_break_injection(chancy: Chancy) -> None:
    declare(chancy, concurrency=2)
    funcs = ["tests.jobs.ctx_generic", "tests.jobs_plain.ctx_generic"]
    refs = [chancy.sync_push(Job(func=f, kwargs={"items": ["a", "b"]})) for f in funcs]
    jobs = run_worker(chancy, lambda w: chancy.wait_for_jobs(refs, timeout=20))
    for func, job in zip(funcs, jobs, strict=True):
        assert job.state is SUCCEEDED, (func, job.errors)
        assert job.meta == {"items": ["a", "b"], "injected": str(job.id)}, func


def test_positional_parameter_annotated_queuedjob_is_not_injected(chancy: Chancy) -> None:
    declare(chancy, concurrency=2)
    funcs = ["tests.jobs.ctx_positional", "tests.jobs_plain.ctx_positional"]
    refs = [chancy.sync_push(Job(func=f)) for f in funcs]
    jobs = run_worker(chancy, lambda w: chancy.wait_for_jobs(refs, timeout=20))
    for func, job in zip(funcs, jobs, strict=True):
        assert job.state is SUCCEEDED, (func, job.errors)
        assert job.meta == {"positional": None, "injected": str(job.id)}, func


def test_context_is_frozen_but_meta_persists_after_success_and_after_an_exception(chancy: Chancy) -> None:
    declare(chancy)
    frozen = chancy.sync_push(Job(func="tests.jobs.ctx_frozen", meta={"given": 1}))
    raised = chancy.sync_push(Job(func="tests.jobs.meta_then_raise"))
    frozen_job, raised_job = run_worker(chancy, lambda w: chancy.wait_for_jobs([frozen, raised], timeout=20))

    assert frozen_job.state is SUCCEEDED, frozen_job.errors
    assert frozen_job.meta == {"given": 1, "frozen_priority": True, "frozen_meta": True, "frozen_id": True}
    assert frozen_job.priority == 0

    assert raised_job.state is FAILED
    assert "RuntimeError: the job failed" in errors_text(raised_job)
    assert raised_job.meta["status"] == "error"
    assert raised_job.meta["duration"] >= 0


# ------------------------------------------------------------------- ordering


def test_priorities_then_fifo_with_concurrency_1(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, concurrency=1)
    path = str(tmp_path / "order")
    pushed = [("a", 0), ("b", 0), ("c", 5), ("d", 1), ("e", 5), ("f", 0), ("g", -3), ("h", 1)]
    refs = [chancy.sync_push(Job(func="tests.jobs.stamp", kwargs={"path": path, "value": v}, priority=p))
            for v, p in pushed]  # all pushed before any worker runs
    jobs = run_worker(chancy, lambda w: chancy.wait_for_jobs(refs, timeout=20))
    assert all(j.state is SUCCEEDED for j in jobs)
    assert [r[2] for r in lines(path)] == ["c", "e", "d", "h", "a", "b", "f", "g"]


# ------------------------------------------------------------------ scheduling


def test_scheduled_job_starts_on_time_without_polling(chancy: Chancy) -> None:
    declare(chancy, polling_interval=60)

    async def body(worker: Worker) -> QueuedJob | None:
        await asyncio.sleep(0)
        due = dt.datetime.now(UTC) + dt.timedelta(seconds=1.5)
        ref = await chancy.push(Job(func="tests.jobs.noop", scheduled_at=due))
        pending = await chancy.get_job(ref)
        assert pending is not None and pending.state is QueuedJob.State.PENDING
        return await chancy.wait_for_job(ref, timeout=10)

    job = run_worker(chancy, body)
    assert job is not None and job.state is SUCCEEDED
    assert job.started_at is not None
    late = (job.started_at - job.scheduled_at).total_seconds()
    assert 0 <= late < 0.3, late


# --------------------------------------------------------------------- retries


def test_retries_count_attempts_then_fail(chancy: Chancy) -> None:
    declare(chancy)
    ref = chancy.sync_push(Job(func="tests.jobs.fail", kwargs={"message": "always"}, max_attempts=3))
    job = run_worker(chancy, lambda w: chancy.wait_for_job(ref, timeout=20))
    assert job.state is FAILED
    assert job.attempts == 3
    assert [e["attempt"] for e in job.errors] == [0, 1, 2]
    assert all("ValueError: always" in e["traceback"] for e in job.errors)
    assert job.completed_at is not None


def test_whatever_a_job_raises_is_recorded_and_the_child_keeps_serving(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, concurrency=1)
    path = str(tmp_path / "pids")
    cases = [
        ("tests.nope.func", {}, "ImportError"),
        ("tests.jobs.nope", {}, "ImportError"),
        ("tests.jobs.exit_job", {"code": 0}, "SystemExit: 0"),
        ("tests.jobs.exit_job", {"code": 3}, "SystemExit: 3"),
        ("tests.jobs.interrupt_job", {}, "KeyboardInterrupt"),
        ("tests.jobs.noop", {"unexpected": 1}, "unexpected keyword argument"),
    ]
    refs = [chancy.sync_push(Job(func="tests.jobs.stamp", kwargs={"path": path}))]
    refs += [chancy.sync_push(Job(func=func, kwargs=kwargs)) for func, kwargs, _ in cases]
    refs.append(chancy.sync_push(Job(func="tests.jobs.unserialisable_meta")))
    refs.append(chancy.sync_push(Job(func="tests.jobs.stamp", kwargs={"path": path})))
    jobs = run_worker(chancy, lambda w: chancy.wait_for_jobs(refs, timeout=20))
    for (func, _, expected), job in zip(cases, jobs[1:-2], strict=True):
        assert job.state is FAILED and job.attempts == 1, func
        assert expected in job.errors[0]["traceback"], (func, job.errors)
    meta_job = jobs[-2]
    assert meta_job.state is SUCCEEDED and meta_job.meta == {"when": [1, 2], "how": "(1+2j)", "ok": True}
    assert jobs[0].state is SUCCEEDED and jobs[-1].state is SUCCEEDED
    first, last = pids(path)
    assert first == last  # none of it cost the child its life


# ---------------------------------------------------------------------- limits


def test_time_limit_raises_timeouterror_in_a_sync_job(chancy: Chancy) -> None:
    declare(chancy)
    ref = chancy.sync_push(Job(func="tests.jobs.sleep", kwargs={"seconds": 30}, limits=[Limit(Limit.Type.TIME, 0.5)]))
    job = run_worker(chancy, lambda w: chancy.wait_for_job(ref, timeout=10))
    assert job.state is FAILED
    assert "TimeoutError" in errors_text(job)
    assert (job.completed_at - job.started_at).total_seconds() < 3


def test_time_limit_kills_a_job_that_ignores_it_after_the_grace_period(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, concurrency=2, executor_options={"timeout_grace": 1})
    limit = [Limit(Limit.Type.TIME, 0.5)]
    caught, blocked = str(tmp_path / "caught"), str(tmp_path / "blocked")
    stubborn = [
        chancy.sync_push(Job(func="tests.jobs.ignore_timeout", kwargs={"path": caught}, limits=limit)),
        chancy.sync_push(Job(func="tests.jobs.block_signals", kwargs={"path": blocked}, limits=limit)),
    ]

    async def body(worker: Worker) -> tuple[list[QueuedJob], QueuedJob | None]:
        jobs = await chancy.wait_for_jobs(stubborn, timeout=20)
        after = await chancy.push(Job(func="tests.jobs.noop"))  # the pool keeps working
        return jobs, await chancy.wait_for_job(after, timeout=10)

    (ignored, sigblocked), after = run_worker(chancy, body)
    assert [r[2] for r in lines(caught)] == ["caught"]  # it did get the TimeoutError, and ignored it
    assert [r[2] for r in lines(blocked)] == ["blocked"]
    for job in (ignored, sigblocked):
        assert job.state is FAILED
        assert job.attempts == 1 and len(job.errors) == 1
        assert "timed out" in errors_text(job), job.errors
        ran = (job.completed_at - job.started_at).total_seconds()
        assert 1.0 <= ran < 5, ran  # limit 0.5 s + grace 1 s
    assert after is not None and after.state is SUCCEEDED


def test_memory_limit_raises_memoryerror_then_next_job_runs_normally(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, concurrency=1)
    path = str(tmp_path / "memory")
    big = chancy.sync_push(
        Job(func="tests.jobs.allocate", kwargs={"mb": 4096, "path": path}, limits=[Limit(Limit.Type.MEMORY, 512 * MB)])
    )
    # Unlimited again: 2 GB of address space (mapped, never touched, so no RAM) must fit once the limit is restored.
    after = chancy.sync_push(
        Job(func="tests.jobs.allocate", kwargs={"mb": 2048, "path": path, "reserve_only": True})
    )
    big_job, after_job = run_worker(chancy, lambda w: chancy.wait_for_jobs([big, after], timeout=20))
    assert big_job.state is FAILED
    assert "MemoryError" in errors_text(big_job)
    assert after_job.state is SUCCEEDED, after_job.errors
    records = lines(path)
    assert [r[2] for r in records] == ["MemoryError", f"ok {2048 * MB}"]
    assert records[0][0] == records[1][0]  # the same child ran both


# ---------------------------------------------------------------- cancellation


def test_cancel_pending_job_never_runs(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, concurrency=1)
    path = str(tmp_path / "ran")
    doomed = chancy.sync_push(Job(func="tests.jobs.stamp", kwargs={"path": path, "value": "doomed"}, max_attempts=3))
    chancy.sync_cancel_job(doomed)
    marker = chancy.sync_push(Job(func="tests.jobs.stamp", kwargs={"path": path, "value": "marker"}))
    job, marker_job = run_worker(chancy, lambda w: chancy.wait_for_jobs([doomed, marker], timeout=20))
    assert marker_job.state is SUCCEEDED
    assert [r[2] for r in lines(path)] == ["marker"]  # the cancelled job, pushed first, never ran
    assert job.state is FAILED
    assert job.started_at is None
    assert "cancelled" in errors_text(job)


def test_cancel_running_process_job_interrupts_it_without_retry(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, concurrency=1)
    path = str(tmp_path / "cancel")
    ref = chancy.sync_push(Job(func="tests.jobs.cancellable", kwargs={"path": path}, max_attempts=3))

    async def body(worker: Worker) -> tuple[QueuedJob | None, QueuedJob | None]:
        await until(lambda: lines(path), timeout=15, message="the job started")
        await chancy.cancel_job(ref)
        job = await chancy.wait_for_job(ref, timeout=5)
        await until(lambda: len(lines(path)) == 2, timeout=5, message="the job saw the cancellation")
        after = await chancy.push(Job(func="tests.jobs.noop"))  # the child keeps serving
        return job, await chancy.wait_for_job(after, timeout=10)

    job, after = run_worker(chancy, body)
    assert job is not None and job.state is FAILED
    assert job.attempts == 1
    assert len(job.errors) == 1 and "cancelled" in job.errors[0]["traceback"]
    assert [r[2] for r in lines(path)] == ["started", "cancelled"]
    assert after is not None and after.state is SUCCEEDED
    final = chancy.sync_get_job(ref)
    assert final is not None and final.state is FAILED and final.attempts == 1  # no late overwrite, no retry


# ---------------------------------------------------------- runtime changes


def test_queue_reconfiguration_and_removal_at_runtime(chancy: Chancy) -> None:
    declare(chancy, "elastic", concurrency=1)

    async def body(worker: Worker) -> None:
        assert worker.executors["elastic"].concurrency == 1
        await chancy.declare(Queue("elastic", concurrency=2, polling_interval=60), upsert=True)
        await until(lambda: "elastic" in worker.executors and worker.executors["elastic"].concurrency == 2,
                    timeout=10, message="the pool was resized")
        executor = worker.executors["elastic"]
        await until(lambda: len(getattr(executor, "processes", {})) == 2, timeout=10, message="two children")
        refs = [await chancy.push(Job(func="tests.jobs.noop", queue="elastic")) for _ in range(4)]
        jobs = await chancy.wait_for_jobs(refs, timeout=10)
        assert all(j.state is SUCCEEDED for j in jobs)

        await chancy.delete_queue("elastic")
        await until(lambda: "elastic" not in worker.executors, timeout=10, message="the queue is no longer served")
        assert "default" in worker.executors

    # A long queue poll: the changes must arrive by wake-up.
    run_worker(chancy, body, queue_change_poll_interval=60)


def test_pause_with_resume_at(chancy: Chancy) -> None:
    declare(chancy, "napping", concurrency=1)

    async def body(worker: Worker) -> tuple[dt.datetime, QueuedJob | None]:
        await chancy.pause_queue("napping", resume_at=dt.timedelta(seconds=1.5))
        paused_at = dt.datetime.now(UTC)
        ref = await chancy.push(Job(func="tests.jobs.noop", queue="napping"))
        return paused_at, await chancy.wait_for_job(ref, timeout=10)

    paused_at, job = run_worker(chancy, body, queue_change_poll_interval=60)
    assert job is not None and job.state is SUCCEEDED
    waited = (job.started_at - paused_at).total_seconds()
    assert 1.4 <= waited < 10, waited  # at resume_at, not at the 60 s poll
    assert chancy.sync_get_queue("napping").state is Queue.State.ACTIVE


def test_pausing_a_queue_lets_its_running_job_finish_without_holding_up_other_queues(
    chancy: Chancy, tmp_path: Path
) -> None:
    declare(chancy, "busy", concurrency=1)
    path = str(tmp_path / "busy")

    async def body(worker: Worker) -> tuple[QueuedJob | None, QueuedJob | None, QueuedJob | None]:
        long = await chancy.push(
            Job(func="tests.jobs.pid_then_sleep", queue="busy", kwargs={"path": path, "seconds": 2})
        )
        await until(lambda: lines(path), timeout=10, message="the job started")
        await chancy.pause_queue("busy")
        await chancy.declare(Queue("other", concurrency=1, polling_interval=60))
        await until(lambda: "other" in worker.executors, timeout=10, message="the new queue is served")
        long_then = await chancy.get_job(long)  # still running: the drain did not hold up the queue watcher
        waiting = await chancy.push(Job(func="tests.jobs.noop", queue="busy"))
        long_job = await chancy.wait_for_job(long, timeout=10)
        await chancy.resume_queue("busy")
        return long_job, await chancy.wait_for_job(waiting, timeout=10), long_then

    # shutdown_timeout is far shorter than the job: pausing must not interrupt it.
    long_job, waiting_job, long_then = run_worker(chancy, body, shutdown_timeout=0.3, queue_change_poll_interval=60)
    assert long_job is not None and long_job.state is SUCCEEDED and long_job.errors == []
    assert long_then is not None and long_then.state is QueuedJob.State.RUNNING  # "other" served meanwhile
    assert waiting_job is not None and waiting_job.state is SUCCEEDED
    assert waiting_job.started_at >= long_job.completed_at  # nothing ran in the paused queue


def test_resume_while_the_old_pool_drains_keeps_the_concurrency(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, "single", concurrency=1)
    path = str(tmp_path / "single")

    async def body(worker: Worker) -> list[QueuedJob]:
        first = await chancy.push(Job(func="tests.jobs.pid_then_sleep", queue="single",
                                      kwargs={"path": path, "seconds": 1.5}))
        await until(lambda: lines(path), timeout=10, message="the job started")
        await chancy.pause_queue("single")
        await chancy.resume_queue("single")
        second = await chancy.push(Job(func="tests.jobs.pid_then_sleep", queue="single",
                                       kwargs={"path": path, "seconds": 0}))
        return await chancy.wait_for_jobs([first, second], timeout=15)

    first, second = run_worker(chancy, body, queue_change_poll_interval=60)
    assert first.state is SUCCEEDED and second.state is SUCCEEDED
    assert second.started_at >= first.completed_at  # never two at once in a queue of concurrency 1


def test_stopping_the_worker_interrupts_a_paused_queue_draining_past_shutdown_timeout(
    chancy: Chancy, tmp_path: Path
) -> None:
    declare(chancy, "busy", concurrency=1)
    path = str(tmp_path / "busy")

    async def body(worker: Worker) -> str:
        ref = await chancy.push(
            Job(func="tests.jobs.pid_then_sleep", queue="busy", kwargs={"path": path, "seconds": 60})
        )
        await until(lambda: lines(path), timeout=10, message="the job started")
        await chancy.pause_queue("busy")
        await until(lambda: "busy" not in worker.executors, timeout=10, message="the queue is paused")
        return ref.identifier

    started = time.monotonic()
    job_id = run_worker(chancy, body, shutdown_timeout=0.5, stop_within=8)
    assert time.monotonic() - started < 15
    job = chancy.sync_get_job(job_id)
    assert job is not None and job.state is QueuedJob.State.PENDING and job.errors == []  # released, retryable
    assert gone(pids(path)[0])


# --------------------------------------------------------------------- wake-ups


PUSHER = textwrap.dedent(
    """
    import sys, time
    from chancy_lite import Chancy, Job
    with Chancy(sys.argv[1]) as chancy:
        chancy.sync_get_all_queues()  # open the connection first
        before = time.time()
        chancy.sync_push(Job(func="tests.jobs.stamp", kwargs={"path": sys.argv[2]}))
        print(before, flush=True)
    """
)


def test_push_from_another_process_wakes_the_worker(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    declare(chancy, concurrency=1, polling_interval=60)
    path = str(tmp_path / "woken")

    async def body(worker: Worker) -> float:
        first = await chancy.push(Job(func="tests.jobs.noop"))  # the child is up, and idle once this is done
        assert (await chancy.wait_for_job(first, timeout=15)).state is SUCCEEDED  # type: ignore[union-attr]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUSHER, db_path, path, cwd=REPO, stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        await until(lambda: lines(path), timeout=5, message="the job ran")
        return float(out.decode().strip())

    pushed_at = run_worker(chancy, body)
    started_at = float(lines(path)[0][1])
    assert 0 <= started_at - pushed_at < 0.5, started_at - pushed_at


def test_in_process_push_to_start_latency(chancy: Chancy) -> None:
    declare(chancy, concurrency=1, polling_interval=60)

    async def body(worker: Worker) -> list[float]:
        latencies = []
        for _ in range(50):
            ref = await chancy.push(Job(func="tests.jobs.noop"))
            job = await chancy.wait_for_job(ref, timeout=10)
            assert job is not None and job.state is SUCCEEDED
            latencies.append((job.started_at - job.created_at).total_seconds())
        return latencies

    latencies = run_worker(chancy, body)
    assert statistics.median(latencies) < 0.05, sorted(latencies)


def test_two_workers_on_one_file_run_each_job_once(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    declare(chancy, concurrency=2)
    path, long_path = str(tmp_path / "runs"), str(tmp_path / "long")
    long = chancy.sync_push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": long_path, "seconds": 1.5}))
    with Supervisor(db_path, "--queue", "default:2", log_path=tmp_path / "supervisor.log") as other:
        other.wait_ready()
        wait_until(lambda: pids(long_path), timeout=15, message="the other worker runs the long job")

        async def body(worker: Worker) -> list[QueuedJob]:
            # This worker started (and ran recover_orphans) while the other holds a live job: not recovered.
            held = await chancy.get_job(long)
            assert held is not None and held.state is QueuedJob.State.RUNNING and held.errors == []
            refs = [ref async for batch in chancy.push_many(
                [Job(func="tests.jobs.stamp", kwargs={"path": path, "value": str(i)}) for i in range(60)]
            ) for ref in batch]
            return await chancy.wait_for_jobs([*refs, long], timeout=30)

        jobs = run_worker(chancy, body)
        other.signal(signal.SIGTERM)
        assert other.wait(15) == 0
    assert all(j.state is SUCCEEDED and j.attempts == 1 and j.errors == [] for j in jobs)
    values = [r[2] for r in lines(path)]
    assert sorted(values, key=int) == [str(i) for i in range(60)]  # each job ran exactly once


# ------------------------------------------------------------ a locked database


LOCKER = textwrap.dedent(
    """
    import sys, time, apsw
    conn = apsw.Connection(sys.argv[1])
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
    print("unlocked", flush=True)
    """
)


def test_worker_rides_out_a_locked_database(db_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A short busy timeout, so the worker and its children see "database is locked" and must retry.
    with Chancy(db_path, busy_timeout=0.2) as chancy:
        chancy.sync_migrate()
        declare(chancy, concurrency=2)
        path = str(tmp_path / "ran")

        async def body(worker: Worker) -> None:
            refs = [await chancy.push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": path, "seconds": 0.2}))
                    for _ in range(8)]
            locker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOCKER, db_path, "3", stdout=subprocess.PIPE,
            )
            assert locker.stdout is not None
            assert (await locker.stdout.readline()).strip() == b"locked"
            out, _ = await locker.communicate()
            assert out.strip() == b"unlocked" and locker.returncode == 0
            assert len(lines(path)) < 8  # the lock did get in the way
            jobs = await chancy.wait_for_jobs(refs, timeout=20)
            assert all(j.state is SUCCEEDED for j in jobs), [j.errors for j in jobs]
            assert not worker._stopped.is_set()
            assert len(worker.executors["default"].processes) == 2  # type: ignore[attr-defined]
            after = await chancy.push(Job(func="tests.jobs.noop"))
            assert (await chancy.wait_for_job(after, timeout=10)).state is SUCCEEDED  # type: ignore[union-attr]

        run_worker(chancy, body, heartbeat_poll_interval=0.3)
    assert "database busy" in caplog.text  # the supervisor did meet the lock, and retried


# ----------------------------------------------------- identity, tags, events


def test_worker_on_an_unmigrated_file_refuses_to_start(db_path: str) -> None:
    with Chancy(db_path) as chancy, pytest.raises(MigrationsNeededError):
        run_worker(chancy, lambda w: asyncio.sleep(0))


def test_start_declares_default_tags_events_and_worker_listing(chancy: Chancy) -> None:
    with pytest.raises(KeyError):
        chancy.sync_get_queue("default")
    declare(chancy, "elsewhere", tags={"nomatch"})
    declare(chancy, "tagged", tags={"region=eu.*"})
    events: list[str] = []
    stranded = chancy.sync_push(Job(func="tests.jobs.noop", queue="elsewhere"))

    async def body(worker: Worker) -> None:
        assert chancy.sync_get_queue("default") == Queue("default")
        tags = worker.worker_tags()
        assert {"*", f"worker_id={worker.worker_id}", "region=eu-west"} <= tags
        for prefix in ("hostname=", "python=", "os=", "arch="):
            assert any(t.startswith(prefix) for t in tags), prefix
        assert set(worker.executors) == {"default", "tagged"}
        assert sorted(events) == ["worker.queue.started", "worker.queue.started", "worker.started"]
        workers = await chancy.get_all_workers()
        assert [w["worker_id"] for w in workers] == [worker.worker_id]
        assert workers[0]["tags"] == tags
        assert sorted(workers[0]["queues"]) == ["default", "tagged"]
        ref = await chancy.push(Job(func="tests.jobs.noop", queue="tagged"))
        assert (await chancy.wait_for_job(ref, timeout=10)).state is SUCCEEDED  # type: ignore[union-attr]

    async def main() -> None:
        worker = Worker(chancy, register_signal_handlers=False, tags=["region=eu-west"])
        for name in ("worker.started", "worker.stopped", "worker.queue.started"):
            worker.hub.on(name, lambda event: events.append(event.name))
        async with worker:
            await body(worker)
        assert events[-1] == "worker.stopped"

    asyncio.run(main())
    job = chancy.sync_get_job(stranded)
    assert job is not None and job.state is QueuedJob.State.PENDING  # nobody serves "elsewhere"
    assert chancy.sync_get_all_workers() == []  # the stopped worker removed its row


def test_stop_says_whether_every_job_finished_in_time(chancy: Chancy, tmp_path: Path) -> None:
    """Chancy 0.26: ``stop()`` returns True for a clean drain, False when jobs had to be interrupted (and the hub
    says ``worker.shutdown_timeout`` instead of ``worker.stopped``)."""
    declare(chancy, "default", concurrency=1)
    path = str(tmp_path / "runs")

    async def run(seconds: float) -> tuple[bool, list[str]]:
        worker = Worker(chancy, register_signal_handlers=False, shutdown_timeout=0.5)
        seen: list[str] = []
        for event in ("worker.stopped", "worker.shutdown_timeout"):
            worker.hub.on(event, lambda ev, seen=seen: seen.append(ev.name))
        await worker.start()
        if seconds:
            await chancy.push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": path, "seconds": seconds},
                                  max_attempts=2))
            await until(lambda: lines(path), message="the job started")
        await worker.flush()  # nothing waits in the supervisor: returns at once
        return await worker.stop(), seen

    assert asyncio.run(run(0)) == (True, ["worker.stopped"])
    assert asyncio.run(run(30)) == (False, ["worker.shutdown_timeout"])

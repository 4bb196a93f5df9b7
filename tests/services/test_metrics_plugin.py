"""The Metrics plugin in a worker: its pass (sizes on the leader, writes and expiry when due, backoff after a failed
write), the Worker's metric methods through the hub, runs counted by real children (and the job of a child that
died), and every executor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from chancy_lite import Chancy, Job, Queue
from chancy_lite.plugins.metrics import Metrics
from chancy_lite.plugins.metrics.store import MetricsStore
from chancy_lite.testing import Clock
from chancy_lite.worker import Worker
from tests.worker_support import run_worker, until


@pytest.fixture
def plugged(db_path: str, clock: Clock) -> Iterator[tuple[Chancy, Metrics]]:
    metrics = Metrics()
    with Chancy(db_path, clock=clock, plugins=[metrics], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        yield chancy, metrics


def test_a_pass_samples_sizes_on_the_leader_and_writes_when_due(plugged: tuple[Chancy, Metrics], clock: Clock,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    app, metrics = plugged
    worker = Worker(app, register_signal_handlers=False)

    async def steps() -> list[tuple[float, int]]:
        worker.is_leader.set()
        seen = [(await metrics.tick(worker, app.now()), metrics.buffered())]  # the first pass: nothing due yet
        clock.advance(30)
        seen.append((await metrics.tick(worker, app.now()), metrics.buffered()))  # sampled, kept until the write
        clock.advance(30)
        seen.append((await metrics.tick(worker, app.now()), metrics.buffered()))  # sampled again, then written
        worker.is_leader.clear()
        clock.advance(30)
        seen.append((await metrics.tick(worker, app.now()), metrics.buffered()))  # not the leader: not sampled
        return seen

    (first, none), (second, sampled), (third, left), (fourth, still) = asyncio.run(steps())
    assert (first, none) == (30.0, 0)  # the next pass is due when the sizes are (every 30 s)
    assert second == 30.0 and sampled > 0  # then the write (every 60 s), 30 s away
    assert (third, left) == (30.0, 0)
    assert (fourth, still) == (30.0, 0)
    assert "table:jobs:total_size_bytes" in metrics.sync_list_metrics(app)

    def broken(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(MetricsStore, "add_to_buckets", broken)
    metrics.sync_increment_counter("pending", 1)

    async def failing() -> list[float]:
        delays = []
        for _ in range(5):
            clock.advance(microseconds=metrics._runtime.next_sync - app.now())
            await metrics.tick(worker, app.now())
            delays.append(metrics._runtime.sync_delay)
        return delays

    assert asyncio.run(failing()) == [120.0, 240.0, 300.0, 300.0, 300.0]  # doubling, at most 300 s (as 0.26)
    assert metrics.buffered() == 4  # kept for the next attempt


def test_worker_methods_record_through_the_hub_under_the_workers_id(db_path: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    with Chancy(db_path, plugins=[metrics], no_default_plugins=True) as app:
        app.sync_migrate()

        async def body(worker: Worker) -> str:
            await worker.increment_counter("orders:placed", 2)
            await worker.increment_counter("orders:placed", 1)
            await worker.record_gauge("orders:open", 5, unit="orders")
            await worker.record_histogram_value("orders:value", 9.5, unit="eur")
            await worker.increment_counter("orders:bad", float("nan"))  # dropped with a warning
            return worker.worker_id

        with caplog.at_level(logging.WARNING, "chancy_lite.plugins.metrics"):
            worker_id = run_worker(app, body)  # stopping writes the buffer
        assert "metrics.counter event was dropped" in caplog.text
        report = metrics.sync_get_metrics(app, "orders", worker_id, resolution="1min")
        assert {k: (m.unit, m.summary) for k, m in report["series"].items()} == {
            "orders:placed": ("count", 3), "orders:open": ("orders", 5),
            "orders:value": ("eur", {"count": 1, "sum": 9.5, "avg": 9.5, "min": 9.5, "max": 9.5})}
        assert metrics.buffered() == 0


def counted(app: Chancy, metrics: Metrics, prefix: str = "global") -> dict[str, Any]:
    report = metrics.sync_get_metrics(app, prefix, resolution="1hour")
    return {key: m.summary for key, m in report["series"].items()}


@pytest.mark.parametrize("executor", ["process", "threaded", "async"])
def test_children_count_the_runs(db_path: str, executor: str) -> None:
    metrics = Metrics()
    with Chancy(db_path, plugins=[metrics], no_default_plugins=True) as app:
        app.sync_migrate()
        kinds = {"process": Chancy.Executor.Process, "threaded": Chancy.Executor.Threaded,
                 "async": Chancy.Executor.Async}
        app.sync_declare(Queue("default", concurrency=2, executor=kinds[executor]), upsert=True)
        func = "tests.jobs.async_sleep" if executor == "async" else "tests.jobs.sleep"
        jobs = [Job(func=func, kwargs={"seconds": 0.01}) for _ in range(20)]
        jobs += [Job(func="tests.jobs.fail") for _ in range(3)]
        refs = [ref for batch in app.sync_push_many(jobs) for ref in batch]
        want = {"global:status:succeeded": 20, "global:status:failed": 3}

        async def body(worker: Worker) -> dict[str, Any]:
            await app.wait_for_jobs(refs, timeout=30)
            # Children write their counts when they go idle, at once after the last job.
            return await until(lambda: counted(app, metrics) == want, timeout=15,
                               message=f"counts {counted(app, metrics)}")

        assert run_worker(app, body)
        by_queue = counted(app, metrics, "queue:default")
        assert by_queue["queue:default:throughput"] == 23
        assert by_queue["queue:default:execution_time"]["count"] == 23
        assert counted(app, metrics, f"job:{func}:execution_time")[f"job:{func}:execution_time"]["min"] >= 0.01


def test_the_job_of_a_child_that_died_is_counted_by_its_supervisor(db_path: str) -> None:
    """The supervisor writes the dead child's job failed, and counts it. (What the dead child had counted and not
    written yet, up to its last second of runs, is lost: this child dies on its first job, so there is none.)"""
    metrics = Metrics()
    with Chancy(db_path, plugins=[metrics], no_default_plugins=True) as app:
        app.sync_migrate()
        app.sync_declare(Queue("default", concurrency=1), upsert=True)
        refs = [app.sync_push(Job(func="tests.jobs.die", priority=1))]
        refs += [ref for batch in app.sync_push_many([Job(func="tests.jobs.noop") for _ in range(5)]) for ref in batch]
        want = {"global:status:succeeded": 5, "global:status:failed": 1}

        async def body(worker: Worker) -> bool:
            await app.wait_for_jobs(refs, timeout=30)
            return await until(lambda: counted(app, metrics) == want, timeout=15,
                               message=f"counts {counted(app, metrics)}")

        assert run_worker(app, body)
        died = counted(app, metrics, "job:tests.jobs.die")
        assert died["job:tests.jobs.die:failed"] == 1 and died["job:tests.jobs.die:execution_time"]["count"] == 1


def test_counts_do_not_wait_for_the_end_of_a_long_job(db_path: str) -> None:
    """A child writes what it counted when it claims, or is running, a job that may run long (one it has not seen,
    or has seen run half a second or more), so the counts of the jobs before it show while it runs."""
    metrics = Metrics()
    with Chancy(db_path, plugins=[metrics], no_default_plugins=True) as app:
        app.sync_migrate()
        app.sync_declare(Queue("default", concurrency=1), upsert=True)
        jobs = [Job(func="tests.jobs.noop", priority=1) for _ in range(30)]
        jobs.append(Job(func="tests.jobs.sleep", kwargs={"seconds": 30}))  # last: claimed in a batch with noops
        [refs] = list(app.sync_push_many(jobs))

        async def body(worker: Worker) -> None:
            try:
                # Started: the batch's other jobs are written (the child's batch watcher saw it run long).
                await until(lambda: app.sync_get_job(refs[-1]).started_at is not None,  # type: ignore[union-attr]
                            timeout=20)
                await until(lambda: counted(app, metrics).get("global:status:succeeded") == 30, timeout=20,
                            message=f"counts while the long job runs: {counted(app, metrics)}")
            finally:
                await app.cancel_job(refs[-1])

        run_worker(app, body, stop_within=10)

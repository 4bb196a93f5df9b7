"""Metrics on one real file, time injected: counts equal to the runs by state, function and queue (retries,
refused results and rolled-back writes included), exact histograms, merging over workers, storage that stays
bounded over simulated days, table sizes, conflicts and the buffer limit, migrations."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from typing import Any

import apsw
import pytest

from chancy_lite import Chancy, Job, Queue
from chancy_lite.errors import DatabaseBusyError
from chancy_lite.plugins.metrics import Metrics
from chancy_lite.plugins.metrics.store import MetricsStore
from chancy_lite.testing import Clock, drain
from tests import metrics_jobs
from tests.hook_plugins import Recorder

UTC = dt.UTC
START = dt.datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[Clock]:
    clock = Clock(START)
    metrics_jobs.CLOCK = clock
    yield clock
    metrics_jobs.CLOCK = None


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def app(db_path: str, clock: Clock, metrics: Metrics) -> Iterator[Chancy]:
    with Chancy(db_path, clock=clock, plugins=[metrics], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        metrics.sync_flush(chancy)  # metrics recorded on the plugin from now on use the app's clock
        yield chancy


def push(app: Chancy, func: str, n: int, **fields: Any) -> None:
    for _ in app.sync_push_many([Job(func=func, **fields) for _ in range(n)]):
        pass


def summaries(metrics: Metrics, app: Chancy, prefix: str | None = None, worker_id: str | None = None,
              **kwargs: Any) -> dict[str, Any]:
    report = metrics.sync_get_metrics(app, prefix, worker_id, **kwargs)
    return {key: metric.summary for key, metric in report["series"].items()}


def rows(app: Chancy) -> int:
    return app.sync_run_store(MetricsStore(app.prefix).count_rows)


# ------------------------------------------------------------------ counts


def test_counts_equal_the_runs_by_state_function_and_queue(app: Chancy, metrics: Metrics) -> None:
    app.sync_declare(Queue("other"))
    push(app, "tests.jobs.noop", 7)
    push(app, "tests.jobs.fail", 3)  # one attempt: failed
    push(app, "tests.jobs.fail", 2, max_attempts=3)  # retried at once: retrying, retrying, failed
    push(app, "tests.jobs.noop", 4, queue="other")
    assert len(drain(app)) == 12 and len(drain(app, "other")) == 4
    for resolution in ("1min", "5min", "1hour", "1day"):
        assert summaries(metrics, app, resolution=resolution) == {
            "global:status:succeeded": 11, "global:status:failed": 5, "global:status:retrying": 4,
            "job:tests.jobs.noop:succeeded": 11, "job:tests.jobs.fail:failed": 5, "job:tests.jobs.fail:retrying": 4,
            "queue:default:succeeded": 7, "queue:default:failed": 5, "queue:default:retrying": 4,
            "queue:default:throughput": 16, "queue:other:succeeded": 4, "queue:other:throughput": 4,
            # Retrying runs have no end (completed_at), so they are not timed (as Chancy).
            "job:tests.jobs.noop:execution_time": {"count": 11, "sum": 0.0, "avg": 0.0, "min": 0.0, "max": 0.0},
            "job:tests.jobs.fail:execution_time": {"count": 5, "sum": 0.0, "avg": 0.0, "min": 0.0, "max": 0.0},
            "queue:default:execution_time": {"count": 12, "sum": 0.0, "avg": 0.0, "min": 0.0, "max": 0.0},
            "queue:other:execution_time": {"count": 4, "sum": 0.0, "avg": 0.0, "min": 0.0, "max": 0.0},
        }, resolution


def test_histograms_hold_count_sum_min_and_max_of_the_run_times(app: Chancy, metrics: Metrics) -> None:
    for seconds in (0.5, 2.0, 1.25):
        app.sync_push(Job(func="tests.metrics_jobs.take", kwargs={"seconds": seconds}))
    app.sync_push(Job(func="tests.metrics_jobs.take_then_fail", kwargs={"seconds": 4.0}))
    drain(app)
    found = summaries(metrics, app, "job", resolution="1hour")
    assert found["job:tests.metrics_jobs.take:execution_time"] == {
        "count": 3, "sum": 3.75, "avg": 1.25, "min": 0.5, "max": 2.0}
    assert found["job:tests.metrics_jobs.take_then_fail:execution_time"] == {
        "count": 1, "sum": 4.0, "avg": 4.0, "min": 4.0, "max": 4.0}
    queue = summaries(metrics, app, "queue:default:execution_time", resolution="1hour")
    assert queue == {"queue:default:execution_time": {"count": 4, "sum": 7.75, "avg": 7.75 / 4, "min": 0.5,
                                                      "max": 4.0}}


def test_points_fall_in_the_buckets_of_their_time(app: Chancy, metrics: Metrics, clock: Clock) -> None:
    push(app, "tests.jobs.noop", 2)
    drain(app)
    clock.advance(minutes=3)
    push(app, "tests.jobs.noop", 5)
    drain(app)
    series = metrics.sync_get_metrics(app, "global:status:succeeded", resolution="1min")["series"]
    points = series["global:status:succeeded"].data
    assert [(p.timestamp, p.value) for p in points] == [
        (dt.datetime(2030, 1, 1, 12, 0, tzinfo=UTC), 2), (dt.datetime(2030, 1, 1, 12, 3, tzinfo=UTC), 5)]
    assert points[1].sampled_at == clock()
    assert summaries(metrics, app, "global:status:succeeded", resolution="5min") == {"global:status:succeeded": 7}
    # A window that holds only the first bucket.
    only_first = summaries(metrics, app, "global:status:succeeded", resolution="1min",
                           end=dt.datetime(2030, 1, 1, 12, 1, tzinfo=UTC), limit=1)
    assert only_first == {"global:status:succeeded": 2}


def test_a_refused_result_is_not_counted(app: Chancy, metrics: Metrics) -> None:
    """A job cancelled while it runs: its result is refused (chancy_lite's fence), so it is no update (0.26)."""
    app.sync_push(Job(func="tests.jobs.cancel_myself", kwargs={"db": app.path}))
    push(app, "tests.jobs.noop", 1)
    drain(app)
    assert summaries(metrics, app, "global") == {"global:status:succeeded": 1}


def test_a_write_rolled_back_and_tried_again_counts_once(db_path: str, clock: Clock, tmp_path: Any) -> None:
    metrics = Metrics()
    failing = Recorder(db_path, fail_in_transaction=2, counter=str(tmp_path / "failures"))
    with Chancy(db_path, clock=clock, plugins=[metrics, failing], no_default_plugins=True) as app:
        app.sync_migrate()
        push(app, "tests.jobs.noop", 5)
        drain(app)
        assert (tmp_path / "failures").read_text() == "xx"
        assert summaries(metrics, app, "global") == {"global:status:succeeded": 5}


# ------------------------------------------------------------------ workers, own metrics


def test_workers_rows_are_merged_when_read_and_can_be_read_alone(app: Chancy, metrics: Metrics,
                                                                 clock: Clock) -> None:
    now = app.now()
    metrics.observe("counter", "mine:c", 2, "count", worker_id="a", at=now)
    metrics.observe("counter", "mine:c", 3, "count", worker_id="b", at=now)
    metrics.observe("gauge", "mine:g", 10, "bytes", worker_id="a", at=now + 2_000_000)
    metrics.observe("gauge", "mine:g", 20, "bytes", worker_id="b", at=now + 1_000_000)
    metrics.observe("histogram", "mine:h", 1.5, "s", worker_id="a", at=now)
    metrics.observe("histogram", "mine:h", 0.5, "s", worker_id="b", at=now)
    metrics.observe("histogram", "mine:h", 4.0, "s", worker_id="b", at=now)
    assert metrics.sync_flush(app) == 3 * 2 * 4  # a row per key, worker and resolution
    assert summaries(metrics, app, "mine") == {
        "mine:c": 5, "mine:g": 10, "mine:h": {"count": 3, "sum": 6.0, "avg": 2.0, "min": 0.5, "max": 4.0}}
    assert summaries(metrics, app, "mine", "b") == {
        "mine:c": 3, "mine:g": 20, "mine:h": {"count": 2, "sum": 4.5, "avg": 2.25, "min": 0.5, "max": 4.0}}
    assert summaries(metrics, app, "mine", "nobody") == {"mine:c": 0, "mine:g": None, "mine:h": None}
    report = metrics.sync_get_metrics(app, "mine:g")
    gauge = report["series"]["mine:g"]
    assert (gauge.type, gauge.unit, gauge.aggregation) == ("gauge", "bytes", "last")
    assert report["resolution"] == "5min" and report["generated_at"] == clock()
    assert report["end"] - report["start"] == dt.timedelta(days=1)


def test_own_metrics_recorded_on_the_plugin_use_the_apps_clock(app: Chancy, metrics: Metrics, clock: Clock) -> None:
    clock.advance(minutes=30)
    metrics.sync_increment_counter("orders:placed", 3)
    metrics.sync_record_gauge("orders:open", 7)
    metrics.sync_record_histogram_value("orders:value", 12.5, unit="eur")
    metrics.sync_flush(app)
    report = metrics.sync_get_metrics(app, "orders", resolution="1min", limit=1)
    assert {k: (m.type, m.unit, m.summary) for k, m in report["series"].items()} == {
        "orders:placed": ("counter", "count", 3), "orders:open": ("gauge", "number", 7),
        "orders:value": ("histogram", "eur", {"count": 1, "sum": 12.5, "avg": 12.5, "min": 12.5, "max": 12.5})}
    assert report["series"]["orders:placed"].data[0].sampled_at == clock()
    assert metrics.sync_list_metrics(app) == ["orders:open", "orders:placed", "orders:value"]


def test_prefixes_select_whole_segments_and_more_than_100_keys_is_refused(app: Chancy, metrics: Metrics) -> None:
    for key in ("a:b", "a:b:c", "a:bc", "ab"):
        metrics.sync_increment_counter(key, 1)
    for i in range(100):
        metrics.sync_increment_counter(f"many:{i}", 1)
    metrics.sync_flush(app)
    assert set(summaries(metrics, app, "a:b")) == {"a:b", "a:b:c"}
    assert set(summaries(metrics, app, "a")) == {"a:b", "a:b:c", "a:bc"}
    assert len(summaries(metrics, app, "many")) == 100
    with pytest.raises(ValueError, match="more than 100"):
        metrics.sync_get_metrics(app)
    with pytest.raises(ValueError, match="metric_prefix"):
        metrics.sync_get_metrics(app, "")


def test_conflicting_types_and_a_full_buffer_are_dropped_with_a_warning(
    app: Chancy, metrics: Metrics, db_path: str, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.sync_increment_counter("x", 1)
    with caplog.at_level(logging.WARNING, "chancy_lite.plugins.metrics"):
        metrics.sync_record_gauge("x", 5)
    assert "is a counter" in caplog.text
    metrics.sync_flush(app)
    # Another process (another plugin object) defines "y" one way; ours records it another.
    other = Metrics()
    other.sync_flush(app)
    other.sync_record_gauge("y", 1)
    other.sync_flush(app)
    metrics._runtime.warned_at = -1e9
    caplog.clear()
    with caplog.at_level(logging.WARNING, "chancy_lite.plugins.metrics"):
        metrics.sync_increment_counter("y", 1)
        assert metrics.sync_flush(app) == 0
    assert "stored with another type" in caplog.text
    assert summaries(metrics, app, "y") == {"y": 1}  # the gauge
    tiny = Metrics(max_buffered_points=6)  # (on the wall clock: this one never met the app)
    tiny.sync_increment_counter("one", 1)  # 4 buckets, one per resolution
    caplog.clear()
    with caplog.at_level(logging.WARNING, "chancy_lite.plugins.metrics"):
        tiny.sync_increment_counter("two", 1)  # 4 more would be 8
    assert "buffer is full" in caplog.text and tiny.buffered() == 4
    with pytest.raises(ValueError):
        metrics.sync_increment_counter("bad\x00key", 1)


def test_a_failed_flush_keeps_the_buffer(app: Chancy, metrics: Metrics, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics.sync_increment_counter("kept", 2)

    def broken(*args: Any) -> None:
        raise apsw.BusyError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(MetricsStore, "add_to_buckets", broken)
        with pytest.raises(DatabaseBusyError):  # apsw's error, as the app's methods translate it
            metrics.sync_flush(app)
    metrics.sync_increment_counter("kept", 1)
    assert metrics.sync_flush(app) == 4
    assert summaries(metrics, app, "kept") == {"kept": 3}


# ------------------------------------------------------------------ bounded storage


def test_storage_stays_bounded_over_simulated_days(db_path: str, clock: Clock) -> None:
    points = {"1min": 5, "5min": 6, "1hour": 4, "1day": 3}
    metrics = Metrics(max_points_per_resolution=points, maximum_metric_age=2 * 86_400)
    with Chancy(db_path, clock=clock, plugins=[metrics], no_default_plugins=True) as app:
        app.sync_migrate()
        counts = []
        for step in range(10 * 24 * 4):  # ten days, every 15 minutes
            app.sync_push(Job(func="tests.jobs.noop"))
            if step % 8 == 0:
                app.sync_push(Job(func="tests.jobs.fail"))
            metrics.sync_record_gauge("queue:depth", step)
            if step < 24 * 4:  # a key recorded on the first day only: its rows and definition go
                metrics.sync_increment_counter("first:day", 1)
            drain(app)
            metrics.sync_flush(app)
            metrics.sync_cleanup(app)
            counts.append(rows(app))
            clock.advance(minutes=15)
        keys = metrics.sync_list_metrics(app)
        # Per key and resolution, at most its points (1day: the 2-day maximum age allows 2 buckets plus the
        # current one's, at most 3); one writer per key.
        bound = len(keys) * sum(points.values())
        assert max(counts) <= bound + 4 * sum(points.values())  # keys come and go: first:day counted at its peak
        assert max(counts[-4 * 24 * 5:]) <= bound  # the last five days: flat, within the bound
        assert "first:day" not in keys
        assert counts[-1] == counts[-97]  # a day apart: the same number of rows
        # The day keeps today's and yesterday's buckets (2 days old at most); the last step ran at 11:45 today.
        assert summaries(metrics, app, "global:status:succeeded", resolution="1day", limit=3) == {
            "global:status:succeeded": 48 + 96}


def test_cleanup_returns_none_when_nothing_expired(app: Chancy, metrics: Metrics) -> None:
    assert metrics.sync_cleanup(app) is None


# ------------------------------------------------------------------ sizes, schema


def test_table_and_file_sizes_are_gauges_in_bytes(app: Chancy, metrics: Metrics, db_path: str) -> None:
    import asyncio

    push(app, "tests.jobs.noop", 200)
    assert asyncio.run(metrics.collect(app, worker_id="w")) == 3 * 7 + 3
    metrics.sync_flush(app)
    found = summaries(metrics, app, "table:jobs")
    assert found["table:jobs:table_size_bytes"] > 0 and found["table:jobs:index_size_bytes"] > 0
    assert found["table:jobs:total_size_bytes"] == (found["table:jobs:table_size_bytes"]
                                                    + found["table:jobs:index_size_bytes"])
    assert set(summaries(metrics, app, "table")) >= {f"table:{t}:total_size_bytes" for t in (
        "jobs", "queues", "workers", "leader", "queue_rate_limits", "metrics", "metric_definitions")}
    database = summaries(metrics, app, "database")
    # Sampled before the flush wrote more.
    assert 0 < database["database:file_size_bytes"] <= os.path.getsize(db_path)
    assert 0 < database["database:wal_size_bytes"] <= os.path.getsize(db_path + "-wal")
    assert database["database:free_bytes"] >= 0


def test_migrating_down_drops_the_tables_and_up_again_restores_them(app: Chancy) -> None:
    def tables() -> set[str]:
        with app.connection() as conn:
            return {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}

    assert {"chancy_metrics", "chancy_metric_definitions"} <= tables()
    app.sync_migrate(to_version=0)
    assert not {"chancy_metrics", "chancy_metric_definitions"} & tables()
    assert app.sync_migrate()[-1] == "metrics 0 -> 1"


def test_a_count_that_cannot_be_written_never_fails_the_jobs_write(app: Chancy, metrics: Metrics,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with app.connection() as conn, conn:
        conn.execute("DROP TABLE chancy_metrics")  # damaged by hand
    push(app, "tests.jobs.noop", 3)
    with caplog.at_level(logging.WARNING, "chancy_lite.plugins.metrics"):
        done = drain(app)
    assert [job.state.value for job in done] == ["succeeded"] * 3
    assert "could not write the metrics of 1 runs" in caplog.text  # the first; the other two silently


def test_the_pruners_pass_cleans_the_metrics_up(db_path: str, clock: Clock) -> None:
    import asyncio

    from chancy_lite.plugins.pruner import Pruner

    metrics = Metrics(max_points_per_resolution={"1min": 2, "5min": 2, "1hour": 2, "1day": 2})
    with Chancy(db_path, clock=clock, plugins=[metrics, Pruner()], no_default_plugins=True) as app:
        app.sync_migrate()
        metrics.sync_flush(app)
        metrics.sync_increment_counter("old", 1)
        metrics.sync_flush(app)
        clock.advance(days=3)
        assert asyncio.run(Pruner.cleanup_plugins(app)) == {"chancy.metrics": 4 + 1}  # its rows, its definition
        assert rows(app) == 0 and metrics.sync_list_metrics(app) == []

"""The Metrics plugin's pure parts: constructor validation (Chancy 0.26's), retention and window math, the checks on
keys, units and values, ``Metric`` summaries, the buffer and the run tally with its commit/rollback rules."""

from __future__ import annotations

import datetime as dt
import math
import pickle
from typing import Any

import pytest

from chancy_lite.hooks import FinishedRun
from chancy_lite.plugins.metrics import Metric, MetricPoint, Metrics
from chancy_lite.plugins.metrics.model import Cell, bucket_start, check_key, check_unit, check_value, matches
from chancy_lite.plugins.metrics.recording import Buffer, RunTally, count
from chancy_lite.utils import to_micros

UTC = dt.UTC
NOW = dt.datetime(2030, 1, 1, 12, 34, 56, 789000, tzinfo=UTC)  # inside a 1min, 5min, 1hour and 1day bucket
S = 1_000_000


# ------------------------------------------------------------------ constructor


def test_defaults_are_chancys() -> None:
    m = Metrics()
    assert (m.sync_interval, m.maximum_metric_age, m.collection_interval, m.max_buffered_points) == (
        60, 90 * 86400, 30, 10_000)
    assert m.max_points == {"1min": 60, "5min": 288, "1hour": 168, "1day": 90}
    assert m.get_identifier() == "chancy.metrics"
    assert m.get_tables() == ["metrics", "metric_definitions"]
    assert m.migrate_key() == "metrics"


def test_points_are_laid_over_the_defaults() -> None:
    assert Metrics(max_points_per_resolution={"1min": 5}).max_points == {"1min": 5, "5min": 288, "1hour": 168,
                                                                         "1day": 90}


@pytest.mark.parametrize("kwargs", [
    {"sync_interval": 0}, {"sync_interval": -1}, {"sync_interval": math.nan}, {"sync_interval": math.inf},
    {"sync_interval": True}, {"sync_interval": "60"}, {"maximum_metric_age": 0}, {"collection_interval": -5},
    {"max_buffered_points": 0}, {"max_buffered_points": 1.5}, {"max_buffered_points": True},
    {"max_points_per_resolution": {"1min": 0}}, {"max_points_per_resolution": {"1min": -3}},
    {"max_points_per_resolution": {"1min": 2.5}}, {"max_points_per_resolution": {"2min": 10}},
    {"max_points_per_resolution": {"1min": True}},
])
def test_a_bad_option_raises_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Metrics(**kwargs)


def test_the_plugin_pickles_for_children_without_its_buffer() -> None:
    from chancy_lite.hooks import JobHooks, hooked

    m = Metrics(sync_interval=5)
    assert hooked([m]) == [m]  # copied to worker children, for its run recorder
    hooks = JobHooks([m])
    assert len(hooks.recorders) == 1 and hooks.wants_runs and not hooks.wants_updates
    m.sync_increment_counter("mine", 1)
    copy = pickle.loads(pickle.dumps(m))
    assert copy.sync_interval == 5 and copy.buffered() == 0 and m.buffered() == 4


# ------------------------------------------------------------------ retention and windows


def test_retention_is_points_times_bucket_capped_by_the_maximum_age() -> None:
    m = Metrics()
    assert [m.retention(r) for r in ("1min", "5min", "1hour", "1day")] == [3600, 86400, 604800, 90 * 86400]
    short = Metrics(maximum_metric_age=7200)
    assert [short.retention(r) for r in ("1min", "5min", "1hour", "1day")] == [3600, 7200, 7200, 7200]
    with pytest.raises(ValueError, match="unknown resolution"):
        m.retention("2min")


def test_cutoffs_keep_at_most_the_points_of_each_resolution() -> None:
    m = Metrics(max_points_per_resolution={"1min": 3})
    now = to_micros(NOW)
    cutoff = m.cutoffs(now)[60]
    assert cutoff == bucket_start(now, 60) - 2 * 60 * S  # the current bucket and the two before it
    assert m.cutoffs(now)[86400] == bucket_start(now, 86400) - 89 * 86400 * S


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2030, 1, 1, hour, minute, tzinfo=UTC)


def test_the_default_window_ends_with_the_current_bucket_and_spans_a_day_or_the_retention() -> None:
    m = Metrics()
    assert m.window("1min", now=NOW) == (at(11, 35), at(12, 35))  # retention 1 h
    assert m.window("5min", now=NOW) == (at(12, 35) - dt.timedelta(days=1), at(12, 35))
    assert m.window("1hour", now=NOW) == (at(13) - dt.timedelta(days=1), at(13))
    assert m.window("1day", now=NOW) == (at(0), at(0) + dt.timedelta(days=1))


def test_range_and_limit_and_explicit_bounds() -> None:
    m = Metrics()
    assert m.window("1min", range_seconds=600, now=NOW) == (at(12, 25), at(12, 35))
    assert m.window("1min", limit=3, now=NOW) == (at(12, 32), at(12, 35))
    assert m.window("5min", start=at(10), end=at(11), now=NOW) == (at(10), at(11))
    assert m.window("5min", start=at(10), now=NOW) == (at(10), at(12, 35))
    assert m.window("1min", end=at(12), limit=2, now=NOW) == (at(11, 58), at(12))
    other_zone = dt.timezone(dt.timedelta(hours=2))
    start, end = m.window("1hour", start=dt.datetime(2030, 1, 1, 12, tzinfo=other_zone), now=NOW)
    assert start == at(10) and start.tzinfo is UTC and end == at(13)


@pytest.mark.parametrize("kwargs, message", [
    ({"resolution": "2min"}, "unknown resolution"),
    ({"limit": 2, "start": at(10)}, "cannot be combined"),
    ({"limit": 2, "range_seconds": 120}, "cannot be combined"),
    ({"start": at(10), "range_seconds": 120}, "not both"),
    ({"range_seconds": 90}, "multiple"),
    ({"range_seconds": 7200}, "retention"),
    ({"range_seconds": 0}, "positive"),
    ({"limit": 0}, "positive"),
    ({"limit": 1001}, "at most 1000"),
    ({"resolution": "5min", "start": at(10, 1), "end": at(11)}, "boundary"),
    ({"resolution": "5min", "end": at(11, 2)}, "boundary"),
    ({"start": dt.datetime(2030, 1, 1, 10)}, "timezone-aware"),
    ({"start": at(11), "end": at(10)}, "empty"),
    ({"resolution": "5min", "start": at(0) - dt.timedelta(days=4), "end": at(0)}, "at most 1000"),
])
def test_windows_chancy_refuses(kwargs: dict[str, Any], message: str) -> None:
    kwargs = {"resolution": "1min", **kwargs}
    with pytest.raises(ValueError, match=message):
        Metrics().window(kwargs.pop("resolution"), now=NOW, **kwargs)


def test_a_maximum_age_under_a_bucket_still_gives_one_bucket() -> None:
    m = Metrics(maximum_metric_age=600)
    assert m.window("1day", now=NOW) == (at(0), at(0) + dt.timedelta(days=1))


# ------------------------------------------------------------------ checks


def test_keys_units_and_values() -> None:
    assert check_key("job:x:succeeded") == "job:x:succeeded"
    assert check_key("é" * 512) and check_unit("u" * 64) and check_value(2**70) and check_value(-1.5) == -1.5
    for key in ("", "a\x00b", "é" * 513, 5, None, "\ud800"):
        with pytest.raises(ValueError):
            check_key(key)
    for unit in ("", "u" * 65, None, 3):
        with pytest.raises(ValueError):
            check_unit(unit)
    for value in (True, math.nan, math.inf, "1", None):
        with pytest.raises(ValueError):
            check_value(value)


def test_prefixes_match_whole_segments() -> None:
    assert matches("queue:default:succeeded", "queue")
    assert matches("queue:default:succeeded", "queue:default")
    assert matches("queue:default", "queue:default")
    assert not matches("queue:defaults:succeeded", "queue:default")
    assert not matches("queues:x", "queue")
    assert matches("anything", None)


# ------------------------------------------------------------------ results


def p(minute: int, value: Any, sampled: int | None = None) -> MetricPoint:
    return MetricPoint(at(12, minute), value, at(12, sampled if sampled is not None else minute))


def test_metric_summaries_and_aggregations() -> None:
    counter = Metric("counter", "count", [p(0, 2), p(1, 3)])
    assert (counter.aggregation, counter.summary, counter.sampled_at) == ("sum", 5, at(12, 1))
    gauge = Metric("gauge", "bytes", [p(0, 10, sampled=5), p(1, 20, sampled=2)])
    assert (gauge.aggregation, gauge.summary) == ("last", 10)  # the latest observation, not the latest bucket
    h1 = {"count": 2, "sum": 3.0, "avg": 1.5, "min": 1.0, "max": 2.0}
    h2 = {"count": 1, "sum": 5.0, "avg": 5.0, "min": 5.0, "max": 5.0}
    histogram = Metric("histogram", "seconds", [p(0, h1), p(1, h2)])
    assert histogram.aggregation == "summary"
    assert histogram.summary == {"count": 3, "sum": 8.0, "avg": 8.0 / 3, "min": 1.0, "max": 5.0}
    assert Metric("counter", "count").summary == 0
    assert Metric("gauge", "n").summary is None and Metric("histogram", "n").summary is None
    assert Metric("gauge", "n").sampled_at is None


def test_a_cell_merges_like_the_upsert() -> None:
    cell = Cell(1, 2.0, 2.0, 2.0, 2.0, 100)
    cell.merge(2, 5.0, 1.0, 4.0, 9.0, 50)  # older gauge: kept value
    assert (cell.count, cell.total, cell.minimum, cell.maximum, cell.gauge, cell.sampled_at) == (3, 7, 1, 4, 2, 100)
    cell.merge(1, 1.0, 1.0, 1.0, 7.0, 150)
    assert (cell.gauge, cell.sampled_at) == (7, 150)
    assert cell.value("counter") == 8 and isinstance(cell.value("counter"), int)
    assert cell.value("histogram") == {"count": 4, "sum": 8.0, "avg": 2.0, "min": 1.0, "max": 4.0}


# ------------------------------------------------------------------ buffer and tally


def test_the_buffer_puts_an_observation_in_one_bucket_per_resolution() -> None:
    buffer = Buffer((60, 300, 3600, 86400))
    now = to_micros(NOW)
    buffer.add("counter", "k", "count", "w", now, 1, 1.0, 1.0, 1.0, 1.0)
    buffer.add("counter", "k", "count", "w", now + 61 * S, 1, 1.0, 1.0, 1.0, 1.0)  # 12:35:57: the next 5 minutes
    rows = sorted((r.resolution, r.bucket, r.total) for r in buffer.rows())
    assert rows == [
        (60, bucket_start(now, 60), 1.0), (60, bucket_start(now, 60) + 60 * S, 1.0),
        (300, bucket_start(now, 300), 1.0), (300, bucket_start(now, 300) + 300 * S, 1.0),
        (3600, bucket_start(now, 3600), 2.0), (86400, bucket_start(now, 86400), 2.0),
    ]
    assert buffer.new_cells("k", "count", "count", "w", now) == 4  # another unit is another cell
    assert buffer.new_cells("k", "counter", "count", "w", now) == 0
    assert buffer.prune({60: bucket_start(now, 60) + 1}) == 1 and len(buffer) == 5


class FakeConn:
    """What a recorder uses of a chancy_lite connection: the after-commit list, run (or dropped) at the end."""

    def __init__(self) -> None:
        self.after_commit: list[Any] = []
        self.written: list[Any] = []

    def end(self, committed: bool) -> None:
        callbacks, self.after_commit = self.after_commit, []
        if committed:
            for callback in callbacks:
                callback()


def run(state: str = "succeeded", at_s: float = 0, took: float | None = 1.0) -> FinishedRun:
    end = to_micros(NOW) + int(at_s * S)
    return ("f", "q", state, end - int(took * S) if took is not None else None, end, end)


def test_the_tally_counts_only_committed_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    tally = RunTally((60,), 1.0, lambda now: {60: 0})
    conn = FakeConn()
    tally.record(conn, [run(), run("failed", took=None)])
    tally.record(conn, [run(took=3.0)])  # the same transaction
    conn.end(committed=False)  # rolled back: tried again below
    assert tally.tally == {}
    tally.record(conn, [run(), run("failed", took=None)])
    tally.record(conn, [run(took=3.0)])
    conn.end(committed=True)
    minute = bucket_start(to_micros(NOW), 60)
    assert tally.tally[("f", "q", "succeeded", minute)][:5] == [2, 2, 4.0, 1.0, 3.0]
    assert tally.tally[("f", "q", "failed", minute)][:2] == [1, 0]  # no start: not timed
    assert tally.kept() == 3


def test_a_write_that_rolls_back_is_written_again(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[list[Any]] = []
    monkeypatch.setattr("chancy_lite.plugins.metrics.store.MetricsStore.add_to_buckets",
                        lambda self, conn, rows: writes.append(rows))
    tally = RunTally((60,), 1.0, lambda now: {60: 0})
    conn = FakeConn()
    tally.record(conn, [run()])
    conn.end(committed=True)
    now = to_micros(NOW)
    tally.write(conn, now=now, prefix="p_", worker_id="w", force=False)  # the first write is not held back
    conn.end(committed=False)
    tally.write(conn, now=now + 10, prefix="p_", worker_id="w", force=False)  # within the interval: held back
    assert len(writes) == 1 and tally.kept() == 1  # the rolled-back counts are back in the tally
    tally.write(conn, now=now + 10, prefix="p_", worker_id="w", force=True)
    conn.end(committed=True)
    assert len(writes) == 2 and tally.kept() == 0
    assert {r.key: r.total for r in writes[1]} == {
        "job:f:succeeded": 1, "global:status:succeeded": 1, "queue:q:throughput": 1, "queue:q:succeeded": 1,
        "job:f:execution_time": 1.0, "queue:q:execution_time": 1.0}
    tally.write(conn, now=now + 5 * S, prefix="p_", worker_id="w", force=True)  # nothing kept: nothing written
    assert len(writes) == 2


def test_count_keeps_extremes_and_the_latest_time() -> None:
    tally: dict[Any, Any] = {}
    count(tally, [run(took=2.0, at_s=1), run(took=0.5, at_s=3), run(took=4.0, at_s=2)])
    [entry] = tally.values()
    assert entry == [3, 3, 6.5, 0.5, 4.0, to_micros(NOW) + 3 * S]

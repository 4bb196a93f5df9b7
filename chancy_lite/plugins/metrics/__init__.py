"""``Metrics``: counters, gauges and timing histograms per job function, queue and state, kept at four resolutions
in the queue file and merged over every worker (Chancy 0.26's plugin).

::

    metrics = Metrics()
    chancy = Chancy("jobs.db", plugins=[metrics])
    await chancy.migrate()  # creates chancy_metrics and chancy_metric_definitions (migration key "metrics")
    ...
    report = await metrics.get_metrics(chancy, "queue:default", resolution="1min")
    report["series"]["queue:default:succeeded"].summary  # jobs that succeeded in the window

As Chancy 0.26:

* every finished run that is written (succeeded, failed, or failed with a retry left: ``retrying``) counts once in
  ``job:{func}:{state}``, ``global:status:{state}``, ``queue:{queue}:throughput`` and ``queue:{queue}:{state}``,
  and a run with a start and an end adds its seconds to the histograms ``job:{func}:execution_time`` and
  ``queue:{queue}:execution_time``; a run whose result was refused (cancelled or recovered meanwhile) does not;
* each observation goes into a bucket of each resolution, ``1min``, ``5min``, ``1hour`` and ``1day``; a resolution
  keeps ``max_points_per_resolution`` buckets (60, 288, 168, 90 by default), never older than
  ``maximum_metric_age`` seconds: storage does not grow with time;
* ``Worker.increment_counter`` / ``record_gauge`` / ``record_histogram_value`` (or the same methods on the plugin)
  record your own metrics; they are buffered in the worker's process and written every ``sync_interval`` seconds
  and when the worker stops;
* the leader samples, every ``collection_interval`` seconds, the gauges ``table:{name}:total_size_bytes``,
  ``:table_size_bytes`` and ``:index_size_bytes`` (bytes) of the core tables and of every plugin's ``get_tables()``;
* ``get_metrics`` merges the workers' buckets: counters summed, gauges the latest value, histograms merged;
* the Pruner calls ``cleanup`` on the leader after each pass, which deletes expired buckets and unused keys.

Where chancy_lite differs: runs are counted where they are written, in the worker child (see ``RunTally``), and
the counts are written with the child's own transactions: at most every ``min(sync_interval, 1)`` seconds while it
is busy with short jobs, and at once when it goes idle, stops, or claims or runs a job that may take half a second
or more; a child killed with SIGKILL loses the counts it had not written (at most about a second of runs).
Table sizes come from SQLite's ``dbstat``; the leader also samples ``database:file_size_bytes``,
``database:wal_size_bytes`` and ``database:free_bytes``. Rows are per worker, not per worker session, and queries
are not cached.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from chancy_lite.plugin import Plugin
from chancy_lite.plugins.metrics.model import (
    MAX_SERIES,
    RESOLUTIONS,
    Cell,
    Metric,
    MetricPoint,
    MetricType,
    check_key,
    check_unit,
    check_value,
    expiry_cutoff,
    point,
    points_per_resolution,
    positive,
    resolution_seconds,
)
from chancy_lite.plugins.metrics.model import retention as _retention
from chancy_lite.plugins.metrics.model import window as _window
from chancy_lite.plugins.metrics.recording import Buffer, RunTally
from chancy_lite.plugins.metrics.sql import MIGRATIONS
from chancy_lite.plugins.metrics.store import BucketRow, MetricsStore
from chancy_lite.utils import from_micros, micros_now, to_micros

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.db import Connection
    from chancy_lite.hub import Event
    from chancy_lite.worker import Worker

__all__ = ["Metric", "MetricPoint", "Metrics"]

log = logging.getLogger(__name__)

CORE_TABLES = ("jobs", "queues", "workers", "leader", "queue_rate_limits")
WRITE_BATCH = 1000  # buffered rows written per transaction
CLEANUP_ROWS = 10_000  # expired rows deleted per cleanup (as 0.26)
CLEANUP_DEFINITIONS = 1000  # unused definitions deleted per cleanup (as 0.26)
MAX_SYNC_BACKOFF = 300.0  # seconds: the longest wait after failed flushes (as 0.26)
RUN_WRITE_INTERVAL = 1.0  # seconds: the longest a writer keeps counted runs while busy


class _Runtime:
    """The plugin's state in the worker's process: the buffer of observations, under a lock (hub handlers run on
    the event loop, flushes on the app's threads). Not copied to worker children."""

    def __init__(self, resolutions: Sequence[int]) -> None:
        self.lock = threading.Lock()
        self.buffer = Buffer(resolutions)
        self.kinds: dict[str, tuple[str, str]] = {}  # key -> (type, unit), as first recorded or as stored
        self.checked: set[str] = set()  # keys whose stored definition was compared with ours
        self.warned_at: float = -1e9  # time.monotonic() of the last dropped-observation warning
        self.next_sync: int | None = None
        self.next_collect: int | None = None
        self.sync_delay: float = 0.0
        self.handlers: list[tuple[Any, str, Any]] = []  # (hub, event name, handler) registered
        self.clock: Callable[[], int] = micros_now  # the clock of the app last used (see Metrics.observe)


class Metrics(Plugin):
    """Record and query metrics (Chancy 0.26's constructor and validation).

    ``sync_interval`` (seconds): how often a worker writes what it buffered (its own metrics and table sizes);
    ``max_points_per_resolution``: buckets kept per resolution, laid over ``{"1min": 60, "5min": 288, "1hour":
    168, "1day": 90}``; ``maximum_metric_age`` (seconds): no bucket older is kept; ``collection_interval``
    (seconds): how often the leader samples table and file sizes; ``max_buffered_points``: the most buckets a
    worker buffers between writes (an observation that needs more is dropped with a warning). Raises
    ``ValueError`` for a value that is not positive or an unknown resolution.
    """

    def __init__(
        self,
        *,
        sync_interval: float = 60,
        max_points_per_resolution: Mapping[str, int] | None = None,
        maximum_metric_age: float = 90 * 86_400,
        collection_interval: float = 30,
        max_buffered_points: int = 10_000,
    ) -> None:
        self.sync_interval = positive("sync_interval", sync_interval)
        self.max_points = points_per_resolution(max_points_per_resolution)
        self.maximum_metric_age = positive("maximum_metric_age", maximum_metric_age)
        self.collection_interval = positive("collection_interval", collection_interval)
        if isinstance(max_buffered_points, bool) or not isinstance(max_buffered_points, int) \
                or max_buffered_points <= 0:
            raise ValueError(f"max_buffered_points must be an integer > 0, got {max_buffered_points!r}")
        self.max_buffered_points = max_buffered_points
        self._runtime = _Runtime(self.resolutions)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_runtime", None)  # a lock and this process's buffer: a child's copy starts its own
        state.pop("_wake", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runtime = _Runtime(self.resolutions)

    @staticmethod
    def get_identifier() -> str:
        return "chancy.metrics"

    def migrate_key(self) -> str | None:
        return "metrics"

    def migrations(self) -> list[tuple[list[str], list[str]]]:
        return MIGRATIONS

    def get_tables(self) -> list[str]:
        return ["metrics", "metric_definitions"]

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Bucket lengths kept, in seconds."""
        return tuple(RESOLUTIONS.values())

    # ------------------------------------------------------------ retention

    def retention(self, resolution: str) -> float:
        """How far back ``resolution`` keeps data, in seconds: ``min(points * bucket length,
        maximum_metric_age)`` (as 0.26). ``ValueError`` for an unknown resolution."""
        seconds = resolution_seconds(resolution)
        return _retention(self.max_points[resolution], seconds, self.maximum_metric_age)

    def cutoffs(self, now: int) -> dict[int, int]:
        """resolution seconds -> the start (µs) of the oldest bucket kept at ``now`` (µs)."""
        return {
            seconds: expiry_cutoff(now, seconds, self.retention(name)) for name, seconds in RESOLUTIONS.items()
        }

    def window(
        self, resolution: str = "5min", *, start: dt.datetime | None = None, end: dt.datetime | None = None,
        range_seconds: int | None = None, limit: int | None = None, now: dt.datetime | None = None,
    ) -> tuple[dt.datetime, dt.datetime]:
        """The window ``[start, end)`` a query covers, as aware UTC datetimes (Chancy 0.26's rules).

        ``start`` and ``end`` must be timezone-aware and on the resolution's bucket boundaries (buckets are aligned
        to the Unix epoch, so days start at 00:00 UTC); ``end`` defaults to the end of the current bucket. Without
        ``start``, the window is ``range_seconds`` long (a multiple of the bucket length, within the retention), or
        ``limit`` buckets (not with ``start`` or ``range_seconds``), or ``min(1 day, retention)``. At most 1000
        buckets. ``now`` (chancy_lite only) is the current time, default the wall clock (``get_metrics`` passes the
        app's clock). Raises ``ValueError`` for a window it refuses.
        """
        at = to_micros(now) if now is not None else to_micros(dt.datetime.now(dt.UTC))
        keep = self.retention(resolution)
        return _window(resolution, keep, at, start=start, end=end, range_seconds=range_seconds, limit=limit)

    # ------------------------------------------------------------ recording

    async def increment_counter(self, key: str, value: int | float, *, unit: str = "count") -> None:
        """Add ``value`` to the counter ``key`` now (buffered; written every ``sync_interval``). Raises
        ``ValueError`` for an invalid key, unit or value; an observation whose type or unit conflicts with the
        key's, or that would overflow the buffer, is dropped with a warning (as 0.26). Metrics recorded on the
        plugin itself have the worker id ``""``; ``Worker.increment_counter`` records them under the worker's."""
        self.sync_increment_counter(key, value, unit=unit)

    def sync_increment_counter(self, key: str, value: int | float, *, unit: str = "count") -> None:
        """``increment_counter`` without an event loop."""
        self.observe("counter", key, value, unit, worker_id="")

    async def record_gauge(self, key: str, value: int | float, *, unit: str = "number") -> None:
        """Set the gauge ``key`` to ``value`` now (a bucket keeps its latest value). As ``increment_counter``."""
        self.sync_record_gauge(key, value, unit=unit)

    def sync_record_gauge(self, key: str, value: int | float, *, unit: str = "number") -> None:
        """``record_gauge`` without an event loop."""
        self.observe("gauge", key, value, unit, worker_id="")

    async def record_histogram_value(self, key: str, value: int | float, *, unit: str = "number") -> None:
        """Add ``value`` to the histogram ``key`` now (a bucket keeps count, sum, min and max). As
        ``increment_counter``."""
        self.sync_record_histogram_value(key, value, unit=unit)

    def sync_record_histogram_value(self, key: str, value: int | float, *, unit: str = "number") -> None:
        """``record_histogram_value`` without an event loop."""
        self.observe("histogram", key, value, unit, worker_id="")

    def observe(self, kind: str, key: str, value: int | float, unit: str, *, worker_id: str,
                at: int | None = None) -> bool:
        """Buffer one observation of ``kind`` made at ``at`` (µs; default now, by the clock of the app this plugin
        was last used with: a worker's, or one passed to ``flush``, ``get_metrics`` or ``cleanup``; else the wall
        clock); returns whether it was kept. ``ValueError`` for an invalid key, unit or value."""
        check_key(key)
        check_unit(unit)
        number = float(check_value(value))
        rt = self._runtime
        when = at if at is not None else rt.clock()
        with rt.lock:
            known = rt.kinds.get(key)
            if known is not None and known != (kind, unit):
                self._dropped(f"metric {key!r} is a {known[0]} in {known[1]!r}; a {kind} in {unit!r} was dropped")
                return False
            if len(rt.buffer) + rt.buffer.new_cells(key, kind, unit, worker_id, when) > self.max_buffered_points:
                self._dropped(f"the metrics buffer is full ({self.max_buffered_points} buckets); {key!r} was dropped")
                return False
            rt.kinds[key] = (kind, unit)
            rt.buffer.add(kind, key, unit, worker_id, when, 1, number, number, number, number)
        return True

    def _dropped(self, why: str) -> None:
        """Warn about a dropped observation, at most once a minute (as 0.26). Called with the lock held."""
        rt = self._runtime
        clock = time.monotonic()
        if clock - rt.warned_at >= 60:
            rt.warned_at = clock
            log.warning("%s (this warning is shown at most once a minute)", why)

    def buffered(self) -> int:
        """Buckets buffered in this process and not written yet."""
        with self._runtime.lock:
            return len(self._runtime.buffer)

    # ------------------------------------------------------------ runs (where they are written)

    def run_recorder(self) -> RunTally:
        """The recorder that counts finished runs where they are written (see ``RunTally``)."""
        return RunTally(self.resolutions, min(float(self.sync_interval), RUN_WRITE_INTERVAL), self.cutoffs)

    # ------------------------------------------------------------ the worker

    async def on_worker_started(self, *, worker: Worker) -> None:
        """Record the worker's ``metrics.counter`` / ``metrics.gauge`` / ``metrics.histogram`` events."""
        rt = self._runtime
        rt.clock = worker.chancy.now
        for kind in ("counter", "gauge", "histogram"):
            handler = functools.partial(self._on_event, kind, worker)
            worker.hub.on(f"metrics.{kind}", handler)
            rt.handlers.append((worker.hub, f"metrics.{kind}", handler))

    def _on_event(self, kind: str, worker: Worker, event: Event) -> None:
        body = event.body
        try:
            self.observe(kind, body.get("key"), body.get("value"), body.get("unit"),  # type: ignore[arg-type]
                         worker_id=worker.worker_id, at=worker.chancy.now())
        except ValueError as exc:
            with self._runtime.lock:
                self._dropped(f"a metrics.{kind} event was dropped: {exc}")

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        """Write what the worker buffered (idempotent: a second call finds nothing left)."""
        rt = self._runtime
        for hub, name, handler in [h for h in rt.handlers if h[0] is worker.hub]:
            hub.remove(name, handler)
            rt.handlers.remove((hub, name, handler))
        try:
            await self.flush(worker.chancy)
        except Exception:
            log.exception("could not write the buffered metrics of worker %s; they are lost", worker.worker_id)

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.sleep(await self.tick(worker, chancy.now()))

    async def tick(self, worker: Worker, now: int) -> float:
        """One pass at ``now`` (µs): sample sizes if this worker leads and they are due, write the buffer if due
        (and delete expired buckets when the app has no Pruner to call ``cleanup``). The first of each comes an
        interval after the first pass, so a worker starting does not read the whole file at once. Errors are
        logged, never raised (as 0.26); a failed write waits twice as long before the next, up to 300 s. Returns
        the seconds until the next pass is due."""
        rt, chancy = self._runtime, worker.chancy
        if rt.next_collect is None or rt.next_sync is None:  # the first pass: sample and write an interval later
            rt.next_collect = now + int(self.collection_interval * 1e6)
            rt.next_sync = now + int(self.sync_interval * 1e6)
            rt.sync_delay = float(self.sync_interval)
        if now >= rt.next_collect:
            rt.next_collect = now + int(self.collection_interval * 1e6)
            if worker.is_leader.is_set():
                try:
                    await self.collect(chancy, worker_id=worker.worker_id)
                except Exception:
                    log.exception("could not sample the table sizes")
        if now >= rt.next_sync:
            try:
                await self.flush(chancy)
                if "chancy.pruner" not in chancy.plugins:  # else the Pruner calls cleanup (as Chancy)
                    await self.cleanup(chancy)
                rt.sync_delay = float(self.sync_interval)
            except Exception:
                rt.sync_delay = min(rt.sync_delay * 2, MAX_SYNC_BACKOFF)
                log.exception("could not write the metrics; trying again in %.0f s", rt.sync_delay)
            rt.next_sync = now + int(rt.sync_delay * 1e6)
        return max(0.0, (min(rt.next_sync, rt.next_collect) - now) / 1e6)

    # ------------------------------------------------------------ writing

    async def flush(self, chancy: Chancy) -> int:
        """Write what this process buffered now; returns the rows written. A failed write keeps the buffer, ahead
        of newer observations, for the next attempt, and raises."""
        self._runtime.clock = chancy.now
        return await chancy.run_store(self._flush, chancy.prefix, chancy.now())

    def sync_flush(self, chancy: Chancy) -> int:
        """``flush`` without an event loop."""
        self._runtime.clock = chancy.now
        return chancy.sync_run_store(self._flush, chancy.prefix, chancy.now())

    def _flush(self, conn: Connection, prefix: str, now: int) -> int:
        rt = self._runtime
        with rt.lock:
            buffer, rt.buffer = rt.buffer, Buffer(self.resolutions)
        buffer.prune(self.cutoffs(now))
        rows = buffer.rows()
        store = MetricsStore(prefix)
        written = 0
        try:
            rows = self._without_conflicts(conn, store, rows)
            for offset in range(0, len(rows), WRITE_BATCH):
                store.add_to_buckets(conn, rows[offset:offset + WRITE_BATCH])
                written = offset + WRITE_BATCH
        except BaseException:
            unwritten = Buffer(self.resolutions)
            unwritten.put_back(rows[written:])
            with rt.lock:
                unwritten.merge(rt.buffer)
                rt.buffer = unwritten
            raise
        return len(rows)

    def _without_conflicts(self, conn: Connection, store: MetricsStore, rows: list[BucketRow]) -> list[BucketRow]:
        """``rows`` less those whose key is stored with another type or unit (dropped with a warning)."""
        rt = self._runtime
        new = {row.key for row in rows} - rt.checked
        if not new:
            return rows
        stored = store.definitions(conn, new)
        with rt.lock:
            rt.checked |= new
            for key, found in stored.items():
                rt.kinds[key] = found
        bad = {row.key for row in rows if stored.get(row.key, (row.type, row.unit)) != (row.type, row.unit)}
        if not bad:
            return rows
        with rt.lock:
            self._dropped(f"metrics {sorted(bad)[:5]} are stored with another type or unit; observations dropped")
        return [row for row in rows if row.key not in bad]

    # ------------------------------------------------------------ sizes (the leader)

    async def collect(self, chancy: Chancy, *, worker_id: str = "") -> int:
        """Sample table and file sizes now, as gauges in bytes (the leader does so every ``collection_interval``):
        ``table:{name}:total_size_bytes``, ``:table_size_bytes`` and ``:index_size_bytes`` for the core tables and
        every plugin's ``get_tables()`` (names without the prefix), and ``database:file_size_bytes``,
        ``database:wal_size_bytes`` and ``database:free_bytes``. Returns how many gauges were recorded."""
        tables = [*CORE_TABLES, *(t for p in chancy.plugins.values() for t in p.get_tables())]
        gauges = await chancy.run_store(_sizes, chancy.prefix, chancy.path, tables)
        now = chancy.now()
        return sum(self.observe("gauge", key, value, "bytes", worker_id=worker_id, at=now) for key, value in gauges)

    # ------------------------------------------------------------ queries

    async def get_metrics(
        self, chancy: Chancy, metric_prefix: str | None = None, worker_id: str | None = None, *,
        resolution: str = "5min", start: dt.datetime | None = None, end: dt.datetime | None = None,
        range_seconds: int | None = None, limit: int | None = None,
    ) -> dict[str, Any]:
        """The metrics whose key is ``metric_prefix`` or below it by whole ``:`` segments (all without one), in a
        window (see ``window``; the current time is ``chancy.now()``), merged over every worker or those of
        ``worker_id``, as Chancy 0.26: ``{"start", "end", "resolution", "generated_at", "series": {key: Metric}}``
        (aware UTC datetimes; each ``Metric``'s points oldest first, buckets without data left out). Raises
        ``ValueError`` for a refused window or more than 100 matching keys."""
        self._runtime.clock = chancy.now
        now = chancy.now()
        first, last = self.window(resolution, start=start, end=end, range_seconds=range_seconds, limit=limit,
                                  now=from_micros(now))
        series = await chancy.run_store(_read_series, chancy.prefix, _prefix(metric_prefix), worker_id,
                                        resolution_seconds(resolution), to_micros(first), to_micros(last))
        return {"start": first, "end": last, "resolution": resolution, "generated_at": from_micros(now),
                "series": series}

    def sync_get_metrics(
        self, chancy: Chancy, metric_prefix: str | None = None, worker_id: str | None = None, *,
        resolution: str = "5min", start: dt.datetime | None = None, end: dt.datetime | None = None,
        range_seconds: int | None = None, limit: int | None = None,
    ) -> dict[str, Any]:
        """``get_metrics`` without an event loop."""
        self._runtime.clock = chancy.now
        now = chancy.now()
        first, last = self.window(resolution, start=start, end=end, range_seconds=range_seconds, limit=limit,
                                  now=from_micros(now))
        series = chancy.sync_run_store(_read_series, chancy.prefix, _prefix(metric_prefix), worker_id,
                                       resolution_seconds(resolution), to_micros(first), to_micros(last))
        return {"start": first, "end": last, "resolution": resolution, "generated_at": from_micros(now),
                "series": series}

    async def list_metrics(self, chancy: Chancy) -> list[str]:
        """Every stored metric key, sorted."""
        return await chancy.run_store(MetricsStore(chancy.prefix).list_keys)

    def sync_list_metrics(self, chancy: Chancy) -> list[str]:
        """``list_metrics`` without an event loop."""
        return chancy.sync_run_store(MetricsStore(chancy.prefix).list_keys)

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete expired buckets (up to 10,000 rows), then definitions no bucket uses (up to 1000); returns how
        many rows went, or None for none (as 0.26). The Pruner calls it on the leader after each pass (as Chancy);
        in an app without a Pruner, every worker calls it after each of its writes, so storage stays bounded."""
        self._runtime.clock = chancy.now
        return await chancy.run_store(_cleanup, MetricsStore(chancy.prefix), self.cutoffs(chancy.now()))

    def sync_cleanup(self, chancy: Chancy) -> int | None:
        """``cleanup`` without an event loop."""
        self._runtime.clock = chancy.now
        return chancy.sync_run_store(_cleanup, MetricsStore(chancy.prefix), self.cutoffs(chancy.now()))


# ------------------------------------------------------------------ helpers


def _prefix(metric_prefix: str | None) -> str | None:
    if metric_prefix is None:
        return None
    if not isinstance(metric_prefix, str) or not metric_prefix:
        raise ValueError(f"metric_prefix must be a non-empty str or None, got {metric_prefix!r}")
    return metric_prefix


def _read_series(conn: Connection, prefix: str, metric_prefix: str | None, worker_id: str | None, resolution: int,
                 start: int, end: int) -> dict[str, Metric]:
    """The matching metrics' buckets in ``[start, end)``, the workers' rows merged per bucket."""
    store = MetricsStore(prefix)
    definitions = store.matching_definitions(conn, metric_prefix, limit=MAX_SERIES + 1)
    if len(definitions) > MAX_SERIES:
        raise ValueError(
            f"more than {MAX_SERIES} metric keys match {metric_prefix!r}: give a longer metric_prefix "
            "(list_metrics shows the keys)"
        )
    cells: dict[int, dict[int, Cell]] = {d.id: {} for d in definitions}
    rows = store.read_buckets(conn, list(cells), resolution=resolution, start=start, end=end, worker_id=worker_id)
    for row in rows:
        buckets = cells[row.metric_id]
        cell = buckets.get(row.bucket)
        if cell is None:
            buckets[row.bucket] = Cell(row.observations, row.total, row.minimum, row.maximum, row.gauge, row.sampled_at)
        else:
            cell.merge(row.observations, row.total, row.minimum, row.maximum, row.gauge, row.sampled_at)
    series = {}
    for d in definitions:
        kind: MetricType = d.type  # type: ignore[assignment]  # the table's CHECK allows only the three
        data = [point(bucket, kind, cell) for bucket, cell in sorted(cells[d.id].items())]
        series[d.key] = Metric(kind, d.unit, data)
    return series


def _cleanup(conn: Connection, store: MetricsStore, cutoffs: dict[int, int]) -> int | None:
    removed = store.delete_expired(conn, cutoffs, limit=CLEANUP_ROWS)
    removed += store.delete_orphan_definitions(conn, limit=CLEANUP_DEFINITIONS)
    return removed or None


def _sizes(conn: Connection, prefix: str, path: str, tables: Sequence[str]) -> list[tuple[str, int]]:
    """(gauge key, bytes) for the tables (by dbstat, when compiled in) and the file."""
    store = MetricsStore(prefix)
    gauges: list[tuple[str, int]] = []
    btrees = store.btree_sizes(conn)
    if btrees is not None:
        wanted = {f"{prefix}{name}": name for name in tables}
        sizes = {name: [0, 0] for name in wanted.values()}
        for table, kind, size in btrees:
            name = wanted.get(table)
            if name is not None:
                sizes[name][0 if kind == "table" else 1] += size
        for name, (data, index) in sizes.items():
            gauges += [(f"table:{name}:total_size_bytes", data + index), (f"table:{name}:table_size_bytes", data),
                       (f"table:{name}:index_size_bytes", index)]
    page_size, _pages, free = store.page_stats(conn)
    gauges.append(("database:free_bytes", page_size * free))
    for key, file in (("database:file_size_bytes", path), ("database:wal_size_bytes", f"{path}-wal")):
        try:
            gauges.append((key, os.stat(file).st_size))
        except OSError:  # no WAL right now (checkpointed and removed), or a memory database
            gauges.append((key, 0))
    return gauges


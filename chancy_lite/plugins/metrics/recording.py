"""What the Metrics plugin keeps in memory before writing it: a ``Buffer`` of observations per bucket, and the
``RunTally`` that counts finished runs where they are written (a worker child, the Async executor, ``drain``).

Both are plain Python, without I/O of their own: the tally writes through the connection it is handed, inside the
writer's transaction.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chancy_lite.hooks import FinishedRun
from chancy_lite.plugins.metrics.model import Cell
from chancy_lite.plugins.metrics.store import BucketRow, MetricsStore

# (key, type, unit, worker_id, resolution seconds, bucket start µs)
BufferKey = tuple[str, str, str, str, int, int]
# (func, queue, state, minute start µs) -> [runs, timed runs, seconds, shortest, longest, latest write µs]
Tally = dict[tuple[str, str, str, int], list[Any]]

MINUTE = 60_000_000

log = logging.getLogger(__name__)


class Buffer:
    """Observations not written yet, merged per (key, type, unit, worker, resolution, bucket) as rows will hold
    them. Not thread-safe: its owner locks."""

    def __init__(self, resolutions: Sequence[int]) -> None:
        self.resolutions = tuple(resolutions)
        self.cells: dict[BufferKey, Cell] = {}

    def __len__(self) -> int:
        return len(self.cells)

    def new_cells(self, key: str, kind: str, unit: str, worker_id: str, at: int) -> int:
        """How many cells an observation at ``at`` would add."""
        return sum(
            (key, kind, unit, worker_id, seconds, at - at % (seconds * 1_000_000)) not in self.cells
            for seconds in self.resolutions
        )

    def add(self, kind: str, key: str, unit: str, worker_id: str, at: int, count: int, total: float,
            minimum: float, maximum: float, gauge: float) -> None:
        """Merge observations made at ``at`` (µs) into the bucket of every resolution that holds ``at``."""
        cells = self.cells
        for seconds in self.resolutions:
            where = (key, kind, unit, worker_id, seconds, at - at % (seconds * 1_000_000))
            cell = cells.get(where)
            if cell is None:
                cells[where] = Cell(count, total, minimum, maximum, gauge, at)
            else:
                cell.merge(count, total, minimum, maximum, gauge, at)

    def put_back(self, rows: Sequence[BucketRow]) -> None:
        """Rows taken from a buffer (``rows()``) and not written, back as cells."""
        for row in rows:
            where = (row.key, row.type, row.unit, row.worker_id, row.resolution, row.bucket)
            cell = self.cells.get(where)
            if cell is None:
                self.cells[where] = Cell(row.observations, row.total, row.minimum, row.maximum, row.gauge,
                                         row.sampled_at)
            else:
                cell.merge(row.observations, row.total, row.minimum, row.maximum, row.gauge, row.sampled_at)

    def merge(self, other: Buffer) -> None:
        """Take ``other``'s cells (a write that failed goes back in front of newer observations)."""
        cells = self.cells
        for where, cell in other.cells.items():
            mine = cells.get(where)
            if mine is None:
                cells[where] = cell
            else:
                mine.merge(cell.count, cell.total, cell.minimum, cell.maximum, cell.gauge, cell.sampled_at)

    def prune(self, cutoffs: Mapping[int, int]) -> int:
        """Drop cells whose bucket starts before its resolution's cutoff (µs); returns how many."""
        expired = [where for where in self.cells if where[5] < cutoffs.get(where[4], where[5])]
        for where in expired:
            del self.cells[where]
        return len(expired)

    def rows(self) -> list[BucketRow]:
        return [
            BucketRow(key, kind, unit, seconds, bucket, worker_id, c.count, c.total, c.minimum, c.maximum, c.gauge,
                      c.sampled_at)
            for (key, kind, unit, worker_id, seconds, bucket), c in self.cells.items()
        ]


def run_metrics(tally: Tally, worker_id: str, buffer: Buffer) -> None:
    """Add counted runs to ``buffer`` as Chancy 0.26's built-in metrics: counters ``job:{func}:{state}``,
    ``global:status:{state}``, ``queue:{queue}:throughput``, ``queue:{queue}:{state}``, and the histograms
    ``job:{func}:execution_time`` and ``queue:{queue}:execution_time`` (seconds) of runs with both a start and an
    end."""
    for (func, queue, state, _minute), (runs, timed, seconds, shortest, longest, at) in tally.items():
        for key in (f"job:{func}:{state}", f"global:status:{state}", f"queue:{queue}:throughput",
                    f"queue:{queue}:{state}"):
            buffer.add("counter", key, "count", worker_id, at, runs, runs, 1, 1, 0.0)
        if timed:
            for key in (f"job:{func}:execution_time", f"queue:{queue}:execution_time"):
                buffer.add("histogram", key, "seconds", worker_id, at, timed, seconds, shortest, longest, 0.0)


class RunTally:
    """The Metrics plugin's ``RunRecorder`` (see :mod:`chancy_lite.hooks`), one per writer.

    ``record`` keeps the runs of the open transaction apart; once it commits they are counted per (function, queue,
    state, minute), outside the write lock. ``write`` turns the counts into rows and adds them through the
    writer's connection, in its transaction, at most every ``interval`` seconds unless forced (the writer goes idle,
    stops, or starts a job that may run long), so a busy writer pays for one small write a second, whatever its
    batch size. The runs of the
    transaction that writes are written with it. A write whose transaction rolls back is written again with the
    next; one that fails (a missing table) is logged and dropped, never failing the writer's transaction. Runs
    counted but not written yet are lost if the process is killed.
    """

    def __init__(self, resolutions: Sequence[int], interval: float, cutoffs: Callable[[int], dict[int, int]]) -> None:
        self.resolutions = tuple(resolutions)
        self.interval = int(interval * 1_000_000)
        self.cutoffs = cutoffs  # now (µs) -> resolution seconds -> oldest bucket start kept (µs)
        self.tally: Tally = {}
        self.last_write: int | None = None
        self._open: tuple[Any, list[FinishedRun]] | None = None  # (its commit callback, the runs) of a transaction
        self._inflight: tuple[Any, Tally] | None = None  # (its commit callback, what it wrote)
        self._stores: dict[str, MetricsStore] = {}
        self._warned_at = -1e9

    def record(self, conn: Any, runs: Sequence[FinishedRun]) -> None:
        opened = self._open
        if opened is None or opened[0] not in conn.after_commit:  # a new transaction (the last one ended)
            pending: list[FinishedRun] = []
            callback = functools.partial(self._committed, pending)
            conn.after_commit.append(callback)
            opened = self._open = (callback, pending)
        opened[1].extend(runs)

    def _committed(self, runs: list[FinishedRun]) -> None:
        self._open = None
        count(self.tally, runs)

    def write(self, conn: Any, *, now: int, prefix: str, worker_id: str, force: bool) -> None:
        inflight = self._inflight
        if inflight is not None and inflight[0] not in conn.after_commit:  # that write rolled back
            self._inflight = None
            merge(self.tally, inflight[1])
        opened = self._open
        here = opened[1] if opened is not None and opened[0] in conn.after_commit else []  # this transaction's runs
        if not (self.tally or here):
            return
        if not force and self.last_write is not None and now - self.last_write < self.interval:
            return
        # What this transaction recorded is written with it: taken from its list, so its commit does not count it
        # again, and not kept for a retry, since a rollback undoes the runs too.
        committed = self.tally
        written: Tally = {}
        merge(written, committed)
        count(written, here)
        here.clear()
        buffer = Buffer(self.resolutions)
        run_metrics(written, worker_id, buffer)
        buffer.prune(self.cutoffs(now))
        store = self._stores.get(prefix)
        if store is None:
            store = self._stores[prefix] = MetricsStore(prefix)
        self.last_write = now
        try:
            store.add_to_buckets(conn, buffer.rows())  # a savepoint: a failure here leaves the runs' writes alone
        except Exception:  # never fail the writer's transaction (its jobs' results) for a count
            self.tally = {}
            clock = time.monotonic()
            if clock - self._warned_at >= 60:
                self._warned_at = clock
                log.exception("could not write the metrics of %d runs; they are not counted (shown at most once a "
                              "minute)", sum(entry[0] for entry in written.values()))
            return
        callback = functools.partial(self._written)
        conn.after_commit.append(callback)
        self._inflight, self.tally = (callback, committed), {}

    def _written(self) -> None:
        self._inflight = None

    def kept(self) -> int:
        """Runs counted and not written yet."""
        return sum(entry[0] for entry in self.tally.values())


def count(tally: Tally, runs: Sequence[FinishedRun]) -> None:
    """Add runs to a tally."""
    for func, queue, state, started_at, completed_at, at in runs:
        where = (func, queue, state, at - at % MINUTE)
        entry = tally.get(where)
        if entry is None:
            entry = tally[where] = [0, 0, 0.0, math.inf, -math.inf, at]
        entry[0] += 1
        if started_at is not None and completed_at is not None:
            seconds = (completed_at - started_at) / 1e6
            entry[1] += 1
            entry[2] += seconds
            if seconds < entry[3]:
                entry[3] = seconds
            if seconds > entry[4]:
                entry[4] = seconds
        if at > entry[5]:
            entry[5] = at


def merge(tally: Tally, other: Tally) -> None:
    """Add ``other``'s counts to ``tally``."""
    for where, (runs, timed, seconds, shortest, longest, at) in other.items():
        entry = tally.get(where)
        if entry is None:
            tally[where] = [runs, timed, seconds, shortest, longest, at]
            continue
        entry[0] += runs
        entry[1] += timed
        entry[2] += seconds
        entry[3] = min(entry[3], shortest)
        entry[4] = max(entry[4], longest)
        entry[5] = max(entry[5], at)


"""``MetricsStore``: the only code that executes the Metrics plugin's SQL (``chancy_lite.plugins.metrics.sql``).

As :mod:`chancy_lite.store`: each method takes an open connection; writes run in ``with conn:`` (``BEGIN
IMMEDIATE``, or a savepoint inside a caller's transaction, such as a worker child's exchange); reads fetch their
rows at once, so no read transaction is left open.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import apsw

from chancy_lite.db import Connection
from chancy_lite.plugins.metrics import sql


class BucketRow(NamedTuple):
    """The parameters of ``ADD_TO_BUCKET``: observations of one key merged into one bucket of one worker."""

    key: str
    type: str
    unit: str
    resolution: int  # seconds
    bucket: int  # µs since the epoch
    worker_id: str
    observations: int  # the count column
    total: float
    minimum: float
    maximum: float
    gauge: float
    sampled_at: int  # µs


class Definition(NamedTuple):
    id: int
    key: str
    type: str
    unit: str


class StoredBucket(NamedTuple):
    """One ``{p}metrics`` row as ``READ_BUCKETS`` returns it."""

    metric_id: int
    bucket: int
    worker_id: str
    observations: int  # the count column
    total: float
    minimum: float
    maximum: float
    gauge: float
    sampled_at: int


class MetricsStore:
    """Typed access to one prefix's metrics tables."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.q = _Statements(prefix)

    def add_to_buckets(self, conn: Connection, rows: Sequence[BucketRow]) -> None:
        """Define the rows' keys if new, then add each row to its bucket (one transaction, or the caller's).
        A row whose key is defined with another type or unit is skipped."""
        if not rows:
            return
        definitions = {(row.key, row.type, row.unit) for row in rows}
        with conn:
            conn.executemany(self.q.DEFINE_METRIC, [{"key": k, "type": t, "unit": u} for k, t, u in definitions])
            conn.executemany(self.q.ADD_TO_BUCKET, [row._asdict() for row in rows])

    def definitions(self, conn: Connection, keys: Iterable[str]) -> dict[str, tuple[str, str]]:
        """key -> (type, unit) of those of ``keys`` that are defined."""
        rows = _fetch(conn, self.q.GET_DEFINITIONS, (json.dumps(list(keys)),))
        return {key: (kind, unit) for key, kind, unit in rows}

    def delete_expired(self, conn: Connection, cutoffs: Mapping[int, int], *, limit: int) -> int:
        """Delete up to ``limit`` rows whose bucket starts before its resolution's cutoff (resolution seconds ->
        µs), in one transaction; returns how many."""
        deleted = 0
        with conn:
            for resolution, cutoff in cutoffs.items():
                if deleted >= limit:
                    break
                conn.execute(self.q.DELETE_EXPIRED,
                             {"resolution": resolution, "cutoff": cutoff, "limit": limit - deleted})
                deleted += conn.changes()
        return deleted

    def delete_orphan_definitions(self, conn: Connection, *, limit: int) -> int:
        """Delete up to ``limit`` definitions no row uses; returns how many."""
        with conn:
            conn.execute(self.q.DELETE_ORPHAN_DEFINITIONS, {"limit": limit})
            return conn.changes()

    def list_keys(self, conn: Connection) -> list[str]:
        return [key for (key,) in _fetch(conn, self.q.LIST_KEYS)]

    def matching_definitions(self, conn: Connection, prefix: str | None, *, limit: int) -> list[Definition]:
        """Up to ``limit`` definitions whose key is ``prefix`` or below it by whole segments, by key."""
        rows = _fetch(conn, self.q.MATCHING_DEFINITIONS, {"prefix": prefix, "limit": limit})
        return [Definition(*row) for row in rows]

    def read_buckets(
        self, conn: Connection, ids: Sequence[int], *, resolution: int, start: int, end: int, worker_id: str | None,
    ) -> list[StoredBucket]:
        """The rows of these metrics in ``[start, end)`` (µs) at ``resolution`` seconds, of one worker or all."""
        params = {"resolution": resolution, "start": start, "end": end, "ids": json.dumps(list(ids)),
                  "worker_id": worker_id}
        return [StoredBucket(*row) for row in _fetch(conn, self.q.READ_BUCKETS, params)]

    def count_rows(self, conn: Connection) -> int:
        value: int = _fetch(conn, self.q.COUNT_ROWS)[0][0]
        return value

    def btree_sizes(self, conn: Connection) -> list[tuple[str, str, int]] | None:
        """(table, "table" or "index", bytes) for every b-tree of the file, or None when this SQLite has no dbstat
        virtual table (it reads every page: about 0.1 s for a 200 MB file with a warm cache)."""
        try:
            rows = _fetch(conn, self.q.BTREE_SIZES)
        except apsw.SQLError as exc:
            if "dbstat" not in str(exc):
                raise
            return None
        return [(table, kind, int(size)) for table, kind, size in rows]

    def page_stats(self, conn: Connection) -> tuple[int, int, int]:
        """(page size in bytes, pages in the file, free pages)."""
        return (_fetch(conn, self.q.PAGE_SIZE)[0][0], _fetch(conn, self.q.PAGE_COUNT)[0][0],
                _fetch(conn, self.q.FREELIST_COUNT)[0][0])


def _fetch(conn: Connection, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Every row of a statement, fetched at once (no read transaction is left open)."""
    return conn.execute(statement, params).fetchall()


class _Statements:
    """The statements of the plugin's sql module formatted for one prefix, as attributes."""

    def __init__(self, prefix: str) -> None:
        for name in dir(sql):
            value = getattr(sql, name)
            if name.isupper() and isinstance(value, str):
                setattr(self, name, value.format(p=prefix))

    def __getattr__(self, name: str) -> str:  # for type checkers: every attribute is a str
        raise AttributeError(name)

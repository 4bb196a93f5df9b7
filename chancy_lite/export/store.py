"""The only modules of the export that execute SQL: :class:`LiteSide` (the file, through the app's connection)
and :class:`PostgresSide` (one psycopg connection). Statements come from :mod:`chancy_lite.export.sql`.

Each method does one read or one batch of writes; the caller decides where transactions end
(:meth:`PostgresSide.commit`, ``with app.transaction()``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from chancy_lite.export import sql
from chancy_lite.utils import from_micros

if TYPE_CHECKING:
    from chancy_lite.app import Chancy

Row = tuple[Any, ...]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
FIRST_ID = "00000000-0000-0000-0000-000000000000"
EPOCH_START = -(2**62)  # "since the beginning" for the finished-jobs bound, in microseconds


def _format(statement: str, prefix: str, **extra: str) -> str:
    if not _IDENTIFIER.match(prefix):
        raise ValueError(f"table prefix {prefix!r} must be letters, digits and underscores")
    return statement.format(p=prefix, **extra)


class LiteSide:
    """chancy_lite's tables in the app's file."""

    def __init__(self, app: Chancy) -> None:
        self.app = app
        self.prefix = app.prefix

    def _q(self, name: str) -> str:
        return _format(getattr(sql, name), self.prefix)

    def _fetch(self, name: str, params: Any = None) -> list[Row]:
        with self.app.connection() as conn:
            return list(conn.execute(self._q(name), params).fetchall())

    def has_table(self, table: str) -> bool:
        return bool(self._fetch("LITE_TABLE_EXISTS", (self.prefix + table,)))

    def count_jobs(self, states: Sequence[str], since: int | None) -> list[tuple[str, str, int]]:
        rows = self._fetch("LITE_COUNT_JOBS", {"states": json.dumps(list(states)), "since": _since(since)})
        return [(queue, state, n) for queue, state, n in rows]

    def jobs_page(self, states: Sequence[str], since: int | None, after: str, limit: int) -> list[Row]:
        return self._fetch("LITE_JOBS_PAGE", {"states": json.dumps(list(states)), "since": _since(since),
                                              "after": after, "limit": limit})

    def jobs_by_id(self, ids: Iterable[str]) -> list[Row]:
        return self._fetch("LITE_JOBS_BY_ID", (json.dumps(list(ids)),))

    def running_jobs(self) -> list[Row]:
        return self._fetch("LITE_RUNNING_JOBS")

    def live_workers(self, now: int) -> list[Row]:
        return self._fetch("LITE_LIVE_WORKERS", {"now": now})

    def keyed_jobs(self) -> list[Row]:
        """(limit key, waiting jobs) for the keys of waiting jobs with per-key limits."""
        return self._fetch("LITE_KEYED_JOBS")

    def queues(self) -> list[Row]:
        return self._fetch("LITE_QUEUES")

    def schedules(self) -> list[Row]:
        return self._fetch("LITE_CRON") if self.has_table("cron") else []

    def active_workflows(self) -> list[Row]:
        return self._fetch("LITE_ACTIVE_WORKFLOWS") if self.has_table("workflows") else []

    def workflow_steps(self, workflow_ids: Sequence[str]) -> list[Row]:
        return self._fetch("LITE_WORKFLOW_STEPS", (json.dumps(list(workflow_ids)),)) if workflow_ids else []

    def present_job_ids(self, ids: Sequence[str]) -> set[str]:
        return {row[0] for row in self._fetch("LITE_PRESENT_JOB_IDS", (json.dumps(list(ids)),))}

    def insert(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        """One batch of ``LITE_INSERT_*`` rows in one transaction (rows already there are left as they are)."""
        if rows:
            with self.app.transaction() as conn:
                conn.executemany(self._q(name), rows)


def _since(since: int | None) -> int:
    return EPOCH_START if since is None else since


class PostgresSide:
    """Chancy's tables in a Postgres database, over one psycopg (3) connection, not in autocommit."""

    def __init__(self, conn: Any, prefix: str = "chancy_") -> None:
        self.conn = conn
        self.prefix = prefix

    def _q(self, name: str, **extra: str) -> str:
        return _format(getattr(sql, name), self.prefix, **extra)

    def _fetch(self, name: str, params: Any = None, **extra: str) -> list[Row]:
        with self.conn.cursor() as cur:
            cur.execute(self._q(name, **extra), params)
            return list(cur.fetchall())

    def has_table(self, table: str) -> bool:
        return bool(self._fetch("PG_TABLE_EXISTS", {"name": self.prefix + table})[0][0])

    def schema_versions(self) -> dict[str, int] | None:
        """Chancy's ``{p}schema_version`` rows, or None when the table is not there."""
        if not self.has_table("schema_version"):
            self.conn.rollback()
            return None
        versions = {key: version for key, version in self._fetch("PG_SCHEMA_VERSIONS")}
        self.conn.rollback()
        return versions

    def execute_many(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        """One batch of ``PG_INSERT_*`` rows (pipelined by psycopg); committed by :meth:`commit`."""
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(self._q(name), rows)

    def wake(self, queues: Iterable[str]) -> None:
        """Tell Chancy's workers that jobs were pushed to these queues (sent at commit, as Chancy's push does)."""
        with self.conn.cursor() as cur:
            for queue in sorted(set(queues)):
                cur.execute(self._q("PG_NOTIFY"), {"channel": f"{self.prefix}events",
                                                   "payload": json.dumps({"t": "queue.pushed", "q": queue})})

    def commit(self) -> None:
        self.conn.commit()

    def present_job_ids(self, ids: Sequence[str]) -> set[str]:
        return {row[0] for row in self._fetch("PG_PRESENT_JOB_IDS", {"ids": list(ids)})}

    def held_unique_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """Active jobs holding these unique keys: key -> job id."""
        return dict(self._fetch("PG_HELD_UNIQUE_KEYS", {"keys": list(keys)})) if keys else {}

    def count_schedules(self, keys: Sequence[str]) -> int:
        return int(self._fetch("PG_COUNT_CRON", {"keys": list(keys)})[0][0]) if keys else 0

    def count_workflows(self, ids: Sequence[str]) -> int:
        return int(self._fetch("PG_COUNT_WORKFLOWS", {"ids": list(ids)})[0][0]) if ids else 0

    # --- import
    def queues(self) -> list[Row]:
        return self._fetch("PG_QUEUES")

    def jobs_page(self, states: Sequence[str], since: int | None, after: str, limit: int) -> list[Row]:
        bound = from_micros(since) if since is not None else None
        return self._fetch("PG_JOBS_PAGE", {"states": list(states), "after": after, "limit": limit,
                                            "since": bound or from_micros(0).replace(year=1)})

    def jobs_by_id(self, ids: Sequence[str]) -> list[Row]:
        return self._fetch("PG_JOBS_BY_ID", {"ids": list(ids)}) if ids else []

    def schedules(self, release: str) -> list[Row]:
        if not self.has_table("cron"):
            return []
        return self._fetch("PG_CRON", timezone="timezone" if release == "0.26" else "'Etc/UTC'")

    def active_workflows(self) -> list[Row]:
        return self._fetch("PG_ACTIVE_WORKFLOWS") if self.has_table("workflows") else []

    def workflow_steps(self, workflow_ids: Sequence[str]) -> list[Row]:
        return self._fetch("PG_WORKFLOW_STEPS", {"ids": list(workflow_ids)}) if workflow_ids else []

    def live_workers(self) -> list[str]:
        return [row[0] for row in self._fetch("PG_LIVE_WORKERS")]

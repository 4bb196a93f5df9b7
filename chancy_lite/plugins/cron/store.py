"""``CronStore``: the only code that executes the Cron plugin's SQL (``chancy_lite.plugins.cron.sql``).

As :mod:`chancy_lite.store`: each method takes an open connection and, where time matters, ``now`` (integer
microseconds since the epoch); writes run in ``with conn:`` (``BEGIN IMMEDIATE``, or a savepoint inside a caller's
transaction). Jobs are pushed through the core store's ``insert_jobs``, in the same transaction, so a push wakes
idle workers once it commits and the ``unique_key`` rule of every push applies.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from chancy_lite.db import Connection
from chancy_lite.job import Job
from chancy_lite.plugins.cron import sql
from chancy_lite.store import Statements, Store
from chancy_lite.store import fetch_all as _fetch
from chancy_lite.utils import from_micros


class ScheduleRow(NamedTuple):
    """A stored schedule, as its columns hold it."""

    unique_key: str
    job: str  # the packed Job, as JSON text
    cron: str
    timezone: str
    last_run: int | None
    next_run: int


class DueRun(NamedTuple):
    """A run that is due: the schedule's key, expression and zone, and the run's time (``due``, µs)."""

    unique_key: str
    cron: str
    timezone: str
    due: int


class Fired(NamedTuple):
    """A run taken by this process: the id of the job it pushed, or of the unfinished job already holding the key
    (``pushed`` False: nothing was inserted)."""

    unique_key: str
    due: int
    job_id: str
    pushed: bool


class NewSchedule(NamedTuple):
    """The parameters of ``UPSERT_SCHEDULE``."""

    unique_key: str
    job: str
    cron: str
    timezone: str
    next_run: int


class CronStore:
    """Typed access to one prefix's ``{p}cron`` table; ``core`` is the app's ``Store`` (for pushing jobs)."""

    def __init__(self, core: Store) -> None:
        self.core = core
        self.prefix = core.prefix
        self.q = Statements(core.prefix, sql)

    def upsert_schedules(self, conn: Connection, schedules: Sequence[NewSchedule]) -> None:
        """Store schedules in one transaction, replacing those with the same keys (their last_run is kept)."""
        with conn:
            conn.executemany(self.q.UPSERT_SCHEDULE, [s._asdict() for s in schedules])

    def delete_schedules(self, conn: Connection, unique_keys: Iterable[str]) -> int:
        """Delete the schedules with these keys; returns how many existed."""
        with conn:
            conn.execute(self.q.DELETE_SCHEDULES, (json.dumps(list(unique_keys)),))
            return conn.changes()

    def get_schedules(self, conn: Connection, unique_keys: Iterable[str] | None = None) -> list[ScheduleRow]:
        """Every schedule, or those with these keys, by key."""
        if unique_keys is None:
            rows = _fetch(conn, self.q.GET_ALL_SCHEDULES)
        else:
            rows = _fetch(conn, self.q.GET_SCHEDULES, (json.dumps(list(unique_keys)),))
        return [ScheduleRow(*row) for row in rows]

    def due_runs(self, conn: Connection, *, now: int, limit: int) -> list[DueRun]:
        """Up to ``limit`` runs due at ``now``, earliest first (a snapshot: take each with ``take_run``)."""
        return [DueRun(*row) for row in _fetch(conn, self.q.DUE_SCHEDULES, {"now": now, "limit": limit})]

    def take_run(self, conn: Connection, run: DueRun, *, next_run: int, now: int, new_id: str) -> Fired | None:
        """Take one due run, in one transaction: move the schedule's ``next_run`` to ``next_run`` (``last_run`` to
        ``now``) if it still holds this run, and push its job, due at the run's time, with id ``new_id``.

        Returns None when the schedule no longer holds this run (another worker took it, or it was changed or
        removed meanwhile): then nothing changed. Raises (rolling back) if the stored job cannot be pushed.
        """
        params = {"unique_key": run.unique_key, "due": run.due, "cron": run.cron, "timezone": run.timezone,
                  "next_run": next_run, "now": now}
        with conn:
            rows = _fetch(conn, self.q.ADVANCE_SCHEDULE, params)
            if not rows:
                return None
            job = dataclasses.replace(Job.unpack(json.loads(rows[0][0])), unique_key=run.unique_key,
                                      scheduled_at=from_micros(run.due))
            [job_id] = self.core.insert_jobs(conn, [job], now, lambda n: [new_id])
        return Fired(run.unique_key, run.due, job_id, job_id == new_id)

    def push_now(self, conn: Connection, unique_key: str, *, now: int, new_id: str) -> tuple[str, bool] | None:
        """Push a schedule's job, due at ``now``, leaving the schedule as it is: (job id, whether it was inserted;
        False when an unfinished job holds the key), or None if there is no such schedule."""
        with conn:
            rows = _fetch(conn, self.q.GET_SCHEDULE_JOB, (unique_key,))
            if not rows:
                return None
            job = dataclasses.replace(Job.unpack(json.loads(rows[0][0])), unique_key=unique_key,
                                      scheduled_at=from_micros(now))
            [job_id] = self.core.insert_jobs(conn, [job], now, lambda n: [new_id])
        return job_id, job_id == new_id

    def next_wake(self, conn: Connection, *, now: int) -> int | None:
        """The earliest run after ``now`` (µs), or None without schedules."""
        value: int | None = _fetch(conn, self.q.NEXT_WAKE, {"now": now})[0][0]
        return value

"""The only module that executes SQL.

Each method takes an open connection from :mod:`chancy_lite.db` and, where time
matters, ``now`` (integer microseconds since the epoch): only the loops read
the clock, so tests drive schedules, retries and leases by passing ``now``.
Write methods run in ``with conn:`` (``BEGIN IMMEDIATE``, or a savepoint inside
a caller's transaction) and record what they changed on the connection, which publishes it after the commit.
The one send the store makes itself is a hand-over (through ``conn.handoff``), whose delivery decides the row.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from chancy_lite import sql, wake
from chancy_lite.db import Connection
from chancy_lite.errors import SchemaTooNewError
from chancy_lite.job import Job, Limit, QueuedJob, stored_uuid
from chancy_lite.outcome import Outcome, after_death, stored_view
from chancy_lite.queue import Queue
from chancy_lite.utils import dump_json, from_micros, to_micros

log = logging.getLogger(__name__)

CORE_KEY = "chancy"
Step = tuple[list[str], list[str]]
Row = tuple[Any, ...]  # a result row: each statement's columns are named where it is unpacked

_STATES = {s.value: s for s in QueuedJob.State}
_QSTATES = {s.value: s for s in Queue.State}
_EMPTY_JSON = ("{}", "[]")
_RUNNABLE_AGAIN = frozenset({QueuedJob.State.RETRYING, QueuedJob.State.PENDING})


@dataclasses.dataclass(frozen=True, slots=True)
class Holder:
    """A process holding running jobs, as recorded on the rows."""

    worker_id: str
    pid: int | None
    pid_start: int | None
    hostname: str | None  # of the holder's worker, None if its row is gone
    worker_pid: int | None
    worker_pid_start: int | None
    expires_at: int | None


def row_to_job(row: Sequence[Any]) -> QueuedJob:
    (id_, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts, _taken_by,
     created_at, started_at, completed_at, scheduled_at, unique_key, errors,
     limit_key, key_limits) = row
    keyed = {} if limit_key is None else _key_fields(limit_key, key_limits)
    return QueuedJob(
        id=stored_uuid(id_),
        queue=queue,
        func=func,
        kwargs=json.loads(kwargs) if kwargs != "{}" else {},
        limits=[Limit.deserialize(x) for x in json.loads(limits)] if limits != "[]" else [],
        meta=json.loads(meta) if meta != "{}" else {},
        state=_STATES[state],
        priority=priority,
        attempts=attempts,
        max_attempts=max_attempts,
        created_at=from_micros(created_at),
        started_at=from_micros(started_at),
        completed_at=from_micros(completed_at),
        scheduled_at=from_micros(int(scheduled_at)),
        unique_key=unique_key,
        errors=json.loads(errors) if errors != "[]" else [],
        **keyed,
    )


def claimed_jobs(rows: Sequence[Row]) -> list[QueuedJob]:
    """The jobs of ``Store.claim_job_rows``, in claim order (priority, then age)."""
    jobs = [row_to_job(row) for row in rows]
    if len(jobs) > 1:  # RETURNING gives no order guarantee
        jobs.sort(key=lambda j: (-j.priority, j.id))
    return jobs


def outcomes_payload(outcomes: Sequence[Outcome]) -> str:
    """The ``:outcomes`` JSON of ``COMPLETE_JOBS``."""
    return json.dumps([[o.id, o.attempts, o.state.value, o.completed_at, o.meta, o.error, o.scheduled_at,
                        o.started_at] for o in outcomes], separators=(",", ":"))


def handed_job(row: Sequence[Any], worker_id: str) -> QueuedJob:
    """The job a child was handed over (its ``JobRow``), as its claim would have returned it."""
    (id_, queue, func, kwargs, limits, meta, priority, max_attempts, created_at, scheduled_at, unique_key,
     limit_key, key_limits) = row
    return row_to_job((id_, queue, func, kwargs, limits, meta, "running", priority, 0, max_attempts, worker_id,
                       created_at, None, None, scheduled_at, unique_key, "[]", limit_key, key_limits))


def _key_fields(limit_key: str, key_limits: str) -> dict[str, Any]:
    """A keyed job's fields, from its columns (key_limits: JSON [concurrency_max, rate_limit, window µs])."""
    concurrency_max, rate_limit, window = json.loads(key_limits)
    if window is not None:  # in seconds, an int when whole (as it was most likely given)
        window = window // 1_000_000 if window % 1_000_000 == 0 else window / 1_000_000
    return {"limit_key": limit_key, "concurrency_max": concurrency_max, "rate_limit": rate_limit,
            "rate_limit_window": window}


class JobRow(NamedTuple):
    """The parameters of ``INSERT_JOB``, in its column order (a tuple, so apsw binds it as it is)."""

    id: str
    queue: str
    func: str
    kwargs: str
    limits: str
    meta: str
    priority: int
    max_attempts: int
    created_at: int
    scheduled_at: int
    unique_key: str | None
    limit_key: str | None
    key_limits: str | None  # JSON [concurrency_max, rate_limit, rate_limit_window in µs]


def job_params(job: Job, job_id: str, now: int) -> JobRow:
    """The INSERT_JOB parameters of a job; raises NotSerializableError for non-JSON data."""
    return JobRow(
        job_id,
        job.queue,
        job.func,
        dump_json(job.kwargs, f"kwargs of {job.func}") if job.kwargs else "{}",
        dump_json([lim.serialize() for lim in job.limits], "limits") if job.limits else "[]",
        dump_json(job.meta, f"meta of {job.func}") if job.meta else "{}",
        job.priority,
        job.max_attempts,
        now,
        to_micros(job.scheduled_at),
        job.unique_key,
        job.limit_key,
        _key_limits(job) if job.limit_key is not None else None,
    )


def _key_limits(job: Job) -> str:
    window = window_micros(job.rate_limit_window) if job.rate_limit_window is not None else None
    return json.dumps([job.concurrency_max, job.rate_limit, window])


def window_micros(seconds: float) -> int:
    """A rate-limit window in whole microseconds (at least 1)."""
    return max(1, round(seconds * 1_000_000))


FINISHED_VALUES = ("succeeded", "failed")
WAITING_VALUES = ("pending", "retrying")
STATE_VALUES = ("pending", "running", "retrying", "succeeded", "failed")


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """Which jobs a dashboard page or a bulk action reads (``chancy_lite.web`` builds and checks it).

    ``states``: state values to include; ``queue`` and ``func``: exact names (None: any); ``func_contains``:
    case-insensitive substrings the function must all hold (ASCII, as SQLite's LIKE); ``compare``:
    ``(column, operator, value)`` with a column of ``sql.PAGE_COLUMNS`` (priority, attempts) and an operator of
    ``sql.PAGE_OPERATORS``.
    """

    states: tuple[str, ...] = STATE_VALUES
    queue: str | None = None
    func: str | None = None
    func_contains: tuple[str, ...] = ()
    compare: tuple[tuple[str, str, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CappedCount:
    """A count read from an index up to a cap: exact when ``exact``, else a floor (there are at least ``count``)."""

    count: int
    exact: bool


class LimitedJob(NamedTuple):
    """A started job with a TIME limit, for the supervisor's backstop."""

    id: str
    holder_pid: int
    started_at: int
    limit: float  # seconds


def queue_params(queue: Queue, now: int) -> dict[str, Any]:
    return {
        "name": queue.name,
        "state": queue.state.value,
        "concurrency": queue.concurrency,
        "tags": json.dumps(sorted(queue.tags)),
        "executor": str(queue.executor),
        "executor_options": dump_json(queue.executor_options, "executor_options"),
        "polling_interval": queue.polling_interval,
        "rate_limit": queue.rate_limit,
        "rate_limit_window": queue.rate_limit_window,
        "resume_at": to_micros(queue.resume_at) if queue.resume_at is not None else None,
        "eager_polling": int(queue.eager_polling),
        "now": now,
    }


def row_to_queue(row: Sequence[Any]) -> Queue:
    (name, state, concurrency, tags, executor, executor_options, polling_interval,
     rate_limit, rate_limit_window, resume_at, eager_polling) = row
    return Queue(
        name,
        state=_QSTATES[state],
        concurrency=concurrency,
        tags=set(json.loads(tags)),
        executor=executor,
        executor_options=json.loads(executor_options),
        polling_interval=int(polling_interval) if float(polling_interval).is_integer() else polling_interval,
        rate_limit=rate_limit,
        rate_limit_window=rate_limit_window,
        resume_at=from_micros(resume_at),
        eager_polling=bool(eager_polling),
    )


class Store:
    """Typed access to the tables of one prefix.

    Write methods record what they changed (jobs made claimable per queue, jobs finished, queues changed,
    cancels) on the connection; the connection's owner publishes that after the commit (see
    :mod:`chancy_lite.wake`). The store itself sends nothing.
    """

    def __init__(self, prefix: str = "chancy_") -> None:
        if not prefix.replace("_", "").isalnum() or not prefix[0].isalpha():
            raise ValueError(f"prefix {prefix!r} must be letters, digits and '_' (such as 'chancy_')")
        self.prefix = prefix
        self.q = statements(prefix)
        self.migrations: dict[str, list[Step]] = {CORE_KEY: sql.CORE_MIGRATIONS}

    @staticmethod
    def _changed(conn: Connection, *, claimable: tuple[str, int] | None = None, done: bool = False,
                 queues: bool = False, cancel: tuple[str, int | None] | None = None) -> None:
        """Record a change on ``conn``: published after its transaction commits, or now outside one."""
        changes = conn.pending_changes()
        if claimable is not None:
            changes.add_claimable(*claimable)
        changes.done = changes.done or done
        changes.queues = changes.queues or queues
        if cancel is not None:
            changes.cancels.append(cancel)
        if not conn.in_transaction:
            conn.publish_changes()

    # ----------------------------------------------------------- migrations

    def add_migrations(self, key: str, steps: list[Step]) -> None:
        """Register a plugin's migration steps under its own key."""
        self.migrations[key] = steps

    def migration_versions(self, conn: Connection) -> dict[str, int]:
        if not _fetch(conn, self.q.MIGRATIONS_TABLE_EXISTS):
            return {}
        return dict(_fetch(conn, self.q.GET_ALL_MIGRATION_VERSIONS))

    def check_versions(self, versions: dict[str, int]) -> None:
        for key, version in versions.items():
            known = len(self.migrations.get(key, ()))
            if key in self.migrations and version > known:
                raise SchemaTooNewError(
                    f"the database's {key!r} schema is at version {version} but this chancy_lite knows only "
                    f"{known}: upgrade chancy_lite, or use a different database file"
                )

    def migration_status(self, conn: Connection) -> list[tuple[str, int, int | None]]:
        """``(key, version in the file, newest version known here or None)`` for every key known here or
        recorded in the file: the core first, then the others by name."""
        versions = self.migration_versions(conn)
        keys = sorted(set(versions) | set(self.migrations), key=lambda k: (k != CORE_KEY, k))
        return [(key, versions.get(key, 0), len(self.migrations[key]) if key in self.migrations else None)
                for key in keys]

    def is_up_to_date(self, conn: Connection) -> bool:
        versions = self.migration_versions(conn)
        self.check_versions(versions)
        return all(versions.get(key, 0) == len(steps) for key, steps in self.migrations.items())

    def migrate(self, conn: Connection, to_version: int | None = None, *, key: str | None = None) -> list[str]:
        """Step every key (or one) up or down to ``to_version`` (None: the newest). Returns what ran.

        The whole run is one ``BEGIN IMMEDIATE`` transaction that reads the versions inside it, so concurrent
        migrators of one file take turns: the first does the work, the others find nothing left to do. A failed
        step leaves the file as it was.
        """
        done: list[str] = []
        keys = [key] if key else list(self.migrations)
        if to_version == 0 and key is None:
            keys.reverse()  # plugins first, then the core they build on
        with conn:
            conn.execute(self.q.CREATE_MIGRATIONS)
            versions = self.migration_versions(conn)
            self.check_versions(versions)
            for name in keys:
                steps = self.migrations[name]
                target = len(steps) if to_version is None else min(to_version, len(steps))
                if to_version is not None and to_version > len(steps) and key is not None:
                    raise ValueError(f"{name!r} has no version {to_version}; the newest is {len(steps)}")
                current = versions.get(name, 0)
                while current != target:
                    up = current < target
                    statements = steps[current][0] if up else steps[current - 1][1]
                    new_version = current + 1 if up else current - 1
                    for statement in statements:
                        conn.execute(statement.format(p=self.prefix))
                    conn.execute(self.q.SET_MIGRATION_VERSION, {"key": name, "version": new_version})
                    done.append(f"{name} {current} -> {new_version}")
                    current = new_version
            if to_version == 0 and key is None:
                conn.execute(self.q.DROP_MIGRATIONS)
        return done

    # ----------------------------------------------------------------- jobs

    def insert_jobs(self, conn: Connection, jobs: Sequence[Job], now: int, new_ids: Any) -> list[str]:
        """Insert jobs in one transaction; return their ids (the existing job's for a duplicate unique_key).

        ``new_ids(n)`` makes n new time-ordered ids.
        """
        ids: list[str] = []
        counts: dict[str, int] = {}
        params = [job_params(job, i, now) for job, i in zip(jobs, new_ids(len(jobs)), strict=True)]
        if len(params) == 1 and params[0].unique_key is None and not conn.in_transaction:
            # One statement, its own transaction: the fast single push (handed over to an idle child if one takes it).
            if not self._hand_over(conn, params[0], now):
                conn.execute(self.q.INSERT_JOB, params[0])
                self._changed(conn, claimable=(params[0].queue, 1))
            return [params[0].id]
        with conn:
            if len(params) > 1 and all(p.unique_key is None for p in params):  # no unique keys: no conflict
                conn.executemany(self.q.INSERT_JOB, params)
                ids = [p.id for p in params]
                for p in params:
                    counts[p.queue] = counts.get(p.queue, 0) + 1
            else:
                for p in params:
                    conn.execute(self.q.INSERT_JOB, p)
                    if conn.changes() == 1:
                        ids.append(p.id)
                        counts[p.queue] = counts.get(p.queue, 0) + 1
                    else:
                        ids.append(_fetch(conn, self.q.GET_ACTIVE_ID_BY_UNIQUE_KEY, (p.unique_key,))[0][0])
            for queue, count in counts.items():
                self._changed(conn, claimable=(queue, count))
        return ids

    def _hand_over(self, conn: Connection, row: JobRow, now: int) -> bool:
        """Insert a job held by an idle child of its queue and send it to that child (``conn.handoff``, see
        chancy_lite.wake); False when there is none, or the job is not one to hand over (limits, not due yet,
        too big). A job that could not be delivered is put back to wait and announced as usual."""
        handoff = conn.handoff
        if handoff is None or row.limits != "[]" or row.scheduled_at > now or row.limit_key is not None:
            return False  # a keyed job waits for its key's limits, which only a claim weighs
        if len(row.kwargs) + len(row.meta) + len(row.func) > wake.MAX_HANDOVER_BYTES:
            return False
        target = handoff.handover_target(row.queue)
        if target is None:
            return False
        conn.execute(self.q.INSERT_HANDED_JOB, (*row, target.worker_id, target.pid, target.pid_start))
        if not handoff.hand_over(target, row):
            conn.execute(self.q.RELEASE_HANDED_JOB, (row.id, target.worker_id, target.pid))
            self._changed(conn, claimable=(row.queue, 1))
        return True

    def get_job(self, conn: Connection, job_id: str) -> QueuedJob | None:
        rows = _fetch(conn, self.q.GET_JOB, (job_id,))
        return row_to_job(rows[0]) if rows else None

    def get_jobs(self, conn: Connection, job_ids: Iterable[str]) -> list[QueuedJob]:
        """The jobs that exist, in the order asked (one statement: one consistent snapshot)."""
        ids = list(job_ids)
        rows = _fetch(conn, self.q.GET_JOBS, (json.dumps(ids),))
        by_id = {row[0]: row for row in rows}
        return [row_to_job(by_id[i]) for i in ids if i in by_id]

    def job_states(self, conn: Connection, job_ids: Sequence[str]) -> dict[str, str]:
        return {job_id: state for job_id, state in _fetch(conn, self.q.JOB_STATES, (json.dumps(list(job_ids)),))}

    def list_jobs(
        self, conn: Connection, *, state: str | None = None, queue: str | None = None, func: str | None = None,
        limit: int = 100,
    ) -> list[QueuedJob]:
        params = {"state": state, "queue": queue, "func": func, "limit": limit}
        statement = {"pending": self.q.LIST_WAITING_JOBS, "retrying": self.q.LIST_WAITING_JOBS,
                     "running": self.q.LIST_RUNNING_JOBS}.get(state or "", self.q.LIST_JOBS)
        return [row_to_job(row) for row in _fetch(conn, statement, params)]

    def activity(self, conn: Connection, *, since: int) -> tuple[int, int, int]:
        """(waiting jobs, running jobs, jobs finished since ``since`` µs), each from an index alone."""
        waiting = _fetch(conn, self.q.COUNT_WAITING)[0][0]
        running = _fetch(conn, self.q.COUNT_RUNNING)[0][0]
        finished = _fetch(conn, self.q.COUNT_FINISHED_SINCE, (since,))[0][0]
        return waiting, running, finished

    def recent_failures(self, conn: Connection, *, limit: int, scan: int = 10_000) -> list[QueuedJob]:
        """The newest failed jobs among the last ``scan`` finished ones (a bounded read), newest first."""
        return [row_to_job(row) for row in _fetch(conn, self.q.RECENT_FAILURES, {"limit": limit, "scan": scan})]

    def count_jobs(self, conn: Connection) -> list[tuple[str, str, int]]:
        """``(queue, state, count)`` for every queue and state with jobs; reads the waiting and running jobs'
        indexes and the finished jobs' counts, never the whole table."""
        return _fetch(conn, self.q.COUNT_JOBS)

    def count_jobs_scan(self, conn: Connection) -> list[tuple[str, str, int]]:
        """The same as ``count_jobs``, counted from every row (a full scan: for checks, not for use)."""
        return _fetch(conn, self.q.COUNT_JOBS_SCAN)

    def claim_jobs(
        self, conn: Connection, queue: str, n: int, *, now: int, worker_id: str, pid: int, pid_start: int | None
    ) -> list[QueuedJob]:
        """Claim up to ``n`` due jobs (priority, then age) for this process. Caller opens the transaction.

        A job with a limit key is claimed only while its key's limits allow one more (see ``Job``): fewer running
        jobs of the key than its ``concurrency_max``, fewer claims of the key in the current window than its
        ``rate_limit``. One that must wait holds up neither unkeyed jobs nor other keys' behind it. Exact across
        processes: every claim of the file runs in a ``BEGIN IMMEDIATE`` transaction, and this one counts its own.
        While no keyed job waits in the queue, the claim is one statement, as it was before keys.
        """
        rows = self.claim_job_rows(conn, queue, n, now=now, worker_id=worker_id, pid=pid, pid_start=pid_start)
        return claimed_jobs(rows)

    def claim_job_rows(
        self, conn: Connection, queue: str, n: int, *, now: int, worker_id: str, pid: int, pid_start: int | None
    ) -> list[Row]:
        """``claim_jobs``, returning the rows as read (``claimed_jobs(rows)`` makes the jobs, after the commit:
        the write lock is not held for that)."""
        params = {"queue": queue, "now": now, "worker_id": worker_id, "pid": pid, "pid_start": pid_start, "n": n}
        rows = _fetch(conn, self.q.CLAIM_JOB if n == 1 else self.q.CLAIM_JOBS, params)
        if not rows:  # nothing was due, or keyed jobs wait: weigh their keys' limits
            params["keyed"] = json.dumps(self._admit_keyed(conn, params))
            rows = _fetch(conn, self.q.CLAIM_JOB_WITH_KEYED if n == 1 else self.q.CLAIM_JOBS_WITH_KEYED, params)
            limited = [job for job in map(row_to_job, rows) if job.rate_limit_window is not None]
            self._spend_key_budgets(conn, limited, now)
        return rows

    def _admit_keyed(self, conn: Connection, params: dict[str, Any]) -> list[int]:
        """The rowids of up to ``n`` due keyed jobs of the queue that a claim may take now, in claim order.

        First the keyed jobs at the head of the queue (2n + 16 of them); when those give fewer than n, the next
        job of each key too, one seek per key, so that however many jobs of a key wait on its limits, the claim
        steps over them at once. Each candidate is admitted against its key's state before the claim plus the
        jobs of its key admitted before it.
        """
        n = params["n"]
        rows = _fetch(conn, self.q.KEYED_CANDIDATES, {**params, "scan": 2 * n + 16})
        chosen = _admit(rows, n)
        if len(chosen) < n:
            seen = {row[0] for row in rows}
            rows += [row for row in _fetch(conn, self.q.KEYED_HEADS, params) if row[0] not in seen]
            rows.sort(key=lambda row: (-row[1], row[2]))
            chosen = _admit(rows, n)
        return chosen

    def _spend_key_budgets(self, conn: Connection, jobs: Sequence[QueuedJob], now: int) -> None:
        """Count one claim of each of these rate-limited jobs in its key's current window (and drop a few windows
        that ended)."""
        for job in jobs:
            window = window_micros(job.rate_limit_window or 0)
            start = now - now % window
            conn.execute(self.q.SPEND_KEY_BUDGET, {"key": job.limit_key, "start": start, "end": start + window})
        if jobs:
            conn.execute(self.q.DROP_ENDED_KEY_WINDOWS, (now,))

    def key_budget(self, conn: Connection, key: str, *, now: int) -> tuple[int, int] | None:
        """A key's claims counted in its window open at ``now``, and when that window ends (µs); None if none."""
        rows = _fetch(conn, self.q.GET_KEY_BUDGET, (key,))
        if not rows or not rows[0][0] <= now < rows[0][1]:
            return None
        return rows[0][2], rows[0][1]

    def take_rate_budget(
        self, conn: Connection, queue: str, n: int, *, now: int, limit: int, window: int
    ) -> tuple[int, int, int]:
        """For a rate-limited queue (``limit`` claims per fixed ``window`` µs): how many of ``n`` claims it allows
        now, how many this window used already, and when the window ends. Caller's transaction; record the new
        total with ``spend_rate_budget``."""
        start = now - now % window
        rows = _fetch(conn, self.q.GET_RATE_BUDGET, (queue,))
        used = rows[0][1] if rows and rows[0][0] == start else 0
        return max(0, min(n, limit - used)), used, start + window

    def spend_rate_budget(self, conn: Connection, queue: str, total: int, *, now: int, window: int) -> None:
        conn.execute(self.q.SPEND_RATE_BUDGET, (queue, now - now % window, total))

    def next_due(self, conn: Connection, queue: str) -> int | None:
        return _fetch(conn, self.q.NEXT_DUE, (queue,))[0][0]

    def next_unblocked(self, conn: Connection, queue: str, *, now: int) -> int | None:
        """For a worker that found nothing to claim although jobs of ``queue`` are due (they wait on their keys'
        limits): the earliest time (µs) when waiting may end by itself, the next job of the queue falling due or
        a key's rate-limit window ending; None if neither (a running job of the key must finish first, and its
        finish wakes workers of its queue)."""
        times = [_fetch(conn, self.q.NEXT_DUE_AFTER, (queue, now))[0][0],
                 _fetch(conn, self.q.NEXT_KEY_WINDOW_END, (now,))[0][0]]
        return min((t for t in times if t is not None), default=None)

    def complete_job(
        self, conn: Connection, outcome: Outcome, *, worker_id: str, pid: int | None, queue: str = "*",
        quiet: bool = False,
    ) -> bool:
        """Write one outcome, guarded: only a job still running, held by us, at this attempt. Caller's transaction.

        An outcome in state PENDING releases the job (the worker stopped under it): it waits again and the
        attempt is not counted. A job that can run again (retrying, released) is recorded as claimable in ``queue``
        (the job's queue; "*" when unknown); a finished one as done.
        """
        statement = self.q.RELEASE_JOB if outcome.state is QueuedJob.State.PENDING else self.q.COMPLETE_JOB
        conn.execute(
            statement,
            {
                "id": outcome.id,
                "state": outcome.state.value,
                "completed_at": outcome.completed_at,
                "scheduled_at": outcome.scheduled_at,
                "started_at": outcome.started_at,
                "meta": outcome.meta,
                "error": outcome.error,
                "worker_id": worker_id,
                "pid": pid,
                "attempts": outcome.attempts,
            },
        )
        if conn.changes() != 1:
            if not quiet:
                # Routine when a job is cancelled as it finishes: not worth a warning on every such race.
                log.info("dropped a stale result for job %s: it was cancelled or recovered meanwhile", outcome.id)
            return False
        if outcome.state in _RUNNABLE_AGAIN:
            self._changed(conn, claimable=(queue, 1))
        elif outcome.frees_key:  # a slot of its key's concurrency cap is free: a waiting job of the key may run
            self._changed(conn, claimable=(queue, 1), done=True)
        else:  # the hot path: inline, as it runs once per finished job
            conn.pending_changes().done = True
            if not conn.in_transaction:
                conn.publish_changes()
        return True

    def complete_jobs(
        self, conn: Connection, outcomes: Sequence[Outcome], *, worker_id: str, pid: int | None, queue: str = "*",
        payload: str | None = None,
    ) -> list[bool]:
        """``complete_job`` for many outcomes, finished or to be retried, in one statement (not releases: those
        go one by one). Returns, in order, whether each was written. Caller's transaction. ``payload`` is
        ``outcomes_payload(outcomes)``, made beforehand by a caller that would not make it holding the lock."""
        if len(outcomes) < 2:
            return [self.complete_job(conn, o, worker_id=worker_id, pid=pid, queue=queue) for o in outcomes]
        params = {"outcomes": payload or outcomes_payload(outcomes), "worker_id": worker_id, "pid": pid}
        written = {row[0] for row in _fetch(conn, self.q.COMPLETE_JOBS, params)}
        accepted = [o.id in written for o in outcomes]
        changes = conn.pending_changes()
        for outcome, ok in zip(outcomes, accepted, strict=True):
            if not ok:
                log.info("dropped a stale result for job %s: it was cancelled or recovered meanwhile", outcome.id)
            elif outcome.state in _RUNNABLE_AGAIN:
                changes.add_claimable(queue, 1)
            else:
                changes.done = True
                if outcome.frees_key:  # a slot of its key's concurrency cap is free: a waiting job of the key may run
                    changes.add_claimable(queue, 1)
        if not conn.in_transaction:
            conn.publish_changes()
        return accepted

    def mark_job_started(
        self, conn: Connection, job: QueuedJob, *, started_at: int, worker_id: str, pid: int | None
    ) -> bool:
        """Record when a job claimed in a batch began running (guarded like ``complete_job``). Caller's txn."""
        params = {"id": str(job.id), "attempts": job.attempts, "started_at": started_at, "worker_id": worker_id,
                  "pid": pid}
        conn.execute(self.q.MARK_JOB_STARTED, params)
        return conn.changes() == 1

    def save_running_meta(
        self, conn: Connection, job: QueuedJob, meta: str, *, worker_id: str, pid: int | None
    ) -> bool:
        """Save the meta of a job we run, while it runs (guarded like ``complete_job``); its own transaction."""
        params = {"id": str(job.id), "attempts": job.attempts, "meta": meta, "worker_id": worker_id, "pid": pid}
        with conn:
            conn.execute(self.q.SAVE_RUNNING_META, params)
            return conn.changes() == 1

    def cancel_job(self, conn: Connection, job_id: str, *, now: int) -> tuple[str, str | None, int | None] | None:
        """Cancel a job that has not finished. Returns (previous state, holder, holder pid) or None."""
        with conn:
            state_rows = _fetch(conn, self.q.GET_JOB_HOLDER, (job_id,))
            if not state_rows:
                return None
            previous = state_rows[0][0]
            rows = _fetch(
                conn, self.q.CANCEL_JOB, {"id": job_id, "now": now, "reason": "cancelled: cancel_job() was called"}
            )
            if not rows:
                return None
            _, taken_by, holder_pid, queue, concurrency_max = rows[0]
            running = previous == "running"
            self._changed(conn, done=True, cancel=(job_id, holder_pid) if running else None,
                          claimable=(queue, 1) if running and concurrency_max is not None else None)
        return previous, taken_by, holder_pid

    def retry_job(self, conn: Connection, job_id: str, *, now: int) -> str | None:
        """Run a finished job again (see ``Chancy.retry_jobs``); its queue, or None if it was left as it is."""
        with conn:
            rows = _fetch(conn, self.q.RETRY_JOB, {"id": job_id, "now": now})
            if rows:
                self._changed(conn, claimable=(rows[0][0], 1))
        return rows[0][0] if rows else None

    def prune_jobs(self, conn: Connection, rule: tuple[Any, ...], *, now: int, limit: int) -> int:
        """Delete up to ``limit`` finished jobs matching a pruning rule (see chancy_lite.plugins.pruner)."""
        where, params = _compile_rule(rule, now, finished=True)
        with conn:
            conn.execute(self.q.PRUNE_JOBS.format(rule=where), [*params, limit])
            return conn.changes()

    def reprioritize_jobs(
        self, conn: Connection, rule: tuple[Any, ...], *, now: int, increase: int, batch_size: int
    ) -> int:
        """Raise by ``increase`` the priority of the waiting jobs matching ``rule``, each at most once: the
        matching ids are read once, then raised in id order, ``batch_size`` per transaction (jobs that stopped
        waiting meanwhile are skipped). Returns how many were raised."""
        where, params = _compile_rule(rule, now)
        ids = [r[0] for r in _fetch(conn, self.q.WAITING_JOB_IDS.format(rule=where), params)]
        total = 0
        for start in range(0, len(ids), batch_size):
            with conn:
                conn.execute(self.q.RAISE_PRIORITY, (increase, json.dumps(ids[start:start + batch_size])))
                total += conn.changes()
        return total

    def matching_job_ids(self, conn: Connection, rule: tuple[Any, ...], *, now: int) -> list[str]:
        """The ids of the jobs matching ``rule``, in id order."""
        where, params = _compile_rule(rule, now)
        return [r[0] for r in _fetch(conn, self.q.MATCHING_JOB_IDS.format(rule=where), params)]

    def purge_job(self, conn: Connection, job_id: str) -> bool:
        with conn:
            conn.execute(self.q.PURGE_JOB, (job_id,))
            changed = conn.changes() == 1
            if changed:
                self._changed(conn, done=True)
        return changed

    def notify(self, conn: Connection, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Send events to every worker of the file once ``conn``'s transaction commits (at once outside one)."""
        conn.pending_changes().events.extend(events)
        if not conn.in_transaction:
            conn.publish_changes()

    # ------------------------------------------------------------- dashboard
    # Reads for chancy_lite.web, each through an index so that a page costs the same with a million jobs (see the
    # dashboard section of sql.py). Every statement is fetched at once: no read transaction stays open.

    #: Below this many waiting jobs, a page of them is read and sorted whole; from it on, read along the ids...
    FEW_WAITING = 10_000
    #: ...over at most this many of the newest rows, before reading them whole after all.
    WAITING_WALK = 20_000

    def page_job_ids(self, conn: Connection, flt: JobFilter, *, before: str | None = None, limit: int) -> list[str]:
        """Up to ``limit`` ids of jobs matching ``flt``, newest first, all below ``before`` (keyset paging)."""
        below = sql.PAGE_AFTER_ALL if before is None else before
        where, params = _page_filters(flt)
        params.update(before=below, limit=limit)
        ids: list[str] = []
        for state in flt.states:
            ids.extend(self._page_state(conn, flt, state, where, {**params, "state": state}))
        ids.sort(reverse=True)
        return ids[:limit]

    def _page_state(
        self, conn: Connection, flt: JobFilter, state: str, where: str, params: dict[str, Any]
    ) -> list[str]:
        if state in FINISHED_VALUES:
            statement = self.q.PAGE_FINISHED_IDS.format(where=where)
            if flt.queue is not None:
                queues = [flt.queue]
            else:
                queues = [r[0] for r in _fetch(conn, self.q.QUEUES_WITH_FINISHED, {"state": state})]
            found: list[str] = []
            for queue in queues:
                found.extend(r[0] for r in _fetch(conn, statement, {**params, "queue": queue}))
            return found
        where = ("" if flt.queue is None else sql.PAGE_QUEUE) + where
        params["queue"] = flt.queue
        if state == "running":
            return [r[0] for r in _fetch(conn, self.q.PAGE_RUNNING_IDS.format(where=where), params)]
        if not self.count_waiting(conn, flt.queue, cap=self.FEW_WAITING).exact:
            # A backlog: its jobs are the newest (claims take the oldest first), so a walk along the ids from the
            # top, over a bounded number of rows, fills the page; when it does not (this state is rare among the
            # newest jobs), the whole waiting set is read through jobs_due below.
            found = [r[0] for r in _fetch(conn, self.q.PAGE_MANY_WAITING_IDS.format(where=where),
                                          {**params, "scan": self.WAITING_WALK})]
            if len(found) == params["limit"]:
                return found
        return [r[0] for r in _fetch(conn, self.q.PAGE_FEW_WAITING_IDS.format(where=where), params)]

    def get_job_rows(self, conn: Connection, job_ids: Sequence[str]) -> list[tuple[QueuedJob, str | None]]:
        """The jobs that exist, in the order asked, each with the worker holding it (``taken_by``) or None."""
        rows = _fetch(conn, self.q.GET_JOBS, (json.dumps(list(job_ids)),))
        by_id = {row[0]: row for row in rows}
        return [(row_to_job(by_id[i]), by_id[i][10]) for i in job_ids if i in by_id]

    def count_waiting(self, conn: Connection, queue: str | None, *, cap: int) -> CappedCount:
        """Waiting (pending and retrying) jobs, of one queue or all, up to ``cap``."""
        return _capped(sum(n for _, n in self._waiting_counts(conn, queue, cap)), cap)

    def _waiting_counts(self, conn: Connection, queue: str | None, cap: int) -> list[Row]:
        if queue is None:
            return _fetch(conn, self.q.COUNT_WAITING_CAPPED, {"cap": cap})
        return _fetch(conn, self.q.COUNT_WAITING_IN_QUEUE_CAPPED, {"queue": queue, "cap": cap})

    def count_jobs_capped(self, conn: Connection, queue: str | None = None, *, cap: int) -> dict[str, CappedCount]:
        """Jobs per state (of one queue, or all), each read from an index and counted up to ``cap``.

        Running jobs are counted exactly (there are few). Waiting jobs are counted together up to ``cap``: once
        that many wait, both waiting states are floors.
        """
        counts: dict[str, CappedCount] = {}
        waiting: dict[str, int] = dict(self._waiting_counts(conn, queue, cap))
        waiting_exact = sum(waiting.values()) < cap
        for state in WAITING_VALUES:
            counts[state] = CappedCount(waiting.get(state, 0), waiting_exact)
        running: dict[str, int] = dict(_fetch(conn, self.q.COUNT_RUNNING_BY_QUEUE))
        total = running.get(queue, 0) if queue is not None else sum(running.values())
        counts["running"] = CappedCount(total, True)
        for state in FINISHED_VALUES:
            if queue is None:
                n = _fetch(conn, self.q.COUNT_FINISHED_CAPPED, {"state": state, "cap": cap})[0][0]
            else:
                params = {"state": state, "queue": queue, "cap": cap}
                n = _fetch(conn, self.q.COUNT_FINISHED_IN_QUEUE_CAPPED, params)[0][0]
            counts[state] = _capped(n, cap)
        return {state: counts[state] for state in STATE_VALUES}

    def count_finished_since(self, conn: Connection, since: int, *, cap: int) -> CappedCount:
        """Jobs finished (succeeded or failed) at or after ``since`` (µs), up to ``cap``."""
        return _capped(_fetch(conn, self.q.COUNT_FINISHED_SINCE_CAPPED, {"since": since, "cap": cap})[0][0], cap)

    def distinct_funcs(self, conn: Connection) -> list[str]:
        """Every function name in the jobs table, sorted (a full scan)."""
        return [r[0] for r in _fetch(conn, self.q.DISTINCT_FUNCS)]

    def data_version(self, conn: Connection) -> int:
        """SQLite's data version of ``conn``: it changes when another connection commits."""
        return int(_fetch(conn, self.q.DATA_VERSION)[0][0])

    def sqlite_version(self, conn: Connection) -> str:
        return str(_fetch(conn, self.q.SQLITE_VERSION)[0][0])

    # -------------------------------------------------------------- recovery

    def list_holders(self, conn: Connection) -> list[Holder]:
        """Every process recorded as holding running jobs, with its worker's row if any."""
        return [Holder(*row) for row in _fetch(conn, self.q.LIST_HOLDERS)]

    def held_jobs(self, conn: Connection, worker_id: str, pid: int | None) -> list[QueuedJob]:
        rows = _fetch(conn, self.q.HELD_JOBS, {"worker_id": worker_id, "pid": pid})
        return [row_to_job(row) for row in rows]

    def time_limited_jobs(self, conn: Connection, worker_id: str) -> list[LimitedJob]:
        """A worker's started jobs that have a TIME limit."""
        found = []
        for job_id, pid, started_at, limits in _fetch(conn, self.q.TIME_LIMITED_JOBS, (worker_id,)):
            for limit in json.loads(limits):
                if limit.get("t") == Limit.Type.TIME.value:
                    found.append(LimitedJob(job_id, pid, started_at, float(limit["v"])))
        return found

    def recover_jobs(
        self, conn: Connection, worker_id: str, pid: int | None, reason: Callable[[QueuedJob], str], *, now: int,
        started: set[str] | None = None, outcomes: Sequence[Outcome] = (),
        written: Callable[[Connection, list[QueuedJob]], None] | None = None,
    ) -> list[tuple[QueuedJob, str]]:
        """The jobs of a dead process, from what its journal says (see chancy_lite.journal).

        Finished ``outcomes`` are written as the process would have; held jobs it ``started`` become
        retrying/failed with the attempt counted and ``reason`` as the error; held jobs it never started wait
        again, their attempt not counted. Without a journal (``started`` None) every held job counts as started.
        ``written``, if given, is called inside the transaction with the finished runs as stored (for plugins).
        """
        recovered = []
        updated: list[QueuedJob] = []
        with conn:
            held = self.held_jobs(conn, worker_id, pid)
            by_id = {str(job.id): job for job in held}
            for outcome in outcomes:
                job = by_id.get(outcome.id)
                if job is not None and job.concurrency_max is not None:  # its end frees a slot of its key
                    outcome = dataclasses.replace(outcome, frees_key=True)
                if (self.complete_job(conn, outcome, worker_id=worker_id, pid=pid,
                                      queue=job.queue if job else "*", quiet=True)
                        and job is not None and outcome.state is not QueuedJob.State.PENDING):
                    updated.append(stored_view(job, outcome))
            for job in held:
                if started is not None and str(job.id) not in started:
                    release = Outcome(str(job.id), job.attempts, QueuedJob.State.PENDING, None)
                    if self.complete_job(conn, release, worker_id=worker_id, pid=pid, queue=job.queue, quiet=True):
                        recovered.append((job, "released"))
                    continue
                outcome = after_death(job, reason(job), now=now)
                params = {"id": str(job.id), "attempts": job.attempts, "worker_id": worker_id, "pid": pid,
                          "state": outcome.state.value, "completed_at": outcome.completed_at, "error": outcome.error}
                conn.execute(self.q.RECOVER_JOB, params)
                if conn.changes() == 1:
                    recovered.append((job, outcome.state.value))
                    updated.append(stored_view(job, outcome))
                    again = outcome.state is QueuedJob.State.RETRYING or job.concurrency_max is not None
                    self._changed(conn, claimable=(job.queue, 1) if again else None,
                                  done=outcome.state is not QueuedJob.State.RETRYING)
            if written is not None and updated:
                written(conn, updated)
        return recovered

    # --------------------------------------------------------------- queues

    def declare_queue(self, conn: Connection, queue: Queue, *, upsert: bool, now: int) -> Queue:
        with conn:
            conn.execute(self.q.UPSERT_QUEUE if upsert else self.q.INSERT_QUEUE, queue_params(queue, now))
            changed = conn.changes() == 1
            stored = self.get_queue(conn, queue.name)
            if changed:
                self._changed(conn, queues=True)
        assert stored is not None
        return stored

    def get_queue(self, conn: Connection, name: str) -> Queue | None:
        rows = _fetch(conn, self.q.GET_QUEUE, (name,))
        return row_to_queue(rows[0]) if rows else None

    def get_all_queues(self, conn: Connection) -> list[Queue]:
        return [row_to_queue(row) for row in _fetch(conn, self.q.GET_ALL_QUEUES)]

    def pause_queue(self, conn: Connection, name: str, *, resume_at: int | None, now: int) -> bool:
        with conn:
            conn.execute(self.q.PAUSE_QUEUE, {"name": name, "resume_at": resume_at, "now": now})
            changed = conn.changes() == 1
            if changed:
                self._changed(conn, queues=True)
        return changed

    def resume_queue(self, conn: Connection, name: str, *, now: int) -> bool:
        with conn:
            conn.execute(self.q.RESUME_QUEUE, {"name": name, "now": now})
            changed = conn.changes() == 1
            if changed:
                self._changed(conn, queues=True)
        return changed

    def resume_due_queues(self, conn: Connection, *, now: int) -> list[str]:
        with conn:
            names = [r[0] for r in _fetch(conn, self.q.RESUME_DUE_QUEUES, {"now": now})]
            if names:
                self._changed(conn, queues=True)
        return names

    def delete_queue(self, conn: Connection, name: str, *, purge_jobs: bool) -> bool:
        with conn:
            conn.execute(self.q.DELETE_QUEUE, (name,))
            changed = conn.changes() == 1
            if purge_jobs:
                conn.execute(self.q.DELETE_QUEUE_JOBS, (name,))
            if changed:
                self._changed(conn, queues=True)
        return changed

    # -------------------------------------------------------------- workers

    def upsert_worker(
        self, conn: Connection, *, worker_id: str, hostname: str, pid: int, pid_start: int | None, tags: list[str],
        queues: list[str], now: int, expires_at: int,
    ) -> None:
        with conn:
            conn.execute(
                self.q.UPSERT_WORKER,
                {"worker_id": worker_id, "hostname": hostname, "pid": pid, "pid_start": pid_start,
                 "tags": json.dumps(tags), "queues": json.dumps(queues), "now": now, "expires_at": expires_at},
            )

    def delete_worker(self, conn: Connection, worker_id: str) -> None:
        with conn:
            conn.execute(self.q.DELETE_WORKER, (worker_id,))

    def delete_expired_workers(self, conn: Connection, *, now: int) -> list[str]:
        with conn:
            return [r[0] for r in _fetch(conn, self.q.DELETE_EXPIRED_WORKERS, {"now": now})]

    def get_all_workers(self, conn: Connection, *, now: int) -> list[dict[str, Any]]:
        workers = []
        rows = _fetch(conn, self.q.GET_ALL_WORKERS, {"now": now})
        for worker_id, hostname, pid, tags, queues, last_seen, expires_at, is_leader in rows:
            workers.append({
                "worker_id": worker_id, "hostname": hostname, "pid": pid, "tags": set(json.loads(tags)),
                "queues": json.loads(queues), "last_seen": from_micros(last_seen),
                "expires_at": from_micros(expires_at), "is_leader": bool(is_leader),
            })
        return workers

    # ------------------------------------------------------------ leadership

    def elect_leader(self, conn: Connection, worker_id: str, *, now: int, expires_at: int) -> str | None:
        """Take or renew the leadership lease for ``worker_id`` (until ``expires_at``, µs); returns the
        leader's worker id afterwards (None if nobody holds a lease)."""
        with conn:
            conn.execute(self.q.EXPIRE_LEADER, {"now": now})
            conn.execute(self.q.CLAIM_LEADER, {"worker_id": worker_id, "now": now, "expires_at": expires_at})
            rows = _fetch(conn, self.q.GET_LEADER)
        return rows[0][0] if rows else None

    def release_leader(self, conn: Connection, worker_id: str) -> bool:
        """Give up ``worker_id``'s lease, if it holds it."""
        with conn:
            conn.execute(self.q.RELEASE_LEADER, {"worker_id": worker_id})
            return conn.changes() == 1

    # ------------------------------------------------------------ inspection

    def checkpoint(self, conn: Connection, *, truncate: bool = False) -> tuple[int, int, int]:
        """A WAL checkpoint, passive or truncating: (busy, frames in the WAL, frames checkpointed)."""
        statement = self.q.CHECKPOINT_TRUNCATE if truncate else self.q.CHECKPOINT
        busy, frames, done = _fetch(conn, statement)[0]
        return busy, frames, done

    def explain(self, conn: Connection, statement: str, params: Any = None) -> list[str]:
        """EXPLAIN QUERY PLAN of a named statement (``statement`` is its name in sql.py)."""
        text = getattr(self.q, statement)
        return [row[-1] for row in _fetch(conn, sql.EXPLAIN + text, params)]


def _admit(candidates: Sequence[Row], n: int) -> list[int]:
    """Up to ``n`` rowids of keyed candidates (rowid, priority, id, key, concurrency_max, rate_limit, running, spent;
    in claim order), each admitted while its key, counting those admitted before it, stays within its limits."""
    taken: dict[str, int] = {}
    chosen: list[int] = []
    for rowid, _priority, _id, key, concurrency_max, rate_limit, running, spent in candidates:
        count = taken.get(key, 0)
        if (concurrency_max is None or running + count < concurrency_max) and (
            rate_limit is None or spent + count < rate_limit
        ):
            taken[key] = count + 1
            chosen.append(rowid)
            if len(chosen) == n:
                break
    return chosen


def fetch_all(conn: Connection, statement: str, params: Any = None) -> list[Row]:
    """Every row of a statement, fetched at once (no read transaction is left open)."""
    return conn.execute(statement, params).fetchall()


_fetch = fetch_all


def _capped(count: int, cap: int) -> CappedCount:
    return CappedCount(min(count, cap), count < cap)


def _page_filters(flt: JobFilter) -> tuple[str, dict[str, Any]]:
    """The WHERE fragment of a dashboard page's filters other than state and queue, and its parameters."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if flt.func is not None:
        where.append(sql.PAGE_FUNC_EQUALS)
        params["func"] = flt.func
    for i, text in enumerate(flt.func_contains):
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(sql.PAGE_FUNC_CONTAINS.replace(":func_like", f":func_like{i}"))
        params[f"func_like{i}"] = f"%{escaped}%"
    for i, (column, op, value) in enumerate(flt.compare):
        name = f"compare{i}"
        where.append(f" AND {sql.PAGE_COLUMNS[column]} {sql.PAGE_OPERATORS[op]} :{name}")
        params[name] = value
    return "".join(where), params


def _compile_rule(rule: tuple[Any, ...], now: int, *, finished: bool = False) -> tuple[str, list[Any]]:
    """A rule (chancy_lite.rule) as a WHERE fragment and its parameters (every value bound, never spliced).

    ``finished``: only finished jobs are candidates, so ``Age() > v`` may also use the finished-jobs index.
    """
    kind = rule[0]
    if kind in ("and", "or"):
        left, left_params = _compile_rule(rule[1], now, finished=finished)
        right, right_params = _compile_rule(rule[2], now, finished=finished)
        return f"({left}) {kind.upper()} ({right})", [*left_params, *right_params]
    _, field, op, value = rule
    if isinstance(value, tuple) and value and value[0] == "datetime":
        value = value[1]
    if field == "age":
        if op in ("contains", "ilike"):
            raise ValueError("Age() compares with numbers (seconds), not text")
        operator = sql.PRUNE_OPERATORS[op]
        micros = int(float(value) * 1_000_000)
        text = f"{sql.PRUNE_AGE} {operator} ?"
        if finished and op in (">", ">="):
            finished_since = sql.PRUNE_FINISHED_BEFORE if op == ">" else sql.PRUNE_FINISHED_BY
            return f"{finished_since} AND {text}", [now - micros, now, micros]
        return text, [now, micros]
    column = sql.RULE_COLUMNS[field]
    if op == "contains":
        escaped = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column + sql.RULE_LIKE, [f"%{escaped}%"]
    if op == "ilike":
        return f"{column} LIKE ?", [str(value)]
    return f"{column} {sql.PRUNE_OPERATORS[op]} ?", [value]


def statements(prefix: str) -> Statements:
    """The statements of sql.py formatted for ``prefix``, made once per prefix (children forked from the template
    share the template's)."""
    found = _STATEMENTS.get(prefix)
    if found is None:
        found = _STATEMENTS[prefix] = Statements(prefix)
    return found


class Statements:
    """The statements of a SQL module (``chancy_lite.sql``, or a plugin's own) formatted for one prefix, as
    attributes: every upper-case ``str`` of the module, with ``{p}`` replaced."""

    def __init__(self, prefix: str, module: types.ModuleType = sql) -> None:
        for name in dir(module):
            value = getattr(module, name)
            if name.isupper() and isinstance(value, str):
                setattr(self, name, value.format(p=prefix))

    def __getattr__(self, name: str) -> str:  # for type checkers: every attribute is a str
        raise AttributeError(name)


_STATEMENTS: dict[str, Statements] = {}

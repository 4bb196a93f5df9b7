"""``Cron``: push jobs on cron schedules, each schedule in its own time zone (Chancy 0.26's plugin).

::

    chancy = Chancy("jobs.db", plugins=[Cron()])
    await chancy.migrate()  # creates the chancy_cron table (migration key "cron")
    await Cron.schedule(chancy, "30 2 * * *", Job(func="tasks.nightly", unique_key="nightly"),
                        timezone=ZoneInfo("America/New_York"))

As Chancy 0.26:

* every job needs a ``unique_key``, which names its schedule: scheduling the key again replaces the schedule's
  job, expression, zone and next run; the pushed job carries the key, so a run never overlaps an unfinished
  (pending, running or retrying) job of its own schedule: that run pushes nothing;
* every worker with the plugin takes due runs (it is **not** leadership-gated); each run is taken in one
  ``BEGIN IMMEDIATE`` transaction that pushes the job and moves ``next_run`` on, guarded by the run it read, so a
  run is pushed once however many workers share the file;
* runs missed while no worker ran fire **once**, and the next run is computed from the time it fired;
* the expression is read in the schedule's zone with 0.26's daylight-saving rules (see ``expression``);
* a stored schedule whose expression or zone no longer works (edited by hand, or a zone this host lacks) is logged
  and skipped, staying due; the others run.

Each run a worker takes is logged at INFO and emitted on its hub as ``cron.fired`` with ``unique_key``,
``scheduled_for`` (the run's time, an aware UTC datetime), ``job_id`` and ``pushed`` (False when an unfinished job
held the key, so nothing new was pushed).

**Better than Chancy:** a worker sleeps until the earliest next run (at most ``poll_interval``) rather than polling,
so runs start on time; a schedule changed in this process wakes its workers at once (one changed by another
process is seen within ``poll_interval``); ``run_now`` and the ``chancy-lite cron`` commands list, run and remove
schedules. A pushed job is due at the run's time (its ``scheduled_at``), whatever ``scheduled_at`` the job had
when it was scheduled.

croniter (the ``[cron]`` extra) is imported on first use; without it, ``Cron()`` and ``schedule`` raise
``MissingDependencyError`` naming ``pip install 'chancy-lite[cron]'``, while reading and removing schedules still
work.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from chancy_lite.errors import InvalidJobError
from chancy_lite.job import Job, Reference, as_job
from chancy_lite.plugin import Plugin, missing_tables_explained
from chancy_lite.plugins.cron import expression
from chancy_lite.plugins.cron.expression import DEFAULT_ZONE, next_run
from chancy_lite.plugins.cron.sql import MIGRATIONS
from chancy_lite.plugins.cron.store import CronStore, DueRun, Fired, NewSchedule
from chancy_lite.utils import chancy_uuid, dump_json, from_micros, to_micros

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.db import Connection
    from chancy_lite.worker import Worker

__all__ = ["Cron", "next_run"]

log = logging.getLogger(__name__)
T = TypeVar("T")
ZoneLike = ZoneInfo | dt.tzinfo | str
FIRE_BATCH = 500  # due runs read per pass; a fuller backlog is taken by the passes that follow at once


class Pass(NamedTuple):
    """What one pass over the due runs did."""

    fired: list[Fired]
    failed: list[tuple[str, str]]  # (unique_key, why) of due runs skipped
    more: bool  # the batch was full (and not only of skipped runs): more runs may be due
    next_wake: int | None  # the earliest run not yet due (µs)


class Cron(Plugin):
    """Push jobs on cron schedules. ``poll_interval`` (seconds, > 0): the longest a worker sleeps between passes.

    Raises ``MissingDependencyError`` (an ``ImportError``) without croniter.
    """

    def __init__(self, *, poll_interval: float = 60) -> None:
        if not poll_interval > 0:
            raise ValueError("poll_interval must be > 0 seconds")
        expression.croniter_module()  # fail now, not in a worker loop
        self.poll_interval = poll_interval

    @staticmethod
    def get_identifier() -> str:
        return "chancy.cron"

    def migrate_key(self) -> str | None:
        return "cron"

    def migrations(self) -> list[tuple[list[str], list[str]]]:
        return MIGRATIONS

    def get_tables(self) -> list[str]:
        return ["cron"]

    # ----------------------------------------------------------------- the loop

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        self._wake = asyncio.Event()  # before the first pass, so a change made during it is not missed
        entry = _listen(chancy, self, asyncio.get_running_loop())
        try:
            while True:
                await self.sleep(await self.tick(worker, chancy.now()))
        finally:
            _unlisten(entry)

    async def tick(self, worker: Worker, now: int) -> float:
        """One pass at ``now`` (µs since the epoch): take every due run (see ``fire_due``); returns how many seconds
        to sleep before the next pass: until the earliest next run, at most ``poll_interval``."""
        chancy = worker.chancy
        done = await worker.db(_fire_due, store_for(chancy), now)
        for fired in done.fired:
            body = {"unique_key": fired.unique_key, "scheduled_for": from_micros(fired.due), "job_id": fired.job_id,
                    "pushed": fired.pushed}
            worker.hub.emit("cron.fired", body)
        return self.delay(done, chancy.now())

    def delay(self, done: Pass, now: int) -> float:
        """Seconds from ``now`` (µs) until the next pass is due after pass ``done``."""
        if done.more:
            return 0.0
        if done.next_wake is None:
            return float(self.poll_interval)
        return min(float(self.poll_interval), max(0.0, (done.next_wake - now) / 1e6))

    # ------------------------------------------------------------- the API

    @classmethod
    def sync_schedule(cls, chancy: Chancy, cron: str, *jobs: Job | Callable[..., Any],
                      timezone: ZoneLike = DEFAULT_ZONE) -> None:
        """Run ``jobs`` on the cron expression ``cron``, read in ``timezone`` (a ``ZoneInfo`` or an IANA name).

        Each job (a ``Job`` or an ``@job`` function) needs a ``unique_key``, which names its schedule: scheduling a
        key again replaces its job, expression, zone and next run (as Chancy). All are stored in one transaction,
        and the first run is the first after now. Raises ``ValueError`` for a job without a ``unique_key``,
        ``InvalidCronError`` (a ``ValueError``) for an expression croniter refuses, an unknown zone, or an
        expression with no run in 50 years; ``MissingDependencyError`` without croniter; ``MigrationsNeededError``
        when the file has no cron table.
        """
        rows = cls._new_schedules(chancy, cron, jobs, timezone)
        if rows:
            _call(chancy, store_for(chancy).upsert_schedules, rows)
            _schedules_changed(chancy)

    @classmethod
    async def schedule(cls, chancy: Chancy, cron: str, *jobs: Job | Callable[..., Any],
                       timezone: ZoneLike = DEFAULT_ZONE) -> None:
        """Run ``jobs`` on the cron expression ``cron``, read in ``timezone`` (a ``ZoneInfo`` or an IANA name).

        Each job (a ``Job`` or an ``@job`` function) needs a ``unique_key``, which names its schedule: scheduling a
        key again replaces its job, expression, zone and next run (as Chancy). All are stored in one transaction,
        and the first run is the first after now. Raises ``ValueError`` for a job without a ``unique_key``,
        ``InvalidCronError`` (a ``ValueError``) for an expression croniter refuses, an unknown zone, or an
        expression with no run in 50 years; ``MissingDependencyError`` without croniter; ``MigrationsNeededError``
        when the file has no cron table.
        """
        rows = cls._new_schedules(chancy, cron, jobs, timezone)
        if rows:
            await _run(chancy, store_for(chancy).upsert_schedules, rows)
            _schedules_changed(chancy)

    @classmethod
    def sync_unschedule(cls, chancy: Chancy, *unique_keys: str) -> int:
        """Remove the schedules with these keys (jobs they already pushed stay); returns how many existed."""
        removed = _call(chancy, store_for(chancy).delete_schedules, list(unique_keys))
        _schedules_changed(chancy)
        return removed

    @classmethod
    async def unschedule(cls, chancy: Chancy, *unique_keys: str) -> int:
        """Remove the schedules with these keys (jobs they already pushed stay); returns how many existed."""
        removed = await _run(chancy, store_for(chancy).delete_schedules, list(unique_keys))
        _schedules_changed(chancy)
        return removed

    @classmethod
    def sync_get_schedules(cls, chancy: Chancy, *, unique_keys: Iterable[str] | None = None
                           ) -> dict[str, dict[str, Any]]:
        """The schedules (all, or those with these keys) by key, as Chancy 0.26: ``{"unique_key": str, "job": Job,
        "cron": str, "timezone": str (IANA name), "last_run": datetime | None, "next_run": datetime}``, times as
        aware UTC datetimes (``last_run`` is when the last run was taken)."""
        keys = None if unique_keys is None else list(unique_keys)
        return _as_schedules(_call(chancy, store_for(chancy).get_schedules, keys))

    @classmethod
    async def get_schedules(cls, chancy: Chancy, *, unique_keys: Iterable[str] | None = None
                            ) -> dict[str, dict[str, Any]]:
        """The schedules (all, or those with these keys) by key, as Chancy 0.26: ``{"unique_key": str, "job": Job,
        "cron": str, "timezone": str (IANA name), "last_run": datetime | None, "next_run": datetime}``, times as
        aware UTC datetimes (``last_run`` is when the last run was taken)."""
        keys = None if unique_keys is None else list(unique_keys)
        return _as_schedules(await _run(chancy, store_for(chancy).get_schedules, keys))

    @classmethod
    def sync_run_now(cls, chancy: Chancy, unique_key: str) -> Reference:
        """Push a schedule's job now, leaving its next run as it is; returns the job's ``Reference`` (that of the
        unfinished job holding the key, if there is one: then nothing is pushed). ``KeyError`` if there is no such
        schedule. Not in Chancy."""
        found = _call(chancy, store_for(chancy).push_now, unique_key, now=chancy.now(), new_id=str(chancy_uuid()))
        return _pushed(unique_key, found)

    @classmethod
    async def run_now(cls, chancy: Chancy, unique_key: str) -> Reference:
        """Push a schedule's job now, leaving its next run as it is; returns the job's ``Reference`` (that of the
        unfinished job holding the key, if there is one: then nothing is pushed). ``KeyError`` if there is no such
        schedule. Not in Chancy."""
        found = await _run(chancy, store_for(chancy).push_now, unique_key, now=chancy.now(), new_id=str(chancy_uuid()))
        return _pushed(unique_key, found)

    @classmethod
    def sync_fire_due(cls, chancy: Chancy, *, now: dt.datetime | None = None) -> list[Fired]:
        """One pass without a worker, at ``now`` (default: ``chancy.now()``, the app's clock): take every run due
        then, as a worker does. For tests: move a ``chancy_lite.testing.Clock``, call this, then ``drain``.
        Returns the runs taken (``Fired``: unique_key, due (µs), job_id, pushed). Not in Chancy."""
        at = chancy.now() if now is None else to_micros(now)
        return _call(chancy, _fire_all, store_for(chancy), at)

    @classmethod
    async def fire_due(cls, chancy: Chancy, *, now: dt.datetime | None = None) -> list[Fired]:
        """One pass without a worker, at ``now`` (default: ``chancy.now()``, the app's clock): take every run due
        then, as a worker does. For tests: move a ``chancy_lite.testing.Clock``, call this, then ``drain``.
        Returns the runs taken (``Fired``: unique_key, due (µs), job_id, pushed). Not in Chancy."""
        at = chancy.now() if now is None else to_micros(now)
        return await _run(chancy, _fire_all, store_for(chancy), at)

    @classmethod
    def _new_schedules(cls, chancy: Chancy, cron: str, jobs: Iterable[Any], timezone: ZoneLike) -> list[NewSchedule]:
        """The rows to store, checked: every error is raised here, before anything is written."""
        zone = expression.as_zone(timezone)
        first = to_micros(next_run(cron, from_micros(chancy.now()), zone))
        rows = []
        for item in jobs:
            job = as_job(item)
            if not job.unique_key:
                raise InvalidJobError(
                    f"Cron.schedule requires that each job has a unique_key set ({job.func} has none): it names the "
                    "schedule, e.g. Job(..., unique_key='nightly-report') or job.with_unique_key('nightly-report')"
                )
            packed = dump_json(job.pack(), f"the job of schedule {job.unique_key!r}")
            rows.append(NewSchedule(job.unique_key, packed, cron, zone.key, first))
        return rows


# ------------------------------------------------------------------ helpers


def _fire_due(conn: Connection, store: CronStore, now: int) -> Pass:
    """One pass at ``now`` (µs) on ``conn``: each due run is computed outside any transaction, then taken (pushed
    and moved on) in its own transaction; runs another worker took meanwhile are skipped."""
    fired: list[Fired] = []
    failed: list[tuple[str, str]] = []
    limit = FIRE_BATCH
    runs = store.due_runs(conn, now=now, limit=limit)
    for run in runs:
        why = _take(conn, store, run, now, fired)
        if why is not None:
            failed.append((run.unique_key, why))
            log.warning("cron schedule %r was skipped and stays due: %s", run.unique_key, why)
    for taken in fired:
        log.info("cron schedule %r: %s job %s for its run at %s", taken.unique_key,
                 "pushed" if taken.pushed else "an unfinished job holds the key, no new", taken.job_id,
                 from_micros(taken.due).isoformat())
    more = len(runs) == limit and len(failed) < len(runs)  # a batch of skipped runs only is no reason to hurry
    return Pass(fired, failed, more, store.next_wake(conn, now=now))


def _fire_all(conn: Connection, store: CronStore, now: int) -> list[Fired]:
    """Passes at ``now`` until no due run is left (``Cron.fire_due``)."""
    fired: list[Fired] = []
    while True:
        done = _fire_due(conn, store, now)
        fired.extend(done.fired)
        if not done.more:
            return fired


def _take(conn: Connection, store: CronStore, run: DueRun, now: int, fired: list[Fired]) -> str | None:
    """Take one run; returns why it was skipped, if it was."""
    try:
        following = to_micros(next_run(run.cron, from_micros(now), run.timezone))
    except (ValueError, TypeError) as exc:  # an expression or zone edited by hand, or a zone this host lacks
        return f"its next run cannot be computed ({exc})"
    try:
        taken = store.take_run(conn, run, next_run=following, now=now, new_id=str(chancy_uuid()))
    except (ValueError, TypeError, KeyError) as exc:  # a stored job that cannot be pushed any more
        return f"its job cannot be pushed ({type(exc).__name__}: {exc})"
    if taken is not None:
        fired.append(taken)
    return None


def _as_schedules(rows: Iterable[Any]) -> dict[str, dict[str, Any]]:
    return {
        row.unique_key: {
            "unique_key": row.unique_key, "job": _stored_job(row), "cron": row.cron, "timezone": row.timezone,
            "last_run": from_micros(row.last_run), "next_run": from_micros(row.next_run),
        }
        for row in rows
    }


def _stored_job(row: Any) -> Job:
    try:
        return Job.unpack(json.loads(row.job))
    except (ValueError, TypeError, KeyError) as exc:  # edited by hand
        raise InvalidJobError(
            f"the stored job of cron schedule {row.unique_key!r} cannot be read ({type(exc).__name__}: {exc}): "
            f"schedule it again, or remove it (Cron.unschedule, or `chancy-lite cron remove {row.unique_key}`)"
        ) from None


def _pushed(unique_key: str, found: tuple[str, bool] | None) -> Reference:
    if found is None:
        raise KeyError(f"no cron schedule has the key {unique_key!r}")
    return Reference(found[0])


_stores: weakref.WeakKeyDictionary[Any, CronStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def store_for(chancy: Chancy) -> CronStore:
    """The cron store of an app (one per app, on its own prefix)."""
    with _stores_lock:
        store = _stores.get(chancy)
        if store is None or store.core is not chancy.store:
            store = _stores[chancy] = CronStore(chancy.store)
        return store


def _call(chancy: Chancy, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with _explained(chancy):
        return chancy.sync_run_store(fn, *args, **kwargs)


async def _run(chancy: Chancy, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with _explained(chancy):
        return await chancy.run_store(fn, *args, **kwargs)


def _explained(chancy: Chancy) -> contextlib.AbstractContextManager[None]:
    """A missing cron table is explained: the app that migrated the file had no Cron plugin."""
    return missing_tables_explained(
        chancy, ["cron"], "migrate it with an app that has the Cron plugin: Chancy(path, plugins=[Cron()]) then "
        "`await chancy.migrate()`, or `chancy-lite --app module:chancy migrate` with such an app")


# ---------------------------------------------------- wake-ups in this process

_listeners: list[tuple[str, str, Cron, asyncio.AbstractEventLoop]] = []
_listeners_lock = threading.Lock()


def _listen(chancy: Chancy, plugin: Cron, loop: asyncio.AbstractEventLoop) -> tuple[str, str, Cron, Any]:
    entry = (chancy.path, chancy.prefix, plugin, loop)
    with _listeners_lock:
        _listeners.append(entry)
    return entry


def _unlisten(entry: tuple[str, str, Cron, Any]) -> None:
    with _listeners_lock, contextlib.suppress(ValueError):
        _listeners.remove(entry)


def _schedules_changed(chancy: Chancy) -> None:
    """Wake the Cron loops running in this process on the same file and prefix, from any thread."""
    with _listeners_lock:
        loops = [(plugin, loop) for path, prefix, plugin, loop in _listeners
                 if path == chancy.path and prefix == chancy.prefix]
    for plugin, loop in loops:
        with contextlib.suppress(RuntimeError):  # its loop has closed
            loop.call_soon_threadsafe(plugin.wake_up)

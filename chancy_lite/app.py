"""``Chancy``: the application object and its public API, async and sync.

Every method exists as ``async def name(...)`` and as ``def sync_name(...)``.
The async ones run the SQLite work on a small thread pool so that waiting for
the write lock never stalls the event loop. Queries live in :mod:`store`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import os
import shlex
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import apsw

from chancy_lite import db, wake
from chancy_lite.errors import ChancyError, ConfigurationError, MigrationsNeededError
from chancy_lite.job import FINISHED_STATES, Job, QueuedJob, Reference, as_job, ref_id
from chancy_lite.queue import ExecutorPath, Queue, load_executor
from chancy_lite.store import Store
from chancy_lite.utils import Clock, chancy_uuids, from_micros, micros_now, to_micros

T = TypeVar("T")
RefLike = Reference | str | uuid.UUID | QueuedJob


class Chancy:
    """A job queue in one SQLite file.

    ``Chancy("jobs.db")`` (or ``"sqlite:///jobs.db"``) opens nothing until first
    use; ``with``/``async with`` closes every connection it opened on exit.
    """

    Executor = ExecutorPath  # Chancy.Executor.Process etc.: import paths of the built-in executors

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        plugins: list[Any] | None = None,
        prefix: str = "chancy_",
        no_default_plugins: bool = False,
        log: logging.Logger | None = None,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        allow_network_fs: bool | None = None,
        clock: Clock | None = None,
    ) -> None:
        db.require_apsw()
        self.path = db.parse_path(path)
        if allow_network_fs is None:
            allow_network_fs = os.environ.get("CHANCY_LITE_ALLOW_NETWORK_FS", "") not in ("", "0")
        db.check_path(self.path, allow_network_fs=allow_network_fs)
        if busy_timeout < 0:
            raise ConfigurationError("busy_timeout is in seconds and must be >= 0")
        self.prefix = prefix
        self.busy_timeout = float(busy_timeout)
        self.synchronous = synchronous.upper()
        if self.synchronous not in db.SYNCHRONOUS:
            raise ConfigurationError(f"synchronous must be one of {', '.join(db.SYNCHRONOUS)}, got {synchronous!r}")
        self.allow_network_fs = allow_network_fs
        self.log = log or logging.getLogger("chancy_lite")
        self.clock = clock
        self.no_default_plugins = no_default_plugins
        self.plugins: dict[str, Any] = {}
        for plugin in plugins or []:
            if isinstance(plugin, type):
                raise TypeError(f"plugins takes plugin objects: write {plugin.__name__}() instead of {plugin.__name__}")
            identifier = plugin.get_identifier()
            if identifier in self.plugins:
                raise ValueError(f"two plugins have the identifier {identifier!r}: give each plugin once")
            self.plugins[identifier] = plugin
        if not no_default_plugins:  # after the user's, where their identifiers are free (as Chancy)
            for plugin in _default_plugins():
                self.plugins.setdefault(plugin.get_identifier(), plugin)
        self.store = Store(prefix)
        for plugin in self.plugins.values():
            key = plugin.migrate_key() if hasattr(plugin, "migrate_key") else None
            if key:
                self.store.add_migrations(key, plugin.migrations())
        #: The wake-up channel of the file (see chancy_lite.wake), opened with the first connection.
        self.channel: wake.Channel | None = None
        self._local = threading.local()
        self._lock = threading.RLock()  # re-entrant: _conn() holds it while connect() opens the channel
        self._connections: list[db.Connection] = []
        self._memory_lock = threading.RLock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = os.getpid()

    # --------------------------------------------------------- connections

    def now(self) -> int:
        """The current time in microseconds since the epoch, from the injected clock if any."""
        return to_micros(self.clock()) if self.clock is not None else micros_now()

    def connect(self) -> db.Connection:
        """A new connection with the recipe, whose commits wake workers as this app's do. The caller closes it."""
        conn = db.connect(
            self.path, busy_timeout=self.busy_timeout, synchronous=self.synchronous,
            allow_network_fs=self.allow_network_fs, check=False,
        )
        if self.path != db.MEMORY:
            conn.publisher = self._publish
            conn.handoff = self._handoff()
        conn.store = self.store
        conn.now = self.now
        return conn

    def _publish(self, changes: wake.Changes) -> None:
        """Tell other processes what a committed transaction changed (the wake-up channel opens on first use)."""
        channel = self.channel
        if channel is None:
            with self._lock:
                if self.channel is None:
                    self.channel = wake.Channel(self.path)
                channel = self.channel
        channel.publish(changes)

    def _handoff(self) -> wake.Channel:
        """The wake-up channel (opened on first use), through which single pushes are handed to idle children."""
        channel = self.channel
        if channel is None:
            with self._lock:
                if self.channel is None:
                    self.channel = wake.Channel(self.path)
                channel = self.channel
        return channel

    def _conn(self) -> db.Connection:
        """This thread's connection (one for all threads with ``:memory:``)."""
        if os.getpid() != self._pid:
            raise RuntimeError("a Chancy object cannot be used across fork(); create a new one in the child process")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                if self.path == db.MEMORY and self._connections:
                    conn = self._connections[0]
                else:
                    conn = self.connect()
                    self._connections.append(conn)
                    if self.path != db.MEMORY and self.channel is None:
                        self.channel = wake.Channel(self.path)
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[db.Connection]:
        """This thread's apsw connection, for ``*_ex`` calls and your own queries.

        ``with conn:`` on it opens a ``BEGIN IMMEDIATE`` transaction; wake-ups
        that ``*_ex`` calls queue are sent when it commits.
        """
        conn = self._conn()
        with self._memory_guard():
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[db.Connection]:
        """``with chancy.transaction() as conn:`` commits your rows and pushed jobs together, or neither."""
        with self.connection() as conn, conn:
            yield conn

    def _memory_guard(self) -> contextlib.AbstractContextManager[Any]:
        return self._memory_lock if self.path == db.MEMORY else contextlib.nullcontext()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        conn = self._conn()
        with self._memory_guard():
            try:
                return fn(conn, *args, **kwargs)
            except apsw.Error as exc:
                error = self._error(conn, exc)
                if error is exc:
                    raise
                raise error from exc

    @contextlib.contextmanager
    def _errors(self, conn: db.Connection) -> Iterator[None]:
        """``_call``'s error handling, for the ``*_ex`` methods that run on the caller's connection."""
        try:
            yield
        except apsw.Error as exc:
            error = self._error(conn, exc)
            if error is exc:
                raise
            raise error from exc

    def _error(self, conn: db.Connection, exc: apsw.Error) -> BaseException:
        """What to raise for an apsw error of a store call: apsw errors a user can act on become ours (see
        ``db.translate``), and SQL that failed because the schema is missing or out of date becomes
        MigrationsNeededError. The schema is only looked at after such a failure: calls that work pay nothing."""
        if isinstance(exc, apsw.SQLError):
            error = self._schema_error(conn, exc)
            if error is not None:
                return error
        return db.translate(exc, self.path)

    def _schema_error(self, conn: db.Connection, exc: apsw.SQLError) -> ChancyError | None:
        """Why ``exc`` happened if the schema is the cause: not migrated, out of date, or missing a table."""
        table = db.missing_table(exc)
        ours = table is not None and table.startswith(self.prefix)
        try:
            up_to_date = self.store.is_up_to_date(conn)
        except ChancyError as error:  # a schema newer than this code
            return error
        except apsw.Error:
            up_to_date = True  # cannot tell: only our own missing table is then a sure sign
        cli = f"chancy-lite --db {shlex.quote(self.path)} migrate" if self.path != db.MEMORY else ""
        if not up_to_date:
            return MigrationsNeededError(
                f"the database {self.path} is not migrated or is out of date ({exc}): run "
                + (f"`{cli}` or " if cli else "")
                + "`await chancy.migrate()` (`chancy.sync_migrate()` without an event loop) first"
            )
        if ours:
            return MigrationsNeededError(
                f"the database {self.path} has no table {table} although its migrations are recorded as done: its "
                "schema was damaged. Restore the file from a backup, or rebuild the schema, which deletes every job: "
                + (f"`{cli} --to-version 0` then `{cli}`, or " if cli else "")
                + "`await chancy.migrate(to_version=0)` then `await chancy.migrate()`"
            )
        return None

    def sync_run_store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` with this app's connection of the thread it runs on (``run_store``
        runs it on one of the app's threads and awaits it, so the event loop never waits on SQLite).

        ``fn`` is a store method (``chancy.store.get_all_queues``) or your own function taking an apsw
        connection. Errors come out as from the public methods (``MigrationsNeededError`` for a missing schema,
        chancy_lite errors for a locked or read-only file). It does not retry: a worker's loops wrap it in
        ``Worker.db``, which retries transient errors with the worker's backoff.
        """
        return self._call(fn, *args, **kwargs)

    async def run_store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` with this app's connection of the thread it runs on (``run_store``
        runs it on one of the app's threads and awaits it, so the event loop never waits on SQLite).

        ``fn`` is a store method (``chancy.store.get_all_queues``) or your own function taking an apsw
        connection. Errors come out as from the public methods (``MigrationsNeededError`` for a missing schema,
        chancy_lite errors for a locked or read-only file). It does not retry: a worker's loops wrap it in
        ``Worker.db``, which retries transient errors with the worker's backoff.
        """
        return await self._run(self._call, fn, *args, **kwargs)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a sync method on the thread pool (own connections) and await it."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="chancy-lite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        """Close every connection this object opened. It can be used again afterwards."""
        with self._lock:
            connections, self._connections = self._connections, []
            pool, self._pool = self._pool, None
            channel, self.channel = self.channel, None
        if pool is not None:
            pool.shutdown(wait=True)
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.close()
        if channel is not None:
            channel.close()
        self._local = threading.local()

    def __enter__(self) -> Chancy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Chancy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Chancy {self.path!r}>"

    # ---------------------------------------------------------- migrations

    def sync_migrate(self, *, to_version: int | None = None) -> list[str]:
        """Create or upgrade the schema of the core and of every plugin, or step it down.

        ``to_version``: None for the newest; ``0`` drops every chancy_lite table (your own tables stay). Returns the
        names of the steps run (``["chancy v1"]``; empty when up to date). Each run is one ``BEGIN IMMEDIATE``
        transaction, so concurrent migrators take turns. Raises ``SchemaTooNewError`` for a file migrated by newer
        code, ``ValueError`` for a bad ``to_version``.
        """
        if to_version is not None and (not isinstance(to_version, int) or to_version < 0):
            raise ValueError(f"to_version must be an integer >= 0, got {to_version!r}")
        conn = self._conn()
        with self._memory_guard(), db.translate_errors(self.path):  # a failed step is not a missing schema
            return self.store.migrate(conn, to_version)

    async def migrate(self, *, to_version: int | None = None) -> list[str]:
        """Create or upgrade the schema of the core and of every plugin, or step it down.

        ``to_version``: None for the newest; ``0`` drops every chancy_lite table (your own tables stay). Returns the
        names of the steps run (``["chancy v1"]``; empty when up to date). Each run is one ``BEGIN IMMEDIATE``
        transaction, so concurrent migrators take turns. Raises ``SchemaTooNewError`` for a file migrated by newer
        code, ``ValueError`` for a bad ``to_version``.
        """
        return await self._run(self.sync_migrate, to_version=to_version)

    def sync_migration_status(self) -> list[tuple[str, int, int | None]]:
        """The schema of the core (key ``"chancy"``) and of each plugin with tables (its ``migrate_key()``):
        ``(key, version in the file, newest version this app knows)``; the newest is None for a key recorded in
        the file by a plugin this app does not have.
        """
        return self._call(self.store.migration_status)

    async def migration_status(self) -> list[tuple[str, int, int | None]]:
        """The schema of the core (key ``"chancy"``) and of each plugin with tables (its ``migrate_key()``):
        ``(key, version in the file, newest version this app knows)``; the newest is None for a key recorded in
        the file by a plugin this app does not have.
        """
        return await self._run(self.sync_migration_status)

    def sync_is_up_to_date(self) -> bool:
        """True when no migration is pending for the core or any plugin. Raises ``SchemaTooNewError`` for a
        file migrated by newer code.
        """
        return self._call(self.store.is_up_to_date)

    async def is_up_to_date(self) -> bool:
        """True when no migration is pending for the core or any plugin. Raises ``SchemaTooNewError`` for a
        file migrated by newer code.
        """
        return await self._run(self.sync_is_up_to_date)

    # -------------------------------------------------------------- queues

    def sync_declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """Store a queue and return it as stored (``Queue``).

        An existing queue is returned unchanged unless ``upsert=True``, which overwrites its configuration; running
        workers pick the change up at once (a reconfigured queue drains, then restarts). The executor is imported
        now: ``InvalidExecutorError`` (a ``ValueError``) if it does not load or is not an ``Executor`` subclass;
        ``TypeError`` if ``queue`` is not a ``Queue``.
        """
        return self._call(self.sync_declare_ex, queue, upsert=upsert)

    async def declare(self, queue: Queue, *, upsert: bool = False) -> Queue:
        """Store a queue and return it as stored (``Queue``).

        An existing queue is returned unchanged unless ``upsert=True``, which overwrites its configuration; running
        workers pick the change up at once (a reconfigured queue drains, then restarts). The executor is imported
        now: ``InvalidExecutorError`` (a ``ValueError``) if it does not load or is not an ``Executor`` subclass;
        ``TypeError`` if ``queue`` is not a ``Queue``.
        """
        return await self._run(self.sync_declare, queue, upsert=upsert)

    def sync_declare_ex(self, conn: db.Connection, queue: Queue, *, upsert: bool = False) -> Queue:
        """``declare`` inside the caller's open transaction on ``conn`` (an apsw connection from
        ``Chancy.connection()``): the queue commits or rolls back with the caller's rows.
        """
        if not isinstance(queue, Queue):
            raise TypeError(f"declare() takes a Queue, got {queue!r}")
        load_executor(queue.executor, queue.name)  # now, not later in a worker
        with self._errors(conn):
            return self.store.declare_queue(conn, queue, upsert=upsert, now=self.now())

    async def declare_ex(self, conn: db.Connection, queue: Queue, *, upsert: bool = False) -> Queue:
        """``declare`` inside the caller's open transaction on ``conn`` (an apsw connection from
        ``Chancy.connection()``): the queue commits or rolls back with the caller's rows.
        """
        return await self._run(self.sync_declare_ex, conn, queue, upsert=upsert)

    def sync_get_queue(self, name: str) -> Queue:
        """The stored queue named ``name`` (``Queue``); ``KeyError`` if there is none."""
        queue = self._call(self.store.get_queue, name)
        if queue is None:
            raise KeyError(f"no queue named {name!r}")
        return queue

    async def get_queue(self, name: str) -> Queue:
        """The stored queue named ``name`` (``Queue``); ``KeyError`` if there is none."""
        return await self._run(self.sync_get_queue, name)

    def sync_get_all_queues(self) -> list[Queue]:
        """Every stored queue (``list[Queue]``), by name."""
        return self._call(self.store.get_all_queues)

    async def get_all_queues(self) -> list[Queue]:
        """Every stored queue (``list[Queue]``), by name."""
        return await self._run(self.sync_get_all_queues)

    def sync_pause_queue(self, name: str, *, resume_at: dt.datetime | dt.timedelta | None = None) -> None:
        """Stop claiming from a queue (running jobs go on), until ``resume_at`` if given.

        ``resume_at``: a datetime (naive = local time, see README "Times") or a ``timedelta`` from now; a worker
        resumes the queue at that moment. ``KeyError`` if there is no such queue; ``TypeError`` for another type.
        """
        if isinstance(resume_at, dt.timedelta):
            resume_at = from_micros(self.now()) + resume_at
        if not self._call(self.sync_pause_queue_ex, name, resume_at=resume_at):
            raise KeyError(f"no queue named {name!r}")

    async def pause_queue(self, name: str, *, resume_at: dt.datetime | dt.timedelta | None = None) -> None:
        """Stop claiming from a queue (running jobs go on), until ``resume_at`` if given.

        ``resume_at``: a datetime (naive = local time, see README "Times") or a ``timedelta`` from now; a worker
        resumes the queue at that moment. ``KeyError`` if there is no such queue; ``TypeError`` for another type.
        """
        await self._run(self.sync_pause_queue, name, resume_at=resume_at)

    def sync_pause_queue_ex(self, conn: db.Connection, name: str, *, resume_at: dt.datetime | None = None) -> int:
        """``pause_queue`` inside the caller's transaction on ``conn`` (Chancy 0.26): ``resume_at`` only as a
        datetime. Returns 1, or 0 if there is no such queue. Workers hear of it after the commit.
        """
        if resume_at is not None and not isinstance(resume_at, dt.datetime):
            raise TypeError(f"resume_at must be a datetime or None, got {resume_at!r}")
        resume_micros = to_micros(resume_at) if resume_at is not None else None
        with self._errors(conn):
            return int(self.store.pause_queue(conn, name, resume_at=resume_micros, now=self.now()))

    async def pause_queue_ex(self, conn: db.Connection, name: str, *, resume_at: dt.datetime | None = None) -> int:
        """``pause_queue`` inside the caller's transaction on ``conn`` (Chancy 0.26): ``resume_at`` only as a
        datetime. Returns 1, or 0 if there is no such queue. Workers hear of it after the commit.
        """
        return await self._run(self.sync_pause_queue_ex, conn, name, resume_at=resume_at)

    def sync_resume_queue(self, name: str) -> None:
        """Resume a paused queue now. ``KeyError`` if there is no such queue."""
        if not self._call(self.sync_resume_queue_ex, name):
            raise KeyError(f"no queue named {name!r}")

    async def resume_queue(self, name: str) -> None:
        """Resume a paused queue now. ``KeyError`` if there is no such queue."""
        await self._run(self.sync_resume_queue, name)

    def sync_resume_queue_ex(self, conn: db.Connection, name: str) -> int:
        """``resume_queue`` inside the caller's transaction on ``conn``: 1, or 0 if there is no such queue."""
        with self._errors(conn):
            return int(self.store.resume_queue(conn, name, now=self.now()))

    async def resume_queue_ex(self, conn: db.Connection, name: str) -> int:
        """``resume_queue`` inside the caller's transaction on ``conn``: 1, or 0 if there is no such queue."""
        return await self._run(self.sync_resume_queue_ex, conn, name)

    def sync_delete_queue(self, name: str, *, purge_jobs: bool = True) -> None:
        """Remove a queue and, unless ``purge_jobs=False``, every job it holds. Running jobs are not
        interrupted; their results are dropped. ``KeyError`` if there is no such queue.
        """
        if not self._call(self.sync_delete_queue_ex, name, purge_jobs=purge_jobs):
            raise KeyError(f"no queue named {name!r}")

    async def delete_queue(self, name: str, *, purge_jobs: bool = True) -> None:
        """Remove a queue and, unless ``purge_jobs=False``, every job it holds. Running jobs are not
        interrupted; their results are dropped. ``KeyError`` if there is no such queue.
        """
        await self._run(self.sync_delete_queue, name, purge_jobs=purge_jobs)

    def sync_delete_queue_ex(self, conn: db.Connection, name: str, *, purge_jobs: bool = True) -> int:
        """``delete_queue`` inside the caller's transaction on ``conn``: the number of queues deleted, 1 or 0,
        as Chancy documents it (Chancy 0.26 returns the jobs deleted when it purges them: a bug).
        """
        with self._errors(conn):
            return int(self.store.delete_queue(conn, name, purge_jobs=purge_jobs))

    async def delete_queue_ex(self, conn: db.Connection, name: str, *, purge_jobs: bool = True) -> int:
        """``delete_queue`` inside the caller's transaction on ``conn``: the number of queues deleted, 1 or 0,
        as Chancy documents it (Chancy 0.26 returns the jobs deleted when it purges them: a bug).
        """
        return await self._run(self.sync_delete_queue_ex, conn, name, purge_jobs=purge_jobs)

    # ---------------------------------------------------------------- push

    def sync_push(self, job: Job | Callable[..., Any]) -> Reference:
        """Insert one job (a ``Job`` or a function decorated with ``@job``) and return its ``Reference``.

        A job whose ``unique_key`` is held by a pending, running or retrying job inserts nothing and returns that
        job's Reference. Idle workers are woken within milliseconds. Raises ``InvalidJobError`` for something that is
        not a job, ``NotSerializableError`` for kwargs or meta that are not JSON.
        """
        return self._call(self.sync_push_ex, job)

    async def push(self, job: Job | Callable[..., Any]) -> Reference:
        """Insert one job (a ``Job`` or a function decorated with ``@job``) and return its ``Reference``.

        A job whose ``unique_key`` is held by a pending, running or retrying job inserts nothing and returns that
        job's Reference. Idle workers are woken within milliseconds. Raises ``InvalidJobError`` for something that is
        not a job, ``NotSerializableError`` for kwargs or meta that are not JSON.
        """
        return await self._run(self.sync_push, job)

    def sync_push_ex(self, conn: db.Connection, job: Job | Callable[..., Any]) -> Reference:
        """``push`` inside the caller's transaction on ``conn``: the job commits or rolls back with the
        caller's own rows (transactional enqueue); workers are woken after the commit.
        """
        return self.sync_push_many_ex(conn, [job])[0]

    async def push_ex(self, conn: db.Connection, job: Job | Callable[..., Any]) -> Reference:
        """``push`` inside the caller's transaction on ``conn``: the job commits or rolls back with the
        caller's own rows (transactional enqueue); workers are woken after the commit.
        """
        return await self._run(self.sync_push_ex, conn, job)

    def sync_push_many_ex(self, conn: db.Connection, jobs: Iterable[Job | Callable[..., Any]]) -> list[Reference]:
        """Insert several jobs inside the caller's transaction on ``conn``; their References in order (a
        duplicate ``unique_key`` gives the existing job's). Errors as ``push``.
        """
        checked = [as_job(j) for j in jobs]
        with self._errors(conn):
            ids = self.store.insert_jobs(conn, checked, self.now(), chancy_uuids)
        return [Reference(i) for i in ids]

    async def push_many_ex(self, conn: db.Connection, jobs: Iterable[Job | Callable[..., Any]]) -> list[Reference]:
        """Insert several jobs inside the caller's transaction on ``conn``; their References in order (a
        duplicate ``unique_key`` gives the existing job's). Errors as ``push``.
        """
        return await self._run(self.sync_push_many_ex, conn, list(jobs))

    def sync_push_many(
        self, jobs: Iterable[Job | Callable[..., Any]], *, batch_size: int = 1000
    ) -> Iterator[list[Reference]]:
        """Insert jobs in batches of ``batch_size`` (>= 1), one transaction each, yielding each batch's
        References (``list[Reference]``) in order. Nothing is inserted until you iterate. Errors as ``push``;
        ``ValueError`` for a bad ``batch_size``.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        batch: list[Job] = []
        for item in jobs:
            batch.append(as_job(item))
            if len(batch) >= batch_size:
                yield self._call(self.sync_push_many_ex, batch)
                batch = []
        if batch:
            yield self._call(self.sync_push_many_ex, batch)

    async def push_many(
        self, jobs: Iterable[Job | Callable[..., Any]], *, batch_size: int = 1000
    ) -> AsyncIterator[list[Reference]]:
        """Insert jobs in batches of ``batch_size`` (>= 1), one transaction each, yielding each batch's
        References (``list[Reference]``) in order. Nothing is inserted until you iterate. Errors as ``push``;
        ``ValueError`` for a bad ``batch_size``.
        """
        batches = self.sync_push_many(jobs, batch_size=batch_size)
        sentinel: Any = object()
        while True:
            refs = await self._run(next, batches, sentinel)
            if refs is sentinel:
                return
            yield refs

    # ---------------------------------------------------------------- jobs

    def sync_get_job(self, ref: RefLike) -> QueuedJob | None:
        """The job as stored now (``QueuedJob``), or None if there is none. ``ref``: a Reference, an id
        (str or UUID) or a QueuedJob.
        """
        return self._call(self.store.get_job, ref_id(ref))

    async def get_job(self, ref: RefLike) -> QueuedJob | None:
        """The job as stored now (``QueuedJob``), or None if there is none. ``ref``: a Reference, an id
        (str or UUID) or a QueuedJob.
        """
        return await self._run(self.sync_get_job, ref)

    def sync_get_jobs(self, refs: Iterable[RefLike]) -> list[QueuedJob]:
        """The jobs that exist (``list[QueuedJob]``), in the order asked; missing ones are skipped."""
        return self._call(self.store.get_jobs, [ref_id(r) for r in refs])

    async def get_jobs(self, refs: Iterable[RefLike]) -> list[QueuedJob]:
        """The jobs that exist (``list[QueuedJob]``), in the order asked; missing ones are skipped."""
        return await self._run(self.sync_get_jobs, list(refs))

    def sync_list_jobs(
        self, *, state: QueuedJob.State | str | None = None, queue: str | None = None, func: str | None = None,
        limit: int = 100,
    ) -> list[QueuedJob]:
        """Up to ``limit`` jobs, newest first (``list[QueuedJob]``), filtered by ``state``, ``queue`` and
        ``func`` (import path) when given. ``ValueError`` for an unknown state, ``TypeError`` for a non-integer limit.
        """
        state_value = QueuedJob.State(state).value if state is not None else None
        if not isinstance(limit, int):
            raise TypeError(f"limit must be an integer, got {limit!r}")
        limit = min(limit, 2**62)  # "more than there can be" means all, not an overflow in SQLite
        return self._call(self.store.list_jobs, state=state_value, queue=queue, func=func, limit=limit)

    async def list_jobs(
        self, *, state: QueuedJob.State | str | None = None, queue: str | None = None, func: str | None = None,
        limit: int = 100,
    ) -> list[QueuedJob]:
        """Up to ``limit`` jobs, newest first (``list[QueuedJob]``), filtered by ``state``, ``queue`` and
        ``func`` (import path) when given. ``ValueError`` for an unknown state, ``TypeError`` for a non-integer limit.
        """
        return await self._run(self.sync_list_jobs, state=state, queue=queue, func=func, limit=limit)

    def sync_count_jobs(self) -> dict[str, dict[str, int]]:
        """How many jobs each queue has in each state: ``{queue: {state: count}}``."""
        counts: dict[str, dict[str, int]] = {}
        for queue, state, count in self._call(self.store.count_jobs):
            counts.setdefault(queue, {})[state] = count
        return counts

    async def count_jobs(self) -> dict[str, dict[str, int]]:
        """How many jobs each queue has in each state: ``{queue: {state: count}}``."""
        return await self._run(self.sync_count_jobs)

    def sync_cancel_job(self, ref: RefLike) -> None:
        """Cancel a job: a pending or retrying one fails at once and is never claimed; a running one is
        interrupted (``asyncio.CancelledError`` inside it) and fails, without retry. A finished or missing job is left
        as it is.
        """
        self._call(self.sync_cancel_job_ex, ref)

    async def cancel_job(self, ref: RefLike) -> None:
        """Cancel a job: a pending or retrying one fails at once and is never claimed; a running one is
        interrupted (``asyncio.CancelledError`` inside it) and fails, without retry. A finished or missing job is left
        as it is.
        """
        await self._run(self.sync_cancel_job, ref)

    def sync_cancel_job_ex(self, conn: db.Connection, ref: RefLike) -> int:
        """``cancel_job`` inside the caller's transaction on ``conn``: 1 if the job was cancelled, 0 if it was
        finished or missing (Chancy 0.26 also turns a succeeded job into a failed one: a bug not copied). A running
        job is interrupted once the transaction commits.
        """
        with self._errors(conn):
            return int(self.store.cancel_job(conn, ref_id(ref), now=self.now()) is not None)

    async def cancel_job_ex(self, conn: db.Connection, ref: RefLike) -> int:
        """``cancel_job`` inside the caller's transaction on ``conn``: 1 if the job was cancelled, 0 if it was
        finished or missing (Chancy 0.26 also turns a succeeded job into a failed one: a bug not copied). A running
        job is interrupted once the transaction commits.
        """
        return await self._run(self.sync_cancel_job_ex, conn, ref)

    def sync_retry_jobs(self, refs: Iterable[RefLike]) -> list[Reference]:
        """Run finished jobs (succeeded or failed) again, as Chancy 0.26: ``retrying``, due now, ``attempts``
        back to 0 (``errors`` kept, ``max_attempts`` unchanged). Waiting and running jobs, and a job whose
        ``unique_key`` another active job holds, are left as they are. Returns the References retried.
        """
        ids = [ref_id(r) for r in refs]
        with self.transaction() as conn, self._errors(conn):
            now = self.now()
            return [Reference(i) for i in ids if self.store.retry_job(conn, i, now=now) is not None]

    async def retry_jobs(self, refs: Iterable[RefLike]) -> list[Reference]:
        """Run finished jobs (succeeded or failed) again, as Chancy 0.26: ``retrying``, due now, ``attempts``
        back to 0 (``errors`` kept, ``max_attempts`` unchanged). Waiting and running jobs, and a job whose
        ``unique_key`` another active job holds, are left as they are. Returns the References retried.
        """
        return await self._run(self.sync_retry_jobs, list(refs))

    def sync_retry_jobs_ex(self, conn: db.Connection, refs: Iterable[RefLike]) -> set[str]:
        """``retry_jobs`` inside the caller's transaction on ``conn``: the names of the queues of the jobs
        retried (Chancy 0.26). Workers are woken after the commit.
        """
        ids = [ref_id(r) for r in refs]
        with self._errors(conn):
            now = self.now()
            return {queue for queue in (self.store.retry_job(conn, i, now=now) for i in ids) if queue is not None}

    async def retry_jobs_ex(self, conn: db.Connection, refs: Iterable[RefLike]) -> set[str]:
        """``retry_jobs`` inside the caller's transaction on ``conn``: the names of the queues of the jobs
        retried (Chancy 0.26). Workers are woken after the commit.
        """
        return await self._run(self.sync_retry_jobs_ex, conn, list(refs))

    def sync_purge_jobs(self, refs: Iterable[RefLike]) -> int:
        """Delete jobs whatever their state (a running one's result is then dropped); returns how many
        existed.
        """
        ids = [ref_id(r) for r in refs]
        with self.transaction() as conn:
            return self.sync_purge_jobs_ex(conn, ids)

    async def purge_jobs(self, refs: Iterable[RefLike]) -> int:
        """Delete jobs whatever their state (a running one's result is then dropped); returns how many
        existed.
        """
        return await self._run(self.sync_purge_jobs, list(refs))

    def sync_purge_jobs_ex(self, conn: db.Connection, refs: Iterable[RefLike]) -> int:
        """``purge_jobs`` inside the caller's transaction on ``conn``; returns how many jobs were deleted."""
        ids = [ref_id(r) for r in refs]
        with self._errors(conn):
            return sum(self.store.purge_job(conn, i) for i in ids)

    async def purge_jobs_ex(self, conn: db.Connection, refs: Iterable[RefLike]) -> int:
        """``purge_jobs`` inside the caller's transaction on ``conn``; returns how many jobs were deleted."""
        return await self._run(self.sync_purge_jobs_ex, conn, list(refs))

    def sync_notify(self, conn: db.Connection, event: str, payload: dict[str, Any]) -> None:
        """Emit ``event`` with ``payload`` (a JSON dict of at most 8000 bytes, PostgreSQL's NOTIFY limit) on the
        hub of every worker of this file, once ``conn``'s transaction commits (at once outside one), as Chancy's
        NOTIFY. Delivery is best effort, as NOTIFY's: a worker that is not running does not hear it.
        ``TypeError``/``ValueError`` for an event that cannot be sent.
        """
        self.sync_notify_many(conn, [(event, payload)])

    async def notify(self, conn: db.Connection, event: str, payload: dict[str, Any]) -> None:
        """Emit ``event`` with ``payload`` (a JSON dict of at most 8000 bytes, PostgreSQL's NOTIFY limit) on the
        hub of every worker of this file, once ``conn``'s transaction commits (at once outside one), as Chancy's
        NOTIFY. Delivery is best effort, as NOTIFY's: a worker that is not running does not hear it.
        ``TypeError``/``ValueError`` for an event that cannot be sent.
        """
        self.sync_notify_many(conn, [(event, payload)])

    def sync_notify_many(self, conn: db.Connection, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """``notify`` for several ``(event, payload)`` pairs, delivered in order (Chancy 0.26). All are checked
        before any is queued.
        """
        checked = list(events)
        for name, body in checked:
            wake.event_payload(name, body)
        self.store.notify(conn, checked)

    async def notify_many(self, conn: db.Connection, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """``notify`` for several ``(event, payload)`` pairs, delivered in order (Chancy 0.26). All are checked
        before any is queued.
        """
        self.sync_notify_many(conn, events)

    def sync_get_all_workers(self) -> list[dict[str, Any]]:
        """Workers whose heartbeat is current: dicts with ``worker_id``, ``hostname``, ``pid``, ``tags``
        (set), ``queues`` (list), ``last_seen`` and ``expires_at`` (UTC datetimes) and ``is_leader``.
        """
        return self._call(self.store.get_all_workers, now=self.now())

    async def get_all_workers(self) -> list[dict[str, Any]]:
        """Workers whose heartbeat is current: dicts with ``worker_id``, ``hostname``, ``pid``, ``tags``
        (set), ``queues`` (list), ``last_seen`` and ``expires_at`` (UTC datetimes) and ``is_leader``.
        """
        return await self._run(self.sync_get_all_workers)

    # ------------------------------------------------------------- waiting

    def _listener(self) -> wake.Listener | None:
        self._conn()
        channel = self.channel
        if channel is None:
            return None
        try:
            return wake.Listener(channel, wake.WAITER)
        except OSError:
            return None

    def _pending(self, ids: Sequence[str], states: frozenset[str]) -> list[str]:
        current = self._call(self.store.job_states, ids)
        return [i for i in ids if i in current and current[i] not in states]

    def sync_wait_for_jobs(
        self, refs: Iterable[RefLike], *, interval: float = 1, timeout: float | None = None,
        states: Iterable[QueuedJob.State | str] | None = None,
    ) -> list[QueuedJob]:
        """Return the jobs (``list[QueuedJob]``) once every one is in ``states`` (default: succeeded or
        failed) or gone; a job that vanished counts as done. Woken by each completion, not only every ``interval``
        seconds. ``TimeoutError`` after ``timeout`` seconds (None: wait forever).
        """
        ids = [ref_id(r) for r in refs]
        wanted = _state_values(states)
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self._listener()
        try:
            while True:
                waiting = self._pending(ids, wanted)
                if not waiting:
                    return self.sync_get_jobs(ids)
                pause = interval if deadline is None else min(interval, deadline - time.monotonic())
                if pause <= 0:
                    raise TimeoutError(f"{len(waiting)} job(s) did not finish within {timeout} s")
                if listener is not None:
                    listener.wait(pause)
                else:
                    time.sleep(pause)
        finally:
            if listener is not None:
                listener.close()

    def sync_wait_for_job(
        self, ref: RefLike, *, interval: float = 1, timeout: float | None = None,
        states: Iterable[QueuedJob.State | str] | None = None,
    ) -> QueuedJob | None:
        """Return the job once its state is in ``states`` (default: succeeded or failed), or None if it
        vanished. Woken by its completion, not only every ``interval`` seconds. ``TimeoutError`` after ``timeout``
        seconds (None: wait forever).
        """
        jobs = self.sync_wait_for_jobs([ref], interval=interval, timeout=timeout, states=states)
        return jobs[0] if jobs else None

    async def wait_for_jobs(
        self, refs: Iterable[RefLike], *, interval: float = 1, timeout: float | None = None,
        states: Iterable[QueuedJob.State | str] | None = None,
    ) -> list[QueuedJob]:
        """Return the jobs (``list[QueuedJob]``) once every one is in ``states`` (default: succeeded or
        failed) or gone; a job that vanished counts as done. Woken by each completion, not only every ``interval``
        seconds. ``TimeoutError`` after ``timeout`` seconds (None: wait forever).
        """
        ids = [ref_id(r) for r in refs]
        wanted = _state_values(states)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        listener = await self._run(self._listener)
        try:
            while True:
                waiting = await self._run(self._pending, ids, wanted)
                if not waiting:
                    return await self.get_jobs(ids)
                pause = interval if deadline is None else min(interval, deadline - loop.time())
                if pause <= 0:
                    raise TimeoutError(f"{len(waiting)} job(s) did not finish within {timeout} s")
                if listener is None:
                    await asyncio.sleep(pause)
                else:
                    await _readable(listener, pause)
                    listener.drain()
        finally:
            if listener is not None:
                listener.close()

    async def wait_for_job(
        self, ref: RefLike, *, interval: float = 1, timeout: float | None = None,
        states: Iterable[QueuedJob.State | str] | None = None,
    ) -> QueuedJob | None:
        """Return the job once its state is in ``states`` (default: succeeded or failed), or None if it
        vanished. Woken by its completion, not only every ``interval`` seconds. ``TimeoutError`` after ``timeout``
        seconds (None: wait forever).
        """
        jobs = await self.wait_for_jobs([ref], interval=interval, timeout=timeout, states=states)
        return jobs[0] if jobs else None


def _default_plugins() -> list[Any]:
    """Chancy's default plugins that chancy_lite has: Leadership, Pruner, Recovery, Metrics, WorkflowPlugin."""
    from chancy_lite.plugins.leadership import Leadership
    from chancy_lite.plugins.metrics import Metrics
    from chancy_lite.plugins.pruner import Pruner
    from chancy_lite.plugins.recovery import Recovery
    from chancy_lite.plugins.workflow import WorkflowPlugin

    return [Leadership(), Pruner(), Recovery(), Metrics(), WorkflowPlugin()]


def _state_values(states: Iterable[QueuedJob.State | str] | None) -> frozenset[str]:
    if states is None:
        return frozenset(s.value for s in FINISHED_STATES)
    return frozenset(QueuedJob.State(s).value for s in states)


async def _readable(listener: wake.Listener, timeout: float) -> None:
    """Wait until the listener has a datagram or ``timeout`` passes, without blocking the loop."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(listener.fileno(), lambda: None if ready.done() else ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(listener.fileno())

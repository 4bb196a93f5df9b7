"""``Worker``: the supervisor of one process.

It keeps a heartbeat row, watches the queues (declared, changed, paused,
removed, resumed), starts one executor per served queue, relays wake-ups and
cancellations to the children, recovers the jobs of processes that died, and
shuts down in order on SIGTERM/SIGINT (a second signal stops at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import platform
import re
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from chancy_lite import db, journal, proc, wake
from chancy_lite.app import Chancy
from chancy_lite.errors import ConfigurationError, InvalidExecutorError, MigrationsNeededError
from chancy_lite.executors.base import Executor
from chancy_lite.hub import Hub
from chancy_lite.job import Limit, QueuedJob
from chancy_lite.queue import Queue, load_executor
from chancy_lite.utils import chancy_uuid, from_micros

log = logging.getLogger(__name__)
T = TypeVar("T")


class Worker:
    """Runs the jobs of every queue whose tags match this worker, until stopped.

    ``async with Worker(chancy) as worker: await worker.wait_for_shutdown()``
    """

    def __init__(
        self,
        chancy: Chancy,
        *,
        worker_id: str | None = None,
        heartbeat_poll_interval: float = 30,
        heartbeat_timeout: float = 90,
        queue_change_poll_interval: float = 10,
        shutdown_timeout: float = 30,
        tags: Iterable[str] | None = None,
        register_signal_handlers: bool = True,
        allowed_modules: Iterable[str] | None = None,
    ) -> None:
        self.chancy = chancy
        self.worker_id = worker_id or chancy_uuid()
        self.heartbeat_poll_interval = heartbeat_poll_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.queue_change_poll_interval = queue_change_poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.tags = set(tags or ())
        self.register_signal_handlers = register_signal_handlers
        self.allowed_modules = tuple(allowed_modules) if allowed_modules is not None else None
        self.checkpoint_interval = 0.1
        self.wal_truncate_bytes = 16 * 2**20  # past this, checkpoints wait briefly for readers and truncate the WAL
        self.wal_warning_bytes = 256 * 2**20  # WAL size that means a stuck reader (checkpoints run every 0.1 s)
        self.hub = Hub()
        self.executors: dict[str, Executor] = {}
        # Executors of paused, removed or reconfigured queues, stopping in the background: name -> (executor, task).
        self._retiring: dict[str, tuple[Executor, asyncio.Task[None]]] = {}
        self._listener: wake.Listener | None = None
        self._channel: wake.Channel | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._queues_changed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started = False
        self._stopping = False
        self._signals = 0
        self._served_once: set[str] = set()
        self._stop_task: asyncio.Future[None] | None = None
        self._next_resume: Any = None

    # ------------------------------------------------------------ identity

    def worker_tags(self) -> set[str]:
        """The tags queues are matched against (each queue tag is a regex ``re.match``-ed against these)."""
        return {
            "*",
            f"hostname={proc.HOSTNAME}",
            f"worker_id={self.worker_id}",
            f"python={platform.python_version()}",
            f"os={sys.platform}",
            f"arch={platform.machine()}",
            *self.tags,
        }

    def serves(self, queue: Queue) -> bool:
        tags = self.worker_tags()
        return any(re.match(pattern, tag) for pattern in queue.tags for tag in tags)

    def child_log_level(self) -> int | None:
        """Children log like the supervisor when logging is configured, else not at all."""
        if not logging.getLogger().handlers:
            return None
        return logging.getLogger("chancy_lite").getEffectiveLevel()

    # ------------------------------------------------------------ database

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store method on the app's threads, retrying transient errors with backoff."""
        delay = 0.05
        while True:
            try:
                return await self.chancy._run(self.chancy._call, fn, *args, **kwargs)
            except Exception as exc:
                if not db.is_transient(exc) or self._signals > 1:
                    raise
                log.warning("database busy or unavailable (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ----------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Check the schema, declare ``default``, recover orphans, start serving queues; returns once running."""
        if self._started:
            return
        if self.chancy.path == db.MEMORY:
            raise ConfigurationError(
                "a Worker cannot use a ':memory:' database: it is private to the one connection that opened it, "
                "and the worker's children and threads open their own, which would each see another, empty "
                "database. Use a database file (in tests a temporary one, such as pytest's tmp_path / 'jobs.db'); "
                "to run jobs inside a test without a worker, use chancy_lite.testing.drain() or run_jobs() on it"
            )
        store = self.chancy.store
        if not await self.chancy._run(self.chancy._call, store.is_up_to_date):
            raise MigrationsNeededError(
                "the database schema is not up to date: run `chancy-lite --db PATH migrate` or `await chancy.migrate()`"
            )
        self._started = True
        await self.chancy.declare(Queue("default"))
        self._channel = store.channel
        if self._channel is not None:
            self._listener = wake.Listener(self._channel, wake.WORKER)
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._on_datagrams)
        await self.heartbeat()
        await self.recover_orphans()
        await self.refresh_queues()
        self._tasks = [
            asyncio.create_task(self._every(self.heartbeat_poll_interval, self._heartbeat_step), name="heartbeat"),
            asyncio.create_task(self._queue_loop(), name="queues"),
        ]
        if self.chancy.path != db.MEMORY:
            self._tasks.append(asyncio.create_task(self._checkpoint_loop(), name="checkpoint"))
        for plugin in self.chancy.plugins:
            self._tasks.append(asyncio.create_task(self._run_plugin(plugin), name=plugin.get_identifier()))
        self._tasks.append(asyncio.create_task(self._every(1.0, self._enforce_time_limits), name="time limits"))
        if self.register_signal_handlers:
            self._install_signals()
        self.hub.emit("worker.started", {"worker_id": self.worker_id})
        log.info("worker %s started; queues: %s", self.worker_id, ", ".join(sorted(self.executors)) or "none")

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish within ``shutdown_timeout``, then interrupt the rest."""
        if not self._started:
            return
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        log.info("worker %s stopping (waiting up to %s s for running jobs)", self.worker_id, self.shutdown_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        retiring = list(self._retiring.values())
        for _, task in retiring:
            task.cancel()  # a draining executor now gets shutdown_timeout, like the others
        await asyncio.gather(*(task for _, task in retiring), return_exceptions=True)
        executors = [*self.executors.values(), *(ex for ex, _ in retiring)]
        await asyncio.gather(*(ex.stop(self.shutdown_timeout) for ex in executors))
        self.executors.clear()
        self._retiring.clear()
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
        with contextlib.suppress(Exception):
            await self._db(self.chancy.store.delete_worker, self.worker_id)
        self._remove_signals()
        self.hub.emit("worker.stopped", {"worker_id": self.worker_id})
        self._stopped.set()
        log.info("worker %s stopped", self.worker_id)

    async def wait_for_shutdown(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signals(self) -> None:
        if not self.register_signal_handlers:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("received %s: finishing running jobs (send it again to stop at once)", signal.Signals(sig).name)
            self._stop_task = asyncio.ensure_future(self.stop())
        else:
            log.warning("received %s again: interrupting running jobs now", signal.Signals(sig).name)
            self.shutdown_timeout = 0
            for executor in self._all_executors():
                executor.kill()

    # ----------------------------------------------------------- wake-ups

    def idle_path(self, queue: str, key: str) -> str:
        """Where an idle child of ours advertises itself (see chancy_lite.wake)."""
        directory = self._channel.directory if self._channel is not None else ""
        return os.path.join(directory, wake.idle_name(queue, key))

    def send_to_child(self, key: str, message: bytes) -> None:
        if self._channel is not None:
            self._channel.send_to(os.path.join(self._channel.directory, f"c-{key}.sock"), message)

    def _on_datagrams(self) -> None:
        assert self._listener is not None
        for message in self._listener.drain():
            try:
                self._dispatch(message.decode())
            except Exception:
                log.exception("bad wake-up message %r", message)

    def _dispatch(self, message: str) -> None:
        kind, _, rest = message.partition(" ")
        if kind == "p":
            queue, _, count = rest.rpartition(" ")
            for name, executor in self.executors.items():
                if queue == "*" or (queue == name and not executor.wakes_directly):
                    executor.wake(int(count))
                elif queue == name:
                    # Pushers tell supervisors only of jobs that no idle child took: every child is busy.
                    self.hub.emit("worker.queue.full", {"queue": name})
        elif kind == "q":
            self._queues_changed.set()
        elif kind == "c":
            job_id, _, pid = rest.partition(" ")
            for executor in self._all_executors():  # a retiring executor may still run the job
                if executor.cancel(job_id, int(pid) or None):
                    break

    # -------------------------------------------------------------- queues

    def _all_executors(self) -> list[Executor]:
        return [*self.executors.values(), *(ex for ex, _ in self._retiring.values())]

    async def refresh_queues(self) -> None:
        """Match the running executors to the stored queues: start, reconfigure, stop.

        Stopping happens in the background, so one slow queue never holds up the others. A queue that is
        paused, removed or no longer matches stops claiming and lets its running jobs finish, however long
        they take; a reconfigured queue drains within ``shutdown_timeout``. Either way its new executor
        starts once the old one is gone, so the queue never runs more than its concurrency.
        """
        store = self.chancy.store
        served = set(self.executors)
        await self._db(store.resume_due_queues, now=self.chancy.now())
        queues = {q.name: q for q in await self._db(store.get_all_queues)}
        wanted = {n: q for n, q in queues.items() if q.state is Queue.State.ACTIVE and self.serves(q)}
        for name, executor in list(self.executors.items()):
            if name not in wanted or wanted[name] != executor.queue:
                del self.executors[name]
                self._retire(name, executor, math.inf if name not in wanted else self.shutdown_timeout)
                if name not in wanted:
                    self.hub.emit("worker.queue.removed", {"queue": name})
                    log.info("stopped serving queue %s", name)
        for name, queue in wanted.items():
            if name not in self.executors and name not in self._retiring and not self._stopping:
                updated = name in self._served_once
                try:
                    executor = self._executor_for(queue)
                except InvalidExecutorError as exc:
                    # Declared where its executor exists (another version or environment): serve the others,
                    # and say so once per queue and executor, not at every refresh.
                    unloadable = self.__dict__.setdefault("_unloadable_executors", set())
                    if (name, queue.executor) not in unloadable:
                        unloadable.add((name, queue.executor))
                        log.error("not serving %s", exc)
                    continue
                self.executors[name] = executor
                await executor.start()
                self._served_once.add(name)
                self.hub.emit("worker.queue.updated" if updated else "worker.queue.started", {"queue": name})
                log.info("serving queue %s with %s x %s", name, executor.concurrency, type(executor).__name__)
        self._next_resume = min(
            (q.resume_at for q in queues.values() if q.state is Queue.State.PAUSED and q.resume_at is not None),
            default=None,
        )
        if set(self.executors) != served and not self._stopping:
            await self.heartbeat()  # the worker row lists the queues served now, not at the next heartbeat

    def _retire(self, name: str, executor: Executor, timeout: float) -> None:
        """Stop ``executor`` in the background; refresh the queues once it is gone."""
        task = asyncio.create_task(executor.stop(timeout), name=f"retire {name}")
        self._retiring[name] = (executor, task)

        def done(_: asyncio.Task[None]) -> None:
            if self._retiring.get(name, (None,))[0] is executor:
                del self._retiring[name]
            self._queues_changed.set()

        task.add_done_callback(done)

    def _executor_for(self, queue: Queue) -> Executor:
        advice = (
            "install it where this worker runs, or declare the queue again with another executor (upsert=True); "
            "this worker serves its other queues"
        )
        executor: Executor = load_executor(queue.executor, queue.name, advice=advice)(self, queue)
        return executor

    async def _queue_loop(self) -> None:
        while True:
            timeout = self.queue_change_poll_interval
            if self._next_resume is not None:
                until = (self._next_resume - from_micros(self.chancy.now())).total_seconds()
                timeout = max(0.0, min(timeout, until))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queues_changed.wait(), timeout)
            self._queues_changed.clear()
            await self._guarded(self.refresh_queues)

    async def _guarded(self, step: Callable[[], Any]) -> None:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker loop step %s failed; it will run again", getattr(step, "__name__", step))

    async def _every(self, interval: float, step: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._guarded(step)

    async def _run_plugin(self, plugin: Any) -> None:
        """A plugin's loop, restarted after a pause if it fails; its cleanup runs when the worker stops."""
        try:
            while True:
                try:
                    await plugin.run(self, self.chancy)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("plugin %s failed; restarting it in 5 s", plugin.get_identifier())
                    await asyncio.sleep(5)
        finally:
            with contextlib.suppress(Exception):
                await plugin.cleanup(self.chancy)

    async def _enforce_time_limits(self) -> None:
        """Backstop for TIME limits: a child still running a job well past its limit and grace period (its own
        watchdog was disabled or did not fire) is killed; its job is then recovered as timed out."""
        children = {
            p.pid: ex for ex in self.executors.values() for p in getattr(ex, "processes", {}).values()
        }
        if not children:
            return
        now = self.chancy.now()
        for job_id, pid, started_at, limit in await self._db(self.chancy.store.time_limited_jobs, self.worker_id):
            executor = children.get(pid)
            if executor is None or started_at is None:
                continue
            overdue = (now - started_at) / 1e6 - limit - 2 * executor.timeout_grace
            if overdue > 0:
                log.warning("job %s is %.1f s past its time limit and grace period; killing its process %s",
                            job_id, overdue, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    async def _checkpoint_loop(self) -> None:
        """Checkpoint the WAL in the background whenever it changed, so children's commits never stall on it
        (they run with auto-checkpoints off) and the WAL stays small. Idle, this is one stat() per interval."""
        wal = self.chancy.path + "-wal"
        seen = None
        warned = 0.0
        # Its own connection, whose short busy timeout bounds how long a truncating checkpoint holds off writers.
        conn = await asyncio.to_thread(
            db.connect, self.chancy.path, busy_timeout=0.1, synchronous=self.chancy.synchronous, check=False
        )
        try:
            while True:
                await asyncio.sleep(self.checkpoint_interval)
                try:
                    st = os.stat(wal)
                except FileNotFoundError:
                    continue
                if st.st_mtime_ns == seen:
                    continue
                seen = st.st_mtime_ns
                truncate = st.st_size > self.wal_truncate_bytes
                try:
                    await asyncio.to_thread(self.chancy.store.checkpoint, conn, truncate=truncate)
                except Exception as exc:  # busy past 0.1 s, or a transient error: next time
                    log.debug("checkpoint skipped: %s", exc)
                if st.st_size > self.wal_warning_bytes and asyncio.get_running_loop().time() - warned > 60:
                    warned = asyncio.get_running_loop().time()
                    log.warning(
                        "the WAL of %s is %.0f MiB and checkpoints cannot shrink it: a connection is probably "
                        "holding a read transaction open (a long query, an unfinished cursor, a stopped process); "
                        "the WAL grows until it ends", self.chancy.path, st.st_size / 2**20,
                    )
        finally:
            conn.close()

    # ----------------------------------------------------- heartbeat, recovery

    async def heartbeat(self) -> None:
        now = self.chancy.now()
        await self._db(
            self.chancy.store.upsert_worker, worker_id=self.worker_id, hostname=proc.HOSTNAME, pid=os.getpid(),
            pid_start=proc.start_time(os.getpid()), tags=sorted(self.worker_tags()), queues=sorted(self.executors),
            now=now, expires_at=now + int(self.heartbeat_timeout * 1_000_000),
        )

    async def _heartbeat_step(self) -> None:
        await self.heartbeat()
        await self.recover_orphans()
        # Rows of workers that stopped beating (killed, or asleep: a sleeping one writes its row again on waking).
        for worker_id in await self._db(self.chancy.store.delete_expired_workers, now=self.chancy.now()):
            log.info("removed the row of worker %s: no heartbeat for over its heartbeat_timeout", worker_id)

    async def recover_process(self, pid: int | None, how: str, grace: float) -> None:
        """Recover the jobs a dead process of ours held, counting each attempt."""
        now = self.chancy.now()

        def reason(job: QueuedJob) -> str:
            limit = job.limit(Limit.Type.TIME)
            if limit and job.started_at is not None:
                ran = (from_micros(now) - job.started_at).total_seconds()
                if ran >= limit:
                    return (
                        f"timed out: the job ran {ran:.1f} s, past its time limit of {limit} s, and did not stop "
                        f"within the {grace} s grace period; its worker process was killed ({how})"
                    )
            return f"the worker process running this job died ({how}, pid {pid})"

        for job, state in await self._recover(self.worker_id, pid, reason, now):
            log.warning("recovered job %s (%s) from dead process %s: now %s", job.id, job.func, pid, state)

    async def _recover(
        self, worker_id: str, pid: int | None, reason: Callable[[QueuedJob], str], now: int
    ) -> list[tuple[QueuedJob, str]]:
        """Recover a dead process's jobs from its journal: finished ones keep their outcome, started ones
        count an attempt, claimed but unstarted ones wait again (see chancy_lite.journal)."""
        paths = journal.find(self._channel.directory, worker_id, pid) if self._channel is not None else []
        records = [journal.read(path) for path in paths]
        started: set[str] | None = None
        outcomes = []
        if paths and all(r is not None for r in records):
            started = set()
            for ids, finished in filter(None, records):
                started |= ids
                outcomes.extend(finished)
        recovered = await self._db(
            self.chancy.store.recover_jobs, worker_id, pid, reason, now=now, started=started, outcomes=outcomes
        )
        journal.remove(paths)
        return recovered

    async def recover_orphans(self) -> None:
        """Recover jobs held by processes that are gone: dead pids on this host, expired workers elsewhere."""
        store, now = self.chancy.store, self.chancy.now()
        mine = {p.pid for ex in self.executors.values() for p in getattr(ex, "processes", {}).values()}
        mine.add(os.getpid())
        for holder in await self._db(store.list_holders):
            if holder.worker_id == self.worker_id and holder.pid in mine:
                continue
            if holder.hostname in (None, proc.HOSTNAME):
                if proc.is_alive(holder.pid, holder.pid_start):
                    continue
                how = "its process is gone"
            elif holder.expires_at is not None and holder.expires_at >= now:
                continue
            else:
                how = f"its worker on {holder.hostname} stopped sending heartbeats"
            reason = f"the worker process running this job died ({how}, pid {holder.pid})"
            def why(job: QueuedJob, reason: str = reason) -> str:
                return reason

            for job, state in await self._recover(holder.worker_id, holder.pid, why, now):
                log.warning("recovered orphaned job %s (%s): now %s", job.id, job.func, state)

"""``Worker``: the supervisor of one process, a thin lifecycle around its services.

Each duty lives in :mod:`chancy_lite.services` and can be stepped alone: ``Heartbeat`` (the worker row),
``Rescuer`` (jobs of dead holders), ``QueueWatcher`` (executors follow the stored queues), ``Checkpointer``
(the WAL), ``TimeLimits`` (the TIME-limit backstop) and ``PluginRunner``. The worker starts and stops them,
delivers wake-ups and cancellations to its executors, and shuts down in order on SIGTERM/SIGINT (a second
signal stops at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from chancy_lite import alias, db, proc, wake
from chancy_lite.app import Chancy
from chancy_lite.errors import ConfigurationError, MigrationsNeededError
from chancy_lite.executors.base import Executor, ExecutorContext
from chancy_lite.hooks import JobHooks, hooked
from chancy_lite.hub import Hub
from chancy_lite.queue import Queue
from chancy_lite.retry import Backoff, DatabaseRetry
from chancy_lite.services import Checkpointer, Heartbeat, PluginRunner, QueueWatcher, Rescuer, Service, TimeLimits
from chancy_lite.template import Template
from chancy_lite.utils import chancy_uuid

log = logging.getLogger(__name__)
T = TypeVar("T")


class Worker:
    """Runs the jobs of every queue whose tags match this worker, until stopped.

    ``async with Worker(chancy) as worker: await worker.wait_for_shutdown()``

    Intervals and timeouts are in seconds. ``backoff_initial``, ``backoff_max`` and ``backoff_max_retries``
    (Chancy 0.26) set how the worker's own loops retry a busy or locked database: full-jitter exponential
    backoff, forever when ``backoff_max_retries`` is None, else the worker stops once that many consecutive
    retries failed and ``wait_for_shutdown()`` raises the error.
    """

    def __init__(
        self,
        chancy: Chancy,
        *,
        worker_id: str | uuid.UUID | None = None,
        heartbeat_poll_interval: float = 30,
        heartbeat_timeout: float = 90,
        queue_change_poll_interval: float = 10,
        shutdown_timeout: float = 30,
        tags: Iterable[str] | None = None,
        register_signal_handlers: bool = True,
        allowed_modules: Iterable[str] | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        backoff_max_retries: int | None = None,
    ) -> None:
        self.chancy = chancy
        self.worker_id = str(worker_id) if worker_id else str(chancy_uuid())
        self.heartbeat_poll_interval = heartbeat_poll_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.queue_change_poll_interval = queue_change_poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.tags = set(tags or ())
        self.register_signal_handlers = register_signal_handlers
        self.allowed_modules = tuple(allowed_modules) if allowed_modules is not None else None
        self.backoff = Backoff(backoff_initial, backoff_max, backoff_max_retries)
        self.hub = Hub()
        #: Set while this worker is the leader (see chancy_lite.plugins.leadership), as Chancy's ``is_leader``.
        self.is_leader = asyncio.Event()
        self.executors: dict[str, Executor] = {}
        self.heartbeat = Heartbeat(self, heartbeat_poll_interval)
        self.rescuer = Rescuer(self, heartbeat_poll_interval)
        self.queues = QueueWatcher(self, queue_change_poll_interval)
        self.checkpointer = Checkpointer(self)
        self.time_limits = TimeLimits(self, 1.0)
        self.plugin_runner = PluginRunner(self)
        #: The plugins' job hooks for runs this process writes itself (the recovery of dead holders' jobs).
        self.hooks = JobHooks(hooked(chancy.plugins.values()), worker=self)
        self._listener: wake.Listener | None = None
        self._channel: wake.Channel | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._started = False
        self._stopping = False
        self._signals = 0
        self._stop_task: asyncio.Future[bool] | None = None
        self._failure: BaseException | None = None
        self._clean = True
        self._template: Template | None = None
        self._template_started = 0.0

    @property
    def services(self) -> list[Service]:
        """The services a running worker runs, in start order."""
        services: list[Service] = [self.heartbeat, self.rescuer, self.queues, self.time_limits, self.plugin_runner]
        if self.chancy.path != db.MEMORY:
            services.append(self.checkpointer)
        return services

    @property
    def stopping(self) -> bool:
        return self._stopping

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
        """Children log like the supervisor when logging is configured; else not at all, and Python itself prints
        their warnings (failed jobs) to stderr."""
        if not logging.getLogger().handlers:
            return None
        return logging.getLogger("chancy_lite").getEffectiveLevel()

    # ------------------------------------------------------------ database

    def database_retry(self, name: str) -> DatabaseRetry:
        """Retry state for one loop, with this worker's backoff settings (Chancy 0.26 ``database_retry``)."""
        return DatabaseRetry(name, calculate_delay=self.backoff.delay, max_retries=self.backoff.max_retries, log=log)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``await fn(conn, *args, **kwargs)`` run off the event loop (see ``Chancy.run_store``), retrying
        transient database errors with this worker's backoff; other errors propagate."""
        retry = self.database_retry(getattr(fn, "__name__", "store call"))
        while True:
            try:
                return await self.chancy.run_store(fn, *args, **kwargs)
            except Exception as exc:
                if self._signals > 1:  # stopping at once: no more waiting
                    raise
                await retry.wait(exc)

    # ----------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Check the schema, declare ``default``, recover orphans, start serving queues; returns once running.

        Raises ``ConfigurationError`` for a ``:memory:`` database and ``MigrationsNeededError`` for a file whose
        schema is not up to date.
        """
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
        if not await self.chancy.run_store(store.is_up_to_date):
            raise MigrationsNeededError(
                "the database schema is not up to date: run `chancy-lite --db PATH migrate` or `await chancy.migrate()`"
            )
        self._check_dependencies()
        self._started = True
        await self.chancy.declare(Queue("default"))
        self._channel = self.chancy.channel
        if self._channel is not None:
            self._listener = wake.Listener(self._channel, wake.WORKER)
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._on_datagrams)
        now = self.chancy.now()
        await self.heartbeat.beat(now)
        await self.rescuer.recover_orphans(now)
        await self.queues.tick(now)
        for plugin in self.chancy.plugins.values():
            await plugin.on_worker_started(worker=self)
        for service in self.services:
            task = asyncio.create_task(service.run(), name=service.name)
            task.add_done_callback(self._on_service_done)
            self._tasks.append(task)
        if self.register_signal_handlers:
            self._install_signals()
        self.hub.emit("worker.started", {"worker_id": self.worker_id})
        log.info("worker %s started; queues: %s", self.worker_id, ", ".join(sorted(self.executors)) or "none")

    def _check_dependencies(self) -> None:
        """Every plugin's dependencies are present (Chancy checks them at start too)."""
        present = set(self.chancy.plugins)
        for identifier, plugin in self.chancy.plugins.items():
            missing = [d for d in plugin.get_dependencies() if d not in present]
            if missing:
                raise ConfigurationError(
                    f"plugin {identifier} needs {', '.join(missing)}: add it to Chancy(plugins=[...]), or drop "
                    "no_default_plugins=True (the defaults include chancy.leadership)"
                )

    def _on_service_done(self, task: asyncio.Task[None]) -> None:
        """A service ended by itself: only an error out of its retries does that. Stop the worker with it."""
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        if error is not None:
            log.error("worker service %s failed for good; stopping the worker", task.get_name(), exc_info=error)
            self._failure = error
            self._stop_task = asyncio.ensure_future(self.stop())

    async def stop(self, *, timeout: float | None = None) -> bool:
        """Stop claiming, let running jobs finish within ``timeout`` seconds (default ``shutdown_timeout``), then
        interrupt the rest. Returns True when every job finished in time (Chancy 0.26); a concurrent call waits
        for the first and returns its result."""
        if not self._started:
            return True
        if self._stopping:
            await self._stopped.wait()
            return self._clean
        if timeout is not None:
            self.shutdown_timeout = timeout
        self._stopping = True
        log.info("worker %s stopping (waiting up to %s s for running jobs)", self.worker_id, self.shutdown_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        executors = [*self.executors.values(), *await self.queues.stop_retiring()]
        results = await asyncio.gather(*(ex.stop(self.shutdown_timeout) for ex in executors))
        self._clean = all(result is not False for result in results)
        self.executors.clear()
        if self._template is not None:
            await self._template.close()
        for service in self.services:
            await service.close()
        for plugin in self.chancy.plugins.values():
            try:
                await plugin.on_worker_stopped(worker=self)
            except Exception:
                log.exception("plugin %s failed in on_worker_stopped", plugin.get_identifier())
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
        with contextlib.suppress(Exception):
            await self.chancy.run_store(self.chancy.store.delete_worker, self.worker_id)
        self._remove_signals()
        self.hub.emit("worker.stopped" if self._clean else "worker.shutdown_timeout", {"worker_id": self.worker_id})
        self._stopped.set()
        log.info("worker %s stopped%s", self.worker_id, "" if self._clean else " (jobs were interrupted)")
        return self._clean

    async def flush(self) -> None:
        """Chancy 0.26's ``flush()``: write accepted job updates now. chancy_lite's children write each outcome
        with their next claim (or at once, when a job runs long), so nothing waits in the supervisor: this
        returns at once."""

    # ------------------------------------------------------------ metrics

    async def increment_counter(self, key: str, value: int | float, *, unit: str = "count") -> None:
        """Add ``value`` to the counter ``key``: emits ``metrics.counter`` ``{key, value, unit}`` on this worker's hub
        (Chancy 0.26). The Metrics plugin records it under this worker's id, buffered in this process and written
        every ``sync_interval`` seconds and when the worker stops; without the plugin nothing records it. An
        invalid key, unit or value is dropped there with a warning."""
        self.hub.emit("metrics.counter", {"key": key, "value": value, "unit": unit})

    async def record_gauge(self, key: str, value: int | float, *, unit: str = "number") -> None:
        """Set the gauge ``key`` to ``value``: emits ``metrics.gauge`` ``{key, value, unit}`` (as
        ``increment_counter``)."""
        self.hub.emit("metrics.gauge", {"key": key, "value": value, "unit": unit})

    async def record_histogram_value(self, key: str, value: int | float, *, unit: str = "number") -> None:
        """Add ``value`` to the histogram ``key``: emits ``metrics.histogram`` ``{key, value, unit}`` (as
        ``increment_counter``)."""
        self.hub.emit("metrics.histogram", {"key": key, "value": value, "unit": unit})

    async def wait_for_shutdown(self) -> None:
        """Return once the worker has stopped; raise the error that stopped it, if one did."""
        await self._stopped.wait()
        if self._failure is not None:
            raise self._failure

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

    def _on_datagrams(self) -> None:
        assert self._listener is not None
        for message in self._listener.drain():
            try:
                self._dispatch(wake.decode_worker(message))
            except Exception:
                log.exception("bad wake-up message %r", message)

    def _dispatch(
        self, message: wake.Claimable | wake.Cancel | wake.QueuesChanged | wake.Notification | None
    ) -> None:
        if isinstance(message, wake.Claimable):
            for name, executor in self.executors.items():
                if message.queue == "*" or (message.queue == name and not executor.wakes_directly):
                    executor.wake(message.count)
                elif message.queue == name and not executor.wake_idle():
                    # Pushers tell supervisors only of jobs that no idle child took: every child is busy (or, with
                    # a queue name too long to address an idle link, idle children are reached here).
                    self.hub.emit("worker.queue.full", {"queue": name})
        elif isinstance(message, wake.QueuesChanged):
            self.queues.changed()
        elif isinstance(message, wake.Cancel):
            for executor in self._all_executors():  # a retiring executor may still run the job
                if executor.cancel(message.job_id, message.pid):
                    break
        elif isinstance(message, wake.Notification):
            self.hub.emit(message.name, message.body)

    def _all_executors(self) -> list[Executor]:
        return [*self.executors.values(), *(ex for ex, _ in self.queues.retiring.values())]

    # -------------------------------------------------- for the executors

    def executor_context(self) -> ExecutorContext:
        """What an executor of this worker may use (see ``ExecutorContext``)."""
        return ExecutorContext(
            chancy=self.chancy, worker_id=self.worker_id, allowed_modules=self.allowed_modules,
            child_log_level=self.child_log_level(), channel=self._channel, on_child_exit=self.recover_process,
            template=self.child_template,
        )

    def child_template(self) -> Template:
        """The template process that forks this worker's children (chancy_lite.template), started on first use.

        One that died is replaced, at most every 10 s; one that refused to fork (unsafe) is not: the executors
        then spawn their children."""
        current = self._template
        if current is not None and (current.dead is None or current.unsafe
                                    or time.monotonic() - self._template_started < 10):
            return current
        if current is not None:
            task = asyncio.ensure_future(current.close(timeout=1.0))  # reap it
            task.add_done_callback(lambda t: t.exception())
        # The plugins whose job hooks run in children come to each child pickled: their modules are imported once,
        # in the template, rather than in every child that unpickles them.
        plugins = {type(plugin).__module__ for plugin in hooked(self.chancy.plugins.values())} - {"__main__"}
        self._template = Template(sys_path=sys.path, alias=alias.installed(), preload=tuple(sorted(plugins)))
        self._template.start()
        self._template_started = time.monotonic()
        return self._template

    async def recover_process(self, pid: int | None, how: str, grace: float) -> None:
        """An executor's child exited (``how``): recover the jobs it held, counting each attempt."""
        await self.rescuer.recover_process(pid, how, grace, self.chancy.now())

    async def recover_orphans(self) -> int:
        """Recover jobs held by processes that are gone (one step of the Rescuer); returns how many."""
        return await self.rescuer.recover_orphans(self.chancy.now())

"""``QueueWatcher``: the executors running match the queues stored, as they are declared, changed, paused,
resumed (``resume_at``) and removed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING

from chancy_lite.errors import InvalidExecutorError
from chancy_lite.executors.base import Executor
from chancy_lite.queue import Queue, load_executor
from chancy_lite.services.base import Service
from chancy_lite.utils import from_micros

if TYPE_CHECKING:
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)

_ADVICE = (
    "install it where this worker runs, or declare the queue again with another executor (upsert=True); "
    "this worker serves its other queues"
)
_BROKEN_ADVICE = (
    "fix the executor, or declare the queue again with another one (upsert=True); this worker serves its other "
    "queues"
)


class QueueWatcher(Service):
    """A tick resumes due queues and starts, reconfigures or stops executors. It runs when told of a queue
    change (``changed()``, from a wake-up), when a paused queue's ``resume_at`` comes, and every ``interval``.

    Stopping happens in the background, so one slow queue never holds up the others. A queue that is paused,
    removed or no longer matches stops claiming and lets its running jobs finish, however long they take; a
    reconfigured queue drains within ``shutdown_timeout``. Either way its new executor starts once the old one
    is gone, so the queue never runs more than its concurrency.
    """

    name = "queues"

    def __init__(self, worker: Worker, interval: float) -> None:
        super().__init__(worker, interval)
        self._changed = asyncio.Event()
        self._served_once: set[str] = set()
        self._unloadable: set[tuple[str, str]] = set()
        self.start_timeout = 30.0  # seconds an executor's start() may take before its queue is given up
        # Executors of paused, removed or reconfigured queues, stopping in the background: name -> (executor, task).
        self.retiring: dict[str, tuple[Executor, asyncio.Task[bool | None]]] = {}

    def changed(self) -> None:
        """A queue may have changed: tick now."""
        self._changed.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)
        self._changed.clear()

    async def tick(self, now: int) -> float | None:
        worker = self.worker
        store = worker.chancy.store
        served = set(worker.executors)
        await worker.db(store.resume_due_queues, now=now)
        queues = {q.name: q for q in await worker.db(store.get_all_queues)}
        wanted = {n: q for n, q in queues.items() if q.state is Queue.State.ACTIVE and worker.serves(q)}
        for name, executor in list(worker.executors.items()):
            if name not in wanted or wanted[name] != executor.queue:
                del worker.executors[name]
                self._retire(name, executor, math.inf if name not in wanted else worker.shutdown_timeout)
                if name not in wanted:
                    worker.hub.emit("worker.queue.removed", {"queue": name})
                    log.info("stopped serving queue %s", name)
        for name, queue in wanted.items():
            if name in worker.executors or name in self.retiring or worker.stopping:
                continue
            started = self._executor_for(queue)
            if started is None:
                continue
            updated = name in self._served_once
            try:
                await asyncio.wait_for(started.start(), self.start_timeout)
            except Exception as exc:
                why = f"did not start within {self.start_timeout:g} s" if isinstance(exc, TimeoutError) else (
                    f"failed to start ({type(exc).__name__}: {exc})")
                self._refuse(queue, InvalidExecutorError(
                    f"queue {name!r}: its executor {queue.executor} {why}: {_BROKEN_ADVICE}"))
                with contextlib.suppress(Exception):
                    await started.stop(0)
                continue
            worker.executors[name] = started
            self._served_once.add(name)
            worker.hub.emit("worker.queue.updated" if updated else "worker.queue.started", {"queue": name})
            log.info("serving queue %s with %s x %s", name, started.concurrency, type(started).__name__)
        if set(worker.executors) != served and not worker.stopping:
            await worker.heartbeat.beat(now)  # the worker row lists the queues served now, not at the next beat
        resume = min(
            (q.resume_at for q in queues.values() if q.state is Queue.State.PAUSED and q.resume_at is not None),
            default=None,
        )
        if resume is None:
            return None
        return min(self.interval, max(0.0, (resume - from_micros(now)).total_seconds()))

    def _executor_for(self, queue: Queue) -> Executor | None:
        """The queue's executor, or None (logged once per queue and executor) when it cannot be loaded or built
        here: a queue declared where its executor exists (another version or environment), or an executor whose
        constructor fails, never stops the worker from serving its other queues."""
        try:
            cls = load_executor(queue.executor, queue.name, advice=_ADVICE)
            executor: Executor = cls(self.worker, queue)
        except Exception as exc:
            if not isinstance(exc, InvalidExecutorError):
                exc = InvalidExecutorError(
                    f"queue {queue.name!r}: its executor {queue.executor} failed to start "
                    f"({type(exc).__name__}: {exc}): {_BROKEN_ADVICE}"
                )
            self._refuse(queue, exc)
            return None
        return executor

    def _refuse(self, queue: Queue, error: Exception) -> None:
        """Say once per queue and executor (not at every tick) why a queue is not served."""
        key = (queue.name, str(queue.executor))
        if key not in self._unloadable:
            self._unloadable.add(key)
            log.error("not serving %s", error)

    def _retire(self, name: str, executor: Executor, timeout: float) -> None:
        """Stop ``executor`` in the background; tick again once it is gone."""
        task = asyncio.create_task(executor.stop(timeout), name=f"retire {name}")
        self.retiring[name] = (executor, task)

        def done(_: asyncio.Task[bool | None]) -> None:
            if self.retiring.get(name, (None,))[0] is executor:
                del self.retiring[name]
            self.changed()

        task.add_done_callback(done)

    async def stop_retiring(self) -> list[Executor]:
        """At shutdown: the executors still draining, their background stop cancelled (the worker stops them
        within shutdown_timeout like the others)."""
        retiring = list(self.retiring.values())
        for _, task in retiring:
            task.cancel()
        await asyncio.gather(*(task for _, task in retiring), return_exceptions=True)
        self.retiring.clear()
        return [executor for executor, _ in retiring]

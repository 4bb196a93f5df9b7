"""Threaded executor: children are threads of the supervisor, for I/O-bound sync jobs."""

from __future__ import annotations

import asyncio
import logging
import threading

from chancy_lite import wake
from chancy_lite.child import JobCancelled, ThreadRunner, WorkerShutdown
from chancy_lite.executors.base import Executor, Slot

log = logging.getLogger(__name__)


class ThreadedExecutor(Executor):
    """``concurrency`` threads, each with its own connection, running the same loop as a child process."""

    default_concurrency = 8
    capabilities = ThreadRunner.capabilities  # TIME limits cooperative (QueuedJob.checkpoint()), no MEMORY limits

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.runners: dict[str, ThreadRunner] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.maximum_jobs_per_worker = None  # a thread has nothing to leak that a restart would free

    async def start(self) -> None:
        for _ in range(self.concurrency):
            key = self.new_key()
            runner = await asyncio.to_thread(ThreadRunner, self.child_config(key, register_signals=False))
            thread = threading.Thread(target=self._run, args=(runner,), name=f"chancy-lite[{self.queue.name}]",
                                      daemon=True)
            self.runners[key], self.threads[key], self.slots[key] = runner, thread, Slot(key)
            thread.start()

    def _run(self, runner: ThreadRunner) -> None:
        try:
            runner.run()
        except Exception:
            log.exception("thread runner of queue %s crashed", self.queue.name)

    def poke(self, slot: Slot, message: bytes) -> None:
        self.context.send_to_child(slot.key, message)

    def cancel(self, job_id: str, pid: int | None) -> bool:
        for runner in self.runners.values():
            current = runner.current
            if current is not None and str(current.id) == job_id:
                runner.cancelled = job_id
                runner.interrupt(JobCancelled)
                return True
        for runner in self.runners.values():  # it may be claimed in a batch, not started yet
            runner.cancelled_claims.add(job_id)
        return False

    async def stop(self, timeout: float) -> bool:
        self.stopping = True
        for key, runner in self.runners.items():
            runner.stopping = True
            self.context.send_to_child(key, wake.STOP)
        if await self._join(timeout):
            return True
        for runner in self.runners.values():
            runner.interrupt(WorkerShutdown)
        await self._join(self.timeout_grace)
        return False

    async def _join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s (any float, inf too) for the threads to end. Polls, so it can be cancelled
        without leaving a thread blocked in ``join``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(t.is_alive() for t in self.threads.values()) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not any(t.is_alive() for t in self.threads.values())

    def kill(self) -> None:
        self.stopping = True
        for runner in self.runners.values():
            runner.stopping = True
            runner.interrupt(WorkerShutdown)

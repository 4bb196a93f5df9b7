"""Async executor: jobs are coroutines on the supervisor's event loop (``async def`` functions only)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from chancy_lite import execution, wake
from chancy_lite.child import PROGRESS_INTERVAL, Runner
from chancy_lite.execution import Capability
from chancy_lite.executors.base import Executor, Slot
from chancy_lite.hooks import JobHooks, hooked
from chancy_lite.job import Limit, QueuedJob
from chancy_lite.journal import Journal, journal_name
from chancy_lite.outcome import dump_meta, next_outcome
from chancy_lite.store import Outcome
from chancy_lite.utils import micros_now

log = logging.getLogger(__name__)
T = TypeVar("T")
State = QueuedJob.State


class AsyncExecutor(Executor):
    """``concurrency`` tasks that claim and run coroutine jobs; TIME limits via ``asyncio.wait_for``."""

    default_concurrency = 16
    capabilities = Capability.ASYNC_JOBS | Capability.CANCELLATION | Capability.AUTOMATIC_TIME_LIMITS

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.maximum_jobs_per_worker = None
        self.batch_size = 1  # one job per task: a coroutine's claim is as cheap as a batch's
        self._db_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chancy-lite-async")
        self.runner: Runner | None = None
        self.events: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.running: dict[str, asyncio.Task[Any]] = {}
        self._progress_due: dict[str, float] = {}  # job id -> time.monotonic() of its next progress save
        self._progress_later: dict[str, asyncio.TimerHandle] = {}  # job id -> its pending progress save
        self.cancelled: set[str] = set()
        self.pending_wakes = 0
        # One journal per slot, written from the event loop only: should the supervisor die, recovery then knows
        # which of the jobs this process held had started (see chancy_lite.journal).
        self.journals: dict[str, Journal] = {}

    wakes_directly = False

    def wake(self, n: int) -> None:
        """Wake idle slots first; remember the rest for the next slots to go idle."""
        for slot in self.slots.values():
            if n <= 0:
                break
            if slot.idle:
                slot.idle = False
                self.poke(slot, wake.work_message())
                n -= 1
        self.pending_wakes = min(self.pending_wakes + max(n, 0), self.concurrency)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        assert self.runner is not None
        runner = self.runner
        return await asyncio.get_running_loop().run_in_executor(
            self._db_thread, lambda: runner.with_retry(lambda: fn(*args))
        )

    async def start(self) -> None:
        self.runner = await asyncio.get_running_loop().run_in_executor(
            self._db_thread, Runner, self.child_config(self.new_key(), register_signals=False)
        )
        # Jobs run in this process: the plugins' hooks are the app's own objects, with the real worker.
        self.runner.hooks = JobHooks(hooked(self.context.chancy.plugins.values()), worker=self.worker)
        directory = self.runner.channel.directory
        for _ in range(self.concurrency):
            key = self.new_key()
            self.slots[key], self.events[key] = Slot(key), asyncio.Event()
            name = journal_name(self.context.worker_id, os.getpid(), key)
            self.journals[key] = Journal(os.path.join(directory, name))
            self.tasks[key] = asyncio.create_task(self._slot(key), name=f"chancy-lite[{self.queue.name}]")

    def _exchange(self, pending: list[Outcome], n: int) -> list[QueuedJob]:
        runner = self.runner
        assert runner is not None
        runner.pending = pending
        return runner._exchange(n)

    async def _slot(self, key: str) -> None:
        slot, event, journal = self.slots[key], self.events[key], self.journals[key]
        pending: list[Outcome] = []
        while True:
            jobs = await self._db(self._exchange, pending, 0 if self.stopping else 1)
            pending = []
            journal.reset()
            if self.stopping:
                return
            if not jobs:
                await self._idle(slot, event)
                continue
            for job in jobs:
                journal.started(str(job.id))
                outcome = await self._execute(job)
                if outcome is not None:
                    pending.append(outcome)
                    journal.finished(outcome)  # if the journal were full, the outcome is written next anyway

    async def _idle(self, slot: Slot, event: asyncio.Event) -> None:
        assert self.runner is not None
        timeout = await self._db(self.runner.idle_timeout)
        if self.stopping:  # stop() set the event while we awaited next_due: clearing it would lose the stop
            return
        if self.pending_wakes > 0:
            self.pending_wakes -= 1
            return
        event.clear()
        slot.idle = True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        slot.idle = False

    async def _execute(self, job: QueuedJob) -> Outcome | None:
        """Run one claimed job as a task of this loop; its outcome by the one rule (chancy_lite.outcome)."""
        had_meta = bool(job.meta)
        started, started_at = time.perf_counter(), micros_now()
        error: BaseException | None = None
        stopping = False
        hooks = self.runner.hooks if self.runner is not None else JobHooks()
        object.__setattr__(job, "_reporter", self._report_progress)  # a fresh object from the claim
        try:
            if hooks.starting:
                job = await hooks.astarting(job)
            await self._call(job)
        except asyncio.CancelledError as exc:
            if str(job.id) in self.cancelled:
                self.cancelled.discard(str(job.id))
                log.info("job %s (%s) cancelled", job.id, job.func)
                return None  # cancel_job already wrote the final state
            stopping, error = self.stopping, exc
        except BaseException as exc:  # the job's failure is data, whatever it raised
            error = exc
        done = next_outcome(job, error, stopping=stopping, now=micros_now(), had_meta=had_meta,
                            elapsed=time.perf_counter() - started, started_at=started_at)
        if hooks.completing:
            done = await hooks.acompleted(job, done, error)
        if hooks.wants_updates and self.runner is not None and hooks.watches(job):
            self.runner.ran[done.id] = job
        return done

    def _report_progress(self, job: QueuedJob) -> None:
        """``QueuedJob.progress`` on this loop: save the job's meta on the database thread, at most every
        ``PROGRESS_INTERVAL`` seconds per job (a skipped report is saved when the interval is up), without
        waiting for it (best effort, as in a child)."""
        now, key = time.monotonic(), str(job.id)
        due = self._progress_due.get(key, 0.0)
        if now < due:
            if key not in self._progress_later:
                self._progress_later[key] = asyncio.get_running_loop().call_later(
                    due - now, self._report_later, job)
            return
        self._save_progress(job)

    def _report_later(self, job: QueuedJob) -> None:
        key = str(job.id)
        self._progress_later.pop(key, None)
        if key in self.running:  # not ended meanwhile
            self._save_progress(job)

    def _save_progress(self, job: QueuedJob) -> None:
        key = str(job.id)
        self._progress_due[key] = time.monotonic() + PROGRESS_INTERVAL
        runner = self.runner
        if runner is None:
            return
        try:
            meta = dump_meta(job.meta)
        except (TypeError, ValueError):
            return

        def save() -> None:
            try:
                runner.store.save_running_meta(runner.conn, job, meta, worker_id=runner.config.worker_id,
                                               pid=runner.pid)
            except Exception as exc:
                log.debug("progress of job %s not saved this time: %s", key, exc)

        self._db_thread.submit(save)

    async def _call(self, job: QueuedJob) -> None:
        execution.check_allowed(job.func, self.context.allowed_modules)
        job, func, kwargs = execution.prepare(job, self.capabilities, self.get_function_and_kwargs,
                                              type(self).__name__)
        limit = job.limit(Limit.Type.TIME)
        # guarded(): a SystemExit or KeyboardInterrupt the job raises is its failure, not the worker's
        coroutine: Any = execution.guarded(func(**kwargs))
        if limit:
            coroutine = execution.limited(coroutine, limit)
        task = asyncio.ensure_future(coroutine)
        self.running[str(job.id)] = task
        try:
            await asyncio.shield(task)
        finally:
            self.running.pop(str(job.id), None)
            self._progress_due.pop(str(job.id), None)
            later = self._progress_later.pop(str(job.id), None)
            if later is not None:
                later.cancel()

    def poke(self, slot: Slot, message: bytes) -> None:
        self.events[slot.key].set()

    def cancel(self, job_id: str, pid: int | None) -> bool:
        task = self.running.get(job_id)
        if task is None:
            return False
        self.cancelled.add(job_id)
        task.cancel()
        return True

    async def stop(self, timeout: float) -> bool:
        self.stopping = True
        for event in self.events.values():
            event.set()
        _, still = await asyncio.wait(list(self.tasks.values()), timeout=max(timeout, 0.001))
        if still:
            for task in self.running.values():
                task.cancel()
            await asyncio.wait(still, timeout=self.timeout_grace)
        runner = self.runner
        if runner is not None:
            await asyncio.get_running_loop().run_in_executor(self._db_thread, runner.close)
        for journal in self.journals.values():
            journal.close(remove=not still)
        self._db_thread.shutdown(wait=False)
        return not still

    def kill(self) -> None:
        self.stopping = True
        for task in self.running.values():
            task.cancel()

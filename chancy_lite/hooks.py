"""Plugins' job hooks, run where jobs run: in worker children, in the Async executor, in ``testing.drain``.

Chancy 0.26 runs its hooks in the worker's event loop around its write-back batches. chancy_lite's children
write their own outcomes, so the hooks run there, on copies of the plugins (pickled by the supervisor, see
``chancy_lite.plugin.pack_plugins``), with ``worker=None``; the Async executor and the supervisor's recovery
pass the real ``Worker``. Per hook (as Chancy 0.26, ``chancy/worker.py`` and ``chancy/executors/base.py``):

* ``on_job_starting(job=, worker=)``: before the job's function is called; may return a changed copy, which is
  the one run. A hook that raises is logged and the job runs as it was.
* ``on_job_completed(job=, worker=, exc=, result=)``: before the outcome is written; may return a changed copy
  (state, scheduled_at, completed_at and meta are written). See ``chancy_lite.outcome.run_completion_hooks``.
* ``on_jobs_updated_in_transaction(worker=, jobs=, cursor=)``: inside the transaction that writes finished
  runs, after the writes and before the commit, with the jobs whose write was accepted (a run that was
  cancelled or recovered meanwhile is not), as they are now stored; ``cursor`` is the ``chancy_lite.db``
  connection of that transaction. If it raises, the transaction rolls back and is tried again (logged, with
  backoff), so it must have no outside side effects.
* ``on_job_updated(job=, worker=)``: after that commit, once per accepted job, in order. Errors are logged.

A plugin that overrides ``wants_updates_for(job)`` is shown only the updates of the jobs it returns True for (the
WorkflowPlugin: jobs of workflows); when every such plugin filters, the other jobs' runs are not even kept for them.

A run given back unstarted (a batch handed to other children, a worker stopping) is not an update.
Plugins that override none of these cost nothing per job.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from chancy_lite.job import QueuedJob
from chancy_lite.outcome import Outcome, run_completion_hooks

log = logging.getLogger(__name__)

T = TypeVar("T")

HOOK_NAMES = ("on_job_starting", "on_job_completed", "on_job_updated", "on_jobs_updated_in_transaction")


class HookFailed(Exception):
    """An ``on_jobs_updated_in_transaction`` hook raised: the transaction was rolled back; try it again."""


def overrides(plugin: Any, name: str) -> bool:
    """Whether ``plugin`` has its own ``name`` hook (the base class's does nothing)."""
    from chancy_lite.plugin import Plugin

    mine = getattr(type(plugin), name, None)
    return mine is not None and mine is not getattr(Plugin, name, None)


def hooked(plugins: Iterable[Any]) -> list[Any]:
    """The plugins that override at least one job hook (the only ones copied to worker children)."""
    return [p for p in plugins if any(overrides(p, name) for name in HOOK_NAMES)]


class JobHooks:
    """The job hooks of some plugins. Coroutine hooks run on an event loop of the calling thread (one per
    thread, made on first use), or are awaited by the ``a*`` methods in a running loop."""

    def __init__(self, plugins: Iterable[Any] = (), *, worker: Any = None) -> None:
        plugins = list(plugins)
        self.plugins = plugins
        self.worker = worker
        self.starting = [p for p in plugins if overrides(p, "on_job_starting")]
        self.completing = [p for p in plugins if overrides(p, "on_job_completed")]
        self.updated = [p for p in plugins if overrides(p, "on_job_updated")]
        self.in_transaction = [p for p in plugins if overrides(p, "on_jobs_updated_in_transaction")]
        #: Whether finished runs must be shown to plugins after they are written (jobs then need keeping).
        self.wants_updates = bool(self.updated or self.in_transaction)
        watchers = [*self.in_transaction, *(p for p in self.updated if p not in self.in_transaction)]
        self._filtering = {id(p) for p in watchers if overrides(p, "wants_updates_for")}
        #: The filters of the plugins shown updates, when every one of them filters (else None: keep every job).
        self._filters = ([p.wants_updates_for for p in watchers]
                         if watchers and len(self._filtering) == len(watchers) else None)
        self._local = threading.local()

    def __bool__(self) -> bool:
        return bool(self.starting or self.completing or self.wants_updates)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to its end on this thread's hook loop (not from inside a running loop)."""
        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coroutine)

    def watches(self, job: QueuedJob) -> bool:
        """Whether a plugin wants ``job``'s update (see ``Plugin.wants_updates_for``): keep its run until written."""
        return self._filters is None or any(wants(job) for wants in self._filters)

    def _shown(self, plugin: Any, jobs: Sequence[QueuedJob]) -> Sequence[QueuedJob]:
        """The jobs whose updates ``plugin`` is shown."""
        if id(plugin) not in self._filtering:
            return jobs
        return [job for job in jobs if plugin.wants_updates_for(job)]

    def close(self) -> None:
        loop = getattr(self._local, "loop", None)
        if loop is not None:
            self._local.loop = None
            loop.close()

    # ---- before and after a run

    async def astarting(self, job: QueuedJob) -> QueuedJob:
        for plugin in self.starting:
            try:
                changed = await plugin.on_job_starting(job=job, worker=self.worker)
            except Exception:
                log.exception("plugin %s: on_job_starting failed for job %s; it runs as it was",
                              _name(plugin), job.id)
                continue
            job = changed if isinstance(changed, QueuedJob) else job
        return job

    def job_starting(self, job: QueuedJob) -> QueuedJob:
        return self.run(self.astarting(job)) if self.starting else job

    async def acompleted(self, job: QueuedJob, outcome: Outcome, error: BaseException | None) -> Outcome:
        if not self.completing:
            return outcome
        try:
            return await run_completion_hooks(self.completing, job, outcome, error, worker=self.worker)
        except Exception:
            log.exception("a plugin's on_job_completed failed for job %s; its outcome is written as it was", job.id)
            return outcome

    def job_completed(self, job: QueuedJob, outcome: Outcome, error: BaseException | None) -> Outcome:
        return self.run(self.acompleted(job, outcome, error)) if self.completing else outcome

    # ---- around the write

    def jobs_written(self, conn: Any, jobs: Sequence[QueuedJob]) -> None:
        """Inside the writing transaction: ``on_jobs_updated_in_transaction``; raises HookFailed if one raised."""
        if not (jobs and self.in_transaction):
            return
        for plugin in self.in_transaction:
            shown = self._shown(plugin, jobs)
            if not shown:
                continue
            try:
                self.run(plugin.on_jobs_updated_in_transaction(worker=self.worker, jobs=shown, cursor=conn))
            except Exception as exc:
                log.exception("plugin %s: on_jobs_updated_in_transaction failed; the write is rolled back and "
                              "tried again", _name(plugin))
                raise HookFailed(f"{_name(plugin)}.on_jobs_updated_in_transaction raised {exc!r}") from exc

    async def ajobs_updated(self, jobs: Sequence[QueuedJob]) -> None:
        for job in jobs:
            for plugin in self.updated:
                if id(plugin) in self._filtering and not plugin.wants_updates_for(job):
                    continue
                try:
                    await plugin.on_job_updated(job=job, worker=self.worker)
                except Exception:
                    log.exception("plugin %s: on_job_updated failed for job %s", _name(plugin), job.id)

    def jobs_updated(self, jobs: Sequence[QueuedJob]) -> None:
        """After the commit: ``on_job_updated`` for each job, in order."""
        if jobs and self.updated:
            self.run(self.ajobs_updated(jobs))


def _name(plugin: Any) -> str:
    try:
        return str(plugin.get_identifier())
    except Exception:
        return type(plugin).__name__

"""``Plugin``: code that runs inside every worker beside its queues, with Chancy 0.26's contract.

Where each part runs:

* in the **supervisor** (the ``Worker``'s process and event loop): ``run(worker, chancy)``, ``on_worker_started``,
  ``on_worker_stopped``, and ``cleanup`` (called by the leader's Pruner after each of its passes);
* job hooks (``on_job_starting``, ``on_job_completed``, ``on_jobs_updated_in_transaction``, ``on_job_updated``)
  where the job runs: in the **worker child** that runs it, on a copy of the plugin (pickled when the worker
  starts, so a plugin with job hooks must pickle; ``worker`` is None there), or in the supervisor for the Async
  executor and for the recovery of a dead child's jobs (``worker`` is the Worker). When and how each is called:
  :mod:`chancy_lite.hooks`; ``run_recorder()`` (chancy_lite only) is the cheap way to count runs there.

A plugin that needs others names their identifiers in ``get_dependencies()``; a worker refuses to start without
them (``ConfigurationError``). A plugin with tables of its own gives ``migrate_key()`` and ``migrations()``; they
are stepped by ``Chancy.migrate()`` under that key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import pickle
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.hooks import RunRecorder
    from chancy_lite.job import QueuedJob
    from chancy_lite.worker import Worker


log = logging.getLogger(__name__)


class PluginScope(enum.Enum):
    WORKER = "worker"


class Plugin:
    """A worker plugin. ``run`` is a long-lived coroutine started with the worker and cancelled at shutdown;
    if it raises, the worker logs the error and starts it again after a backoff."""

    _wake: asyncio.Event | None = None  # set by sleep() (a class default, so subclasses need not call __init__)

    @staticmethod
    def get_identifier() -> str:
        """A unique name, such as ``"chancy.leadership"`` (``Chancy.plugins`` is keyed by it)."""
        raise NotImplementedError

    def get_dependencies(self) -> list[str]:
        """Identifiers of plugins this one needs."""
        return []

    def get_scope(self) -> PluginScope:
        return PluginScope.WORKER

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """The plugin's loop; the default does nothing."""

    async def on_worker_started(self, *, worker: Worker) -> None:
        """Once per worker start, before any plugin's ``run`` starts, in plugin order."""

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        """Once the worker's queues have stopped (may run again if a stop is retried: keep it idempotent)."""

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        return job

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: BaseException | None = None, result: Any = None
    ) -> QueuedJob:
        return job

    async def on_job_updated(self, *, worker: Worker, job: QueuedJob) -> None:
        """After a job's update committed."""

    async def on_jobs_updated_in_transaction(self, *, worker: Worker, jobs: Sequence[QueuedJob], cursor: Any) -> None:
        """Inside the transaction that writes job updates, before it commits."""

    def wants_updates_for(self, job: QueuedJob) -> bool:
        """Whether ``on_jobs_updated_in_transaction`` and ``on_job_updated`` are shown ``job``'s update: a cheap
        filter, asked with the job as claimed (before it runs) and as stored after it. The default shows every
        job; a plugin that cares about few jobs says which, so the others cost nothing. Not in Chancy."""
        return True

    def run_recorder(self) -> RunRecorder | None:
        """chancy_lite only: an object told of every finished run where runs are written (see
        :mod:`chancy_lite.hooks`), synchronously and without building a ``QueuedJob`` per run; None (the default)
        for none. Called once per writer, on the writer's copy of the plugin."""
        return None

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Prune the plugin's own data; the Pruner calls it on the leader after each of its passes (as Chancy).
        Returns how many rows it removed, or None for a plugin with nothing to prune."""
        return None

    def migrate_key(self) -> str | None:
        """The key this plugin's schema versions are kept under, or None for a plugin without tables."""
        return None

    def migrations(self) -> list[tuple[list[str], list[str]]]:
        """The plugin's schema steps: (up, down) statement lists, version 1 first (``{p}`` is the prefix)."""
        return []

    def get_tables(self) -> list[str]:
        """Tables the plugin owns."""
        return []

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if ``wake_up()`` is called meanwhile."""
        if self._wake is None:
            self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def wake_up(self) -> None:
        """End the current ``sleep`` early."""
        if self._wake is not None:
            self._wake.set()

    @staticmethod
    async def wait_for_leader(worker: Worker) -> None:
        """Return once this worker is the leader (see ``chancy_lite.plugins.leadership``)."""
        await worker.is_leader.wait()


# ------------------------------------------------- a plugin's own tables


@contextlib.contextmanager
def missing_tables_explained(chancy: Chancy, tables: Sequence[str], advice: str) -> Iterator[None]:
    """Re-raise the ``MigrationsNeededError`` of a missing plugin table (``tables`` without the prefix) as one
    that names the table and ends with ``advice`` (how to create it); other errors pass as they are."""
    from chancy_lite import db
    from chancy_lite.errors import MigrationsNeededError

    try:
        yield
    except MigrationsNeededError as exc:
        cause = exc.__cause__
        if cause is None or db.missing_table(cause) not in {chancy.prefix + t for t in tables}:
            raise
        raise MigrationsNeededError(
            f"the database {chancy.path} has no {chancy.prefix}{tables[0]} table: {advice}"
        ) from exc


# ------------------------------------------------- copies for worker children


def pack_plugins(plugins: Iterable[Any]) -> str | None:
    """Plugins whose job hooks run in worker children, as text for a child's config (pickle, base64); a plugin
    that cannot be pickled is left out, with a warning. None when there is nothing to copy."""
    kept = []
    for plugin in plugins:
        try:
            pickle.dumps(plugin)
        except Exception as exc:
            log.warning("plugin %s cannot be copied to worker children (%s): its on_job_completed will not run "
                        "there", plugin.get_identifier(), exc)
            continue
        kept.append(plugin)
    return base64.b64encode(pickle.dumps(kept)).decode() if kept else None


def unpack_plugins(text: str | None) -> list[Any]:
    """The plugins ``pack_plugins`` wrote (in a child); an empty list if they cannot be loaded here (logged)."""
    if not text:
        return []
    try:
        return list(pickle.loads(base64.b64decode(text)))
    except Exception:
        log.exception("cannot load the plugins' job hooks in this child; they will not run here")
        return []

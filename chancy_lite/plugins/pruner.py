"""``Pruner``: deletes finished jobs that match a rule, so the file does not grow without bound.

It is a default plugin: ``Chancy(path)`` prunes succeeded and failed jobs older
than a day unless ``no_default_plugins=True`` or another ``Pruner`` is given::

    Chancy(path, plugins=[Pruner((Pruner.Rules.Age() > 3600) | (Pruner.Rules.Queue() == "bulk"))])

Rules are ``chancy_lite.rule.JobRules`` (also ``Pruner.Rules``): ``Age()`` (seconds since the job was created;
only jobs that also finished that long ago are pruned), ``Queue()``, ``State()``, ``Job()`` (the function path),
``CreatedAt()``, ``ScheduledAt()``, ``ID()``, ``Priority()``, ``Attempts()``, compared with ``== != < <= > >=`` or
``.contains()`` and combined with ``&`` and ``|`` (which bind tighter than the comparisons: parenthesise each
comparison). Only finished jobs are ever pruned, whatever the rule.

After each pass it calls every plugin's ``cleanup(chancy)``, as Chancy, so plugins prune their own tables (the
WorkflowPlugin deletes finished workflows matching its ``pruning_rule``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chancy_lite.plugin import Plugin
from chancy_lite.rule import Condition, JobRules, as_tree

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)

Rules = JobRules  # Pruner.Rules, as Chancy: the fields of chancy_lite.rule


class Pruner(Plugin):
    """Delete up to ``maximum_to_prune`` finished jobs matching ``rule`` every ``poll_interval`` seconds."""

    Rules = Rules

    def __init__(
        self, rule: Condition | None = None, *, maximum_to_prune: int = 10_000, poll_interval: float = 60
    ) -> None:
        if not poll_interval > 0:
            raise ValueError("poll_interval must be > 0 seconds")
        if not (isinstance(maximum_to_prune, int) and maximum_to_prune >= 1):
            raise ValueError("maximum_to_prune must be an integer >= 1")
        self.rule = as_tree(rule if rule is not None else Rules.Age() > 86_400, "Pruner")
        self.maximum_to_prune = maximum_to_prune
        self.poll_interval = poll_interval

    @staticmethod
    def get_identifier() -> str:
        return "chancy.pruner"

    def prune(self, chancy: Chancy) -> int:
        """Prune once, now; returns how many jobs were deleted."""
        return chancy.sync_run_store(chancy.store.prune_jobs, self.rule, now=chancy.now(), limit=self.maximum_to_prune)

    def get_dependencies(self) -> list[str]:
        return ["chancy.leadership"]

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.sleep(self.poll_interval)
            await self.wait_for_leader(worker)  # one worker prunes, not all of them
            deleted = await worker.db(chancy.store.prune_jobs, self.rule, now=chancy.now(),
                                       limit=self.maximum_to_prune)
            if deleted:
                log.info("pruned %d finished jobs", deleted)
            await self.cleanup_plugins(chancy)

    @staticmethod
    async def cleanup_plugins(chancy: Chancy) -> dict[str, int]:
        """Call every plugin's ``cleanup(chancy)`` (as Chancy's Pruner does after each pass), so plugins prune
        their own tables (the WorkflowPlugin: finished workflows). Returns the rows each removed; a plugin whose
        cleanup fails is logged and the others still run."""
        removed: dict[str, int] = {}
        for identifier, plugin in chancy.plugins.items():
            try:
                rows = await plugin.cleanup(chancy)
            except Exception:
                log.exception("plugin %s: cleanup failed", identifier)
                continue
            if rows is not None:
                removed[identifier] = rows
                if rows:
                    log.info("plugin %s removed %d row(s)", identifier, rows)
        return removed

"""``Reprioritize``: raise the priority of waiting jobs that match a rule, once per ``check_interval``.

As Chancy 0.26 (``chancy.plugins.reprioritize``): on the leader, every ``check_interval`` seconds, the
priority of each pending or retrying job matching ``rule`` goes up by ``priority_increase``, walking the jobs in
id order ``batch_size`` at a time up to the highest id when the pass began, so each job is raised at most once a
pass (0.25 could loop forever). Typical use: ageing, so old low-priority jobs are not starved::

    Reprioritize((JobRules.Age() > 600) & (JobRules.Queue() == "bulk"), check_interval=60)
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


class Reprioritize(Plugin):
    Rules = JobRules

    def __init__(
        self, rule: Condition, *, check_interval: float = 300, priority_increase: int = 1, batch_size: int = 1000
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if check_interval <= 0:
            raise ValueError("check_interval must be > 0 seconds")
        as_tree(rule, "Reprioritize")
        self.rule = rule
        self.check_interval = check_interval
        self.priority_increase = priority_increase
        self.batch_size = batch_size

    @staticmethod
    def get_identifier() -> str:
        return "chancy.reprioritize"

    def get_dependencies(self) -> list[str]:
        return ["chancy.leadership"]

    def reprioritize_jobs(self, chancy: Chancy) -> int:
        """One pass now; returns how many jobs were raised."""
        return chancy.sync_run_store(chancy.store.reprioritize_jobs, self.rule.rule, now=chancy.now(),
                                     increase=self.priority_increase, batch_size=self.batch_size)

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.sleep(self.check_interval)
            await self.wait_for_leader(worker)
            raised = await worker.db(chancy.store.reprioritize_jobs, self.rule.rule, now=chancy.now(),
                                     increase=self.priority_increase, batch_size=self.batch_size)
            if raised:
                log.info("raised the priority of %d jobs", raised)

"""``Recovery``: on the leader, every ``poll_interval`` seconds, running jobs whose holder is gone are recovered.

Every worker already recovers at once the jobs of its own children that die, and on start and every heartbeat
the jobs of dead holders on its host or of expired workers elsewhere (``chancy_lite.services.rescuer``); this
plugin is Chancy's backstop on top. **Better than Chancy:** a recovered job that had started counts that
attempt, instead of getting one more (``max_attempts`` is never raised), so a job that kills its worker every
time stops after ``max_attempts``; a job claimed but not started waits again without losing an attempt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chancy_lite.plugin import Plugin

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker


class Recovery(Plugin):
    def __init__(self, poll_interval: float = 60) -> None:
        if not poll_interval > 0:
            raise ValueError("poll_interval must be > 0 seconds")
        self.poll_interval = poll_interval

    @staticmethod
    def get_identifier() -> str:
        return "chancy.recovery"

    def get_dependencies(self) -> list[str]:
        return ["chancy.leadership"]

    @classmethod
    async def recover(cls, worker: Worker, chancy: Chancy) -> int:
        """One recovery pass now; returns how many jobs were recovered."""
        return await worker.rescuer.recover_orphans(chancy.now())

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.sleep(self.poll_interval)
            await self.wait_for_leader(worker)
            await self.recover(worker, chancy)

"""``Leadership``: exactly one live worker per file is the leader; leader-only plugins act only there.

A lease in the ``{p}leader`` table (one row): the leader renews it every ``poll_interval`` seconds for
``timeout`` seconds. A stopped leader gives it up at once; a killed one's lease expires after ``timeout`` and
the next worker to poll takes it. Renewal only extends the worker's own lease (Chancy 0.26's split-brain fix).
As Chancy, a worker's ``is_leader`` is an ``asyncio.Event``; the hub emits ``leadership.gained``,
``leadership.renewed`` and ``leadership.lost``. **Better than Chancy:** a worker tries at once when it starts,
not after its first ``poll_interval``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from chancy_lite.plugin import Plugin

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)


class Leadership(Plugin):
    """Elect one leader among the live workers of a file. ``poll_interval`` and ``timeout`` in seconds."""

    def __init__(self, poll_interval: float = 60, timeout: float = 120) -> None:
        if not poll_interval > 0:
            raise ValueError("poll_interval must be > 0 seconds")
        if timeout < poll_interval:
            raise ValueError("timeout must be >= poll_interval (the leader renews its lease every poll_interval)")
        self.poll_interval = poll_interval
        self.timeout = timeout

    @staticmethod
    def get_identifier() -> str:
        return "chancy.leadership"

    async def tick(self, worker: Worker, now: int) -> bool:
        """One election step at ``now`` (µs): take or renew the lease; returns whether this worker leads."""
        chancy = worker.chancy
        leader = await worker.db(chancy.store.elect_leader, worker.worker_id, now=now,
                                 expires_at=now + int(self.timeout * 1_000_000))
        leading = leader == worker.worker_id
        was = worker.is_leader.is_set()
        if leading:
            worker.is_leader.set()
            worker.hub.emit("leadership.renewed" if was else "leadership.gained", {"worker_id": worker.worker_id})
            if not was:
                log.info("worker %s is now the leader", worker.worker_id)
        elif was:
            worker.is_leader.clear()
            worker.hub.emit("leadership.lost", {"worker_id": worker.worker_id})
            log.warning("worker %s lost the leadership to %s", worker.worker_id, leader)
        return leading

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.tick(worker, chancy.now())
            await self.sleep(self.poll_interval)

    async def on_worker_stopped(self, *, worker: Worker) -> None:
        """A stopping leader gives its lease up, so the next worker takes over at its next poll."""
        if worker.is_leader.is_set():
            worker.is_leader.clear()
            with contextlib.suppress(Exception):
                await worker.chancy.run_store(worker.chancy.store.release_leader, worker.worker_id)
            worker.hub.emit("leadership.lost", {"worker_id": worker.worker_id})


class ImmediateLeadership(Leadership):
    """For tests: this worker leads from the start, whatever other workers hold (same identifier)."""

    def __init__(self, poll_interval: float = 60, timeout: float = 120) -> None:
        super().__init__(poll_interval, timeout)

    async def on_worker_started(self, *, worker: Worker) -> None:
        worker.is_leader.set()
        worker.hub.emit("leadership.gained", {"worker_id": worker.worker_id})

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        return None

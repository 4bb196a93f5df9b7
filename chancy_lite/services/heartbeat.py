"""``Heartbeat``: this worker's row in the workers table, and the removal of rows whose heartbeat expired."""

from __future__ import annotations

import logging
import os

from chancy_lite import proc
from chancy_lite.services.base import Service

log = logging.getLogger(__name__)


class Heartbeat(Service):
    """Writes the worker's row (tags, queues served, pid and its start time) with ``expires_at = now +
    heartbeat_timeout``; removes rows of workers that stopped beating (killed, or asleep: a sleeping worker
    writes its row again when it wakes)."""

    name = "heartbeat"

    async def beat(self, now: int) -> None:
        worker = self.worker
        pid = os.getpid()
        await worker.db(
            worker.chancy.store.upsert_worker, worker_id=worker.worker_id, hostname=proc.HOSTNAME, pid=pid,
            pid_start=proc.start_time(pid), tags=sorted(worker.worker_tags()), queues=sorted(worker.executors),
            now=now, expires_at=now + int(worker.heartbeat_timeout * 1_000_000),
        )

    async def tick(self, now: int) -> float | None:
        await self.beat(now)
        for worker_id in await self.worker.db(self.worker.chancy.store.delete_expired_workers, now=now):
            log.info("removed the row of worker %s: no heartbeat for over its heartbeat_timeout", worker_id)
        return None

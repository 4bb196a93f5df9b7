"""``Rescuer``: running jobs whose holder is gone go back to wait or fail, from what the holder's journal says.

A holder is a process recorded on running rows (worker id, pid, pid start time). It is gone when it is a dead
pid on this host (a zombie counts as dead, a stopped process as alive; a reused pid is told apart by its start
time), or when its worker runs on another host and its heartbeat expired. Its journal (see
:mod:`chancy_lite.journal`) says which of its jobs finished (their outcome is written), which started (the
attempt counts: retrying or failed) and which never started (they wait again, the attempt not counted).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from chancy_lite import journal, proc, wake
from chancy_lite.job import Limit, QueuedJob
from chancy_lite.services.base import Service
from chancy_lite.utils import from_micros

log = logging.getLogger(__name__)


class Rescuer(Service):
    name = "rescuer"

    async def tick(self, now: int) -> float | None:
        await self.recover_orphans(now)
        return None

    async def recover_orphans(self, now: int) -> int:
        """Recover jobs held by processes that are gone: dead pids on this host, expired workers elsewhere.
        Returns how many jobs were recovered."""
        count = 0
        worker = self.worker
        mine = {pid for executor in worker.executors.values() for pid in executor.held_pids()}
        mine.add(os.getpid())
        for holder in await worker.db(worker.chancy.store.list_holders):
            if holder.worker_id == worker.worker_id and holder.pid in mine:
                continue
            if holder.hostname in (None, proc.HOSTNAME):
                if proc.is_alive(holder.pid, holder.pid_start):
                    continue
                how = "its process is gone"
            elif holder.expires_at is not None and holder.expires_at >= now:
                continue
            else:
                how = f"its worker on {holder.hostname} stopped sending heartbeats"
            reason = f"the worker process running this job died ({how}, pid {holder.pid})"

            def why(job: QueuedJob, reason: str = reason) -> str:
                return reason

            for job, state in await self.recover(holder.worker_id, holder.pid, why, now):
                count += 1
                log.warning("recovered orphaned job %s (%s): now %s", job.id, job.func, state)
        return count

    async def recover_process(self, pid: int | None, how: str, grace: float, now: int) -> None:
        """Recover the jobs a dead process of this worker held (``how`` it ended), counting each attempt; a
        job past its TIME limit is recorded as timed out."""

        def reason(job: QueuedJob) -> str:
            limit = job.limit(Limit.Type.TIME)
            if limit and job.started_at is not None:
                ran = (from_micros(now) - job.started_at).total_seconds()
                if ran >= limit:
                    return (
                        f"timed out: the job ran {ran:.1f} s, past its time limit of {limit} s, and did not stop "
                        f"within the {grace} s grace period; its worker process was killed ({how})"
                    )
            return f"the worker process running this job died ({how}, pid {pid})"

        for job, state in await self.recover(self.worker.worker_id, pid, reason, now):
            log.warning("recovered job %s (%s) from dead process %s: now %s", job.id, job.func, pid, state)

    async def recover(
        self, worker_id: str, pid: int | None, reason: Callable[[QueuedJob], str], now: int
    ) -> list[tuple[QueuedJob, str]]:
        """Recover one dead holder's jobs from its journals, then remove them."""
        chancy = self.worker.chancy
        paths = journal.find(wake.directory_for(chancy.path), worker_id, pid) if chancy.path != ":memory:" else []
        records = [journal.read(path) for path in paths]
        started: set[str] | None = None
        outcomes = []
        if paths and all(r is not None for r in records):
            started = set()
            for ids, finished in filter(None, records):
                started |= ids
                outcomes.extend(finished)
        hooks = self.worker.hooks
        written: list[QueuedJob] = []

        def in_transaction(conn: object, jobs: list[QueuedJob]) -> None:
            written[:] = jobs  # the transaction may run again: keep its last, committed, run
            hooks.views_written(conn, jobs, now=now, prefix=chancy.prefix, worker_id=worker_id)
            hooks.jobs_written(conn, jobs)

        recovered = await self.worker.db(
            chancy.store.recover_jobs, worker_id, pid, reason, now=now, started=started, outcomes=outcomes,
            written=in_transaction if hooks.wants_runs else None,
        )
        journal.remove(paths)
        await hooks.ajobs_updated(written)
        return recovered

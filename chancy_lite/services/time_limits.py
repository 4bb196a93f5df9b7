"""``TimeLimits``: the supervisor's backstop for TIME limits on the Process executor.

A child interrupts its own job at the limit and kills itself after ``timeout_grace`` (a watchdog thread).
Should both fail (the watchdog disabled, a process stuck in the kernel), this kills the child once the job is
past its limit and twice the grace period; the Rescuer then records the attempt as timed out. Only jobs that
have a TIME limit and have started (``started_at`` set) are ever counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

from chancy_lite.services.base import Service

log = logging.getLogger(__name__)


class TimeLimits(Service):
    name = "time limits"

    async def tick(self, now: int) -> float | None:
        worker = self.worker
        holders = {pid: ex for ex in worker.executors.values() if ex.kills_children for pid in ex.held_pids()}
        if not holders:
            return None
        for job in await worker.db(worker.chancy.store.time_limited_jobs, worker.worker_id):
            executor = holders.get(job.holder_pid)
            if executor is None:
                continue
            overdue = (now - job.started_at) / 1e6 - job.limit - 2 * executor.timeout_grace
            if overdue > 0:
                log.warning("job %s is %.1f s past its time limit and grace period; killing its process %s",
                            job.id, overdue, job.holder_pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(job.holder_pid, signal.SIGKILL)
        return None

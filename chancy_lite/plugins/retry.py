"""``RetryPlugin``: a failed job that has attempts left is retried after a backoff, not at once.

As Chancy (``chancy.plugins.retry``): settings come from ``meta["retry_settings"]`` (never modified):
``backoff`` (1 s), ``backoff_factor`` (2.0), ``backoff_limit`` (300 s), ``backoff_jitter`` ([1, 5] s), and the
retry is due at ``now + min(backoff * backoff_factor ** (attempts - 1), backoff_limit) + uniform(*jitter)``
(``attempts`` counting the one that just failed; the jitter is added after the cap, as Chancy does). A cancelled
job is never retried. **Better than Chancy:** the worker sleeps until the retry is due, so it starts on time
rather than at the next poll.

Its hook runs where the job ran (a worker child); the plugin object is copied there with ``pickle``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chancy_lite.job import QueuedJob
from chancy_lite.plugin import Plugin
from chancy_lite.utils import aware, utcnow

if TYPE_CHECKING:
    from chancy_lite.worker import Worker

DEFAULTS: dict[str, Any] = {"backoff": 1, "backoff_factor": 2.0, "backoff_limit": 300, "backoff_jitter": [1, 5]}


class RetryPlugin(Plugin):
    """``clock`` (tests): a callable returning the current datetime (naive = local time); default: now."""

    def __init__(self, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.clock = clock

    @staticmethod
    def get_identifier() -> str:
        return "chancy.retry_plugin"

    @staticmethod
    def calculate_next_run(job: QueuedJob, now: dt.datetime, rand: Callable[[float, float], float] = random.uniform
                           ) -> dt.datetime:
        """When a retry of ``job`` (its ``attempts`` counting the failed run) is due."""
        settings = {**DEFAULTS, **(job.meta.get("retry_settings") or {})}
        delay = min(float(settings["backoff"]) * float(settings["backoff_factor"]) ** (job.attempts - 1),
                    float(settings["backoff_limit"]))
        low, high = (float(x) for x in settings["backoff_jitter"])
        return now + dt.timedelta(seconds=delay + rand(low, high))

    async def on_job_completed(
        self, *, worker: Worker | None, job: QueuedJob, exc: BaseException | None = None, result: Any = None
    ) -> QueuedJob:
        if exc is None or job.state not in (QueuedJob.State.FAILED, QueuedJob.State.RETRYING):
            return job
        if job.attempts >= job.max_attempts:
            return job
        now = aware(self.clock()) if self.clock is not None else utcnow()
        return dataclasses.replace(job, state=QueuedJob.State.RETRYING, completed_at=None,
                                   scheduled_at=self.calculate_next_run(job, now))

"""Retrying the worker's own database work after transient errors (a busy or locked file, a brief I/O error).

One policy for every maintenance loop, as Chancy 0.26 (``chancy/retry.py`` and ``Worker(backoff_initial=…,
backoff_max=…, backoff_max_retries=…)``): after the n-th consecutive failure (n from 0) a loop waits
``uniform(0, min(backoff_initial * 2**n, backoff_max))`` seconds ("full jitter"), forever when
``backoff_max_retries`` is None, else until that many consecutive retries failed. Only transient errors
(:func:`chancy_lite.db.is_transient`) are retried; any other error propagates at once. The user's job is
never retried here: that is the job's own ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable

from chancy_lite import db

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: ``initial`` and ``maximum`` in seconds; ``max_retries`` None = forever."""

    initial: float = 1.0
    maximum: float = 60.0
    max_retries: int | None = None

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.maximum >= self.initial):
            raise ValueError("backoff_initial must be > 0 and backoff_max >= backoff_initial (seconds)")
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("backoff_max_retries must be None (retry forever) or >= 0")

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` consecutive failures before this one (0 for the first)."""
        cap = min(self.initial * 2 ** min(failures, 62), self.maximum)
        return rand() * cap


class DatabaseRetry:
    """Retry state of one maintenance loop (Chancy 0.26 ``DatabaseRetry``).

    ``await retry.wait(error)`` after a failure: it re-raises ``error`` unless it is transient and retries are
    left, else logs it and sleeps the backoff. Call ``reset()`` after database work that succeeded.
    """

    def __init__(
        self, name: str, *, calculate_delay: Callable[[int], float], max_retries: int | None,
        log: logging.Logger = log,
    ) -> None:
        self.name = name
        self.calculate_delay = calculate_delay
        self.max_retries = max_retries
        self.log = log
        self.failures = 0

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        return isinstance(error, Exception) and db.is_transient(error)

    def reset(self) -> None:
        self.failures = 0

    async def wait(self, error: BaseException) -> None:
        """Sleep before the next try, or re-raise ``error`` (not transient, or out of retries)."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        if not self.is_transient(error):
            raise error
        self.failures += 1
        if self.max_retries is not None and self.failures > self.max_retries:
            raise error
        delay = self.calculate_delay(self.failures - 1)
        self.log.warning("%s: database busy or unavailable (%s); retrying in %.2f s", self.name, error, delay)
        await asyncio.sleep(delay)

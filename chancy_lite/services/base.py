"""``Service``: one duty of the supervisor, done by ``tick(now)`` and repeated by ``run()``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)


class Service:
    """A supervisor duty. ``tick(now)`` (``now`` in µs since the epoch) does it once and may return how many
    seconds until it wants its next tick; ``run()`` repeats it every ``interval`` seconds.

    Transient database errors are retried with the worker's backoff policy (``Worker.database_retry``); any
    other error is logged and the service carries on at its next tick. Should a transient error outlast
    ``backoff_max_retries``, the error ends the service and the worker stops (``wait_for_shutdown`` raises it).
    """

    name = "service"

    def __init__(self, worker: Worker, interval: float) -> None:
        self.worker = worker
        self.interval = interval

    async def tick(self, now: int) -> float | None:
        raise NotImplementedError

    async def wait(self, seconds: float) -> None:
        """Sleep until the next tick is due (a service may end it early)."""
        await asyncio.sleep(seconds)

    async def run(self) -> None:
        retry = self.worker.database_retry(self.name)
        delay: float = self.interval
        while True:
            await self.wait(delay)
            try:
                next_in = await self.tick(self.worker.chancy.now())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not retry.is_transient(exc):
                    log.exception("%s: a step failed; it runs again in %.1f s", self.name, self.interval)
                    delay = self.interval
                    continue
                await retry.wait(exc)  # re-raises once out of retries
                delay = 0.0
                continue
            retry.reset()
            delay = self.interval if next_in is None else max(0.0, next_in)

    async def close(self) -> None:
        """Release what the service holds (called once, when the worker stops)."""

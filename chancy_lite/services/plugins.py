"""``PluginRunner``: each plugin's ``run(worker, chancy)`` loop, restarted with backoff if it fails, and
cancelled when the worker stops. (A plugin's ``cleanup`` is called by the Pruner after each pass, as Chancy.)"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from chancy_lite.services.base import Service

if TYPE_CHECKING:
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)


class PluginRunner(Service):
    """Runs the app's plugins. A tick restarts any plugin whose loop ended with an error once its backoff passed;
    ``run()`` starts them all and ticks every ``interval``."""

    name = "plugins"

    def __init__(self, worker: Worker, interval: float = 1.0) -> None:
        super().__init__(worker, interval)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}
        self._restart_at: dict[str, int] = {}

    @property
    def plugins(self) -> list[Any]:
        return list(self.worker.chancy.plugins.values())

    def start_plugin(self, plugin: Any) -> None:
        name = plugin.get_identifier()
        self.tasks[name] = asyncio.create_task(self._run_one(plugin), name=f"plugin {name}")

    async def _run_one(self, plugin: Any) -> None:
        await plugin.run(self.worker, self.worker.chancy)

    async def tick(self, now: int) -> float | None:
        for plugin in self.plugins:
            name = plugin.get_identifier()
            task = self.tasks.get(name)
            if task is None:
                if now >= self._restart_at.get(name, 0):
                    self.start_plugin(plugin)
                continue
            if not task.done():
                continue
            del self.tasks[name]
            error = None if task.cancelled() else task.exception()
            if error is None:
                self._restart_at[name] = 2**62  # it returned: it has nothing more to do
                continue
            failures = self._failures[name] = self._failures.get(name, 0) + 1
            delay = self.worker.backoff.delay(failures - 1, rand=lambda: 1.0)
            self._restart_at[name] = now + int(delay * 1_000_000)
            log.error("plugin %s failed; restarting it in %.1f s", name, delay, exc_info=error)
        return None

    async def run(self) -> None:
        await self.tick(self.worker.chancy.now())
        await super().run()

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

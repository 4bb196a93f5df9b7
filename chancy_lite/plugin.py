"""``Plugin``: code that runs inside every worker beside its queues (pruning, and more to come)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker


class Plugin:
    """A worker plugin. ``run`` is a long-lived coroutine started with the worker and cancelled at shutdown;
    if it raises, the worker logs the error and starts it again after a pause."""

    @staticmethod
    def get_identifier() -> str:
        raise NotImplementedError

    def get_dependencies(self) -> list[str]:
        """Identifiers of plugins this one needs."""
        return []

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        """The plugin's loop; the default does nothing."""

    async def cleanup(self, chancy: Chancy) -> None:
        """Called once when the worker stops."""

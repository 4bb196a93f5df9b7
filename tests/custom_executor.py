"""An executor defined outside chancy_lite, as users may write one (declared by its import path)."""

from __future__ import annotations

from chancy_lite.executors.thread import ThreadedExecutor


class CustomExecutor(ThreadedExecutor):
    """Threads, under another name."""


NOT_AN_EXECUTOR = object()


class BrokenInit(ThreadedExecutor):
    """An executor whose constructor fails (a bad option, a missing resource)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot build this executor")


class BrokenStart(ThreadedExecutor):
    """An executor whose start() fails."""

    async def start(self) -> None:
        raise RuntimeError("cannot start this executor")


class StartHangs(ThreadedExecutor):
    """An executor whose start() never returns."""

    async def start(self) -> None:
        import asyncio

        await asyncio.sleep(3600)

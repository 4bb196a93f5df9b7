"""An executor defined outside chancy_lite, as users may write one (declared by its import path)."""

from __future__ import annotations

from chancy_lite.executors.thread import ThreadedExecutor


class CustomExecutor(ThreadedExecutor):
    """Threads, under another name."""


NOT_AN_EXECUTOR = object()

"""Executors run a queue's jobs for a worker: processes (default), threads, or an event loop."""

from chancy_lite.executors.base import Executor

__all__ = ["Executor"]

"""Job functions for the worker tests (importable by spawned children)."""

from __future__ import annotations

import os
import time

from chancy_lite import QueuedJob


def noop() -> None:
    pass


def record(*, path: str, value: str = "x") -> None:
    with open(path, "a") as fh:
        fh.write(value + "\n")


def fail(*, message: str = "boom") -> None:
    raise ValueError(message)


def sleep(*, seconds: float) -> None:
    time.sleep(seconds)


def with_context(*, job_info: QueuedJob, other: int = 0) -> None:
    job_info.meta["seen_id"] = job_info.id
    job_info.meta["attempts"] = job_info.attempts


def die() -> None:
    os._exit(3)


async def async_sleep(*, seconds: float) -> str:
    import asyncio

    await asyncio.sleep(seconds)
    return "ok"

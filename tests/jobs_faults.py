"""Job functions for tests/acceptance/test_faults.py and tests/acceptance/test_fuzz.py (importable by spawned
children)."""

from __future__ import annotations

import os
import time
from typing import Any

from chancy_lite import QueuedJob

# The context parameter of ``echo``: a name no generated kwarg uses.
ECHO_CONTEXT = "chancy_fuzz_context"


def echo(*, chancy_fuzz_context: QueuedJob, **kwargs: Any) -> None:
    """Copy the job's kwargs into its meta, so a test can see what the worker received."""
    chancy_fuzz_context.meta["echo"] = kwargs


def gated(*, path: str, gate: str, blob: int = 0, ctx: QueuedJob) -> None:
    """Write 'pid id' to ``path`` (one line per run), wait for the file ``gate`` to exist, then return with
    ``blob`` bytes of meta (a big result to write when the disk is full)."""
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()} {ctx.id}\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} was never opened")
        time.sleep(0.01)
    if blob:
        ctx.meta["blob"] = "x" * blob


def deep_meta(*, depth: int, ctx: QueuedJob) -> None:
    """Leave meta nested ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    ctx.meta["deep"] = value


def circular_meta(*, ctx: QueuedJob) -> None:
    """Leave meta that refers to itself."""
    loop: dict[str, Any] = {}
    loop["self"] = loop
    ctx.meta["loop"] = loop

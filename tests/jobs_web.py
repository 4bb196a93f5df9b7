"""Job functions for the dashboard's browser tests (run by real workers, imported by name)."""

from __future__ import annotations

import os
import time

from chancy_lite import QueuedJob


def fail_until_fixed(*, marker: str) -> str:
    """Fails until the file ``marker`` exists (a flaky dependency that someone then fixes)."""
    if not os.path.exists(marker):
        raise ConnectionError(f"the report server is down (no {marker})")
    return "done"


def quick(*, n: int = 0) -> int:
    return n


def work_with_progress(*, seconds: float, context: QueuedJob) -> None:
    """Runs ``seconds``, reporting its progress about four times a second (``QueuedJob.progress``)."""
    steps = max(1, int(seconds * 4))
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        context.progress(step, steps, f"step {step} of {steps}")

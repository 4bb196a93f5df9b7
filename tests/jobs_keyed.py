"""Job functions for the per-key limit tests (importable by spawned children)."""

from __future__ import annotations

import os
import time

from chancy_lite import QueuedJob


def span(*, path: str, seconds: float, ctx: QueuedJob) -> None:
    """Sleep ``seconds``, then append 'pid start end key' (wall-clock seconds; '-' for no key) to ``path`` in one
    write."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()} {start:.6f} {end:.6f} {ctx.limit_key or '-'}\n")

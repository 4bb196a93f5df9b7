"""Job functions for ``scripts/bench.py`` (chancy_lite side).

The benchmark's worker runner is started as ``python scripts/bench_chancy_worker.py``, so
``scripts/`` is ``sys.path[0]`` there and in the children it spawns (they inherit its
``sys.path``): these functions are importable as ``bench_jobs.<name>``.
"""

from __future__ import annotations

import time

from chancy_lite import QueuedJob


def noop() -> None:
    """Does nothing: measures the queue's own cost per job."""


def stamp(*, context: QueuedJob) -> None:
    """Records when it started (``time.time()``) in its meta, which the worker saves when the job ends."""
    context.meta["started"] = time.time()


def sleep10() -> None:
    """Sleeps 10 ms: an I/O-bound job, for the parallel drain."""
    time.sleep(0.01)

"""Job functions for the dashboard's browser tests (run by real workers, imported by name)."""

from __future__ import annotations

import json
import os
import time

import apsw

from chancy_lite import QueuedJob


def fail_until_fixed(*, marker: str) -> str:
    """Fails until the file ``marker`` exists (a flaky dependency that someone then fixes)."""
    if not os.path.exists(marker):
        raise ConnectionError(f"the report server is down (no {marker})")
    return "done"


def quick(*, n: int = 0) -> int:
    return n


def work_with_progress(*, db: str, seconds: float, context: QueuedJob) -> None:
    """Runs ``seconds``, saving ``meta["progress"]`` = {"done", "total", "message"} on its row about four times a
    second, as ``QueuedJob.progress()`` stores it (written here with a plain UPDATE, in the tests only)."""
    steps = max(1, int(seconds * 4))
    conn = apsw.Connection(db)
    conn.set_busy_timeout(5000)
    try:
        for step in range(1, steps + 1):
            time.sleep(seconds / steps)
            progress = {"done": step, "total": steps, "message": f"step {step} of {steps}"}
            context.meta["progress"] = progress
            conn.execute("UPDATE chancy_jobs SET meta = json_set(meta, '$.progress', json(?)) WHERE id = ?",
                         (json.dumps(progress), str(context.id)))
    finally:
        conn.close()

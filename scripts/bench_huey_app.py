"""The huey side of ``scripts/bench.py``: a SqliteHuey instance and its tasks.

``huey_consumer bench_huey_app.huey`` imports this module (with ``scripts/`` on
PYTHONPATH); the file comes from ``BENCH_HUEY_DB``. huey uses Python's ``sqlite3`` on
its own file, never on chancy_lite's.

Every task returns a value so that huey stores a result for it: the benchmark counts
results (``huey.result_count()``) to know how many tasks finished.
"""

from __future__ import annotations

import os
import time

from huey import SqliteHuey

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_HUEY_DB", "bench-huey.db"))


def use_file(path: str) -> None:
    """Point this process's huey instance at another file (the parent uses a fresh file per phase)."""
    os.environ["BENCH_HUEY_DB"] = path
    huey.storage.close()
    huey.storage_kwargs["filename"] = path
    huey.storage = huey.create_storage()


@huey.task()
def noop() -> float:
    """Returns when it ran: the stored results give the drain's first and last completion times."""
    return time.time()


@huey.task()
def stamp() -> float:
    return time.time()


@huey.task()
def sleep10() -> int:
    time.sleep(0.01)
    return 1

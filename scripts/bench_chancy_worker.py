"""Runs one chancy_lite Worker on a file until SIGTERM: ``python scripts/bench_chancy_worker.py PATH``.

Started by ``scripts/bench.py``, which declares the queues beforehand. Run as a script,
``scripts/`` is ``sys.path[0]``, and the children inherit it, so ``bench_jobs`` imports.
Prints ``imported <time.time()> <time its imports began>`` once chancy_lite is imported, and ``started
<time.time()>`` once ``Worker.start()`` returned (the bench splits the start-up with them).
"""

from __future__ import annotations

import time

IMPORTING = time.time()

import asyncio  # noqa: E402
import sys  # noqa: E402

from chancy_lite import Chancy, Worker  # noqa: E402


async def main(path: str) -> None:
    print(f"imported {time.time()} {IMPORTING}", flush=True)
    async with Chancy(path) as chancy, Worker(chancy, shutdown_timeout=10) as worker:
        print(f"started {time.time()}", flush=True)
        await worker.wait_for_shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

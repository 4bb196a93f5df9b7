"""Runs one chancy_lite Worker on a file until SIGTERM: ``python scripts/bench_chancy_worker.py PATH [OPTION]``.

Started by ``scripts/bench.py``, which declares the queues beforehand. Run as a script,
``scripts/`` is ``sys.path[0]``, and the children inherit it, so ``bench_jobs`` imports.
``--without-metrics``: the default plugins less Metrics (to measure what recording costs).
"""

from __future__ import annotations

import asyncio
import sys

from chancy_lite import Chancy, Worker


def app(path: str, *, metrics: bool = True) -> Chancy:
    """The app the benchmark uses: the default plugins, or those less Metrics."""
    if metrics:
        return Chancy(path)
    from chancy_lite.plugins.leadership import Leadership
    from chancy_lite.plugins.pruner import Pruner
    from chancy_lite.plugins.recovery import Recovery

    return Chancy(path, plugins=[Leadership(), Pruner(), Recovery()], no_default_plugins=True)


async def main(path: str, metrics: bool) -> None:
    async with app(path, metrics=metrics) as chancy, Worker(chancy, shutdown_timeout=10) as worker:
        await worker.wait_for_shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--without-metrics" not in sys.argv[2:]))

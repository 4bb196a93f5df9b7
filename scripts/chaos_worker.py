"""One worker supervisor for ``scripts/chaos.py``: ``chancy-lite worker start`` with a shorter heartbeat.

``python scripts/chaos_worker.py DB [--heartbeat-interval S] [--shutdown-timeout S]`` runs a
``Worker`` with its signal handlers (SIGTERM drains, a second one stops at once) on the queues
already declared in DB, and logs warnings (child exits, recovered jobs, dropped stale results)
to stderr. The heartbeat interval is also how often a live supervisor looks for jobs held by
processes that died with nobody left to recover them, so the chaos run uses a short one.

Started as a script, its directory (``scripts/``) is ``sys.path[0]``, and the children it spawns
inherit its ``sys.path``: they import the jobs as ``chaos_jobs.<name>``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from chancy_lite import Chancy
from chancy_lite.worker import Worker


async def serve(args: argparse.Namespace) -> None:
    async with Chancy(args.db) as chancy:
        worker = Worker(
            chancy, heartbeat_poll_interval=args.heartbeat_interval, shutdown_timeout=args.shutdown_timeout,
        )
        async with worker:
            print(f"ready {os.getpid()}", flush=True)
            await worker.wait_for_shutdown()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chaos_worker")
    parser.add_argument("db")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--shutdown-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format=f"%(asctime)s %(levelname)s [{os.getpid()}] %(message)s"
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A worker supervisor as its own process for tests/test_faults.py: ``tests.worker_main`` with the knobs the
fault tests turn (busy timeout, heartbeat interval and timeout, worker id).

``python -m tests.fault_worker DB_PATH [--queue name:concurrency]... [--busy-timeout S] [--heartbeat-timeout S]
[--heartbeat-poll-interval S] [--worker-id ID]`` declares the queues on an already migrated file, runs a
``Worker`` with its signal handlers, prints ``ready`` once started, and exits 0 after an orderly shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from chancy_lite import Chancy
from chancy_lite.worker import Worker
from tests.worker_main import parse_queue


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests.fault_worker")
    parser.add_argument("db_path")
    parser.add_argument("--queue", action="append", type=parse_queue, default=[])
    parser.add_argument("--busy-timeout", type=float, default=30.0)
    parser.add_argument("--heartbeat-timeout", type=float, default=90.0)
    parser.add_argument("--heartbeat-poll-interval", type=float, default=30.0)
    parser.add_argument("--worker-id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    async with Chancy(args.db_path, busy_timeout=args.busy_timeout) as chancy:
        for queue in args.queue:
            await chancy.declare(queue, upsert=True)
        worker = Worker(
            chancy, worker_id=args.worker_id, heartbeat_timeout=args.heartbeat_timeout,
            heartbeat_poll_interval=args.heartbeat_poll_interval, shutdown_timeout=10,
        )
        await worker.start()
        print("ready", flush=True)
        await worker.wait_for_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

"""A worker supervisor as its own process, for tests that signal it (SIGTERM, SIGKILL).

``python -m tests.worker_main DB_PATH [--queue name:concurrency]... [--shutdown-timeout S] [--busy-timeout S]
[--heartbeat-timeout S] [--heartbeat-poll-interval S] [--worker-id ID] [--no-migrate] [--workflow-poll S]``
migrates the file (unless told not to), declares the queues, runs a ``Worker`` with its signal handlers until it
stops, and prints ``ready`` once it has started. Exits 0 after an orderly shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from chancy_lite import Chancy, Queue
from chancy_lite.worker import Worker


def parse_queue(text: str) -> Queue:
    name, _, concurrency = text.partition(":")
    return Queue(name, concurrency=int(concurrency) if concurrency else 1, polling_interval=60)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests.worker_main")
    parser.add_argument("db_path")
    parser.add_argument("--queue", action="append", type=parse_queue, default=[])
    parser.add_argument("--shutdown-timeout", type=float, default=30.0)
    parser.add_argument("--heartbeat-timeout", type=float, default=90.0)
    parser.add_argument("--heartbeat-poll-interval", type=float, default=30.0)
    parser.add_argument("--busy-timeout", type=float, default=30.0)
    parser.add_argument("--worker-id")
    parser.add_argument("--no-migrate", action="store_true", help="the file is migrated already (or must be)")
    parser.add_argument("--leadership", metavar="POLL:TIMEOUT", help="Leadership(poll_interval, timeout) in seconds")
    parser.add_argument("--workflow-poll", type=float, help="WorkflowPlugin(polling_interval=S)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    plugins = []
    if args.leadership:
        from chancy_lite.plugins.leadership import Leadership

        poll, timeout = (float(x) for x in args.leadership.split(":"))
        plugins.append(Leadership(poll_interval=poll, timeout=timeout))
    if args.workflow_poll:
        from chancy_lite.plugins.workflow import WorkflowPlugin

        plugins.append(WorkflowPlugin(polling_interval=args.workflow_poll))
    async with Chancy(args.db_path, busy_timeout=args.busy_timeout, plugins=plugins) as chancy:
        if not args.no_migrate:
            await chancy.migrate()
        for queue in args.queue:
            await chancy.declare(queue, upsert=True)
        worker = Worker(
            chancy, worker_id=args.worker_id, shutdown_timeout=args.shutdown_timeout,
            heartbeat_timeout=args.heartbeat_timeout, heartbeat_poll_interval=args.heartbeat_poll_interval,
        )
        await worker.start()
        print("ready", flush=True)
        await worker.wait_for_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

"""A worker supervisor with the Cron plugin whose clock is read from a file, for the tests where several processes
share one queue file and one injected time.

``python -m tests.cron_main DB_PATH CLOCK_PATH [--poll-interval S] [--worker-id ID]`` runs a ``Worker`` on an
already migrated file (no default plugins; ``Cron(poll_interval=S)``) whose ``chancy.now()`` is the epoch seconds
written in CLOCK_PATH, logs at INFO on stderr (each run taken is one line from ``chancy_lite.plugins.cron``),
prints ``ready`` once started and exits 0 after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys

from chancy_lite import Chancy
from chancy_lite.plugins.cron import Cron
from chancy_lite.worker import Worker


class FileClock:
    """``now`` from a file holding epoch seconds (the test replaces the file whole, so a read is never partial)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> dt.datetime:
        with open(self.path) as fh:
            return dt.datetime.fromtimestamp(float(fh.read()), dt.UTC)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests.cron_main")
    parser.add_argument("db_path")
    parser.add_argument("clock_path")
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--worker-id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(process)d %(name)s %(message)s")
    plugins = [Cron(poll_interval=args.poll_interval)]
    async with Chancy(args.db_path, clock=FileClock(args.clock_path), plugins=plugins,
                      no_default_plugins=True) as chancy:
        # The injected clock jumps minutes at a time: heartbeats must not expire between two jumps.
        worker = Worker(chancy, worker_id=args.worker_id, heartbeat_timeout=10**7, heartbeat_poll_interval=1)
        await worker.start()
        print("ready", flush=True)
        await worker.wait_for_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

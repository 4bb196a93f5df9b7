"""Run a real Chancy worker (this file runs under .venv-chancy's Python, with real Chancy) until SIGTERM.

Polling and write-back intervals are short so tests finish quickly, and the Metrics and Pruner default plugins
are left out (per-job metrics cost more CPU than the test jobs themselves); everything else is Chancy's default.
"""

import asyncio
import sys

from chancy import Chancy, Worker
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery
from chancy.plugins.workflow import WorkflowPlugin


async def main(dsn: str) -> None:
    plugins = [Cron(poll_interval=1), WorkflowPlugin(polling_interval=1), Leadership(poll_interval=1, timeout=5),
               Recovery()]
    async with Chancy(dsn, plugins=plugins, no_default_plugins=True) as chancy:
        worker = Worker(chancy, queue_change_poll_interval=1, shutdown_timeout=10)
        worker.send_outgoing_interval = 0.05
        await worker.start()
        await worker.wait_for_shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

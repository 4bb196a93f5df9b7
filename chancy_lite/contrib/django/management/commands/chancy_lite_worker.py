"""``python manage.py chancy_lite_worker``: run a chancy_lite worker for a Django Tasks backend until SIGTERM."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chancy_lite.queue import Queue


class Command(BaseCommand):
    help = "Run a chancy_lite worker for the tasks of a ChancyLiteBackend (declares its QUEUES if missing)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--backend", default="default", help="the TASKS alias (default: default)")
        parser.add_argument("--concurrency", type=int, default=None, help="jobs at once per queue")
        parser.add_argument("--worker-id", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        from chancy_lite.contrib.django.backend import ChancyLiteBackend
        from chancy_lite.contrib.django.compat import task_backends
        from chancy_lite.worker import Worker

        backend = task_backends[options["backend"]]
        if not isinstance(backend, ChancyLiteBackend):
            raise CommandError(f"TASKS[{options['backend']!r}] is not a ChancyLiteBackend")
        app = backend.chancy
        app.sync_migrate()
        known = {queue.name for queue in app.sync_get_all_queues()}
        for name in sorted({*backend.queues, backend.default_queue} - known):
            app.sync_declare(Queue(name, concurrency=options["concurrency"]))

        async def serve() -> None:
            async with Worker(app, worker_id=options["worker_id"]) as worker:
                await worker.wait_for_shutdown()

        asyncio.run(serve())

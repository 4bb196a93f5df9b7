"""Plugins that record their job hooks, importable by worker children (which unpickle them)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from chancy_lite.job import QueuedJob
from chancy_lite.plugin import Plugin


class Recorder(Plugin):
    """Records each hook in the ``{p}hook_log`` table: ``on_jobs_updated_in_transaction`` through the transaction's
    connection, the others through their own connection. ``fail_in_transaction`` makes the in-transaction hook
    raise that many times first (counted in a file, as each child has its own copy of the plugin)."""

    def __init__(self, path: str, *, fail_in_transaction: int = 0, counter: str | None = None,
                 double_kwarg: str | None = None) -> None:
        self.path = path
        self.fail_in_transaction = fail_in_transaction
        self.counter = counter
        self.double_kwarg = double_kwarg

    @staticmethod
    def get_identifier() -> str:
        return "tests.recorder"

    def migrate_key(self) -> str:
        return "tests_recorder"

    def migrations(self) -> list[tuple[list[str], list[str]]]:
        return [([
            "CREATE TABLE {p}hook_log (id INTEGER PRIMARY KEY, hook TEXT, job_id TEXT, state TEXT, attempts INTEGER,"
            " worker TEXT, pid INTEGER, extra TEXT)"
        ], ["DROP TABLE {p}hook_log"])]

    def _log(self, conn: Any, hook: str, job: QueuedJob, worker: Any, extra: Any = None) -> None:
        conn.execute(
            "INSERT INTO chancy_hook_log (hook, job_id, state, attempts, worker, pid, extra) VALUES (?,?,?,?,?,?,?)",
            (hook, str(job.id), job.state.value, job.attempts, None if worker is None else type(worker).__name__,
             os.getpid(), json.dumps(extra)),
        )

    def _own(self, hook: str, job: QueuedJob, worker: Any, extra: Any = None) -> None:
        import apsw

        conn = apsw.Connection(self.path)
        conn.setbusytimeout(10_000)
        try:
            with conn:
                self._log(conn, hook, job, worker, extra)
        finally:
            conn.close()

    async def on_job_starting(self, *, job: QueuedJob, worker: Any) -> QueuedJob:
        self._own("starting", job, worker, job.kwargs)
        if self.double_kwarg and self.double_kwarg in job.kwargs:
            kwargs = {**job.kwargs, self.double_kwarg: job.kwargs[self.double_kwarg] * 2}
            return dataclasses.replace(job, kwargs=kwargs)
        return job

    async def on_jobs_updated_in_transaction(self, *, worker: Any, jobs: Sequence[QueuedJob], cursor: Any) -> None:
        if self.counter is not None:
            with open(self.counter, "a+") as fh:
                fh.seek(0)
                failures = len(fh.read())
                if failures < self.fail_in_transaction:
                    fh.write("x")
                    fh.flush()
                    # Written in the transaction first, so a rollback must undo it.
                    self._log(cursor, "doomed", jobs[0], worker)
                    raise RuntimeError("the in-transaction hook fails on purpose")
        for job in jobs:
            self._log(cursor, "in_transaction", job, worker)

    async def on_job_updated(self, *, worker: Any, job: QueuedJob) -> None:
        self._own("updated", job, worker, job.meta)


class Picky(Recorder):
    """A Recorder that is shown only the updates of jobs whose meta has the key ``watched``."""

    def wants_updates_for(self, job: QueuedJob) -> bool:
        return "watched" in job.meta


def hook_log(path: str) -> list[tuple[Any, ...]]:
    import apsw

    conn = apsw.Connection(path)
    try:
        return list(conn.execute("SELECT hook, job_id, state, attempts, worker, pid, extra FROM chancy_hook_log "
                                 "ORDER BY id"))
    finally:
        conn.close()

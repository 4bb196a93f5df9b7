"""Job functions for ``scripts/chaos.py``, and the side table where they record their runs.

Every run of a chaos job writes one row of ``chaos_runs`` in the job file itself, through the
child's own apsw connection (opened lazily, once per process): a row with ``finished_at`` NULL
when the function starts, then ``finished_at`` and ``outcome`` (``ok``, or ``raised:<exception
type>``) when it ends. A row left open means the function never got to its end: its process was
killed mid-run (or an interruption landed inside the final write). The ledger check in
``chaos.py`` reads this table to prove that no job ran (and succeeded) twice without a kill.

Workers find this module because ``chaos.py`` starts them with ``scripts/`` on ``PYTHONPATH``
(children inherit the supervisor's ``sys.path``): the functions are ``chaos_jobs.<name>``. The
file is named by the ``CHANCY_CHAOS_DB`` environment variable, which the children inherit too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import apsw

from chancy_lite import QueuedJob

ENV = "CHANCY_CHAOS_DB"
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS chaos_runs (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS chaos_runs_job ON chaos_runs (job_id);
"""

_conn: apsw.Connection | None = None
_conn_pid: int | None = None


class ChaosFailure(Exception):
    """What the failing and retrying jobs raise."""


def connect(path: str) -> apsw.Connection:
    conn = apsw.Connection(path)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    conn.transaction_mode = "IMMEDIATE"  # `with conn:` is BEGIN IMMEDIATE, as chancy_lite's own connections
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def create_table(path: str) -> None:
    conn = connect(path)
    try:
        with conn:
            conn.execute(SCHEMA)
    finally:
        conn.close()


def read_runs(path: str) -> list[tuple[str, int, int, float, float | None, str | None]]:
    conn = connect(path)
    try:
        return list(conn.execute(
            "SELECT job_id, attempt, pid, started_at, finished_at, outcome FROM chaos_runs ORDER BY started_at"
        ))
    finally:
        conn.close()


def running_pids(conn: apsw.Connection, since: float) -> set[int]:
    """Pids with a run that started after ``since`` and has not finished: processes in the middle of a job."""
    rows = conn.execute("SELECT DISTINCT pid FROM chaos_runs WHERE finished_at IS NULL AND started_at > ?", (since,))
    return {pid for (pid,) in rows}


def _connection() -> apsw.Connection:
    global _conn, _conn_pid
    if _conn is None or _conn_pid != os.getpid():
        _conn, _conn_pid = connect(os.environ[ENV]), os.getpid()
    return _conn


def _run(context: QueuedJob, work: Callable[[], Any]) -> None:
    """Record the start, do the work, record the end (``ok``, or the exception type, which is re-raised)."""
    conn = _connection()
    with conn:  # BEGIN IMMEDIATE
        conn.execute(
            "INSERT INTO chaos_runs (job_id, attempt, pid, started_at) VALUES (?, ?, ?, ?)",
            (str(context.id), context.attempts, os.getpid(), time.time()),
        )
        run = conn.last_insert_rowid()
    try:
        work()
    except BaseException as exc:
        _finish(conn, run, f"raised:{type(exc).__name__}")
        raise
    _finish(conn, run, "ok")


def _finish(conn: apsw.Connection, run: int, outcome: str) -> None:
    with conn:
        conn.execute("UPDATE chaos_runs SET finished_at = ?, outcome = ? WHERE rowid = ?", (time.time(), outcome, run))


def _fail() -> None:
    raise ChaosFailure("this job always fails")


# --------------------------------------------------------------------- the jobs


def fast(*, context: QueuedJob) -> None:
    _run(context, lambda: None)


def slow(*, seconds: float, context: QueuedJob) -> None:
    _run(context, lambda: time.sleep(seconds))


def failing(*, context: QueuedJob) -> None:
    _run(context, _fail)


def retrying(*, fail_attempts: int, seconds: float = 0.0, context: QueuedJob) -> None:
    """Fails while fewer than ``fail_attempts`` attempts are recorded, then succeeds."""

    def work() -> None:
        if seconds:
            time.sleep(seconds)
        if context.attempts < fail_attempts:
            raise ChaosFailure(f"attempt {context.attempts} fails on purpose (until attempt {fail_attempts})")

    _run(context, work)

"""Chancy 0.26's ``*_ex`` admin methods run in the caller's transaction; ``notify`` reaches every worker's hub."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.testing import drain
from chancy_lite.utils import UTC
from chancy_lite.worker import Worker
from tests.worker_support import run_worker

State = QueuedJob.State
FUNC = "tests.jobs.noop"


def test_ex_methods_commit_with_the_callers_rows_or_not_at_all(chancy: Chancy) -> None:
    chancy.sync_declare(Queue("q"))
    waiting = chancy.sync_push(Job(func=FUNC, queue="q"))
    done = chancy.sync_push(Job(func="tests.jobs.fail"))
    gone = chancy.sync_push(Job(func=FUNC))
    drain(chancy)  # done fails; gone succeeds

    def everything(conn: object) -> tuple[int, int, int, set[str], int]:
        return (
            chancy.sync_cancel_job_ex(conn, waiting),  # type: ignore[arg-type]
            chancy.sync_pause_queue_ex(conn, "q", resume_at=dt.datetime(2099, 1, 1, tzinfo=UTC)),  # type: ignore[arg-type]
            chancy.sync_resume_queue_ex(conn, "nope"),  # type: ignore[arg-type]
            chancy.sync_retry_jobs_ex(conn, [done, waiting]),  # type: ignore[arg-type]
            chancy.sync_purge_jobs_ex(conn, [gone]),  # type: ignore[arg-type]
        )

    with pytest.raises(RuntimeError), chancy.transaction() as conn:
        # the cancelled job is finished, so retry_jobs_ex (later in the same transaction) runs it again too
        assert everything(conn) == (1, 1, 0, {"default", "q"}, 1)
        raise RuntimeError("the caller's own work failed")
    # Rolled back: nothing changed.
    jobs = {str(j.id): j.state for j in chancy.sync_get_jobs([waiting, done, gone])}
    assert jobs == {waiting.identifier: State.PENDING, done.identifier: State.FAILED, gone.identifier: State.SUCCEEDED}
    queue = chancy.sync_get_queue("q")
    assert queue is not None and queue.state is Queue.State.ACTIVE

    with chancy.transaction() as conn:
        everything(conn)
    jobs = {str(j.id): j.state for j in chancy.sync_get_jobs([waiting, done, gone])}
    assert jobs == {waiting.identifier: State.RETRYING, done.identifier: State.RETRYING}
    queue = chancy.sync_get_queue("q")
    assert queue is not None and queue.state is Queue.State.PAUSED
    with chancy.transaction() as conn:
        assert chancy.sync_delete_queue_ex(conn, "q") == 1  # queues deleted, not jobs (Chancy's doc, not its bug)
        assert chancy.sync_delete_queue_ex(conn, "q") == 0


def test_pause_queue_ex_takes_only_a_datetime(chancy: Chancy) -> None:
    chancy.sync_declare(Queue("q"))
    with pytest.raises(TypeError, match="datetime"), chancy.transaction() as conn:
        chancy.sync_pause_queue_ex(conn, "q", resume_at=dt.timedelta(hours=1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "payload", "error"),
    [("", {}, TypeError), ("x", [], TypeError), ("x", {"t": 1}, ValueError), ("x", {"o": object()}, TypeError),
     ("x", {"big": "x" * 8000}, ValueError)],
)
def test_an_event_that_cannot_be_sent_is_refused(chancy: Chancy, event: str, payload: object, error: type) -> None:
    with pytest.raises(error), chancy.connection() as conn:
        chancy.sync_notify(conn, event, payload)  # type: ignore[arg-type]


def test_notify_reaches_every_workers_hub_after_the_commit_in_order(chancy: Chancy, db_path: str) -> None:
    async def body(worker: Worker) -> list[tuple[str, dict[str, object]]]:
        heard: list[tuple[str, dict[str, object]]] = []
        for name in ("report.ready", "report.failed"):
            worker.hub.on(name, lambda event: heard.append((event.name, event.body)))
        other = Chancy(db_path)  # another app (it could be another process): the event goes through the file's channel
        try:
            with other.transaction() as conn:
                await other.notify_many(conn, [("report.ready", {"id": 1}), ("report.failed", {"id": 2})])
                await asyncio.sleep(0.05)
                assert heard == []  # not before the commit
            with pytest.raises(RuntimeError), other.transaction() as conn:
                other.sync_notify(conn, "report.ready", {"id": 3})
                raise RuntimeError("rolled back: never sent")
            with other.connection() as conn:
                await other.notify(conn, "report.ready", {"id": 4})  # outside a transaction: at once
            deadline = asyncio.get_running_loop().time() + 10
            while len(heard) < 3 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            return heard
        finally:
            other.close()

    heard = run_worker(chancy, body)
    assert heard == [("report.ready", {"id": 1}), ("report.failed", {"id": 2}), ("report.ready", {"id": 4})]

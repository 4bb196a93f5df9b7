"""Retry, cancel and purge: of chosen jobs (0.26's batch ``POST /api/v1/jobs``), and of every job matching a filter
(capped), shared by the JSON API and the pages.

Each job is acted on inside a ``BEGIN IMMEDIATE`` transaction that first reads its state, so what is reported is
what happened. Per-job outcomes, as 0.26:

====================================== ========== ===================================
situation                              status     message
====================================== ========== ===================================
not a job id                           failed     Invalid job ID
job missing                            skipped    Job no longer exists
retry of a running job                 skipped    Running jobs cannot be retried
retry of a waiting job                 skipped    Job is already waiting to run
retry held back by its unique key      skipped    Another active job holds its unique key
cancel of a finished job               skipped    Job is already finished
anything unexpected                    failed     Action failed; see server logs
====================================== ========== ===================================

(0.26 also resets waiting jobs on retry; chancy_lite's ``retry_jobs`` leaves them as they are, see the README.)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from chancy_lite.store import FINISHED_VALUES, WAITING_VALUES, JobFilter
from chancy_lite.utils import chunked

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.db import Connection

log = logging.getLogger(__name__)

ACTIONS = ("retry", "cancel", "purge")
BULK_CAP = 10_000  # the most jobs one bulk action touches; the answer says whether more matched
BULK_BATCH = 500  # jobs per write transaction, so a bulk action never holds the write lock for long


def one_result(job_id: str, status: str, message: str | None = None) -> dict[str, Any]:
    return {"id": job_id, "status": status} if message is None else {"id": job_id, "status": status,
                                                                      "message": message}


def act_on_jobs(conn: Connection, chancy: Chancy, action: str, ids: Iterable[Any]) -> dict[str, Any]:
    """0.26's batch action: each id (duplicates dropped, order kept) in its own transaction. Returns
    ``{"ok": every job completed, "results": [{"id", "status", "message"?}]}``."""
    results = []
    seen: set[str] = set()
    for raw in ids:
        text = str(raw)
        if text in seen:
            continue
        seen.add(text)
        try:
            job_id = str(uuid.UUID(text)) if isinstance(raw, str) else None
        except ValueError:
            job_id = None
        if job_id is None:
            results.append(one_result(text, "failed", "Invalid job ID"))
            continue
        try:
            with conn:
                state = chancy.store.job_states(conn, [job_id]).get(job_id)
                status, message = _act(conn, chancy, action, job_id, state)
        except Exception:
            log.exception("dashboard: %s of job %s failed", action, job_id)
            status, message = "failed", "Action failed; see server logs"
        results.append(one_result(text, status, message))
    return {"ok": all(r["status"] == "completed" for r in results), "results": results}


def act_on_matching(
    conn: Connection, chancy: Chancy, action: str, flt: JobFilter, *, cap: int = BULK_CAP
) -> dict[str, Any]:
    """``action`` on the newest ``cap`` jobs matching ``flt``, ``BULK_BATCH`` per transaction; a job that stopped
    matching the filter's states meanwhile is skipped. Returns ``{"action", "matched", "completed", "skipped",
    "failed", "has_more"}`` (``has_more``: more jobs matched than ``cap``)."""
    ids = chancy.store.page_job_ids(conn, flt, limit=cap + 1)
    has_more = len(ids) > cap
    ids = ids[:cap]
    counts = {"completed": 0, "skipped": 0, "failed": 0}
    for batch in chunked(ids, BULK_BATCH):
        try:
            with conn:
                states = chancy.store.job_states(conn, batch)
                for job_id in batch:
                    state = states.get(job_id)
                    if state is not None and state not in flt.states:
                        counts["skipped"] += 1
                        continue
                    status, _ = _act(conn, chancy, action, job_id, state)
                    counts[status] += 1
        except Exception:
            log.exception("dashboard: bulk %s failed for a batch of %d jobs", action, len(batch))
            counts["failed"] += len(batch)
    return {"action": action, "matched": len(ids), **counts, "has_more": has_more}


def _act(conn: Connection, chancy: Chancy, action: str, job_id: str, state: str | None) -> tuple[str, str | None]:
    """One job, inside the caller's transaction, knowing its current state."""
    if state is None:
        return "skipped", "Job no longer exists"
    if action == "retry":
        if state == "running":
            return "skipped", "Running jobs cannot be retried"
        if state in WAITING_VALUES:
            return "skipped", "Job is already waiting to run"
        if not chancy.sync_retry_jobs_ex(conn, [job_id]):
            return "skipped", "Another active job holds its unique key"
    elif action == "cancel":
        if state in FINISHED_VALUES:
            return "skipped", "Job is already finished"
        chancy.sync_cancel_job_ex(conn, job_id)
    elif action == "purge":
        chancy.sync_purge_jobs_ex(conn, [job_id])
    else:
        raise ValueError(f"unknown action {action!r}")
    return "completed", None


def summary_text(result: dict[str, Any]) -> str:
    """A one-line account of a bulk result, for a page."""
    verbs = {"retry": "retried", "cancel": "cancelled", "purge": "purged"}
    text = f"{verbs[result['action']]} {result['completed']:,} of {result['matched']:,} matching job(s)"
    extra = []
    if result["skipped"]:
        extra.append(f"{result['skipped']:,} skipped")
    if result["failed"]:
        extra.append(f"{result['failed']:,} failed (see the server log)")
    if result["has_more"]:
        extra.append(f"more than {result['matched']:,} matched: run it again for the rest")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def ids_from(values: Sequence[Any] | Any) -> list[Any]:
    """The ``ids`` of a batch request: a non-empty list, else ValueError."""
    if not isinstance(values, list) or not values:
        raise ValueError("ids must be a non-empty list of job ids")
    return values

"""``count_jobs()`` reads the waiting and running jobs' indexes and the finished jobs' counts (kept by triggers):
it must say exactly what a full ``GROUP BY`` over every row says, whatever wrote the table."""

from __future__ import annotations

import os

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.plugins.pruner import Pruner
from chancy_lite.testing import drain
from chancy_lite.utils import chancy_uuid

OK, FAIL = "tests.jobs.noop", "tests.jobs.fail"


def counts(chancy: Chancy) -> dict[tuple[str, str], int]:
    with chancy.connection() as conn:
        return {(queue, state): n for queue, state, n in chancy.store.count_jobs(conn)}


def scanned(chancy: Chancy) -> dict[tuple[str, str], int]:
    with chancy.connection() as conn:
        return {(queue, state): n for queue, state, n in chancy.store.count_jobs_scan(conn)}


def check(chancy: Chancy) -> dict[tuple[str, str], int]:
    found = counts(chancy)
    assert found == scanned(chancy)
    public = {(q, s): n for q, states in chancy.sync_count_jobs().items() for s, n in states.items()}
    assert public == found
    return found


def test_counts_stay_exact_through_a_mixed_workload(chancy: Chancy) -> None:
    for name in ("a", "b", "c"):
        chancy.sync_declare(Queue(name))
    refs = {
        name: [chancy.sync_push(Job(func=FAIL if i % 3 == 0 else OK, queue=name, max_attempts=1 + i % 2))
               for i in range(30)]
        for name in ("a", "b", "c")
    }
    assert check(chancy) == {("a", "pending"): 30, ("b", "pending"): 30, ("c", "pending"): 30}

    drain(chancy, "a")
    drain(chancy, "b", max_jobs=12)
    found = check(chancy)
    assert found[("a", "succeeded")] == 20 and found[("a", "failed")] == 10

    # A claimed (running) job, and a job cancelled while running or waiting.
    with chancy.connection() as conn, conn:
        [held] = chancy.store.claim_jobs(conn, "c", 1, now=chancy.now(), worker_id="w", pid=os.getpid(),
                                         pid_start=None)
    chancy.sync_cancel_job(held.id)
    chancy.sync_cancel_job(refs["c"][5])
    check(chancy)

    # retry_jobs un-finishes; purge deletes; the pruner deletes finished jobs by rule.
    finished = [j for j in chancy.sync_list_jobs(queue="a", limit=100) if j.state is QueuedJob.State.SUCCEEDED]
    chancy.sync_retry_jobs(finished[:7])
    check(chancy)
    chancy.sync_purge_jobs([j.id for j in finished[7:10]] + [refs["b"][0]])
    check(chancy)
    Pruner(Pruner.Rules.Queue() == "a").prune(chancy)
    check(chancy)

    # A finished row inserted directly (as a migration or an import would), then its queue deleted with its jobs.
    now = chancy.now()
    with chancy.connection() as conn, conn:
        conn.execute(
            f"INSERT INTO {chancy.prefix}jobs (id, queue, func, state, attempts, created_at, completed_at,"
            " scheduled_at) VALUES (?, 'c', ?, 'failed', 1, ?, ?, ?)", (str(chancy_uuid()), OK, now, now, now),
        )
    check(chancy)
    chancy.sync_delete_queue("c", purge_jobs=True)
    found = check(chancy)
    assert not any(queue == "c" for queue, _ in found)

    drain(chancy, "a")
    drain(chancy, "b")
    assert sum(n for (_, state), n in check(chancy).items() if state in ("pending", "retrying", "running")) == 0


def test_count_jobs_reads_no_finished_row(chancy: Chancy) -> None:
    """The plan: the waiting and running jobs' partial indexes, and the counts table; never a scan of jobs."""
    with chancy.connection() as conn:
        plan = [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + chancy.store.q.COUNT_JOBS)]
    assert any("jobs_due" in step for step in plan) and any("jobs_running" in step for step in plan), plan
    assert any("job_counts" in step for step in plan), plan
    assert not any(step.startswith("SCAN") and step.split()[1].endswith("jobs") and "INDEX" not in step
                   for step in plan), plan

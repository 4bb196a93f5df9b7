"""Batch claims: exact attempt accounting when a child dies mid-batch, and bounded priority inversion."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from chancy_lite import Chancy, Job, Queue, QueuedJob, Worker, wake
from chancy_lite import journal as journal_mod
from chancy_lite.store import Outcome
from chancy_lite.utils import chancy_uuid

State = QueuedJob.State


def marks(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_child_dying_mid_batch_burns_only_the_running_jobs_attempt(chancy: Chancy, tmp_path: Path) -> None:
    out = tmp_path / "marks.txt"
    # A long window and a large batch: after the first job is timed, the child claims the rest in one go.
    chancy.sync_declare(Queue("batch", concurrency=1, executor_options={"batch_size": 50, "batch_window": 60}))
    first = chancy.sync_push(Job(func="tests.jobs_batch.mark", queue="batch", kwargs={"path": str(out), "value": "w"}))
    before = [Job(func="tests.jobs_batch.mark", queue="batch", kwargs={"path": str(out), "value": f"b{i}"})
              for i in range(5)]
    killer = Job(func="tests.jobs_batch.mark_then_die", queue="batch", kwargs={"path": str(out), "value": "k"},
                 max_attempts=1)
    after = [Job(func="tests.jobs_batch.mark", queue="batch", kwargs={"path": str(out), "value": f"a{i}"},
                 max_attempts=1) for i in range(10)]
    [refs] = list(chancy.sync_push_many([*before, killer, *after]))

    async def run() -> list[QueuedJob]:
        async with Worker(chancy, register_signal_handlers=False):
            return await chancy.wait_for_jobs([first, *refs], timeout=30)

    jobs = asyncio.run(run())
    by_value = {j.kwargs["value"]: j for j in jobs}
    assert by_value["k"].state is State.FAILED
    assert by_value["k"].attempts == 1
    assert "died" in by_value["k"].errors[0]["traceback"]
    for value in [f"b{i}" for i in range(5)] + [f"a{i}" for i in range(10)]:
        job = by_value[value]
        assert job.state is State.SUCCEEDED, value
        assert job.attempts == 1 and job.errors == [], value  # claimed-but-unstarted jobs kept their attempt
    # Jobs that finished before the crash kept their outcome: none of them ran twice.
    seen = marks(out)
    assert sorted(seen) == sorted(["w", "k", *[f"b{i}" for i in range(5)], *[f"a{i}" for i in range(10)]])


def test_high_priority_job_does_not_wait_behind_a_prefetched_batch(chancy: Chancy, tmp_path: Path) -> None:
    out = tmp_path / "marks.txt"
    chancy.sync_declare(Queue("slow", concurrency=1))
    low = [Job(func="tests.jobs_batch.mark_and_sleep", queue="slow",
               kwargs={"path": str(out), "value": f"low{i}", "seconds": 0.02}) for i in range(60)]
    [low_refs] = list(chancy.sync_push_many(low))

    async def run() -> None:
        async with Worker(chancy, register_signal_handlers=False):
            await chancy.wait_for_jobs(low_refs[:3], timeout=30)
            high = await chancy.push(Job(func="tests.jobs_batch.mark", queue="slow", priority=10,
                                         kwargs={"path": str(out), "value": "high"}))
            await chancy.wait_for_job(high, timeout=30)

    asyncio.run(run())
    seen = marks(out)
    pushed_after = int(seen[2].removeprefix("low")) if seen[2].startswith("low") else 2
    # With 20 ms jobs and the default 5 ms window the child claims one job at a time: the high-priority job
    # starts after at most the job running when it was pushed and the one claimed with it.
    assert seen.index("high") <= pushed_after + 3, seen[:10]


def test_recovery_from_a_journal_keeps_outcomes_and_unstarted_attempts(chancy: Chancy, tmp_path: Path) -> None:
    """A fake crash (SPEC style guide: write the crashed state): three jobs held by a dead pid, one finished,
    one running, one never started, as its journal says."""
    refs = [r for batch in chancy.sync_push_many([Job(func="tests.jobs.noop", max_attempts=2)] * 3) for r in batch]
    store = chancy.store
    dead_pid, worker_id = 2**22 + 12345, str(chancy_uuid())
    with chancy.connection() as conn, conn:
        claimed = store.claim_jobs(conn, "default", 3, now=chancy.now(), worker_id=worker_id, pid=dead_pid,
                                   pid_start=None)
    assert [str(j.id) for j in claimed] == [r.identifier for r in refs]
    done, running, unstarted = claimed
    directory = wake.directory_for(chancy.path)
    journal = journal_mod.Journal(os.path.join(directory, journal_mod.journal_name(worker_id, dead_pid, "k1")))
    journal.started(str(done.id))
    journal.finished(Outcome(str(done.id), 0, State.SUCCEEDED, chancy.now(), meta='{"ok": true}'))
    journal.started(str(running.id))
    journal.close(remove=False)

    async def recover() -> None:
        worker = Worker(chancy, register_signal_handlers=False)
        await worker.recover_orphans()

    asyncio.run(recover())
    after = {j.id: j for j in chancy.sync_get_jobs(refs)}
    assert after[done.id].state is State.SUCCEEDED and after[done.id].meta == {"ok": True}
    assert after[running.id].state is State.RETRYING and after[running.id].attempts == 1
    assert "died" in after[running.id].errors[0]["traceback"]
    assert after[unstarted.id].state is State.PENDING and after[unstarted.id].attempts == 0
    assert journal_mod.find(directory, worker_id, dead_pid) == []


def test_a_child_over_its_memory_budget_is_replaced(chancy: Chancy, tmp_path: Path) -> None:
    """maximum_memory_per_worker replaces a child once its resident memory exceeds the budget (here: always)."""
    out = tmp_path / "pids.txt"
    chancy.sync_declare(Queue("lean", concurrency=1, executor_options={"maximum_memory_per_worker": 1}))
    refs = [chancy.sync_push(Job(func="tests.jobs_batch.mark_pid", queue="lean", kwargs={"path": str(out)}))
            for _ in range(3)]

    async def run() -> list[QueuedJob]:
        async with Worker(chancy, register_signal_handlers=False):
            return await chancy.wait_for_jobs(refs, timeout=30)

    jobs = asyncio.run(run())
    assert all(j.state is State.SUCCEEDED for j in jobs)
    assert len(set(marks(out))) >= 2  # the first child was replaced after its first batch


def test_supervisor_kills_a_job_that_disarmed_its_own_time_limit(chancy: Chancy, tmp_path: Path) -> None:
    """The backstop: a job past its TIME limit and grace, with the child's watchdog gone, is killed by the
    supervisor and recorded as timed out; the queue goes on."""
    from chancy_lite import Limit

    out = tmp_path / "marks.txt"
    chancy.sync_declare(Queue("stuck", concurrency=1, executor_options={"timeout_grace": 0.5}))
    hung = chancy.sync_push(Job(func="tests.jobs_batch.disarm_watchdog_and_hang", queue="stuck",
                                kwargs={"path": str(out)}, limits=[Limit(Limit.Type.TIME, 0.5)]))
    after = chancy.sync_push(
        Job(func="tests.jobs_batch.mark", queue="stuck", kwargs={"path": str(out), "value": "next"})
    )

    async def run() -> list[QueuedJob]:
        async with Worker(chancy, register_signal_handlers=False):
            return await chancy.wait_for_jobs([hung, after], timeout=30)

    stuck, nxt = asyncio.run(run())
    assert stuck.state is State.FAILED
    assert "timed out" in stuck.errors[-1]["traceback"]
    assert stuck.completed_at is not None and stuck.started_at is not None
    assert (stuck.completed_at - stuck.started_at).total_seconds() < 10  # not the 30 s the job wanted
    assert nxt.state is State.SUCCEEDED
    assert marks(out) == ["hanging", "next"]


def test_recovery_reads_every_journal_of_a_process(chancy: Chancy) -> None:
    """A process with several runners (threads, async slots) has one journal each: a job started in any of them
    counts its attempt; a job none of them started waits again."""
    refs = [r for batch in chancy.sync_push_many([Job(func="tests.jobs.noop", max_attempts=2)] * 3) for r in batch]
    store = chancy.store
    dead_pid, worker_id = 2**22 + 54321, str(chancy_uuid())
    with chancy.connection() as conn, conn:
        first, second, unstarted = store.claim_jobs(conn, "default", 3, now=chancy.now(), worker_id=worker_id,
                                                    pid=dead_pid, pid_start=None)
    directory = wake.directory_for(chancy.path)
    for key, job in (("slot1", first), ("slot2", second)):
        journal = journal_mod.Journal(os.path.join(directory, journal_mod.journal_name(worker_id, dead_pid, key)))
        journal.started(str(job.id))
        journal.close(remove=False)

    async def recover() -> None:
        worker = Worker(chancy, register_signal_handlers=False)
        await worker.recover_orphans()

    asyncio.run(recover())
    after = {j.id: j for j in chancy.sync_get_jobs(refs)}
    assert after[first.id].state is State.RETRYING and after[first.id].attempts == 1
    assert after[second.id].state is State.RETRYING and after[second.id].attempts == 1
    assert after[unstarted.id].state is State.PENDING and after[unstarted.id].attempts == 0

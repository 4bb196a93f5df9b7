"""The wake-up protocol: the store records what changed, the connection's owner publishes it after the commit
(never after a rollback), messages encode and decode in one module, and a retry or a recovery wakes only its own
queue."""

from __future__ import annotations

import pytest

from chancy_lite import Chancy, Job, QueuedJob, wake
from chancy_lite.outcome import next_outcome

State = QueuedJob.State


def collecting(chancy: Chancy) -> list[wake.Changes]:
    published: list[wake.Changes] = []
    with chancy.connection() as conn:
        conn.publisher = published.append
    return published


def test_a_push_is_published_after_its_commit_and_a_rollback_publishes_nothing(chancy: Chancy) -> None:
    published = collecting(chancy)
    with chancy.connection() as conn:
        with conn:
            chancy.sync_push_ex(conn, Job(func="tests.jobs.noop", queue="a"))
            chancy.sync_push_many_ex(conn, [Job(func="tests.jobs.noop", queue="b")] * 2)
            assert published == []  # not before the commit
        assert [c.claimable for c in published] == [{"a": 1, "b": 2}]
        published.clear()
        with pytest.raises(RuntimeError), conn:
            chancy.sync_push_ex(conn, Job(func="tests.jobs.noop", queue="a"))
            raise RuntimeError("roll back")
        assert published == []
        chancy.sync_push(Job(func="tests.jobs.noop", queue="c"))  # one autocommit statement: published at once
        assert [c.claimable for c in published] == [{"c": 1}]


def test_a_retry_and_a_recovery_wake_only_their_own_queue(chancy: Chancy) -> None:
    published = collecting(chancy)
    retried = chancy.sync_push(Job(func="tests.jobs.noop", queue="mail", max_attempts=2))
    orphan = chancy.sync_push(Job(func="tests.jobs.noop", queue="reports", max_attempts=2))
    with chancy.connection() as conn:
        with conn:
            [job] = chancy.store.claim_jobs(conn, "mail", 1, now=chancy.now(), worker_id="w", pid=1, pid_start=None)
            chancy.store.claim_jobs(conn, "reports", 1, now=chancy.now(), worker_id="dead", pid=2, pid_start=None)
        published.clear()
        with conn:
            outcome = next_outcome(job, ValueError("x"), now=chancy.now())
            assert chancy.store.complete_job(conn, outcome, worker_id="w", pid=1, queue="mail")
        assert [c.claimable for c in published] == [{"mail": 1}]
        published.clear()
        recovered = chancy.store.recover_jobs(conn, "dead", 2, lambda j: "died", now=chancy.now())
        assert [(str(j.id), state) for j, state in recovered] == [(orphan.identifier, "retrying")]
        assert [c.claimable for c in published] == [{"reports": 1}]
    assert retried is not None


def test_messages_round_trip_through_the_one_codec() -> None:
    assert wake.decode_worker(wake.claimable_message("q~x", 3)) == wake.Claimable("q~x", 3)
    assert wake.decode_worker(wake.cancel_message("j1", 42)) == wake.Cancel("j1", 42)
    assert wake.decode_worker(wake.cancel_message("j1", None)) == wake.Cancel("j1", None)
    assert isinstance(wake.decode_worker(wake.QUEUES_CHANGED), wake.QueuesChanged)
    assert wake.decode_worker(b"z something new") is None
    assert wake.decode_child(wake.work_message()) == wake.Work(None)
    assert wake.decode_child(wake.work_message(5)) == wake.Work(5)
    assert isinstance(wake.decode_child(wake.STOP), wake.Stop)
    assert wake.decode_child(wake.child_cancel_message("j2")) == wake.Cancel("j2")


def test_a_connection_from_connect_publishes_its_commits_too(chancy: Chancy) -> None:
    chancy.sync_get_all_queues()  # opens the app's channel
    assert chancy.channel is not None
    with wake.Listener(chancy.channel, wake.WORKER) as supervisor:
        conn = chancy.connect()
        try:
            with conn:
                chancy.sync_push_ex(conn, Job(func="tests.jobs.noop", queue="elsewhere"))
        finally:
            conn.close()
        assert wake.claimable_message("elsewhere", 1) in supervisor.wait(5)

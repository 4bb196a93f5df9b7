"""Hand-over: a single push, due now and without limits, is inserted held by an idle child of its queue and sent to
that child's inbox (chancy_lite.wake). Here the child is played by the test: an inbox, an identity file and an
idle link, as a real child makes them."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest

from chancy_lite import Chancy, Job, Limit, Queue, QueuedJob, wake
from chancy_lite.child import ChildConfig, ProcessRunner
from chancy_lite.store import handed_job
from chancy_lite.utils import chancy_uuids

FUNC = "tests.jobs.noop"
RUNNING, PENDING = QueuedJob.State.RUNNING, QueuedJob.State.PENDING


class FakeChild:
    """An idle child as pushers see it."""

    def __init__(self, chancy: Chancy, queue: str = "q", *, handover: bool = True, pid: int | None = None) -> None:
        self.channel = wake.Channel(chancy.path)
        self.key = f"test-{os.getpid()}-{id(self):x}"
        self.inbox = wake.Listener(self.channel, wake.INBOX, name=wake.inbox_name(self.key))
        self.pid = pid or os.getpid()
        wake.write_identity(self.channel.directory, self.key, worker_id="w-test", pid=self.pid, pid_start=None,
                            handover=handover)
        self.link = os.path.join(self.channel.directory, wake.idle_name(queue, self.key))
        os.link(self.inbox.path, self.link)

    def messages(self) -> list[wake.Work | wake.Stop | wake.Cancel | wake.Handed | None]:
        return [wake.decode_child(m) for m in self.inbox.drain()]

    def close(self) -> None:
        wake.remove_child_files(self.channel.directory, "q", self.key)
        self.inbox.close()
        self.channel.close()


@pytest.fixture
def child(chancy: Chancy) -> Iterator[FakeChild]:
    chancy.sync_declare(Queue("q"))
    fake = FakeChild(chancy)
    yield fake
    fake.close()


def test_a_single_push_is_inserted_held_by_the_idle_child_and_sent_to_it(chancy: Chancy, child: FakeChild) -> None:
    ref = chancy.sync_push(Job(func=FUNC, queue="q", kwargs={"n": 1}, meta={"m": [1]}, priority=3))
    stored = chancy.sync_get_job(ref)
    assert stored is not None and stored.state is RUNNING and stored.started_at is None and stored.attempts == 0
    with chancy.connection() as conn:
        assert [str(j.id) for j in chancy.store.held_jobs(conn, "w-test", child.pid)] == [ref.identifier]
    [message] = child.messages()
    assert isinstance(message, wake.Handed)
    # The child's copy is the row as its claim would have returned it.
    assert handed_job(message.row, "w-test") == stored


@pytest.mark.parametrize("job", [
    Job(func=FUNC, queue="q", limits=[Limit(Limit.Type.TIME, 5)]),
    Job(func=FUNC, queue="q", scheduled_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)),
    Job(func=FUNC, queue="q", unique_key="k"),
    Job(func=FUNC, queue="q", kwargs={"big": "x" * wake.MAX_HANDOVER_BYTES}),
    Job(func=FUNC, queue="other"),
], ids=["limits", "later", "unique", "big", "other queue"])
def test_jobs_that_are_not_handed_over(chancy: Chancy, child: FakeChild, job: Job) -> None:
    ref = chancy.sync_push(job)
    stored = chancy.sync_get_job(ref)
    assert stored is not None and stored.state is PENDING
    assert not any(isinstance(m, wake.Handed) for m in child.messages())


def test_push_many_and_pushes_inside_a_transaction_are_not_handed_over(chancy: Chancy, child: FakeChild) -> None:
    refs = [ref for batch in chancy.sync_push_many([Job(func=FUNC, queue="q")] * 2) for ref in batch]
    with chancy.transaction() as conn:
        refs.append(chancy.sync_push_ex(conn, Job(func=FUNC, queue="q")))
    assert {j.state for j in chancy.sync_get_jobs(refs)} == {PENDING}
    assert not any(isinstance(m, wake.Handed) for m in child.messages())


def test_a_child_that_takes_no_hand_overs_is_only_woken(chancy: Chancy) -> None:
    chancy.sync_declare(Queue("q"))
    limited = FakeChild(chancy, handover=False)  # a rate-limited queue's child
    try:
        ref = chancy.sync_push(Job(func=FUNC, queue="q"))
        stored = chancy.sync_get_job(ref)
        assert stored is not None and stored.state is PENDING
        assert limited.messages() == [wake.Work(1)]
    finally:
        limited.close()


def test_a_hand_over_that_cannot_be_delivered_waits_as_any_push(chancy: Chancy, child: FakeChild) -> None:
    child.inbox.sock.close()  # the child left without removing its link: the datagram is refused
    ref = chancy.sync_push(Job(func=FUNC, queue="q"))
    stored = chancy.sync_get_job(ref)
    assert stored is not None and stored.state is PENDING and stored.attempts == 0
    with chancy.connection() as conn, conn:
        [claimed] = chancy.store.claim_jobs(conn, "q", 1, now=chancy.now(), worker_id="other", pid=1,
                                            pid_start=None)
    assert str(claimed.id) == ref.identifier
    assert not os.path.exists(child.link)  # the pusher removed the dead link


def runner(chancy: Chancy, queue: str = "q") -> ProcessRunner:
    """A process child's runner, in this process (its loop is not run: the test steps it)."""
    config = ChildConfig(db_path=chancy.path, prefix=chancy.prefix, busy_timeout=5, synchronous="NORMAL",
                         queue=queue, worker_id="w-runner", key=f"runner-{os.getpid()}", polling_interval=0.05,
                         register_signals=False)
    return ProcessRunner(config)


def test_a_child_runs_what_it_was_handed_and_gives_back_what_it_did_not(chancy: Chancy) -> None:
    chancy.sync_declare(Queue("q"))
    child = runner(chancy)
    try:
        assert child.advertise(True)
        first = chancy.sync_push(Job(func=FUNC, queue="q"))
        assert child.exchange() == []  # nothing claimable: the job is already the child's...
        child.handle_messages(child.inbox.drain())  # type: ignore[union-attr]
        jobs = child.exchange()  # ...and comes from its inbox, without a transaction
        assert [str(j.id) for j in jobs] == [first.identifier]
        assert child.advertise(False)
        child.run_batch(jobs)
        assert child.advertise(True)
        second = chancy.sync_push(Job(func=FUNC, queue="q"))
        child.give_back_handed()  # stopping: the second was handed over but never run
        child.flush()
    finally:
        child.close()
    done, back = chancy.sync_get_jobs([first, second])
    assert done.state is QueuedJob.State.SUCCEEDED
    assert back.state is PENDING and back.attempts == 0 and back.errors == []


def test_an_idle_child_finds_a_hand_over_it_never_heard_of(chancy: Chancy) -> None:
    """The pusher committed the job held by the child and died before sending it."""
    chancy.sync_declare(Queue("q"))
    child = runner(chancy)
    try:
        assert child.advertise(True)
        lost = Job(func=FUNC, queue="q")
        with chancy.connection() as conn:
            handoff, conn.handoff = conn.handoff, None  # the push inserts as usual...
            [job_id] = chancy.store.insert_jobs(conn, [lost], chancy.now(), chancy_uuids)
            conn.handoff = handoff
            with conn:  # ...and here is what a hand-over leaves when its datagram never came
                conn.execute(f"UPDATE {chancy.prefix}jobs SET state = 'running', taken_by = 'w-runner',"
                             " holder_pid = ? WHERE id = ?", (os.getpid(), job_id))
        child.inbox.drain()  # type: ignore[union-attr]  # the wake-up of the plain insert above
        child.idle()  # its wait times out: it looks for jobs it holds
        jobs = child.exchange()
        assert [str(j.id) for j in jobs] == [job_id]
        child.advertise(False)
        child.run_batch(jobs)
        child.flush()
    finally:
        child.close()
    done = chancy.sync_get_job(job_id)
    assert done is not None and done.state is QueuedJob.State.SUCCEEDED

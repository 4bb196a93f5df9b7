"""Plugins' job hooks on the real claim path (``testing.drain`` runs a child's loop in this process)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from chancy_lite import Chancy, Job, QueuedJob
from chancy_lite.testing import drain
from tests.hook_plugins import Picky, Recorder, hook_log

State = QueuedJob.State


def test_each_hook_sees_the_job_as_it_is_at_that_point(db_path: str) -> None:
    with Chancy(db_path, plugins=[Recorder(db_path, double_kwarg="n")]) as chancy:
        chancy.sync_migrate()
        ok = chancy.sync_push(Job(func="tests.jobs.record_n", kwargs={"n": 21}))
        bad = chancy.sync_push(Job(func="tests.jobs.fail", max_attempts=2))
        drain(chancy)
        drain(chancy)  # the retry
        log = hook_log(db_path)
        done = chancy.sync_get_job(ok)
    by_job: dict[str, list[tuple[str, str, int]]] = {}
    for hook, job_id, state, attempts, worker, _pid, _extra in log:
        assert worker is None  # a child has no Worker object
        by_job.setdefault(job_id, []).append((hook, state, attempts))
    # starting sees the claimed (running) job; the others see it as stored after the run, the in-transaction
    # hook before on_job_updated.
    assert by_job[ok.identifier] == [("starting", "running", 0), ("in_transaction", "succeeded", 1),
                                     ("updated", "succeeded", 1)]
    assert by_job[bad.identifier] == [
        ("starting", "running", 0), ("in_transaction", "retrying", 1), ("updated", "retrying", 1),
        ("starting", "running", 1), ("in_transaction", "failed", 2), ("updated", "failed", 2),
    ]
    # on_job_starting's changed copy is the one that ran; on_job_updated sees the meta the job saved.
    assert done is not None and done.meta == {"n": 42}
    updated = [json.loads(row[-1]) for row in log if row[0] == "updated" and row[1] == ok.identifier]
    assert updated == [{"n": 42}]


def test_a_failing_in_transaction_hook_rolls_back_and_is_retried(db_path: str, tmp_path: Path) -> None:
    counter = str(tmp_path / "failures")
    with Chancy(db_path, plugins=[Recorder(db_path, fail_in_transaction=2, counter=counter)]) as chancy:
        chancy.sync_migrate()
        ref = chancy.sync_push(Job(func="tests.jobs.noop"))
        [done] = drain(chancy)
        log = hook_log(db_path)
    assert done.id == ref and done.state is State.SUCCEEDED and done.attempts == 1
    assert Path(counter).read_text() == "xx"  # failed twice, then committed
    hooks = [row[0] for row in log]
    assert "doomed" not in hooks  # what the failing hook wrote in the transaction was rolled back
    assert hooks == ["starting", "in_transaction", "updated"]


def test_a_job_cancelled_while_it_runs_is_not_an_update(db_path: str) -> None:
    """The fence: a result that is not written (the job was cancelled meanwhile) reaches no update hook."""
    with Chancy(db_path, plugins=[Recorder(db_path)]) as chancy:
        chancy.sync_migrate()
        ref = chancy.sync_push(Job(func="tests.jobs.cancel_myself", kwargs={"db": db_path}))
        drain(chancy)
        job = chancy.sync_get_job(ref)
        log = hook_log(db_path)
    assert job is not None and job.state is State.FAILED
    assert [row[0] for row in log] == ["starting"]


def test_a_plugin_that_filters_is_shown_only_the_updates_it_wants(db_path: str) -> None:
    """``wants_updates_for``: the other jobs reach neither update hook (and cost it nothing); starting is unfiltered."""
    with Chancy(db_path, plugins=[Picky(db_path)]) as chancy:
        chancy.sync_migrate()
        watched = chancy.sync_push(Job(func="tests.jobs.noop", meta={"watched": True}))
        other = chancy.sync_push(Job(func="tests.jobs.noop"))
        drain(chancy)
        log = hook_log(db_path)
    assert sorted(row[1] for row in log if row[0] == "starting") == sorted([watched.identifier, other.identifier])
    assert [(row[0], row[1]) for row in log if row[0] != "starting"] == [
        ("in_transaction", watched.identifier), ("updated", watched.identifier)]


def test_plugins_without_job_hooks_are_not_copied_to_children(db_path: str) -> None:
    from chancy_lite.hooks import hooked
    from chancy_lite.plugins.leadership import Leadership
    from chancy_lite.plugins.retry import RetryPlugin

    recorder, retry, leadership = Recorder(db_path), RetryPlugin(), Leadership()
    assert hooked([recorder, retry, leadership]) == [recorder, retry]


def test_ids_are_uuids_everywhere_a_user_sees_a_job(db_path: str) -> None:
    """Chancy 0.26: ``QueuedJob.id`` is a ``uuid.UUID``; references and text ids find the job."""
    with Chancy(db_path) as chancy:
        chancy.sync_migrate()
        ref = chancy.sync_push(Job(func="tests.jobs.noop"))
        [done] = drain(chancy)
        assert isinstance(done.id, uuid.UUID) and done.id == uuid.UUID(ref.identifier) and done.claim_id is None
        for handle in (ref, ref.identifier, done.id, done):
            found = chancy.sync_get_job(handle)
            assert found is not None and found.id == done.id
        assert QueuedJob(id=ref.identifier, func="f").id == done.id  # text is converted

"""chancy_lite.testing: a controllable clock and in-process draining on the real code path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, QueuedJob
from chancy_lite.testing import Clock, drain, run_jobs


@pytest.fixture
def clocked(tmp_path: Path):
    clock = Clock(dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC))
    with Chancy(tmp_path / "jobs.db", clock=clock) as chancy:
        chancy.sync_migrate()
        yield chancy, clock


def test_scheduled_job_runs_only_when_the_clock_reaches_it(clocked) -> None:
    chancy, clock = clocked
    ref = chancy.sync_push(Job(func="tests.jobs.with_context", scheduled_at=clock() + dt.timedelta(hours=1)))
    assert drain(chancy) == []
    assert chancy.sync_get_job(ref).state is QueuedJob.State.PENDING
    clock.advance(minutes=59)
    assert drain(chancy) == []
    clock.advance(minutes=1)
    [done] = drain(chancy)
    assert done.state is QueuedJob.State.SUCCEEDED
    assert done.meta["seen_id"] == ref.identifier
    assert done.started_at == clock()
    assert done.completed_at == clock()


def test_drain_runs_retries_until_attempts_are_spent(clocked) -> None:
    chancy, clock = clocked
    ref = chancy.sync_push(Job(func="tests.jobs.fail", max_attempts=3, scheduled_at=clock()))
    [done] = drain(chancy)
    assert done.id == ref
    assert done.state is QueuedJob.State.FAILED
    assert [e["attempt"] for e in done.errors] == [0, 1, 2]


def test_drain_respects_priority_and_max_jobs(clocked, tmp_path: Path) -> None:
    chancy, clock = clocked
    out = tmp_path / "order.txt"
    for name, priority in [("low", 0), ("high", 5), ("mid", 1)]:
        chancy.sync_push(Job(func="tests.jobs.record", kwargs={"path": str(out), "value": name},
                             priority=priority, scheduled_at=clock()))
    assert len(drain(chancy, max_jobs=2)) == 2
    assert out.read_text().split() == ["high", "mid"]
    drain(chancy)
    assert out.read_text().split() == ["high", "mid", "low"]


def test_run_jobs_finishes_jobs_across_queues(clocked) -> None:
    chancy, clock = clocked
    refs = [chancy.sync_push(Job(func="tests.jobs.noop", queue=q, scheduled_at=clock())) for q in ("a", "b")]
    jobs = run_jobs(chancy, refs)
    assert [j.state for j in jobs] == [QueuedJob.State.SUCCEEDED] * 2
    assert [j.queue for j in jobs] == ["a", "b"]


def test_the_clock_moves_real_time_across_a_daylight_saving_change() -> None:
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    clock = Clock(dt.datetime(2025, 3, 9, 1, 30, tzinfo=new_york))  # half an hour before the clocks jump to 03:00
    assert clock().tzinfo is dt.UTC
    clock.advance(hours=1)
    assert clock().astimezone(new_york).strftime("%H:%M %Z") == "03:30 EDT"  # one real hour, not 02:30 on the wall
    clock.set(dt.datetime(2025, 11, 2, 1, 30, tzinfo=new_york))
    clock.advance(hours=1)
    assert clock().astimezone(new_york).strftime("%H:%M %Z") == "01:30 EST"  # the repeated hour

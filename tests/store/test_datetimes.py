"""One rule for every datetime a user passes: aware values as they are, naive values as local time (Python's
convention), stored and returned in UTC. Checked under a zone far from UTC, for every entry point."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator

import pytest

from chancy_lite import Chancy, Job, Queue
from chancy_lite.testing import Clock
from chancy_lite.utils import UTC

TOKYO = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture
def tokyo() -> Iterator[None]:
    """Run the test with the process's local time zone set to Asia/Tokyo (UTC+9, no DST)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        assert dt.datetime(2030, 1, 1).astimezone().utcoffset() == dt.timedelta(hours=9)
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_naive_scheduled_at_is_local_time(tokyo: None) -> None:
    soon = dt.datetime.now() + dt.timedelta(seconds=3)  # what a user in Tokyo writes
    job = Job(func="tests.jobs.noop", scheduled_at=soon)
    assert job.scheduled_at.tzinfo is not None
    assert abs(job.scheduled_at - (dt.datetime.now(UTC) + dt.timedelta(seconds=3))) < dt.timedelta(seconds=2)
    assert job.scheduled_at == soon.replace(tzinfo=TOKYO)
    assert job.scheduled_at.timestamp() == soon.timestamp()  # the same instant Python itself gives


def test_aware_datetimes_are_kept(tokyo: None) -> None:
    at = dt.datetime(2030, 1, 1, 12, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert Job(func="tests.jobs.noop", scheduled_at=at).scheduled_at == at
    assert Job(func="tests.jobs.noop", scheduled_at=at.replace(tzinfo=UTC)).scheduled_at.utcoffset() == dt.timedelta(0)


def test_naive_calendar_ends_do_not_overflow(tokyo: None) -> None:
    assert Job(func="tests.jobs.noop", scheduled_at=dt.datetime.min).scheduled_at == dt.datetime.min.replace(tzinfo=UTC)
    assert Job(func="tests.jobs.noop", scheduled_at=dt.datetime.max).scheduled_at == dt.datetime.max.replace(tzinfo=UTC)


def test_stored_naive_schedule_reads_back_as_the_same_instant(tokyo: None, chancy: Chancy) -> None:
    soon = dt.datetime.now() + dt.timedelta(seconds=3)
    ref = chancy.sync_push(Job(func="tests.jobs.noop", scheduled_at=soon))
    stored = chancy.sync_get_job(ref)
    assert stored is not None
    assert stored.scheduled_at.tzinfo is not None and stored.scheduled_at.utcoffset() == dt.timedelta(0)
    assert stored.scheduled_at.timestamp() == pytest.approx(soon.timestamp(), abs=1e-6)


def test_pause_queue_resume_at_naive_is_local_time(tokyo: None, chancy: Chancy) -> None:
    chancy.sync_declare(Queue("q"))
    at = dt.datetime.now() + dt.timedelta(minutes=10)
    chancy.sync_pause_queue("q", resume_at=at)
    resume_at = chancy.sync_get_queue("q").resume_at
    assert resume_at is not None and resume_at.timestamp() == pytest.approx(at.timestamp(), abs=1e-6)
    declared = Queue("r", state=Queue.State.PAUSED, resume_at=at)
    assert declared.resume_at is not None and declared.resume_at.timestamp() == pytest.approx(at.timestamp(), abs=1e-6)


def test_clock_start_naive_is_local_time(tokyo: None) -> None:
    start = dt.datetime(2030, 6, 1, 9, 0)
    clock = Clock(start)
    assert clock() == start.replace(tzinfo=TOKYO)
    clock.set(dt.datetime(2030, 6, 1, 10, 0))
    assert clock() == dt.datetime(2030, 6, 1, 1, 0, tzinfo=UTC)


# ------------------------------------------------------------- the command line


def test_cli_datetimes_follow_the_same_rule(tokyo: None, db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    from chancy_lite.cli import main

    with Chancy(db_path) as app:
        app.sync_migrate()
        app.sync_declare(Queue("q"))
    assert main(["--db", db_path, "queue", "push", "tests.jobs.noop", "--at", "2030-01-01T09:00"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["--db", db_path, "queue", "pause", "q", "--resume-at", "2030-01-01T09:00:00+09:00"]) == 0
    with Chancy(db_path) as app:
        job = app.sync_get_job(job_id)
        assert job is not None and job.scheduled_at == dt.datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
        assert app.sync_get_queue("q").resume_at == dt.datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    capsys.readouterr()
    assert main(["--db", db_path, "queue", "push", "tests.jobs.noop", "--at", "tomorrow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an ISO 8601 date and time" in err[0]
    assert main(["--db", db_path, "queue", "push", "tests.jobs.noop", "--at", "2030-01-01", "--delay", "5"]) == 2

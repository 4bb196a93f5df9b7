"""Helpers for testing code that uses chancy_lite, on the real SQLite code path.

``Clock`` is a clock you move by hand; ``drain`` runs the due jobs of a queue in
the calling process, with the same claim, context and bookkeeping a worker child
uses, so a test needs no worker process and no waiting::

    clock = Clock()
    chancy = Chancy(tmp_path / "jobs.db", clock=clock)
    chancy.sync_migrate()
    chancy.sync_push(Job.from_func(send_report, scheduled_at=clock() + timedelta(hours=1)))
    assert drain(chancy) == []          # not due yet
    clock.advance(hours=1)
    [done] = drain(chancy)
    assert done.state is QueuedJob.State.SUCCEEDED
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable
from typing import Any

from chancy_lite.app import Chancy, RefLike
from chancy_lite.child import ChildConfig, Runner
from chancy_lite.errors import ConfigurationError
from chancy_lite.hooks import JobHooks, hooked
from chancy_lite.job import Job, QueuedJob, ref_id
from chancy_lite.utils import UTC, aware


class Clock:
    """A clock that only moves when told to: pass it as ``Chancy(path, clock=clock)``.

    It keeps UTC whatever zone it is given, so ``advance`` moves real time: a minute is a minute across a
    daylight-saving change (arithmetic on a datetime in a zone with DST would move its wall clock instead).
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = aware(start).astimezone(UTC) if start is not None else dt.datetime.now(UTC)

    def __call__(self) -> dt.datetime:
        return self._now

    def advance(self, seconds: float = 0, **delta: float) -> dt.datetime:
        """Move forward by ``seconds`` (and/or ``timedelta`` keywords such as ``minutes=5``)."""
        self._now += dt.timedelta(seconds=seconds, **delta)
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = aware(when).astimezone(UTC)


def _runner(chancy: Chancy, queue: str) -> Runner:
    config = ChildConfig(
        db_path=chancy.path, prefix=chancy.prefix, busy_timeout=chancy.busy_timeout, synchronous=chancy.synchronous,
        queue=queue, worker_id=f"testing-{os.getpid()}", key=f"testing-{os.getpid()}-{id(chancy):x}",
        polling_interval=0.0,
    )
    runner = Runner(config)
    runner.now = chancy.now
    runner.hooks = JobHooks(hooked(chancy.plugins.values()))  # the app's own objects: no copy in this process
    return runner


def drain(chancy: Chancy, queue: str = "default", *, max_jobs: int | None = None) -> list[QueuedJob]:
    """Run the due jobs of ``queue`` in this process until none is due (by ``chancy``'s clock).

    Retries that are due again at once run in the same call. Returns the final state of every job run, in the
    order they first ran. ``max_jobs`` bounds the number of runs (a job that always fails and retries counts once
    per attempt).
    """
    if chancy.path == ":memory:":
        raise ConfigurationError(
            "drain() needs a database file, not ':memory:' (a memory database is private to one connection and "
            "drain() opens its own, as a worker child does): use a temporary file, such as pytest's "
            "tmp_path / 'jobs.db'"
        )
    runner = _runner(chancy, queue)
    ran: list[str] = []
    try:
        while max_jobs is None or len(ran) < max_jobs:
            jobs = runner.exchange()
            if not jobs:
                break
            runner.run_batch(jobs)
            ran.extend(str(job.id) for job in jobs if str(job.id) not in ran)
        runner.flush()
    finally:
        runner.close()
    return chancy.sync_get_jobs(ran)


def run_inline(chancy: Chancy, job: Job | Callable[..., Any], *, max_runs: int = 1000) -> QueuedJob:
    """Push ``job`` (a ``Job`` or an ``@job`` function) and run it now in this process, on the real claim path,
    with its retries that are due at once; returns the job as stored afterwards (``state`` says how it ended).
    Other due jobs of its queue ahead of it run too, as a worker would run them."""
    ref = chancy.sync_push(job)
    [done] = run_jobs(chancy, [ref], max_runs=max_runs)
    return done


def run_jobs(chancy: Chancy, refs: Iterable[RefLike], *, max_runs: int = 1000) -> list[QueuedJob]:
    """Drain the queues of these jobs until every one of them is finished (or nothing is due any more)."""
    ids = [ref_id(r) for r in refs]
    for _ in range(max_runs):
        jobs = chancy.sync_get_jobs(ids)
        waiting = {j.queue for j in jobs if not j.is_finished}
        if not waiting or not any(drain(chancy, queue) for queue in sorted(waiting)):
            break
    return chancy.sync_get_jobs(ids)

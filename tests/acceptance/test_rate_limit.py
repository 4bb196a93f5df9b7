"""Queue rate limits: at most N claims per fixed window of W seconds, across every worker on the file."""

from __future__ import annotations

import asyncio

from chancy_lite import Chancy, Job, Queue, QueuedJob, Worker


def test_rate_limit_caps_claims_per_window_across_workers(chancy: Chancy) -> None:
    chancy.sync_declare(Queue("api", concurrency=2, rate_limit=3, rate_limit_window=1, polling_interval=30))
    [refs] = list(chancy.sync_push_many([Job(func="tests.jobs.noop", queue="api")] * 9))

    async def run() -> list[QueuedJob]:
        async with (
            Worker(chancy, register_signal_handlers=False),
            Worker(chancy, register_signal_handlers=False),
        ):
            return await chancy.wait_for_jobs(refs, timeout=30)

    jobs = asyncio.run(run())
    assert all(j.state is QueuedJob.State.SUCCEEDED for j in jobs)
    windows: dict[int, int] = {}
    for job in jobs:
        assert job.started_at is not None
        second = int(job.started_at.timestamp())
        windows[second] = windows.get(second, 0) + 1
    assert max(windows.values()) <= 3, windows  # never more than 3 claims in one 1-second window
    assert len(windows) >= 3  # so 9 jobs took at least three windows
    # A rate-limited child sleeps until the next window, not until the 30 s poll.
    span = max(j.started_at for j in jobs) - min(j.started_at for j in jobs)  # type: ignore[type-var]
    assert span.total_seconds() < 15

"""Cron with real workers: runs on time, run by the worker's children; several supervisor processes on one file
and one injected clock take each run exactly once; the README's example runs as written."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.plugins.cron import Cron
from chancy_lite.testing import Clock
from chancy_lite.utils import UTC
from chancy_lite.worker import Worker
from tests.acceptance.test_readme import code_blocks
from tests.worker_support import REPO, lines, run_worker, until

# Before the real clock: what the supervisor pushes at this time is due at once for its children (real time).
PAST = dt.datetime(2024, 6, 1, 0, 0, 30, tzinfo=UTC)


def test_a_schedule_fires_on_time_twice_and_its_jobs_run(db_path: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    clock = Clock(PAST)
    with Chancy(db_path, clock=clock, plugins=[Cron(poll_interval=3600)], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", concurrency=1))
        job = Job(func="tests.jobs.stamp", kwargs={"path": str(out)}, unique_key="every-5")
        Cron.sync_schedule(chancy, "*/5 * * * *", job)
        plugin = chancy.plugins["chancy.cron"]

        async def body(worker: Worker) -> list[QueuedJob]:
            slots = [dt.datetime(2024, 6, 1, 0, 5, tzinfo=UTC), dt.datetime(2024, 6, 1, 0, 10, tzinfo=UTC)]
            for n, slot in enumerate(slots, start=1):
                clock.set(slot - dt.timedelta(seconds=1))
                plugin.wake_up()  # as a changed schedule would: a pass now, a second early
                await asyncio.sleep(0.3)
                assert len(await chancy.list_jobs()) == n - 1, "a run was taken early"
                clock.set(slot)
                plugin.wake_up()
                await until(lambda n=n: len(lines(out)) == n, timeout=20)
            return sorted(await chancy.list_jobs(), key=lambda j: j.scheduled_at)

        jobs = run_worker(chancy, body, heartbeat_timeout=10**7)
    assert [(j.state, j.scheduled_at, j.created_at) for j in jobs] == [
        (QueuedJob.State.SUCCEEDED, slot, slot)
        for slot in (dt.datetime(2024, 6, 1, 0, 5, tzinfo=UTC), dt.datetime(2024, 6, 1, 0, 10, tzinfo=UTC))
    ]


# --------------------------------------------------------- several processes


def set_clock(path: Path, when: dt.datetime) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(repr(when.timestamp()))
    os.replace(tmp, path)


TAKEN = re.compile(r"^(\d+) chancy_lite\.plugins\.cron cron schedule '([^']+)': .* for its run at (\S+)$", re.M)


def test_supervisors_sharing_a_file_take_each_run_exactly_once(db_path: str, tmp_path: Path) -> None:
    keys = [f"k{i:02}" for i in range(12)]
    slots = 12
    clock_path = tmp_path / "clock"
    set_clock(clock_path, PAST)
    with Chancy(db_path, clock=lambda: PAST, plugins=[Cron()], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", concurrency=1, polling_interval=60))
        Cron.sync_schedule(chancy, "* * * * *", *(Job(func="tests.jobs.noop", unique_key=k) for k in keys))
        logs = [tmp_path / f"supervisor-{i}.log" for i in range(3)]
        procs = []
        try:
            for i, log in enumerate(logs):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.cron_main", db_path, str(clock_path), "--worker-id", f"w{i}"],
                    cwd=REPO, stdout=subprocess.PIPE, stderr=log.open("wb"), start_new_session=True,
                ))
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            for minute in range(1, slots + 1):
                now = PAST.replace(second=0) + dt.timedelta(minutes=minute)
                set_clock(clock_path, now)

                def all_taken(now: dt.datetime = now) -> bool:
                    return all(s["next_run"] > now for s in Cron.sync_get_schedules(chancy).values())

                deadline = time.monotonic() + 20
                while not all_taken():
                    assert time.monotonic() < deadline, f"the runs at {now} were not all taken"
                    time.sleep(0.01)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                if proc.stdout is not None:
                    proc.stdout.close()
        jobs = chancy.sync_list_jobs(limit=10_000)
    taken = [m.groups() for log in logs for m in TAKEN.finditer(log.read_text(errors="replace"))]
    per_run = collections.Counter((key, at) for _, key, at in taken)
    expected = {(k, (PAST.replace(second=0) + dt.timedelta(minutes=m)).isoformat()) for k in keys
                for m in range(1, slots + 1)}
    assert set(per_run) == expected
    assert max(per_run.values()) == 1, [run for run, n in per_run.items() if n > 1]
    # The jobs: at most one per run (a run may push nothing while the previous job of its key is unfinished).
    assert len({(j.unique_key, j.scheduled_at) for j in jobs}) == len(jobs) >= len(keys)
    print("runs taken per supervisor:", collections.Counter(pid for pid, _, _ in taken))


# ---------------------------------------------------------------- README


def test_the_readme_cron_example_runs_as_written(tmp_path: Path) -> None:
    blocks = code_blocks()
    for name in ("tasks.py", "cron_example.py"):
        (tmp_path / name).write_text(blocks[name])
    result = subprocess.run([sys.executable, "cron_example.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["nightly-greeting 30 2 * * * America/New_York",
                                          "succeeded hello night owl (attempt 1)"]

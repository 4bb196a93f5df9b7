"""Per-key limits with real workers: exact across four worker processes, nothing held up behind a limited key,
and a worker whose jobs wait on their keys sleeps (no spinning) until a running job of the key ends or its window
rolls over."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.cli import main
from chancy_lite.worker import Worker
from tests.acceptance.test_readme import code_blocks
from tests.worker_support import Supervisor, run_worker, until, workers_of

State = QueuedJob.State
SPAN = "tests.jobs_keyed.span"


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at the very instant of a start counts as before it)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def spans(path: Path) -> dict[str, list[tuple[float, float, int]]]:
    """key -> [(start, end, pid)] as the jobs recorded them."""
    found: dict[str, list[tuple[float, float, int]]] = {}
    for line in path.read_text().splitlines():
        pid, start, end, key = line.split()
        found.setdefault(key, []).append((float(start), float(end), int(pid)))
    return found


@contextlib.contextmanager
def supervisors(db_path: str, tmp_path: Path, n: int, queue: str) -> Iterator[list[Supervisor]]:
    started = [Supervisor(db_path, "--queue", queue, log_path=tmp_path / f"worker-{i}.log") for i in range(n)]
    try:
        for supervisor in started:
            supervisor.wait_ready()
        yield started
    finally:
        for supervisor in started:
            supervisor.close()


def test_per_key_limits_are_exact_under_four_worker_processes(db_path: str, tmp_path: Path) -> None:
    out = tmp_path / "spans.txt"
    with Chancy(db_path) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", state=Queue.State.PAUSED), upsert=True)  # only "keyed" runs children

        def job(seconds: float) -> Job:
            return Job(func=SPAN, queue="keyed", kwargs={"path": str(out), "seconds": seconds})

        jobs = [
            *[job(0.15).with_concurrency(2, key="a")] * 12,  # at most 2 at once
            *[job(0.02).with_rate_limit(2, 1, key="b")] * 9,  # at most 2 per second: five windows at least
            *[job(0.05).with_concurrency(1, key="c").with_rate_limit(4, 1)] * 6,  # one at a time, 4 per second
            *[job(0.02)] * 24,  # pushed last: behind every keyed job, held up by none
        ]
        with supervisors(db_path, tmp_path, 4, "keyed:3"):
            refs = [ref for batch in chancy.sync_push_many(jobs) for ref in batch]
            done = chancy.sync_wait_for_jobs(refs, timeout=60)
        assert [j.state for j in done] == [State.SUCCEEDED] * len(jobs)
        by_key: dict[str, list[QueuedJob]] = {}
        for finished in done:
            by_key.setdefault(finished.limit_key or "-", []).append(finished)

    recorded = spans(out)
    assert {key: len(v) for key, v in recorded.items()} == {"a": 12, "b": 9, "c": 6, "-": 24}
    # Caps: never more jobs of a key running at one instant than its cap (what the jobs themselves saw).
    assert max_overlap([(s, e) for s, e, _ in recorded["a"]]) == 2
    assert max_overlap([(s, e) for s, e, _ in recorded["c"]]) == 1
    # Budgets: never more claims of a key in one window than its limit. A job claimed alone (as these are: their
    # runs are timed past the batch window) has started_at = the claim's own time, which the budget counted.
    for key, limit in (("b", 2), ("c", 4)):
        windows: dict[int, int] = {}
        for finished in by_key[key]:
            assert finished.started_at is not None
            second = int(finished.started_at.timestamp() * 1_000_000) // 1_000_000
            windows[second] = windows.get(second, 0) + 1
        assert max(windows.values()) <= limit, (key, windows)
        assert len(windows) >= -(-len(by_key[key]) // limit), (key, windows)
    # Nothing waited behind a limited key: the unkeyed jobs and key a (about 1 s of work) were done before b's last
    # claim (3 s or more after the push).
    last_b = max(j.started_at for j in by_key["b"] if j.started_at is not None)
    for key in ("-", "a"):
        assert max(j.completed_at for j in by_key[key] if j.completed_at is not None) < last_b, key
    # And the four workers all took part.
    assert len({pid for runs in recorded.values() for _, _, pid in runs}) >= 4


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU of these processes so far (gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


async def quiet(pids: set[int], seconds: float = 0.3) -> bool:
    """Whether these processes used no CPU over ``seconds``."""
    before = cpu_seconds(pids)
    await asyncio.sleep(seconds)
    return cpu_seconds(pids) == before


def test_a_worker_held_back_by_its_keys_sleeps_and_wakes_when_a_slot_frees_or_a_window_opens(
    chancy: Chancy, tmp_path: Path
) -> None:
    out = tmp_path / "spans.txt"
    chancy.sync_declare(Queue("default", state=Queue.State.PAUSED), upsert=True)  # only "limited" runs children
    chancy.sync_declare(Queue("limited", concurrency=4, polling_interval=30), upsert=True)

    def job(seconds: float) -> Job:
        return Job(func=SPAN, queue="limited", kwargs={"path": str(out), "seconds": seconds})

    async def body(worker: Worker) -> tuple[float, float]:
        await until(lambda: len(workers_of(os.getpid())) >= 4, timeout=30, message="children started")
        long = chancy.sync_push(job(2.0).with_concurrency(1, key="k"))
        await until(lambda: chancy.sync_get_job(long).state is State.RUNNING)  # type: ignore[union-attr]
        # Three more of k wait behind the running one; r may run once per 2-second window.
        refs = [chancy.sync_push(job(0.01).with_concurrency(1, key="k")) for _ in range(3)]
        refs += [chancy.sync_push(job(0.01).with_rate_limit(1, 2, key="r")) for _ in range(2)]
        await until(lambda: out.exists() and "r" in out.read_text())  # r's first job ran: its second waits
        # Everything left waits on a key. Once the children are quiet (a busy machine may still be starting one),
        # over a second, idle children and the supervisor use next to no CPU.
        pids = workers_of(os.getpid())
        await until(lambda: quiet(pids), message="children quiet")
        before, own = cpu_seconds(pids), time.process_time()
        await asyncio.sleep(1.0)  # the supervisor's loop runs meanwhile
        used = cpu_seconds(pids) + (time.process_time() - own) - before
        await chancy.wait_for_jobs([long, *refs], timeout=30)
        return used, time.time()

    used, _ = run_worker(chancy, body)
    assert used < 0.2, f"{used:.2f} s of CPU in 1 s while every waiting job was held back by its key"
    recorded = spans(out)
    [(_, long_end, _)] = [run for run in recorded["k"] if run[1] - run[0] > 1.5]
    k_starts = sorted(start for start, end, _ in recorded["k"] if end - start < 1.5)
    # The end of the long k job woke a child at once (the poll is 30 s): the next k job started right after.
    assert 0 <= k_starts[0] - long_end < 1.0, (k_starts[0] - long_end)
    assert max_overlap([(s, e) for s, e, _ in recorded["k"]]) == 1
    # r's second job started in the next 2-second window, soon after it opened (no 30 s poll).
    first_r, second_r = sorted(start for start, _, _ in recorded["r"])
    assert int(first_r) // 2 < int(second_r) // 2
    assert second_r - (int(second_r) // 2 * 2) < 1.0, second_r


# ------------------------------------------------------------- the CLI


def test_the_cli_pushes_a_jobs_key_and_limits_and_shows_them(
    db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Chancy(db_path) as app:
        app.sync_migrate()
    base = ["--db", db_path, "queue", "push", "myproject.jobs.send_email", "--limit-key", "customer-42"]
    assert main([*base, "--concurrency-max", "2", "--rate-limit", "10", "--rate-limit-window", "60"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["--db", db_path, "job", "get", job_id]) == 0
    shown = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines() if ":" in line)
    assert shown["limit_key"].strip() == "customer-42"
    assert shown["key_limits"].strip() == "at most 2 running, at most 10 per 60 s"
    assert main(["--db", db_path, "job", "get", job_id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["limit_key"], data["concurrency_max"], data["rate_limit"], data["rate_limit_window"]) == (
        "customer-42", 2, 10, 60
    )
    # A mistake is one line saying what to change.
    assert main([*base, "--rate-limit", "10"]) == 2
    assert "rate_limit and rate_limit_window go together" in capsys.readouterr().err
    assert main(["--db", db_path, "queue", "push", "myproject.jobs.send_email", "--concurrency-max", "2"]) == 2
    assert "apply per limit_key" in capsys.readouterr().err


# ------------------------------------------------------------ the README


def test_the_readme_example_of_per_key_limits_runs_as_written(tmp_path: Path) -> None:
    blocks = code_blocks()
    for name in ("tasks.py", "limits.py"):
        (tmp_path / name).write_text(blocks[name])
    result = subprocess.run(
        [sys.executable, "limits.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["12 succeeded", "customer-0: at most 2 at once, 3 per 1 s"]

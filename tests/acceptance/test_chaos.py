"""The chaos run, short: real workers SIGKILLed, SIGSTOPped and restarted while they run a mixed batch of jobs,
then a check of the whole ledger (``scripts/chaos.py``; ``./scripts/chaos`` runs the long version).

The ledger checker is also fed made-up ledgers, to show that each rule the run relies on does fire."""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
from pathlib import Path
from typing import Any

from chancy_lite import QueuedJob

SCRIPTS = str(Path(__file__).resolve().parents[2] / "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)

import chaos  # noqa: E402


def test_quick_chaos_run_keeps_a_clean_ledger(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    options = chaos.Options.quick(seed=seed, directory=str(tmp_path), verbose=False)
    report = chaos.run(options)
    summary = f"seed {seed} (rerun with CHAOS_SEED={seed})\n{chaos.format_report(report)}"
    assert report.ok, summary
    # The run really happened: every kind of chaos, jobs killed mid-run, runs recorded, every kind of outcome.
    assert report.kills.get("kill_child", 0) >= 2, summary
    assert report.kills.get("kill_supervisor", 0) >= 1, summary
    assert report.kills.get("stop_child", 0) >= 1, summary
    assert report.kills.get("stop_supervisor", 0) >= 1, summary
    assert report.restarts >= 1, summary
    assert report.runs["cut_by_kill"] >= 1, summary
    assert report.runs["total"] >= report.jobs_created * 0.9, summary
    assert report.runs["ok"] >= report.jobs_created * 0.5, summary
    assert report.runs["raised"] >= 1, summary
    assert sum(report.states.values()) == report.jobs_created, summary
    assert report.states.get("succeeded", 0) and report.states.get("failed", 0), summary
    assert report.unique_duplicates >= 1, summary
    assert report.cancels.get("effective", 0) >= 1, summary
    assert report.orphans >= 1, summary  # children of killed supervisors seen exiting by themselves


# ------------------------------------------------------------------ the checker on made-up ledgers

T0 = 1_700_000_000.0


def planned(index: int, job_id: str, kind: str = "fast", **fields: Any) -> chaos.Planned:
    p = chaos.Planned(index, kind, None, {}, fields.pop("max_attempts", 3), 0.0, **fields)
    p.job_id = job_id
    return p


def stored(job_id: str, state: str = "succeeded", attempts: int = 1, max_attempts: int = 3, **fields: Any) -> QueuedJob:
    when = dt.datetime.fromtimestamp(T0, dt.UTC)
    return QueuedJob(
        id=job_id, func="chaos_jobs.fast", queue="chaos", state=QueuedJob.State(state), attempts=attempts,
        max_attempts=max_attempts, created_at=fields.pop("created_at", when), scheduled_at=when,
        completed_at=fields.pop("completed_at", when + dt.timedelta(seconds=60)), **fields,
    )


def checked(pushes: list[chaos.Planned], jobs: list[QueuedJob], runs: list[tuple[Any, ...]],
            hits: dict[int, list[float]] | None = None) -> dict[str, int]:
    report = chaos.Report("(made up)", 0.0)
    chaos.check(report, pushes, {str(j.id): j for j in jobs}, runs, hits or {})
    return report.violations


def test_checker_accepts_a_clean_ledger() -> None:
    runs = [("a", 0, 100, T0 + 1, T0 + 2, "raised:ChaosFailure"), ("a", 1, 101, T0 + 3, T0 + 4, "ok")]
    assert checked([planned(0, "a")], [stored("a", attempts=2)], runs) == {}


def test_checker_flags_a_second_success_unless_a_kill_cut_the_first() -> None:
    runs = [("a", 0, 100, T0 + 1, T0 + 2, "ok"), ("a", 1, 101, T0 + 3, T0 + 4, "ok")]
    jobs = [stored("a", attempts=2)]
    assert checked([planned(0, "a")], jobs, runs) == {"duplicate_success": 1}
    # Killed after its last write, before its outcome reached the queue: the repeat is legitimate...
    assert checked([planned(0, "a")], jobs, runs, {100: [T0 + 2.1]}) == {}
    # ...but not if the process went on to start another run before the kill.
    later = [*runs, ("b", 0, 100, T0 + 2.5, T0 + 2.6, "ok")]
    violations = checked([planned(0, "a"), planned(1, "b")], [*jobs, stored("b")], later, {100: [T0 + 5]})
    assert violations == {"duplicate_success": 1}


def test_checker_flags_lost_stuck_and_over_attempted_jobs() -> None:
    pushes = [planned(0, "gone"), planned(1, "stuck"), planned(2, "over", max_attempts=2)]
    jobs = [stored("stuck", state="running", attempts=0), stored("over", state="failed", attempts=3, max_attempts=2)]
    runs = [("over", 2, 100, T0 + 1, T0 + 2, "raised:ChaosFailure")]
    assert checked(pushes, jobs, runs) == {
        "lost": 1, "not_terminal": 1, "attempts_above_max": 1, "run_above_max": 1,
    }


def test_checker_flags_overlaps_open_runs_and_unexplained_deaths() -> None:
    died = {"attempt": 0, "traceback": "the worker process running this job died (killed by SIGKILL, pid 100)"}
    runs = [("a", 0, 100, T0 + 1, None, None), ("a", 1, 101, T0 + 1.5, T0 + 2, "ok")]
    jobs = [stored("a", attempts=2, errors=[died])]
    assert checked([planned(0, "a")], jobs, runs) == {"open_run_unexplained": 1, "unexplained_death": 1}
    # Killed at T0 + 3, the open run "ended" then: the next run started while it was still held.
    assert checked([planned(0, "a")], jobs, runs, {100: [T0 + 3]}) == {"overlapping_runs": 1}
    assert checked([planned(0, "a")], jobs, runs, {100: [T0 + 1.2]}) == {}


def test_checker_flags_cancelled_jobs_that_ran_on() -> None:
    cancelled_at = dt.datetime.fromtimestamp(T0 + 2, dt.UTC)
    entry = {"attempt": 0, "traceback": "cancelled: cancel_job() was called"}
    job = stored("a", state="failed", attempts=1, errors=[entry], completed_at=cancelled_at)
    target = planned(0, "a", cancel_sent=T0 + 2.5)
    assert checked([target], [job], [("a", 0, 100, T0 + 1, T0 + 1.5, "raised:JobCancelled")]) == {}
    assert checked([target], [job], [("a", 0, 100, T0 + 3, T0 + 3.5, "ok")]) == {"ran_after_cancel": 1}
    # Claimed before the cancel, started before the child heard of it: it must be interrupted (or cut short).
    assert checked([target], [job], [("a", 0, 100, T0 + 2.6, T0 + 2.601, "raised:JobCancelled")]) == {}
    assert checked([target], [job], [("a", 0, 100, T0 + 2.6, None, None)]) == {}
    assert checked([planned(0, "a")], [job], []) == {"unexpected_cancel": 1}
    # A cancel that returned before the job finished must have left its error entry.
    done = stored("a", state="succeeded", completed_at=dt.datetime.fromtimestamp(T0 + 5, dt.UTC))
    ok = [("a", 0, 100, T0 + 1, T0 + 4, "ok")]
    assert checked([planned(0, "a", cancel_sent=T0 + 6)], [done], ok) == {}
    assert checked([planned(0, "a", cancel_sent=T0 + 2)], [done], ok) == {"cancel_ignored": 1}
    retried = [("a", 0, 100, T0 + 1, T0 + 1.5, "raised:JobCancelled"), ("a", 1, 100, T0 + 1.6, T0 + 1.7, "ok")]
    violations = checked([target], [job], retried)
    assert violations == {"retried_after_cancel": 1}


def test_checker_flags_unique_keys_shared_by_active_jobs() -> None:
    first = stored("a", unique_key="k", completed_at=dt.datetime.fromtimestamp(T0 + 10, dt.UTC))
    second = stored("b", unique_key="k", created_at=dt.datetime.fromtimestamp(T0 + 5, dt.UTC))
    pushes = [planned(0, "a", unique_key="k", pushed_at=T0), planned(1, "b", unique_key="k", pushed_at=T0 + 5)]
    runs = [("a", 0, 100, T0 + 1, T0 + 2, "ok"), ("b", 0, 100, T0 + 6, T0 + 7, "ok")]
    assert checked(pushes, [first, second], runs) == {"unique_overlap": 1}
    pushes[1].pushed_at = T0 + 11
    assert checked(pushes, [first, second], runs) == {}


def test_checker_flags_a_failing_job_that_succeeded() -> None:
    runs = [("a", 0, 100, T0 + 1, T0 + 2, "ok")]
    assert checked([planned(0, "a", kind="failing")], [stored("a")], runs) == {"failing_succeeded": 1}


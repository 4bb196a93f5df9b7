"""What changes when a row crosses between chancy_lite and Chancy, and what cannot cross: pure functions, no I/O.

A *blocker* is a reason the transfer would be wrong (a job running in the file, an option Chancy would reject,
a schema this code does not know). The transfer collects every blocker before it writes anything; ``--dry-run``
prints them all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chancy_lite.utils import from_micros, to_micros

# Migration versions of each Chancy release this code writes to (Chancy's own `{p}schema_version` rows).
RELEASES: dict[str, dict[str, int]] = {
    "0.25": {"chancy": 6, "cron": 2, "workflow": 2},
    "0.26": {"chancy": 8, "cron": 3, "workflow": 3},
}
WAITING = ("pending", "retrying")
FINISHED = ("succeeded", "failed")
ACTIVE_WORKFLOW = ("pending", "running")

# chancy_lite executor -> Chancy executor, and the options Chancy's constructor of that executor accepts.
_EXECUTORS = {
    "chancy_lite.executors.process.ProcessExecutor": (
        "chancy.executors.process.ProcessExecutor", {"maximum_jobs_per_worker"}),
    "chancy_lite.executors.thread.ThreadedExecutor": ("chancy.executors.thread.ThreadedExecutor", set()),
    "chancy_lite.executors.asyncex.AsyncExecutor": ("chancy.executors.asyncex.AsyncExecutor", set()),
}
# The reverse, for import: Chancy's executors (and SubInterpreter, which chancy_lite runs as threads).
_LITE_EXECUTORS = {chancy: lite for lite, (chancy, _) in _EXECUTORS.items()}
_LITE_EXECUTORS["chancy.executors.sub.SubInterpreterExecutor"] = "chancy_lite.executors.thread.ThreadedExecutor"


@dataclasses.dataclass(frozen=True)
class Blocker:
    """One reason a transfer cannot go ahead: ``kind`` (schema, queue, running, worker, cron, workflow), the
    ``subject`` it is about (a queue name, a job id, ...) and a sentence saying what to do."""

    kind: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.message}"


def release_of(versions: Mapping[str, int] | None) -> tuple[str | None, list[Blocker]]:
    """The Chancy release whose migrations made this schema ("0.25" or "0.26"), or None and why not."""
    if versions is None:
        return None, [Blocker("schema", "target", "no schema_version table: run Chancy's migrate() on this database"
                              " first (chancy_lite never creates or writes Chancy's schema)")]
    core = versions.get("chancy")
    for release, wanted in RELEASES.items():
        if core == wanted["chancy"]:
            wrong = [f"{key} v{versions[key]} (want v{want})" for key, want in wanted.items()
                     if key != "chancy" and key in versions and versions[key] != want]
            if wrong:
                return None, [Blocker("schema", "target", f"core schema is Chancy {release}'s but "
                                      + ", ".join(wrong) + ": migrate with one Chancy release")]
            return release, []
    known = ", ".join(f"{r} (chancy v{v['chancy']})" for r, v in RELEASES.items())
    return None, [Blocker("schema", "target", f"core schema version {core!r} is not one this export knows: {known}")]


def _whole(value: Any) -> bool:
    return value is None or float(value).is_integer()


def queue_to_chancy(row: Sequence[Any]) -> tuple[dict[str, Any], list[Blocker]]:
    """A ``LITE_QUEUES`` row as ``PG_INSERT_QUEUE`` parameters, with what Chancy could not take."""
    (name, state, concurrency, tags, executor, options, polling, rate_limit, window, resume_at, eager,
     created_at) = row
    blockers = []
    options_dict = json.loads(options) if options else {}
    mapped = _EXECUTORS.get(executor)
    if mapped is None:
        chancy_executor = executor
        blockers.append(Blocker("queue", name, f"executor {executor!r} is not one of chancy_lite's built-in"
                                " executors, and Chancy cannot run it: declare the queue with a built-in executor"))
    else:
        chancy_executor, accepted = mapped
        rejected = sorted(set(options_dict) - accepted)
        if rejected:
            blockers.append(Blocker("queue", name, f"executor option(s) {', '.join(rejected)} would make Chancy's"
                                    f" {chancy_executor.rsplit('.', 1)[1]} fail to start (it accepts"
                                    f" {', '.join(sorted(accepted)) or 'none'}): redeclare the queue without them"))
    if not _whole(polling):
        blockers.append(Blocker("queue", name, f"polling_interval {polling:g} s is fractional; Chancy stores whole"
                                " seconds: redeclare the queue with an integer"))
    if not _whole(window):
        blockers.append(Blocker("queue", name, f"rate_limit_window {window:g} s is fractional; Chancy stores"
                                " whole seconds: redeclare the queue with an integer window"))
    params = {
        "name": name, "state": state, "concurrency": concurrency, "tags": sorted(json.loads(tags)),
        "executor": chancy_executor, "executor_options": json.dumps(options_dict),
        "polling_interval": int(polling) if _whole(polling) else polling,
        "rate_limit": rate_limit, "rate_limit_window": int(window) if window is not None and _whole(window) else window,
        "resume_at": from_micros(resume_at), "eager_polling": bool(eager), "created_at": from_micros(created_at),
    }
    return params, blockers


def queue_to_lite(row: Sequence[Any]) -> dict[str, Any]:
    """A ``PG_QUEUES`` row as ``LITE_INSERT_QUEUE`` parameters (Chancy's executors mapped to chancy_lite's)."""
    (name, state, concurrency, tags, executor, options, polling, rate_limit, window, resume_at, eager,
     created_at) = row
    return {
        "name": name, "state": state, "concurrency": concurrency, "tags": json.dumps(sorted(tags or [".*"])),
        "executor": _LITE_EXECUTORS.get(executor, executor), "executor_options": options or "{}",
        "polling_interval": polling if polling is not None else 5, "rate_limit": rate_limit,
        "rate_limit_window": window, "resume_at": _micros(resume_at), "eager_polling": int(bool(eager)),
        "created_at": _micros(created_at),
    }


def job_to_chancy(row: Sequence[Any], *, requeue: bool = False) -> dict[str, Any]:
    """A ``LITE_JOBS_PAGE`` row as ``PG_INSERT_JOB`` parameters. With ``requeue``, a running job goes back to
    waiting without counting the attempt it was on (as a worker shutdown releases it)."""
    (id_, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts, created_at, started_at,
     completed_at, scheduled_at, unique_key, errors) = row
    if state == "running" and requeue:
        state, started_at = ("retrying" if attempts > 0 else "pending"), None
    return {
        "id": id_, "queue": queue, "func": func, "kwargs": kwargs, "limits": limits, "meta": meta, "state": state,
        "priority": priority, "attempts": attempts, "max_attempts": max_attempts,
        "created_at": from_micros(created_at), "started_at": from_micros(started_at),
        "completed_at": from_micros(completed_at), "scheduled_at": from_micros(int(scheduled_at)),
        "unique_key": unique_key, "errors": errors,
    }


def job_to_lite(row: Sequence[Any], *, requeue: bool = False) -> dict[str, Any]:
    """A ``PG_JOBS_PAGE`` row as ``LITE_INSERT_JOB`` parameters (the reverse of :func:`job_to_chancy`)."""
    (id_, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts, created_at, started_at,
     completed_at, scheduled_at, unique_key, errors) = row
    if state == "running" and requeue:
        state, started_at = ("retrying" if attempts > 0 else "pending"), None
    return {
        "id": id_, "queue": queue, "func": func, "kwargs": _compact(kwargs, "{}"), "limits": _compact(limits, "[]"),
        "meta": _compact(meta, "{}"), "state": state, "priority": priority or 0, "attempts": attempts or 0,
        "max_attempts": max_attempts, "created_at": _micros(created_at), "started_at": _micros(started_at),
        "completed_at": _micros(completed_at), "scheduled_at": _micros(scheduled_at), "unique_key": unique_key,
        "errors": _compact(errors, "[]"),
    }


def _compact(text: str | None, empty: str) -> str:
    """JSON text as chancy_lite stores it (compact; ``{}``/``[]`` exactly, which its reader special-cases)."""
    if text is None:
        return empty
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def _micros(value: dt.datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def cron_to_chancy(row: Sequence[Any], release: str) -> tuple[dict[str, Any], list[Blocker]]:
    """A ``LITE_CRON`` row as ``PG_INSERT_CRON_*`` parameters; a zone other than UTC cannot go to 0.25."""
    unique_key, job, cron, timezone, last_run, next_run = row
    blockers = []
    if release == "0.25" and timezone not in ("Etc/UTC", "UTC"):
        blockers.append(Blocker("cron", unique_key, f"runs in {timezone}; Chancy 0.25 evaluates every schedule in"
                                " UTC: migrate the target with Chancy 0.26"))
    return {"unique_key": unique_key, "job": job, "cron": cron, "timezone": timezone,
            "last_run": from_micros(last_run), "next_run": from_micros(next_run)}, blockers


def cron_to_lite(row: Sequence[Any]) -> dict[str, Any]:
    unique_key, job, cron, timezone, last_run, next_run = row
    return {"unique_key": unique_key, "job": _compact(job, "{}"), "cron": cron, "timezone": timezone or "Etc/UTC",
            "last_run": _micros(last_run), "next_run": _micros(next_run)}


def workflow_to_chancy(row: Sequence[Any]) -> dict[str, Any]:
    id_, name, state, created_at, updated_at = row
    return {"id": id_, "name": name, "state": state, "created_at": from_micros(created_at),
            "updated_at": from_micros(updated_at)}


def step_to_chancy(row: Sequence[Any]) -> dict[str, Any]:
    workflow_id, step_id, job_data, dependencies, job_id, created_at, updated_at = row
    return {"workflow_id": workflow_id, "step_id": step_id, "job_data": job_data, "dependencies": dependencies,
            "job_id": job_id, "created_at": from_micros(created_at), "updated_at": from_micros(updated_at)}


def workflow_to_lite(row: Sequence[Any]) -> dict[str, Any]:
    id_, name, state, created_at, updated_at = row
    return {"id": id_, "name": name, "state": state, "created_at": _micros(created_at),
            "updated_at": _micros(updated_at)}


def step_to_lite(row: Sequence[Any]) -> dict[str, Any]:
    workflow_id, step_id, job_data, dependencies, job_id, created_at, updated_at = row
    return {"workflow_id": workflow_id, "step_id": step_id, "job_data": _compact(job_data, "{}"),
            "dependencies": _compact(dependencies, "[]"), "job_id": job_id, "created_at": _micros(created_at),
            "updated_at": _micros(updated_at)}


def running_blockers(running: Iterable[Sequence[Any]], workers: Iterable[Sequence[Any]]) -> list[Blocker]:
    """A running job or a live worker on the file: the job could finish after it was copied (and run twice)."""
    blockers = [Blocker("running", str(id_), f"{func} is running on queue {queue!r} (held by {holder}):"
                        " stop the workers, or pass --requeue-running to copy it as waiting")
                for id_, queue, func, holder, _pid in running]
    blockers += [Blocker("worker", str(worker_id), f"is alive on {host} (pid {pid}): stop it first, or pass"
                         " --requeue-running") for worker_id, host, pid, _expires in workers]
    return blockers


def key_limit_blockers(keyed: Iterable[Sequence[Any]]) -> list[Blocker]:
    """Waiting jobs with per-key limits: Chancy would run them without their caps and rate limits."""
    return [Blocker("key limits", str(key), f"{count} waiting job(s) have per-key limits, which Chancy does not "
                    "enforce: let them run here first, or pass --drop-key-limits to copy them without")
            for key, count in keyed]


def tally(rows: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for queue, state, n in rows:
        counts[(queue, state)] = counts.get((queue, state), 0) + n
    return counts

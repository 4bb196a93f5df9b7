"""What the HTTP API sends and reads, as Chancy 0.26 shapes it: jobs, queues, workers, schedules; JSON encoding.

No web framework here: these are plain functions over chancy_lite's objects, shared by the JSON API and the pages.
Datetimes are ISO 8601 strings (UTC), UUIDs are strings, sets are sorted lists, and a NaN or an infinity (which a
job's meta may hold) becomes the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, so every answer is strict JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from typing import Any

from chancy_lite.job import Job, QueuedJob
from chancy_lite.queue import Queue
from chancy_lite.utils import aware

QUEUE_FIELDS = (
    "name", "concurrency", "tags", "state", "executor", "executor_options", "polling_interval", "rate_limit",
    "rate_limit_window", "resume_at", "eager_polling",
)


def plain(value: Any) -> Any:
    """``value`` made of JSON types only (see the module docstring)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(plain(item) for item in value)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value) if not f.name.startswith("_")})
    return str(value)


def dumps(value: Any) -> bytes:
    """Strict, compact JSON of ``value`` (through :func:`plain`), UTF-8."""
    return json.dumps(plain(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def job_to_json(job: QueuedJob, taken_by: str | None = None) -> dict[str, Any]:
    """A job as 0.26's API returns a row: ``id``, ``queue``, ``func``, ``kwargs``, ``limits`` (``[{"t", "v"}]``),
    ``meta``, ``state``, ``priority``, ``attempts``, ``max_attempts``, ``taken_by``, ``created_at``, ``started_at``,
    ``completed_at``, ``scheduled_at``, ``unique_key``, ``errors`` (``[{"attempt", "traceback"}]``), ``claim_id``
    (always null in chancy_lite)."""
    return plain({
        "id": job.id, "queue": job.queue, "func": job.func, "kwargs": job.kwargs,
        "limits": [limit.serialize() for limit in job.limits], "meta": job.meta, "state": job.state,
        "priority": job.priority, "attempts": job.attempts, "max_attempts": job.max_attempts, "taken_by": taken_by,
        "created_at": job.created_at, "started_at": job.started_at, "completed_at": job.completed_at,
        "scheduled_at": job.scheduled_at, "unique_key": job.unique_key, "errors": job.errors,
        "claim_id": job.claim_id,
    })


def pack_queue(queue: Queue) -> dict[str, Any]:
    """``Queue.pack()`` of 0.26: every field, ``tags`` a sorted list, ``state`` a string, ``resume_at`` ISO or null."""
    return plain({name: getattr(queue, name) for name in QUEUE_FIELDS})


def unpack_queue(data: dict[str, Any]) -> Queue:
    """A ``Queue`` from a packed dict (the API's queue payload). ``ValueError``/``TypeError`` for a bad one
    (an unknown field, a wrong type, or what ``Queue`` itself refuses)."""
    if not isinstance(data, dict):
        raise TypeError("a queue is a JSON object")
    unknown = sorted(set(data) - set(QUEUE_FIELDS))
    if unknown:
        raise ValueError(f"unknown queue field(s): {', '.join(unknown)}")
    fields = dict(data)
    name = fields.pop("name", None)
    if not isinstance(name, str):
        raise ValueError("a queue needs a name (a string)")
    tags = fields.get("tags")
    if tags is not None:
        if not isinstance(tags, list | tuple | set):
            raise TypeError("tags is a list of regular expressions")
        fields["tags"] = set(tags)
    resume_at = fields.get("resume_at")
    if isinstance(resume_at, str):
        fields["resume_at"] = parse_time(resume_at)
    for key in ("executor_options",):
        if key in fields and fields[key] is None:
            fields[key] = {}
    return Queue(name, **fields)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time; naive means local time, as everywhere in chancy_lite (README "Times")."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time such as 2030-01-31T09:00:00+00:00") from None
    return aware(value)


def worker_to_json(worker: dict[str, Any]) -> dict[str, Any]:
    """A worker row as 0.26 sends it, with ``is_leader``: ``worker_id``, ``hostname``, ``pid``, ``tags`` (list),
    ``queues``, ``last_seen``, ``expires_at``, ``is_leader``."""
    return plain(worker)


def schedule_to_json(schedule: dict[str, Any]) -> dict[str, Any]:
    """A cron schedule as 0.26's ``/api/v1/crons`` sends it: ``unique_key``, ``job`` (the Job as a dict), ``cron``,
    ``timezone``, ``last_run``, ``next_run``."""
    job: Job = schedule["job"]
    as_dict = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    as_dict["limits"] = [limit.serialize() for limit in job.limits]
    return plain({**schedule, "job": as_dict})

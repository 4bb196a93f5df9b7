"""The job filters of 0.26's ``GET /api/v1/jobs`` (and of the dashboard's pages), checked and turned into a
``JobFilter`` for the store.

Query parameters: ``state``, ``queue`` (exact), ``func`` (a case-insensitive substring), ``limit`` (1-100,
default 100), ``before`` (a job id: only older jobs), and ``filters``: a JSON array of ``[key, op, value]``
triples, ANDed with the rest:

=========== ==============================
key         ops
=========== ==============================
state       ``=``
queue       ``=``
func        ``=``, ``~`` (substring)
priority    ``=``, ``>``, ``<``, ``>=``, ``<=``
attempts    ``=``, ``>``, ``<``, ``>=``, ``<=``
=========== ==============================

Anything else is a :class:`BadRequest` (HTTP 422 with a ``title``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from chancy_lite.store import STATE_VALUES, JobFilter

MAX_LIMIT = 100
_OPS = {
    "state": ("=",), "queue": ("=",), "func": ("=", "~"),
    "priority": ("=", ">", "<", ">=", "<="), "attempts": ("=", ">", "<", ">=", "<="),
}
_BIG = 2**62


class BadRequest(Exception):
    """A request the API refuses: HTTP ``status`` (422 by default) with ``{"title": title, "detail"?: detail}``."""

    def __init__(self, title: str, detail: str | None = None, *, status: int = 422) -> None:
        super().__init__(title)
        self.title = title
        self.detail = detail
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"title": self.title} if self.detail is None else {"title": self.title, "detail": self.detail}


def job_filter(params: Mapping[str, str]) -> JobFilter:
    """The ``JobFilter`` of a request's query parameters (``state``, ``queue``, ``func``, ``filters``)."""
    states: set[str] | None = None
    queue: str | None = None
    func: str | None = None
    contains: list[str] = []
    compare: list[tuple[str, str, int]] = []

    def narrow_state(value: Any) -> None:
        nonlocal states
        if value not in STATE_VALUES:
            raise BadRequest("Invalid state", f"state must be one of {', '.join(STATE_VALUES)}, got {value!r}")
        states = {value} if states is None else states & {value}

    def narrow_queue(value: Any) -> None:
        nonlocal queue
        if not isinstance(value, str):
            raise BadRequest("Invalid filter", "queue is compared with a string")
        if queue is not None and queue != value:
            states_none()
        queue = value

    def states_none() -> None:
        nonlocal states
        states = set()

    if params.get("state"):
        narrow_state(params["state"])
    if params.get("queue"):
        narrow_queue(params["queue"])
    if params.get("func"):
        contains.append(params["func"])
    for key, op, value in triples(params.get("filters")):
        if key == "state":
            narrow_state(value)
        elif key == "queue":
            narrow_queue(value)
        elif key == "func":
            if not isinstance(value, str):
                raise BadRequest("Invalid filter", "func is compared with a string")
            if op == "=":
                if func is not None and func != value:
                    states_none()
                func = value
            else:
                contains.append(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or not -_BIG < value < _BIG:
                raise BadRequest("Invalid filter", f"{key} is compared with an integer")
            compare.append((key, op, value))
    ordered = tuple(s for s in STATE_VALUES if states is None or s in states)
    return JobFilter(states=ordered, queue=queue, func=func, func_contains=tuple(contains), compare=tuple(compare))


def triples(text: str | None, ops: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, str, Any]]:
    """``[[key, op, value], ...]`` JSON, each key and operator one of ``ops`` (default: the job filters')."""
    ops = _OPS if ops is None else ops
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        raise BadRequest("Invalid filters", "filters must be a JSON array of [key, op, value] triples") from None
    if not isinstance(data, list):
        raise BadRequest("Invalid filters", "filters must be a JSON array of [key, op, value] triples")
    triples = []
    for item in data:
        if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str) or not isinstance(item[1], str):
            raise BadRequest("Invalid filters", f"each filter is a [key, op, value] triple, got {item!r}")
        key, op, value = item
        if key not in ops:
            raise BadRequest("Invalid filters", f"unknown filter key {key!r}: use one of {', '.join(ops)}")
        if op not in ops[key]:
            raise BadRequest("Invalid filters", f"{key} takes the operators {' '.join(ops[key])}, not {op!r}")
        triples.append((key, op, value))
    return triples


def page_limit(params: Mapping[str, str], default: int = MAX_LIMIT) -> int:
    """``limit``: an integer from 1 to 100 (default 100)."""
    text = params.get("limit")
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest("Invalid limit", "limit must be an integer from 1 to 100") from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest("Invalid limit", "limit must be an integer from 1 to 100")
    return value


def job_id(text: str | None, what: str = "before") -> str | None:
    """A job id (a UUID) in its stored form, or None when absent; ``BadRequest`` when it is not a UUID."""
    if text is None or text == "":
        return None
    try:
        return str(uuid.UUID(text))
    except (ValueError, TypeError):
        raise BadRequest(f"Invalid {what}", f"{what} must be a job id (a UUID)") from None


def truthy(text: str | None, default: bool) -> bool:
    """0.26's reading of a boolean query parameter: ``true``, ``1`` and ``yes`` mean true."""
    if text is None:
        return default
    return text.strip().lower() in ("true", "1", "yes")

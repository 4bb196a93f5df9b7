"""``JobRules``: a small expression language over jobs, shared by ``Pruner`` and ``Reprioritize`` (Chancy's
``chancy.rule``).

Fields: ``Age()`` (seconds since ``created_at``), ``Queue()``, ``Job()`` (the function's import path),
``State()``, ``CreatedAt()``, ``ScheduledAt()`` (datetimes; naive = local time), ``ID()``, ``Priority()``,
``Attempts()``. Compare with ``== != < <= > >=``, or ``.contains(text)`` / ``.ilike(pattern)`` (case-insensitive
for ASCII, as SQLite's LIKE); combine with ``&`` and ``|``, which bind tighter than comparisons in Python, so
parenthesise each comparison: ``(JobRules.Age() > 3600) & (JobRules.Queue() == "bulk")``.

A rule compiles to SQL with every value bound (``Store``), and ``matches(job, now)`` evaluates it on a job in
Python, with the same meaning.
"""

from __future__ import annotations

import datetime as dt
import enum
import fnmatch
from typing import Any

from chancy_lite.job import QueuedJob
from chancy_lite.utils import to_micros

Tree = tuple[Any, ...]  # ("cmp", field, op, value) | ("and" | "or", tree, tree)


class Condition:
    """A rule: combine with ``&`` / ``|``; ``rule`` is its tree (compiled by the store)."""

    def __init__(self, rule: Tree) -> None:
        self.rule = rule

    def __and__(self, other: Condition) -> Condition:
        return Condition(("and", self.rule, other.rule))

    def __or__(self, other: Condition) -> Condition:
        return Condition(("or", self.rule, other.rule))

    def matches(self, job: QueuedJob, now: dt.datetime | None = None) -> bool:
        """Whether ``job`` satisfies the rule at ``now`` (default: the current time)."""
        return _evaluate(self.rule, job, to_micros(now) if now is not None else to_micros(dt.datetime.now(dt.UTC)))

    def __repr__(self) -> str:
        return f"<rule {self.rule!r}>"


class Rule:
    """A field of a job that conditions compare."""

    field = ""

    def _cmp(self, op: str, value: object) -> Condition:
        return Condition(("cmp", self.field, op, _value(value)))

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cmp("==", value)

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cmp("!=", value)

    def __lt__(self, value: object) -> Condition:
        return self._cmp("<", value)

    def __le__(self, value: object) -> Condition:
        return self._cmp("<=", value)

    def __gt__(self, value: object) -> Condition:
        return self._cmp(">", value)

    def __ge__(self, value: object) -> Condition:
        return self._cmp(">=", value)

    def contains(self, text: str) -> Condition:
        """The field holds ``text`` (case-insensitive for ASCII, as Chancy's ILIKE '%text%')."""
        return self._cmp("contains", str(text))

    def ilike(self, pattern: str) -> Condition:
        """The field matches a LIKE ``pattern`` (``%`` any run, ``_`` one character; case-insensitive for ASCII)."""
        return self._cmp("ilike", str(pattern))

    __hash__ = object.__hash__


def _value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return ("datetime", to_micros(value))
    return value


class JobRules:
    class Age(Rule):
        """Seconds since the job was created."""

        field = "age"

    class Queue(Rule):
        field = "queue"

    class Job(Rule):
        """The job function's import path."""

        field = "func"

    class State(Rule):
        field = "state"

    class CreatedAt(Rule):
        field = "created_at"

    class ScheduledAt(Rule):
        field = "scheduled_at"

    class ID(Rule):
        field = "id"

    class Priority(Rule):
        field = "priority"

    class Attempts(Rule):
        field = "attempts"


# ------------------------------------------------------------- in Python


def _field_value(job: QueuedJob, field: str, now: int) -> Any:
    if field == "age":
        return (now - to_micros(job.created_at)) / 1e6 if job.created_at is not None else 0.0
    if field == "state":
        return job.state.value
    if field in ("created_at", "scheduled_at"):
        value = getattr(job, field)
        return to_micros(value) if value is not None else None
    return getattr(job, field)


def _evaluate(tree: Tree, job: QueuedJob, now: int) -> bool:
    kind = tree[0]
    if kind == "and":
        return _evaluate(tree[1], job, now) and _evaluate(tree[2], job, now)
    if kind == "or":
        return _evaluate(tree[1], job, now) or _evaluate(tree[2], job, now)
    _, field, op, value = tree
    actual = _field_value(job, field, now)
    if isinstance(value, tuple) and value and value[0] == "datetime":
        value = value[1]
    if op == "contains":
        return str(value).lower() in str(actual).lower()
    if op == "ilike":
        pattern = str(value).lower().replace("*", "[*]").replace("?", "[?]").replace("%", "*").replace("_", "?")
        return fnmatch.fnmatchcase(str(actual).lower(), pattern)
    if actual is None:
        return False
    return bool({"==": actual == value, "!=": actual != value, "<": actual < value, "<=": actual <= value,
                 ">": actual > value, ">=": actual >= value}[op])


__all__ = ["Condition", "JobRules", "Rule"]

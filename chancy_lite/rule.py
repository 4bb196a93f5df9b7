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
import operator
import uuid
from typing import Any

from chancy_lite.job import QueuedJob
from chancy_lite.utils import to_micros

Tree = tuple[Any, ...]  # ("cmp", field, op, value) | ("and" | "or", tree, tree)


class Condition:
    """A rule: combine with ``&`` / ``|``; ``rule`` is its tree (compiled by the store)."""

    def __init__(self, rule: Tree) -> None:
        self.rule = rule

    def __and__(self, other: Condition) -> Condition:
        return Condition(("and", self.rule, _tree(other, "&")))

    def __or__(self, other: Condition) -> Condition:
        return Condition(("or", self.rule, _tree(other, "|")))

    def matches(self, job: QueuedJob, now: dt.datetime | None = None) -> bool:
        """Whether ``job`` satisfies the rule at ``now`` (default: the current time)."""
        return _evaluate(self.rule, job, to_micros(now) if now is not None else to_micros(dt.datetime.now(dt.UTC)))

    def __repr__(self) -> str:
        return f"<rule {self.rule!r}>"


_NUMBER_FIELDS = {"age", "priority", "attempts"}
_STATES = frozenset(state.value for state in QueuedJob.State)
_TIME_FIELDS = {"created_at", "scheduled_at"}
_INT_RANGE = 2**62  # well inside SQLite's 64-bit integers, also once an age is scaled to microseconds


def _tree(other: object, op: str) -> Tree:
    if not isinstance(other, Condition):
        raise TypeError(f"{op} combines rules such as (JobRules.Queue() == 'q'), got {other!r}: parenthesise each "
                        "comparison, as & and | bind tighter than == and >")
    return other.rule


def as_tree(rule: object, what: str) -> Tree:
    """The tree of a rule given to a plugin; ``TypeError`` for anything else."""
    if not isinstance(rule, Condition):
        raise TypeError(f"{what} takes a rule such as JobRules.Age() > 3600, got {rule!r}")
    return rule.rule


class Rule:
    """A field of a job that conditions compare."""

    field = ""

    def _cmp(self, op: str, value: object) -> Condition:
        return Condition(("cmp", self.field, op, self._check(op, value)))

    def _check(self, op: str, value: object) -> object:
        """The value as the rule stores it; ``ValueError`` for one this field cannot be compared with."""
        name = f"{type(self).__name__}()"
        if op in ("contains", "ilike") and self.field in _NUMBER_FIELDS | _TIME_FIELDS:
            raise ValueError(f"{name} holds numbers or times: .{op}() compares text")
        if self.field in _TIME_FIELDS:
            if not isinstance(value, dt.datetime):
                raise ValueError(f"{name} compares with a datetime, got {value!r}")
            return ("datetime", to_micros(value))
        if self.field in _NUMBER_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int | float) or not -_INT_RANGE < value < _INT_RANGE:
                raise ValueError(f"{name} compares with a number (within ±2**62), got {value!r}")
            return value
        if isinstance(value, enum.Enum):
            value = value.value
        if self.field == "id" and isinstance(value, uuid.UUID):
            value = str(value)  # ids are stored as their text
        if not isinstance(value, str):
            raise ValueError(f"{name} compares with text, got {value!r}")
        if self.field == "state" and op not in ("contains", "ilike") and value not in _STATES:
            raise ValueError(f"{name} compares with a job state ({', '.join(sorted(_STATES))}), got {value!r}")
        return value

    def __rand__(self, other: object) -> Condition:
        raise TypeError("parenthesise each comparison of a rule: & and | bind tighter than == and >")

    __ror__ = __rand__

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


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    """Lower-case A-Z only, as SQLite's LIKE compares."""
    return text.translate(_ASCII_LOWER)


def _field_value(job: QueuedJob, field: str, now: int) -> Any:
    if field == "age":  # in whole microseconds, as the SQL compares it
        return now - to_micros(job.created_at) if job.created_at is not None else 0
    if field == "state":
        return job.state.value
    if field == "id":
        return str(job.id)
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
    if field == "age":
        value = int(float(value) * 1_000_000)
    if op == "contains":
        return _ascii_lower(str(value)) in _ascii_lower(str(actual))
    if op == "ilike":
        pattern = "".join("*" if c == "%" else "?" if c == "_" else f"[{c}]" if c in "*?[]" else c
                          for c in _ascii_lower(str(value)))
        return fnmatch.fnmatchcase(_ascii_lower(str(actual)), pattern)
    if actual is None:
        return False
    compare = _COMPARE[op]
    return bool(compare(actual, value))


_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge}

__all__ = ["Condition", "JobRules", "Rule"]

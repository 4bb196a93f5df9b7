"""Jobs as data: ``Job``, ``QueuedJob`` (the job context), ``Limit``, ``Reference`` and ``@job``.

Nothing here does I/O. Validation happens when a ``Job`` is built, so bad input
fails at push (or declare) time in the caller, never later in a worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, overload

from chancy_lite.errors import InvalidJobError
from chancy_lite.utils import UTC, aware, importable_name, is_text, utcnow

_FUNC_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,99}$")

F = TypeVar("F", bound=Callable[..., Any])


def check_queue_name(name: object, error: type[Exception] = InvalidJobError) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise error(
            f"queue name {name!r} is not valid: use 1-100 characters from letters, digits, '_', '-', '.', ':'"
            " starting with a letter, digit or '_'"
        )
    return name


@dataclasses.dataclass(frozen=True)
class Limit:
    """A resource limit applied to one run of a job."""

    class Type(enum.StrEnum):
        MEMORY = "memory"  # bytes of address space
        TIME = "time"  # seconds

    type_: Limit.Type
    value: int | float

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "type_", Limit.Type(self.type_))
        except ValueError:
            raise InvalidJobError(
                f"unknown limit type {self.type_!r}: use Limit.Type.TIME or Limit.Type.MEMORY"
            ) from None
        if isinstance(self.value, bool) or not isinstance(self.value, int | float) or not self.value > 0:
            raise InvalidJobError(f"a {self.type_.value} limit must be a positive number, got {self.value!r}")
        highest = _MAX_LIMITS[self.type_]
        if not self.value <= highest:
            unit = "seconds" if self.type_ is Limit.Type.TIME else "bytes"
            raise InvalidJobError(f"a {self.type_.value} limit must be at most {highest:g} {unit}, got {self.value!r}")

    def serialize(self) -> dict[str, Any]:
        return {"t": self.type_.value, "v": self.value}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Limit:
        return cls(Limit.Type(data["t"]), data["v"])


_MAX_LIMITS = {Limit.Type.TIME: 1e9, Limit.Type.MEMORY: 2**62}  # past these, timers and rlimits overflow
_MIN_WINDOW, _MAX_WINDOW = 0.001, 1e9  # seconds: a window shorter than a claim means nothing


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidJobError(message)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**62


def _check_key_limits(job: Job) -> None:
    """The per-key limits of a job (see ``Job``): a key, and at least one limit for it."""
    key = job.limit_key
    if key is None and job.concurrency_max is None and job.rate_limit is None and job.rate_limit_window is None:
        return
    _check(
        key is None or (isinstance(key, str) and key != "" and is_text(key)),
        f"limit_key must be a non-empty string (such as a customer id) or None, got {key!r}",
    )
    _check(
        job.concurrency_max is None or _is_count(job.concurrency_max),
        f"concurrency_max must be an integer >= 1 (the most jobs of its limit_key running at once) or None,"
        f" got {job.concurrency_max!r}",
    )
    _check(
        (job.rate_limit is None) == (job.rate_limit_window is None),
        "rate_limit and rate_limit_window go together: give both (N jobs of its limit_key per W seconds) or"
        " neither; Job.with_rate_limit(n, seconds, key=...) sets both",
    )
    _check(
        job.rate_limit is None or _is_count(job.rate_limit),
        f"rate_limit must be an integer >= 1 (jobs of its limit_key claimed per window), got {job.rate_limit!r}",
    )
    window = job.rate_limit_window
    _check(
        window is None or (
            isinstance(window, int | float) and not isinstance(window, bool) and _MIN_WINDOW <= window <= _MAX_WINDOW
        ),
        f"rate_limit_window must be a number of seconds from {_MIN_WINDOW:g} to {_MAX_WINDOW:g}, got {window!r}",
    )
    limited = job.concurrency_max is not None or job.rate_limit is not None
    _check(
        key is None or limited,
        f"limit_key {key!r} limits nothing: add .with_concurrency(n) and/or .with_rate_limit(n, seconds), or drop"
        " the key",
    )
    _check(
        key is not None or not limited,
        "concurrency_max and rate_limit apply per limit_key: give the key the limited jobs share, such as"
        " job.with_concurrency(2, key='customer-42')",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """A unit of work: which function to call, with what, and how.

    Per-key limits (chancy_lite's take on Chancy PR #50): jobs that share a ``limit_key`` (a customer id, say) share
    its limits, across every worker, process and queue of the file. ``concurrency_max``: at most that many of them
    are claimed (running) at once. ``rate_limit`` per ``rate_limit_window`` seconds: at most that many are claimed
    per fixed window (windows start at whole multiples of the window since the epoch, as queue rate limits). Set
    them with ``with_concurrency`` and ``with_rate_limit``. A job its key's limits hold back waits without holding
    up other jobs; give every job of a key the same limits (each job is checked against its own).
    """

    func: str
    queue: str = "default"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    limits: list[Limit] = dataclasses.field(default_factory=list)
    priority: int = 0
    max_attempts: int = 1
    scheduled_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    unique_key: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    limit_key: str | None = None
    concurrency_max: int | None = None  # jobs of limit_key running at once
    rate_limit: int | None = None  # claims of limit_key per rate_limit_window
    rate_limit_window: float | None = None  # seconds

    def __post_init__(self) -> None:
        if callable(self.func) and not isinstance(self.func, str):
            object.__setattr__(self, "func", importable_name(self.func))
        _check(isinstance(self.func, str), f"func must be an import path string or a function, got {self.func!r}")
        _check(
            bool(_FUNC_PATH.match(self.func)),
            f"func {self.func!r} is not an import path: use 'package.module.function' (a module-level function)",
        )
        _check(
            not self.func.startswith("__main__."),
            f"{self.func} is defined in the script being run (__main__), which workers cannot import: "
            "move it to a module and import it from there",
        )
        check_queue_name(self.queue)
        _check(isinstance(self.kwargs, dict), f"kwargs must be a dict, got {type(self.kwargs).__name__}")
        _check(
            all(isinstance(k, str) for k in self.kwargs), "kwargs keys must be strings (jobs take keyword arguments)"
        )
        _check(isinstance(self.meta, dict), f"meta must be a dict, got {type(self.meta).__name__}")
        _check(
            isinstance(self.priority, int) and not isinstance(self.priority, bool) and -(2**62) < self.priority < 2**62,
            f"priority must be an integer, got {self.priority!r}",
        )
        _check(
            isinstance(self.max_attempts, int)
            and not isinstance(self.max_attempts, bool)
            and 1 <= self.max_attempts < 2**62,
            f"max_attempts must be an integer >= 1 (the total number of tries), got {self.max_attempts!r}",
        )
        _check(
            isinstance(self.scheduled_at, dt.datetime),
            f"scheduled_at must be a datetime, got {type(self.scheduled_at).__name__}",
        )
        object.__setattr__(self, "scheduled_at", aware(self.scheduled_at))
        _check(
            self.unique_key is None or (isinstance(self.unique_key, str) and self.unique_key != ""),
            f"unique_key must be a non-empty string or None, got {self.unique_key!r}",
        )
        _check(
            self.unique_key is None or is_text(self.unique_key),
            f"unique_key {self.unique_key!r} is not valid text: it holds a lone surrogate (undecodable bytes?)",
        )
        _check(
            isinstance(self.limits, list | tuple) and all(isinstance(lim, Limit) for lim in self.limits),
            "limits must be a list of Limit objects",
        )
        object.__setattr__(self, "limits", list(self.limits))
        _check_key_limits(self)

    @classmethod
    def from_func(cls, func: Callable[..., Any], **fields: Any) -> Job:
        return cls(func=importable_name(func), **fields)

    def with_priority(self, priority: int) -> Job:
        return dataclasses.replace(self, priority=priority)

    def with_max_attempts(self, max_attempts: int) -> Job:
        return dataclasses.replace(self, max_attempts=max_attempts)

    def with_scheduled_at(self, scheduled_at: dt.datetime) -> Job:
        return dataclasses.replace(self, scheduled_at=scheduled_at)

    def with_limits(self, limits: list[Limit]) -> Job:
        return dataclasses.replace(self, limits=limits)

    def with_kwargs(self, **kwargs: Any) -> Job:
        return dataclasses.replace(self, kwargs=kwargs)

    def with_unique_key(self, unique_key: str | None) -> Job:
        return dataclasses.replace(self, unique_key=unique_key)

    def with_queue(self, queue: str) -> Job:
        return dataclasses.replace(self, queue=queue)

    def with_meta(self, meta: dict[str, Any]) -> Job:
        return dataclasses.replace(self, meta=meta)

    def with_concurrency(self, max_concurrent: int, key: str | None = None) -> Job:
        """At most ``max_concurrent`` (an int >= 1) jobs of ``key`` run at once, across every worker of the file.

        ``key`` (such as ``"customer-42"``) becomes the job's ``limit_key``; None keeps the key it has. A job over
        the cap waits, holding up no other job, until a running job of its key ends. As Chancy PR #50's
        ``Job.with_concurrency(max_concurrent, key=...)``. Raises InvalidJobError for a cap below 1, a missing key,
        or a key other than the one the job's rate limit uses.
        """
        key = self._limit_key_for(key, "with_concurrency", other="rate_limit")
        return dataclasses.replace(self, limit_key=key, concurrency_max=max_concurrent)

    def with_rate_limit(self, limit: int, window: float, key: str | None = None) -> Job:
        """At most ``limit`` (an int >= 1) jobs of ``key`` are claimed per fixed window of ``window`` seconds
        (0.001 to 1e9), across every worker of the file.

        ``key`` becomes the job's ``limit_key``; None keeps the key it has. A job over the budget waits, holding up
        no other job, until the next window. Raises InvalidJobError for bad numbers, a missing key, or a key
        other than the one the job's concurrency cap uses.
        """
        key = self._limit_key_for(key, "with_rate_limit", other="concurrency_max")
        return dataclasses.replace(self, limit_key=key, rate_limit=limit, rate_limit_window=window)

    def _limit_key_for(self, key: str | None, method: str, *, other: str) -> str | None:
        if key is None and self.limit_key is None:
            raise InvalidJobError(
                f"{method}() needs a key: the jobs that share one share the limit, e.g. key='customer-42'"
            )
        if key is not None and self.limit_key is not None and key != self.limit_key and getattr(self, other):
            raise InvalidJobError(
                f"{method}(key={key!r}): this job's {other} already applies to limit_key {self.limit_key!r}, and a"
                " job has one limit key for its concurrency cap and rate limit: use the same key for both"
            )
        return key if key is not None else self.limit_key

    def limit(self, type_: Limit.Type) -> int | float | None:
        """The value of the limit of this type, if the job has one."""
        for lim in self.limits:
            if lim.type_ is type_:
                return lim.value
        return None

    def pack(self) -> dict[str, Any]:
        """The compact dict form used by cron schedules and workflows."""
        return {
            "f": self.func,
            "k": self.kwargs,
            "p": self.priority,
            "a": self.max_attempts,
            "s": self.scheduled_at.timestamp(),
            "l": [lim.serialize() for lim in self.limits],
            "u": self.unique_key,
            "q": self.queue,
            "m": self.meta,
            **({"lk": self.limit_key, "lc": self.concurrency_max, "lr": self.rate_limit, "lw": self.rate_limit_window}
               if self.limit_key is not None else {}),
        }

    @classmethod
    def unpack(cls, data: dict[str, Any]) -> Job:
        return cls(
            func=data["f"],
            kwargs=data.get("k") or {},
            priority=data.get("p", 0),
            max_attempts=data.get("a", 1),
            scheduled_at=_from_epoch(data["s"]) if data.get("s") is not None else utcnow(),
            limits=[Limit.deserialize(lim) for lim in data.get("l") or []],
            unique_key=data.get("u"),
            queue=data.get("q", "default"),
            meta=data.get("m") or {},
            limit_key=data.get("lk"),
            concurrency_max=data.get("lc"),
            rate_limit=data.get("lr"),
            rate_limit_window=data.get("lw"),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueuedJob(Job):
    """A job as stored: the context a running job receives.

    Immutable except ``meta``, whose changes the worker saves when the job ends.
    """

    class State(enum.StrEnum):
        PENDING = "pending"
        RUNNING = "running"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id: uuid.UUID  # a str is accepted and converted (as Chancy 0.26's ``QueuedJob.unpack``)
    attempts: int = 0
    state: QueuedJob.State = State.PENDING
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # A time.monotonic() deadline, set only by executors that enforce TIME limits cooperatively (Chancy 0.26).
    _time_limit_deadline: float | None = dataclasses.field(default=None, compare=False, repr=False)
    #: Chancy 0.26's claim token. Always None here: chancy_lite fences a stale result by the claiming process
    #: and the attempt instead (see the README, "Differences from Chancy").
    claim_id: uuid.UUID | None = None
    # Set by the runner of this job: saves meta while the job runs (``progress``), at most a few times a second.
    _reporter: Callable[[QueuedJob], None] | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Built from a stored row, which was validated when it was pushed: only the id's type is settled here.
        # Text that is a UUID becomes one; other text (a context built by hand in a test) is kept as given,
        # as Chancy's dataclass would.
        if isinstance(self.id, str):
            with contextlib.suppress(ValueError):
                object.__setattr__(self, "id", uuid.UUID(self.id))

    @property
    def time_remaining(self) -> float | None:
        """Seconds left before this run's cooperative TIME limit (floored at 0.0), or None when none applies.

        Only executors without automatic time limits (the Threaded executor) set one; on the Process and Async
        executors the limit interrupts the job by itself and this is None. As Chancy 0.26 ``QueuedJob``.
        """
        if self._time_limit_deadline is None:
            return None
        return max(0.0, self._time_limit_deadline - time.monotonic())

    def checkpoint(self) -> None:
        """Raise ``TimeoutError`` if this run's cooperative TIME limit has passed; otherwise do nothing.

        Long jobs on the Threaded executor call it between steps: a thread cannot be interrupted from outside,
        so the limit takes effect only here (and once more when the function returns). Safe on any executor.
        As Chancy 0.26 ``QueuedJob.checkpoint``.
        """
        if self._time_limit_deadline is not None and time.monotonic() >= self._time_limit_deadline:
            raise TimeoutError("Job timed out.")

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report how far this run has got, for the dashboard, ``chancy-lite watch`` and ``get_job``.

        Sets ``meta["progress"]`` to ``{"done": done, "total": total, "message": message, "at": <epoch s>}``
        (``done`` and ``total`` in any unit of work, ``total`` None when unknown) and, in a worker, saves the whole
        ``meta`` while the job runs, so other processes see it: the first call at once, then at most every 0.25 s
        (calls in between cost about a microsecond; the last state is saved when the job ends in any case). A
        write that meets a busy database is skipped, never raised into the job. ``ValueError`` for a negative or
        non-numeric ``done``, a ``total`` that is not positive, or a ``message`` that is not text.
        """
        if isinstance(done, bool) or not isinstance(done, int | float) or not done >= 0:
            raise ValueError(f"progress done must be a number >= 0, got {done!r}")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int | float) or not total > 0):
            raise ValueError(f"progress total must be a number > 0 or None, got {total!r}")
        if message is not None and not isinstance(message, str):
            raise ValueError(f"progress message must be text or None, got {message!r}")
        self.meta["progress"] = {"done": done, "total": total, "message": message, "at": time.time()}
        if self._reporter is not None:
            self._reporter(self)

    def _with_time_limit(self, seconds: float) -> QueuedJob:
        """A copy of this context with a cooperative deadline ``seconds`` from now (``meta`` is shared)."""
        return dataclasses.replace(self, _time_limit_deadline=time.monotonic() + seconds)

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES

    def __repr__(self) -> str:
        return f"<QueuedJob {self.id} {self.func} queue={self.queue} state={self.state.value} attempts={self.attempts}>"


FINISHED_STATES = frozenset({QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED})


class Reference:
    """A handle on a pushed job: its id. Equal to another Reference, the id string or its UUID."""

    __slots__ = ("identifier",)

    def __init__(self, identifier: str | uuid.UUID) -> None:
        self.identifier = str(identifier)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reference):
            return self.identifier == other.identifier
        if isinstance(other, str | uuid.UUID):
            return self.identifier == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.identifier)

    def __str__(self) -> str:
        return self.identifier

    def __repr__(self) -> str:
        return f"Reference({self.identifier!r})"


def _from_epoch(seconds: float) -> dt.datetime:
    """A packed epoch time back to a datetime; the float form can round just past the ends of the calendar."""
    try:
        return dt.datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return (dt.datetime.max if seconds > 0 else dt.datetime.min).replace(tzinfo=UTC)


def as_job(obj: Any) -> Job:
    """Accept a Job or a function decorated with @job."""
    if isinstance(obj, Job):
        return obj
    attached = getattr(obj, "job", None)
    if isinstance(attached, Job):
        return attached
    raise InvalidJobError(
        f"expected a Job or a function decorated with @job, got {obj!r}; wrap a plain function with Job.from_func(fn)"
    )


def stored_uuid(text: str) -> uuid.UUID:
    """The UUID of an id read from the database (trusted: written by ``chancy_uuids``), without re-validating it."""
    value = _new(uuid.UUID)
    _set(value, "int", int(text.replace("-", ""), 16))
    _set(value, "is_safe", uuid.SafeUUID.unknown)
    return value


_new, _set = object.__new__, object.__setattr__


def ref_id(ref: Reference | str | uuid.UUID | QueuedJob) -> str:
    """The stored id text of a reference, id or job."""
    if isinstance(ref, QueuedJob):
        return str(ref.id)
    if isinstance(ref, Reference):
        return ref.identifier
    if isinstance(ref, str | uuid.UUID):
        return str(ref)
    raise TypeError(f"expected a Reference or a job id, got {ref!r}")


@overload
def job(func: F, /) -> F: ...
@overload
def job(*, queue: str = ..., **fields: Any) -> Callable[[F], F]: ...
def job(func: Any = None, /, **fields: Any) -> Any:
    """Mark a function as a job: ``fn.job`` becomes ``Job.from_func(fn, **fields)``.

    The function is returned unchanged and stays callable directly.
    """

    def decorate(fn: F) -> F:
        fn.job = Job.from_func(fn, **fields)  # type: ignore[attr-defined]
        return fn

    return decorate(func) if func is not None else decorate

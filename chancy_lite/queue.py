"""``Queue``: a named stream of jobs and how workers should run it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import re
from typing import Any

from chancy_lite.errors import InvalidExecutorError, InvalidQueueError
from chancy_lite.job import check_queue_name
from chancy_lite.utils import aware, dump_json, import_string


class ExecutorPath(enum.StrEnum):
    """Import paths of the built-in executors, as ``Chancy.Executor`` (Chancy's name). Not to be confused with
    ``chancy_lite.executors.base.Executor``, the class every executor derives from."""

    Process = "chancy_lite.executors.process.ProcessExecutor"
    Threaded = "chancy_lite.executors.thread.ThreadedExecutor"
    Async = "chancy_lite.executors.asyncex.AsyncExecutor"

    def __str__(self) -> str:
        return self.value


# The longest wait a worker accepts (its waits go to select(), which overflows somewhere past 10**11 s).
MAX_SECONDS = 1e9


_EXECUTOR_CHOICES = (
    "use Chancy.Executor.Process, Chancy.Executor.Threaded or Chancy.Executor.Async (process, threaded or async "
    "on the command line), or the import path of a subclass of chancy_lite.executors.base.Executor"
)


def load_executor(path: str, queue: str, *, advice: str = _EXECUTOR_CHOICES) -> type:
    """The Executor class that ``path`` names, for queue ``queue``; else InvalidExecutorError, ending with
    ``advice`` (what to do about it)."""
    from chancy_lite.executors.base import Executor as BaseExecutor  # executors import this module

    try:
        cls = import_string(path)
    except Exception as exc:  # ImportError, or whatever importing the module raised
        cause = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise InvalidExecutorError(
            f"queue {queue!r}: its executor {path!r} cannot be imported ({cause}): {advice}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseExecutor)):
        raise InvalidExecutorError(
            f"queue {queue!r}: its executor {path!r} is {type(cls).__name__} {cls!r}, not an Executor class: {advice}"
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise InvalidExecutorError(
            f"queue {queue!r}: its executor {path!r} is abstract (it does not implement {missing}): {advice}"
        )
    return cls


def _fail(message: str) -> None:
    raise InvalidQueueError(message)


@dataclasses.dataclass(frozen=True)
class Queue:
    """A queue's configuration, as declared and as stored."""

    class State(enum.StrEnum):
        ACTIVE = "active"
        PAUSED = "paused"

    name: str
    concurrency: int | None = dataclasses.field(default=None, kw_only=True)
    tags: set[str] = dataclasses.field(default_factory=lambda: {".*"}, kw_only=True)
    state: Queue.State = dataclasses.field(default=State.ACTIVE, kw_only=True)
    executor: str = dataclasses.field(default=ExecutorPath.Process.value, kw_only=True)
    executor_options: dict[str, Any] = dataclasses.field(default_factory=dict, kw_only=True)
    polling_interval: float = dataclasses.field(default=5, kw_only=True)
    rate_limit: int | None = dataclasses.field(default=None, kw_only=True)
    rate_limit_window: float | None = dataclasses.field(default=None, kw_only=True)
    resume_at: dt.datetime | None = dataclasses.field(default=None, kw_only=True)
    eager_polling: bool = dataclasses.field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        check_queue_name(self.name, InvalidQueueError)
        try:
            object.__setattr__(self, "state", Queue.State(self.state))
        except ValueError:
            _fail(f"queue state must be 'active' or 'paused', got {self.state!r}")
        if self.concurrency is not None and (
            isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int)
            or not 1 <= self.concurrency < 2**62
        ):
            _fail(f"concurrency must be None (the executor's default) or an integer >= 1, got {self.concurrency!r}")
        if isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags):
            _fail("tags must be a set of regular expressions (strings)")
        for tag in self.tags:
            try:
                re.compile(tag)
            except re.error as exc:
                _fail(f"tag {tag!r} is not a valid regular expression: {exc}")
        object.__setattr__(self, "tags", set(self.tags))
        if not isinstance(self.executor, str) or "." not in self.executor:
            _fail(f"executor must be an import path such as Chancy.Executor.Threaded, got {self.executor!r}")
        if self.executor.startswith("chancy.executors."):  # Chancy's own path (Chancy code run on chancy_lite)
            object.__setattr__(self, "executor", "chancy_lite." + str(self.executor)[len("chancy."):])
        object.__setattr__(self, "executor", str(self.executor))
        if not isinstance(self.executor_options, dict):
            _fail("executor_options must be a dict")
        dump_json(self.executor_options, "executor_options")
        if isinstance(self.polling_interval, bool) or not isinstance(self.polling_interval, int | float):
            _fail(f"polling_interval must be a number of seconds, got {self.polling_interval!r}")
        if not 0 < self.polling_interval <= MAX_SECONDS:
            _fail(f"polling_interval must be > 0 and at most {MAX_SECONDS:g} seconds, got {self.polling_interval!r}")
        if (self.rate_limit is None) != (self.rate_limit_window is None):
            _fail("rate_limit and rate_limit_window go together: give both (N jobs per W seconds) or neither")
        if self.rate_limit is not None and (not isinstance(self.rate_limit, int) or not 1 <= self.rate_limit < 2**62):
            _fail(f"rate_limit must be an integer >= 1, got {self.rate_limit!r}")
        if self.rate_limit_window is not None and not (
            isinstance(self.rate_limit_window, int | float) and 0 < self.rate_limit_window <= MAX_SECONDS
        ):
            _fail(
                f"rate_limit_window must be a positive number of seconds (at most {MAX_SECONDS:g}),"
                f" got {self.rate_limit_window!r}"
            )
        if self.resume_at is not None:
            if not isinstance(self.resume_at, dt.datetime):
                _fail(f"resume_at must be a datetime, got {self.resume_at!r}")
            object.__setattr__(self, "resume_at", aware(self.resume_at))
        object.__setattr__(self, "eager_polling", bool(self.eager_polling))

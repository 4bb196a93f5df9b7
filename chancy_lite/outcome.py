"""What becomes of a job after one run: the one retry rule, pure (no I/O, time passed in).

Every place that ends a run uses it: a child process or thread (:mod:`chancy_lite.child`), the Async executor,
:mod:`chancy_lite.testing`, and the recovery of a dead holder's jobs (:mod:`chancy_lite.services.rescuer`,
through bound parameters of ``RECOVER_JOB``). The rule, as Chancy's: ``max_attempts`` is the total number of
tries; a run that raised is ``retrying`` while attempts remain, else ``failed``; a run interrupted by its
worker's shutdown goes back to wait with its attempt not counted; a cancelled run was already written by
``cancel_job``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import traceback
from collections.abc import Sequence
from typing import Any

from chancy_lite.execution import original
from chancy_lite.job import QueuedJob
from chancy_lite.utils import check_json_depth, from_micros, json_default, to_micros

log = logging.getLogger("chancy_lite.child")

State = QueuedJob.State


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one run of a job, ready to be written (``Store.complete_job``)."""

    id: str
    attempts: int  # the attempt count when the job was claimed (the guard)
    state: QueuedJob.State
    completed_at: int | None
    meta: str | None = None  # new meta JSON, or None to keep the stored one
    error: str | None = None  # one JSON error entry to append, or None
    scheduled_at: int | None = None  # when a retry is due, or None to keep
    started_at: int | None = None  # when the run began (µs), for a row that has no start yet
    frees_key: bool = False  # the job counted toward its key's concurrency cap: its end may let another run


def next_outcome(
    job: QueuedJob, error: BaseException | str | None, *, stopping: bool = False, now: int,
    had_meta: bool = False, elapsed: float = 0.0, started_at: int | None = None,
) -> Outcome:
    """The outcome of a run of ``job`` that raised ``error`` (None: it returned), ``now`` in µs.

    ``stopping``: the worker's shutdown interrupted it (PENDING: released, its attempt not counted). The job's
    ``meta`` is saved whatever happened; meta that cannot be saved fails the attempt (the stored meta stays).
    """
    state = State.PENDING if stopping else State.SUCCEEDED if error is None else State.FAILED
    if isinstance(error, BaseException):
        error = original(error)
    meta = None
    if had_meta or job.meta:
        try:
            meta = dump_meta(job.meta)
        except Exception as exc:  # circular, too deep, a repr() that raises: the attempt fails, the old meta stays
            if state is not State.PENDING:
                note = f"the job's meta could not be saved, so the stored meta was kept: {type(exc).__name__}: {exc}"
                if error is not None:
                    note = f"{error if isinstance(error, str) else ''.join(traceback.format_exception(error))}\n{note}"
                error, state = note, State.FAILED
    if state is State.FAILED and job.attempts + 1 < job.max_attempts:
        state = State.RETRYING
    log_outcome(job, state, error, elapsed)
    if state is State.PENDING:
        return Outcome(str(job.id), job.attempts, State.PENDING, None, meta=meta)
    return Outcome(
        str(job.id),
        job.attempts,
        state,
        now if state is not State.RETRYING else None,
        meta=meta,
        error=error_entry(job.attempts, error) if error is not None else None,
        started_at=started_at,
        frees_key=job.concurrency_max is not None,
    )


def stored_view(job: QueuedJob, outcome: Outcome) -> QueuedJob:
    """``job`` (as claimed) as ``outcome`` leaves it stored (``COMPLETE_JOB``/``RELEASE_JOB``), for plugins."""
    released = outcome.state is State.PENDING
    return dataclasses.replace(
        job,
        state=(State.RETRYING if job.attempts else State.PENDING) if released else outcome.state,
        attempts=job.attempts if released else job.attempts + 1,
        started_at=None if released else job.started_at or from_micros(outcome.started_at),
        completed_at=None if released else from_micros(outcome.completed_at),
        scheduled_at=from_micros(outcome.scheduled_at) if outcome.scheduled_at is not None else job.scheduled_at,
        meta=json.loads(outcome.meta) if outcome.meta is not None else job.meta,
        errors=[*job.errors, json.loads(outcome.error)] if outcome.error else list(job.errors),
    )


async def run_completion_hooks(
    plugins: Sequence[Any], job: QueuedJob, outcome: Outcome, error: BaseException | None, *, worker: Any
) -> Outcome:
    """Let plugins change a finished run (Chancy's ``on_job_completed``): each gets the job as it is about to be
    written (state, attempts, completed_at, errors) and may return a changed copy; state, scheduled_at,
    completed_at and meta of the last one are written. A released run (the worker stopped) is not shown."""
    if not plugins or outcome.state is State.PENDING:
        return outcome
    view = stored_view(job, outcome)
    for plugin in plugins:
        changed = await plugin.on_job_completed(worker=worker, job=view, exc=error, result=None)
        view = changed if isinstance(changed, QueuedJob) else view
    retrying = view.state is State.RETRYING
    return dataclasses.replace(
        outcome,
        state=view.state,
        completed_at=None if retrying else to_micros(view.completed_at) if view.completed_at else outcome.completed_at,
        scheduled_at=to_micros(view.scheduled_at) if view.scheduled_at != job.scheduled_at else outcome.scheduled_at,
        meta=dump_meta(view.meta) if (outcome.meta is not None or view.meta) else None,
    )


def after_death(job: QueuedJob, reason: str, *, now: int) -> Outcome:
    """The outcome of a run whose process died (``reason`` says how): the attempt counts."""
    retrying = job.attempts + 1 < job.max_attempts
    return Outcome(
        str(job.id), job.attempts, State.RETRYING if retrying else State.FAILED, None if retrying else now,
        error=error_entry(job.attempts, reason),
    )


def log_outcome(job: QueuedJob, state: QueuedJob.State, error: BaseException | str | None, elapsed: float) -> None:
    """One line per run; a failure at WARNING with the exception's type and message (never the kwargs)."""
    if error is None or state is State.PENDING:
        what = state.value if state is not State.PENDING else "given back to wait (its worker is stopping)"
        log.info("job %s (%s) %s in %.1f ms", job.id, job.func, what, elapsed * 1000)
        return
    attempt = f"attempt {job.attempts + 1} of {job.max_attempts}"
    then = "it will be retried" if state is State.RETRYING else "no attempts left"
    log.warning("job %s (%s) failed on %s after %.1f ms: %s; %s", job.id, job.func, attempt, elapsed * 1000,
                error_summary(error), then)


def error_summary(error: BaseException | str, limit: int = 500) -> str:
    """``Type: message`` of an exception (the last line of a stored traceback), one line, at most ``limit``."""
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    else:
        lines = [line for line in error.strip().splitlines() if line.strip()]
        text = lines[-1].strip() if lines else "error"
    text = _UNSAFE.sub(_escape, " ".join(text.split()))  # a message may carry user input: no terminal codes
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Control characters, bidirectional overrides and lone surrogates, shown escaped in log lines.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def _meta_default(value: Any) -> Any:
    try:
        return json_default(value)
    except TypeError:
        return repr(value)


def error_entry(attempt: int, exc: BaseException | str) -> str:
    """One entry of a job's ``errors``, as JSON: ``{"attempt": n, "traceback": "..."}``."""
    text = exc if isinstance(exc, str) else "".join(traceback.format_exception(exc))
    return json.dumps({"attempt": attempt, "traceback": text})


def dump_meta(meta: dict[str, Any]) -> str:
    """A job's meta as JSON: UUIDs as text, sets as lists, anything else JSON cannot hold as its ``repr``."""
    text = json.dumps(meta, default=_meta_default, allow_nan=True)
    check_json_depth(text, meta, "meta")
    return text

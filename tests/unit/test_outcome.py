"""The one retry rule (chancy_lite.outcome), pure: no file, no clock but the one passed in."""

from __future__ import annotations

import json

from chancy_lite.job import QueuedJob
from chancy_lite.outcome import after_death, error_summary, next_outcome

State = QueuedJob.State
NOW = 1_900_000_000_000_000


def job(attempts: int = 0, max_attempts: int = 3, **fields: object) -> QueuedJob:
    return QueuedJob(id="j1", func="tests.jobs.noop", attempts=attempts, max_attempts=max_attempts,
                     state=State.RUNNING, **fields)  # type: ignore[arg-type]


def test_success_completes_and_keeps_the_start() -> None:
    out = next_outcome(job(), None, now=NOW, started_at=NOW - 5)
    assert (out.state, out.completed_at, out.error, out.started_at, out.attempts) == (State.SUCCEEDED, NOW, None,
                                                                                     NOW - 5, 0)


def test_failure_retries_while_attempts_remain_then_fails() -> None:
    first = next_outcome(job(attempts=0, max_attempts=2), ValueError("boom"), now=NOW)
    assert first.state is State.RETRYING and first.completed_at is None
    assert json.loads(first.error or "")["attempt"] == 0 and "ValueError: boom" in (first.error or "")
    last = next_outcome(job(attempts=1, max_attempts=2), ValueError("boom"), now=NOW)
    assert last.state is State.FAILED and last.completed_at == NOW


def test_a_shutdown_releases_the_job_without_counting_the_attempt() -> None:
    out = next_outcome(job(meta={"k": 1}), None, stopping=True, now=NOW)
    assert out.state is State.PENDING and out.error is None and out.meta == '{"k": 1}'


def test_meta_that_cannot_be_saved_fails_the_attempt() -> None:
    meta: dict[str, object] = {}
    meta["self"] = meta
    out = next_outcome(job(attempts=2, max_attempts=3, meta=meta), None, now=NOW)
    assert out.state is State.FAILED and "could not be saved" in (out.error or "") and out.meta is None


def test_a_death_counts_the_attempt_by_the_same_rule() -> None:
    assert after_death(job(attempts=0, max_attempts=2), "died", now=NOW).state is State.RETRYING
    dead = after_death(job(attempts=1, max_attempts=2), "died", now=NOW)
    assert dead.state is State.FAILED and dead.completed_at == NOW
    assert json.loads(dead.error or "") == {"attempt": 1, "traceback": "died"}


def test_error_summary_is_one_bounded_line() -> None:
    assert error_summary(ValueError("a\nb")) == "ValueError: a b"
    assert error_summary("Traceback...\n  File x\nKeyError: 'k'\n") == "KeyError: 'k'"
    assert len(error_summary(ValueError("x" * 2000))) == 500


def test_error_summary_escapes_what_a_terminal_would_act_on() -> None:
    summary = error_summary(ValueError("a\x00b\u202ec\x1b[31md\x07 \udcff é ✓"))
    assert summary == "ValueError: a\\x00b\\u202ec\\x1b[31md\\x07 \\udcff é ✓"

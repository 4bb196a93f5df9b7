"""Job functions for the Metrics tests that move the test's clock while they run (``drain`` runs them in the test's
process, on the app's clock), so that execution times are exact."""

from __future__ import annotations

from chancy_lite.testing import Clock

#: The clock of the test that runs these jobs (set by the test).
CLOCK: Clock | None = None


def take(*, seconds: float) -> None:
    """Run for ``seconds`` of the test's clock."""
    assert CLOCK is not None, "set tests.metrics_jobs.CLOCK first"
    CLOCK.advance(seconds)


def take_then_fail(*, seconds: float) -> None:
    take(seconds=seconds)
    raise RuntimeError("failed on purpose")

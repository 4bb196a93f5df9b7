"""Shared fixtures: real SQLite files in a temporary directory, and deadline-based waiting."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chancy_lite import Chancy
from chancy_lite.testing import Clock


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.db")


@pytest.fixture
def chancy(db_path: str) -> Iterator[Chancy]:
    """A migrated Chancy on a fresh file."""
    with Chancy(db_path) as app:
        app.sync_migrate()
        yield app


# A fixed start for tests that drive time by hand.
START = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> Clock:
    """A clock that moves only when the test says so, starting at START."""
    return Clock(START)


@pytest.fixture
def clocked(db_path: str, clock: Clock) -> Iterator[Chancy]:
    """A migrated Chancy on a fresh file, on ``clock``, without plugins."""
    with Chancy(db_path, clock=clock, no_default_plugins=True) as app:
        app.sync_migrate()
        yield app


def wait_until(condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.01, message: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {message or condition}")
        time.sleep(interval)

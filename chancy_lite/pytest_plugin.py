"""The pytest plugin of chancy_lite (registered through the ``pytest11`` entry point: installed, it is on).

Fixtures, for testing code that uses chancy_lite (see ``chancy_lite.testing`` and the README, "Testing your own
code"):

* ``chancy_lite_clock``: a ``chancy_lite.testing.Clock`` at the current time, which moves only when told to;
* ``chancy_lite_app``: a migrated ``Chancy`` on a fresh file in the test's ``tmp_path``, on that clock, closed
  after the test. ``@pytest.mark.chancy_lite(plugins=[...], **options)`` passes options to ``Chancy(...)``.

Drain and run jobs with ``chancy_lite.testing.drain``, ``run_jobs`` and ``run_inline``.

And ``pytest --chancy-lite-as-chancy`` (or ``CHANCY_LITE_AS_CHANCY=1``) runs a Chancy project's tests on
chancy_lite (see :mod:`chancy_lite.alias`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chancy_lite import alias


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chancy-lite-as-chancy", action="store_true", default=False,
        help="make `import chancy` load chancy_lite, here and in worker children",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chancy_lite(**options): options for the chancy_lite_app fixture's Chancy(...), such as plugins"
    )
    if config.getoption("--chancy-lite-as-chancy") or alias.wanted(os.environ):
        alias.install()


@pytest.fixture
def chancy_lite_clock() -> object:
    """A clock that moves only when told to (``clock.advance(minutes=5)``), starting now."""
    from chancy_lite.testing import Clock

    return Clock()


@pytest.fixture
def chancy_lite_app(request: pytest.FixtureRequest, tmp_path: Path, chancy_lite_clock: object) -> Iterator[object]:
    """A migrated Chancy on ``tmp_path / "jobs.db"``, on ``chancy_lite_clock``."""
    from chancy_lite import Chancy

    marker = request.node.get_closest_marker("chancy_lite")
    options = dict(marker.kwargs) if marker is not None else {}
    options.setdefault("clock", chancy_lite_clock)
    with Chancy(tmp_path / "jobs.db", **options) as app:
        app.sync_migrate()
        yield app

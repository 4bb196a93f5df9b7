"""pytest plugin: ``pytest --chancy-lite-as-chancy`` (or ``CHANCY_LITE_AS_CHANCY=1``) runs a Chancy project's
tests on chancy_lite (see :mod:`chancy_lite.alias`). Without either it does nothing."""

from __future__ import annotations

import os

import pytest

from chancy_lite import alias


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chancy-lite-as-chancy", action="store_true", default=False,
        help="make `import chancy` load chancy_lite, here and in worker children",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--chancy-lite-as-chancy") or alias.wanted(os.environ):
        alias.install()

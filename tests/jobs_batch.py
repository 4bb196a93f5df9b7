"""Job functions for the batching tests (importable by spawned children)."""

from __future__ import annotations

import os
import time


def mark(*, path: str, value: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{value}\n")


def mark_then_die(*, path: str, value: str) -> None:
    mark(path=path, value=value)
    os._exit(7)


def mark_and_sleep(*, path: str, value: str, seconds: float) -> None:
    mark(path=path, value=value)
    time.sleep(seconds)


def mark_pid(*, path: str) -> None:
    mark(path=path, value=str(os.getpid()))

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


def disarm_watchdog_and_hang(*, path: str, seconds: float = 30) -> None:
    """Cancel the child's own TIME-limit watchdog, block the alarm, and hang: only the supervisor can stop it."""
    import faulthandler
    import signal
    import time

    faulthandler.cancel_dump_traceback_later()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2})
    mark(path=path, value="hanging")
    time.sleep(seconds)

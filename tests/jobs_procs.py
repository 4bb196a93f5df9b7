"""Job functions that start processes, exit or interrupt, for tests/acceptance/test_job_processes.py and
tests/acceptance/test_claimed_vs_started.py (importable by spawned children)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from chancy_lite import QueuedJob
from tests.jobs import stamp


def wait_for_file(*, gate: str, path: str, limit: float = 60.0) -> None:
    """Record the start, then wait (up to ``limit`` s) until the file ``gate`` exists."""
    stamp(path=path, value="started")
    deadline = time.monotonic() + limit
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    stamp(path=path, value="released")


def shell_background_sleep(*, marker: str, path: str) -> None:
    """A shell that backgrounds ``sleep`` and waits for it: killing the shell alone leaves the sleep behind."""
    stamp(path=path, value="started")
    subprocess.run(f"sleep {marker} & wait", shell=True, check=False)


def popen_then_ignore_timeouts(*, marker: str, path: str) -> None:
    """Start ``sleep`` and then refuse to stop: only a kill of the child process ends this job."""
    subprocess.Popen(["sleep", marker])
    stamp(path=path, value="started")
    while True:
        try:
            time.sleep(60)
        except BaseException:  # deliberately deaf to TimeoutError and shutdowns
            stamp(path=path, value="ignored")


def popen_then_wait(*, marker: str, path: str) -> None:
    """Start ``sleep`` (not waited for) and a forked helper, then block until interrupted."""
    subprocess.Popen(["sleep", marker])
    helper = os.fork()
    if helper == 0:  # a forked helper without exec: it lives until killed
        try:
            time.sleep(3600)
        finally:
            os._exit(0)
    stamp(path=path, value=f"started {helper}")
    time.sleep(3600)


def report_signal_dispositions(*, path: str, ctx: QueuedJob) -> None:
    """What a program the job starts, and a helper it forks, inherit of the child's signal handling."""
    status = subprocess.run(["grep", "^SigIgn", "/proc/self/status"], capture_output=True, text=True, check=True)
    ctx.meta["exec_sigign"] = status.stdout.split()[1]
    read, write = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(read)
        names = [n for n in ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM")
                 if signal.getsignal(getattr(signal, n)) != signal.SIG_DFL]
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            names.append("SIGINT")
        os.write(write, " ".join(names).encode() or b"-")
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        ctx.meta["forked_non_default"] = fh.read()
    os.waitpid(helper, 0)
    stamp(path=path, value="done")


def exit_now(*, code: int = 3) -> None:
    sys.exit(code)


async def async_exit(*, code: int = 3) -> None:
    sys.exit(code)


async def async_interrupt() -> None:
    raise KeyboardInterrupt


async def async_ok() -> str:
    return "ok"


def fork_and_wait(*, code: int = 7) -> int:
    """Fork a helper that exits at once and wait for it (also what multiprocessing's fork start does)."""
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


async def async_fork_and_wait() -> int:
    return fork_and_wait()


def fork_storm_then_fail(*, marker: str, path: str) -> None:
    """A shell that keeps starting ``sleep``s, then the job fails while it runs."""
    subprocess.Popen(["sh", "-c", f"while true; do sleep {marker} & done"])
    stamp(path=path, value="started")
    time.sleep(0.3)
    raise RuntimeError("failed with a fork storm running")


def hold_the_gil(*, seconds: int, path: str) -> None:
    """One C call that keeps the GIL for ``seconds`` (libc sleep through ctypes.PyDLL): no other thread of
    the process runs meanwhile."""
    import ctypes

    stamp(path=path, value="started")
    ctypes.PyDLL(None).sleep(seconds)
    stamp(path=path, value="done")


def fail_until(*, path: str, succeed_on: int, ctx: QueuedJob) -> str:
    """Record the start of each attempt, and fail until attempt ``succeed_on`` (1-based)."""
    stamp(path=path, value=f"attempt {ctx.attempts + 1}")
    if ctx.attempts + 1 < succeed_on:
        raise RuntimeError(f"attempt {ctx.attempts + 1} fails")
    return "ok"

"""Helpers for the worker tests: run a Worker in-process, poll with deadlines, read what jobs wrote,
and start ``tests.worker_main`` as a separate supervisor process."""

from __future__ import annotations

import asyncio
import inspect
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from chancy_lite import Chancy
from chancy_lite.proc import is_alive
from chancy_lite.worker import Worker

REPO = str(Path(__file__).resolve().parent.parent)


def run_worker(
    chancy: Chancy, body: Callable[[Worker], Awaitable[Any]], *, stop_within: float = 5.0, **options: Any
) -> Any:
    """``asyncio.run`` a Worker (no signal handlers) around ``body(worker)``; return what it returns.

    The bodies leave no job running, so stopping the worker must be prompt: it fails after ``stop_within`` s.
    """

    async def main() -> Any:
        worker = Worker(chancy, register_signal_handlers=False, **options)
        async with worker:
            result = await body(worker)
            stopping = time.monotonic()
        stopped_in = time.monotonic() - stopping
        assert stopped_in < stop_within, f"the worker took {stopped_in:.1f} s to stop with no job running"
        return result

    return asyncio.run(main())


async def until(condition: Callable[[], Any], timeout: float = 15.0, message: str = "") -> Any:
    """Async ``wait_until``: poll ``condition`` (plain or async) without blocking the loop; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {message or condition}")
        await asyncio.sleep(0.01)


def lines(path: str | Path) -> list[list[str]]:
    """The records a job wrote with ``tests.jobs.stamp``: [pid, time, value...] per line."""
    try:
        with open(path) as fh:
            return [line.split(" ", 2) for line in fh.read().splitlines() if line]
    except FileNotFoundError:
        return []


def pids(path: str | Path) -> list[int]:
    return [int(record[0]) for record in lines(path)]


def gone(pid: int) -> bool:
    """The process is gone (or a zombie, which counts as gone)."""
    return not is_alive(pid)


def children_of(pid: int) -> set[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found.update(int(p) for p in fh.read().split())
        except FileNotFoundError:
            continue
    return found


def is_template(pid: int) -> bool:
    """Whether ``pid`` is a worker's template process (chancy_lite.template), which forks its children."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"chancy_lite.template" in fh.read()
    except OSError:
        return False


def templates_of(pid: int) -> set[int]:
    """The template processes of the supervisor ``pid``."""
    return {child for child in children_of(pid) if is_template(child)}


def workers_of(pid: int) -> set[int]:
    """The worker children of the supervisor ``pid``: spawned by it, or forked by its template."""
    found: set[int] = set()
    for child in children_of(pid):
        found |= children_of(child) if is_template(child) else {child}
    return found


class Supervisor:
    """``python -m tests.worker_main DB ...`` in its own session, with stderr kept in a file."""

    def __init__(self, db_path: str, *args: str, log_path: str | Path) -> None:
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in close())
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_main", db_path, *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True,
        )
        self.pid = self.popen.pid

    def wait_ready(self, timeout: float = 20.0) -> None:
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.popen.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self.popen.stdout.readline()
            if not line:
                break
            if line.strip() == b"ready":
                return
        raise AssertionError(f"the supervisor did not become ready:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the supervisor did not exit within {timeout} s:\n{self.log()}") from None

    def close(self) -> None:
        """Kill whatever is left of its session, and reap it."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(10)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # children left behind, if any
            except (ProcessLookupError, PermissionError):
                pass
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""``chancy-lite watch``: running jobs with their progress, throughput and recent failures; plain when piped,
drawn with rich in a terminal (a real pty), until Ctrl-C."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from chancy_lite import Chancy, Job, Queue
from chancy_lite.worker import Worker
from tests.worker_support import REPO, run_worker, until

COMMAND = [sys.executable, "-m", "chancy_lite"]


async def _a_running_job_with_progress_and_a_failure(chancy: Chancy, release: Path) -> None:
    running = await chancy.push(Job(func="tests.jobs.progress_then_wait", kwargs={"path": str(release), "steps": 40}))
    failed = await chancy.push(Job(func="tests.jobs.fail", kwargs={"message": "disk \x1b[31mfull"}))
    await chancy.wait_for_job(failed, timeout=20)

    async def reported() -> bool:
        job = await chancy.get_job(running)
        return job is not None and job.meta.get("progress", {}).get("done") == 40

    await until(reported, timeout=20)


def test_watch_piped_prints_plain_text(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    chancy.sync_declare(Queue("default", concurrency=2))

    async def body(worker: Worker) -> subprocess.CompletedProcess[str]:
        await _a_running_job_with_progress_and_a_failure(chancy, release)
        try:
            return subprocess.run([*COMMAND, "--db", db_path, "watch", "--once"], capture_output=True, text=True,
                                  timeout=30, cwd=REPO)
        finally:
            release.touch()

    result = run_worker(chancy, body)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "waiting 0  running 1" in out
    assert "tests.jobs.progress_then_wait" in out and "[####################] 40/40  step 40" in out
    assert "recent failures:" in out and "ValueError: disk \\x1b[31mfull" in out  # stored text made printable
    assert "\x1b" not in out  # no colour, no cursor movement


def test_watch_in_a_terminal_draws_live_until_ctrl_c(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    chancy.sync_declare(Queue("default", concurrency=2))

    async def body(worker: Worker) -> tuple[int, str]:
        await _a_running_job_with_progress_and_a_failure(chancy, release)
        pid, fd = pty.fork()
        if pid == 0:  # the child: the command on the pty
            os.chdir(REPO)
            os.environ.update({"COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"})
            os.execv(sys.executable, [*COMMAND, "--db", db_path, "watch", "--interval", "0.2"])
        seen, deadline = b"", time.monotonic() + 20
        try:
            # Two refreshes drawn: the header twice.
            while seen.count(b"chancy-lite watch") < 2 and time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    try:
                        seen += os.read(fd, 65536)
                    except OSError:
                        break
            os.kill(pid, signal.SIGINT)
            _, status = os.waitpid(pid, 0)
        finally:
            release.touch()
            os.close(fd)
        return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")

    code, screen = run_worker(chancy, body)
    assert screen.count("chancy-lite watch") >= 2, screen
    assert "\x1b[" in screen  # drawn with colours and cursor movement
    assert "progress_then_wait" in screen and "40/40" in screen and "recent failures" in screen
    assert code == 0

"""Processes a job starts never outlive it when it ends by timeout, cancel, kill or shutdown, and never
inherit the child's own signal handling (real children, real subprocesses, real signals), whether the child was
forked from the worker's template or spawned."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Limit, Queue, QueuedJob
from chancy_lite.worker import Worker
from tests.conftest import wait_until
from tests.worker_support import Supervisor, gone, lines, run_worker, until

FAILED, SUCCEEDED = QueuedJob.State.FAILED, QueuedJob.State.SUCCEEDED


@pytest.fixture(autouse=True, params=["forkserver", "spawn"])
def start_method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: children forked from the worker's template, and spawned."""
    monkeypatch.setenv("CHANCY_LITE_START_METHOD", request.param)
    return str(request.param)


def new_marker() -> str:
    """A sleep duration no other process on the machine uses: ``sleep 3600.<digits>``."""
    return f"3600.{random.randrange(10**8, 10**9)}"


def sleepers(marker: str) -> list[int]:
    """Live (not zombie) processes running ``sleep <marker>``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", marker.encode()] and not gone(int(name)):
            found.append(int(name))
    return found


def declare(chancy: Chancy, **options: object) -> None:
    chancy.sync_declare(
        Queue("procs", concurrency=1, polling_interval=60, executor_options={"timeout_grace": 0.5, **options}),
        upsert=True,
    )


def test_time_limit_kills_what_the_job_started(chancy: Chancy, tmp_path: Path) -> None:
    """``sleep 3600 & wait`` in a shell: the TimeoutError kills the shell, and the sleep must go too."""
    declare(chancy)
    marker, path = new_marker(), str(tmp_path / "runs")

    async def body(worker: Worker) -> QueuedJob | None:
        ref = await chancy.push(Job(func="tests.jobs_procs.shell_background_sleep", queue="procs",
                                    kwargs={"marker": marker, "path": path}, limits=[Limit(Limit.Type.TIME, 0.5)]))
        await until(lambda: sleepers(marker), message="the job's sleep started")
        job = await chancy.wait_for_job(ref, timeout=15)
        await until(lambda: not sleepers(marker), timeout=5, message="the sleep the job started is gone")
        return job

    job = run_worker(chancy, body)
    assert job is not None and job.state is FAILED and "TimeoutError" in job.errors[-1]["traceback"]


def test_a_job_killed_after_its_grace_period_takes_its_processes_along(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy)
    marker, path = new_marker(), str(tmp_path / "runs")

    async def body(worker: Worker) -> QueuedJob | None:
        ref = await chancy.push(Job(func="tests.jobs_procs.popen_then_ignore_timeouts", queue="procs",
                                    kwargs={"marker": marker, "path": path}, limits=[Limit(Limit.Type.TIME, 0.3)]))
        job = await chancy.wait_for_job(ref, timeout=20)
        await until(lambda: not sleepers(marker), timeout=5, message="the sleep the job started is gone")
        return job

    job = run_worker(chancy, body)
    assert job is not None and job.state is FAILED and "timed out" in job.errors[-1]["traceback"]
    assert [r[2] for r in lines(path)][:2] == ["started", "ignored"]  # it did ignore its TimeoutError


def test_cancel_kills_what_the_job_started_and_its_forked_helper(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy)
    marker, path = new_marker(), str(tmp_path / "runs")

    async def body(worker: Worker) -> tuple[QueuedJob | None, int]:
        ref = await chancy.push(Job(func="tests.jobs_procs.popen_then_wait", queue="procs",
                                    kwargs={"marker": marker, "path": path}, max_attempts=3))
        await until(lambda: lines(path) and sleepers(marker), message="the job started its processes")
        helper = int(lines(path)[0][2].split()[1])
        await chancy.cancel_job(ref)
        job = await chancy.wait_for_job(ref, timeout=15)
        await until(lambda: not sleepers(marker) and gone(helper), timeout=5,
                    message="the sleep and the forked helper are gone")
        return job, helper

    job, _ = run_worker(chancy, body)
    assert job is not None and job.state is FAILED and job.attempts == 1


@pytest.mark.parametrize("how", ["kill the child", "shutdown"])
def test_processes_of_a_job_end_with_its_worker(chancy: Chancy, db_path: str, tmp_path: Path, how: str) -> None:
    """kill -9 of the child running the job, or a shutdown whose timeout interrupts the job."""
    marker, path = new_marker(), str(tmp_path / "runs")
    ref = chancy.sync_push(Job(func="tests.jobs_procs.popen_then_wait", kwargs={"marker": marker, "path": path},
                               max_attempts=2))
    options = ["--queue", "default:1", "--shutdown-timeout", "0.3"]
    with Supervisor(db_path, *options, log_path=tmp_path / "worker.log") as sup:
        sup.wait_ready()
        wait_until(lambda: lines(path) and sleepers(marker), message="the job started its processes")
        child, helper = int(lines(path)[0][0]), int(lines(path)[0][2].split()[1])
        if how == "kill the child":
            os.kill(child, signal.SIGKILL)
            wait_until(lambda: not sleepers(marker) and gone(helper), timeout=10,
                       message="the job's processes died with its child")
            sup.signal(signal.SIGTERM)
        else:
            sup.signal(signal.SIGTERM)
            wait_until(lambda: not sleepers(marker) and gone(helper), timeout=10,
                       message="the job's processes were stopped with it")
        assert sup.wait(15) == 0, sup.log()
    job = chancy.sync_get_job(ref)
    assert job is not None and job.state is not SUCCEEDED


def test_programs_and_forks_of_a_job_do_not_inherit_the_childs_signal_handling(
    chancy: Chancy, tmp_path: Path
) -> None:
    declare(chancy)
    path = str(tmp_path / "runs")

    async def body(worker: Worker) -> QueuedJob | None:
        ref = await chancy.push(Job(func="tests.jobs_procs.report_signal_dispositions", queue="procs",
                                    kwargs={"path": path}))
        return await chancy.wait_for_job(ref, timeout=15)

    job = run_worker(chancy, body)
    assert job is not None and job.state is SUCCEEDED, job and job.errors
    ignored = int(job.meta["exec_sigign"], 16)
    assert not ignored & (1 << (signal.SIGINT - 1)), "a program the job runs starts with SIGINT ignored"
    assert job.meta["forked_non_default"] == "-", job.meta


def test_a_time_limited_job_that_forks_is_not_held_up(chancy: Chancy) -> None:
    """Before: the after-fork reset waited forever in the forked helper for the child's watchdog thread, so a
    job with a TIME limit that forked (os.fork, multiprocessing, preexec_fn) hung until its limit."""
    declare(chancy)
    limit = [Limit(Limit.Type.TIME, 20)]

    async def body(worker: Worker) -> list[QueuedJob]:
        refs = [await chancy.push(Job(func=f, queue="procs", limits=limit))
                for f in ("tests.jobs_procs.fork_and_wait", "tests.jobs_procs.async_fork_and_wait")]
        return await chancy.wait_for_jobs(refs, timeout=10)  # well inside the limit

    for job in run_worker(chancy, body):
        assert job.state is SUCCEEDED, job.errors


def test_a_helper_that_keeps_forking_is_killed_with_all_it_started(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy)
    marker, path = new_marker(), str(tmp_path / "runs")

    async def body(worker: Worker) -> QueuedJob | None:
        ref = await chancy.push(Job(func="tests.jobs_procs.fork_storm_then_fail", queue="procs",
                                    kwargs={"marker": marker, "path": path}))
        job = await chancy.wait_for_job(ref, timeout=15)
        await until(lambda: not sleepers(marker), timeout=5, message="every sleep of the storm is gone")
        return job

    job = run_worker(chancy, body)
    assert job is not None and job.state is FAILED


def test_a_job_deaf_to_shutdown_under_a_killed_supervisor_takes_its_processes_along(
    chancy: Chancy, db_path: str, tmp_path: Path
) -> None:
    """kill -9 of the supervisor: the child hears it (parent-death signal), its job ignores the interruption,
    and no supervisor is left to clean up: the child's watchdog kills what the job started and exits."""
    declare(chancy)
    marker, path = new_marker(), str(tmp_path / "runs")
    chancy.sync_push(Job(func="tests.jobs_procs.popen_then_ignore_timeouts", queue="procs",
                         kwargs={"marker": marker, "path": path}))
    with Supervisor(db_path, log_path=tmp_path / "worker.log") as sup:
        sup.wait_ready()
        wait_until(lambda: lines(path) and sleepers(marker), message="the job started its process")
        child = int(lines(path)[0][0])
        os.kill(sup.pid, signal.SIGKILL)
        wait_until(lambda: gone(child) and not sleepers(marker), timeout=10,
                   message="the child exited and the job's sleep is gone")
    assert "ignored" in [r[2] for r in lines(path)]  # it did ignore the shutdown

"""Processes that die: kill -9 of a child, of the supervisor, of both; SIGTERM drains; a job that
kills its worker every time. Real processes and real signals on a real file."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.proc import is_alive
from chancy_lite.worker import Worker
from tests.conftest import wait_until
from tests.worker_support import Supervisor, gone, lines, pids, run_worker, until, workers_of

SUCCEEDED, FAILED = QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED
RUNNING = QueuedJob.State.RUNNING
HEARTBEAT_TIMEOUT = 90  # recovery must not wait for it


def declare(chancy: Chancy, name: str = "default", concurrency: int = 1) -> None:
    chancy.sync_declare(Queue(name, concurrency=concurrency, polling_interval=60), upsert=True)


# ------------------------------------------------------------------- children


def test_sigkill_of_a_child_recovers_its_job_at_once(chancy: Chancy, tmp_path: Path) -> None:
    declare(chancy, concurrency=2)
    victim_path, bystander_path = str(tmp_path / "victim"), str(tmp_path / "bystander")

    async def body(worker: Worker) -> tuple[QueuedJob | None, QueuedJob | None, float]:
        victim = await chancy.push(Job(func="tests.jobs.hang_first_attempt", kwargs={"path": victim_path},
                                       max_attempts=3))
        bystander = await chancy.push(Job(func="tests.jobs.pid_then_sleep",
                                          kwargs={"path": bystander_path, "seconds": 2.5}))
        await until(lambda: pids(victim_path) and pids(bystander_path), timeout=15, message="both jobs started")
        victim_pid, bystander_pid = pids(victim_path)[0], pids(bystander_path)[0]
        assert victim_pid != bystander_pid
        killed_at = time.monotonic()
        os.kill(victim_pid, signal.SIGKILL)
        victim_job = await chancy.wait_for_job(victim, timeout=10)
        recovered_in = time.monotonic() - killed_at
        assert is_alive(bystander_pid)  # the other child is untouched, still running its job
        running = await chancy.get_job(bystander)
        assert running is not None and running.state is RUNNING
        await until(lambda: len(worker.executors["default"].processes) == 2, timeout=10,  # type: ignore[attr-defined]
                    message="the dead child was replaced")
        return victim_job, await chancy.wait_for_job(bystander, timeout=10), recovered_in

    victim_job, bystander_job, recovered_in = run_worker(chancy, body, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    assert recovered_in < 5, recovered_in
    assert victim_job is not None and victim_job.state is SUCCEEDED
    assert victim_job.attempts == 2
    assert [e["attempt"] for e in victim_job.errors] == [0]
    assert "died" in victim_job.errors[0]["traceback"] and "SIGKILL" in victim_job.errors[0]["traceback"]
    records = lines(victim_path)
    assert [r[2] for r in records] == ["0", "1"]
    assert int(records[1][0]) != int(records[0][0])  # the second attempt ran in the replacement
    assert bystander_job is not None and bystander_job.state is SUCCEEDED
    assert bystander_job.attempts == 1 and bystander_job.errors == []


def test_job_that_kills_its_worker_every_time_stops_after_max_attempts(chancy: Chancy) -> None:
    declare(chancy, concurrency=2)

    async def body(worker: Worker) -> tuple[QueuedJob | None, list[QueuedJob]]:
        doomed = await chancy.push(Job(func="tests.jobs.die", max_attempts=3))
        others = [await chancy.push(Job(func="tests.jobs.noop")) for _ in range(5)]
        doomed_job = await chancy.wait_for_job(doomed, timeout=20)
        # The pool is still serving afterwards.
        later = [await chancy.push(Job(func="tests.jobs.noop")) for _ in range(3)]
        return doomed_job, await chancy.wait_for_jobs(others + later, timeout=20)

    doomed_job, others = run_worker(chancy, body, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    assert doomed_job is not None and doomed_job.state is FAILED
    assert doomed_job.attempts == 3
    assert [e["attempt"] for e in doomed_job.errors] == [0, 1, 2]
    assert all("exit code 3" in e["traceback"] for e in doomed_job.errors), doomed_job.errors
    assert all(j.state is SUCCEEDED for j in others)


# ----------------------------------------------------------------- supervisor


def test_sigkill_of_the_supervisor_children_exit_and_a_new_worker_runs_the_job(
    chancy: Chancy, db_path: str, tmp_path: Path
) -> None:
    declare(chancy, concurrency=2)
    path = str(tmp_path / "hang")
    ref = chancy.sync_push(Job(func="tests.jobs.hang_once", kwargs={"path": path}, max_attempts=2))
    with Supervisor(db_path, "--queue", "default:2", log_path=tmp_path / "supervisor.log") as sup:
        sup.wait_ready()
        wait_until(lambda: pids(path), timeout=15, message="the job started")
        children = workers_of(sup.pid)
        assert len(children) == 2 and pids(path)[0] in children
        sup.signal(signal.SIGKILL)
        sup.wait(5)
        # Children notice their supervisor's death on their own, and leave.
        wait_until(lambda: all(gone(pid) for pid in children), timeout=10, message="the children exited")
    job = chancy.sync_get_job(ref)
    # Interrupted by its supervisor's death: released by the child on its way out, or left for recovery, or (when
    # the release woke the other child a moment before its own parent-death signal arrived) already run again.
    assert job is not None and job.state in (QueuedJob.State.PENDING, RUNNING, SUCCEEDED), job
    assert job.attempts <= 1 and job.errors == []  # the interrupted run was not counted as a failure

    started = time.monotonic()
    done = run_worker(chancy, lambda w: chancy.wait_for_job(ref, timeout=10), heartbeat_timeout=HEARTBEAT_TIMEOUT)
    assert time.monotonic() - started < 5
    assert done is not None and done.state is SUCCEEDED, done
    assert len(pids(path)) == 2


def test_sigkill_of_supervisor_and_children_new_worker_recovers_at_once(
    chancy: Chancy, db_path: str, tmp_path: Path
) -> None:
    declare(chancy, concurrency=1)
    path = str(tmp_path / "hang")
    ref = chancy.sync_push(Job(func="tests.jobs.hang_once", kwargs={"path": path}, max_attempts=2))
    with Supervisor(db_path, "--queue", "default:1", log_path=tmp_path / "supervisor.log") as sup:
        sup.wait_ready()
        wait_until(lambda: pids(path), timeout=15, message="the job started")
        child = pids(path)[0]
        # Everything at once, so nobody gets to clean up: the supervisor stopped first (so it cannot recover
        # its child), then the child (which leads a process group of its own), then the supervisor.
        os.kill(sup.pid, signal.SIGSTOP)
        os.killpg(child, signal.SIGKILL)
        os.killpg(sup.pid, signal.SIGKILL)
        sup.wait(5)
        wait_until(lambda: gone(child), timeout=10, message="the child is dead")
    held = chancy.sync_get_job(ref)
    assert held is not None and held.state is RUNNING  # orphaned: its holder is dead

    started = time.monotonic()
    done = run_worker(chancy, lambda w: chancy.wait_for_job(ref, timeout=10), heartbeat_timeout=HEARTBEAT_TIMEOUT)
    assert time.monotonic() - started < 5  # found by its dead pid, not by a heartbeat timeout
    assert done is not None and done.state is SUCCEEDED
    assert done.attempts == 2
    assert len(done.errors) == 1 and "died" in done.errors[0]["traceback"]


# ------------------------------------------------------------------- shutdown


def test_sigterm_drains_the_running_job(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    declare(chancy, concurrency=2)
    path = str(tmp_path / "drain")
    ref = chancy.sync_push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": path, "seconds": 1.5}))
    with Supervisor(db_path, "--queue", "default:2", log_path=tmp_path / "supervisor.log") as sup:
        sup.wait_ready()
        wait_until(lambda: pids(path), timeout=15, message="the job started")
        children = workers_of(sup.pid)
        assert len(children) == 2
        sup.signal(signal.SIGTERM)
        assert sup.wait(15) == 0, sup.log()
        assert all(gone(pid) for pid in children)
    job = chancy.sync_get_job(ref)
    assert job is not None and job.state is SUCCEEDED, job
    assert job.errors == []
    assert chancy.sync_get_all_workers() == []


def test_sigterm_past_the_shutdown_timeout_leaves_the_job_retryable(
    chancy: Chancy, db_path: str, tmp_path: Path
) -> None:
    declare(chancy, concurrency=1)
    path = str(tmp_path / "long")
    ref = chancy.sync_push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": path, "seconds": 60}))
    with Supervisor(db_path, "--queue", "default:1", "--shutdown-timeout", "0.5",
                    log_path=tmp_path / "supervisor.log") as sup:
        sup.wait_ready()
        wait_until(lambda: pids(path), timeout=15, message="the job started")
        child = pids(path)[0]
        sent = time.monotonic()
        sup.signal(signal.SIGTERM)
        assert sup.wait(10) == 0, sup.log()
        assert time.monotonic() - sent < 5
        assert gone(child)
    job = chancy.sync_get_job(ref)
    assert job is not None
    assert job.state in (QueuedJob.State.PENDING, QueuedJob.State.RETRYING), job
    assert job.completed_at is None
    # Interrupted by the shutdown, not by its own fault: the attempt is not held against it.
    assert job.attempts == 0 and job.errors == []


def test_second_sigterm_stops_at_once(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    declare(chancy, concurrency=1)
    path = str(tmp_path / "long")
    ref = chancy.sync_push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": path, "seconds": 60}))
    with Supervisor(db_path, "--queue", "default:1", log_path=tmp_path / "supervisor.log") as sup:
        sup.wait_ready()
        wait_until(lambda: pids(path), timeout=15, message="the job started")
        sup.signal(signal.SIGTERM)
        wait_until(lambda: "finishing running jobs" in sup.log(), timeout=5, message="the first signal was seen")
        sup.signal(signal.SIGTERM)
        assert sup.wait(8) == 0, sup.log()  # shutdown_timeout is 30 s: the second signal cut it short
    job = chancy.sync_get_job(ref)
    assert job is not None and job.state in (QueuedJob.State.PENDING, QueuedJob.State.RETRYING), job


def test_supervisor_death_is_noticed_by_an_idle_child(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    """Children that were idle (not running a job) leave too when their supervisor is killed."""
    declare(chancy, concurrency=2)
    with Supervisor(db_path, "--queue", "default:2", log_path=tmp_path / "supervisor.log") as sup:
        sup.wait_ready()
        children = wait_until(lambda: len(workers_of(sup.pid)) == 2 and workers_of(sup.pid), timeout=10)
        sup.signal(signal.SIGKILL)
        sup.wait(5)
        wait_until(lambda: all(gone(pid) for pid in children), timeout=10, message="the idle children exited")


def test_start_recovers_orphans_but_not_live_holders(chancy: Chancy, tmp_path: Path) -> None:
    """recover_orphans at start: a job held by a dead pid is recovered; one held by a live process is not."""
    declare(chancy, concurrency=1)
    path = str(tmp_path / "held")
    ref = chancy.sync_push(Job(func="tests.jobs.stamp", kwargs={"path": path}, max_attempts=2))
    # Claim it by hand, as a child pid that exists no more.
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = finished.pid
    with chancy.connection() as conn, conn:
        claimed = chancy.store.claim_jobs(conn, "default", 1, now=chancy.now(), worker_id="gone-worker", pid=dead,
                                          pid_start=None)
    assert [str(j.id) for j in claimed] == [ref.identifier]

    live = chancy.sync_push(Job(func="tests.jobs.noop", max_attempts=2))
    with chancy.connection() as conn, conn:
        chancy.store.claim_jobs(conn, "default", 1, now=chancy.now(), worker_id="live-worker", pid=os.getpid(),
                                pid_start=None)

    async def body(worker: Worker) -> QueuedJob | None:
        job = await chancy.wait_for_job(ref, timeout=10)
        await asyncio.sleep(0)
        return job

    done = run_worker(chancy, body, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    assert done is not None and done.state is SUCCEEDED and done.attempts == 2
    assert "died" in done.errors[0]["traceback"]
    held = chancy.sync_get_job(live)
    assert held is not None and held.state is RUNNING and held.errors == []  # its holder (this process) lives


def test_a_stopped_child_is_not_taken_for_dead(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    """A suspended process (SIGSTOP, a laptop asleep) still holds its job: another worker must not run it twice."""
    declare(chancy, concurrency=1)
    path = str(tmp_path / "paused")
    ref = chancy.sync_push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": path, "seconds": 1}))
    with Supervisor(db_path, "--queue", "default:1", log_path=tmp_path / "supervisor.log") as sup:
        sup.wait_ready()
        wait_until(lambda: pids(path), timeout=15, message="the job started")
        child = pids(path)[0]
        os.kill(child, signal.SIGSTOP)
        try:

            async def body(worker: Worker) -> QueuedJob | None:
                await worker.recover_orphans()  # start() did it once already; once more for good measure
                return await chancy.get_job(ref)

            held = run_worker(chancy, body, heartbeat_timeout=HEARTBEAT_TIMEOUT)
        finally:
            os.kill(child, signal.SIGCONT)
        assert held is not None and held.state is RUNNING and held.errors == []
        done = chancy.sync_wait_for_job(ref, timeout=10)
        sup.signal(signal.SIGTERM)
        assert sup.wait(10) == 0
    assert done is not None and done.state is SUCCEEDED and done.attempts == 1 and done.errors == []
    assert pids(path) == [child]


def test_a_dead_workers_row_expires_and_is_removed(chancy: Chancy) -> None:
    """get_all_workers() lists live workers only; a live worker removes the rows of expired ones."""
    import asyncio

    import apsw

    from chancy_lite.worker import Worker

    now = chancy.now()
    chancy._call(chancy.store.upsert_worker, worker_id="ghost", hostname="elsewhere", pid=1, pid_start=None,
                 tags=[], queues=[], now=now - 10_000_000, expires_at=now - 1_000_000)
    assert [w["worker_id"] for w in chancy.sync_get_all_workers()] == []
    raw = apsw.Connection(chancy.path)

    def rows() -> set[str]:
        return {r[0] for r in raw.execute("SELECT worker_id FROM chancy_workers").fetchall()}

    assert "ghost" in rows()

    async def run() -> tuple[list[str], str]:
        async with Worker(chancy, register_signal_handlers=False, heartbeat_poll_interval=0.05) as worker:
            deadline = asyncio.get_running_loop().time() + 10
            while "ghost" in rows():
                assert asyncio.get_running_loop().time() < deadline, "the expired row was never removed"
                await asyncio.sleep(0.02)
            return [w["worker_id"] for w in await chancy.get_all_workers()], worker.worker_id

    listed, live = asyncio.run(run())
    raw.close()
    assert listed == [live]


def test_a_killed_leader_is_replaced_within_its_timeout(chancy: Chancy, db_path: str, tmp_path: Path) -> None:
    options = ["--leadership", "0.2:1", "--heartbeat-poll-interval", "0.5"]

    def leaders() -> list[str]:
        return [w["worker_id"] for w in chancy.sync_get_all_workers() if w["is_leader"]]

    with Supervisor(db_path, *options, "--worker-id", "A", log_path=tmp_path / "a.log") as a:
        a.wait_ready()
        wait_until(lambda: leaders() == ["A"], timeout=10, message="A leads")
        with Supervisor(db_path, *options, "--worker-id", "B", log_path=tmp_path / "b.log") as b:
            b.wait_ready()
            wait_until(lambda: {w["worker_id"] for w in chancy.sync_get_all_workers()} == {"A", "B"}, timeout=10)
            assert leaders() == ["A"]  # one leader among two live workers
            os.killpg(a.pid, signal.SIGKILL)
            killed = time.monotonic()
            wait_until(lambda: "B" in leaders(), timeout=10, message="B took over")
            assert time.monotonic() - killed < 1 + 0.2 + 3  # its lease's timeout and a poll, with slack
            b.signal(signal.SIGTERM)
            assert b.wait(15) == 0

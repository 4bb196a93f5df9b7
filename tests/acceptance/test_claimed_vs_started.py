"""A job claimed in a batch is not a job that started: its row says so, limits never count its wait, and a
long job never holds short jobs that another child could run."""

from __future__ import annotations

from pathlib import Path

from chancy_lite import Chancy, Job, Limit, Queue, QueuedJob
from chancy_lite.testing import Clock
from chancy_lite.worker import Worker
from tests.worker_support import lines, run_worker, until

RUNNING, SUCCEEDED = QueuedJob.State.RUNNING, QueuedJob.State.SUCCEEDED


async def warm_up(chancy: Chancy, queue: str, n: int = 60) -> None:
    """Run ``n`` no-op jobs, so the children have timed jobs and claim in batches."""
    refs: list = []
    async for batch in chancy.push_many([Job(func="tests.jobs.noop", queue=queue) for _ in range(n)]):
        refs.extend(batch)
    await chancy.wait_for_jobs(refs, timeout=20)


def test_short_jobs_do_not_wait_behind_a_long_job_in_one_childs_batch(chancy: Chancy, tmp_path: Path) -> None:
    chancy.sync_declare(Queue("mixed", concurrency=2, polling_interval=60))
    gate, path = tmp_path / "gate", str(tmp_path / "long")

    async def body(worker: Worker) -> tuple[list[QueuedJob], QueuedJob | None, QueuedJob | None]:
        await warm_up(chancy, "mixed")
        long = Job(func="tests.jobs_procs.wait_for_file", queue="mixed", kwargs={"gate": str(gate), "path": path})
        short = [Job(func="tests.jobs.noop", queue="mixed") for _ in range(20)]
        refs: list = []
        async for batch in chancy.push_many([long, *short]):
            refs.extend(batch)
        # Every short job finishes while the long one still runs (before: half of them waited for it).
        done = await chancy.wait_for_jobs(refs[1:], timeout=10)
        running = await chancy.get_job(refs[0])
        gate.touch()
        return done, running, await chancy.wait_for_job(refs[0], timeout=15)

    done, running, finished = run_worker(chancy, body)
    assert all(job.state is SUCCEEDED for job in done)
    assert running is not None and running.state is RUNNING and running.started_at is not None
    assert [r[2] for r in lines(path)] == ["started", "released"]
    assert finished is not None and finished.state is SUCCEEDED
    assert finished.started_at is not None and running.started_at == finished.started_at


def test_a_job_that_holds_the_gil_does_not_hold_its_batch(chancy: Chancy, tmp_path: Path) -> None:
    """The batch watcher is a thread, which cannot run while a job holds the GIL in one C call: a job of a
    function the child has not run yet gives the rest of its batch back before it starts."""
    chancy.sync_declare(Queue("mixed", concurrency=2, polling_interval=60))
    path = str(tmp_path / "long")

    async def body(worker: Worker) -> tuple[list[QueuedJob], QueuedJob | None]:
        await warm_up(chancy, "mixed")
        long = Job(func="tests.jobs_procs.hold_the_gil", queue="mixed", kwargs={"seconds": 3, "path": path})
        refs: list = []
        async for batch in chancy.push_many([long, *[Job(func="tests.jobs.noop", queue="mixed")] * 20]):
            refs.extend(batch)
        done = await chancy.wait_for_jobs(refs[1:], timeout=10)
        still = await chancy.get_job(refs[0])
        await chancy.wait_for_job(refs[0], timeout=15)
        return done, still

    done, still = run_worker(chancy, body)
    assert all(job.state is SUCCEEDED for job in done)
    assert lines(path)[0][2] == "started"
    assert still is not None and still.state is RUNNING and still.started_at is not None  # the shorts did not wait


def test_a_limit_applies_only_to_the_job_that_has_it(db_path: str, tmp_path: Path) -> None:
    """A long job without a limit, claimed in one batch ahead of jobs with ``Limit(TIME, 1)``: the supervisor's
    TIME-limit backstop, stepped with a clock an hour ahead, must find nothing to kill (before: it counted the
    waiting jobs' claim time and SIGKILLed the long job's child)."""
    clock = Clock()
    gate, path = tmp_path / "gate", str(tmp_path / "long")
    with Chancy(db_path, clock=clock) as chancy:  # jobs pushed at the clock's start are due at once for children
        chancy.sync_migrate()
        chancy.sync_declare(Queue("one", concurrency=1, polling_interval=60,
                                  executor_options={"timeout_grace": 0.1}))

        async def body(worker: Worker) -> tuple[QueuedJob | None, list[QueuedJob], list[QueuedJob]]:
            await warm_up(chancy, "one")
            long = Job(func="tests.jobs_procs.wait_for_file", queue="one", kwargs={"gate": str(gate), "path": path})
            limited = [Job(func="tests.jobs.noop", queue="one", limits=[Limit(Limit.Type.TIME, 1)]) for _ in range(5)]
            refs: list = []
            async for batch in chancy.push_many([long, *limited]):
                refs.extend(batch)
            await until(lambda: lines(path), message="the long job started")
            # The row shows it started; the jobs claimed with it were given back, not left "running".
            await until(lambda: _started(chancy, refs[0]), timeout=5, message="the long job's start is on its row")
            waiting = await chancy.get_jobs(refs[1:])
            clock.advance(hours=1)
            await worker.time_limits.tick(chancy.now())  # one step of the backstop, an hour "later"
            alive = await chancy.get_job(refs[0])
            gate.touch()
            return alive, waiting, await chancy.wait_for_jobs(refs, timeout=15)

        alive, waiting, jobs = run_worker(chancy, body)
    assert alive is not None and alive.state is RUNNING and alive.errors == []
    assert all(job.state is not RUNNING and job.started_at is None for job in waiting), waiting
    assert all(job.state is SUCCEEDED and job.attempts == 1 for job in jobs), [j.errors for j in jobs]


async def _started(chancy: Chancy, ref: object) -> bool:
    job = await chancy.get_job(ref)  # type: ignore[arg-type]
    return job is not None and job.started_at is not None

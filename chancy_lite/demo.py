"""``python -m chancy_lite.demo``: push a batch of jobs into a file and run a worker until all are done.

It shows the main behaviours at once: plain jobs, jobs that fail and retry, a
job that fails for good, a job scheduled a second ahead, a job that reads its
context and records progress in ``meta``, and a high-priority job.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import sys
import time

from chancy_lite import Chancy, Job, Queue, QueuedJob, Worker

DEFAULT_PATH = "chancy-lite-demo.db"


# ------------------------------------------------------------------ the jobs


def resize_image(*, image_id: int) -> None:
    time.sleep(random.uniform(0.01, 0.05))


def flaky_upload(*, name: str, context: QueuedJob) -> None:
    """Fails on its first two attempts, then succeeds."""
    if context.attempts < 2:
        raise ConnectionError(f"upload of {name} timed out (attempt {context.attempts + 1})")


def broken_report() -> None:
    raise ValueError("the report template is missing")


def send_reminder(*, to: str) -> None:
    pass


def crunch(*, rows: int, job: QueuedJob) -> None:
    """Reads its own context and records progress and a result in meta (saved with the job)."""
    job.meta["progress"] = 0
    for done in range(0, rows + 1, rows // 4):
        job.meta["progress"] = round(100 * done / rows)
        time.sleep(0.02)
    job.meta["result"] = {"rows": rows, "job_id": str(job.id), "attempt": job.attempts}


# ------------------------------------------------------------------- the run


def batch(now: dt.datetime) -> list[Job]:
    jobs = [Job.from_func(resize_image, kwargs={"image_id": i}) for i in range(40)]
    jobs += [Job.from_func(flaky_upload, kwargs={"name": f"file-{i}.zip"}, max_attempts=3) for i in range(3)]
    jobs.append(Job.from_func(broken_report, max_attempts=2))
    in_a_second = now + dt.timedelta(seconds=1)
    jobs.append(Job.from_func(send_reminder, kwargs={"to": "ada@example.com"}, scheduled_at=in_a_second))
    jobs.append(Job.from_func(crunch, kwargs={"rows": 1000}, meta={"owner": "demo"}))
    jobs.append(Job.from_func(send_reminder, kwargs={"to": "urgent@example.com"}, priority=10))
    return jobs


def progress_line(counts: dict[str, int], total: int, elapsed: float) -> str:
    done = counts.get("succeeded", 0) + counts.get("failed", 0)
    width = 30
    filled = int(width * done / total) if total else width
    parts = ", ".join(f"{state} {counts.get(state, 0)}" for state in ("pending", "running", "retrying",
                                                                       "succeeded", "failed"))
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {parts}  {elapsed:5.1f}s"


async def run(path: str, concurrency: int) -> int:
    async with Chancy(path) as chancy:
        await chancy.migrate()
        await chancy.declare(Queue("default", concurrency=concurrency), upsert=True)
        jobs = batch(dt.datetime.now(dt.UTC))
        refs = [ref async for refs in chancy.push_many(jobs) for ref in refs]
        print(f"pushed {len(refs)} jobs into {os.path.abspath(path)}; starting a worker with {concurrency} processes")
        started = time.monotonic()
        tty = sys.stdout.isatty()
        async with Worker(chancy, shutdown_timeout=5):
            waiting = asyncio.ensure_future(chancy.wait_for_jobs(refs, interval=0.5, timeout=120))
            while not waiting.done():
                jobs_now = await chancy.get_jobs(refs)
                counts: dict[str, int] = {}
                for job in jobs_now:
                    counts[job.state.value] = counts.get(job.state.value, 0) + 1
                line = progress_line(counts, len(refs), time.monotonic() - started)
                print(line if tty else line.lstrip("\r"), end="" if tty else "\n", flush=True)
                await asyncio.wait([waiting], timeout=0.2)
            finished = waiting.result()
            print(progress_line(_count(finished), len(refs), time.monotonic() - started).lstrip("" if tty else "\r"))
        summarize(finished)
    return 0


def _count(jobs: list[QueuedJob]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
    return counts


def summarize(jobs: list[QueuedJob]) -> None:
    print("\nsummary")
    by_func: dict[str, list[QueuedJob]] = {}
    for job in jobs:
        by_func.setdefault(job.func.rsplit(".", 1)[-1], []).append(job)
    print(f"  {'function':<15} {'jobs':>4} {'succeeded':>9} {'failed':>6} {'attempts':>8}")
    for name, group in by_func.items():
        ok = sum(j.state is QueuedJob.State.SUCCEEDED for j in group)
        print(f"  {name:<15} {len(group):>4} {ok:>9} {len(group) - ok:>6} {sum(j.attempts for j in group):>8}")
    for job in jobs:
        if job.func.endswith(".crunch"):
            print(f"\n  crunch saved its meta: {job.meta}")
        if job.func.endswith(".send_reminder") and job.kwargs.get("to") == "ada@example.com" and job.started_at:
            late = (job.started_at - job.scheduled_at).total_seconds() * 1000
            print(f"  the scheduled reminder started {late:.1f} ms after its scheduled time")
        if job.func.endswith(".broken_report") and job.errors:
            print(f"  broken_report failed after {job.attempts} attempts; last error: "
                  f"{job.errors[-1]['traceback'].strip().splitlines()[-1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chancy_lite.demo", description=__doc__)
    parser.add_argument("--db", default=os.environ.get("CHANCY_LITE_DB", DEFAULT_PATH), help="the queue file")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.db, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())

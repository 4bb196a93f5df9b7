"""What per-key limits cost a claim: ``.venv/bin/python scripts/bench_keys.py [--rounds N]``.

In this process, on fresh files, with ``store.claim_jobs`` each in its own ``BEGIN IMMEDIATE`` transaction (as a
worker child claims), it prints the median CPU time per claim (the best of ``--rounds`` files; CPU time, as the
machine may be busy with other work) of:

* unkeyed jobs only (one job, then batches of 64), and a claim-and-record cycle of 64 (what a draining child
  does), in µs per job: the figures to compare with a checkout from before keys (run this file with that
  checkout on ``PYTHONPATH``; everything it uses existed then);
* with keyed jobs waiting: a key with 1,000 or 10,000 jobs held back by its cap ahead of unkeyed jobs; keyed jobs
  of many keys, none held back; the held-back key ahead of 100 or 1,000 other keys.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator

from chancy_lite import Chancy, Job
from chancy_lite.outcome import next_outcome

QUEUE = "bench"


def fresh(directory: str, jobs: list[Job]) -> Chancy:
    app = Chancy(os.path.join(tempfile.mkdtemp(dir=directory), "keys.db"))
    app.sync_migrate()
    for _ in app.sync_push_many(jobs):
        pass
    return app


def claims(app: Chancy, n: int, count: int) -> Iterator[float]:
    """Seconds per claim of ``n`` jobs, ``count`` times."""
    with app.connection() as conn:
        for _ in range(count):
            start = time.process_time()
            with conn:
                app.store.claim_jobs(conn, QUEUE, n, now=app.now(), worker_id="w", pid=1, pid_start=None)
            yield time.process_time() - start


def cycle(app: Chancy, n: int) -> float:
    """Seconds per job to claim every job in batches of ``n`` and record each batch with the next claim."""
    done, pending, start = 0, [], time.process_time()
    with app.connection() as conn:
        while True:
            with conn:
                now = app.now()
                for outcome in pending:
                    app.store.complete_job(conn, outcome, worker_id="w", pid=1, queue=QUEUE)
                jobs = app.store.claim_jobs(conn, QUEUE, n, now=now, worker_id="w", pid=1, pid_start=None)
            if not jobs:
                return (time.process_time() - start) / done
            pending = [next_outcome(job, None, now=now) for job in jobs]
            done += len(jobs)


def best(rounds: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh files per figure; the best median is kept")
    rounds = parser.parse_args().rounds
    plain = [Job(func="a.b", queue=QUEUE)]
    directory = tempfile.mkdtemp(prefix="chancy-bench-keys-")

    def median_claim(jobs: list[Job], n: int, count: int, first: int = 0) -> Callable[[], float]:
        def measure() -> float:
            with fresh(directory, jobs) as app:
                list(claims(app, 1, first))  # e.g. the held-back key's first job starts
                return statistics.median(claims(app, n, count)) * 1e6
        return measure

    def per_job(n: int) -> Callable[[], float]:
        def measure() -> float:
            with fresh(directory, plain * 12_800) as app:
                return cycle(app, n) * 1e6
        return measure

    print(f"unkeyed, claim 1 job:            {best(rounds, median_claim(plain * 3000, 1, 1000)):8.1f} us")
    print(f"unkeyed, claim 64 jobs:          {best(rounds, median_claim(plain * 30_000, 64, 200)):8.1f} us")
    print(f"unkeyed, claim+record cycle, 64: {best(rounds, per_job(64)):8.2f} us per job")
    if not hasattr(Job, "with_concurrency"):
        return
    for backlog in (1000, 10_000):
        flood = [Job(func="a.b", queue=QUEUE).with_concurrency(1, key="flood")] * (backlog + 1)
        figure = best(rounds, median_claim(flood + plain * 3000, 1, 300, first=1))
        print(f"{backlog:>6} held back ahead, claim 1:  {figure:8.1f} us")
    many = [Job(func="a.b", queue=QUEUE).with_concurrency(5, key=f"c{i % 1000}") for i in range(6000)]
    print(f"keyed (1,000 keys), claim 1:     {best(rounds, median_claim(many, 1, 300)):8.1f} us")
    print(f"keyed (1,000 keys), claim 64:    {best(rounds, median_claim(many, 64, 30)):8.1f} us")
    for keys in (100, 1000):
        flood = [Job(func="a.b", queue=QUEUE).with_concurrency(1, key="flood")] * 10_001
        others = [Job(func="a.b", queue=QUEUE).with_concurrency(1, key=f"c{i}") for i in range(keys)] * 3
        figure = best(rounds, median_claim(flood + others, 1, 50, first=1))
        print(f"10,000 held back, {keys:>5} keys, claim 1: {figure:8.1f} us")


if __name__ == "__main__":
    main()

"""Benchmark chancy_lite against huey's SqliteHuey, side by side in one run, in alternating rounds.

Usage: ``scripts/bench [--quick] [--rounds N] [--only chancy|huey|pages] [--json PATH] [--dir DIR] [--keep]
[--options JSON] [--skip-scale]``

The machine is shared and noisy, so no figure comes from one run. Each round runs every measurement once, the
systems alternating (chancy_lite, huey, chancy_lite, ...; the order reversed every other round, so a drift in the
machine's load hits both alike); each figure is the median of its rounds, printed with its range (min-max) and
its spread ((max - min) / median). The two chancy drain variants ``default`` and ``norestart`` have the same
effective options: when their ranges do not overlap, the run says it was too noisy to trust. The machine's load
(``os.getloadavg()``) is printed at the start of the run and of every round; a run started at a load above half
the CPU count is called busy.

What is measured, and how (every system on fresh files, a new file per measurement):

* single push: N jobs pushed one by one from this process (chancy ``sync_push``; huey a task call, with its
  default ``synchronous=FULL`` and again with ``NORMAL``, chancy_lite's default).
* bulk push: chancy ``sync_push_many(batch_size=1000)``; huey has no bulk API: its enqueue loop, and (not its
  API) its serialised messages inserted with ``executemany``, 1000 per transaction.
* drain: N no-op jobs pushed first, then a worker with 2 processes is launched. Rates come from the jobs' own
  end times (chancy ``completed_at``; huey's no-op returns ``time.time()``): (N-1) / (last end - first end);
  "slowest tenth" is the rate of the slowest tenth of the jobs in completion order (is the rate sustained?).
  start-up = worker launch (``Popen``) -> first job done; for chancy also launch -> ``Worker.start()`` returned.
* child start: chancy with ``maximum_jobs_per_worker=1`` and 2 children (every job ends its child, which is
  replaced), children forked from the template vs spawned: ms per job = the time one slot takes to run a job,
  exit and get its next child.
* latency: pushes 20 ms apart on an idle worker; each job records ``time.time()`` when it starts (chancy: in its
  meta; huey: as its result); latency = start - the time just before the push call. Then the worker sits idle
  (``idle_s``): its CPU is measured over the last ``cpu_s`` (utime+stime of the whole process tree), memory is
  read (VmRSS and PSS of each worker child; chancy's template separately), and a few more jobs are pushed, 20 ms
  apart: the first of those is the latency after the idle gap.
* chancy only, once: claim time with 1,000 vs 1,000,000 finished rows; ``count_jobs()`` on the latter; a drain of
  jobs sleeping 10 ms at concurrency 16 (every round); and the scale curve: drain and latency on a file holding
  100,000 pending and 1,000,000 finished jobs, with 1, 2, 4 and 8 children; and the dashboard's main pages, timed
  end to end over HTTP against a file of 1,000,000 jobs (100,000 with --quick, see scripts/bench_pages.py;
  ``--only pages`` runs just this).

chancy_lite's files are opened through apsw only (via chancy_lite); huey's through huey (Python's sqlite3).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)

CLK_TCK = os.sysconf("SC_CLK_TCK")
# chancy executor_options per drain variant ("custom" is added by --options). "default" and "norestart" have the
# same effective options: their agreement is the run's noise check.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "norestart": {"maximum_jobs_per_worker": None},
}
HUEY_FAST_FLAGS = ["-d", "0.001", "-b", "1"]
POLL = 0.05  # completion polls (the figures come from the jobs' own times; polling only detects the end)


@dataclasses.dataclass
class Params:
    rounds: int = 3
    push_n: int = 10_000
    bulk_n: int = 50_000
    huey_bulk_n: int = 10_000  # huey's enqueue loop is one transaction per task
    drain_n: int = 100_000
    huey_drain_n: int = 20_000
    respawn_n: int = 200
    lat_n: int = 300
    lat_gap: float = 0.02
    idle_s: float = 30.0
    cpu_s: float = 10.0
    after_idle_n: int = 5
    sleep_n: int = 2_000
    sleep_concurrency: int = 16
    small_rows: int = 1_000
    big_rows: int = 1_000_000
    claims: int = 2_000
    count_calls: int = 50
    scale_pending: int = 100_000
    scale_finished: int = 1_000_000
    scale_children: tuple[int, ...] = (1, 2, 4, 8)
    scale_lat_n: int = 100
    timeout: float = 300.0


QUICK = Params(
    rounds=2, push_n=2_000, bulk_n=10_000, huey_bulk_n=2_000, drain_n=5_000, huey_drain_n=3_000, respawn_n=40,
    lat_n=60, idle_s=4.0, cpu_s=3.0, after_idle_n=3, sleep_n=300, big_rows=100_000, claims=300, count_calls=20,
    scale_pending=5_000, scale_finished=100_000, scale_children=(1, 2, 4), scale_lat_n=30, timeout=120.0,
)

# The targets of issue #14: (label, results path, comparison, value).
TARGETS = [
    ("drain, 2 children, jobs/s (over the whole drain)", "drain.chancy_default.rate", ">=", 25_000),
    ("drain vs huey, same run", "ratio:drain", ">=", 8.0),
    ("push->start latency p50, ms", "latency.chancy.p50", "<=", 0.8),
    ("push->start latency p99, ms", "latency.chancy.p99", "<=", 3.0),
    ("latency of the first push after the idle gap, ms", "latency.chancy.after_idle_first", "<=", 3.0),
    ("idle CPU, % of a core", "latency.chancy.idle_cpu", "<=", 0.5),
    ("start-up, launch -> first job done, s", "drain.chancy_default.startup_s", "<=", 0.1),
    ("child start from the template (ms per replaced child, incl. its job)", "respawn.forkserver.ms_per_child",
     "<=", 20.0),
    ("PSS per child, MiB", "latency.chancy.pss_mib", "<=", 8.0),
    ("count_jobs() at 1,000,000 finished rows, ms", "once.count_ms", "<=", 5.0),
]


# ------------------------------------------------------------------ helpers


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sleep_until(target: float) -> None:
    delay = target - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def process_table() -> dict[int, int]:
    """pid -> ppid for every process."""
    table: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := stat_fields(int(name))) is not None:
            table[int(name)] = int(fields[1])
    return table


def children(pid: int) -> list[int]:
    return sorted(p for p, parent in process_table().items() if parent == pid)


def tree(pid: int) -> list[int]:
    table = process_table()
    result, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, parent in table.items() if parent in frontier]
        result.extend(frontier)
    return result


def is_template(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"chancy_lite.template" in f.read()
    except OSError:
        return False


def workers_of(pid: int) -> tuple[list[int], list[int]]:
    """(worker processes, template processes) of a supervisor: its children, the template's children included."""
    workers, templates = [], []
    for child in children(pid):
        if is_template(child):
            templates.append(child)
            workers.extend(children(child))
        else:
            workers.append(child)
    return workers, templates


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    ticks: dict[int, int] = {}
    for pid in pids:
        fields = stat_fields(pid)
        if fields is not None:
            ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """CPU used by the process tree of ``pid`` over ``seconds``, in % of one core."""
    before = cpu_ticks(tree(pid))
    start = time.perf_counter()
    time.sleep(seconds)
    after = cpu_ticks(tree(pid))
    elapsed = time.perf_counter() - start
    used = sum(after[p] - before[p] for p in after if p in before)
    return used / CLK_TCK / elapsed * 100


def proc_kib(pid: int, filename: str, field: str) -> float | None:
    """A "Field:  123 kB" line of /proc/<pid>/<filename>, in MiB."""
    try:
        with open(f"/proc/{pid}/{filename}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def memory_report(pid: int) -> dict[str, Any]:
    """RSS and PSS of a supervisor's worker children (chancy's template reported apart), and of the supervisor."""
    workers, templates = workers_of(pid)
    return {
        "children": len(workers),
        "rss_mib": mean([proc_kib(p, "status", "VmRSS") for p in workers]),
        "pss_mib": mean([proc_kib(p, "smaps_rollup", "Pss") for p in workers]),
        "template_rss_mib": mean([proc_kib(p, "status", "VmRSS") for p in templates]),
        "template_pss_mib": mean([proc_kib(p, "smaps_rollup", "Pss") for p in templates]),
        "supervisor_rss_mib": proc_kib(pid, "status", "VmRSS"),
    }


def wait_for_workers(pid: int, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(workers_of(pid)[0]) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not start {n} child processes within {timeout} s")
        time.sleep(0.02)


def wait_quiet(pid: int, timeout: float, quiet: float = 0.5) -> float:
    """Wait until the process tree of ``pid`` has used no CPU for ``quiet`` seconds (children done booting)."""
    start = time.monotonic()
    last = sum(cpu_ticks(tree(pid)).values())
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet:
        if time.monotonic() - start > timeout:
            log(f"warning: the worker (pid {pid}) kept using CPU for {timeout} s while idle; going on")
            break
        time.sleep(0.1)
        now = sum(cpu_ticks(tree(pid)).values())
        if now != last:
            last, still_since = now, time.monotonic()
    return time.monotonic() - start


def stop_process(p: subprocess.Popen[bytes], sig: int, timeout: float = 60) -> None:
    if p.poll() is not None:
        return
    pids = tree(p.pid)
    p.send_signal(sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"process {p.pid} did not stop within {timeout} s after {signal.Signals(sig).name}; killing it")
        p.kill()
        p.wait()
    time.sleep(0.1)
    for pid in pids[1:]:  # leftovers (should be none)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def worker_logs(directory: str, prefix: str, lines: int = 8) -> dict[str, list[str]]:
    """The first lines of every worker log with warnings or errors (nothing is logged when all goes well)."""
    found = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith(prefix) and name.endswith(".log"):
            with open(os.path.join(directory, name), errors="replace") as f:
                text = [line for line in f.read().splitlines() if not line.startswith(("imported ", "started "))]
            if text:
                found[name] = [*text[:lines], *([f"... {len(text) - lines} more lines"] if len(text) > lines else [])]
    return found


@contextlib.contextmanager
def running(cmd: list[str], log_path: str, stop_signal: int, env: dict[str, str] | None = None) -> Iterator[Any]:
    with open(log_path, "ab") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        yield p
    finally:
        stop_process(p, stop_signal)
        text = tail(log_path)
        if "Traceback" in text or "ERROR" in text:
            log(f"log of {' '.join(cmd[:3])} ({log_path}), last lines:\n{text}")


def drain_figures(n: int, launched: float, ends: list[float]) -> dict[str, Any]:
    """Drain figures from the jobs' end times (wall clock, seconds): rates, and start-up = launch -> first end."""
    ends = sorted(ends)
    span = ends[-1] - ends[0]
    tenth = max(2, len(ends) // 10)
    windows = [
        (tenth - 1) / (ends[i + tenth - 1] - ends[i])
        for i in range(0, len(ends) - tenth + 1, tenth) if ends[i + tenth - 1] > ends[i]
    ]
    return {
        "jobs": n,
        "rate": (n - 1) / span if span > 0 else None,
        "slowest_tenth_rate": min(windows) if windows else None,
        "startup_s": ends[0] - launched,
        "drain_s": span,
    }


def summarise(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values)}


# ----------------------------------------------------------------- chancy


class ChancyBench:
    def __init__(self, params: Params, workdir: str, variants: dict[str, dict[str, Any]]) -> None:
        self.p = params
        self.dir = workdir
        self.variants = variants
        self.serial = 0

    def path(self, name: str) -> str:
        self.serial += 1
        return os.path.join(self.dir, f"chancy-{name}-{self.serial}.db")

    def open(self, name: str, *, concurrency: int = 2, options: dict[str, Any] | None = None,
             path: str | None = None) -> Any:
        from chancy_lite import Chancy, Queue

        chancy = Chancy(path or self.path(name))
        chancy.sync_migrate()
        # The worker always serves "default" too (declared at start, if missing): keep it paused so that only
        # the "bench" queue starts processes.
        chancy.sync_declare(Queue("default", state=Queue.State.PAUSED), upsert=True)
        chancy.sync_declare(Queue("bench", concurrency=concurrency, executor_options=dict(options or {})),
                            upsert=True)
        return chancy

    def worker(self, chancy: Any) -> Any:
        cmd = [sys.executable, os.path.join(SCRIPTS, "bench_chancy_worker.py"), chancy.path]
        return running(cmd, chancy.path[:-3] + ".log", signal.SIGTERM)

    def jobs(self, func: str, n: int) -> Iterator[Any]:
        from chancy_lite import Job

        return (Job(func=func, queue="bench") for _ in range(n))

    def push_many(self, chancy: Any, func: str, n: int) -> None:
        for _ in chancy.sync_push_many(self.jobs(func, n), batch_size=1000):
            pass

    def wait_done(self, chancy: Any, p: subprocess.Popen[bytes], n: int, since: float) -> int:
        """Poll until ``n`` jobs of "bench" finished; returns how many failed."""
        while True:
            counts = chancy.sync_count_jobs().get("bench", {})
            done, failed = counts.get("succeeded", 0) + counts.get("failed", 0), counts.get("failed", 0)
            if done >= n:
                return int(failed)
            if p.poll() is not None:
                raise RuntimeError(f"the chancy worker exited ({p.returncode}) with {done}/{n} jobs finished")
            if time.perf_counter() - since > self.p.timeout:
                raise TimeoutError(f"chancy: only {done}/{n} jobs finished after {self.p.timeout} s")
            time.sleep(POLL)

    def completed(self, chancy: Any) -> list[float]:
        with chancy.connection() as conn:
            rows = conn.execute(
                f"SELECT completed_at FROM {chancy.prefix}jobs WHERE queue = 'bench' AND completed_at IS NOT NULL"
            ).fetchall()
        return [r[0] / 1e6 for r in rows]

    # ---- per round

    def push_single(self) -> dict[str, Any]:
        n = self.p.push_n
        with self.open("push") as chancy:
            jobs = list(self.jobs("bench_jobs.noop", n))
            start = time.perf_counter()
            for job in jobs:
                chancy.sync_push(job)
            elapsed = time.perf_counter() - start
        return {"rate": n / elapsed}

    def push_bulk(self) -> dict[str, Any]:
        n = self.p.bulk_n
        with self.open("bulk") as chancy:
            jobs = list(self.jobs("bench_jobs.noop", n))
            start = time.perf_counter()
            for _ in chancy.sync_push_many(jobs, batch_size=1000):
                pass
            elapsed = time.perf_counter() - start
        return {"rate": n / elapsed}

    def drain(self, options: dict[str, Any], n: int | None = None) -> dict[str, Any]:
        n = n or self.p.drain_n
        with self.open("drain", options=options) as chancy:
            self.push_many(chancy, "bench_jobs.noop", n)
            launched_wall, launched = time.time(), time.perf_counter()
            with self.worker(chancy) as p:
                failed = self.wait_done(chancy, p, n, launched)
            figures = drain_figures(n, launched_wall, self.completed(chancy))
            marks = {line.split()[0]: float(line.split()[1]) for line in tail(chancy.path[:-3] + ".log", 1000)
                     .splitlines() if line.startswith(("imported ", "started "))}
        figures["imported_s"] = marks["imported"] - launched_wall if "imported" in marks else None
        figures["worker_started_s"] = marks["started"] - launched_wall if "started" in marks else None
        figures["failed"] = failed
        return figures

    def respawn(self, start_method: str) -> dict[str, Any]:
        """Every job ends its child: how long one slot takes to run a job and get its next child."""
        n = self.p.respawn_n
        options = {"maximum_jobs_per_worker": 1, "start_method": start_method}
        figures = self.drain(options, n)
        rate = figures["rate"]
        return {"rate": rate, "ms_per_child": 2 / rate * 1000 if rate else None, "failed": figures["failed"]}

    def push_stamps(self, chancy: Any, n: int) -> list[tuple[Any, float]]:
        from chancy_lite import Job

        pushed = []
        start = time.perf_counter() + 0.01
        for i in range(n):
            sleep_until(start + i * self.p.lat_gap)
            t = time.time()
            pushed.append((chancy.sync_push(Job(func="bench_jobs.stamp", queue="bench")), t))
        return pushed

    def latencies(self, chancy: Any, pushed: list[tuple[Any, float]]) -> list[float]:
        jobs = chancy.sync_wait_for_jobs([r for r, _ in pushed], timeout=self.p.timeout, interval=0.5)
        by_id = {str(j.id): j for j in jobs}
        result = []
        for ref, t in pushed:
            job = by_id.get(ref.identifier)
            if job is None or "started" not in job.meta:
                state = job.state.value if job is not None else "missing"
                raise RuntimeError(f"job {ref.identifier} has no start time (state {state}, meta {job and job.meta})")
            result.append((job.meta["started"] - t) * 1000)
        return result

    def latency(self) -> dict[str, Any]:
        with self.open("latency") as chancy, self.worker(chancy) as p:
            self.latencies(chancy, self.push_stamps(chancy, 4))
            wait_for_workers(p.pid, 2, 30)
            wait_quiet(p.pid, 30)
            figures: dict[str, Any] = summarise(self.latencies(chancy, self.push_stamps(chancy, self.p.lat_n)))
            time.sleep(max(0.0, self.p.idle_s - self.p.cpu_s))
            figures["idle_cpu"] = idle_cpu_percent(p.pid, self.p.cpu_s)
            figures.update(memory_report(p.pid))
            after = self.latencies(chancy, self.push_stamps(chancy, self.p.after_idle_n))
            figures["after_idle_first"], figures["after_idle_all"] = after[0], after
        return figures

    def sleep_drain(self) -> dict[str, Any]:
        n, conc = self.p.sleep_n, self.p.sleep_concurrency
        with self.open("sleep", concurrency=conc) as chancy:
            launched = time.perf_counter()
            with self.worker(chancy) as p:
                wait_for_workers(p.pid, conc, 60)
                wait_quiet(p.pid, 60, quiet=0.5)
                boot = time.perf_counter() - launched - 0.5  # launch -> the last CPU use of the booting children
                start_wall, start = time.time(), time.perf_counter()
                self.push_many(chancy, "bench_jobs.sleep10", n)
                self.wait_done(chancy, p, n, start)
            took = max(self.completed(chancy)) - start_wall
        ideal = n * 0.01 / conc
        return {"s": took, "ideal_s": ideal, "efficiency": ideal / took, "boot_s": boot}

    # ---- once

    def fill_finished(self, chancy: Any, rows: int) -> float:
        """Insert ``rows`` succeeded jobs directly (apsw executemany); returns the seconds it took."""
        from chancy_lite.utils import chancy_uuid

        now = chancy.now()
        statement = (
            f"INSERT INTO {chancy.prefix}jobs (id, queue, func, state, attempts, max_attempts, created_at,"
            " started_at, completed_at, scheduled_at) VALUES (?, 'bench', 'bench_jobs.noop', 'succeeded', 1, 1,"
            " ?, ?, ?, ?)"
        )
        start = time.perf_counter()
        with chancy.connection() as conn:
            left = rows
            while left > 0:
                batch = min(left, 50_000)
                with conn:
                    conn.executemany(statement, ((str(chancy_uuid()), now, now, now, now) for _ in range(batch)))
                left -= batch
        return time.perf_counter() - start

    def claim_with(self, finished_rows: int) -> dict[str, Any]:
        with self.open(f"claim-{finished_rows}") as chancy:
            build_s = self.fill_finished(chancy, finished_rows)
            self.push_many(chancy, "bench_jobs.noop", self.p.claims)
            times, counts = [], []
            pid = os.getpid()
            with chancy.connection() as conn:
                for _ in range(self.p.claims):
                    t0 = time.perf_counter_ns()
                    with conn:
                        got = chancy.store.claim_jobs(
                            conn, "bench", 1, now=chancy.now(), worker_id="bench", pid=pid, pid_start=None
                        )
                    times.append((time.perf_counter_ns() - t0) / 1000)
                    if len(got) != 1:
                        raise RuntimeError(f"claim_jobs returned {len(got)} jobs, expected 1")
            for _ in range(self.p.count_calls):
                t0 = time.perf_counter_ns()
                chancy.sync_count_jobs()
                counts.append((time.perf_counter_ns() - t0) / 1e6)
            with chancy.connection() as conn:
                t0 = time.perf_counter_ns()
                chancy.store.count_jobs_scan(conn)
                scan_ms = (time.perf_counter_ns() - t0) / 1e6
        return {"rows": finished_rows, "claim_us": statistics.median(times), "claim_p99_us": percentile(times, 99),
                "count_ms": statistics.median(counts), "count_scan_ms": scan_ms, "build_s": build_s}

    def once(self) -> dict[str, Any]:
        small, big = self.claim_with(self.p.small_rows), self.claim_with(self.p.big_rows)
        return {"claim_small_us": small["claim_us"], "claim_big_us": big["claim_us"],
                "claim_big_p99_us": big["claim_p99_us"], "count_ms": big["count_ms"],
                "count_scan_ms": big["count_scan_ms"], "count_rows": big["rows"], "count_small_ms": small["count_ms"]}

    def scale(self) -> list[dict[str, Any]]:
        """Drain and latency on a file holding many pending and finished jobs, for several child counts."""
        base = self.path("scale-base")
        with self.open("scale-base", path=base) as chancy:
            build_s = self.fill_finished(chancy, self.p.scale_finished)
            self.push_many(chancy, "bench_jobs.noop", self.p.scale_pending)
            with chancy.connection() as conn:
                chancy.store.checkpoint(conn, truncate=True)
        log(f"chancy: scale file built in {build_s:.1f} s ({os.path.getsize(base) / 2**20:.0f} MiB)")
        rows = []
        for n in self.p.scale_children:
            path = self.path(f"scale-{n}")
            shutil.copyfile(base, path)
            try:
                rows.append(self.scale_with(path, n))
            except Exception as exc:
                traceback.print_exc()
                rows.append({"children": n, "error": f"{type(exc).__name__}: {exc}"})
            finally:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path + suffix)
        os.unlink(base)
        return rows

    def scale_with(self, path: str, n: int) -> dict[str, Any]:
        pending = self.p.scale_pending
        with self.open(f"scale-{n}", path=path, concurrency=n) as chancy:
            launched_wall, launched = time.time(), time.perf_counter()
            with self.worker(chancy) as p:
                self.wait_done(chancy, p, pending + self.p.scale_finished, launched)
                ends = [t for t in self.completed(chancy) if t >= launched_wall]
                figures = drain_figures(pending, launched_wall, ends)
                wait_quiet(p.pid, 30)
                lat = summarise(self.latencies(chancy, self.push_stamps(chancy, self.p.scale_lat_n)))
                t0 = time.perf_counter_ns()
                chancy.sync_count_jobs()
                count_ms = (time.perf_counter_ns() - t0) / 1e6
        return {"children": n, "rate": figures["rate"], "slowest_tenth_rate": figures["slowest_tenth_rate"],
                "startup_s": figures["startup_s"], "p50": lat["p50"], "p99": lat["p99"], "count_ms": count_ms}


# ------------------------------------------------------------------- huey


class HueyBench:
    def __init__(self, params: Params, workdir: str) -> None:
        self.p = params
        self.dir = workdir
        self.serial = 0
        import bench_huey_app

        self.app = bench_huey_app
        self.consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")

    def use(self, name: str) -> str:
        self.serial += 1
        path = os.path.join(self.dir, f"huey-{name}-{self.serial}.db")
        self.app.use_file(path)
        return path

    def consumer_cmd(self, extra: list[str]) -> list[str]:
        base = [self.consumer]
        if not os.access(self.consumer, os.X_OK):
            base = [sys.executable, "-m", "huey.bin.huey_consumer"]
        return [*base, "bench_huey_app.huey", "-k", "process", "-w", "2", "-q", *extra]

    def worker(self, path: str, extra: list[str]) -> Any:
        env = {**os.environ, "BENCH_HUEY_DB": path}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [SCRIPTS, env.get("PYTHONPATH")]))
        # SIGTERM makes huey_consumer stop at once (SIGINT would wait for running tasks); the workers are idle then.
        return running(self.consumer_cmd(extra), path[:-3] + ".log", signal.SIGTERM, env)

    def push_single(self, synchronous: str = "FULL") -> dict[str, Any]:
        n = self.p.push_n
        self.use("push")
        if synchronous != "FULL":
            self.app.huey.storage.conn.execute(f"PRAGMA synchronous = {synchronous}")
        start = time.perf_counter()
        for _ in range(n):
            self.app.noop()
        return {"rate": n / (time.perf_counter() - start)}

    def push_bulk(self) -> dict[str, Any]:
        n = self.p.huey_bulk_n
        huey = self.app.huey
        self.use("bulk")
        start = time.perf_counter()
        for _ in range(n):
            huey.enqueue(self.app.noop.s())
        return {"rate": n / (time.perf_counter() - start)}

    def insert_raw(self, n: int) -> None:
        """Not huey's API: its serialised messages, 1000 per transaction (what a bulk API could reach)."""
        huey, storage = self.app.huey, self.app.huey.storage
        for offset in range(0, n, 1000):
            rows = [(storage.name, storage.to_blob(huey.serialize_task(self.app.noop.s())), 0)
                    for _ in range(min(1000, n - offset))]
            with storage.db(commit=True) as cursor:
                cursor.executemany("insert into task (queue, data, priority) values (?, ?, ?)", rows)

    def push_bulk_raw(self) -> dict[str, Any]:
        n = self.p.bulk_n
        self.use("bulk-raw")
        start = time.perf_counter()
        self.insert_raw(n)
        return {"rate": n / (time.perf_counter() - start)}

    def drain(self) -> dict[str, Any]:
        n = self.p.huey_drain_n
        huey = self.app.huey
        path = self.use("drain")
        self.insert_raw(n)  # the same messages its enqueue writes, faster
        launched_wall, launched = time.time(), time.perf_counter()
        with self.worker(path, []) as p:
            while (done := huey.result_count()) < n:
                if p.poll() is not None:
                    raise RuntimeError(f"huey_consumer exited ({p.returncode}) with {done}/{n} tasks finished")
                if time.perf_counter() - launched > self.p.timeout:
                    raise TimeoutError(f"huey: only {done}/{n} tasks finished after {self.p.timeout} s")
                time.sleep(POLL)
        stamps = [
            huey.serializer.deserialize(bytes(value))
            for (value,) in huey.storage.sql("SELECT value FROM kv WHERE queue = ?", (huey.storage.name,), results=True)
        ]
        if len(stamps) != n or not all(isinstance(v, float) for v in stamps):
            raise RuntimeError(f"huey stored {len(stamps)} results for {n} tasks, or not all are times: {stamps[:3]}")
        return drain_figures(n, launched_wall, stamps)

    def push_stamps(self, n: int) -> list[tuple[Any, float]]:
        pushed = []
        start = time.perf_counter() + 0.01
        for i in range(n):
            sleep_until(start + i * self.p.lat_gap)
            t = time.time()
            pushed.append((self.app.stamp(), t))
        return pushed

    def latencies(self, pushed: list[tuple[Any, float]]) -> list[float]:
        return [(result.get(blocking=True, timeout=self.p.timeout) - t) * 1000 for result, t in pushed]

    def latency(self, flags: list[str]) -> dict[str, Any]:
        path = self.use("latency")
        with self.worker(path, flags) as p:
            self.latencies(self.push_stamps(4))
            if flags == []:
                wait_quiet(p.pid, 30)
            else:  # polling every 1 ms never goes quiet
                time.sleep(1.0)
            figures: dict[str, Any] = summarise(self.latencies(self.push_stamps(self.p.lat_n)))
            time.sleep(max(0.0, self.p.idle_s - self.p.cpu_s))
            figures["idle_cpu"] = idle_cpu_percent(p.pid, self.p.cpu_s)
            figures.update(memory_report(p.pid))
            after = self.latencies(self.push_stamps(self.p.after_idle_n))
            figures["after_idle_first"], figures["after_idle_all"] = after[0], after
        return figures


# ------------------------------------------------------------------ rounds


def phases(chancy: ChancyBench | None, huey: HueyBench | None) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Each phase's trials in alternating order (chancy, huey, chancy, ...); rounds reverse it every other time."""

    def pick(*entries: tuple[str, Any, Callable[[], Any]]) -> list[tuple[str, Any]]:
        return [(name, make()) for name, bench, make in entries if bench is not None]

    c, h = chancy, huey
    drains: list[tuple[str, Any, Callable[[], Any]]] = [("huey", h, lambda: h.drain)]  # type: ignore[union-attr]
    for i, (name, options) in enumerate(c.variants.items() if c is not None else []):
        drains.insert(2 * i if i else 0, (f"chancy_{name}", c, lambda o=options: functools.partial(c.drain, o)))
    return [
        ("push", pick(("chancy", c, lambda: c.push_single), ("huey", h, lambda: h.push_single),
                      ("huey_normal", h, lambda: functools.partial(h.push_single, "NORMAL")))),
        ("bulk", pick(("chancy", c, lambda: c.push_bulk), ("huey", h, lambda: h.push_bulk),
                      ("huey_raw", h, lambda: h.push_bulk_raw))),
        ("drain", pick(*drains)),
        ("respawn", pick(("forkserver", c, lambda: functools.partial(c.respawn, "forkserver")),
                         ("spawn", c, lambda: functools.partial(c.respawn, "spawn")))),
        ("latency", pick(("chancy", c, lambda: c.latency),
                         ("huey_default", h, lambda: functools.partial(h.latency, [])),
                         ("huey_fast", h, lambda: functools.partial(h.latency, HUEY_FAST_FLAGS)))),
        ("sleep", pick(("chancy", c, lambda: c.sleep_drain))),
    ]


def pages(workdir: str, rows: int) -> dict[str, Any]:
    import bench_pages

    return bench_pages.run(workdir, rows)


def run_rounds(params: Params, chancy: ChancyBench | None, huey: HueyBench | None,
               results: dict[str, Any]) -> None:
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
    errors: list[str] = results.setdefault("errors", [])
    for r in range(params.rounds):
        results["load"].append({"round": r + 1, "loadavg": load()})
        log(f"round {r + 1}/{params.rounds} (load {load()})")
        for phase, trials in phases(chancy, huey):
            for name, fn in (trials if r % 2 == 0 else list(reversed(trials))):
                log(f"  {phase}: {name}")
                try:
                    samples.setdefault(phase, {}).setdefault(name, []).append(fn())
                except Exception as exc:
                    traceback.print_exc()
                    errors.append(f"round {r + 1} {phase} {name}: {type(exc).__name__}: {exc}")
    results["samples"] = samples


def stats(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if isinstance(v, int | float)]
    if not values:
        return None
    median = statistics.median(values)
    return {"median": median, "min": min(values), "max": max(values), "n": len(values),
            "spread": (max(values) - min(values)) / median if median else 0.0}


def aggregate(samples: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """phase -> trial -> figure -> stats over the rounds."""
    out: dict[str, Any] = {}
    for phase, trials in samples.items():
        for name, runs in trials.items():
            keys = {k for run in runs for k, v in run.items() if isinstance(v, int | float)}
            for key in keys:
                s = stats([run.get(key) for run in runs])  # type: ignore[misc]
                if s is not None:
                    out.setdefault(phase, {}).setdefault(name, {})[key] = s
    return out


def dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def median_of(agg: dict[str, Any], path: str) -> float | None:
    s = dig(agg, path)
    return s["median"] if isinstance(s, dict) else None


def noise_check(agg: dict[str, Any]) -> tuple[bool | None, str]:
    """Do the two drain variants with the same effective options agree (their ranges overlap)?"""
    a, b = dig(agg, "drain.chancy_default.rate"), dig(agg, "drain.chancy_norestart.rate")
    if not a or not b:
        return None, "noise check not run (a drain variant is missing)"
    overlap = a["min"] <= b["max"] and b["min"] <= a["max"]
    gap = abs(a["median"] - b["median"]) / max(a["median"], b["median"])
    text = (f"drain 'default' {a['median']:,.0f} ({a['min']:,.0f}-{a['max']:,.0f}) vs 'norestart' "
            f"{b['median']:,.0f} ({b['min']:,.0f}-{b['max']:,.0f}), same effective options: medians {gap:.0%} apart, "
            + ("ranges overlap: consistent" if overlap else "ranges do NOT overlap: this run is TOO NOISY to trust"))
    return overlap, text


# ------------------------------------------------------------------ report


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def cell(s: dict[str, float] | None, digits: int) -> str:
    if not s:
        return "-"
    if s["n"] == 1:
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}-{fmt(s['max'], digits)}; {s['spread']:.0%})"


def build_rows(agg: dict[str, Any], params: Params, variants: list[str]) -> list[tuple[str, str, str, str]]:
    """(label, chancy, huey, ratio); ratio > 1 always means chancy_lite is better (ratio of medians)."""
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, c: str | None, h: str | None, higher_is_better: bool, digits: int = 1) -> None:
        cs, hs = dig(agg, c) if c else None, dig(agg, h) if h else None
        ratio = "-"
        if cs and hs and cs["median"] > 0 and hs["median"] > 0:
            value = cs["median"] / hs["median"] if higher_is_better else hs["median"] / cs["median"]
            ratio = f"{value:.2f}x"
        rows.append((label, cell(cs, digits), cell(hs, digits), ratio))

    add(f"single push, jobs/s ({params.push_n:,} one by one; huey synchronous=FULL)", "push.chancy.rate",
        "push.huey.rate", True)
    add("single push, jobs/s (huey with synchronous=NORMAL)", "push.chancy.rate", "push.huey_normal.rate", True)
    add(f"bulk push, jobs/s (chancy push_many {params.bulk_n:,}; huey enqueue loop {params.huey_bulk_n:,})",
        "bulk.chancy.rate", "bulk.huey.rate", True)
    add("bulk push, jobs/s (huey: raw executemany, not its API)", "bulk.chancy.rate", "bulk.huey_raw.rate", True)
    for v in variants:
        add(f"drain no-op, 2 procs, jobs/s (chancy {v}: {params.drain_n:,}; huey {params.huey_drain_n:,})",
            f"drain.chancy_{v}.rate", "drain.huey.rate", True)
    for v in variants:
        add(f"  slowest tenth of the drain, jobs/s (chancy {v})", f"drain.chancy_{v}.slowest_tenth_rate",
            "drain.huey.slowest_tenth_rate", True)
    for v in variants:
        add(f"start-up: launch -> first job done, s (chancy {v})", f"drain.chancy_{v}.startup_s",
            "drain.huey.startup_s", False, 3)
    if variants:
        add("  of which launch -> chancy_lite imported (interpreter + imports), s",
            f"drain.chancy_{variants[0]}.imported_s", None, False, 3)
        add("  of which launch -> Worker.start() returned (template booted, children forked), s",
            f"drain.chancy_{variants[0]}.worker_started_s", None, False, 3)
    add("child replaced, ms per job with maximum_jobs_per_worker=1 (template)", "respawn.forkserver.ms_per_child",
        None, False)
    add("child replaced, ms per job with maximum_jobs_per_worker=1 (spawn)", "respawn.spawn.ms_per_child",
        None, False)
    for name, label in (("huey_default", "huey default"), ("huey_fast", "huey " + " ".join(HUEY_FAST_FLAGS))):
        for q in ("p50", "p95", "p99"):
            add(f"push->start latency {q}, ms ({label})", f"latency.chancy.{q}", f"latency.{name}.{q}", False, 2)
        add(f"after {params.idle_s:.0f} s idle: first push, ms ({label})", "latency.chancy.after_idle_first",
            f"latency.{name}.after_idle_first", False, 2)
        add(f"idle CPU over {params.cpu_s:.0f} s, % of a core ({label})", "latency.chancy.idle_cpu",
            f"latency.{name}.idle_cpu", False, 2)
    add("RSS per worker child, MiB (huey: its 2 workers + scheduler)", "latency.chancy.rss_mib",
        "latency.huey_default.rss_mib", False)
    add("PSS per worker child, MiB", "latency.chancy.pss_mib", "latency.huey_default.pss_mib", False)
    add("template process RSS / PSS, MiB (chancy)", "latency.chancy.template_rss_mib", None, False)
    add("  PSS", "latency.chancy.template_pss_mib", None, False)
    add("supervisor RSS, MiB", "latency.chancy.supervisor_rss_mib", "latency.huey_default.supervisor_rss_mib",
        False)
    add(f"{params.sleep_n:,} jobs x 10 ms, concurrency {params.sleep_concurrency}: s (ideal "
        f"{params.sleep_n * 0.01 / params.sleep_concurrency:.2f})", "sleep.chancy.s", None, False, 2)
    return rows


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for row in [header, None, *rows]:
        if row is None:
            print(line)
            continue
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths,
              strict=True))))
    print(line)


def target_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    agg, once = results.get("figures") or {}, results.get("once") or {}
    rows = []
    for label, path, op, goal in TARGETS:
        if path == "ratio:drain":
            c, h = median_of(agg, "drain.chancy_default.rate"), median_of(agg, "drain.huey.rate")
            value = c / h if c and h else None
        elif path.startswith("once."):
            value = once.get(path[5:])
        else:
            value = median_of(agg, path)
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        rows.append((label, f"{op} {goal:,}", fmt(value, 2), {True: "met", False: "NOT MET", None: "-"}[met]))
    return rows


def print_report(results: dict[str, Any], params: Params) -> None:
    agg = results.get("figures") or {}
    variants = list((results.get("variants") or {}).keys())
    start_load = results["load"][0]["loadavg"] if results["load"] else None
    print()
    print(f"load average at start {start_load} on {os.cpu_count()} CPUs"
          + (": the machine was BUSY" if results.get("busy") else "")
          + f"; per round {[x['loadavg'][0] for x in results['load'][1:]]}; at the end {results.get('end_load')}")
    print(f"each figure: median of {params.rounds} rounds (min-max; spread = (max-min)/median); ratio > 1 means "
          "chancy_lite is better (rates chancy/huey, times huey/chancy, of the medians)")
    print_table(build_rows(agg, params, variants), ("metric", "chancy_lite", "huey", "ratio"))
    print("noise check: " + results["noise"][1])
    once = results.get("once") or {}
    if once:
        print("chancy_lite only (once):")
        print(f"  claim 1 job (own txn), median us: {fmt(once.get('claim_small_us'), 0)} with {params.small_rows:,} "
              f"finished rows, {fmt(once.get('claim_big_us'), 0)} (p99 {fmt(once.get('claim_big_p99_us'), 0)}) with "
              f"{params.big_rows:,}")
        print(f"  count_jobs(), median ms: {fmt(once.get('count_small_ms'), 2)} with {params.small_rows:,} finished "
              f"rows, {fmt(once.get('count_ms'), 2)} with {params.big_rows:,} (a full GROUP BY scan: "
              f"{fmt(once.get('count_scan_ms'), 1)} ms)")
    scale = results.get("scale") or []
    if scale:
        print(f"scale curve: {params.scale_pending:,} pending no-op jobs drained from a file that also holds "
              f"{params.scale_finished:,} finished ones; then latency ({params.scale_lat_n} pushes) on the idle "
              "worker (one run each)")
        base = median_of(agg, "drain.chancy_default.rate")
        base_lat = median_of(agg, "latency.chancy.p50")
        rows = []
        for row in scale:
            if "error" in row:
                rows.append((str(row["children"]), row["error"], "", "", "", "", ""))
                continue
            rows.append((
                str(row["children"]), fmt(row["rate"], 0), fmt(row["slowest_tenth_rate"], 0),
                f"{row['rate'] / base:.2f}" if base and row["rate"] else "-",
                fmt(row["p50"], 2), fmt(row["p99"], 2), fmt(row["count_ms"], 2),
            ))
        print_table(rows, ("children", "drain jobs/s", "slowest tenth", "vs small file (2)", "p50 ms", "p99 ms",
                           "count_jobs ms"))
        if base_lat:
            print(f"  (small file, 2 children: drain {fmt(base, 0)} jobs/s, latency p50 {fmt(base_lat, 2)} ms)")
    if results.get("pages"):
        import bench_pages

        print("dashboard pages (scripts/bench_pages.py):")
        for label, value in bench_pages.rows_for_report(results["pages"]):
            print(f"  {label}  {value}")
    print("targets (issue #14):")
    print_table(target_rows(results), ("target", "goal", "measured (median)", ""))
    for error in results.get("errors", []):
        print(f"  ! error: {error}")
    for name, lines in (results.get("worker_logs") or {}).items():
        print(f"  ! worker log {name}:")
        for text in lines:
            print(f"      {text}")
    print("notes:")
    for note in notes(params, results.get("variants") or {}):
        print(f"  - {note}")


def effective_options(options: dict[str, Any]) -> dict[str, Any]:
    """What the process executor makes of these executor_options (read from the code, so defaults stay current)."""
    try:
        from chancy_lite import Chancy, Worker
        from chancy_lite.executors.process import ProcessExecutor
        from chancy_lite.queue import Queue

        with tempfile.TemporaryDirectory() as scratch:  # a worker that is never started: nothing is opened
            worker = Worker(Chancy(os.path.join(scratch, "options.db")), register_signal_handlers=False)
            executor = ProcessExecutor(worker, Queue("bench", concurrency=2, executor_options=dict(options)))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    names = ("maximum_jobs_per_worker", "maximum_memory_per_worker", "batch_size", "batch_window", "timeout_grace",
             "start_method", "preload")
    return {name: getattr(executor, name) for name in names if hasattr(executor, name)}


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None


def notes(params: Params, variants: dict[str, Any]) -> list[str]:
    return [
        "chancy_lite: synchronous=NORMAL (its default); huey: SqliteHuey defaults (WAL, synchronous=FULL)",
        "chancy worker: Worker(chancy) in its own process (scripts/bench_chancy_worker.py), queue 'bench' "
        "(process executor, 2 children unless said), 'default' paused",
        "chancy executor_options per drain variant (as given -> as the executor reads them): "
        + "; ".join(f"{k} = {json.dumps(v['options'])} -> {json.dumps(v['effective'], default=str)}"
                    for k, v in variants.items()) + "; latency, memory and the scale curve use the defaults",
        "huey consumer: huey_consumer bench_huey_app.huey -k process -w 2 -q; fast = " + " ".join(HUEY_FAST_FLAGS)
        + " (1 ms polling, no backoff); its drain queue is filled with its own serialised messages (executemany)",
        "drain rate = (N-1) / (last - first job end), from the jobs' own end times; start-up = launch -> first "
        "job end",
        f"latency: {params.lat_n} pushes {params.lat_gap * 1000:.0f} ms apart on an idle worker; then "
        f"{params.idle_s:.0f} s idle, CPU over its last {params.cpu_s:.0f} s, memory, {params.after_idle_n} more "
        "pushes (the first is the 'after idle' figure)",
        "RSS/PSS: VmRSS and smaps_rollup Pss of each worker child (chancy: children of its template; huey: the "
        "consumer's children), mean per child",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, a few minutes")
    parser.add_argument("--rounds", type=int, help="rounds of alternating runs (default 3; quick 2)")
    parser.add_argument("--only", choices=("chancy", "huey", "pages"),
                        help="run one system only, or only the dashboard's pages")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON results to PATH")
    parser.add_argument("--dir", metavar="DIR", help="make the temporary directory under DIR (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (files and worker logs)")
    parser.add_argument("--skip-scale", action="store_true", help="skip the once-only measurements and scale curve")
    parser.add_argument(
        "--options", metavar="JSON",
        help="chancy executor_options for an extra 'custom' drain variant, e.g. '{\"batch_size\": 16}'",
    )
    args = parser.parse_args()
    params = dataclasses.replace(QUICK if args.quick else Params())
    if args.rounds:
        params.rounds = args.rounds
    variants = dict(VARIANTS)
    if args.options:
        variants["custom"] = json.loads(args.options)
    workdir = tempfile.mkdtemp(prefix="chancy-bench-", dir=args.dir)
    started = time.perf_counter()
    first_load = load()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "params": dataclasses.asdict(params),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "dir": workdir,
                    "chancy_lite_git": git_revision()},
        "load": [{"round": 0, "loadavg": first_load}],
        "busy": first_load[0] > 0.5 * (os.cpu_count() or 1),
        "errors": [],
    }
    log(f"load average {first_load} on {os.cpu_count()} CPUs" + (": the machine is busy" if results["busy"] else ""))
    try:
        import apsw

        results["machine"]["apsw"] = apsw.apsw_version()
        chancy = huey = None
        if args.only == "pages":
            import bench_pages

            results["pages"] = bench_pages.run(workdir, params.big_rows)
        elif args.only != "huey":
            chancy = ChancyBench(params, workdir, variants)
            results["variants"] = {name: {"options": o, "effective": effective_options(o)}
                                   for name, o in variants.items()}
        if args.only not in ("chancy", "pages"):
            import huey as huey_module

            results["machine"]["huey"] = huey_module.__version__
            huey = HueyBench(params, workdir)
        run_rounds(params, chancy, huey, results)
        if chancy is not None and not args.skip_scale:
            for name, step in (("once", chancy.once), ("scale", chancy.scale),
                               ("pages", functools.partial(pages, workdir, params.big_rows))):
                log(f"chancy: {name}")
                try:
                    results[name] = step()
                except Exception as exc:
                    traceback.print_exc()
                    results["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
        results["worker_logs"] = worker_logs(workdir, "chancy-") | worker_logs(workdir, "huey-")
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["figures"] = aggregate(results.get("samples") or {})
    results["noise"] = noise_check(results["figures"])
    results["end_load"] = load()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_report(results, params)
    print(f"total time {results['elapsed_s']} s")
    line = json.dumps(results, default=str, separators=(",", ":"))
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

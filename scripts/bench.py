"""Benchmark chancy_lite against huey's SqliteHuey, side by side in one run.

Usage: ``scripts/bench [--quick] [--only chancy|huey|pages] [--json PATH] [--dir DIR] [--without-metrics]
[--drain-only]``

Each system gets fresh files in one temporary directory (a new file per phase). It
prints a table, then one final line of JSON with every figure.

What is measured, and how:

* single push: N jobs pushed one by one from this process (chancy ``sync_push``, huey a
  task call); these jobs are then drained.
* bulk push: chancy ``sync_push_many(batch_size=1000)``; huey has no bulk API, so its
  figure is the enqueue loop of its public API (one commit per task), and a second,
  non-public figure inserts huey's serialised messages with one ``executemany`` in one
  transaction on its storage connection (what a bulk API could reach).
* drain: N no-op jobs pushed first, then a worker is started with 2 processes. The end
  is detected by polling (50 ms until the first, then 100 ms): chancy counts finished
  rows with ``sync_count_jobs()``; huey counts stored results (``huey.result_count()``;
  every task returns a value, so each finished task writes a result row, as each chancy
  job writes its final state). The figures come from the jobs' own end times (chancy
  ``completed_at``, huey's no-op returns ``time.time()``): start-up = worker launch ->
  first job end, throughput = (N-1) / (last end - first end).
* latency: pushes spaced 20 ms apart on an idle worker; each job records
  ``time.time()`` when it starts (chancy: in its meta, via an injected ``QueuedJob``;
  huey: as its result); latency = start - the time just before the push call. Then the
  worker sits idle, its CPU is measured over the end of the idle period (utime+stime of
  the process tree from /proc), RSS is read (VmRSS of the children), and a few more jobs
  are pushed: the first and the worst of those are reported.
* chancy only: claim time with 1,000 vs 1,000,000 finished rows (filled directly with
  apsw ``executemany``), and a drain of jobs sleeping 10 ms with concurrency 16.
* chancy only: the dashboard's main pages, timed end to end over HTTP against a file of
  1,000,000 jobs (100,000 with --quick), see scripts/bench_pages.py; ``--only pages`` runs
  just this.

chancy_lite's files are opened through apsw only (via chancy_lite); huey's files through
huey (Python's sqlite3). Never both on one file.
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
# chancy executor_options per drain variant ("custom" is added by --options).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "norestart": {"maximum_jobs_per_worker": None},
    "batch1": {"maximum_jobs_per_worker": None, "batch_size": 1},
}
SLEEP_VARIANTS = ("default", "norestart", "custom")
# Completion polls. The figures come from the jobs' own timestamps, so polling only detects the end; it is kept
# sparse because chancy's count_jobs() scans the table (~4 ms at 20,000 rows) and the machine has 2 CPUs.
POLL_FIRST, POLL_REST = 0.05, 0.1
HUEY_FAST_FLAGS = ["-d", "0.001", "-b", "1"]


def run_step(system: str, name: str, step: Callable[[], object], errors: list[str]) -> None:
    """Run one measurement; a failure is printed and recorded, and the others still run."""
    log(f"{system}: {name}")
    try:
        step()
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"{name}: {type(exc).__name__}: {exc}")


@dataclasses.dataclass
class Params:
    drain_n: int = 20_000  # single push and drain
    bulk_n: int = 20_000
    lat_n: int = 500
    lat_gap: float = 0.02
    idle_s: float = 30.0
    cpu_s: float = 10.0
    after_idle_n: int = 5
    small_rows: int = 1_000
    big_rows: int = 1_000_000
    claims: int = 2_000
    sleep_n: int = 2_000
    sleep_concurrency: int = 16
    timeout: float = 300.0


QUICK = Params(
    drain_n=3_000, bulk_n=10_000, lat_n=100, idle_s=4.0, cpu_s=3.0, after_idle_n=3, big_rows=100_000,
    claims=500, sleep_n=500, timeout=120.0,
)


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


def process_table() -> dict[int, int]:
    """pid -> ppid for every process."""
    table: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2 :].split()
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


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    ticks: dict[int, int] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2 :].split()
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


def rss_mib(pid: int) -> float | None:
    return proc_kib(pid, "status", "VmRSS")


def memory_report(pid: int) -> dict[str, Any]:
    kids = children(pid)
    per_child = [r for r in (rss_mib(p) for p in kids) if r is not None]
    pss = [r for r in (proc_kib(p, "smaps_rollup", "Pss") for p in kids) if r is not None]
    return {
        "child_mean_pss_mib": statistics.fmean(pss) if pss else None,
        "supervisor_mib": rss_mib(pid),
        "children": len(per_child),
        "child_mean_mib": statistics.fmean(per_child) if per_child else None,
        "child_max_mib": max(per_child) if per_child else None,
        "per_child_mib": [round(r, 1) for r in per_child],
    }


def wait_for_children(pid: int, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(children(pid)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not start {n} child processes within {timeout} s")
        time.sleep(0.05)


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
    time.sleep(0.2)
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
    """The first lines of every non-empty worker log (warnings and errors: nothing is logged when all goes well)."""
    found = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith(prefix) and name.endswith(".log"):
            with open(os.path.join(directory, name), errors="replace") as f:
                text = f.read().splitlines()
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


# ----------------------------------------------------------------- chancy


class ChancyBench:
    def __init__(self, params: Params, workdir: str, variants: dict[str, dict[str, Any]], *,
                 metrics: bool = True, drain_only: bool = False) -> None:
        self.p = params
        self.dir = workdir
        self.variants = variants
        self.metrics = metrics
        self.drain_only = drain_only
        self.results: dict[str, Any] = {
            "variants": {name: {"options": o, "effective": effective_options(o)} for name, o in variants.items()},
            "plugins": "defaults" if metrics else "defaults without Metrics",
        }
        self.errors: list[str] = []

    def open(self, name: str, *, concurrency: int = 2, options: dict[str, Any] | None = None) -> Any:
        from bench_chancy_worker import app

        from chancy_lite import Queue

        chancy = app(os.path.join(self.dir, f"chancy-{name}.db"), metrics=self.metrics)
        chancy.sync_migrate()
        # The worker always serves "default" too (declared at start, if missing): keep it paused so that only
        # the "bench" queue starts processes.
        chancy.sync_declare(Queue("default", state=Queue.State.PAUSED), upsert=True)
        chancy.sync_declare(
            Queue("bench", concurrency=concurrency, executor_options=dict(options or {})), upsert=True
        )
        return chancy

    def worker(self, chancy: Any, name: str) -> Any:
        cmd = [sys.executable, os.path.join(SCRIPTS, "bench_chancy_worker.py"), chancy.path]
        if not self.metrics:
            cmd.append("--without-metrics")
        return running(cmd, os.path.join(self.dir, f"chancy-{name}.log"), signal.SIGTERM)

    def jobs(self, func: str, n: int) -> Iterator[Any]:
        from chancy_lite import Job

        return (Job(func=func, queue="bench") for _ in range(n))

    def finished(self, chancy: Any) -> tuple[int, int]:
        counts = chancy.sync_count_jobs().get("bench", {})
        return counts.get("succeeded", 0) + counts.get("failed", 0), counts.get("failed", 0)

    def wait_done(self, chancy: Any, p: subprocess.Popen[bytes], n: int, since: float) -> dict[str, Any]:
        first = None
        while True:
            done, failed = self.finished(chancy)
            now = time.perf_counter()
            if first is None and done > 0:
                first = now
            if done >= n:
                assert first is not None
                return {"first_done_s": first - since, "all_done_s": now - since, "failed": failed}
            if p.poll() is not None:
                raise RuntimeError(f"the chancy worker exited ({p.returncode}) with {done}/{n} jobs finished")
            if now - since > self.p.timeout:
                raise TimeoutError(f"chancy: only {done}/{n} jobs finished after {self.p.timeout} s")
            time.sleep(POLL_FIRST if first is None else POLL_REST)

    def run(self, *, only_pages: bool = False) -> dict[str, Any]:
        drains = [(f"drain_{name}", functools.partial(self.drain, name, o)) for name, o in self.variants.items()]
        steps = [
            ("push_single", self.push_single),
            ("push_bulk", self.push_bulk),
            *drains,
            ("latency", self.latency),
            ("claim", self.claim),
            ("sleep_drain", self.sleep_drain),
            ("pages", self.pages),
        ]
        if self.drain_only:
            steps = drains
        for name, step in steps:
            if not only_pages or name == "pages":
                run_step("chancy", name, step, self.errors)
        self.results["errors"] = self.errors
        self.results["worker_logs"] = worker_logs(self.dir, "chancy-")
        return self.results

    def push_single(self) -> None:
        n = self.p.drain_n
        with self.open("push-single") as chancy:
            jobs = list(self.jobs("bench_jobs.noop", n))
            start = time.perf_counter()
            for job in jobs:
                chancy.sync_push(job)
            elapsed = time.perf_counter() - start
        self.results["push_single"] = {"jobs": n, "s": elapsed, "rate": n / elapsed}

    def push_bulk(self) -> None:
        n = self.p.bulk_n
        with self.open("push-bulk") as chancy:
            jobs = list(self.jobs("bench_jobs.noop", n))
            start = time.perf_counter()
            for _ in chancy.sync_push_many(jobs, batch_size=1000):
                pass
            elapsed = time.perf_counter() - start
        self.results["push_bulk"] = {"jobs": n, "s": elapsed, "rate": n / elapsed, "batch_size": 1000}

    def drain(self, name: str, options: dict[str, Any]) -> None:
        n = self.p.drain_n
        with self.open(f"drain-{name}", options=options) as chancy:
            for _ in chancy.sync_push_many(self.jobs("bench_jobs.noop", n)):
                pass
            launched_wall, launched = time.time(), time.perf_counter()
            with self.worker(chancy, f"drain-{name}") as p:
                polled = self.wait_done(chancy, p, n, launched)
            with chancy.connection() as conn:
                first, last = conn.execute(
                    f"SELECT min(completed_at), max(completed_at) FROM {chancy.prefix}jobs WHERE queue = 'bench'"
                ).fetchall()[0]
        self.results[f"drain_{name}"] = drain_figures(n, options, launched_wall, first / 1e6, last / 1e6, polled)
        if polled["failed"]:
            self.errors.append(f"drain_{name}: {polled['failed']} of {n} no-op jobs failed")

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

    def latency(self) -> None:
        with self.open("latency") as chancy, self.worker(chancy, "latency") as p:
            warm = self.push_stamps(chancy, 4)
            self.latencies(chancy, warm)
            wait_for_children(p.pid, 2, 30)
            wait_quiet(p.pid, 30)
            lat = self.latencies(chancy, self.push_stamps(chancy, self.p.lat_n))
            self.results["latency_ms"] = summarise(lat)
            time.sleep(max(0.0, self.p.idle_s - self.p.cpu_s))
            self.results["idle_cpu_percent"] = idle_cpu_percent(p.pid, self.p.cpu_s)
            self.results["memory"] = memory_report(p.pid)
            after = self.latencies(chancy, self.push_stamps(chancy, self.p.after_idle_n))
            self.results["after_idle_ms"] = {"first": after[0], "max": max(after), "all": after}

    def claim(self) -> None:
        self.results["claim_us"] = {
            "small": self.claim_with(self.p.small_rows),
            "big": self.claim_with(self.p.big_rows),
        }

    def claim_with(self, finished_rows: int) -> dict[str, Any]:
        from chancy_lite.utils import chancy_uuid

        with self.open(f"claim-{finished_rows}") as chancy:
            now = chancy.now()
            statement = (
                f"INSERT INTO {chancy.prefix}jobs (id, queue, func, state, attempts, max_attempts, created_at,"
                " started_at, completed_at, scheduled_at) VALUES (?, 'bench', 'bench_jobs.noop', 'succeeded', 1, 1,"
                " ?, ?, ?, ?)"
            )
            start = time.perf_counter()
            with chancy.connection() as conn:
                left = finished_rows
                while left > 0:
                    batch = min(left, 50_000)
                    with conn:
                        conn.executemany(statement, ((str(chancy_uuid()), now, now, now, now) for _ in range(batch)))
                    left -= batch
            build_s = time.perf_counter() - start
            for _ in chancy.sync_push_many(self.jobs("bench_jobs.noop", self.p.claims)):
                pass
            times = []
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
            return {
                "finished_rows": finished_rows,
                "claims": self.p.claims,
                "median": statistics.median(times),
                "p99": percentile(times, 99),
                "build_s": build_s,
                "file_mib": os.path.getsize(chancy.path) / 2**20,
            }

    def pages(self) -> None:
        import bench_pages

        self.results["pages"] = bench_pages.run(self.dir, self.p.big_rows)

    def sleep_drain(self) -> None:
        self.results["sleep_drain"] = {
            name: self.sleep_drain_with(name, self.variants[name]) for name in SLEEP_VARIANTS if name in self.variants
        }

    def sleep_drain_with(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        n, conc = self.p.sleep_n, self.p.sleep_concurrency
        with self.open(f"sleep-{name}", concurrency=conc, options=options) as chancy:
            launched = time.perf_counter()
            with self.worker(chancy, f"sleep-{name}") as p:
                wait_for_children(p.pid, conc, 60)
                wait_quiet(p.pid, 60, quiet=0.5)
                boot = time.perf_counter() - launched - 0.5  # launch -> the last CPU use of the booting children
                start_wall, start = time.time(), time.perf_counter()
                for _ in chancy.sync_push_many(self.jobs("bench_jobs.sleep10", n)):
                    pass
                timing = self.wait_done(chancy, p, n, start)
            with chancy.connection() as conn:
                last = conn.execute(
                    f"SELECT max(completed_at) FROM {chancy.prefix}jobs WHERE queue = 'bench'"
                ).fetchall()[0][0]
        ideal = n * 0.01 / conc
        took = last / 1e6 - start_wall
        return {
            "jobs": n,
            "concurrency": conc,
            "options": options,
            "boot_s": boot,
            "s": took,
            "ideal_s": ideal,
            "efficiency": ideal / took,
            "polled_s": timing["all_done_s"],
            "failed": timing["failed"],
        }


# ------------------------------------------------------------------- huey


class HueyBench:
    def __init__(self, params: Params, workdir: str) -> None:
        self.p = params
        self.dir = workdir
        self.results: dict[str, Any] = {}
        self.errors: list[str] = []
        import bench_huey_app

        self.app = bench_huey_app
        self.consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")

    def use(self, name: str) -> str:
        path = os.path.join(self.dir, f"huey-{name}.db")
        self.app.use_file(path)
        return path

    def consumer_cmd(self, extra: list[str]) -> list[str]:
        base = [self.consumer]
        if not os.access(self.consumer, os.X_OK):
            base = [sys.executable, "-m", "huey.bin.huey_consumer"]
        return [*base, "bench_huey_app.huey", "-k", "process", "-w", "2", "-q", *extra]

    def worker(self, path: str, name: str, extra: list[str]) -> Any:
        env = {**os.environ, "BENCH_HUEY_DB": path}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [SCRIPTS, env.get("PYTHONPATH")]))
        # SIGTERM makes huey_consumer stop at once (SIGINT would wait for running tasks); the workers are idle then.
        return running(self.consumer_cmd(extra), os.path.join(self.dir, f"huey-{name}.log"), signal.SIGTERM, env)

    def run(self) -> dict[str, Any]:
        for name, step in (
            ("push_single_and_drain", self.push_single_and_drain),
            ("push_bulk", self.push_bulk),
            ("latency_default", lambda: self.latency("default", [])),
            ("latency_fast", lambda: self.latency("fast", HUEY_FAST_FLAGS)),
        ):
            run_step("huey", name, step, self.errors)
        self.results["errors"] = self.errors
        self.results["worker_logs"] = worker_logs(self.dir, "huey-")
        return self.results

    def push_single_and_drain(self) -> None:
        n = self.p.drain_n
        path = self.use("drain")
        huey = self.app.huey
        start = time.perf_counter()
        for _ in range(n):
            self.app.noop()
        elapsed = time.perf_counter() - start
        self.results["push_single"] = {"jobs": n, "s": elapsed, "rate": n / elapsed, "synchronous": "FULL (default)"}
        launched_wall, launched = time.time(), time.perf_counter()
        first = None
        with self.worker(path, "drain", []) as p:
            while True:
                done = huey.result_count()
                now = time.perf_counter()
                if first is None and done > 0:
                    first = now
                if done >= n:
                    break
                if p.poll() is not None:
                    raise RuntimeError(f"huey_consumer exited ({p.returncode}) with {done}/{n} tasks finished")
                if now - launched > self.p.timeout:
                    raise TimeoutError(f"huey: only {done}/{n} tasks finished after {self.p.timeout} s")
                time.sleep(POLL_FIRST if first is None else POLL_REST)
        assert first is not None
        polled = {"first_done_s": first - launched, "all_done_s": now - launched}
        stamps = [
            huey.serializer.deserialize(bytes(value))
            for (value,) in huey.storage.sql("SELECT value FROM kv WHERE queue = ?", (huey.storage.name,), results=True)
        ]
        if len(stamps) != n or not all(isinstance(v, float) for v in stamps):
            raise RuntimeError(f"huey stored {len(stamps)} results for {n} tasks, or not all are times: {stamps[:3]}")
        self.results["drain"] = drain_figures(n, {}, launched_wall, min(stamps), max(stamps), polled)
        # The same single-push loop with synchronous=NORMAL, chancy_lite's default durability.
        self.use("push-normal")
        huey.storage.conn.execute("PRAGMA synchronous = NORMAL")
        start = time.perf_counter()
        for _ in range(n):
            self.app.noop()
        elapsed = time.perf_counter() - start
        self.results["push_single_normal"] = {"jobs": n, "s": elapsed, "rate": n / elapsed, "synchronous": "NORMAL"}

    def push_bulk(self) -> None:
        n = self.p.bulk_n
        huey = self.app.huey
        self.use("bulk")
        start = time.perf_counter()
        for _ in range(n):
            huey.enqueue(self.app.noop.s())
        elapsed = time.perf_counter() - start
        self.results["push_bulk"] = {"jobs": n, "s": elapsed, "rate": n / elapsed, "how": "enqueue loop (public API)"}
        # Not public API: what one transaction per 1000 tasks gives huey's table (messages serialised first).
        self.use("bulk-raw")
        storage = huey.storage
        start = time.perf_counter()
        for offset in range(0, n, 1000):
            rows = [
                (storage.name, storage.to_blob(huey.serialize_task(self.app.noop.s())), 0)
                for _ in range(min(1000, n - offset))
            ]
            with storage.db(commit=True) as cursor:
                cursor.executemany("insert into task (queue, data, priority) values (?, ?, ?)", rows)
        elapsed = time.perf_counter() - start
        self.results["push_bulk_raw"] = {
            "jobs": n, "s": elapsed, "rate": n / elapsed, "how": "executemany on huey's storage, 1000 per transaction",
        }

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

    def latency(self, name: str, flags: list[str]) -> None:
        path = self.use(f"latency-{name}")
        out: dict[str, Any] = {"flags": " ".join(["-k process -w 2 -q", *flags])}
        self.results[f"latency_{name}"] = out
        with self.worker(path, f"latency-{name}", flags) as p:
            self.latencies(self.push_stamps(4))
            if flags == []:
                wait_quiet(p.pid, 30)
            else:  # polling every 1 ms never goes quiet
                time.sleep(1.0)
            lat = self.latencies(self.push_stamps(self.p.lat_n))
            out["latency_ms"] = summarise(lat)
            time.sleep(max(0.0, self.p.idle_s - self.p.cpu_s))
            out["idle_cpu_percent"] = idle_cpu_percent(p.pid, self.p.cpu_s)
            out["memory"] = memory_report(p.pid)
            after = self.latencies(self.push_stamps(self.p.after_idle_n))
            out["after_idle_ms"] = {"first": after[0], "max": max(after), "all": after}


def drain_figures(
    n: int, options: dict[str, Any], launched: float, first: float, last: float, polled: dict[str, Any]
) -> dict[str, Any]:
    """Drain figures from the jobs' own end times (wall clock): start-up = launch -> first job done."""
    span = last - first
    polled_span = polled["all_done_s"] - polled["first_done_s"]
    return {
        "jobs": n,
        "options": options,
        "startup_s": first - launched,
        "drain_s": span,
        "rate": (n - 1) / span if span > 0 else None,
        "polled": {**polled, "rate": (n - 1) / polled_span if polled_span > 0 else None},
        "failed": polled.get("failed", 0),
    }


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


# ------------------------------------------------------------------ report


def dig(data: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def build_rows(chancy: dict[str, Any], huey: dict[str, Any], params: Params) -> list[tuple[str, Any, Any, Any]]:
    """(label, chancy value, huey value, ratio); ratio > 1 always means chancy_lite is better."""
    rows: list[tuple[str, Any, Any, Any]] = []

    def add(label: str, c: Any, h: Any, higher_is_better: bool, digits: int = 1) -> None:
        ratio = None
        if isinstance(c, int | float) and isinstance(h, int | float) and c > 0 and h > 0:
            ratio = c / h if higher_is_better else h / c
        rows.append((label, fmt(c, digits), fmt(h, digits), f"{ratio:.2f}x" if ratio is not None else "-"))

    n = params.drain_n
    add(f"single push, jobs/s ({n} one by one; huey synchronous=FULL)", dig(chancy, "push_single.rate"),
        dig(huey, "push_single.rate"), True)
    add("single push, jobs/s (huey with synchronous=NORMAL like chancy)", dig(chancy, "push_single.rate"),
        dig(huey, "push_single_normal.rate"), True)
    add(f"bulk push, jobs/s ({params.bulk_n}; huey: enqueue loop)", dig(chancy, "push_bulk.rate"),
        dig(huey, "push_bulk.rate"), True)
    add("bulk push, jobs/s (huey: raw executemany, not API)", dig(chancy, "push_bulk.rate"),
        dig(huey, "push_bulk_raw.rate"), True)
    variants = list(chancy.get("variants") or VARIANTS)
    for variant in variants:
        add(f"drain {n} no-op, 2 procs, jobs/s (chancy {variant})", dig(chancy, f"drain_{variant}.rate"),
            dig(huey, "drain.rate"), True)
    for variant in variants:
        add(f"start-up: launch -> first job done, s (chancy {variant})", dig(chancy, f"drain_{variant}.startup_s"),
            dig(huey, "drain.startup_s"), False, 2)
    for name, label in (("default", "huey default"), ("fast", "huey " + " ".join(HUEY_FAST_FLAGS))):
        key = f"latency_{name}"
        for q in ("p50", "p95", "p99"):
            add(f"push->start latency {q}, ms ({label})", dig(chancy, f"latency_ms.{q}"),
                dig(huey, f"{key}.latency_ms.{q}"), False, 2)
        add(f"after {params.idle_s:.0f} s idle: first job, ms ({label})", dig(chancy, "after_idle_ms.first"),
            dig(huey, f"{key}.after_idle_ms.first"), False, 2)
        add(f"after {params.idle_s:.0f} s idle: max of {params.after_idle_n}, ms ({label})",
            dig(chancy, "after_idle_ms.max"), dig(huey, f"{key}.after_idle_ms.max"), False, 2)
        add(f"idle CPU over {params.cpu_s:.0f} s, % of a core ({label})", dig(chancy, "idle_cpu_percent"),
            dig(huey, f"{key}.idle_cpu_percent"), False, 2)
    add("RSS per child, mean MiB", dig(chancy, "memory.child_mean_mib"),
        dig(huey, "latency_default.memory.child_mean_mib"), False)
    add("RSS per child, max MiB", dig(chancy, "memory.child_max_mib"),
        dig(huey, "latency_default.memory.child_max_mib"), False)
    add("PSS per child, mean MiB", dig(chancy, "memory.child_mean_pss_mib"),
        dig(huey, "latency_default.memory.child_mean_pss_mib"), False)
    add("RSS supervisor, MiB", dig(chancy, "memory.supervisor_mib"),
        dig(huey, "latency_default.memory.supervisor_mib"), False)
    add("child processes (huey: 2 workers + scheduler)", dig(chancy, "memory.children"),
        dig(huey, "latency_default.memory.children"), False, 0)
    return rows


def chancy_only_rows(chancy: dict[str, Any], params: Params) -> list[tuple[str, str]]:
    rows = []
    small, big = dig(chancy, "claim_us.small"), dig(chancy, "claim_us.big")
    if small:
        rows.append((f"claim 1 job (own txn), median us, {small['finished_rows']:,} finished rows",
                     f"{small['median']:.0f} (p99 {small['p99']:.0f})"))
    if big:
        rows.append((f"claim 1 job (own txn), median us, {big['finished_rows']:,} finished rows",
                     f"{big['median']:.0f} (p99 {big['p99']:.0f}; table built in {big['build_s']:.1f} s)"))
    if small and big:
        rows.append(("claim median ratio big/small (1.0 = flat)", f"{big['median'] / small['median']:.2f}"))
    if chancy.get("pages"):
        import bench_pages

        rows.extend(bench_pages.rows_for_report(chancy["pages"]))
    for name in SLEEP_VARIANTS:
        s = dig(chancy, f"sleep_drain.{name}")
        if s:
            rows.append((f"{s['jobs']} jobs x 10 ms sleep, concurrency {s['concurrency']} ({name} options), s",
                         f"{s['s']:.2f} vs ideal {s['ideal_s']:.2f} (efficiency {s['efficiency']:.0%}; "
                     f"{s['concurrency']} children booted in ~{s['boot_s']:.1f} s)"))
    return rows


def print_report(results: dict[str, Any], params: Params) -> None:
    chancy, huey = results.get("chancy") or {}, results.get("huey") or {}
    rows = build_rows(chancy, huey, params)
    header = ("metric", "chancy_lite", "huey", "ratio")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print()
    print("ratio > 1 means chancy_lite is better: chancy/huey for rates, huey/chancy for times, CPU and memory")
    print(line)

    def show(row: tuple[Any, ...]) -> None:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = (str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in pairs)
        print("  ".join(cells))

    show(header)
    print(line)
    for row in rows:
        show(row)
    print(line)
    extra = chancy_only_rows(chancy, params)
    if extra:
        print("chancy_lite only")
        width = max(len(r[0]) for r in extra)
        for label, value in extra:
            print(f"  {label.ljust(width)}  {value}")
    print("notes:")
    for note in results["notes"]:
        print(f"  - {note}")
    for system in ("chancy", "huey"):
        for error in (results.get(system) or {}).get("errors", []):
            print(f"  ! {system} error: {error}")
        for name, lines in ((results.get(system) or {}).get("worker_logs") or {}).items():
            print(f"  ! {system} worker log {name}:")
            for text in lines:
                print(f"      {text}")


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
    names = ("maximum_jobs_per_worker", "batch_size", "batch_window", "timeout_grace")
    return {name: getattr(executor, name) for name in names if hasattr(executor, name)}


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def notes(params: Params, variants: dict[str, Any], plugins: str = "defaults") -> list[str]:
    return [
        f"chancy plugins: {plugins} (the defaults are Leadership, Pruner, Recovery and Metrics; "
        "--without-metrics leaves Metrics out)",
        "chancy_lite: synchronous=NORMAL (its default); huey: SqliteHuey defaults (WAL, synchronous=FULL); "
        "the second single-push row reruns huey's loop with synchronous=NORMAL",
        "huey has no bulk enqueue: its bulk row is the public enqueue loop (one transaction per task); "
        "the 'raw executemany' row bypasses huey's API (serialise_task + executemany, 1000 per transaction)",
        "chancy worker: Worker(chancy) in a separate process (scripts/bench_chancy_worker.py), queue 'bench' "
        "concurrency 2 (process executor); queue 'default' declared paused so it starts no processes",
        "chancy executor_options per variant (as given -> as the executor reads them): "
        + "; ".join(f"{k} = {json.dumps(v['options'])} -> {json.dumps(v['effective'])}" for k, v in variants.items())
        + "; latency, idle CPU and RSS use 'default'",
        "each drain: a fresh file, N jobs pushed first (chancy push_many, huey the single-push loop), then the "
        "worker is launched",
        "huey consumer: huey_consumer bench_huey_app.huey -k process -w 2 -q (-q: per-task INFO logging off; "
        "chancy children log nothing when logging is not configured); fast = " + " ".join(HUEY_FAST_FLAGS) +
        " (1 ms polling, no backoff)",
        "completion detection: chancy polls sync_count_jobs() (succeeded+failed); huey polls result_count() "
        "(every task returns a value, so each finished task writes a result row, as each chancy job writes its "
        "final state); polls every 50 ms until the first, then 100 ms (chancy's count_jobs() is a full scan: ~4 ms "
        "at 20,000 rows)",
        "drain rate = (N-1) / (last - first job end), from the jobs' own end times (chancy completed_at; huey "
        "noop returns time.time()); start-up = worker launch -> first job end (the polled figures are in the "
        "JSON under 'polled')",
        f"latency: {params.lat_n} pushes {params.lat_gap * 1000:.0f} ms apart on an idle worker; start time = "
        "time.time() in the job (chancy: meta via injected QueuedJob; huey: task result); push time = just before "
        f"the push call; then {params.idle_s:.0f} s idle, CPU over its last {params.cpu_s:.0f} s, RSS, "
        f"{params.after_idle_n} more pushes",
        "idle CPU = utime+stime of the worker's process tree (/proc/<pid>/stat); RSS = VmRSS of the worker's "
        "direct children (huey: 2 workers + its scheduler process); PSS from smaps_rollup (huey forks its "
        "children, chancy_lite spawns fresh interpreters)",
        "claim: chancy.store.claim_jobs(conn, 'bench', 1) in its own `with conn:` (BEGIN IMMEDIATE) per claim; "
        "finished rows inserted directly with apsw executemany",
        "sleep drain: the worker is started and its children are up and quiet (no CPU used for 0.5 s) before the "
        "jobs are pushed (push_many); "
        "time = push start -> last completed_at",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, under a minute")
    parser.add_argument("--only", choices=("chancy", "huey", "pages"),
                        help="run one system only, or only the dashboard's page timings")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON results to PATH")
    parser.add_argument("--dir", metavar="DIR", help="make the temporary directory under DIR (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (files and worker logs)")
    parser.add_argument(
        "--options", metavar="JSON",
        help="chancy executor_options for an extra 'custom' drain variant, e.g. '{\"batch_size\": 16}'",
    )
    parser.add_argument("--without-metrics", action="store_true",
                        help="chancy with its default plugins less Metrics (to measure what recording costs)")
    parser.add_argument("--drain-only", action="store_true", help="chancy: only the drain variants")
    args = parser.parse_args()
    params = QUICK if args.quick else Params()
    variants = dict(VARIANTS)
    if args.options:
        variants["custom"] = json.loads(args.options)
    workdir = tempfile.mkdtemp(prefix="chancy-bench-", dir=args.dir)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "params": dataclasses.asdict(params),
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "dir": workdir,
            "chancy_lite_git": git_revision(),
        },
    }
    try:
        import apsw

        results["machine"]["apsw"] = apsw.apsw_version()
        results["machine"]["sqlite_apsw"] = apsw.sqlite_lib_version()
        if args.only != "huey":
            bench = ChancyBench(params, workdir, variants, metrics=not args.without_metrics,
                                drain_only=args.drain_only)
            results["chancy"] = bench.run(only_pages=args.only == "pages")
        if args.only not in ("chancy", "pages"):
            import huey

            results["machine"]["huey"] = huey.__version__
            results["huey"] = HueyBench(params, workdir).run()
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    chancy_results = results.get("chancy") or {}
    results["notes"] = notes(params, chancy_results.get("variants") or {}, chancy_results.get("plugins", "defaults"))
    print_report(results, params)
    print(f"total time {results['elapsed_s']} s")
    line = json.dumps(results, default=str, separators=(",", ":"))
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line)
    failed = any((results.get(s) or {}).get("errors") for s in ("chancy", "huey"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

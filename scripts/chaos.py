"""Chaos run: real worker processes killed, stopped and restarted at random while they work through a mixed
batch of jobs, then a check of the whole ledger.

Usage: ``scripts/chaos [--jobs N] [--duration S] [--quick] [--seed N] [--dir DIR] [--keep] [--json PATH]``

What it does
============

1. Makes a fresh file, declares the queue ``chaos`` and creates the side table ``chaos_runs``
   (``scripts/chaos_jobs.py``), where every run of a job records itself: job id, attempt, pid,
   start and (if the function got to its end) finish time and outcome.
2. Plans N jobs (default 10,000): fast ones; slow ones (sleep 0.05-0.5 s); failing ones (always raise);
   retrying ones (raise on their first attempts, then succeed; max_attempts 3-5); scheduled ones (due a
   few seconds after their push); unique ones (a small pool of shared ``unique_key``s, so many pushes
   return an existing job's id); cancel targets (slow jobs, cancelled while running, and scheduled ones,
   cancelled while pending). Half are pushed before the workers start, the rest in small batches
   spread over the chaos period, so every kind of job is in flight while processes die.
3. Starts ``--workers`` supervisors (``scripts/chaos_worker.py``: a ``Worker`` with the queue's
   ``--concurrency`` child processes), each in its own session. For ``--duration`` seconds it plays a
   shuffled deck of actions, one every fraction of a second: SIGKILL a child (any process of the
   supervisor's session: a worker child, or the template process that forks them, whose children then
   get their parent-death signal); SIGKILL a whole
   supervisor (never the last one running; its children must then exit by themselves, through the
   parent-death signal, within a deadline); SIGSTOP a child or a supervisor, SIGCONT it a little later
   (from a timer thread, so a push blocked on a lock the stopped process holds cannot wedge the loop).
   A killed supervisor is restarted after a random delay. Cancellations are sent meanwhile.
4. Restarts the missing supervisors, continues everything, waits (with a generous deadline) until every
   job is terminal, stops the supervisors with SIGTERM (each must exit 0) and checks that no process of
   theirs is left.
5. Checks the ledger, prints a tally and exits 1 if anything is wrong.

The ledger rules (each broken rule is a violation of that kind)
===============================================================

A process is *hit* by the chaos loop at time T when the loop SIGKILLs it at T, or SIGKILLs its
supervisor or its parent (a worker's template process) at T (the child is then interrupted by the
parent-death signal); T is read just before
the signal is sent, so the process was alive at T. A run (a row of ``chaos_runs``) is *cut by a kill*
when its process was hit at some T after the run started, and it is that process's latest run started
before T (+1 s of slack for signal delivery; a dead process starts nothing, so the slack cannot excuse
a later run). Only runs cut by a kill may legitimately be
repeated: the process died (or was interrupted) before the queue learnt the run's outcome, so at-least-
once delivery runs the job again.

* ``lost``: a pushed id is not in the file. ``not_terminal``: a job is neither succeeded nor failed.
* ``unique_wrong_id``: a push returned the id of a job with another unique key, or (without a key) an
  id already returned. ``unique_overlap``: two jobs with the same key were active at the same time (the
  push that created the later one had returned before the earlier one completed: ``completed_at`` is
  read before that completion commits, so it is no later than the commit).
* ``duplicate_success``: a job has more than one run that finished ``ok``, and one of the earlier ones
  was not cut by a kill. (A kill between the function's last write and the child's journal record is
  the one way a finished run can be lost.) ``attempt_run_twice``: two runs share an attempt number and
  the earlier was not cut by a kill (only an interrupted run gives its attempt back).
  ``overlapping_runs``: a run started before the previous run of the same job ended (its finish time,
  or for a run cut by a kill, the kill): two processes held the job at once.
* ``open_run_unexplained``: a run never finished, was not cut by a kill, and is not the cancelled last
  run of a cancelled job (a cancellation can land inside the final write).
* ``attempts_above_max``: a job's ``attempts`` > ``max_attempts``; ``run_above_max``: a run's attempt
  number >= ``max_attempts``.
* ``succeeded_without_run``: a succeeded job has no ``ok`` run for its last attempt.
  ``failing_succeeded``: a job that always raises succeeded.
* ``ran_early``: a run started before the job's ``scheduled_at``.
* Cancellation (a job whose errors hold a ``cancelled`` entry): ``cancel_not_failed``; ``error_after_cancel``
  (the cancel is not the last error); ``retried_after_cancel`` (a run of a later attempt exists);
  ``ran_after_cancel`` (a run started after ``cancel_job()`` had returned and was not interrupted by
  the cancel: it ended ``ok`` or raised something else. A child hears of a cancel a few milliseconds
  after it commits, so a job it had claimed may start in between; it must then be interrupted at once);
  ``unexpected_cancel`` (the loop never cancelled it).
* ``cancel_ignored``: ``cancel_job()`` returned while the job was not finished (it completed later, or
  never), yet the job has no ``cancelled`` error.
* ``unexplained_death``: an error says a worker process died, but the loop never hit that pid.
* Processes: ``supervisor_died`` (a supervisor exited without being killed), ``orphan_survived`` (a child
  of a killed supervisor still alive past its deadline), ``unclean_shutdown`` (a supervisor did not exit 0
  after SIGTERM), ``process_left`` (anything of the run alive at the end), ``stuck`` (jobs still not
  terminal at the deadline).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from typing import Any

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)

import chaos_jobs  # noqa: E402

from chancy_lite import Chancy, Job, Queue  # noqa: E402
from chancy_lite.proc import is_alive, start_time  # noqa: E402

QUEUE = "chaos"
TERMINAL = ("succeeded", "failed")
SLACK = 1.0  # seconds: a kill lands a little after its time was read (see the docstring)
ACTIONS = ("kill_child", "kill_child", "kill_supervisor", "stop_child", "stop_supervisor")
KIND_WEIGHTS = {
    "fast": 36, "slow": 14, "failing": 8, "retrying": 14, "scheduled": 8, "unique": 14, "cancel": 6,
}
EXAMPLES = 5  # violation examples kept per kind


@dataclasses.dataclass
class Options:
    jobs: int = 10_000
    duration: float = 300.0
    workers: int = 3
    concurrency: int = 4
    seed: int | None = None
    directory: str | None = None
    keep: bool = False
    upfront: float = 0.5  # the share of jobs pushed before the workers start
    action_gap: tuple[float, float] = (0.4, 1.6)  # seconds between chaos actions
    stop_for: tuple[float, float] = (0.5, 4.0)  # how long a SIGSTOP lasts
    restart_after: tuple[float, float] = (0.5, 3.0)
    schedule_ahead: tuple[float, float] = (1.0, 6.0)
    drain_deadline: float = 600.0
    orphan_deadline: float = 20.0  # after a supervisor kill (plus any SIGSTOP still running)
    heartbeat: float = 5.0
    shutdown_timeout: float = 30.0
    verbose: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> Options:
        fields = dict(
            jobs=400, duration=15.0, workers=3, concurrency=2, action_gap=(0.25, 0.7), stop_for=(0.3, 1.5),
            restart_after=(0.3, 1.0), schedule_ahead=(0.5, 3.0), drain_deadline=90.0, heartbeat=2.0,
        )
        fields.update(overrides)
        return cls(**fields)


@dataclasses.dataclass
class Planned:
    index: int
    kind: str
    func: Any
    kwargs: dict[str, Any]
    max_attempts: int
    offset: float  # seconds after the chaos starts when it is pushed (negative: before the workers start)
    delay: float = 0.0  # scheduled this long after its push
    unique_key: str | None = None
    cancel: str | None = None  # "running" or "pending": when the loop tries to cancel it
    job_id: str | None = None
    pushed_at: float | None = None
    duplicate: bool = False  # a unique push that returned an existing job's id
    cancel_sent: float | None = None  # when cancel_job() returned (-1: the loop gave up on it)


@dataclasses.dataclass
class Report:
    directory: str
    seconds: float
    jobs_planned: int = 0
    jobs_created: int = 0
    unique_duplicates: int = 0
    states: dict[str, int] = dataclasses.field(default_factory=dict)
    runs: dict[str, int] = dataclasses.field(default_factory=dict)
    kills: dict[str, int] = dataclasses.field(default_factory=dict)
    restarts: int = 0
    orphans: int = 0  # children of killed supervisors that exited by themselves
    cancels: dict[str, int] = dataclasses.field(default_factory=dict)
    violations: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    phases: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def violate(self, kind: str, detail: str) -> None:
        self.violations[kind] = self.violations.get(kind, 0) + 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(detail)


# ------------------------------------------------------------------ processes


def scan_sessions(sessions: set[int]) -> dict[int, tuple[int, int, str, int]]:
    """Live processes whose session is one of ``sessions``: pid -> (session, ppid, state, start ticks)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = data[data.rfind(")") + 2:].split()
        if len(fields) < 20:
            continue
        session = int(fields[3])
        if session in sessions and fields[0] not in ("Z", "X"):
            found[int(name)] = (session, int(fields[1]), fields[0], int(fields[19]))
    return found


class Supervisor:
    """``python scripts/chaos_worker.py DB`` in its own session (its pid is the session id)."""

    def __init__(self, slot: int, generation: int, path: str, directory: str, options: Options) -> None:
        self.slot = slot
        self.log_path = os.path.join(directory, f"worker-{slot}-{generation}.log")
        env = {**os.environ, chaos_jobs.ENV: path}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [SCRIPTS, env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, os.path.join(SCRIPTS, "chaos_worker.py"), path,
                 "--heartbeat-interval", str(options.heartbeat), "--shutdown-timeout", str(options.shutdown_timeout)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        self.pid = self.popen.pid
        self.started = time.monotonic()
        self.killed_at: float | None = None  # time.time() of our SIGKILL
        self.terminated = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def ready(self) -> bool:
        """It has started serving (and installed its SIGTERM handler): it printed ``ready``."""
        try:
            with open(self.log_path, "rb") as fh:
                return b"ready " in fh.read()
        except OSError:
            return False

    def tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""


class Stopper:
    """SIGSTOPs processes and SIGCONTs them from timers (the chaos loop may be blocked on a lock they hold)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopped: dict[int, tuple[int | None, float, threading.Timer]] = {}  # pid -> (start, until, timer)

    def stop(self, pid: int, seconds: float) -> bool:
        started = start_time(pid)
        with self.lock:
            if pid in self.stopped:
                return False
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                return False
            timer = threading.Timer(seconds, self.resume, (pid,))
            timer.daemon = True
            self.stopped[pid] = (started, time.time() + seconds, timer)
            timer.start()
        return True

    def resume(self, pid: int) -> None:
        with self.lock:
            entry = self.stopped.pop(pid, None)
            if entry is None:
                return
            started, _, timer = entry
            timer.cancel()
            if start_time(pid) == started:  # still the process we stopped
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def resume_all(self) -> None:
        for pid in list(self.stopped):
            self.resume(pid)

    def is_stopped(self, pid: int) -> bool:
        return pid in self.stopped

    def last_until(self) -> float:
        with self.lock:
            return max((until for _, until, _ in self.stopped.values()), default=0.0)


# ---------------------------------------------------------------------- plan


def plan_jobs(options: Options, rng: random.Random) -> list[Planned]:
    kinds = list(KIND_WEIGHTS)
    weights = [KIND_WEIGHTS[k] for k in kinds]
    n_unique = max(1, int(options.jobs * KIND_WEIGHTS["unique"] / sum(weights)))
    keys = max(1, n_unique // 4)
    chaos_span = options.duration * 0.85
    planned = []
    for index in range(options.jobs):
        kind = rng.choices(kinds, weights)[0]
        offset = -1.0 if rng.random() < options.upfront else rng.uniform(0, chaos_span)
        p = Planned(index, kind, chaos_jobs.fast, {}, rng.randint(1, 3), offset)
        if kind == "slow":
            p.func, p.kwargs = chaos_jobs.slow, {"seconds": round(rng.uniform(0.05, 0.5), 3)}
        elif kind == "failing":
            p.func, p.max_attempts = chaos_jobs.failing, rng.randint(1, 2)
        elif kind == "retrying":
            p.max_attempts = rng.randint(3, 5)
            # Mostly enough attempts to succeed; one in six fails on every attempt it is given.
            fail = p.max_attempts if rng.random() < 1 / 6 else rng.randint(1, p.max_attempts - 1)
            p.func, p.kwargs = chaos_jobs.retrying, {"fail_attempts": fail, "seconds": round(rng.uniform(0, 0.05), 3)}
        elif kind == "scheduled":
            p.delay = rng.uniform(*options.schedule_ahead)
            if rng.random() < 0.3:
                p.func, p.kwargs = chaos_jobs.slow, {"seconds": round(rng.uniform(0.05, 0.3), 3)}
        elif kind == "unique":
            p.unique_key = f"key-{rng.randrange(keys)}"
            if rng.random() < 0.5:
                p.func, p.kwargs = chaos_jobs.slow, {"seconds": round(rng.uniform(0.05, 0.3), 3)}
        elif kind == "cancel":
            if rng.random() < 0.6:
                p.cancel = "running"
                p.func, p.kwargs = chaos_jobs.slow, {"seconds": round(rng.uniform(0.3, 0.5), 3)}
            else:
                p.cancel = "pending"
                p.delay = rng.uniform(*options.schedule_ahead) + 0.5
                p.func, p.kwargs = chaos_jobs.slow, {"seconds": round(rng.uniform(0.05, 0.3), 3)}
            if p.offset < 0:  # cancel targets are pushed during the chaos, so the loop is there to cancel them
                p.offset = rng.uniform(0, chaos_span)
        planned.append(p)
    return planned


def as_job(p: Planned) -> Job:
    return Job.from_func(
        p.func, queue=QUEUE, kwargs=p.kwargs, max_attempts=p.max_attempts, unique_key=p.unique_key,
        scheduled_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=p.delay), meta={"chaos": p.kind},
    )


# ---------------------------------------------------------------------- run


class Chaos:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.own_directory = options.directory is None
        self.directory = options.directory or tempfile.mkdtemp(prefix="chancy-chaos-")
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, "chaos.db")
        self.report = Report(self.directory, 0.0)
        self.chancy = Chancy(self.path)
        self.supervisors: dict[int, Supervisor] = {}  # slot -> current supervisor
        self.generations: collections.Counter[int] = collections.Counter()
        self.all_supervisors: list[Supervisor] = []
        self.restart_at: dict[int, float] = {}  # slot -> monotonic time
        self.stopper = Stopper()
        # pid -> kill times (time.time()) of the chaos loop hitting it (directly, or through its supervisor).
        self.hits: dict[int, list[float]] = collections.defaultdict(list)
        self.seen: dict[int, tuple[int, int]] = {}  # pid -> (session, start ticks), for the final check
        self.orphan_watch: list[tuple[Supervisor, float, float]] = []  # dead supervisor, died at, deadline
        self.orphans: dict[int, set[int]] = {}  # dead supervisor -> its children seen since
        self.kills: collections.Counter[str] = collections.Counter()
        self.cancels: collections.Counter[str] = collections.Counter()
        self.planned: list[Planned] = []
        self.ids: dict[str, Planned] = {}  # job id -> the push that created it
        self.side: Any = None  # an apsw connection to read chaos_runs during the run

    def say(self, message: str) -> None:
        if self.options.verbose:
            print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)

    # ---- setup and pushes

    def setup(self) -> None:
        self.chancy.sync_migrate()
        # Workers declare "default" if it is missing; paused, it gets no children to dilute the kills.
        self.chancy.sync_declare(Queue("default", state=Queue.State.PAUSED))
        self.chancy.sync_declare(Queue(QUEUE, concurrency=self.options.concurrency, polling_interval=5))
        chaos_jobs.create_table(self.path)
        self.side = chaos_jobs.connect(self.path)
        self.planned = plan_jobs(self.options, self.rng)
        self.report.jobs_planned = len(self.planned)

    def push(self, batch: list[Planned]) -> None:
        if not batch:
            return
        for start in range(0, len(batch), 500):
            chunk = batch[start:start + 500]
            refs = next(iter(self.chancy.sync_push_many([as_job(p) for p in chunk], batch_size=len(chunk))))
            now = time.time()
            for p, ref in zip(chunk, refs, strict=True):
                p.job_id, p.pushed_at = str(ref), now
                first = self.ids.get(p.job_id)
                if first is None:
                    self.ids[p.job_id] = p
                elif p.unique_key is not None and first.unique_key == p.unique_key:
                    p.duplicate = True
                else:
                    self.report.violate(
                        "unique_wrong_id", f"push #{p.index} (key {p.unique_key}) returned {p.job_id}, the id of "
                        f"push #{first.index} (key {first.unique_key})",
                    )
                    p.duplicate = True

    # ---- supervisors

    def spawn(self, slot: int) -> None:
        self.generations[slot] += 1
        supervisor = Supervisor(slot, self.generations[slot], self.path, self.directory, self.options)
        self.supervisors[slot] = supervisor
        self.all_supervisors.append(supervisor)
        self.restart_at.pop(slot, None)

    def live_supervisors(self) -> list[Supervisor]:
        return [s for s in self.supervisors.values() if s.killed_at is None and s.alive()]

    def reap(self) -> None:
        """Notice supervisors that exited; schedule restarts; flag the ones we did not kill."""
        for slot, supervisor in list(self.supervisors.items()):
            code = supervisor.popen.poll()
            if code is None or slot in self.restart_at:
                continue
            if supervisor.killed_at is None and not supervisor.terminated:
                self.report.violate(
                    "supervisor_died", f"supervisor {supervisor.pid} exited ({code}) without being killed:\n"
                    f"{supervisor.tail()}",
                )
                died = time.time()
                self.hits[supervisor.pid].append(died)
                self.watch(supervisor, died)
            self.restart_at[slot] = time.monotonic() + self.rng.uniform(*self.options.restart_after)

    def restart_due(self, now: float | None = None) -> None:
        for slot, when in list(self.restart_at.items()):
            if now is None or when <= now:
                self.spawn(slot)
                self.report.restarts += 1

    def scan(self) -> dict[int, tuple[int, int, str, int]]:
        table = scan_sessions({s.pid for s in self.all_supervisors})
        for pid, (session, _, _, started) in table.items():
            self.seen.setdefault(pid, (session, started))
        return table

    def children(self, table: dict[int, tuple[int, int, str, int]], supervisor: Supervisor) -> list[int]:
        return [pid for pid, (session, _, _, _) in table.items() if session == supervisor.pid and pid != supervisor.pid]

    def watch_orphans(self, table: dict[int, tuple[int, int, str, int]]) -> None:
        """Children of a dead supervisor must exit by themselves (parent-death signal) before a deadline
        (counted from the death, or from the end of the last SIGSTOP still running, whichever is later)."""
        still = []
        for supervisor, died, deadline in self.orphan_watch:
            left = self.children(table, supervisor)
            orphans = self.orphans.setdefault(supervisor.pid, set())
            orphans.update(left)
            for pid in left:  # a child seen after its supervisor died was hit by that death
                if died not in self.hits[pid]:
                    self.hits[pid].append(died)
            if not left:
                self.report.orphans += len(orphans)  # all gone by themselves
                continue
            if time.time() < max(deadline, self.stopper.last_until() + self.options.orphan_deadline):
                still.append((supervisor, died, deadline))
                continue
            self.report.violate(
                "orphan_survived", f"children {left} of supervisor {supervisor.pid} were still alive "
                f"{time.time() - died:.0f} s after it died:\n{supervisor.tail()}",
            )
            self.report.orphans += len(orphans - set(left))
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.orphan_watch = still

    def watch(self, supervisor: Supervisor, died: float) -> None:
        self.orphan_watch.append((supervisor, died, died + self.options.orphan_deadline))

    # ---- chaos actions

    def act(self, action: str, table: dict[int, tuple[int, int, str, int]]) -> bool:
        live = self.live_supervisors()
        children = [
            (pid, s) for s in live for pid in self.children(table, s) if not self.stopper.is_stopped(pid)
        ]
        if action == "kill_child":
            if not children:
                return False
            # Mostly a child in the middle of a job (it has an open run), else any child.
            busy = chaos_jobs.running_pids(self.side, time.time() - 10)
            in_job = [c for c in children if c[0] in busy]
            pid, supervisor = self.rng.choice(in_job if in_job and self.rng.random() < 0.8 else children)
            now = time.time()  # read before the kill: the run it cuts ended no later than this
            self.hits[pid].append(now)
            for other, (_, parent, _, _) in table.items():
                if parent == pid:  # the children of a worker's template process: its death interrupts them
                    self.hits[other].append(now)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.say(f"SIGKILL child {pid} of supervisor {supervisor.pid}")
        elif action == "kill_supervisor":
            if len(live) < 2:
                return False
            supervisor = self.rng.choice(live)
            before = self.children(table, supervisor)
            supervisor.killed_at = now = time.time()
            os.kill(supervisor.pid, signal.SIGKILL)
            self.orphans[supervisor.pid] = set(before)
            for pid in [supervisor.pid, *before]:
                self.hits[pid].append(now)
            self.watch(supervisor, now)
            self.say(f"SIGKILL supervisor {supervisor.pid} (children {before})")
        elif action in ("stop_child", "stop_supervisor"):
            if action == "stop_child":
                if not children:
                    return False
                pid = self.rng.choice(children)[0]
            else:
                candidates = [s.pid for s in live if not self.stopper.is_stopped(s.pid)]
                if not candidates:
                    return False
                pid = self.rng.choice(candidates)
            seconds = self.rng.uniform(*self.options.stop_for)
            if not self.stopper.stop(pid, seconds):
                return False
            self.say(f"SIGSTOP {action.split('_')[1]} {pid} for {seconds:.1f} s")
        self.kills[action] += 1
        return True

    # ---- cancellations

    def cancel_some(self, elapsed: float) -> None:
        targets = [p for p in self.planned if p.cancel and p.job_id and p.cancel_sent is None]
        if not targets:
            return
        running = None
        for p in targets:
            if p.cancel == "pending":
                if time.time() - (p.pushed_at or 0) < 0.3:
                    continue
                job = self.chancy.sync_get_job(p.job_id)
                state = job.state.value if job else "missing"
                if state in ("pending", "retrying"):
                    self.chancy.sync_cancel_job(p.job_id)
                    p.cancel_sent = time.time()
                    self.cancels["sent_pending"] += 1
                elif state in TERMINAL or state == "missing":
                    p.cancel_sent = -1.0
                    self.cancels["missed"] += 1
            else:
                if running is None:
                    running = {str(j.id) for j in self.chancy.sync_list_jobs(state="running", queue=QUEUE, limit=500)}
                if p.job_id in running:
                    self.chancy.sync_cancel_job(p.job_id)
                    p.cancel_sent = time.time()
                    self.cancels["sent_running"] += 1
                elif time.time() - (p.pushed_at or 0) > 30:
                    p.cancel_sent = -1.0
                    self.cancels["missed"] += 1

    # ---- phases

    def run(self) -> Report:
        began = time.monotonic()
        try:
            self.setup()
            self.push([p for p in self.planned if p.offset < 0])
            self.report.phases["push_upfront"] = round(time.monotonic() - began, 2)
            self.say(f"pushed {sum(p.offset < 0 for p in self.planned)} jobs; starting {self.options.workers} workers "
                     f"into {self.directory}")
            for slot in range(self.options.workers):
                self.spawn(slot)
            chaos_began = time.monotonic()
            self.chaos_phase(chaos_began)
            self.report.phases["chaos"] = round(time.monotonic() - chaos_began, 2)
            drain_began = time.monotonic()
            self.drain_phase()
            self.report.phases["drain"] = round(time.monotonic() - drain_began, 2)
            stop_began = time.monotonic()
            self.stop_phase()
            self.report.phases["stop"] = round(time.monotonic() - stop_began, 2)
            self.check_ledger()
        finally:
            self.cleanup()
            self.report.seconds = round(time.monotonic() - began, 2)
            self.report.kills = dict(self.kills)
            self.report.cancels = {**self.cancels, **self.report.cancels}
        return self.report

    def chaos_phase(self, began: float) -> None:
        options = self.options
        later = sorted((p for p in self.planned if p.offset >= 0), key=lambda p: p.offset)
        deck: list[str] = []
        next_action = began + self.rng.uniform(*options.action_gap)
        while (now := time.monotonic()) < began + options.duration:
            elapsed = now - began
            due = []
            while later and later[0].offset <= elapsed:
                due.append(later.pop(0))
            self.push(due)
            self.reap()
            self.restart_due(now)
            table = self.scan()
            self.watch_orphans(table)
            self.cancel_some(elapsed)
            if now >= next_action:
                if not deck:
                    deck = list(ACTIONS)
                    self.rng.shuffle(deck)
                action = deck.pop()
                if not self.act(action, table):
                    deck.insert(0, action)  # nothing to act on now: play it again later
                next_action = time.monotonic() + self.rng.uniform(*options.action_gap)
            time.sleep(0.05)
        self.push(later)

    def drain_phase(self) -> None:
        self.stopper.resume_all()
        self.reap()
        self.restart_due()
        deadline = time.monotonic() + self.options.drain_deadline
        last_report = 0.0
        while True:
            self.reap()
            self.restart_due()
            self.watch_orphans(self.scan())
            counts = self.chancy.sync_count_jobs().get(QUEUE, {})
            active = sum(n for state, n in counts.items() if state not in TERMINAL)
            if not active and not self.orphan_watch:
                return
            if time.monotonic() - last_report > 10:
                self.say(f"draining: {counts}")
                last_report = time.monotonic()
            if time.monotonic() > deadline:
                listed = self.chancy.sync_list_jobs(queue=QUEUE, limit=1_000_000)
                stuck = [j for j in listed if j.state.value not in TERMINAL]
                self.report.violate(
                    "stuck", f"{active} jobs not terminal {self.options.drain_deadline:.0f} s after the chaos ended, "
                    f"e.g. {[(j.id, j.state.value, j.attempts) for j in stuck[:5]]}",
                )
                return
            time.sleep(0.1)

    def stop_phase(self) -> None:
        live = [s for s in self.supervisors.values() if s.alive()]
        deadline = time.monotonic() + 60
        while not all(s.ready() or not s.alive() for s in live) and time.monotonic() < deadline:
            time.sleep(0.05)  # a supervisor still starting has no SIGTERM handler yet
        for supervisor in live:
            supervisor.terminated = True
            os.kill(supervisor.pid, signal.SIGTERM)
        for supervisor in live:
            try:
                code = supervisor.popen.wait(self.options.shutdown_timeout + 15)
            except subprocess.TimeoutExpired:
                code = None
            if code != 0:
                self.report.violate(
                    "unclean_shutdown", f"supervisor {supervisor.pid} exit {code} after SIGTERM:\n{supervisor.tail()}"
                )
        deadline = time.monotonic() + 15
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            self.report.violate("process_left", f"process {pid} (session {self.seen[pid][0]}) alive at the end")

    def leftovers(self) -> list[int]:
        self.scan()
        return [pid for pid, (_, started) in self.seen.items() if is_alive(pid, started)]

    def cleanup(self) -> None:
        """Leave nothing behind: our supervisors (through their Popen), then every process seen in their
        sessions (checked by start time, so a reused pid is never hit), then any latecomer of those sessions."""
        self.stopper.resume_all()
        self.scan()
        for supervisor in self.all_supervisors:
            if supervisor.popen.poll() is None:
                supervisor.popen.kill()
            with contextlib.suppress(Exception):
                supervisor.popen.wait(10)
        deadline = time.monotonic() + 10
        while (left := self.leftovers()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        self.chancy.close()
        if self.side is not None:
            self.side.close()

    # ---- the ledger

    def check_ledger(self) -> None:
        pushes = [p for p in self.planned if p.job_id is not None]
        jobs = {str(j.id): j for j in self.chancy.sync_get_jobs(sorted({p.job_id for p in pushes}))}
        runs = chaos_jobs.read_runs(self.path)
        check(self.report, pushes, jobs, runs, self.hits)


def check(
    report: Report, pushes: list[Planned], jobs: dict[str, Any], runs: Iterable[tuple[Any, ...]],
    hits: dict[int, list[float]],
) -> None:
    """Check the ledger (see the module docstring) and fill ``report``. Separate from the run, so tests can
    feed it a made-up ledger."""
    runs = list(runs)
    by_job: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
    by_pid: dict[int, list[float]] = collections.defaultdict(list)
    for run in runs:
        by_job[run[0]].append(run)
        by_pid[run[2]].append(run[3])
    for starts in by_pid.values():
        starts.sort()

    def cut_at(run: tuple[Any, ...]) -> float | None:
        """The kill that cut this run (see the docstring), or None."""
        _, _, pid, started, _, _ = run
        for hit in sorted(hits.get(pid, ())):
            if started > hit + SLACK:
                continue
            latest = max((s for s in by_pid[pid] if s <= hit + SLACK), default=None)
            if latest == started:
                return hit
        return None

    creator: dict[str, Planned] = {}
    for p in pushes:
        if not p.duplicate:
            creator.setdefault(p.job_id, p)
    report.jobs_created = len(creator)
    report.unique_duplicates = sum(p.duplicate for p in pushes)
    states: collections.Counter[str] = collections.Counter()
    for p in pushes:
        job = jobs.get(p.job_id)
        if job is None:
            report.violate("lost", f"push #{p.index} ({p.kind}) returned {p.job_id}, which is not in the file")
            continue
        if p.cancel_sent is not None and p.cancel_sent > 0 and not any(
            str(e.get("traceback", "")).startswith("cancelled") for e in job.errors
        ) and (job.completed_at is None or job.completed_at.timestamp() > p.cancel_sent):
            report.violate("cancel_ignored", f"push #{p.index}: job {job.id} was not finished when cancel_job() "
                           f"returned at {p.cancel_sent}, yet it has no cancelled error (completed {job.completed_at})")
        if p.unique_key is not None and job.unique_key != p.unique_key:
            report.violate("unique_wrong_id", f"push #{p.index} with key {p.unique_key} returned job {job.id} "
                           f"whose key is {job.unique_key}")
    by_key: dict[str, list[tuple[Planned, Any]]] = collections.defaultdict(list)
    for job_id, p in creator.items():
        job = jobs.get(job_id)
        if job is None:
            continue
        state = job.state.value
        states[state] += 1
        where = f"job {job_id} ({p.kind}, {job.func})"
        if state not in TERMINAL:
            report.violate("not_terminal", f"{where} is {state}")
        if job.unique_key is not None:
            by_key[job.unique_key].append((p, job))
        if job.attempts > job.max_attempts:
            report.violate("attempts_above_max", f"{where}: attempts {job.attempts} > max_attempts {job.max_attempts}")
        job_runs = sorted(by_job.get(job_id, []), key=lambda r: r[3])
        for run in job_runs:
            if run[1] >= job.max_attempts:
                report.violate("run_above_max", f"{where}: a run of attempt {run[1]} (max_attempts {job.max_attempts})")
            if run[3] < job.scheduled_at.timestamp() - 0.001:
                report.violate("ran_early", f"{where}: started {job.scheduled_at.timestamp() - run[3]:.3f} s early")
        ok_runs = [r for r in job_runs if r[5] == "ok"]
        if state == "succeeded" and not any(r[1] == job.attempts - 1 for r in ok_runs):
            report.violate("succeeded_without_run", f"{where}: succeeded at attempt {job.attempts - 1} with no ok run "
                           f"of it: {job_runs}")
        if state == "succeeded" and p.kind == "failing":
            report.violate("failing_succeeded", f"{where} always raises, yet succeeded")
        for earlier in ok_runs[:-1]:
            if cut_at(earlier) is None:
                report.violate("duplicate_success", f"{where}: {len(ok_runs)} ok runs and run {earlier} was not cut "
                               f"by a kill: {job_runs}")
        by_attempt: dict[int, list[tuple[Any, ...]]] = collections.defaultdict(list)
        for run in job_runs:
            by_attempt[run[1]].append(run)
        for attempt, same in by_attempt.items():
            for earlier in same[:-1]:
                if cut_at(earlier) is None:
                    report.violate("attempt_run_twice", f"{where}: attempt {attempt} ran {len(same)} times and "
                                   f"{earlier} was not cut by a kill")
        cancel_entries = [e for e in job.errors if str(e.get("traceback", "")).startswith("cancelled")]
        for index, run in enumerate(job_runs):
            end = run[4] if run[4] is not None else cut_at(run)
            if run[4] is None and end is None:
                last_of_cancelled = cancel_entries and index == len(job_runs) - 1
                if not last_of_cancelled:
                    report.violate("open_run_unexplained", f"{where}: run {run} never finished and its process was "
                                   "not killed while it ran")
            if index + 1 < len(job_runs) and end is not None and job_runs[index + 1][3] < end:
                report.violate("overlapping_runs", f"{where}: run {job_runs[index + 1]} started before {run} ended")
        if cancel_entries:
            report.cancels["effective"] = report.cancels.get("effective", 0) + 1
            entry = cancel_entries[-1]
            if state != "failed":
                report.violate("cancel_not_failed", f"{where} was cancelled but is {state}")
            if job.errors[-1] is not entry:
                report.violate("error_after_cancel", f"{where}: errors after the cancel: {job.errors}")
            later = [r for r in job_runs if r[1] > entry["attempt"]]
            if later:
                report.violate("retried_after_cancel", f"{where}: runs {later} after the cancel of attempt "
                               f"{entry['attempt']}")
            if not p.cancel_sent or p.cancel_sent < 0:
                report.violate("unexpected_cancel", f"{where} has a cancelled error but was never cancelled")
            else:
                after = [r for r in job_runs if r[3] > p.cancel_sent and r[5] not in (None, "raised:JobCancelled")]
                if after:
                    report.violate("ran_after_cancel", f"{where}: runs {after} started after cancel_job() returned "
                                   f"at {p.cancel_sent} and were not interrupted by it")
        for entry in job.errors:
            text = str(entry.get("traceback", ""))
            if text.startswith("the worker process running this job died"):
                found = re.search(r"pid (\d+)\)", text)
                pid = int(found.group(1)) if found else None
                if pid is None or pid not in hits:
                    report.violate("unexplained_death", f"{where}: {text!r} but the chaos loop never hit pid {pid}")
    for key, same in by_key.items():
        same.sort(key=lambda pair: (pair[0].pushed_at, pair[0].index))
        for (_, earlier), (push, later) in itertools.pairwise(same):
            if earlier.completed_at is None or earlier.completed_at.timestamp() > (push.pushed_at or 0):
                report.violate("unique_overlap", f"key {key}: job {later.id} was pushed at {push.pushed_at} while "
                               f"job {earlier.id} was active (completed {earlier.completed_at})")
    report.states = dict(sorted(states.items()))
    report.runs.update({
        "total": len(runs),
        "ok": sum(r[5] == "ok" for r in runs),
        "raised": sum(bool(r[5]) and r[5] != "ok" for r in runs),
        "open": sum(r[4] is None for r in runs),
        "cut_by_kill": sum(cut_at(r) is not None for r in runs),
        "jobs_run_more_than_once_ok": sum(
            1 for rs in by_job.values() if sum(r[5] == "ok" for r in rs) > 1
        ),
    })


# ---------------------------------------------------------------------- output


def format_report(report: Report) -> str:
    lines = [
        f"chaos: {report.jobs_planned} pushes -> {report.jobs_created} jobs "
        f"({report.unique_duplicates} unique-key duplicates returned an existing id) in {report.seconds:.0f} s",
        f"  phases (s):   {report.phases}",
        f"  final states: {report.states}",
        f"  runs:         {report.runs}",
        f"  chaos:        {report.kills}; restarts {report.restarts}; children of killed supervisors that "
        f"exited by themselves {report.orphans}",
        f"  cancels:      {report.cancels}",
        f"  violations:   {report.violations or 'none'}",
    ]
    for kind, examples in report.examples.items():
        lines.append(f"  {kind}:")
        lines.extend(f"    - {e}" for e in examples)
    lines.append(f"  files:        {report.directory}")
    return "\n".join(lines)


def run(options: Options) -> Report:
    chaos = Chaos(options)
    report = chaos.run()
    if report.ok and chaos.own_directory and not options.keep:
        shutil.rmtree(chaos.directory, ignore_errors=True)
        report.directory += " (removed)"
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="400 jobs, 15 s of chaos (the test's version)")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--duration", type=float, help="seconds of chaos (default 300)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--concurrency", type=int, help="children per supervisor")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--dir", help="put the file and the worker logs here (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory even on success")
    parser.add_argument("--json", help="also write the tally as JSON to this path")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    overrides = {
        k: v for k, v in {
            "jobs": args.jobs, "duration": args.duration, "workers": args.workers, "concurrency": args.concurrency,
        }.items() if v is not None
    }
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    common = dict(seed=seed, directory=args.dir, keep=args.keep, verbose=not args.quiet)
    options = Options.quick(**overrides, **common) if args.quick else Options(**overrides, **common)
    print(f"chaos: seed {seed}, {options.jobs} jobs, {options.duration:.0f} s of chaos, {options.workers} workers x "
          f"{options.concurrency} children", flush=True)
    # SIGTERM (a CI timeout, say) unwinds like Ctrl-C, so the workers are cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    report = run(options)
    print(format_report(report), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dataclasses.asdict(report), fh, indent=2)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

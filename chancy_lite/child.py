"""One worker child: claim -> rebuild the job context -> import -> run -> record.

A child is a spawned process (or, for the threaded executor, a thread) with
its own connection. It claims rows itself with one ``UPDATE … RETURNING`` in
``BEGIN IMMEDIATE``, and writes each outcome in the same transaction as the
next claim. While idle it advertises itself so that pushers wake it directly
(see :mod:`chancy_lite.wake`); its supervisor stops it and relays cancellations:

* mailbox datagrams: ``w <n>`` (a push of n jobs) or ``w`` (work may be
  waiting), ``s`` (stop after this job), ``c <id>`` (cancel that job; followed
  by SIGUSR1);
* SIGUSR1: read the mailbox now (a cancellation is waiting);
* SIGUSR2: interrupt the running job and exit (shutdown timeout passed, or the
  supervisor died: it is also the parent-death signal);
* SIGALRM: the job's TIME limit passed (``TimeoutError`` inside the job).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import faulthandler
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from chancy_lite import db, execution, proc, wake
from chancy_lite.execution import Capability
from chancy_lite.hooks import FinishedRun, HookFailed, JobHooks
from chancy_lite.job import Limit, QueuedJob
from chancy_lite.journal import Journal, journal_name
from chancy_lite.outcome import Outcome, dump_meta, next_outcome, stored_view
from chancy_lite.plugin import unpack_plugins
from chancy_lite.store import Store, claimed_jobs, handed_job, outcomes_payload
from chancy_lite.utils import import_string, micros_now

log = logging.getLogger(__name__)

#: Seconds between two saves of a running job's meta by ``QueuedJob.progress``.
PROGRESS_INTERVAL = 0.25
#: Seconds between two looks of an idle child for jobs handed over to it that it never heard of.
LOST_HANDOVER_CHECK = 30.0
T = TypeVar("T")

# Seconds: a claimed job that may run longer (never seen here, or seen to) has run recorders write what they keep
# in the claiming transaction, rather than after it (see chancy_lite.hooks, "run recorders").
RECORD_BEFORE = 0.5

State = QueuedJob.State


class WorkerShutdown(BaseException):
    """Raised inside a job whose worker is shutting down under it."""


class JobCancelled(asyncio.CancelledError):
    """Raised inside a job that ``cancel_job`` cancelled (an ``asyncio.CancelledError``)."""


@dataclasses.dataclass(frozen=True)
class ChildConfig:
    """Everything a child needs, as plain data (it crosses a spawn boundary)."""

    db_path: str
    prefix: str
    busy_timeout: float
    synchronous: str
    queue: str
    worker_id: str
    key: str  # this child's name among its supervisor's children
    polling_interval: float
    maximum_jobs: int | None = None  # replace the child after this many jobs
    maximum_rss: int | None = None  # replace the child once its resident memory exceeds this many bytes
    batch_size: int = 1  # the most jobs claimed per transaction
    batch_window: float = 0.005  # claim about this many seconds of work at a time (bounds priority inversion)
    autocheckpoint: int = 1000  # WAL pages; 0 when the supervisor checkpoints in the background
    rate_limit: int | None = None  # at most this many claims per rate_limit_window seconds, across all workers
    rate_limit_window: float | None = None
    timeout_grace: float = 5.0
    allowed_modules: tuple[str, ...] | None = None
    log_level: int | None = None
    register_signals: bool = True
    executor: str | None = None  # the queue's executor class (import path): its get_function_and_kwargs is used
    plugins: str | None = None  # base64 pickle of the plugins whose job hooks run here (see hooks.hooked)
    alias: bool = False  # install chancy_lite.alias (import chancy -> chancy_lite) before importing job modules
    parent_pid: int | None = None  # the process that started this child (supervisor or template), for its death


# ----------------------------------------------------------------- the runner


@dataclasses.dataclass
class _Batch:
    """The jobs of one claim as the child runs them, shared with its batch watcher under ``Runner.batch_lock``."""

    jobs: list[QueuedJob]
    index: int = -1  # the job running now, or the last one that ran
    running: bool = False  # a job of this batch is running now
    began: float = 0.0  # time.perf_counter() when it began
    began_at: int = 0  # the same as wall-clock µs (the row's started_at)
    marked: bool = False  # its start is on its row
    end: int | None = None  # the jobs from this index on were given back


class Runner:
    """The claim/run/record loop, shared by process and thread children.

    A batch claim leaves ``started_at`` empty on its rows: each job shows that it started only once it did.
    A watcher thread looks after a batch while its jobs run: once the running job has run for twice
    ``batch_window``, it writes the outcomes of the batch's finished jobs, stamps the running job's
    ``started_at`` and gives the jobs not started yet back (waking idle children for them), all in one
    transaction. So a long job never holds short jobs that another child could run, and the rows say which
    jobs run now. A thread cannot run while a job holds the GIL in one long C call, so before a job whose
    function this child has not run yet, or has seen run long, the same is done at once, before it starts.
    """

    #: What this runner can do with a job (see chancy_lite.execution.Capability).
    capabilities = Capability.SYNC_JOBS | Capability.ASYNC_JOBS
    #: Whether pushers may hand jobs over to it (it alone holds what its pid holds: a process child).
    takes_handovers = False

    def __init__(self, config: ChildConfig) -> None:
        self.config = config
        self.pid = os.getpid()
        self.pid_start = proc.start_time(self.pid)
        self.conn = db.connect(
            config.db_path, busy_timeout=config.busy_timeout, synchronous=config.synchronous, check=False,
            autocheckpoint=config.autocheckpoint,
        )
        self.channel = wake.Channel(config.db_path)
        self.store = Store(config.prefix)
        self.conn.publisher = self.channel.publish
        self.conn.store = self.store
        self.conn.now = lambda: self.now()  # read at each call: chancy_lite.testing swaps in the app's clock
        self.mailbox = wake.Listener(self.channel, wake.CHILD, name=wake.mailbox_name(config.key))
        #: Taken around this child's write transactions (see db.WriterLock): the children of the file take turns.
        self.writers = db.WriterLock(os.path.join(self.channel.directory, "writers.lock"))
        self.journal = Journal(
            os.path.join(self.channel.directory, journal_name(config.worker_id, self.pid, config.key))
        )
        self.pending: list[Outcome] = []
        self.average: float | None = None  # seconds per job, for sizing claims
        self.rate_limited_until: int | None = None  # when the queue's current rate-limit window ends
        self.claimed_at: int | None = None  # the time of the last claim
        self.claim_hint: int | None = None  # jobs announced by the push that woke us
        self.current: QueuedJob | None = None
        self.in_job = False
        self.stopping = False
        self.cancelled: str | None = None
        # Cancels that arrived for jobs of this batch that had not started yet (checked before each starts).
        self.cancelled_claims: set[str] = set()
        self.jobs_run = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[Any] | None = None
        self.advertised = False
        self.idle_path = os.path.join(self.channel.directory, wake.idle_name(config.queue, config.key))
        #: Where pushers reach this child while it is idle (its idle link points here), made on first use.
        self.inbox: wake.Listener | None = None
        self.identity: str | None = None
        #: Jobs handed over to this child (held by it already, see chancy_lite.wake), not run yet.
        self.handed: list[QueuedJob] = []
        self._handed_ids: collections.deque[str] = collections.deque(maxlen=256)  # taken lately (no job twice)
        self._lost_check_due = 0.0  # time.monotonic() from which an idle child looks for lost hand-overs again
        self.now: Callable[[], int] = micros_now  # the clock (chancy_lite.testing swaps in a controllable one)
        # The batch being run and its watcher; the lock also serialises the threads' use of the connection (the
        # watcher's, a progress timer's and this one's).
        self.batch_lock = threading.RLock()  # re-entrant: flush() runs under it from the batch loop
        self.batch: _Batch | None = None
        self._watcher: threading.Thread | None = None
        self._watch = threading.Event()
        self._closed = False
        self._preparer: tuple[int, Callable[..., Any], str] | None = None
        #: Plugins' job hooks, run here (copies of the supervisor's plugins, see chancy_lite.hooks).
        self.hooks = JobHooks(unpack_plugins(config.plugins))
        #: Jobs whose runs are not written yet, when plugins are shown the written jobs (hooks.wants_updates).
        self.ran: dict[str, QueuedJob] = {}
        self._peaks: dict[str, float] = {}  # function -> recent longest run, in seconds (decays by half a run)
        self._progress_due = 0.0  # time.monotonic() before which a progress report is not written
        self._progress_timer: threading.Timer | None = None  # writes the last report skipped meanwhile

    # ---- the loop

    def run(self) -> None:
        try:
            while not self.stopping:
                jobs = self.exchange()
                if not jobs:
                    if self.advertise(True):
                        continue  # look once more now that pushers can see us: a push in between is not lost
                    self.idle()
                    continue
                if self.advertise(False):
                    jobs += self.take_handed()  # handed over before pushers stopped seeing us
                self.run_batch(jobs)
                if self.config.maximum_jobs and self.jobs_run >= self.config.maximum_jobs:
                    self.stopping = True
                elif self.config.maximum_rss and proc.resident_bytes() > self.config.maximum_rss:
                    log.info("child %s uses more than %s bytes of memory; it will be replaced", self.pid,
                             self.config.maximum_rss)
                    self.stopping = True
        finally:
            self.give_back_handed()
            self.flush()
            self.close()

    def run_batch(self, jobs: list[QueuedJob]) -> None:
        """Run claimed jobs in order, journaling each; give the rest back when stopping or past the window."""
        batch = _Batch(jobs)
        if any(job.started_at is None for job in jobs):  # a batch claim: the watcher marks starts
            self._start_watching(batch)
        try:
            self._run_batch(batch, time.perf_counter() + 2 * self.config.batch_window)
        finally:
            with self.batch_lock:
                self.batch = None
            self.cancelled_claims.clear()  # a cancel can only be meant for a job claimed before it was sent

    def _run_batch(self, batch: _Batch, deadline: float) -> None:
        jobs, window = batch.jobs, 2 * self.config.batch_window
        for index, job in enumerate(jobs):
            with self.batch_lock:
                if batch.end is not None and index >= batch.end:
                    return  # the watcher gave these back: other children run them
                if self.stopping or (index and time.perf_counter() > deadline):
                    self.pending.extend(self.release(j) for j in jobs[index:])
                    batch.end = index
                    return
                self.begin(job)
                if self.cancelled_before_start(job):
                    self.current = None
                    log.info("job %s (%s) was cancelled before it started", job.id, job.func)
                    continue  # cancel_job already wrote the final state
                job_id = str(job.id)
                if not self.journal.started(job_id):
                    self.flush()  # the journal is full: commit what it holds, then start afresh
                    self.journal.started(job_id)
                batch.index, batch.marked, batch.began_at = index, job.started_at is not None, self.now()
                if batch.end is None and index + 1 < len(jobs) and self._may_run_long(job.func, window):
                    # Give the rest back before it starts: the watcher cannot help while a job holds the GIL.
                    self._settle(batch)
                batch.running, batch.began = True, time.perf_counter()
            outcome = self.run_job(job, batch.began_at)
            with self.batch_lock:
                batch.running = False
                took = time.perf_counter() - batch.began
                self.average = took if self.average is None else 0.8 * self.average + 0.2 * took
                self._peaks[job.func] = max(took, 0.5 * self._peaks.get(job.func, 0.0))
                self.jobs_run += 1
                if outcome is not None:
                    self.pending.append(outcome)
                    if not self.journal.finished(outcome):
                        self.flush()

    def _may_run_long(self, func: str, window: float) -> bool:
        """Whether a job of ``func`` may run past ``window`` seconds: never seen in this child, or seen to
        (a slow run counts for the next few runs)."""
        peak = self._peaks.get(func)
        return peak is None or peak > window

    # ---- the batch watcher

    def _start_watching(self, batch: _Batch) -> None:
        with self.batch_lock:
            self.batch = batch
            self._watch.set()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_batches, name="chancy-lite batch watcher",
                                             daemon=True)
            self._watcher.start()

    def _watch_batches(self) -> None:
        """Settle a batch whose running job passes twice ``batch_window`` (see the class docstring)."""
        window = max(2 * self.config.batch_window, 0.001)
        while True:
            self._watch.wait()
            with self.batch_lock:
                if self._closed:
                    return
                batch, wait = self.batch, window
                if batch is None:
                    self._watch.clear()
                    continue
                if batch.running and not (batch.marked and batch.end is not None):
                    wait = batch.began + window - time.perf_counter()
                    if wait <= 0:
                        try:
                            self._settle(batch)
                        except Exception:
                            log.exception("could not give back the unstarted jobs of a batch; they wait for it")
                        wait = window
            time.sleep(wait)

    def _settle(self, batch: _Batch) -> None:
        """Write finished outcomes, mark the running job started, give the rest back. Holds ``batch_lock``."""
        job = batch.jobs[batch.index]
        rest = batch.jobs[batch.index + 1:batch.end]
        config, store, pending = self.config, self.store, self.pending

        def write() -> list[QueuedJob]:
            with self.writers, self.conn:
                updated = self.write_outcomes(pending)
                if not batch.marked:
                    store.mark_job_started(self.conn, job, started_at=batch.began_at, worker_id=config.worker_id,
                                           pid=self.pid)
                for other in rest:
                    store.complete_job(self.conn, self.release(other), worker_id=config.worker_id, pid=self.pid,
                                       queue=config.queue, quiet=True)  # waking idle children for it
                if self.hooks.recorders:
                    self.hooks.transaction_ending(self.conn, now=self.now(), prefix=store.prefix,
                                                  worker_id=config.worker_id,
                                                  force=self._may_run_long(job.func, RECORD_BEFORE))
            return updated

        updated = self.with_retry(write)
        self.pending = []
        self.written(pending, updated)
        batch.marked = True
        batch.end = batch.index + 1
        if rest:
            log.debug("gave back %d jobs of a batch while job %s runs", len(rest), job.id)

    # ---- claims

    def claim_size(self) -> int:
        """How many jobs to claim: about ``batch_window`` seconds of work, 1 until jobs have been timed."""
        config = self.config
        if self.stopping:
            return 0
        n = 1 if self.average is None else int(config.batch_window / max(self.average, 1e-6))
        n = max(1, min(n, config.batch_size, self.claim_hint or config.batch_size))
        self.claim_hint = None
        if config.maximum_jobs:
            n = min(n, config.maximum_jobs - self.jobs_run)
        return max(n, 0)

    def exchange(self) -> list[QueuedJob]:
        """Write pending outcomes and claim the next jobs, in one transaction. Retries transient errors.

        Jobs handed over to this child come first, and then nothing more is claimed; with nothing to write either,
        there is no transaction at all (a push's fastest path to a running job)."""
        handed, self.handed = self.handed, []
        if handed and not self.pending:
            return handed
        n = 0 if handed else self.claim_size()
        return handed + self.with_retry(lambda: self._exchange(n))

    def _exchange(self, n: int) -> list[QueuedJob]:
        with self.batch_lock:  # a progress timer may share the connection
            return self._exchange_locked(n)

    def _exchange_locked(self, n: int) -> list[QueuedJob]:
        config, store = self.config, self.store
        pending = self.pending
        payload = outcomes_payload([o for o in pending if o.state is not State.PENDING])  # not holding the lock
        with self.writers, self.conn:
            updated = self.write_outcomes(pending, payload)
            now = self.claimed_at = self.now()
            window = int(config.rate_limit_window * 1_000_000) if config.rate_limit and config.rate_limit_window else 0
            self.rate_limited_until = None
            used = 0
            if n and window:
                n, used, window_end = store.take_rate_budget(
                    self.conn, config.queue, n, now=now, limit=config.rate_limit or 0, window=window
                )
                self.rate_limited_until = window_end if n == 0 else None
            rows = (
                store.claim_job_rows(
                    self.conn, config.queue, n, now=now, worker_id=config.worker_id, pid=self.pid,
                    pid_start=self.pid_start,
                )
                if n
                else []
            )
            if rows and window:
                store.spend_rate_budget(self.conn, config.queue, used + len(rows), now=now, window=window)
            if self.hooks.recorders:
                # Run counts are written at most every second, and now if this child goes idle or may be busy a
                # while with what it claimed (so they do not wait for the end of a long job). row[2]: the function.
                force = not rows or any(self._may_run_long(row[2], RECORD_BEFORE) for row in rows)
                self.hooks.transaction_ending(self.conn, now=now, prefix=store.prefix, worker_id=config.worker_id,
                                              force=force)
        jobs = claimed_jobs(rows)  # after the commit: the other children need not wait for it
        self.pending = []
        self.journal.reset()
        self.written(pending, updated)
        return jobs

    def write_outcomes(self, outcomes: list[Outcome], payload: str | None = None) -> list[QueuedJob]:
        """Write finished runs (in the caller's transaction). When plugins are shown written jobs, the accepted
        ones go to ``on_jobs_updated_in_transaction`` here and are returned for ``written`` after the commit."""
        config, store, conn, hooks = self.config, self.store, self.conn, self.hooks
        ended = [o for o in outcomes if o.state is not State.PENDING]  # written together, in one statement
        done = store.complete_jobs(conn, ended, worker_id=config.worker_id, pid=self.pid, queue=config.queue,
                                   payload=payload)
        accepted = dict(zip((o.id for o in ended), done, strict=True))
        for outcome in outcomes:
            if outcome.state is State.PENDING:  # given back (a shutdown, or past the batch window)
                store.complete_job(conn, outcome, worker_id=config.worker_id, pid=self.pid, queue=config.queue)
        if not hooks.wants_runs:
            return []
        updated: list[QueuedJob] = []
        runs: list[FinishedRun] = []
        now = self.now()
        for outcome in ended:
            job = self.ran.get(outcome.id)
            if accepted[outcome.id] and job is not None:
                if hooks.wants_updates and (not hooks.recorders or hooks.watches(job)):  # else kept for recorders
                    updated.append(stored_view(job, outcome))
                if hooks.recorders:
                    runs.append((job.func, job.queue, outcome.state.value, outcome.started_at, outcome.completed_at,
                                 now))
        hooks.runs_written(conn, runs)
        hooks.jobs_written(conn, updated)
        return updated

    def written(self, outcomes: list[Outcome], updated: list[QueuedJob]) -> None:
        """After the commit of ``outcomes``: plugins' ``on_job_updated``."""
        if self.ran:
            for outcome in outcomes:
                self.ran.pop(outcome.id, None)
        self.hooks.jobs_updated(updated)

    def flush(self) -> None:
        """Write pending outcomes (and what run recorders keep) now, claiming nothing."""
        if self.pending or self.hooks.recorders:
            self.with_retry(lambda: self._exchange(0))

    def with_retry(self, step: Callable[[], T]) -> T:
        """Run a bookkeeping step, retrying transient database errors with jittered backoff, forever."""
        delay = 0.01
        while True:
            try:
                return step()
            except Exception as exc:
                if isinstance(exc, HookFailed):  # logged where it failed; the write was rolled back
                    log.warning("retrying the write in %.2f s (%s)", delay, exc)
                elif not db.is_transient(exc):
                    raise
                else:
                    log.warning("database busy or unavailable (%s); retrying in %.2f s", exc, delay)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

    def idle(self) -> None:
        """Nothing to claim: sleep until woken, until the next job is due, or until the poll interval."""
        timeout = self.with_retry(self.idle_timeout)
        if timeout <= 0:
            return
        messages = wake.wait_any([self.mailbox, self.inbox] if self.inbox is not None else [self.mailbox], timeout)
        self.handle_messages(messages)
        if not messages and self.advertised and self.takes_handovers and time.monotonic() >= self._lost_check_due:
            self.find_lost_handovers()

    def find_lost_handovers(self) -> None:
        """Jobs held by this idle child that it never heard of: a pusher handed one over and died before sending
        it (or its datagram was lost). An idle child holds nothing else, so they are run now. Looked for at most
        every ``LOST_HANDOVER_CHECK`` seconds: it is rare, and an idle child should cost next to nothing."""
        self._lost_check_due = time.monotonic() + LOST_HANDOVER_CHECK
        held = self.with_retry(lambda: self.store.held_jobs(self.conn, self.config.worker_id, self.pid))
        for job in held:
            if str(job.id) not in self._handed_ids and job.started_at is None:
                log.info("job %s was handed over to this child but never announced; running it", job.id)
                self._handed_ids.append(str(job.id))
                self.handed.append(job)

    def take_handed(self) -> list[QueuedJob]:
        """The jobs handed over and waiting in the inbox (call once pushers no longer see this child)."""
        if self.inbox is not None:
            self.handle_messages(self.inbox.drain())
        handed, self.handed = self.handed, []
        return handed

    def give_back_handed(self) -> None:
        """On the way out: jobs handed over and not run go back to wait (released, their attempt not counted)."""
        self.advertise(False)
        self.pending.extend(self.release(job) for job in self.take_handed())

    def idle_timeout(self) -> float:
        """After a claim that found nothing: how long to wait for a wake-up (seconds, at most the polling
        interval). Until the next job is due; or, when due jobs wait on the queue's rate limit, until its window
        ends; or, when they wait on their keys' limits, until a key's window ends or a later job falls due (a
        key's running job that ends wakes the queue's workers itself)."""
        now = self.now()
        due = self.store.next_due(self.conn, self.config.queue)
        if due is not None and self.rate_limited_until is not None:
            due = max(due, self.rate_limited_until)  # jobs wait, but not beyond the end of the rate window
        elif due is not None and due <= now:  # a window that ended since the claim counts: look again at once
            due = self.store.next_unblocked(self.conn, self.config.queue, now=min(now, self.claimed_at or now))
        if due is None:
            return float(self.config.polling_interval)
        return min(float(self.config.polling_interval), max(0.0, (due - now) / 1e6))

    def advertise(self, idle: bool) -> bool:
        """Show (or hide) this child to pushers as idle, through a link to its mailbox; True if it changed."""
        if idle == self.advertised:
            return False
        self.advertised = idle
        if idle and self.inbox is None:
            config = self.config
            self.inbox = wake.Listener(self.channel, wake.INBOX, name=wake.inbox_name(config.key))
            # A rate-limited queue counts every claim: its jobs are never handed over.
            self.identity = wake.write_identity(self.channel.directory, config.key, worker_id=config.worker_id,
                                                pid=self.pid, pid_start=self.pid_start,
                                                handover=self.takes_handovers and config.rate_limit is None)
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            if idle:
                assert self.inbox is not None
                os.link(self.inbox.path, self.idle_path)
            else:
                os.unlink(self.idle_path)
        return True

    def handle_messages(self, messages: list[bytes]) -> None:
        for message in messages:
            decoded = wake.decode_child(message)
            if isinstance(decoded, wake.Work) and decoded.count is not None:
                # A push of that many jobs woke us: claim no more (one job: the scalar claim).
                self.claim_hint = max(self.claim_hint or 0, decoded.count)
            elif isinstance(decoded, wake.Handed):
                job = handed_job(decoded.row, self.config.worker_id)
                if str(job.id) not in self._handed_ids:
                    self._handed_ids.append(str(job.id))
                    self.handed.append(job)
            elif isinstance(decoded, wake.Stop):
                self.stopping = True
            elif isinstance(decoded, wake.Cancel):
                if self.current is not None and str(self.current.id) == decoded.job_id:
                    self.cancelled = decoded.job_id
                else:  # claimed in this batch but not started yet (or already done: then it costs one read)
                    self.cancelled_claims.add(decoded.job_id)

    def cancelled_before_start(self, job: QueuedJob) -> bool:
        """Whether ``job``, claimed by us, was cancelled (or taken from us) before it started. A job handed over
        to us is always looked up: its hand-over came straight from the pusher, while a cancel reaches us through
        our supervisor, so it may still be on its way."""
        job_id = str(job.id)
        if job_id not in self.cancelled_claims and not (self._handed_ids and job_id in self._handed_ids):
            return False
        states = self.with_retry(lambda: self.store.job_states(self.conn, [job_id]))
        return states.get(job_id) != State.RUNNING.value

    def close(self) -> None:
        with self.batch_lock:
            self._closed = True
            self._watch.set()
        self.advertise(False)
        self.journal.close(remove=not self.pending)
        self.hooks.close()
        self.mailbox.close()
        if self.inbox is not None:
            self.inbox.close()
        if self.identity is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.identity)
        self.channel.close()
        self.writers.close()
        self.conn.close()

    # ---- one job

    def prepare(self, job: QueuedJob) -> tuple[QueuedJob, Callable[..., Any], dict[str, Any]]:
        """Check the job against this runner's capabilities and resolve its call (see chancy_lite.execution),
        through the queue's executor class (its ``get_function_and_kwargs``, which users may override)."""
        if self.config.allowed_modules is not None:
            execution.check_allowed(job.func, self.config.allowed_modules)
        if self._preparer is None:
            cls: Any = None
            if self.config.executor:
                try:
                    cls = import_string(self.config.executor)
                except Exception:
                    log.exception("cannot import executor %s; jobs are prepared the default way",
                                  self.config.executor)
            get = cls.get_function_and_kwargs if cls is not None else execution.function_and_kwargs
            self._preparer = (int(self.capabilities), get, cls.__name__ if cls is not None else type(self).__name__)
        caps, get, name = self._preparer
        return execution.prepare(job, caps, get, name)

    def begin(self, job: QueuedJob) -> None:
        """From here on a cancel of ``job`` sets ``self.cancelled`` (it is then checked before the call, and
        interrupts the call); one that came earlier is in ``cancelled_claims``, checked next."""
        self.cancelled = None
        self.current = job
        self.end_progress()
        object.__setattr__(job, "_reporter", self.report_progress)  # a fresh object from the claim: not shared

    def report_progress(self, job: QueuedJob) -> None:
        """``QueuedJob.progress``: save the running job's meta now, unless it was saved less than
        ``PROGRESS_INTERVAL`` ago; then a timer saves the latest report when the interval is up, so the last one
        shows even if the job then works for long without reporting. Best effort: a busy database or meta that
        cannot be saved skips one save."""
        now = time.monotonic()
        if now < self._progress_due:
            if self._progress_timer is None:
                timer = threading.Timer(self._progress_due - now, self._save_progress, (job, True))
                timer.daemon = True
                self._progress_timer = timer
                timer.start()
            return
        self._save_progress(job, False)

    def _save_progress(self, job: QueuedJob, timed: bool) -> None:
        if timed:
            self._progress_timer = None
            if self.current is not job:
                return  # the job ended meanwhile: its outcome carries its meta
        self._progress_due = time.monotonic() + PROGRESS_INTERVAL
        try:
            meta = dump_meta(job.meta)
            with self.batch_lock:  # the batch watcher shares the connection
                self.store.save_running_meta(self.conn, job, meta, worker_id=self.config.worker_id, pid=self.pid)
        except Exception as exc:  # RuntimeError: the job changed its meta while the timer read it
            if not (db.is_transient(exc) or isinstance(exc, ValueError | TypeError | RuntimeError)):
                raise
            log.debug("progress of job %s not saved this time: %s", job.id, exc)

    def end_progress(self) -> None:
        """Forget the progress reports of the job that ran (its outcome carries its meta)."""
        timer, self._progress_timer = self._progress_timer, None
        if timer is not None:
            timer.cancel()
        self._progress_due = 0.0

    def run_job(self, job: QueuedJob, started_at: int) -> Outcome | None:
        """Run one job (its start already journaled, ``begin(job)`` called) and return its outcome; None if it
        was cancelled."""
        had_meta = bool(job.meta)
        started = time.perf_counter()
        error: BaseException | None = None
        stopping = False
        try:
            if self.hooks.starting:
                job = self.hooks.job_starting(job)
            job, func, kwargs = self.prepare(job)
            self.call(job, func, kwargs)
        except WorkerShutdown:
            stopping = True
        except asyncio.CancelledError as exc:
            if self.cancelled == str(job.id):
                log.info("job %s (%s) cancelled", job.id, job.func)
                self.after_job(succeeded=False)
                return None  # cancel_job already wrote the final state
            error = exc
        except BaseException as exc:  # the job's failure is data, whatever it raised
            error = exc
        finally:
            self.current = None
            if self._progress_timer is not None:
                self.end_progress()
        self.after_job(succeeded=error is None and not stopping)
        outcome = next_outcome(job, error, stopping=stopping, now=self.now(), had_meta=had_meta,
                               elapsed=time.perf_counter() - started, started_at=started_at)
        if self.hooks.completing:
            outcome = self.hooks.job_completed(job, outcome, error)
        if self.hooks.recorders or (self.hooks.wants_updates and self.hooks.watches(job)):
            self.ran[outcome.id] = job
        return outcome

    def after_job(self, *, succeeded: bool) -> None:
        """Called after each job, once it can no longer be interrupted (process children clean up here)."""

    def release(self, job: QueuedJob) -> Outcome:
        """An outcome that gives a claimed but unstarted job back, its attempt not counted."""
        return Outcome(str(job.id), job.attempts, State.PENDING, None)

    def call(self, job: QueuedJob, func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        time_limit = memory_limit = None
        if job.limits:
            caps = int(self.capabilities)
            time_limit = job.limit(Limit.Type.TIME) if caps & int(Capability.AUTOMATIC_TIME_LIMITS) else None
            memory = job.limit(Limit.Type.MEMORY) if caps & int(Capability.MEMORY_LIMITS) else None
            memory_limit = int(memory) if memory else None
        if execution.is_coroutine_function(func):
            self.run_coroutine(func, kwargs, time_limit)
        else:
            with self.limits(time_limit, memory_limit):
                self.in_job = True
                try:
                    self.check_interrupts()
                    func(**kwargs)
                finally:
                    self.in_job = False
        job.checkpoint()  # a cooperative limit that passed while the job ran fails it, result discarded (0.26)

    def run_coroutine(self, func: Callable[..., Any], kwargs: dict[str, Any], time_limit: float | None) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        coroutine: Any = execution.guarded(func(**kwargs))
        if time_limit:
            coroutine = execution.limited(coroutine, time_limit)
        self._task = self._loop.create_task(coroutine)
        with self.limits(None, None, hard_time=time_limit):
            try:
                self.check_interrupts()
                self._loop.run_until_complete(self._task)
            finally:
                self._task = None

    def check_interrupts(self) -> None:
        if self.cancelled is not None and self.current is not None and self.cancelled == str(self.current.id):
            raise JobCancelled(f"job {self.current.id} was cancelled")

    def limits(
        self, time_limit: float | None, memory_limit: int | None, hard_time: float | None = None
    ) -> typing.ContextManager[None]:
        return contextlib.nullcontext()


# ------------------------------------------------------------ process children


_CHILD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)


def _ignore_signal(signum: int, frame: Any) -> None:
    """Ignore a signal without SIG_IGN, which every program a job starts would inherit through exec."""


def _reset_forked_helper() -> None:
    """In a process a job forks without exec: drop the child's signal handlers (they are not its).

    The child's watchdog thread is not copied by fork, so nothing of it runs here; calling
    ``faulthandler.cancel_dump_traceback_later()`` here would wait for that thread forever.
    """
    with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread (cannot happen after fork)
        for sig in _CHILD_SIGNALS:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


class ProcessRunner(Runner):
    """A runner in its own process: limits and interruptions by signal.

    The child leads its own process group, which every process a job starts joins (unless it leaves it on
    purpose, e.g. ``start_new_session=True``). When a job ends any way but success (a timeout, a cancel, a
    shutdown, an exception), whatever it started that still runs is killed; when the child itself exits or is
    killed, its supervisor kills the rest of the group.
    """

    capabilities = (
        Capability.SYNC_JOBS | Capability.ASYNC_JOBS | Capability.CANCELLATION | Capability.AUTOMATIC_TIME_LIMITS
        | Capability.MEMORY_LIMITS
    )
    takes_handovers = True

    def install_signals(self) -> None:
        signal.signal(signal.SIGINT, _ignore_signal)  # Ctrl-C reaches the supervisor, which decides
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_mail)
        signal.signal(signal.SIGUSR2, self._on_interrupt)
        signal.signal(signal.SIGALRM, self._on_alarm)
        os.register_at_fork(after_in_child=_reset_forked_helper)
        # SIGWINCH (ignored by default, so harmless before this line): print every thread's stack to stderr. The
        # supervisor sends it to a child that did not stop in time, to show where it was.
        faulthandler.register(signal.SIGWINCH, all_threads=True, chain=False)
        proc.set_parent_death_signal(signal.SIGUSR2)
        parent = self.config.parent_pid
        if os.getppid() == 1 or (parent is not None and os.getppid() != parent):  # it died before we asked
            self.stopping = True

    def after_job(self, *, succeeded: bool) -> None:
        if succeeded or os.getpgrp() != self.pid:
            return
        killed = proc.kill_group_members(self.pid)
        if killed:
            log.info("killed %d process(es) left running by the job: %s", len(killed), ", ".join(map(str, killed)))

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self.poke()

    def poke(self) -> None:
        """End an idle wait now (from a signal handler)."""
        self.channel.send_to(self.mailbox.path, wake.work_message())

    def _on_mail(self, signum: int, frame: Any) -> None:
        messages = self.mailbox.drain()
        self.handle_messages(messages)
        if any(not isinstance(wake.decode_child(m), wake.Cancel) for m in messages):
            self.poke()  # keep the wake-up (or stop) for the idle wait
        if self.cancelled is not None and self.current is not None and self.cancelled == str(self.current.id):
            self._interrupt(JobCancelled(f"job {self.current.id} was cancelled"))

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self.poke()
        _WATCHDOG.arm(self.config.timeout_grace, "the worker is shutting down and the job did not stop")
        if self.current is not None:
            self._interrupt(WorkerShutdown("the worker is shutting down"))

    def _on_alarm(self, signum: int, frame: Any) -> None:
        job = self.current
        if job is not None:
            self._interrupt(TimeoutError(f"job {job.id} exceeded its time limit of {job.limit(Limit.Type.TIME)} s"))

    def _interrupt(self, exc: BaseException) -> None:
        """Raise ``exc`` inside the running job (sync: from this handler; async: cancel its task)."""
        if self._task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
            if isinstance(exc, WorkerShutdown):
                self.stopping = True
            return
        if self.in_job:
            self.in_job = False
            raise exc

    def limits(
        self, time_limit: float | None, memory_limit: int | None, hard_time: float | None = None
    ) -> typing.ContextManager[None]:
        if not (time_limit or memory_limit or hard_time):
            return _NO_LIMITS
        return _ProcessLimits(time_limit, memory_limit, hard_time, self.config.timeout_grace)

    def run_coroutine(self, func: Callable[..., Any], kwargs: dict[str, Any], time_limit: float | None) -> None:
        try:
            super().run_coroutine(func, kwargs, time_limit)
        except asyncio.CancelledError:
            if self.stopping and self.cancelled is None:
                raise WorkerShutdown("the worker is shutting down") from None
            raise


class _Watchdog:
    """Ends a child whose job will not stop. After ``seconds`` a thread kills what the job started and exits the
    process; should the job hold the GIL in one long C call, so that no thread runs, faulthandler's own C thread
    exits the process a second later (the supervisor, if alive, then kills what is left of the child's group)."""

    def __init__(self) -> None:
        self.timer: threading.Timer | None = None

    def arm(self, seconds: float, why: str) -> None:
        self.disarm()
        self.timer = threading.Timer(seconds, self._expire, (why,))
        self.timer.daemon = True
        self.timer.start()
        faulthandler.dump_traceback_later(seconds + 1.0, exit=True)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        faulthandler.cancel_dump_traceback_later()

    @staticmethod
    def _expire(why: str) -> None:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"chancy-lite child {os.getpid()}: {why} within its grace period; exiting\n")
            faulthandler.dump_traceback(all_threads=True)
            if os.getpgrp() == os.getpid():
                proc.kill_group_members(os.getpid())
        os._exit(1)


_WATCHDOG = _Watchdog()
_NO_LIMITS = contextlib.nullcontext()


class _ProcessLimits:
    """TIME: SIGALRM at the limit, and the watchdog (``_Watchdog``) after a grace period.
    MEMORY: the address-space limit for the job, restored afterwards."""

    def __init__(self, time_limit: float | None, memory: int | None, hard_time: float | None, grace: float) -> None:
        self.time_limit, self.memory, self.hard_time, self.grace = time_limit, memory, hard_time, grace
        self.saved: tuple[int, int] | None = None

    def __enter__(self) -> None:
        limit = self.time_limit or self.hard_time
        if limit:
            _WATCHDOG.arm(limit + self.grace, f"the job passed its time limit of {limit} s and did not stop")
        if self.time_limit:
            signal.setitimer(signal.ITIMER_REAL, self.time_limit)
        if self.memory:
            import resource

            self.saved = resource.getrlimit(resource.RLIMIT_AS)
            hard = self.saved[1]
            soft = int(self.memory) if hard == resource.RLIM_INFINITY else min(int(self.memory), hard)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    def __exit__(self, *exc: object) -> None:
        if self.time_limit:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if self.time_limit or self.hard_time:
            _WATCHDOG.disarm()
        if self.saved is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, self.saved)


def child_main(config: ChildConfig) -> None:
    """Entry point of a child process (spawned, or forked from the template)."""
    if config.log_level is not None:
        logging.basicConfig(
            level=config.log_level, stream=sys.stderr,
            format=f"%(asctime)s %(levelname)s [{config.queue}:{os.getpid()}] %(message)s",
        )
    early: list[int] = []
    if config.register_signals:
        # Until the runner can handle them, remember stop requests instead of dying of them.
        for sig in (signal.SIGTERM, signal.SIGUSR2):
            signal.signal(sig, lambda signum, frame: early.append(signum))
        signal.signal(signal.SIGINT, _ignore_signal)
    # A child forked from the template starts with these blocked (chancy_lite.template): a stop request that came
    # meanwhile is delivered now, to the handlers above, and programs its jobs run inherit no blocked signal.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    runner = ProcessRunner(config)
    if config.register_signals:
        runner.install_signals()
        runner.stopping = runner.stopping or bool(early)
    runner.run()


# ------------------------------------------------------------- thread children


class ThreadRunner(Runner):
    """A runner in a thread of the supervisor: interruptions by asynchronous exception.

    TIME limits are cooperative, as in Chancy 0.26: a thread cannot be stopped from outside while it blocks,
    so the job must take its ``QueuedJob`` context and call ``checkpoint()`` (or read ``time_remaining``);
    a job that overran is failed with ``TimeoutError`` when it returns. MEMORY limits are refused.
    """

    capabilities = Capability.SYNC_JOBS | Capability.ASYNC_JOBS | Capability.COOPERATIVE_TIME_LIMITS

    def __init__(self, config: ChildConfig) -> None:
        super().__init__(config)
        self.thread_id: int | None = None

    def run(self) -> None:
        self.thread_id = threading.get_ident()
        super().run()

    def interrupt(self, exc_type: type[BaseException]) -> None:
        """Raise ``exc_type`` in the job running on this thread, if one is running (Python code only)."""
        if self.in_job and self.thread_id is not None:
            import ctypes

            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id), ctypes.py_object(exc_type))


def main() -> None:
    """``python -m chancy_lite.child``: read the payload (JSON) on stdin and run."""
    payload = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    run(payload)


def run(payload: dict[str, Any]) -> None:
    """Run a child from its payload (``{"config": ChildConfig as a dict, "sys_path": [...]}``), in a spawned
    process or in one forked from the template (chancy_lite.template)."""
    sys.path[:] = payload["sys_path"]
    data = payload["config"]
    if data.get("alias"):
        from chancy_lite import alias

        alias.install()
    if data.get("allowed_modules") is not None:
        data["allowed_modules"] = tuple(data["allowed_modules"])
    child_main(ChildConfig(**data))


if __name__ == "__main__":
    main()

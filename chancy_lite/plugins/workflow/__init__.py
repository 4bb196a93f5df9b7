"""``WorkflowPlugin``: jobs with dependencies between them, as Chancy 0.26 (``chancy.plugins.workflow``).

::

    workflow = (
        Workflow("report")
        .add("fetch", fetch)                      # a Job, or a function decorated with @job
        .add("left", left, ["fetch"])
        .add("right", right, ["fetch"])
        .add("merge", merge, ["left", "right"])
    )
    workflow_id = await WorkflowPlugin.push(chancy, workflow)
    done = await WorkflowPlugin.wait_for_workflow(chancy, workflow_id, timeout=60)

It is a default plugin (as Chancy): ``chancy.migrate()`` creates ``chancy_workflows`` and ``chancy_workflow_steps``
(migration key ``workflow``). As Chancy 0.26:

* ``push`` validates first: a workflow without steps, with a dependency on an unknown step id, or with a cycle is
  refused (``EmptyWorkflowError``, ``InvalidDependencyError``, ``CircularDependencyError``, all ``ValueError``)
  before anything is stored;
* a step's job is pushed, with ``meta["workflow_id"]``, once all its dependencies succeeded; the workflow is
  ``running`` once a step has a job, ``completed`` when every step succeeded, ``failed`` as soon as one failed
  (later steps never run). A retrying step has not finished: its dependants wait for it;
* the leader also polls every ``polling_interval`` seconds, walking active workflows in id order
  ``max_workflows_per_run`` at a time, and the Pruner's pass calls ``cleanup``, which deletes finished workflows
  matching ``pruning_rule`` (default ``Rules.Age() > 86400``, seconds since the workflow was created).

How it advances here: ``push`` stores the workflow and pushes the steps without dependencies in one transaction;
then, in the transaction that writes a finished step's job (``on_jobs_updated_in_transaction``, in whichever
process ran it), the workflow's state moves and every step that became ready is pushed. SQLite has one writer at
a time and the step's ``job_id`` is set in the transaction that pushes its job, so each step is pushed once
however many workers share the file, and a finished step starts its dependants at once, on any worker. The poll
only repairs what that path missed: outcomes written without the hook (``cancel_job``, a hand edit) and a step
whose job was purged before it finished (pushed again). Each step also keeps its job's final state, so a
workflow still completes after the Pruner deleted the jobs of its early steps (0.26 would stay running).

**Better than Chancy:** steps never wait for a poll or a leader; no step that became ready alongside a failure is
pushed (0.26 pushes it, then fails the workflow); ``fetch_workflows`` returns workflows oldest first; every call
has a ``sync_`` twin; ``generate_dot`` also returns the text; ``wait_for_workflow`` is woken by job completions
and takes ``states``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Sequence as Seq
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from chancy_lite import db
from chancy_lite.job import Job, QueuedJob
from chancy_lite.plugin import Plugin, missing_tables_explained
from chancy_lite.plugins.workflow.model import (
    CircularDependencyError,
    EmptyWorkflowError,
    InvalidDependencyError,
    JobLike,
    Workflow,
    WorkflowStep,
    generate_dot,
    sequence_workflow,
)
from chancy_lite.plugins.workflow.sql import MIGRATIONS
from chancy_lite.plugins.workflow.store import FetchedWorkflow, StepRow, Stored, WorkflowStore
from chancy_lite.rule import Condition, Rule, as_tree
from chancy_lite.utils import chancy_uuids, dump_json, from_micros

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker

__all__ = [
    "CircularDependencyError",
    "EmptyWorkflowError",
    "InvalidDependencyError",
    "Sequence",
    "Workflow",
    "WorkflowPlugin",
    "WorkflowStep",
    "generate_dot",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
IdLike = uuid.UUID | str
_FINISHED = frozenset({QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED})
_PRUNE_BATCH = 1000  # finished workflows deleted per transaction by cleanup()


class Sweep(NamedTuple):
    """Where a recovery sweep is: the last id done ("" before the first), and the newest active id when the sweep
    began."""

    after: str
    until: str


class WorkflowPlugin(Plugin):
    """Run workflows (see the module docstring). Options, as Chancy 0.26:

    * ``polling_interval`` (seconds, > 0): how often the leader sweeps active workflows for repairs;
    * ``max_workflows_per_run`` (>= 1): workflows looked at per poll (a longer sweep goes on at the next poll);
    * ``pruning_rule``: which finished workflows ``cleanup`` deletes, a ``WorkflowPlugin.Rules.Age()`` comparison
      (combined with ``&`` / ``|`` if you like); None means ``Rules.Age() > 86400``. ``Age() > v`` deletes workflows
      created and finished at least ``v`` seconds ago;
    * ``max_pending_workflows``: accepted for compatibility and unused (0.26 bounds its queue of event hints with
      it; here a finished step advances its workflow in its own transaction, so there is no such queue).

    ``ValueError`` for an option out of range, ``TypeError`` for a rule that is not one.
    """

    class Rules:
        class Age(Rule):
            """Seconds since the workflow was created."""

            field = "age"

    def __init__(self, *, polling_interval: float = 30, max_workflows_per_run: int = 1000,
                 pruning_rule: Condition | None = None, max_pending_workflows: int = 10000) -> None:
        if not polling_interval > 0:
            raise ValueError("polling_interval must be > 0 seconds")
        if not (isinstance(max_workflows_per_run, int) and max_workflows_per_run >= 1):
            raise ValueError("max_workflows_per_run must be an integer >= 1")
        rule = pruning_rule if pruning_rule is not None else self.Rules.Age() > 86_400
        self.pruning_rule = as_tree(rule, "WorkflowPlugin(pruning_rule=...)")
        _check_rule(self.pruning_rule)
        self.polling_interval = polling_interval
        self.max_workflows_per_run = max_workflows_per_run
        self.max_pending_workflows = max_pending_workflows
        self._sweep: Sweep | None = None

    @staticmethod
    def get_identifier() -> str:
        return "chancy.workflow_plugin"

    def get_dependencies(self) -> list[str]:
        return ["chancy.leadership"]

    def migrate_key(self) -> str | None:
        return "workflow"

    def migrations(self) -> list[tuple[list[str], list[str]]]:
        return MIGRATIONS

    def get_tables(self) -> list[str]:
        return ["workflows", "workflow_steps"]

    def __getstate__(self) -> dict[str, Any]:
        """Copies for worker children (which run the job hook) leave the supervisor's loop state behind."""
        state = self.__dict__.copy()
        state.pop("_wake", None)
        state["_sweep"] = None
        return state

    # ------------------------------------------------ advancing, in the write

    def wants_updates_for(self, job: QueuedJob) -> bool:
        """Only the jobs of workflow steps (``meta["workflow_id"]``): other jobs cost the hook nothing."""
        return "workflow_id" in job.meta

    async def on_jobs_updated_in_transaction(self, *, worker: Worker | None, jobs: Seq[QueuedJob],
                                             cursor: Any) -> None:
        """Advance the workflows of the steps that finished (succeeded or failed) in this write, inside its
        transaction: record each step's outcome, move the workflow's state, push the steps that became ready.
        Announces ``workflow.step_completed`` ``{"workflow_id"}`` once per workflow after the commit (0.26).
        A job whose ``meta["workflow_id"]`` is not a stored workflow is ignored."""
        ids = list(dict.fromkeys(
            key for key in (_workflow_key(job.meta.get("workflow_id")) for job in jobs if job.state in _FINISHED)
            if key is not None
        ))
        if not ids:
            return
        store = _hook_store(cursor, worker)
        now = worker.chancy.now() if worker is not None else cursor.now()
        try:
            store.advance(cursor, ids, now=now, new_ids=chancy_uuids)
        except Exception as exc:
            if db.missing_table(exc) not in (f"{store.prefix}workflows", f"{store.prefix}workflow_steps"):
                raise
            log.error("jobs of workflows finished, but the database has no workflow tables: migrate it with an app "
                      "that has the WorkflowPlugin (it is a default plugin)")
            return
        store.core.notify(cursor, [("workflow.step_completed", {"workflow_id": key}) for key in ids])

    # ------------------------------------------------------ the repair poll

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.sleep(self.polling_interval)
            await self.wait_for_leader(worker)
            await self.tick(worker)

    async def tick(self, worker: Worker) -> int:
        """One poll of the leader's sweep, now: up to ``max_workflows_per_run`` active workflows in id order from
        where the last poll stopped; each that the scheduling rule would change is advanced. Returns how many
        were advanced. A sweep ends at the newest active workflow of when it began (newer ones join the next), so
        a busy file cannot starve older workflows (0.26)."""
        chancy = worker.chancy
        try:
            advanced, self._sweep = await worker.db(self._poll, store_for(chancy), self._sweep, chancy.now())
        except Exception:
            self._sweep = None  # begin a fresh sweep after an error, as 0.26
            raise
        return advanced

    def _poll(self, conn: db.Connection, store: WorkflowStore, sweep: Sweep | None, now: int
              ) -> tuple[int, Sweep | None]:
        """One batch of a sweep on ``conn``; returns how many workflows it advanced and where the sweep is."""
        limit = self.max_workflows_per_run
        ids: list[str] = []
        if sweep is not None:  # the rest of the current sweep
            ids = store.active_ids(conn, after=sweep.after, until=sweep.until, limit=limit)
        if not ids:  # else a fresh one, up to the newest active workflow now
            last = store.last_active_id(conn)
            if last is None:
                return 0, None
            sweep = Sweep("", last)
            ids = store.active_ids(conn, after=sweep.after, until=sweep.until, limit=limit)
            if not ids:
                return 0, None
        assert sweep is not None
        stale = store.stale(conn, ids)
        advanced = store.advance(conn, stale, now=now, new_ids=chancy_uuids) if stale else []
        for change in advanced:
            log.info("workflow %s (%r) advanced by the poll: %s -> %s, %d step(s) pushed", change.workflow_id,
                     change.name, change.previous.value, change.state.value, len(change.pushed))
        done = len(ids) < limit or ids[-1] == sweep.until
        return len(advanced), None if done else Sweep(ids[-1], sweep.until)

    def sync_sweep(self, chancy: Chancy) -> int:
        """A whole repair sweep now, without a worker (what the leader's polls do, all at once): for tests and
        scripts. Returns how many workflows it advanced. Not in Chancy."""
        store, total, sweep = store_for(chancy), 0, None
        while True:
            advanced, sweep = _call(chancy, self._poll, store, sweep, chancy.now())
            total += advanced
            if sweep is None:
                return total

    async def sweep(self, chancy: Chancy) -> int:
        """A whole repair sweep now, without a worker (what the leader's polls do, all at once): for tests and
        scripts. Returns how many workflows it advanced. Not in Chancy."""
        return await chancy._run(self.sync_sweep, chancy)

    # ------------------------------------------------------------- pruning

    def sync_cleanup(self, chancy: Chancy) -> int:
        """Delete the finished (completed or failed) workflows matching ``pruning_rule``, with their steps;
        returns how many. The Pruner calls ``cleanup`` after each of its passes, on the leader (as Chancy)."""
        store, total = store_for(chancy), 0
        while True:
            deleted = _call(chancy, store.prune, self.pruning_rule, now=chancy.now(), limit=_PRUNE_BATCH)
            total += deleted
            if deleted < _PRUNE_BATCH:
                return total

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete the finished (completed or failed) workflows matching ``pruning_rule``, with their steps;
        returns how many. The Pruner calls ``cleanup`` after each of its passes, on the leader (as Chancy)."""
        return await chancy._run(self.sync_cleanup, chancy)

    # ------------------------------------------------------------- the API

    @classmethod
    def sync_push(cls, chancy: Chancy, workflow: Workflow) -> uuid.UUID:
        """Validate and store ``workflow`` (replacing a stored one with its id), and push its steps without
        dependencies, in one transaction; returns its id. The object is updated: ``state``, ``created_at``,
        ``updated_at`` and the pushed steps' ``job_id``.

        Raises ``EmptyWorkflowError``, ``InvalidDependencyError`` or ``CircularDependencyError`` (see
        ``Workflow.validate``) before anything is written, ``NotSerializableError`` for a job whose kwargs or meta
        are not JSON, ``MigrationsNeededError`` when the file has no workflow tables.
        """
        return _call(chancy, _push, chancy, workflow)

    @classmethod
    async def push(cls, chancy: Chancy, workflow: Workflow) -> uuid.UUID:
        """Validate and store ``workflow`` (replacing a stored one with its id), and push its steps without
        dependencies, in one transaction; returns its id. The object is updated: ``state``, ``created_at``,
        ``updated_at`` and the pushed steps' ``job_id``.

        Raises ``EmptyWorkflowError``, ``InvalidDependencyError`` or ``CircularDependencyError`` (see
        ``Workflow.validate``) before anything is written, ``NotSerializableError`` for a job whose kwargs or meta
        are not JSON, ``MigrationsNeededError`` when the file has no workflow tables.
        """
        return await _run(chancy, _push, chancy, workflow)

    @classmethod
    def sync_push_ex(cls, conn: db.Connection, chancy: Chancy, workflow: Workflow,
                     worker: Worker | None = None) -> uuid.UUID:
        """``push`` inside the caller's transaction on ``conn`` (from ``chancy.transaction()``): the workflow and
        its first jobs commit or roll back with the caller's rows. ``worker`` is accepted as 0.26's and unused.
        Errors as ``push``."""
        with _explained(chancy), chancy._errors(conn):
            return _push(conn, chancy, workflow)

    @classmethod
    async def push_ex(cls, conn: db.Connection, chancy: Chancy, workflow: Workflow,
                      worker: Worker | None = None) -> uuid.UUID:
        """``push`` inside the caller's transaction on ``conn`` (from ``chancy.transaction()``): the workflow and
        its first jobs commit or roll back with the caller's rows. ``worker`` is accepted as 0.26's and unused.
        Errors as ``push``."""
        return await chancy._run(cls.sync_push_ex, conn, chancy, workflow)

    @classmethod
    def sync_fetch_workflow(cls, chancy: Chancy, workflow_id: IdLike) -> Workflow | None:
        """The stored workflow with this id (a UUID or its text), with its steps in step id order and each step's
        state (its job's; None before its job is pushed), or None. ``ValueError`` for an id that is not a UUID."""
        found = cls.sync_fetch_workflows(chancy, ids=[workflow_id], limit=1)
        return found[0] if found else None

    @classmethod
    async def fetch_workflow(cls, chancy: Chancy, workflow_id: IdLike) -> Workflow | None:
        """The stored workflow with this id (a UUID or its text), with its steps in step id order and each step's
        state (its job's; None before its job is pushed), or None. ``ValueError`` for an id that is not a UUID."""
        return await _run(chancy, _fetch, chancy, None, [workflow_id], 1, first=True)

    @classmethod
    def sync_fetch_workflow_ex(cls, conn: db.Connection, chancy: Chancy, workflow_id: IdLike) -> Workflow | None:
        """``fetch_workflow`` on the caller's connection (inside its transaction, if one is open)."""
        with _explained(chancy), chancy._errors(conn):
            return _fetch(conn, chancy, None, [workflow_id], 1, first=True)

    @classmethod
    async def fetch_workflow_ex(cls, conn: db.Connection, chancy: Chancy, workflow_id: IdLike) -> Workflow | None:
        """``fetch_workflow`` on the caller's connection (inside its transaction, if one is open)."""
        return await chancy._run(cls.sync_fetch_workflow_ex, conn, chancy, workflow_id)

    @classmethod
    def sync_fetch_workflows(cls, chancy: Chancy, *, states: Iterable[Workflow.State | str] | None = None,
                             ids: Iterable[IdLike] | None = None, limit: int = 100) -> list[Workflow]:
        """Up to ``limit`` stored workflows, oldest first, in these ``states`` and with these ``ids`` when given
        (0.26 returns them in no particular order). ``ValueError`` for an unknown state or an id that is not a UUID.
        """
        return _call(chancy, _fetch, chancy, states, ids, limit)

    @classmethod
    async def fetch_workflows(cls, chancy: Chancy, *, states: Iterable[Workflow.State | str] | None = None,
                              ids: Iterable[IdLike] | None = None, limit: int = 100) -> list[Workflow]:
        """Up to ``limit`` stored workflows, oldest first, in these ``states`` and with these ``ids`` when given
        (0.26 returns them in no particular order). ``ValueError`` for an unknown state or an id that is not a UUID.
        """
        return await _run(chancy, _fetch, chancy, _listed(states), _listed(ids), limit)

    @classmethod
    def sync_fetch_workflow_page(cls, chancy: Chancy, *, state: Workflow.State | str | None = None,
                                 before: IdLike | None = None, limit: int = 100) -> list[Workflow]:
        """Up to ``limit`` workflows, newest first, all older than ``before`` (a workflow id) when given, in
        ``state`` when given: a keyset page, read through an index however many workflows are stored (the
        dashboard's list). Not in Chancy. ``ValueError`` for an unknown state or an id that is not a UUID."""
        return _call(chancy, _page, chancy, state, before, limit)

    @classmethod
    async def fetch_workflow_page(cls, chancy: Chancy, *, state: Workflow.State | str | None = None,
                                  before: IdLike | None = None, limit: int = 100) -> list[Workflow]:
        """Up to ``limit`` workflows, newest first, all older than ``before`` (a workflow id) when given, in
        ``state`` when given: a keyset page, read through an index however many workflows are stored (the
        dashboard's list). Not in Chancy. ``ValueError`` for an unknown state or an id that is not a UUID."""
        return await _run(chancy, _page, chancy, state, before, limit)

    @classmethod
    def sync_fetch_workflows_ex(cls, conn: db.Connection, chancy: Chancy, *,
                                states: Iterable[Workflow.State | str] | None = None,
                                ids: Iterable[IdLike] | None = None, limit: int = 100) -> list[Workflow]:
        """``fetch_workflows`` on the caller's connection (inside its transaction, if one is open)."""
        with _explained(chancy), chancy._errors(conn):
            return _fetch(conn, chancy, states, ids, limit)

    @classmethod
    async def fetch_workflows_ex(cls, conn: db.Connection, chancy: Chancy, *,
                                 states: Iterable[Workflow.State | str] | None = None,
                                 ids: Iterable[IdLike] | None = None, limit: int = 100) -> list[Workflow]:
        """``fetch_workflows`` on the caller's connection (inside its transaction, if one is open)."""
        return await chancy._run(cls.sync_fetch_workflows_ex, conn, chancy, states=_listed(states),
                                 ids=_listed(ids), limit=limit)

    @classmethod
    def sync_wait_for_workflow(cls, chancy: Chancy, workflow_id: IdLike, *,
                               states: Iterable[Workflow.State | str] | None = None, interval: float = 1,
                               timeout: float | None = None) -> Workflow:
        """Return the workflow once its state is in ``states`` (default: completed or failed). Looks every
        ``interval`` seconds and whenever a job finishes. ``KeyError`` if there is no such workflow,
        ``TimeoutError`` after ``timeout`` seconds (None: wait forever), as Chancy 0.26."""
        key, wanted = _workflow_id(workflow_id), _states(states, _DONE)
        deadline = None if timeout is None else time.monotonic() + timeout
        store = store_for(chancy)
        with _waiting(chancy) as listener:
            while True:
                state = _call(chancy, store.workflow_state, key)
                if state is None:
                    raise KeyError(f"Workflow {workflow_id} not found")
                if state in wanted:
                    found = cls.sync_fetch_workflow(chancy, key)
                    if found is not None:
                        return found
                pause = interval if deadline is None else min(interval, deadline - time.monotonic())
                if pause <= 0:
                    raise TimeoutError(f"workflow {workflow_id} did not reach {sorted(wanted)} within {timeout} s")
                if listener is not None:
                    listener.wait(pause)
                else:
                    time.sleep(pause)

    @classmethod
    async def wait_for_workflow(cls, chancy: Chancy, workflow_id: IdLike, *,
                                states: Iterable[Workflow.State | str] | None = None, interval: float = 1,
                                timeout: float | None = None) -> Workflow:
        """Return the workflow once its state is in ``states`` (default: completed or failed). Looks every
        ``interval`` seconds and whenever a job finishes. ``KeyError`` if there is no such workflow,
        ``TimeoutError`` after ``timeout`` seconds (None: wait forever), as Chancy 0.26."""
        from chancy_lite.app import _readable

        key, wanted = _workflow_id(workflow_id), _states(states, _DONE)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        store = store_for(chancy)
        listener = await chancy._run(chancy._listener)
        try:
            while True:
                state = await _run(chancy, store.workflow_state, key)
                if state is None:
                    raise KeyError(f"Workflow {workflow_id} not found")
                if state in wanted:
                    found = await cls.fetch_workflow(chancy, key)
                    if found is not None:
                        return found
                pause = interval if deadline is None else min(interval, deadline - loop.time())
                if pause <= 0:
                    raise TimeoutError(f"workflow {workflow_id} did not reach {sorted(wanted)} within {timeout} s")
                if listener is None:
                    await asyncio.sleep(pause)
                else:
                    await _readable(listener, pause)
                    listener.drain()
        finally:
            if listener is not None:
                listener.close()

    generate_dot = staticmethod(generate_dot)


class Sequence:
    """Jobs that run one after another: a workflow whose steps ``step_0``, ``step_1``, … each depend on the one
    before (Chancy 0.26). ``jobs``: ``Job`` objects or ``@job`` functions."""

    def __init__(self, name: str, jobs: Iterable[JobLike] | None = None) -> None:
        self.name = name
        self.jobs: list[JobLike] = list(jobs or [])

    def add(self, job: JobLike) -> Sequence:
        """Append a job; returns the sequence, for chaining."""
        self.jobs.append(job)
        return self

    def to_workflow(self) -> Workflow:
        """The workflow this sequence pushes. Not in Chancy."""
        return sequence_workflow(self.name, self.jobs)

    def sync_push(self, chancy: Chancy) -> uuid.UUID:
        """Push the sequence as a workflow (``WorkflowPlugin.push``); returns the workflow's id."""
        return WorkflowPlugin.sync_push(chancy, self.to_workflow())

    async def push(self, chancy: Chancy) -> uuid.UUID:
        """Push the sequence as a workflow (``WorkflowPlugin.push``); returns the workflow's id."""
        return await WorkflowPlugin.push(chancy, self.to_workflow())


# ------------------------------------------------------------------ helpers

_DONE = frozenset({Workflow.State.COMPLETED.value, Workflow.State.FAILED.value})


def _push(conn: db.Connection, chancy: Chancy, workflow: Workflow) -> uuid.UUID:
    if not isinstance(workflow, Workflow):
        raise TypeError(f"push takes a Workflow, got {workflow!r}")
    if not isinstance(workflow.name, str):
        raise ValueError(f"a workflow's name is text, got {workflow.name!r}")
    workflow.validate()
    workflow.id = uuid.UUID(_workflow_id(workflow.id))
    rows = [
        StepRow(step_id, dump_json(step.job.pack(), f"the job of step {step_id!r}"), json.dumps(step.dependencies),
                None if step.job_id is None else str(step.job_id))
        for step_id, step in workflow.steps.items()
    ]
    stored = store_for(chancy).push(conn, str(workflow.id), workflow.name, workflow.state.value, rows,
                                    now=chancy.now(), new_ids=chancy_uuids)
    _update(workflow, stored)
    return workflow.id


def _update(workflow: Workflow, stored: Stored) -> None:
    """Show on the pushed object what storing it did."""
    workflow.created_at = from_micros(stored.created_at)
    workflow.updated_at = from_micros(stored.updated_at)
    if stored.advanced is not None:
        workflow.state = stored.advanced.state
        for step_id, job_id in stored.advanced.pushed:
            step = workflow.steps[step_id]
            step.job_id, step.state = uuid.UUID(job_id), QueuedJob.State.PENDING


def _fetch(conn: db.Connection, chancy: Chancy, states: Iterable[Workflow.State | str] | None,
           ids: Iterable[IdLike] | None, limit: int, *, first: bool = False) -> Any:
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"limit must be an integer, got {limit!r}")
    wanted = None if states is None else sorted(_states(states, frozenset()))
    keys = None if ids is None else [_workflow_id(i) for i in ids]
    found = [_as_workflow(row) for row in store_for(chancy).fetch(conn, states=wanted, ids=keys,
                                                                   limit=max(0, min(limit, 2**62)))]
    if first:
        return found[0] if found else None
    return found


def _page(conn: db.Connection, chancy: Chancy, state: Workflow.State | str | None, before: IdLike | None,
          limit: int) -> list[Workflow]:
    wanted = None if state is None else next(iter(_states([state], frozenset())))
    ids = store_for(chancy).page_ids(conn, state=wanted, before=None if before is None else _workflow_id(before),
                                     limit=max(0, min(limit, 2**62)))
    by_id = {str(w.id): w for w in _fetch(conn, chancy, None, ids, len(ids))}
    return [by_id[i] for i in ids if i in by_id]


def _as_workflow(row: FetchedWorkflow) -> Workflow:
    steps = {
        step.step_id: WorkflowStep(
            job=Job.unpack(json.loads(step.job_data)), step_id=step.step_id,
            dependencies=[str(d) for d in json.loads(step.dependencies)],
            state=QueuedJob.State(step.state) if step.state else None,
            job_id=_job_uuid(step.job_id),
        )
        for step in row.steps
    }
    return Workflow(name=row.name, steps=steps, state=Workflow.State(row.state), id=uuid.UUID(row.id),
                    created_at=from_micros(row.created_at), updated_at=from_micros(row.updated_at))


def _job_uuid(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:  # a job id set by hand that is not a UUID: shown as it is
        return text


def _workflow_id(value: object) -> str:
    """A workflow id (a UUID or its text) as stored: lowercase hyphenated text. ``ValueError`` otherwise."""
    key = _workflow_key(value)
    if key is None:
        raise ValueError(f"a workflow id is a UUID (or its text), got {value!r}")
    return key


def _workflow_key(value: object) -> str | None:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return None
    return None


def _states(states: Iterable[Workflow.State | str] | None, default: frozenset[str]) -> frozenset[str]:
    """State values; ``ValueError`` for one that is not a workflow state."""
    if states is None:
        return default
    if isinstance(states, str | Workflow.State):
        states = [states]
    return frozenset(Workflow.State(s.value if isinstance(s, Workflow.State) else s).value for s in states)


def _listed(values: Iterable[Any] | None) -> list[Any] | None:
    return None if values is None else list(values)


def _check_rule(tree: tuple[Any, ...]) -> None:
    """``ValueError`` for a pruning rule on anything but ``Age()``."""
    if tree[0] in ("and", "or"):
        _check_rule(tree[1])
        _check_rule(tree[2])
    elif tree[1] != "age" or tree[2] in ("contains", "ilike"):
        raise ValueError("a workflow pruning rule compares WorkflowPlugin.Rules.Age() (seconds since the workflow "
                         f"was created) with a number, such as WorkflowPlugin.Rules.Age() > 86400; got {tree!r}")


def _hook_store(cursor: Any, worker: Worker | None) -> WorkflowStore:
    """The workflow store of the transaction the hook runs in (see ``db.Connection.store``)."""
    core = getattr(cursor, "store", None)
    if core is None and worker is not None:
        core = worker.chancy.store
    if core is None:
        raise RuntimeError("on_jobs_updated_in_transaction got a connection that chancy_lite did not open")
    return _store_of(core)


_stores: weakref.WeakKeyDictionary[Any, WorkflowStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def _store_of(core: Any) -> WorkflowStore:
    with _stores_lock:
        store = _stores.get(core)
        if store is None:
            store = _stores[core] = WorkflowStore(core)
        return store


def store_for(chancy: Chancy) -> WorkflowStore:
    """The workflow store of an app (one per app's core store, on its prefix)."""
    return _store_of(chancy.store)


def _call(chancy: Chancy, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with _explained(chancy):
        return chancy.sync_run_store(fn, *args, **kwargs)


async def _run(chancy: Chancy, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with _explained(chancy):
        return await chancy.run_store(fn, *args, **kwargs)


def _explained(chancy: Chancy) -> contextlib.AbstractContextManager[None]:
    """A missing workflow table is explained: the app that migrated the file had no WorkflowPlugin."""
    return missing_tables_explained(
        chancy, ["workflows", "workflow_steps"], "migrate it with an app that has the WorkflowPlugin (a default "
        "plugin, so any Chancy(path) without no_default_plugins=True): `await chancy.migrate()`, or "
        "`chancy-lite --db PATH migrate`")


@contextlib.contextmanager
def _waiting(chancy: Chancy) -> Iterator[Any]:
    """The app's wake-up listener for job completions while waiting (None where there is none)."""
    listener = chancy._listener()
    try:
        yield listener
    finally:
        if listener is not None:
            listener.close()

"""``WorkflowStore``: the only code that executes the WorkflowPlugin's SQL (``chancy_lite.plugins.workflow.sql``).

As :mod:`chancy_lite.store`: each method takes an open connection and, where time matters, ``now`` (integer
microseconds since the epoch); writes run in ``with conn:`` (``BEGIN IMMEDIATE``, or a savepoint inside a caller's
transaction). Step jobs are pushed through the core store's ``insert_jobs`` in the same transaction as the step
rows that name them, so a step is pushed once (SQLite has one writer at a time, and the step's ``job_id`` is set
in the transaction that pushes it) and idle workers are woken when it commits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from chancy_lite.db import Connection
from chancy_lite.job import Job
from chancy_lite.plugins.workflow import sql
from chancy_lite.plugins.workflow.model import Plan, StepView, Workflow, plan
from chancy_lite.store import Statements, Store
from chancy_lite.store import fetch_all as _fetch

log = logging.getLogger(__name__)

NewIds = Callable[[int], list[str]]  # n new time-ordered job ids (chancy_lite.utils.chancy_uuids)


class StepRow(NamedTuple):
    """The parameters of ``UPSERT_STEP`` (less ``workflow_id`` and ``now``)."""

    step_id: str
    job_data: str  # the packed Job, as JSON text
    dependencies: str  # JSON list of step ids
    job_id: str | None


class Stored(NamedTuple):
    """A workflow as ``push`` stored it: when it was created and last updated (µs), whether it existed, and what
    scheduling it did at once."""

    created_at: int
    updated_at: int
    existed: bool
    advanced: Advanced | None


class Advanced(NamedTuple):
    """What one pass of the scheduling rule changed in a workflow."""

    workflow_id: str
    name: str
    previous: Workflow.State
    state: Workflow.State
    pushed: list[tuple[str, str]]  # (step id, job id) of the steps pushed


class FetchedStep(NamedTuple):
    step_id: str
    job_data: str
    dependencies: str
    job_id: str | None
    state: str | None


class FetchedWorkflow(NamedTuple):
    id: str
    name: str
    state: str
    created_at: int
    updated_at: int
    steps: list[FetchedStep]


class _Loaded(NamedTuple):
    """A workflow as ``STEP_VIEWS`` read it."""

    name: str
    state: Workflow.State
    steps: list[StepView]
    jobs: dict[str, str]  # step id -> packed job (JSON text)


class WorkflowStore:
    """Typed access to one prefix's workflow tables; ``core`` is the app's ``Store`` (for pushing jobs)."""

    def __init__(self, core: Store) -> None:
        self.core = core
        self.prefix = core.prefix
        self.q = Statements(core.prefix, sql)

    # ------------------------------------------------------------------ push

    def push(self, conn: Connection, workflow_id: str, name: str, state: str, steps: Sequence[StepRow], *,
             now: int, new_ids: NewIds) -> Stored:
        """Store a (validated) workflow and its steps, replacing a stored one with the same id, then apply the
        scheduling rule to it, all in one transaction: the steps without dependencies are pushed with it.
        Announces ``workflow.created`` (or ``workflow.updated``) ``{"id", "name"}`` to the workers after the
        commit."""
        with conn:
            existed = bool(_fetch(conn, self.q.WORKFLOW_EXISTS, (workflow_id,)))
            [(created_at, updated_at)] = _fetch(
                conn, self.q.UPSERT_WORKFLOW, {"id": workflow_id, "name": name, "state": state, "now": now}
            )
            conn.executemany(self.q.UPSERT_STEP, [
                {"workflow_id": workflow_id, "now": now, **step._asdict()} for step in steps
            ])
            done = self.advance(conn, [workflow_id], now=now, new_ids=new_ids, quiet=True)
            event = "workflow.updated" if existed else "workflow.created"
            self.core.notify(conn, [(event, {"id": workflow_id, "name": name})])
        return Stored(created_at, updated_at, existed, done[0] if done else None)

    # --------------------------------------------------------------- advance

    def advance(self, conn: Connection, workflow_ids: Iterable[str], *, now: int, new_ids: NewIds,
                quiet: bool = False) -> list[Advanced]:
        """Apply the scheduling rule (``model.plan``) to these workflows in one transaction (a savepoint inside
        the caller's): record the outcomes of finished steps, push each step whose dependencies all succeeded and
        which has no job yet, and move the workflow's state. Returns what changed, per workflow.

        A workflow whose stored data cannot be used (a step's job edited into something that is not a job) is
        logged and left as it is; the others advance. Unknown ids are ignored. ``quiet`` sends no
        ``workflow.updated`` events (the caller sends its own).
        """
        ids = sorted(set(workflow_ids))
        changed: list[Advanced] = []
        if not ids:
            return changed
        with conn:
            for workflow_id, loaded in self._load(conn, ids).items():
                steps_plan = plan(loaded.state, loaded.steps)
                if not steps_plan.changes(loaded.state):
                    continue
                try:
                    with conn:  # a savepoint: a workflow that cannot advance leaves no half-written change
                        pushed = self._apply(conn, workflow_id, loaded, steps_plan, now=now, new_ids=new_ids)
                except (ValueError, TypeError, KeyError) as exc:
                    log.error("workflow %s (%r) cannot advance: a stored step cannot be pushed (%s: %s)",
                              workflow_id, loaded.name, type(exc).__name__, exc)
                    continue
                changed.append(Advanced(workflow_id, loaded.name, loaded.state, steps_plan.state, pushed))
            if changed and not quiet:
                self.core.notify(conn, [("workflow.updated", {"id": a.workflow_id, "name": a.name}) for a in changed])
        return changed

    def _load(self, conn: Connection, ids: Sequence[str]) -> dict[str, _Loaded]:
        loaded: dict[str, _Loaded] = {}
        for (workflow_id, name, state, step_id, dependencies, job_id, job_exists, job_state, recorded,
             job_data) in _fetch(conn, self.q.STEP_VIEWS, (json.dumps(list(ids)),)):
            entry = loaded.get(workflow_id)
            if entry is None:
                entry = loaded[workflow_id] = _Loaded(name, Workflow.State(state), [], {})
            if step_id is not None:
                entry.steps.append(StepView(step_id, _dependencies(dependencies), job_id, bool(job_exists),
                                            job_state, recorded))
                entry.jobs[step_id] = job_data
        return loaded

    def _apply(self, conn: Connection, workflow_id: str, loaded: _Loaded, steps_plan: Plan, *, now: int,
               new_ids: NewIds) -> list[tuple[str, str]]:
        """Write a plan; returns the (step id, job id) of the steps pushed."""
        key = {"workflow_id": workflow_id, "now": now}
        for step_id, state in steps_plan.record:
            conn.execute(self.q.RECORD_STEP_STATE, {**key, "step_id": step_id, "state": state})
        for step_id in steps_plan.lost:
            log.warning("workflow %s (%r): the job of step %r is gone before it finished (purged?); the step will "
                        "be pushed again", workflow_id, loaded.name, step_id)
            conn.execute(self.q.SET_STEP_JOB, {**key, "step_id": step_id, "job_id": None})
        pushed: list[tuple[str, str]] = []
        if steps_plan.push:
            jobs = [_step_job(loaded.jobs[step_id], workflow_id) for step_id in steps_plan.push]
            job_ids = self.core.insert_jobs(conn, jobs, now, new_ids)
            for step_id, job_id in zip(steps_plan.push, job_ids, strict=True):
                conn.execute(self.q.SET_STEP_JOB, {**key, "step_id": step_id, "job_id": job_id})
                pushed.append((step_id, job_id))
        conn.execute(self.q.SET_WORKFLOW_STATE, {"id": workflow_id, "state": steps_plan.state.value, "now": now,
                                                 "previous": loaded.state.value})
        return pushed

    # ------------------------------------------------------------ the poll

    def last_active_id(self, conn: Connection) -> str | None:
        """The newest pending or running workflow's id (None if there is none)."""
        rows = _fetch(conn, self.q.LAST_ACTIVE_ID)
        return rows[0][0] if rows else None

    def active_ids(self, conn: Connection, *, after: str, until: str, limit: int) -> list[str]:
        """Up to ``limit`` pending or running workflow ids after ``after`` ("": from the first) up to ``until``,
        in id order."""
        rows = _fetch(conn, self.q.ACTIVE_IDS, {"after": after, "until": until, "limit": limit})
        return [row[0] for row in rows]

    def stale(self, conn: Connection, workflow_ids: Sequence[str]) -> list[str]:
        """Of these workflows, those the scheduling rule would change now (read without a write lock, so the
        poll takes the lock only when there is something to do)."""
        return [workflow_id for workflow_id, loaded in self._load(conn, workflow_ids).items()
                if plan(loaded.state, loaded.steps).changes(loaded.state)]

    # --------------------------------------------------------------- reading

    def fetch(self, conn: Connection, *, states: Sequence[str] | None, ids: Sequence[str] | None,
              limit: int) -> list[FetchedWorkflow]:
        """Up to ``limit`` workflows in id order, filtered by state and id when given, with their steps in step id
        order (one statement: one consistent snapshot)."""
        params = {"states": None if states is None else json.dumps(list(states)),
                  "ids": None if ids is None else json.dumps(list(ids)), "limit": limit}
        found: dict[str, FetchedWorkflow] = {}
        for (workflow_id, name, state, created_at, updated_at, step_id, job_data, dependencies, job_id,
             step_state) in _fetch(conn, self.q.FETCH_WORKFLOWS if ids is None else self.q.FETCH_WORKFLOWS_BY_ID,
                                   params):
            entry = found.get(workflow_id)
            if entry is None:
                entry = found[workflow_id] = FetchedWorkflow(workflow_id, name, state, created_at, updated_at, [])
            if step_id is not None:
                entry.steps.append(FetchedStep(step_id, job_data, dependencies, job_id, step_state))
        return list(found.values())

    def page_ids(self, conn: Connection, *, state: str | None, before: str | None, limit: int) -> list[str]:
        """Up to ``limit`` workflow ids, newest first, below ``before`` (keyset paging), in ``state`` if given."""
        params = {"state": state, "before": "~" if before is None else before, "limit": limit}
        statement = self.q.PAGE_WORKFLOW_IDS if state is None else self.q.PAGE_WORKFLOW_IDS_IN_STATE
        return [row[0] for row in _fetch(conn, statement, params)]

    def workflow_state(self, conn: Connection, workflow_id: str) -> str | None:
        rows = _fetch(conn, self.q.WORKFLOW_STATE, (workflow_id,))
        return rows[0][0] if rows else None

    # --------------------------------------------------------------- pruning

    def prune(self, conn: Connection, rule: tuple[Any, ...], *, now: int, limit: int) -> int:
        """Delete up to ``limit`` finished workflows (and their steps) matching a pruning rule; returns how many."""
        where, params = _compile_rule(rule, now)
        with conn:
            conn.execute(self.q.PRUNE_WORKFLOWS.format(rule=where), [*params, limit])
            return conn.changes()


def _dependencies(text: str) -> list[str]:
    value = json.loads(text)
    return [str(d) for d in value] if isinstance(value, list) else []


def _step_job(job_data: str, workflow_id: str) -> Job:
    """The job to push for a step: its stored job, with ``meta["workflow_id"]`` (as Chancy)."""
    job = Job.unpack(json.loads(job_data))
    return dataclasses.replace(job, meta={**job.meta, "workflow_id": workflow_id})


def _compile_rule(rule: tuple[Any, ...], now: int) -> tuple[str, list[Any]]:
    """A pruning rule (``WorkflowPlugin.Rules``: ``Age()`` only) as a WHERE fragment and its parameters."""
    kind = rule[0]
    if kind in ("and", "or"):
        left, left_params = _compile_rule(rule[1], now)
        right, right_params = _compile_rule(rule[2], now)
        return f"({left}) {kind.upper()} ({right})", [*left_params, *right_params]
    _, field, op, value = rule
    if field != "age" or op not in sql.PRUNE_OPERATORS:
        raise ValueError(f"a workflow pruning rule compares WorkflowPlugin.Rules.Age() with a number, got {rule!r}")
    micros = int(float(value) * 1_000_000)
    text = f"{sql.PRUNE_AGE} {sql.PRUNE_OPERATORS[op]} ?"
    if op in (">", ">="):
        finished = sql.PRUNE_FINISHED_BEFORE if op == ">" else sql.PRUNE_FINISHED_BY
        return f"{finished} AND {text}", [now - micros, now, micros]
    return text, [now, micros]

"""Workflows as data: ``Workflow``, ``WorkflowStep``, ``Sequence``'s steps, validation, Graphviz text, and the rule
that decides what a stored workflow does next (``plan``). Nothing here does I/O.

The model is Chancy 0.26's (``chancy/plugins/workflow/__init__.py``): a workflow is a set of steps keyed by step id,
each holding a ``Job`` and the ids of the steps it depends on; its state is one of pending, running, completed,
failed. A step's ``state`` is the state of its job (None before its job is pushed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import io
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, TextIO

from chancy_lite.job import Job, QueuedJob, as_job
from chancy_lite.utils import chancy_uuid

JobLike = Job | Callable[..., Any]  # a Job, or a function decorated with @job

_SUCCEEDED = QueuedJob.State.SUCCEEDED.value
_FAILED = QueuedJob.State.FAILED.value
_FINISHED = frozenset({_SUCCEEDED, _FAILED})


class EmptyWorkflowError(ValueError):
    """The workflow has no steps (Chancy 0.26)."""


class InvalidDependencyError(ValueError):
    """A step depends on a step id the workflow does not have (Chancy 0.26)."""


class CircularDependencyError(ValueError):
    """The steps' dependencies form a cycle; the message names it, such as ``a -> b -> a`` (Chancy 0.26)."""


@dataclasses.dataclass
class WorkflowStep:
    """One step: ``job`` runs once every step in ``dependencies`` (step ids) has succeeded.

    ``state`` is the state of the step's job as last fetched (None before its job is pushed), ``job_id`` its id.
    """

    job: Job
    step_id: str
    dependencies: list[str] = dataclasses.field(default_factory=list)
    state: QueuedJob.State | None = QueuedJob.State.PENDING
    job_id: uuid.UUID | None = None


@dataclasses.dataclass
class Workflow:
    """Jobs with dependencies between them (a directed acyclic graph of steps), as Chancy 0.26.

    Build it with ``add`` / ``add_group`` (or ``+=`` a ``WorkflowStep``), then push it with
    ``WorkflowPlugin.push(chancy, workflow)``. Each step's job is pushed once all its dependencies succeeded; steps
    without dependencies start at once, in parallel. ``id`` defaults to a new time-ordered ``uuid.UUID``.
    """

    class State(enum.Enum):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    name: str
    steps: dict[str, WorkflowStep] = dataclasses.field(default_factory=dict)
    state: Workflow.State = State.PENDING
    id: uuid.UUID = dataclasses.field(default_factory=chancy_uuid)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    def add(self, step_id: str, job: JobLike, dependencies: list[str] | None = None) -> Workflow:
        """Add (or replace) the step ``step_id`` running ``job`` (a ``Job`` or an ``@job`` function) after the steps
        named in ``dependencies``; returns the workflow, for chaining."""
        self.steps[step_id] = WorkflowStep(job=as_job(job), step_id=step_id, dependencies=list(dependencies or []))
        return self

    def add_group(self, jobs: Iterable[tuple[str, JobLike]], dependencies: list[str] | None = None) -> Workflow:
        """Add several ``(step_id, job)`` steps that all depend on ``dependencies``; returns the workflow."""
        for step_id, job in jobs:
            self.add(step_id, job, dependencies)
        return self

    def __repr__(self) -> str:
        return f"<Workflow({self.name!r}, {self.state!r})>"

    def __len__(self) -> int:
        return len(self.steps)

    def __iadd__(self, other: WorkflowStep) -> Workflow:
        self.steps[other.step_id] = other
        return self

    def __iter__(self) -> Iterator[tuple[str, WorkflowStep]]:
        """``(step_id, step)`` pairs, as Chancy."""
        return iter(self.steps.items())

    def __getitem__(self, key: str) -> WorkflowStep:
        return self.steps[key]

    def __delitem__(self, key: str) -> None:
        del self.steps[key]

    @property
    def is_complete(self) -> bool:
        """Completed or failed: nothing more will run."""
        return self.state in (Workflow.State.COMPLETED, Workflow.State.FAILED)

    @property
    def is_running(self) -> bool:
        return self.state is Workflow.State.RUNNING

    @property
    def steps_by_state(self) -> dict[QueuedJob.State | None, list[WorkflowStep]]:
        """The steps grouped by their state; steps still waiting for their dependencies are under None."""
        grouped: dict[QueuedJob.State | None, list[WorkflowStep]] = {}
        for step in self.steps.values():
            grouped.setdefault(step.state, []).append(step)
        return grouped

    def validate(self) -> None:
        """Check the graph before it is stored (``push`` calls this), as Chancy 0.26.

        Raises ``EmptyWorkflowError`` without steps, ``InvalidDependencyError`` for a dependency on a step id the
        workflow does not have, ``CircularDependencyError`` for a cycle (the message names its path, such as
        ``Circular dependency detected: a -> b -> a``), ``InvalidJobError`` for a step whose job is not a job, and
        ``ValueError`` for a step id or dependency that is not non-empty text.
        """
        if not self.steps:
            raise EmptyWorkflowError(f"workflow {self.name!r}: a workflow must contain at least one step")
        for step_id, step in self.steps.items():
            if not isinstance(step_id, str) or not step_id:
                raise ValueError(f"workflow {self.name!r}: step ids are non-empty text, got {step_id!r}")
            step.job = as_job(step.job)
            if isinstance(step.dependencies, str) or not all(isinstance(d, str) for d in step.dependencies):
                raise ValueError(f"step {step_id!r}: dependencies are a list of step ids, got {step.dependencies!r}")
            for dependency in step.dependencies:
                if dependency not in self.steps:
                    raise InvalidDependencyError(f"Step '{step_id}' depends on non-existent step '{dependency}'")
        cycle = find_cycle({step_id: step.dependencies for step_id, step in self.steps.items()})
        if cycle is not None:
            raise CircularDependencyError(f"Circular dependency detected: {' -> '.join(cycle)}")


def find_cycle(graph: dict[str, Sequence[str]]) -> list[str] | None:
    """A cycle of ``graph`` (step id -> the ids it depends on, all present), as a path that ends where it starts,
    or None. An iterative depth-first search, so a sequence of any length is fine (Chancy 0.26 recurses)."""
    on_path: dict[str, int] = {}  # step id -> its index in path
    done: set[str] = set()
    for root in graph:
        if root in done:
            continue
        path: list[str] = [root]
        on_path[root] = 0
        pending: list[Iterator[str]] = [iter(graph[root])]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                pending.pop()
            elif following in on_path:
                return [*path[on_path[following]:], following]
            elif following not in done:
                on_path[following] = len(path)
                path.append(following)
                pending.append(iter(graph[following]))
    return None


def sequence_workflow(name: str, jobs: Iterable[JobLike]) -> Workflow:
    """The workflow of a ``Sequence``: steps ``step_0``, ``step_1``, … each depending on the one before (Chancy)."""
    workflow = Workflow(name)
    for index, job in enumerate(jobs):
        workflow.add(f"step_{index}", job, [f"step_{index - 1}"] if index else [])
    return workflow


# ------------------------------------------------------------------- Graphviz

_COLOURS = {
    QueuedJob.State.PENDING: "lightblue",
    QueuedJob.State.RUNNING: "yellow",
    QueuedJob.State.RETRYING: "orange",
    QueuedJob.State.SUCCEEDED: "lightgreen",
    QueuedJob.State.FAILED: "lightpink",
}


def _quoted(text: str) -> str:
    """A DOT string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def generate_dot(workflow: Workflow, output: TextIO | None = None) -> str:
    """The workflow as a Graphviz ``digraph`` (DOT text): one box per step, labelled with its id and state and
    coloured by state (lightblue pending, yellow running, orange retrying, lightgreen succeeded, lightpink failed,
    lightgray not pushed yet), an edge from each dependency to its dependant, and the workflow's name and state as
    the graph's label. Written to ``output`` too when given (Chancy 0.26 takes a file and returns nothing).
    Render it with ``dot -Tsvg``."""
    out = io.StringIO()
    out.write(f"digraph {_quoted(workflow.name)} {{\n")
    out.write("  rankdir=TB;\n")
    out.write('  node [shape=box, style="rounded,filled", fontname="Arial"];\n')
    for step_id, step in workflow.steps.items():
        state = step.state.value if step.state is not None else "waiting"
        colour = _COLOURS.get(step.state, "lightgray") if step.state is not None else "lightgray"
        label = _quoted(step_id + "\n(" + state + ")")
        out.write(f"  {_quoted(step_id)} [label={label}, fillcolor={colour}];\n")
    for step_id, step in workflow.steps.items():
        for dependency in step.dependencies:
            out.write(f"  {_quoted(dependency)} -> {_quoted(step_id)};\n")
    out.write('  labelloc="t";\n')
    label = _quoted(f"Workflow: {workflow.name}" + "\n" + f"State: {workflow.state.value}")
    out.write(f"  label={label};\n")
    out.write("}\n")
    text = out.getvalue()
    if output is not None:
        output.write(text)
    return text


# ------------------------------------------------------------------ the rule


class StepView(NamedTuple):
    """A stored step as the rule sees it."""

    step_id: str
    dependencies: list[str]
    job_id: str | None  # the id of the job pushed for it, None before
    job_exists: bool  # its job's row is there (False once purged or pruned)
    job_state: str | None  # that row's state
    recorded: str | None  # the finished state recorded on the step when its job finished (kept if the job goes)


class Plan(NamedTuple):
    """What a stored workflow does next: its new state, the finished states to record on steps, the steps whose
    job vanished before it finished (their job is forgotten, so they are pushed again once ready), and the steps
    to push now."""

    state: Workflow.State
    record: list[tuple[str, str]]
    lost: list[str]
    push: list[str]

    def changes(self, state: Workflow.State) -> bool:
        return self.state is not state or bool(self.record or self.lost or self.push)


def step_state(step: StepView) -> str | None:
    """The state a step counts as: its job's, or the recorded one once the job's row is gone."""
    if step.job_id is None:
        return None
    return step.job_state if step.job_exists else step.recorded


def plan(state: Workflow.State, steps: Sequence[StepView]) -> Plan:
    """Advance a workflow in state ``state`` (Chancy 0.26's rules, with the differences marked).

    * A terminal workflow (completed, failed) stays as it is.
    * Without steps it fails (0.26: an empty workflow stored before validation existed).
    * As soon as a step has failed, the workflow fails and nothing more is pushed. (0.26 would still push steps that
      became ready in the same pass.)
    * Otherwise every step that has no job and whose dependencies all succeeded is pushed; a retrying step has
      not finished, so its dependants wait.
    * The workflow is completed once every step succeeded (steps still waiting for their dependencies count:
      they have not succeeded), running once any step has a job.
    """
    if state in (Workflow.State.COMPLETED, Workflow.State.FAILED):
        return Plan(state, [], [], [])
    if not steps:
        return Plan(Workflow.State.FAILED, [], [], [])
    record = [(s.step_id, s.job_state) for s in steps
              if s.job_state is not None and s.job_state in _FINISHED and s.job_id is not None and s.job_exists
              and s.recorded != s.job_state]
    states = {s.step_id: step_state(s) for s in steps}
    if _FAILED in states.values():
        return Plan(Workflow.State.FAILED, record, [], [])
    lost = [s.step_id for s in steps if s.job_id is not None and not s.job_exists and s.recorded is None]
    queued = {s.step_id for s in steps if s.job_id is not None and s.step_id not in lost}
    push = [s.step_id for s in steps
            if s.step_id not in queued and all(states.get(d) == _SUCCEEDED for d in s.dependencies)]
    if all(value == _SUCCEEDED for value in states.values()):
        new = Workflow.State.COMPLETED
    elif queued or push:
        new = Workflow.State.RUNNING
    else:
        new = state
    return Plan(new, record, lost, push)

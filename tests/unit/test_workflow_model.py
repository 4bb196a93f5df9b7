"""Workflows as data: validation (Chancy 0.26's three errors), Graphviz text, Sequence, and the scheduling rule."""

from __future__ import annotations

import io
import uuid

import pytest

from chancy_lite import Job, QueuedJob, job
from chancy_lite.plugins.workflow import (
    CircularDependencyError,
    EmptyWorkflowError,
    InvalidDependencyError,
    Sequence,
    Workflow,
    WorkflowPlugin,
    WorkflowStep,
    generate_dot,
)
from chancy_lite.plugins.workflow.model import StepView, find_cycle, plan

State = Workflow.State
JobState = QueuedJob.State
NOOP = Job(func="tests.jobs.noop")


@job(queue="default")
def decorated() -> None:
    """A job defined with @job (only its import path matters here)."""


def diamond() -> Workflow:
    return Workflow("diamond").add("a", NOOP).add("b", NOOP, ["a"]).add("c", NOOP, ["a"]).add("d", NOOP, ["b", "c"])


def test_a_workflow_is_built_as_in_chancy() -> None:
    workflow = Workflow("w").add("setup", NOOP).add_group([("x", NOOP), ("y", decorated)], ["setup"])
    workflow += WorkflowStep(job=NOOP, step_id="z", dependencies=["x", "y"])
    assert isinstance(workflow.id, uuid.UUID) and workflow.state is State.PENDING
    assert len(workflow) == 4 and [step_id for step_id, _ in workflow] == ["setup", "x", "y", "z"]
    assert workflow["y"].job == decorated.job and workflow["y"].dependencies == ["setup"]
    assert not workflow.is_complete and not workflow.is_running
    del workflow["z"]
    assert "z" not in workflow.steps
    workflow.validate()


def test_an_empty_workflow_is_refused() -> None:
    with pytest.raises(EmptyWorkflowError, match="at least one step"):
        Workflow("empty").validate()
    assert issubclass(EmptyWorkflowError, ValueError)


def test_a_dependency_on_an_unknown_step_is_refused() -> None:
    workflow = Workflow("w").add("a", NOOP).add("b", NOOP, ["a", "nope"])
    with pytest.raises(InvalidDependencyError, match="Step 'b' depends on non-existent step 'nope'"):
        workflow.validate()
    assert issubclass(InvalidDependencyError, ValueError)


def test_a_cycle_is_refused_with_its_path_in_the_message() -> None:
    workflow = Workflow("w").add("start", NOOP).add("a", NOOP, ["start", "c"]).add("b", NOOP, ["a"]).add(
        "c", NOOP, ["b"])
    with pytest.raises(CircularDependencyError) as raised:
        workflow.validate()
    assert str(raised.value) == "Circular dependency detected: a -> c -> b -> a"
    assert issubclass(CircularDependencyError, ValueError)
    with pytest.raises(CircularDependencyError, match="Circular dependency detected: x -> x"):
        Workflow("self").add("x", NOOP, ["x"]).validate()


def test_find_cycle_walks_deep_graphs_without_recursion() -> None:
    chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(20_000)}  # Chancy's recursive DFS would overflow
    assert find_cycle(chain) is None
    chain["s0"] = ["s19999"]
    cycle = find_cycle(chain)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == 20_001
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None  # a diamond shares a node, no cycle


def test_bad_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="list of step ids"):
        Workflow("w", steps={"a": WorkflowStep(job=NOOP, step_id="a", dependencies="b")}).validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty text"):
        Workflow("w").add("", NOOP).validate()


def test_a_sequence_chains_its_steps() -> None:
    sequence = Sequence("seq", [NOOP]).add(decorated).add(NOOP)
    workflow = sequence.to_workflow()
    assert workflow.name == "seq"
    assert [(step_id, step.dependencies) for step_id, step in workflow] == [
        ("step_0", []), ("step_1", ["step_0"]), ("step_2", ["step_1"])]
    workflow.validate()


def test_generate_dot_draws_the_graph_with_states() -> None:
    workflow = diamond()
    workflow.state = State.RUNNING
    workflow["a"].state = JobState.SUCCEEDED
    workflow["b"].state = JobState.FAILED
    workflow["c"].state = JobState.RUNNING
    workflow["d"].state = None
    out = io.StringIO()
    text = WorkflowPlugin.generate_dot(workflow, out)
    assert out.getvalue() == text == generate_dot(workflow)
    assert text.splitlines() == [
        'digraph "diamond" {',
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Arial"];',
        '  "a" [label="a\\n(succeeded)", fillcolor=lightgreen];',
        '  "b" [label="b\\n(failed)", fillcolor=lightpink];',
        '  "c" [label="c\\n(running)", fillcolor=yellow];',
        '  "d" [label="d\\n(waiting)", fillcolor=lightgray];',
        '  "a" -> "b";',
        '  "a" -> "c";',
        '  "b" -> "d";',
        '  "c" -> "d";',
        '  labelloc="t";',
        '  label="Workflow: diamond\\nState: running";',
        "}",
    ]


def test_generate_dot_quotes_names() -> None:
    text = generate_dot(Workflow('say "hi"').add('a "b"', NOOP))
    assert 'digraph "say \\"hi\\"" {' in text and '"a \\"b\\"" [label="a \\"b\\"\\n(pending)"' in text


def test_steps_by_state_groups_waiting_steps_under_none() -> None:
    workflow = diamond()
    workflow["a"].state = JobState.SUCCEEDED
    for step_id in "bcd":
        workflow[step_id].state = None
    grouped = workflow.steps_by_state
    assert [s.step_id for s in grouped[JobState.SUCCEEDED]] == ["a"]
    assert [s.step_id for s in grouped[None]] == ["b", "c", "d"]


# --------------------------------------------------------- the scheduling rule


def view(step_id: str, deps: list[str] = (), job: str | None = None, *, exists: bool = True,  # type: ignore[assignment]
         state: str | None = None, recorded: str | None = None) -> StepView:
    return StepView(step_id, list(deps), job, exists if job else False, state if job else None, recorded)


def test_plan_pushes_the_steps_whose_dependencies_succeeded() -> None:
    steps = [view("a"), view("b", ["a"]), view("c", ["a"]), view("d", ["b", "c"])]
    assert plan(State.PENDING, steps) == (State.RUNNING, [], [], ["a"])
    steps = [view("a", job="1", state="succeeded"), view("b", ["a"]), view("c", ["a"]), view("d", ["b", "c"])]
    assert plan(State.RUNNING, steps) == (State.RUNNING, [("a", "succeeded")], [], ["b", "c"])
    steps = [view("a", job="1", state="succeeded", recorded="succeeded"), view("b", ["a"], "2", state="succeeded"),
             view("c", ["a"], "3", state="retrying"), view("d", ["b", "c"])]
    assert plan(State.RUNNING, steps) == (State.RUNNING, [("b", "succeeded")], [], [])  # c retries: d waits
    done = [view(s, job=s, state="succeeded", recorded="succeeded") for s in "ab"]
    assert plan(State.RUNNING, done) == (State.COMPLETED, [], [], [])


def test_plan_fails_at_the_first_failed_step_and_pushes_nothing_more() -> None:
    # b failed while c succeeded in the same write: 0.26 would still push d; here d never runs.
    steps = [view("a", job="1", state="succeeded", recorded="succeeded"), view("b", ["a"], "2", state="failed"),
             view("c", [], "3", state="succeeded"), view("d", ["c"])]
    assert plan(State.RUNNING, steps) == (State.FAILED, [("b", "failed"), ("c", "succeeded")], [], [])


def test_plan_leaves_finished_workflows_and_fails_empty_ones() -> None:
    steps = [view("a")]
    assert plan(State.COMPLETED, steps) == (State.COMPLETED, [], [], [])
    assert plan(State.FAILED, steps) == (State.FAILED, [], [], [])
    assert plan(State.PENDING, []) == (State.FAILED, [], [], [])
    assert plan(State.RUNNING, []) == (State.FAILED, [], [], [])


def test_plan_keeps_recorded_outcomes_of_pruned_jobs_and_repushes_lost_ones() -> None:
    pruned = view("a", job="1", exists=False, recorded="succeeded")  # finished, then pruned
    lost = view("b", ["a"], "2", exists=False)  # purged before it finished
    assert plan(State.RUNNING, [pruned, lost]) == (State.RUNNING, [], ["b"], ["b"])
    waiting = view("c", ["b"])
    assert plan(State.RUNNING, [pruned, view("b", ["a"], "2", state="succeeded", recorded="succeeded"), waiting]
                ).push == ["c"]
    failed_then_pruned = view("a", job="1", exists=False, recorded="failed")
    assert plan(State.RUNNING, [failed_then_pruned, view("b", ["a"])]).state is State.FAILED


def test_plan_reports_whether_anything_changes() -> None:
    steps = [view("a", job="1", state="running")]
    assert not plan(State.RUNNING, steps).changes(State.RUNNING)
    assert plan(State.PENDING, steps).changes(State.PENDING)  # pending -> running

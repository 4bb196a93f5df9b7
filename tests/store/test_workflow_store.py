"""Workflows on one real file: push validates before writing and stores the workflow with its first jobs in one
transaction (push_ex inside the caller's), fetching (ids, states, order, step states), re-pushing, the tables and
their indexes, and a file migrated without the plugin."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import apsw
import pytest

from chancy_lite import Chancy, Job, QueuedJob, job
from chancy_lite.errors import MigrationsNeededError
from chancy_lite.plugins.workflow import (
    CircularDependencyError,
    EmptyWorkflowError,
    InvalidDependencyError,
    Sequence,
    Workflow,
    WorkflowPlugin,
    store_for,
)
from chancy_lite.testing import Clock, drain
from tests.conftest import START

State = Workflow.State
NOOP = Job(func="tests.jobs.noop")


@job(queue="default", max_attempts=3)
def decorated() -> None:
    pass


@pytest.fixture
def app(db_path: str, clock: Clock) -> Iterator[Chancy]:
    with Chancy(db_path, clock=clock) as chancy:
        chancy.sync_migrate()
        yield chancy


def counts(app: Chancy) -> tuple[int, int, int]:
    """(workflows, steps, jobs) stored."""
    with app.connection() as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM chancy_{table}").fetchall()[0][0]  # type: ignore[return-value]
                     for table in ("workflows", "workflow_steps", "jobs"))


@pytest.mark.parametrize("bad, error", [
    (Workflow("empty"), EmptyWorkflowError),
    (Workflow("unknown").add("a", NOOP, ["b"]), InvalidDependencyError),
    (Workflow("cycle").add("a", NOOP, ["b"]).add("b", NOOP, ["a"]), CircularDependencyError),
])
def test_an_invalid_workflow_writes_nothing(app: Chancy, bad: Workflow, error: type[Exception]) -> None:
    with pytest.raises(error):
        WorkflowPlugin.sync_push(app, bad)
    with pytest.raises(error), app.transaction() as conn:
        WorkflowPlugin.sync_push_ex(conn, app, bad)
    with pytest.raises(error):
        asyncio.run(WorkflowPlugin.push(app, bad))
    assert counts(app) == (0, 0, 0)


def test_push_stores_the_workflow_with_its_first_jobs(app: Chancy) -> None:
    workflow = Workflow("w").add("a", NOOP).add("b", decorated).add("c", NOOP, ["a", "b"])
    workflow_id = WorkflowPlugin.sync_push(app, workflow)
    assert workflow_id == workflow.id and isinstance(workflow_id, uuid.UUID)
    assert workflow.state is State.RUNNING and workflow.created_at == START and workflow.updated_at == START
    pushed = {step_id: step.job_id for step_id, step in workflow if step.job_id is not None}
    assert set(pushed) == {"a", "b"}
    jobs = {j.func: j for j in app.sync_get_jobs(pushed.values())}
    assert jobs["tests.store.test_workflow_store.decorated"].max_attempts == 3  # the step's job, as given
    assert all(j.meta == {"workflow_id": str(workflow_id)} and j.created_at == START for j in jobs.values())

    stored = WorkflowPlugin.sync_fetch_workflow(app, str(workflow_id))  # its text finds it too
    assert stored is not None and stored.id == workflow_id and stored.name == "w" and stored.state is State.RUNNING
    assert list(stored.steps) == ["a", "b", "c"]
    assert {s: (stored[s].state, stored[s].job_id) for s in "abc"} == {
        "a": (QueuedJob.State.PENDING, pushed["a"]), "b": (QueuedJob.State.PENDING, pushed["b"]), "c": (None, None)}
    assert stored["c"].dependencies == ["a", "b"] and stored["b"].job == decorated.job


def test_push_ex_commits_or_rolls_back_with_the_callers_rows(app: Chancy) -> None:
    with app.transaction() as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with pytest.raises(RuntimeError), app.transaction() as conn:
        conn.execute("INSERT INTO orders VALUES (1)")
        WorkflowPlugin.sync_push_ex(conn, app, Workflow("rolled back").add("a", NOOP))
        raise RuntimeError("the caller's transaction fails")
    assert counts(app) == (0, 0, 0)

    async def commit() -> uuid.UUID:
        with app.transaction() as conn:
            conn.execute("INSERT INTO orders VALUES (2)")
            return await WorkflowPlugin.push_ex(conn, app, Workflow("kept").add("a", NOOP))

    workflow_id = asyncio.run(commit())
    assert counts(app) == (1, 1, 1)
    found = WorkflowPlugin.sync_fetch_workflow(app, workflow_id)
    assert found is not None and found.name == "kept"


def test_fetch_workflows_filters_orders_and_limits(app: Chancy, clock: Clock) -> None:
    ids = []
    for index in range(3):
        clock.advance(seconds=1)
        ids.append(WorkflowPlugin.sync_push(app, Workflow(f"w{index}").add("a", NOOP).add("b", NOOP, ["a"])))
    app.sync_cancel_job(WorkflowPlugin.sync_fetch_workflows(app, ids=[ids[1]])[0]["a"].job_id)
    app.plugins["chancy.workflow_plugin"].sync_sweep(app)  # fails w1
    assert [w.name for w in WorkflowPlugin.sync_fetch_workflows(app)] == ["w0", "w1", "w2"]  # oldest first
    assert [w.name for w in WorkflowPlugin.sync_fetch_workflows(app, limit=2)] == ["w0", "w1"]
    assert [w.name for w in WorkflowPlugin.sync_fetch_workflows(app, states=["running"])] == ["w0", "w2"]
    assert [w.name for w in WorkflowPlugin.sync_fetch_workflows(app, states=[State.FAILED])] == ["w1"]
    assert [w.name for w in WorkflowPlugin.sync_fetch_workflows(app, ids=[ids[2], str(ids[0])])] == ["w0", "w2"]
    assert WorkflowPlugin.sync_fetch_workflows(app, ids=[uuid.uuid4()]) == []
    assert asyncio.run(WorkflowPlugin.fetch_workflows(app, states=["failed"]))[0].id == ids[1]
    assert WorkflowPlugin.sync_fetch_workflow(app, uuid.uuid4()) is None
    with pytest.raises(ValueError, match="UUID"):
        WorkflowPlugin.sync_fetch_workflow(app, "not-an-id")
    with pytest.raises(ValueError):
        WorkflowPlugin.sync_fetch_workflows(app, states=["done"])


def test_wait_for_workflow(app: Chancy) -> None:
    with pytest.raises(KeyError):
        WorkflowPlugin.sync_wait_for_workflow(app, uuid.uuid4(), timeout=1)
    with pytest.raises(KeyError):
        asyncio.run(WorkflowPlugin.wait_for_workflow(app, uuid.uuid4(), timeout=1))
    workflow_id = Sequence("s", [NOOP, NOOP]).sync_push(app)
    with pytest.raises(TimeoutError):
        WorkflowPlugin.sync_wait_for_workflow(app, workflow_id, timeout=0.05, interval=0.01)
    with pytest.raises(TimeoutError):
        asyncio.run(WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=0.05, interval=0.01))
    running = WorkflowPlugin.sync_wait_for_workflow(app, workflow_id, states=[State.RUNNING], timeout=1)
    assert running.state is State.RUNNING
    drain(app)
    done = asyncio.run(WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=5))
    assert done.state is State.COMPLETED and list(done.steps) == ["step_0", "step_1"]


def test_pushing_a_stored_workflow_again_updates_it(app: Chancy) -> None:
    workflow = Workflow("w").add("a", NOOP).add("b", NOOP, ["a"])
    workflow_id = WorkflowPlugin.sync_push(app, workflow)
    stored = WorkflowPlugin.sync_fetch_workflow(app, workflow_id)
    assert stored is not None
    stored.name = "renamed"
    assert WorkflowPlugin.sync_push(app, stored) == workflow_id  # as 0.26: an upsert by id
    again = WorkflowPlugin.sync_fetch_workflow(app, workflow_id)
    assert again is not None and again.name == "renamed" and again["a"].job_id == workflow["a"].job_id
    assert counts(app) == (1, 2, 1)  # no second job for a
    stored.state = State.COMPLETED  # a finished workflow is left as it is
    WorkflowPlugin.sync_push(app, stored)
    drain(app)
    final = WorkflowPlugin.sync_fetch_workflow(app, workflow_id)
    assert final is not None and final.state is State.COMPLETED and final["b"].job_id is None


def test_a_workflow_id_given_as_text_is_stored_as_a_uuid(app: Chancy) -> None:
    text = str(uuid.uuid4())
    workflow = Workflow("w", id=text).add("a", NOOP)  # type: ignore[arg-type]
    assert WorkflowPlugin.sync_push(app, workflow) == uuid.UUID(text)
    with pytest.raises(ValueError, match="UUID"):
        WorkflowPlugin.sync_push(app, Workflow("w", id="nope").add("a", NOOP))  # type: ignore[arg-type]


def test_kwargs_that_are_not_json_are_refused_before_anything_is_written(app: Chancy) -> None:
    with pytest.raises(TypeError, match="JSON"):
        WorkflowPlugin.sync_push(app, Workflow("w").add("a", NOOP.with_kwargs(when=object())))
    assert counts(app) == (0, 0, 0)


def test_a_file_without_the_workflow_tables_says_how_to_create_them(db_path: str) -> None:
    with Chancy(db_path, no_default_plugins=True) as plain:
        plain.sync_migrate()
        with pytest.raises(MigrationsNeededError, match="no chancy_workflows table"):
            WorkflowPlugin.sync_push(plain, Workflow("w").add("a", NOOP))
        with pytest.raises(MigrationsNeededError, match="no chancy_workflows table"):
            WorkflowPlugin.sync_fetch_workflows(plain)
    with Chancy(db_path) as with_plugin:
        assert with_plugin.sync_migrate() == ["workflow 0 -> 1"]
        WorkflowPlugin.sync_push(with_plugin, Workflow("w").add("a", NOOP))


def test_tables_have_chancys_columns(app: Chancy, db_path: str) -> None:
    conn = apsw.Connection(db_path)
    try:
        columns = {table: [row[1] for row in conn.execute(f"PRAGMA table_info(chancy_{table})")]
                   for table in ("workflows", "workflow_steps")}
    finally:
        conn.close()
    assert columns["workflows"] == ["id", "name", "state", "created_at", "updated_at"]
    assert columns["workflow_steps"] == ["id", "workflow_id", "step_id", "job_data", "dependencies", "job_id",
                                         "state", "created_at", "updated_at"]  # + state: the recorded outcome


@pytest.mark.parametrize("statement, params, index", [
    ("ACTIVE_IDS", {"after": "", "until": "~", "limit": 10}, "chancy_workflows_active_id_idx"),
    ("LAST_ACTIVE_ID", None, "chancy_workflows_active_id_idx"),
    ("STEP_VIEWS", ('["x"]',), "chancy_workflows_steps_unique_idx"),
    ("FETCH_WORKFLOWS_BY_ID", {"ids": '["x"]', "states": None, "limit": 1}, "chancy_workflows USING PRIMARY KEY"),
])
def test_the_scheduler_reads_through_indexes(app: Chancy, statement: str, params: object, index: str) -> None:
    text = store_for(app).q.__getattribute__(statement)
    with app.connection() as conn:
        plan = " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + text, params))
    assert index in plan, plan
    assert "SCAN chancy_workflow_steps" not in plan and "SCAN s " not in plan, plan

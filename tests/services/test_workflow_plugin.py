"""The WorkflowPlugin's state machine on the real claim path (``testing.drain`` runs a child's loop here, hooks
included), time injected: a diamond, a failing middle step, a retrying step, pruned and purged step jobs, the
leader's repair poll (sweeps in id order, leader-gated), pruning through the Pruner, and exactly-once pushes
when several processes finish steps at once."""

from __future__ import annotations

import asyncio
import pickle
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.hub import Event
from chancy_lite.plugins.leadership import ImmediateLeadership, Leadership
from chancy_lite.plugins.pruner import Pruner
from chancy_lite.plugins.workflow import Sequence, Workflow, WorkflowPlugin
from chancy_lite.testing import Clock, drain
from chancy_lite.worker import Worker
from tests.worker_support import run_worker, until

State = Workflow.State
JobState = QueuedJob.State
NOOP = Job(func="tests.jobs.noop")


def step(name: str, path: Path, **fields: object) -> Job:
    """A step that appends its name to ``path`` when it runs."""
    return Job(func="tests.jobs.record", kwargs={"path": str(path), "value": name}, **fields)  # type: ignore[arg-type]


def ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def diamond(path: Path, *, b: Job | None = None) -> Workflow:
    return (Workflow("diamond").add("a", step("a", path)).add("b", b or step("b", path), ["a"])
            .add("c", step("c", path), ["a"]).add("d", step("d", path), ["b", "c"]))


@pytest.fixture
def plugin() -> WorkflowPlugin:
    return WorkflowPlugin(polling_interval=3600)


@pytest.fixture
def app(db_path: str, clock: Clock, plugin: WorkflowPlugin) -> Iterator[Chancy]:
    with Chancy(db_path, clock=clock, plugins=[Leadership(), plugin], no_default_plugins=True) as chancy:
        chancy.sync_migrate()
        yield chancy


def fetch(app: Chancy, workflow_id: uuid.UUID) -> Workflow:
    found = WorkflowPlugin.sync_fetch_workflow(app, workflow_id)
    assert found is not None
    return found


def states(workflow: Workflow) -> dict[str, str | None]:
    return {step_id: step.state.value if step.state else None for step_id, step in workflow}


def test_a_diamond_runs_each_step_once_after_its_dependencies(app: Chancy, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    workflow = diamond(out)
    workflow_id = WorkflowPlugin.sync_push(app, workflow)
    assert workflow.state is State.RUNNING and workflow["a"].job_id is not None  # a is pushed with the workflow
    assert [workflow[s].job_id for s in "bcd"] == [None, None, None]

    [a] = drain(app, max_jobs=1)
    assert a.meta == {"workflow_id": str(workflow_id)}
    after_a = fetch(app, workflow_id)
    assert after_a.state is State.RUNNING
    assert states(after_a) == {"a": "succeeded", "b": "pending", "c": "pending", "d": None}  # pushed with a's write

    drain(app)
    done = fetch(app, workflow_id)
    assert done.state is State.COMPLETED and set(states(done).values()) == {"succeeded"}
    assert ran(out)[0] == "a" and sorted(ran(out)[1:3]) == ["b", "c"] and ran(out)[3] == "d"
    jobs = app.sync_list_jobs(limit=10)
    assert len(jobs) == 4 and {j.meta["workflow_id"] for j in jobs} == {str(workflow_id)}
    assert WorkflowPlugin.sync_wait_for_workflow(app, workflow_id, timeout=1).state is State.COMPLETED


def test_a_failing_middle_step_fails_the_workflow_and_later_steps_never_run(
    app: Chancy, plugin: WorkflowPlugin, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    workflow_id = WorkflowPlugin.sync_push(app, diamond(out, b=Job(func="tests.jobs.fail")))
    drain(app)
    failed = fetch(app, workflow_id)
    assert failed.state is State.FAILED
    assert states(failed) == {"a": "succeeded", "b": "failed", "c": "succeeded", "d": None}
    assert failed["d"].job_id is None and "d" not in ran(out)
    assert plugin.sync_sweep(app) == 0  # nothing left for the poll either
    assert drain(app) == [] and len(app.sync_list_jobs(limit=10)) == 3


def test_a_retrying_step_keeps_the_workflow_running_until_it_finishes(
    app: Chancy, plugin: WorkflowPlugin, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    flaky = Job(func="tests.jobs.fail_until", kwargs={"attempts": 1}, max_attempts=2)
    workflow_id = WorkflowPlugin.sync_push(app, Workflow("retry").add("flaky", flaky).add("next", step("n", out),
                                                                                          ["flaky"]))
    [first] = drain(app, max_jobs=1)
    assert first.state is JobState.RETRYING
    waiting = fetch(app, workflow_id)
    assert waiting.state is State.RUNNING and states(waiting) == {"flaky": "retrying", "next": None}
    assert plugin.sync_sweep(app) == 0  # not finished: nothing to do
    drain(app)
    assert fetch(app, workflow_id).state is State.COMPLETED and ran(out) == ["n"]


def test_a_step_whose_job_was_purged_is_pushed_again_by_the_poll(
    app: Chancy, plugin: WorkflowPlugin, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    workflow = Workflow("purged").add("a", step("a", out)).add("b", step("b", out), ["a"])
    workflow_id = WorkflowPlugin.sync_push(app, workflow)
    lost = workflow["a"].job_id
    assert app.sync_purge_jobs([lost]) == 1
    assert drain(app) == []  # nothing to run: the workflow is stuck until repaired
    assert fetch(app, workflow_id)["a"].state is None

    assert plugin.sync_sweep(app) == 1
    repaired = fetch(app, workflow_id)
    assert repaired.state is State.RUNNING and repaired["a"].job_id not in (None, lost)
    drain(app)
    assert fetch(app, workflow_id).state is State.COMPLETED and ran(out) == ["a", "b"]


def test_a_step_keeps_its_outcome_once_its_job_is_pruned(app: Chancy, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    workflow = Sequence("long", [step("a", out), step("b", out), step("c", out)]).to_workflow()
    workflow_id = WorkflowPlugin.sync_push(app, workflow)
    drain(app, max_jobs=1)
    first_job = fetch(app, workflow_id)["step_0"].job_id
    assert app.sync_purge_jobs([first_job]) == 1  # as the Pruner does to a finished job
    drain(app)
    done = fetch(app, workflow_id)
    assert done.state is State.COMPLETED  # 0.26 would wait for ever: its step_0 has no state any more
    assert done["step_0"].state is JobState.SUCCEEDED and ran(out) == ["a", "b", "c"]


def test_an_outcome_written_without_the_hook_is_picked_up_by_the_poll(
    app: Chancy, plugin: WorkflowPlugin, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    workflow = Workflow("cancelled").add("a", step("a", out)).add("b", step("b", out), ["a"])
    workflow_id = WorkflowPlugin.sync_push(app, workflow)
    app.sync_cancel_job(workflow["a"].job_id)  # fails the job in a transaction that runs no job hook
    assert fetch(app, workflow_id).state is State.RUNNING
    assert plugin.sync_sweep(app) == 1
    cancelled = fetch(app, workflow_id)
    assert cancelled.state is State.FAILED and states(cancelled) == {"a": "failed", "b": None}
    assert drain(app) == [] and ran(out) == []


def stuck(app: Chancy, name: str) -> uuid.UUID:
    """A running workflow whose first step was cancelled behind the hook's back: only the poll fails it."""
    workflow = Workflow(name).add("a", NOOP).add("b", NOOP, ["a"])
    workflow_id = WorkflowPlugin.sync_push(app, workflow)
    app.sync_cancel_job(workflow["a"].job_id)
    return workflow_id


def test_the_poll_sweeps_in_id_order_and_newer_workflows_wait_for_the_next_sweep(app: Chancy) -> None:
    plugin = WorkflowPlugin(polling_interval=3600, max_workflows_per_run=1)
    first, second = stuck(app, "first"), stuck(app, "second")
    worker = Worker(app, register_signal_handlers=False)

    async def polls() -> list[list[str]]:
        seen = []
        for index in range(4):
            if index == 1:
                stuck(app, "third")  # created while a sweep is under way: it joins the next sweep
            await plugin.tick(worker)
            failed = WorkflowPlugin.sync_fetch_workflows(app, states=[State.FAILED])
            seen.append([w.name for w in failed])
        return seen

    assert asyncio.run(polls()) == [["first"], ["first", "second"], ["first", "second", "third"],
                                    ["first", "second", "third"]]
    assert [w.id for w in WorkflowPlugin.sync_fetch_workflows(app)][:2] == [first, second]  # oldest first


def test_only_the_leader_polls(app: Chancy) -> None:
    workflow_id = stuck(app, "stuck")
    plugin = WorkflowPlugin(polling_interval=0.01)
    worker = Worker(app, register_signal_handlers=False)

    async def body() -> None:
        task = asyncio.create_task(plugin.run(worker, app))
        try:
            # Past its first interval the loop waits for the leadership (no fixed sleep: asyncio.Event's waiters).
            await until(lambda: worker.is_leader._waiters, timeout=10)  # type: ignore[attr-defined]
            assert fetch(app, workflow_id).state is State.RUNNING  # not the leader: no poll
            worker.is_leader.set()
            await until(lambda: fetch(app, workflow_id).state is State.FAILED, timeout=10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_the_pruner_deletes_old_finished_workflows_through_cleanup(db_path: str, clock: Clock) -> None:
    plugin = WorkflowPlugin(pruning_rule=WorkflowPlugin.Rules.Age() > 3600)
    with Chancy(db_path, clock=clock, plugins=[plugin, Pruner()]) as app:
        app.sync_migrate()
        done = WorkflowPlugin.sync_push(app, Workflow("done").add("a", NOOP))
        drain(app)
        running = stuck(app, "running")  # still running: never pruned, however old
        clock.advance(minutes=59)
        assert asyncio.run(Pruner.cleanup_plugins(app))["chancy.workflow_plugin"] == 0
        clock.advance(minutes=2)
        assert asyncio.run(Pruner.cleanup_plugins(app))["chancy.workflow_plugin"] == 1
        assert WorkflowPlugin.sync_fetch_workflow(app, done) is None
        assert [w.id for w in WorkflowPlugin.sync_fetch_workflows(app)] == [running]
        with app.connection() as conn:  # the steps went with their workflow
            assert conn.execute("SELECT count(*) FROM chancy_workflow_steps").fetchall() == [(2,)]


def test_the_default_pruning_rule_is_a_day_and_only_age_is_accepted(db_path: str, clock: Clock) -> None:
    plugin = WorkflowPlugin()
    assert plugin.pruning_rule == ("cmp", "age", ">", 86_400)
    with pytest.raises(ValueError, match="Age"):
        WorkflowPlugin(pruning_rule=Pruner.Rules.Queue() == "default")
    with pytest.raises(TypeError):
        WorkflowPlugin(pruning_rule="age > 1")  # type: ignore[arg-type]
    with Chancy(db_path, clock=clock) as app:
        app.sync_migrate()
        WorkflowPlugin.sync_push(app, Workflow("w").add("a", NOOP))
        drain(app)
        clock.advance(hours=23)
        assert plugin.sync_cleanup(app) == 0
        clock.advance(hours=2)
        assert plugin.sync_cleanup(app) == 1


def test_the_plugin_pickles_without_its_loop_state(plugin: WorkflowPlugin) -> None:
    """Its job hook runs in worker children, on a pickled copy taken after its loop may have started."""
    plugin._wake = asyncio.Event()
    asyncio.run(asyncio.wait_for(plugin.sleep(0.001), 1))
    copy = pickle.loads(pickle.dumps(plugin))
    assert copy.polling_interval == 3600 and copy._sweep is None and "_wake" not in vars(copy)


def test_steps_finished_by_several_processes_at_once_push_the_join_once(db_path: str, tmp_path: Path) -> None:
    """A fan-in: 24 parallel steps, then one that needs them all, drained by four runners at once (each with its
    own connection, as worker children). Whichever write finishes the last parallel step pushes the join, once."""
    out = tmp_path / "ran"
    parallel = [(f"p{i:02}", NOOP) for i in range(24)]
    workflow = Workflow("fan-in").add_group(parallel).add("join", step("join", out), [s for s, _ in parallel])
    with Chancy(db_path) as app:
        app.sync_migrate()
        workflow_id = WorkflowPlugin.sync_push(app, workflow)
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def runner() -> None:
            try:
                with Chancy(db_path) as mine:  # its own connections and wake-up mailbox
                    barrier.wait(10)
                    for _ in range(100):
                        if not drain(mine, max_jobs=2) and fetch(mine, workflow_id).is_complete:
                            return
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=runner) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        done = fetch(app, workflow_id)
        assert done.state is State.COMPLETED and ran(out) == ["join"]
        assert len(app.sync_list_jobs(limit=100)) == 25


def test_workers_hear_workflow_events(db_path: str) -> None:
    """``workflow.created`` at push and ``workflow.step_completed`` from the write of each finished step, on every
    worker's hub (0.26's events)."""
    with Chancy(db_path, plugins=[ImmediateLeadership(), WorkflowPlugin(polling_interval=3600)]) as app:
        app.sync_migrate()
        app.sync_declare(Queue("default", concurrency=1))

        async def body(worker: Worker) -> tuple[uuid.UUID, list[Event]]:
            seen: list[Event] = []
            for name in ("workflow.created", "workflow.step_completed"):
                worker.hub.on(name, seen.append)
            workflow_id = await WorkflowPlugin.push(app, Workflow("events").add("a", NOOP).add("b", NOOP, ["a"]))
            await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=20, interval=0.05)
            await until(lambda: len(seen) >= 3, timeout=10)
            return workflow_id, seen

        workflow_id, events = run_worker(app, body)
    assert [(e.name, e.body) for e in events] == [
        ("workflow.created", {"id": str(workflow_id), "name": "events"}),
        ("workflow.step_completed", {"workflow_id": str(workflow_id)}),
        ("workflow.step_completed", {"workflow_id": str(workflow_id)}),
    ]

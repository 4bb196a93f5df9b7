"""Workflows with real workers: a diamond whose steps run on two supervisor processes (each serving its own queue)
completes without any polling interval passing, each finished step starting its dependants on the other worker at
once; a failing step stops the workflow there; the README's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.plugins.workflow import Workflow, WorkflowPlugin
from tests.acceptance.test_readme import README, code_blocks
from tests.worker_support import Supervisor, lines, workers_of

State = Workflow.State
# Longer than any test here: a step that waited for a queue's poll or the workflow poll would time the test out.
QUEUE_POLL = 60
WORKFLOW_POLL = 3600


@pytest.fixture
def two_workers(db_path: str, tmp_path: Path) -> Iterator[tuple[Chancy, Supervisor, Supervisor]]:
    """A migrated file with queues ``left`` and ``right``, each served only by its own supervisor process."""
    with Chancy(db_path) as chancy:
        chancy.sync_migrate()
        chancy.sync_declare(Queue("default", state=Queue.State.PAUSED))
        for side in ("left", "right"):
            chancy.sync_declare(Queue(side, concurrency=2, tags={f"worker_id=wf-{side}$"},
                                      polling_interval=QUEUE_POLL))
        supervisors = [
            Supervisor(db_path, "--no-migrate", "--worker-id", f"wf-{side}", "--workflow-poll", str(WORKFLOW_POLL),
                       log_path=tmp_path / f"{side}.log")
            for side in ("left", "right")
        ]
        try:
            for supervisor in supervisors:
                supervisor.wait_ready()
            yield chancy, supervisors[0], supervisors[1]
        finally:
            for supervisor in supervisors:
                supervisor.close()


def stamped(name: str, queue: str, out: Path) -> Job:
    return Job(func="tests.jobs.stamp", queue=queue, kwargs={"path": str(out), "value": name})


def test_a_diamond_runs_across_two_workers_without_waiting_for_a_poll(
    two_workers: tuple[Chancy, Supervisor, Supervisor], tmp_path: Path
) -> None:
    chancy, left, right = two_workers
    out = tmp_path / "stamps"
    workflow = (
        Workflow("diamond")
        .add("a", stamped("a", "left", out))
        .add("b", stamped("b", "right", out), ["a"])
        .add("c", stamped("c", "left", out), ["a"])
        .add("d", stamped("d", "right", out), ["b", "c"])
    )
    started = time.monotonic()
    workflow_id = WorkflowPlugin.sync_push(chancy, workflow)
    # interval=QUEUE_POLL: the wait itself is woken by job completions, not by polling.
    done = WorkflowPlugin.sync_wait_for_workflow(chancy, workflow_id, timeout=30, interval=QUEUE_POLL)
    elapsed = time.monotonic() - started
    assert done.state is State.COMPLETED, left.log() + right.log()
    assert {step.state for _, step in done} == {QueuedJob.State.SUCCEEDED}
    assert elapsed < 15, f"{elapsed:.1f} s: a step waited for a poll"

    runs = {value: (int(pid), float(at)) for pid, at, value in lines(out)}
    assert sorted(runs) == ["a", "b", "c", "d"]  # each step ran once
    left_children, right_children = workers_of(left.pid), workers_of(right.pid)
    assert {runs["a"][0], runs["c"][0]} <= left_children, (runs, left_children)
    assert {runs["b"][0], runs["d"][0]} <= right_children, (runs, right_children)
    # a (left) started b on the right; b (right) and c (left) together started d on the right.
    assert runs["a"][1] < min(runs["b"][1], runs["c"][1])
    assert max(runs["b"][1], runs["c"][1]) < runs["d"][1]


def test_a_failing_step_on_one_worker_stops_the_workflow(
    two_workers: tuple[Chancy, Supervisor, Supervisor], tmp_path: Path
) -> None:
    chancy, _, _ = two_workers
    out = tmp_path / "stamps"
    workflow = (
        Workflow("fails")
        .add("a", stamped("a", "left", out))
        .add("b", Job(func="tests.jobs.fail", queue="right"), ["a"])
        .add("c", stamped("c", "left", out), ["b"])
    )
    workflow_id = WorkflowPlugin.sync_push(chancy, workflow)
    done = WorkflowPlugin.sync_wait_for_workflow(chancy, workflow_id, timeout=30, interval=QUEUE_POLL)
    assert done.state is State.FAILED
    assert [(s, step.state) for s, step in done] == [
        ("a", QueuedJob.State.SUCCEEDED), ("b", QueuedJob.State.FAILED), ("c", None)]
    assert [record[2] for record in lines(out)] == ["a"]


def test_the_readme_workflow_example_runs_as_written(tmp_path: Path) -> None:
    blocks = code_blocks()
    for name in ("tasks.py", "workflow_example.py"):
        (tmp_path / name).write_text(blocks[name])
    result = subprocess.run([sys.executable, "workflow_example.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    shown = re.search(r"```console\n\$ python workflow_example.py\n(.*?)```", README.read_text(), flags=re.S)
    assert shown is not None
    assert result.stdout == shown.group(1)  # the README shows what it prints
    assert result.stdout.startswith("completed\nfetch succeeded\nleft succeeded\nmerge succeeded\nright succeeded\n")

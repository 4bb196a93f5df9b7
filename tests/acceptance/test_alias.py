"""A project written for Chancy (``from chancy import ...``) runs its own test suite on chancy_lite, unchanged,
through ``pytest --chancy-lite-as-chancy`` or ``CHANCY_LITE_AS_CHANCY=1``, with a real worker whose children
import the project's job module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TASKS = '''
from chancy import QueuedJob, job


@job(queue="default", max_attempts=2)
def greet(*, name: str, context: QueuedJob) -> None:
    context.meta["greeting"] = f"hello {name}"
'''

TEST_TASKS = '''
import asyncio

from chancy import Chancy, Queue, Worker
from chancy.plugins.retry import RetryPlugin

from tasks import greet


def test_greet(tmp_path):
    async def main():
        async with Chancy(str(tmp_path / "jobs.db"), plugins=[RetryPlugin()]) as chancy:
            await chancy.migrate()
            await chancy.declare(Queue("default", concurrency=1), upsert=True)
            ref = await chancy.push(greet.job.with_kwargs(name="ada"))
            async with Worker(chancy, register_signal_handlers=False):
                done = await chancy.wait_for_job(ref, timeout=30)
            assert done.state == done.State.SUCCEEDED, done.errors
            assert done.meta["greeting"] == "hello ada"
            assert type(chancy).__module__ == "chancy_lite.app"

    asyncio.run(main())
'''


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_chancy_project_runs_its_tests_unchanged(tmp_path: Path, how: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "tasks.py").write_text(textwrap.dedent(TASKS))
    (project / "test_tasks.py").write_text(textwrap.dedent(TEST_TASKS))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHANCY_LITE_AS_CHANCY")}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tasks.py"]
    if how == "option":
        args.append("--chancy-lite-as-chancy")
    else:
        env["CHANCY_LITE_AS_CHANCY"] = "1"
    done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_without_opting_in_chancy_is_not_there(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHANCY_LITE_AS_CHANCY"}
    done = subprocess.run([sys.executable, "-c", "import chancy_lite, chancy"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "No module named 'chancy'" in done.stderr


def test_the_alias_leaves_chancy_lite_modules_as_they_are() -> None:
    import importlib.util

    import chancy_lite
    from chancy_lite import alias

    alias.install()
    try:
        import chancy.rule  # type: ignore[import-not-found]

        assert chancy.rule is sys.modules["chancy_lite.rule"]
        assert chancy_lite.rule.__spec__.name == "chancy_lite.rule"  # its own spec, not the alias's
        assert importlib.util.find_spec("chancy.plugins.no_such_plugin") is None  # "is it there?" still answers
        assert importlib.util.find_spec("chancy.plugins.workflow") is not None
        assert not alias.wanted({"CHANCY_LITE_AS_CHANCY": "false"}) and alias.wanted({"CHANCY_LITE_AS_CHANCY": "1"})
    finally:
        alias.uninstall()
    assert "chancy" not in sys.modules

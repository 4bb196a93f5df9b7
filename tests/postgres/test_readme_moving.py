"""The README's "Moving to Chancy on Postgres" runs as written: its job module on both engines, its Chancy
migration snippet under real Chancy, its export commands against a real PostgreSQL."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chancy_lite import Chancy, Queue
from chancy_lite.cli import main
from tests.postgres.conftest import ROOT, chancy_python

psycopg = pytest.importorskip("psycopg")


def section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Moving to Chancy on Postgres", 1)[1].split("\n## ", 1)[0]


def block(lang: str, first_line: str) -> str:
    for found in re.findall(rf"```{lang}\n(.*?)```", section(), flags=re.S):
        if found.startswith(first_line):
            return found
    raise AssertionError(f"no {lang} block starting {first_line!r}")


def test_the_readme_section_runs(tmp_path: Path, empty_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "billing_jobs.py").write_text(block("python", "# billing_jobs.py"))
    (tmp_path / "pg_setup.py").write_text(block("python", "# pg_setup.py"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"DATABASE_URL": empty_dsn}
    done = subprocess.run([chancy_python(), "pg_setup.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr

    # The job module on chancy_lite, through the alias.
    script = ("from chancy_lite import alias; alias.install()\nimport billing_jobs\nfrom chancy_lite import Chancy\n"
              "from chancy_lite.testing import run_inline\napp = Chancy('jobs.db'); app.sync_migrate()\n"
              "print(run_inline(app, billing_jobs.charge.job.with_kwargs(customer=1, cents=250)).meta['charged'])\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "250", done.stderr
    app = Chancy(tmp_path / "jobs.db")
    app.sync_declare(Queue("billing", polling_interval=1))
    app.sync_push(__import__("chancy_lite").Job(func="billing_jobs.charge", queue="billing", max_attempts=3,
                                                kwargs={"customer": 2, "cents": 99}))
    app.close()

    commands = [line for line in block("bash", "chancy-lite").splitlines() if line.startswith("chancy-lite ")]
    assert len(commands) == 3
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for line in commands:
            argv = [empty_dsn if a == "$DATABASE_URL" else a for a in shlex.split(line.replace('"', ""))][1:]
            assert main(argv) == 0, capsys.readouterr()
    finally:
        os.chdir(cwd)
    with psycopg.connect(empty_dsn) as conn:
        rows = conn.execute("SELECT func, state, kwargs FROM chancy_jobs ORDER BY state").fetchall()
    assert rows == [("billing_jobs.charge", "pending", {"customer": 2, "cents": 99}),
                    ("billing_jobs.charge", "succeeded", {"customer": 1, "cents": 250})]

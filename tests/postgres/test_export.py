"""chancy-lite export/import against a real PostgreSQL migrated by real Chancy 0.26, and real Chancy workers."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import apsw
import pytest

from chancy_lite import Chancy, Job, Queue
from chancy_lite.cli import main
from chancy_lite.plugins.cron import Cron
from tests.postgres.conftest import HERE, ROOT, wait_until

psycopg = pytest.importorskip("psycopg")

UTC = dt.UTC


def cli(*argv: str, capsys: Any) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def pg_rows(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def raw(path: Path) -> apsw.Connection:
    return apsw.Connection(str(path))


def make_file(path: Path, *, bulk: int = 9000, retrying: int = 400, scheduled: int = 300, asyncs: int = 200,
              squares: int = 100) -> Chancy:
    """A file with four queues, mixed waiting jobs (pending, retrying, scheduled), two cron schedules."""
    app = Chancy(path, plugins=[Cron()])
    app.sync_migrate()
    app.sync_declare(Queue("bulk", executor=Chancy.Executor.Threaded, concurrency=16, polling_interval=1,
                           eager_polling=True))
    app.sync_declare(Queue("asyncq", executor=Chancy.Executor.Async, concurrency=50, polling_interval=1,
                           eager_polling=True))
    app.sync_declare(Queue("proc", concurrency=2, polling_interval=1, eager_polling=True,
                           executor_options={"maximum_jobs_per_worker": 50}))
    app.sync_declare(Queue("idle", state=Queue.State.PAUSED, tags={"gpu=.*"}, rate_limit=10, rate_limit_window=60))
    soon = dt.datetime.now(UTC) + dt.timedelta(seconds=2)
    jobs = [Job(func="shared_jobs.add", queue="bulk", kwargs={"a": i, "b": 1}, priority=i % 3,
                unique_key=f"add-{i}" if i % 10 == 0 else None, meta={"n": i}) for i in range(bulk)]
    jobs += [Job(func="shared_jobs.flaky", queue="bulk", max_attempts=3) for _ in range(retrying)]
    jobs += [Job(func="shared_jobs.add", queue="bulk", kwargs={"a": 1, "b": 2}, scheduled_at=soon)
             for _ in range(scheduled)]
    jobs += [Job(func="shared_jobs.ping", queue="asyncq") for _ in range(asyncs)]
    jobs += [Job(func="shared_jobs.square", queue="proc", kwargs={"x": i}) for i in range(squares)]
    for _ in app.sync_push_many(jobs):
        pass
    with raw(path) as conn:  # the flaky jobs as a worker leaves them after their first attempt failed
        conn.execute("""UPDATE chancy_jobs SET state = 'retrying', attempts = 1,
                        errors = json_array(json_object('attempt', 0, 'traceback', 'RuntimeError: first'))
                        WHERE func = 'shared_jobs.flaky'""")
    Cron.sync_schedule(app, "*/5 * * * *", Job(func="shared_jobs.tick", unique_key="every-5"))
    Cron.sync_schedule(app, "0 3 * * *", Job(func="shared_jobs.tick", unique_key="nightly"),
                       timezone="Europe/Paris")
    return app


def add_half_finished_workflow(path: Path) -> tuple[str, str]:
    """A running workflow whose first step's job succeeded and whose second step waits for it (written as the
    WorkflowPlugin, a default plugin whose tables ``migrate`` made, stores it)."""
    workflow_id, first_job = str(uuid.uuid4()), str(uuid.uuid4())
    now = int(dt.datetime.now(UTC).timestamp() * 1_000_000)
    step = json.dumps({"f": "shared_jobs.add", "k": {"a": 20, "b": 22}, "p": 0, "a": 1, "s": now / 1e6,
                       "l": [], "u": None, "q": "bulk", "m": {}})
    with raw(path) as conn:
        conn.execute("INSERT INTO chancy_jobs (id, queue, func, kwargs, meta, state, attempts, created_at,"
                     " started_at, completed_at, scheduled_at) VALUES (?, 'bulk', 'shared_jobs.add',"
                     " '{\"a\":1,\"b\":1}', json_object('workflow_id', ?), 'succeeded', 1, ?, ?, ?, ?)",
                     (first_job, workflow_id, now, now, now, now))
        conn.execute("INSERT INTO chancy_workflows VALUES (?, 'half', 'running', ?, ?)", (workflow_id, now, now))
        conn.execute("INSERT INTO chancy_workflow_steps (workflow_id, step_id, job_data, dependencies, job_id,"
                     " state, created_at, updated_at) VALUES (?, 'first', ?, '[]', ?, 'succeeded', ?, ?)",
                     (workflow_id, step, first_job, now, now))
        conn.execute("INSERT INTO chancy_workflow_steps (workflow_id, step_id, job_data, dependencies, job_id,"
                     " state, created_at, updated_at) VALUES (?, 'second', ?, '[\"first\"]', NULL, NULL, ?, ?)",
                     (workflow_id, step, now, now))
    return workflow_id, first_job


def table_digest(dsn: str) -> tuple[Any, ...]:
    return tuple(pg_rows(dsn, f"SELECT md5(string_agg(t::text, ',' ORDER BY {key})) FROM chancy_{table} t")[0][0]
                 for table, key in (("jobs", "id"), ("queues", "name"), ("cron", "unique_key"),
                                    ("workflows", "id"), ("workflow_steps", "id")))


def test_export_10000_jobs_then_a_chancy_worker_runs_them_all(
        tmp_path: Path, chancy_dsn: str, chancy_worker: Any, capsys: Any) -> None:
    path = tmp_path / "jobs.db"
    app = make_file(path)
    workflow_id, _ = add_half_finished_workflow(path)
    app.close()

    code, out, err = cli("--db", str(path), "export", "--to", chancy_dsn, capsys=capsys)
    assert code == 0, out + err
    assert "verified: every row is in the target" in out
    assert "10000 job(s)" in out and "2 cron schedule(s)" in out and "1 workflow(s)" in out
    assert "10000/10000 jobs" in err  # the progress bar (plain lines when not a terminal)

    # Kept as they were: ids, attempts, errors, meta, unique keys; executors mapped.
    queues = dict(pg_rows(chancy_dsn, "SELECT name, executor FROM chancy_queues"))
    assert queues == {"bulk": "chancy.executors.thread.ThreadedExecutor",
                      "asyncq": "chancy.executors.asyncex.AsyncExecutor",
                      "proc": "chancy.executors.process.ProcessExecutor",
                      "idle": "chancy.executors.process.ProcessExecutor"}
    flaky = pg_rows(chancy_dsn, "SELECT attempts, errors FROM chancy_jobs WHERE func = 'shared_jobs.flaky' LIMIT 1")
    assert flaky[0] == (1, [{"attempt": 0, "traceback": "RuntimeError: first"}])
    assert pg_rows(chancy_dsn, "SELECT count(*) FROM chancy_jobs WHERE unique_key IS NOT NULL")[0][0] == 900
    assert pg_rows(chancy_dsn, "SELECT timezone FROM chancy_cron WHERE unique_key = 'nightly'")[0][0] == "Europe/Paris"

    worker = chancy_worker(chancy_dsn)
    waiting = ("SELECT count(*) FROM chancy_jobs"
               " WHERE state <> 'succeeded' AND queue <> 'idle' AND func <> 'shared_jobs.tick'")
    wait_until(lambda: pg_rows(chancy_dsn, waiting)[0][0] == 0, timeout=90, what="Chancy to run every job")
    wait_until(lambda: pg_rows(chancy_dsn, "SELECT state FROM chancy_workflows WHERE id = %s",
                               (workflow_id,))[0][0] == "completed", timeout=30, what="the workflow to complete")
    log = worker.stop()
    assert "Traceback" not in log.replace("RuntimeError: the first attempt fails", ""), log[-3000:]

    attempts = dict(pg_rows(chancy_dsn, "SELECT func, array_agg(DISTINCT attempts) FROM chancy_jobs"
                                        " WHERE queue <> 'idle' AND func <> 'shared_jobs.tick' GROUP BY func"))
    assert attempts == {"shared_jobs.add": [1], "shared_jobs.flaky": [2], "shared_jobs.ping": [1],
                        "shared_jobs.square": [1]}
    sums = pg_rows(chancy_dsn, "SELECT count(*) FROM chancy_jobs WHERE func = 'shared_jobs.add'"
                               " AND (meta->>'sum')::int <> (kwargs->>'a')::int + (kwargs->>'b')::int")
    assert sums[0][0] == 0
    assert pg_rows(chancy_dsn, "SELECT count(*) FROM chancy_jobs WHERE meta ? 'n'")[0][0] == 9000  # meta kept

    before = table_digest(chancy_dsn)
    code, out, err = cli("--db", str(path), "export", "--to", chancy_dsn, "--no-progress", capsys=capsys)
    assert code == 0, out + err
    assert table_digest(chancy_dsn) == before  # the rerun changed nothing


def test_a_live_lite_worker_blocks_the_export(tmp_path: Path, chancy_dsn: str, capsys: Any) -> None:
    path = tmp_path / "jobs.db"
    make_file(path, bulk=10, retrying=0, scheduled=0, asyncs=0, squares=0).close()
    worker = subprocess.Popen([sys.executable, "-m", "chancy_lite", "--db", str(path), "worker", "start",
                               "--queue", "other"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        check = Chancy(path)
        wait_until(lambda: check.sync_get_all_workers(), timeout=30, what="the lite worker's heartbeat")
        check.close()
        code, _out, err = cli("--db", str(path), "export", "--to", chancy_dsn, capsys=capsys)
        assert code == 1
        assert "worker" in err and "is alive" in err and "nothing was copied" in err
        assert pg_rows(chancy_dsn, "SELECT count(*) FROM chancy_jobs")[0][0] == 0
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_dry_run_lists_every_blocker(tmp_path: Path, chancy_dsn: str, capsys: Any) -> None:
    path = tmp_path / "jobs.db"
    app = make_file(path, bulk=5, retrying=0, scheduled=0, asyncs=0, squares=0)
    app.sync_declare(Queue("fast", rate_limit=5, rate_limit_window=0.5, polling_interval=0.25,
                           executor_options={"batch_size": 8}))
    app.sync_push(Job(func="shared_jobs.add", queue="bulk", kwargs={"a": 1, "b": 1}).with_concurrency(2, key="c-1"))
    app.close()
    with raw(path) as conn:
        running = conn.execute("SELECT id FROM chancy_jobs ORDER BY id LIMIT 1").fetchall()[0][0]
        conn.execute("UPDATE chancy_jobs SET state = 'running', taken_by = 'w1', holder_pid = 1, started_at = 1"
                     " WHERE id = ?", (running,))
    code, out, err = cli("--db", str(path), "export", "--to", chancy_dsn, "--dry-run", capsys=capsys)
    assert code == 1, out + err
    assert f"running {running}:" in out
    assert "rate_limit_window 0.5 s is fractional" in out
    assert "polling_interval 0.25 s is fractional" in out
    assert "batch_size would make Chancy's ProcessExecutor fail to start" in out
    assert "1 waiting job(s) have per-key limits, which Chancy does not enforce" in out
    assert "4 blocker(s)" in out or "5 blocker(s)" in out
    assert pg_rows(chancy_dsn, "SELECT count(*) FROM chancy_queues")[0][0] == 0  # a dry run writes nothing
    # --requeue-running lifts the running blocker, and the job goes over as waiting.
    code, out, _ = cli("--db", str(path), "export", "--to", chancy_dsn, "--dry-run", "--requeue-running",
                       capsys=capsys)
    assert f"running {running}" not in out and "rate_limit_window 0.5" in out
    code, out, _ = cli("--db", str(path), "export", "--to", chancy_dsn, "--dry-run", "--drop-key-limits",
                       capsys=capsys)
    assert "per-key limits" not in out and "rate_limit_window 0.5" in out


def test_a_schema_chancy_did_not_make_is_refused(tmp_path: Path, empty_dsn: str, chancy_dsn: str,
                                                 capsys: Any) -> None:
    path = tmp_path / "jobs.db"
    make_file(path, bulk=3, retrying=0, scheduled=0, asyncs=0, squares=0).close()
    code, out, _ = cli("--db", str(path), "export", "--to", empty_dsn, "--dry-run", capsys=capsys)
    assert code == 1 and "no schema_version table" in out
    with psycopg.connect(chancy_dsn) as conn:
        conn.execute("UPDATE chancy_schema_version SET version = 7 WHERE version_of = 'chancy'")
    code, out, err = cli("--db", str(path), "export", "--to", chancy_dsn, capsys=capsys)
    assert code == 1 and "core schema version 7 is not one this export knows" in err
    assert pg_rows(chancy_dsn, "SELECT version FROM chancy_schema_version WHERE version_of = 'chancy'")[0][0] == 7


def test_import_round_trips(tmp_path: Path, chancy_dsn: str, capsys: Any) -> None:
    path = tmp_path / "jobs.db"
    app = make_file(path, bulk=300, retrying=20, scheduled=10, asyncs=5, squares=5)
    with raw(path) as conn:  # and some history
        conn.execute("UPDATE chancy_jobs SET state = 'succeeded', attempts = 1, completed_at = created_at + 5"
                     " WHERE rowid IN (SELECT rowid FROM chancy_jobs WHERE func = 'shared_jobs.ping' LIMIT 3)")
    original = {job.id: job for job in app.sync_list_jobs(limit=10_000)}
    queues = app.sync_get_all_queues()
    schedules = Cron.sync_get_schedules(app)
    app.close()
    code, out, err = cli("--db", str(path), "export", "--to", chancy_dsn, "--include-finished", capsys=capsys)
    assert code == 0, out + err

    back = tmp_path / "back.db"
    copy = Chancy(back, plugins=[Cron()])
    copy.sync_migrate()
    copy.close()
    code, out, err = cli("--db", str(back), "import", "--from", chancy_dsn, "--include-finished", capsys=capsys)
    assert code == 0, out + err
    copy = Chancy(back, plugins=[Cron()])
    assert copy.sync_get_all_queues() == queues
    assert {job.id: job for job in copy.sync_list_jobs(limit=10_000)} == original
    assert Cron.sync_get_schedules(copy) == schedules
    copy.close()
    code, out, _ = cli("--db", str(back), "import", "--from", chancy_dsn, "--include-finished", capsys=capsys)
    assert code == 0 and "verified" in out  # a rerun adds nothing and still verifies


def test_same_job_module_on_chancy_lite(tmp_path: Path) -> None:
    """The module the Chancy worker ran also runs on chancy_lite, with ``import chancy`` aliased."""
    script = (
        "import sys; from chancy_lite import alias; alias.install(); sys.path.insert(0, sys.argv[2])\n"
        "from chancy_lite import Chancy\nfrom chancy_lite.testing import run_inline\nimport shared_jobs\n"
        "app = Chancy(sys.argv[1]); app.sync_migrate()\n"
        "print(run_inline(app, shared_jobs.add.job.with_kwargs(a=2, b=3)).meta['sum'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "f.db"), str(HERE)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"

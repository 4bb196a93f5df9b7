"""The ``chancy-lite`` command line: every command in-process, and a few through a real subprocess."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.cli import DB_ENV, format_table, main
from chancy_lite.sql import CORE_MIGRATIONS
from chancy_lite.utils import utcnow
from tests.acceptance.test_readme import code_blocks
from tests.conftest import wait_until

FUNC = "myproject.jobs.send_email"
ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _no_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DB_ENV, raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``chancy-lite ARGS`` in-process."""

    def run(*argv: str) -> Result:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def db(cli: Cli, db_path: str) -> Cli:
    """Run ``chancy-lite --db <a migrated file> ARGS`` in-process."""
    with Chancy(db_path) as app:
        app.sync_migrate()
    return lambda *argv: cli("--db", db_path, *argv)


@pytest.fixture
def unmigrated(db_path: str) -> str:
    """An existing SQLite file without the schema."""
    with Chancy(db_path) as app:
        app.sync_migrate(to_version=0)
    assert os.path.exists(db_path)
    return db_path


def assert_user_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("chancy-lite: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def push(db: Cli, *args: str) -> str:
    result = db("queue", "push", FUNC, *args)
    assert result.code == 0, result
    return result.out.strip()


def get_job(db_path: str, job_id: str) -> QueuedJob | None:
    with Chancy(db_path) as app:
        return app.sync_get_job(job_id)


def get_queue(db_path: str, name: str) -> Queue:
    with Chancy(db_path) as app:
        return app.sync_get_queue(name)


def failed_job(db_path: str) -> str:
    with Chancy(db_path) as app:
        ref = app.sync_push(Job(func=FUNC))
        app.sync_cancel_job(ref)
    return ref.identifier


def table(text: str) -> list[list[str]]:
    """The rows of a printed table, split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


# ------------------------------------------------------------------ migrations


def test_migrate_creates_the_file_and_says_what_ran(cli: Cli, db_path: str) -> None:
    result = cli("--db", db_path, "migrate")
    assert result.code == 0
    steps = "".join(f"migrated chancy {v} -> {v + 1}\n" for v in range(len(CORE_MIGRATIONS)))
    # Then the default plugins' keys: Metrics, WorkflowPlugin.
    assert result.out == steps + "migrated metrics 0 -> 1\nmigrated workflow 0 -> 1\n"
    with Chancy(db_path) as app:
        assert app.sync_is_up_to_date()
    assert cli("--db", db_path, "migrate").out == "nothing to migrate\n"


def test_migrate_to_version_zero_drops_the_schema(db: Cli, db_path: str) -> None:
    result = db("migrate", "--to-version", "0")
    steps = "".join(f"migrated chancy {v} -> {v - 1}\n" for v in range(len(CORE_MIGRATIONS), 0, -1))
    assert (result.code, result.out) == (0, "migrated workflow 1 -> 0\nmigrated metrics 1 -> 0\n" + steps)
    with Chancy(db_path) as app:
        assert not app.sync_is_up_to_date()


def test_check_migrations_exits_1_while_pending_then_0(cli: Cli, unmigrated: str) -> None:
    pending = cli("--db", unmigrated, "check-migrations")
    assert pending.code == 1
    assert "migrations are pending" in pending.err
    assert "Traceback" not in pending.err
    cli("--db", unmigrated, "migrate")
    done = cli("--db", unmigrated, "check-migrations")
    assert done.code == 0 and done.out.startswith("chancy: version ") and done.out.endswith(
        " - up to date\nmigrations are up to date\n")


def test_migrate_and_check_migrations_show_each_plugins_schema(
    cli: Cli, tmp_path: Path, db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"cli_cron_app_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "from chancy_lite import Chancy\nfrom chancy_lite.plugins.cron import Cron\n"
        f"chancy = Chancy({db_path!r}, plugins=[Cron()])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        app = f"{name}:chancy"
        cli("--db", db_path, "migrate")  # the core only: chancy_lite's own schema
        pending = cli("--app", app, "check-migrations")
        assert pending.code == 1 and "cron: version 0 - pending: 1 step(s) to version 1" in pending.out, pending
        migrated = cli("--app", app, "migrate")
        assert migrated.code == 0 and "migrated cron 0 -> 1" in migrated.out, migrated
        done = cli("--app", app, "check-migrations")
        assert done.code == 0 and "cron: version 1 - up to date" in done.out, done
        # Without the app, the file's plugin schemas are still listed; they do not make the check fail.
        bare = cli("--db", db_path, "check-migrations")
        assert bare.code == 0 and "cron: version 1 - not known to this app" in bare.out, bare
    finally:
        sys.modules.pop(name, None)


# ------------------------------------------------------------ naming the file


def test_db_from_the_environment(cli: Cli, db: Cli, db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DB_ENV, db_path)
    push(db, "--queue", "default")
    result = cli("job", "list")
    assert result.code == 0
    assert FUNC in result.out


def test_db_option_wins_over_the_environment(
    cli: Cli, db: Cli, db_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DB_ENV, str(tmp_path / "other.db"))
    assert cli("--db", db_path, "check-migrations").code == 0
    assert not (tmp_path / "other.db").exists()


def test_global_options_may_follow_the_command(cli: Cli, db: Cli, db_path: str) -> None:
    result = cli("queue", "list", "--db", db_path, "-v")
    assert (result.code, result.out) == (0, "no queues\n")


@pytest.fixture
def app_module(tmp_path: Path, db: Cli, db_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module holding a Chancy on ``db_path`` (and a non-Chancy attribute)."""
    name = f"cli_app_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(f"from chancy_lite import Chancy\nchancy = Chancy({db_path!r})\nother = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_app_option_imports_a_chancy(cli: Cli, app_module: str, db_path: str) -> None:
    result = cli("--app", f"{app_module}:chancy", "queue", "declare", "from-app")
    assert result.code == 0, result
    assert get_queue(db_path, "from-app").name == "from-app"


# ---------------------------------------------------------------------- queues


def test_queue_declare_with_every_option(db: Cli, db_path: str) -> None:
    result = db(
        "queue", "declare", "mail", "--concurrency", "3", "--tags", "host=a.*", "gpu", "--executor", "threaded",
        "--polling-interval", "2.5", "--rate-limit", "10", "--rate-limit-window", "60", "--paused",
    )
    assert (result.code, result.out) == (0, "declared queue mail\n")
    assert get_queue(db_path, "mail") == Queue(
        "mail", concurrency=3, tags={"host=a.*", "gpu"}, executor=Chancy.Executor.Threaded, polling_interval=2.5,
        rate_limit=10, rate_limit_window=60, state=Queue.State.PAUSED,
    )


def test_queue_declare_takes_an_executor_import_path(db: Cli, db_path: str) -> None:
    assert db("queue", "declare", "q", "--executor", "tests.custom_executor.CustomExecutor").code == 0
    assert get_queue(db_path, "q").executor == "tests.custom_executor.CustomExecutor"
    assert db("queue", "declare", "a", "--executor", "async").code == 0
    assert get_queue(db_path, "a").executor == Chancy.Executor.Async.value


def test_queue_declare_keeps_an_existing_queue_unless_upsert(db: Cli, db_path: str) -> None:
    db("queue", "declare", "mail", "--concurrency", "1")
    kept = db("queue", "declare", "mail", "--concurrency", "5")
    assert kept.code == 0
    assert "already exists" in kept.err and "--upsert" in kept.err
    assert get_queue(db_path, "mail").concurrency == 1
    replaced = db("queue", "declare", "mail", "--concurrency", "5", "--upsert")
    assert (replaced.code, replaced.err) == (0, "")
    assert get_queue(db_path, "mail").concurrency == 5


def test_queue_list_is_a_table(db: Cli) -> None:
    db("queue", "declare", "mail", "--concurrency", "2", "--rate-limit", "5", "--rate-limit-window", "1")
    db("queue", "declare", "bulk", "--executor", "async", "--paused")
    rows = table(db("queue", "list").out)
    assert rows[0] == ["name", "state", "concurrency", "executor", "tags", "polling", "rate limit", "resume at"]
    assert rows[1:] == [
        ["bulk", "paused", "default", "async", ".*", "5s", "-", "-"],
        ["mail", "active", "2", "process", ".*", "5s", "5/1s", "-"],
    ]


def test_queue_list_aligns_its_columns(db: Cli) -> None:
    db("queue", "declare", "a")
    db("queue", "declare", "a-much-longer-name")
    lines = db("queue", "list").out.splitlines()
    assert len({line.index("active") for line in lines[1:]}) == 1
    assert lines[0].index("state") == lines[1].index("active")


def test_queue_pause_and_resume(db: Cli, db_path: str) -> None:
    db("queue", "declare", "mail")
    before = utcnow()
    result = db("queue", "pause", "mail", "--resume-in", "60")
    assert result.code == 0 and result.out.startswith("paused queue mail until ")
    paused = get_queue(db_path, "mail")
    assert paused.state is Queue.State.PAUSED
    assert paused.resume_at is not None
    assert before + dt.timedelta(seconds=60) <= paused.resume_at <= utcnow() + dt.timedelta(seconds=60)
    assert db("queue", "resume", "mail").out == "resumed queue mail\n"
    assert get_queue(db_path, "mail").state is Queue.State.ACTIVE
    assert db("queue", "pause", "mail").out == "paused queue mail\n"
    assert get_queue(db_path, "mail").resume_at is None


def test_queue_delete_purges_its_jobs_unless_keep_jobs(db: Cli, db_path: str) -> None:
    db("queue", "declare", "gone")
    db("queue", "declare", "kept")
    gone, kept = push(db, "--queue", "gone"), push(db, "--queue", "kept")
    assert db("queue", "delete", "gone").out == "deleted queue gone and its jobs\n"
    assert db("queue", "delete", "kept", "--keep-jobs").code == 0
    with Chancy(db_path) as app:
        assert app.sync_get_all_queues() == []
        assert app.sync_get_job(gone) is None
        assert app.sync_get_job(kept) is not None


def test_queue_push_with_every_option(db: Cli, db_path: str) -> None:
    db("queue", "declare", "mail")
    before = utcnow()
    job_id = push(
        db, "--queue", "mail", "--kwargs", '{"to": "a@b.c", "n": [1, 2]}', "--meta", '{"source": "cli"}',
        "--priority", "7", "--max-attempts", "3", "--unique-key", "k1", "--delay", "30",
    )
    job = get_job(db_path, job_id)
    assert job is not None
    assert (job.func, job.queue, job.state) == (FUNC, "mail", QueuedJob.State.PENDING)
    assert job.kwargs == {"to": "a@b.c", "n": [1, 2]}
    assert job.meta == {"source": "cli"}
    assert (job.priority, job.max_attempts, job.unique_key) == (7, 3, "k1")
    assert before + dt.timedelta(seconds=30) <= job.scheduled_at <= utcnow() + dt.timedelta(seconds=30)


def test_queue_push_defaults_and_unique_key(db: Cli, db_path: str) -> None:
    db("queue", "declare", "default")
    first = push(db, "--unique-key", "once")
    assert push(db, "--unique-key", "once") == first
    job = get_job(db_path, first)
    assert job is not None
    assert (job.queue, job.kwargs, job.meta, job.priority, job.max_attempts) == ("default", {}, {}, 0, 1)


def test_queue_push_to_an_undeclared_queue_warns(db: Cli, db_path: str) -> None:
    result = db("queue", "push", FUNC, "--queue", "later")
    assert result.code == 0
    assert "not declared" in result.err
    assert get_job(db_path, result.out.strip()) is not None


# ------------------------------------------------------------------------ jobs


def test_job_list_filters_and_shows_columns(db: Cli, db_path: str) -> None:
    a = push(db, "--queue", "a", "--priority", "2", "--max-attempts", "4")
    b = push(db, "--queue", "b")
    c = push(db, "--queue", "a")
    with Chancy(db_path) as app:
        app.sync_cancel_job(c)
    rows = table(db("job", "list").out)
    assert rows[0] == ["id", "queue", "func", "state", "attempts", "priority", "created", "scheduled"]
    assert [row[0] for row in rows[1:]] == [c, b, a]
    assert rows[3][:6] == [a, "a", FUNC, "pending", "0/4", "2"]
    assert rows[3][6].endswith("Z") and rows[3][7].endswith("Z")
    assert [r[0] for r in table(db("job", "list", "--queue", "a").out)[1:]] == [c, a]
    assert [r[0] for r in table(db("job", "list", "--state", "failed").out)[1:]] == [c]
    assert [r[0] for r in table(db("job", "list", "--limit", "1").out)[1:]] == [c]


def test_job_list_when_empty(db: Cli) -> None:
    assert db("job", "list").out == "no jobs\n"


def test_job_get_shows_every_field_and_tracebacks(db: Cli, db_path: str) -> None:
    job_id = failed_job(db_path)
    result = db("job", "get", job_id)
    assert result.code == 0
    fields = dict(line.split(":", 1) for line in result.out.splitlines()[:17])
    assert set(fields) == {
        "id", "func", "queue", "state", "attempts", "priority", "unique_key", "limit_key", "key_limits", "created_at",
        "scheduled_at", "started_at", "completed_at", "kwargs", "meta", "limits", "errors",
    }
    assert fields["id"].strip() == job_id
    assert fields["state"].strip() == "failed"
    assert "--- error in attempt 0 ---\ncancelled: cancel_job() was called" in result.out


def test_job_get_json(db: Cli, db_path: str) -> None:
    job_id = push(db, "--kwargs", '{"x": 1}', "--priority", "3")
    data = json.loads(db("job", "get", job_id, "--json").out)
    assert data["id"] == job_id
    assert (data["func"], data["kwargs"], data["priority"], data["state"]) == (FUNC, {"x": 1}, 3, "pending")
    assert dt.datetime.fromisoformat(data["created_at"]).tzinfo is not None
    assert data["errors"] == [] and data["limits"] == []


def test_job_cancel(db: Cli, db_path: str) -> None:
    job_id = push(db)
    assert db("job", "cancel", job_id).out == f"cancelled job {job_id} (it was pending)\n"
    job = get_job(db_path, job_id)
    assert job is not None and job.state is QueuedJob.State.FAILED
    assert_user_error(db("job", "cancel", job_id), "already failed")


def test_job_retry(db: Cli, db_path: str) -> None:
    first, second = failed_job(db_path), failed_job(db_path)
    result = db("job", "retry", first, second)
    assert result.out.splitlines() == [f"retrying job {first}", f"retrying job {second}"]
    with Chancy(db_path) as app:
        assert [j.state for j in app.sync_get_jobs([first, second])] == [QueuedJob.State.RETRYING] * 2


def test_job_retry_refuses_unfailed_jobs_and_changes_nothing(db: Cli, db_path: str) -> None:
    failed, pending = failed_job(db_path), push(db)
    assert_user_error(db("job", "retry", failed, pending), "only failed jobs", f"{pending} is pending")
    job = get_job(db_path, failed)
    assert job is not None and job.state is QueuedJob.State.FAILED


def test_job_purge(db: Cli, db_path: str) -> None:
    first, second, kept = push(db), failed_job(db_path), push(db)
    assert db("job", "purge", first, second, first).out == "purged 2 job(s)\n"
    with Chancy(db_path) as app:
        assert [str(j.id) for j in app.sync_get_jobs([first, second, kept])] == [kept]


def test_job_purge_with_a_missing_id_deletes_nothing(db: Cli, db_path: str) -> None:
    job_id = push(db)
    assert_user_error(db("job", "purge", job_id, "missing-id"), "'missing-id'", "nothing was changed")
    assert get_job(db_path, job_id) is not None


# ---------------------------------------------------------------------- status


def test_status_counts_jobs_per_queue_and_state(db: Cli, db_path: str) -> None:
    db("queue", "declare", "mail", "--paused")
    db("queue", "declare", "idle")
    push(db, "--queue", "mail")
    push(db, "--queue", "mail")
    failed_job(db_path)
    out = db("status").out
    lines = out.splitlines()
    assert lines[0] == f"database: {db_path}"
    assert lines[1].startswith("file size: ") and "KiB" in lines[1] and "WAL size: " in lines[1]
    assert lines[2] == "workers: 0"
    rows = table("\n".join(lines[3:]))
    assert rows[0] == ["queue", "state", "pending", "running", "retrying", "succeeded", "failed", "total"]
    assert rows[1:] == [
        ["default", "undeclared", "0", "0", "0", "0", "1", "1"],
        ["idle", "active", "0", "0", "0", "0", "0", "0"],
        ["mail", "paused", "2", "0", "0", "0", "0", "2"],
    ]


def test_status_of_an_empty_file(db: Cli) -> None:
    assert db("status").out.splitlines()[-1] == "no queues and no jobs"


def test_count_jobs_is_on_chancy(chancy: Chancy) -> None:
    chancy.sync_push(Job(func=FUNC, queue="q"))
    assert chancy.sync_count_jobs() == {"q": {"pending": 1}}


# ----------------------------------------------------------------- the basics


def test_help_and_version(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0 and "queue" in result.out and "status" in result.out
    assert cli("--version").out.startswith("chancy-lite ")
    assert cli("job", "get", "--help").code == 0


def test_format_table() -> None:
    assert format_table(["a", "long header"], [["xyz", None], [1, "v"]]) == "a    long header\nxyz  -\n1    v"


# ------------------------------------------------------------- user mistakes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["queue", "push", FUNC, "--kwargs", "{bad"], "--kwargs is not valid JSON"),
        (["queue", "push", FUNC, "--kwargs", "[1, 2]"], "--kwargs must be a JSON object"),
        (["queue", "push", FUNC, "--meta", '"text"'], "--meta must be a JSON object"),
        (["queue", "push", "not a path"], "is not an import path"),
        (["queue", "push", FUNC, "--queue", "bad name!"], "queue name 'bad name!' is not valid"),
        (["queue", "push", FUNC, "--max-attempts", "0"], "max_attempts must be an integer >= 1"),
        (["queue", "push", FUNC, "--delay", "-1"], "--delay"),
        (["queue", "declare", "bad name!"], "queue name 'bad name!' is not valid"),
        (["queue", "declare", "q", "--rate-limit", "3"], "rate_limit and rate_limit_window go together"),
        (["queue", "declare", "q", "--concurrency", "many"], "argument --concurrency: 'many' is not an integer"),
        (["queue", "declare", "q", "--executor", "fork"], "use process, threaded, async"),
        (["queue", "declare", "q", "--tags", "("], "not a valid regular expression"),
        (["queue", "pause", "nope"], "no queue named 'nope'"),
        (["queue", "pause", "nope", "--resume-in", "0"], "--resume-in"),
        (["queue", "resume", "nope"], "no queue named 'nope'"),
        (["queue", "delete", "nope"], "no queue named 'nope'"),
        (["job", "get", "nope"], "no job with id 'nope'"),
        (["job", "cancel", "nope"], "no job with id 'nope'"),
        (["job", "retry", "nope"], "no job with id 'nope'"),
        (["job", "purge", "nope"], "no job with id 'nope'"),
        (["job", "list", "--state", "done"], "invalid choice: 'done'"),
        (["job", "list", "--limit", "0"], "--limit"),
        (["migrate", "--to-version", "-1"], "--to-version"),
        (["queue"], "required"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(db: Cli, args: list[str], message: str) -> None:
    assert_user_error(db(*args), message)


def test_delete_of_an_unknown_queue_keeps_the_jobs_pushed_to_it(db: Cli, db_path: str) -> None:
    job_id = push(db, "--queue", "undeclared")
    assert_user_error(db("queue", "delete", "undeclared"), "no queue named")
    assert get_job(db_path, job_id) is not None


@pytest.mark.parametrize(
    "args", [["queue", "list"], ["job", "list"], ["status"], ["queue", "push", FUNC], ["queue", "declare", "q"]]
)
def test_an_unmigrated_file_is_a_user_mistake(cli: Cli, unmigrated: str, args: list[str]) -> None:
    assert_user_error(cli("--db", unmigrated, *args), "not migrated", "chancy-lite migrate")


def test_a_missing_file_is_not_created_by_other_commands(cli: Cli, db_path: str) -> None:
    assert_user_error(cli("--db", db_path, "queue", "list"), "there is no database at", db_path)
    assert_user_error(cli("--db", db_path, "check-migrations"), "there is no database at")
    assert not os.path.exists(db_path)


def test_a_missing_directory(cli: Cli, tmp_path: Path) -> None:
    assert_user_error(cli("--db", str(tmp_path / "no" / "such" / "jobs.db"), "migrate"), "does not exist")


def test_a_file_that_is_not_a_database(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not SQLite\n")
    assert_user_error(cli("--db", str(path), "status"), "is not a SQLite database")
    assert path.read_text() == "hello, not SQLite\n"


def test_a_schema_newer_than_the_code(cli: Cli, db_path: str) -> None:
    with Chancy(db_path) as newer:
        newer.store.add_migrations("chancy", [*newer.store.migrations["chancy"], (["SELECT 1"], ["SELECT 1"])])
        newer.sync_migrate()
    assert_user_error(cli("--db", db_path, "status"), "upgrade chancy_lite")
    assert_user_error(cli("--db", db_path, "migrate"), "upgrade chancy_lite")


def test_no_database_named(cli: Cli) -> None:
    assert_user_error(cli("status"), "no database given", DB_ENV)


def test_db_and_app_together(cli: Cli, db_path: str) -> None:
    assert_user_error(cli("--db", db_path, "--app", "x:y", "status"), "either --db or --app")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "must look like 'package.module:attribute'"),
        ("{module}:", "must look like"),
        ("no_such_module_xyz:app", "cannot import 'no_such_module_xyz'"),
        ("{module}:missing", "has no attribute 'missing'"),
        ("{module}:other", "is a int, not a Chancy instance"),
    ],
)
def test_bad_app_option(cli: Cli, app_module: str, spec: str, message: str) -> None:
    assert_user_error(cli("--app", spec.format(module=app_module), "status"), message)


# ------------------------------------------------------------ real processes


def run_process(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})}
    )


def test_subprocess_round_trip(db_path: str) -> None:
    module = [sys.executable, "-m", "chancy_lite.cli"]
    migrated = run_process(*module, "--db", db_path, "migrate")
    steps = "".join(f"migrated chancy {v} -> {v + 1}\n" for v in range(len(CORE_MIGRATIONS)))
    plugins = "migrated metrics 0 -> 1\nmigrated workflow 0 -> 1\n"
    assert (migrated.returncode, migrated.stdout) == (0, steps + plugins), migrated.stderr
    pushed = run_process(*module, "queue", "push", FUNC, "--kwargs", '{"n": 5}', env={DB_ENV: db_path})
    assert pushed.returncode == 0, pushed.stderr
    job_id = pushed.stdout.strip()
    job = get_job(db_path, job_id)
    assert job is not None and job.kwargs == {"n": 5}
    shown = run_process(*module, "--db", db_path, "job", "get", job_id, "--json")
    assert json.loads(shown.stdout)["id"] == job_id


def test_console_script_reports_a_mistake_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("chancy-lite")
    if not script.exists():
        pytest.skip("the chancy-lite console script is not installed next to this Python")
    result = run_process(str(script), "--db", str(tmp_path / "missing" / "jobs.db"), "migrate")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("chancy-lite: error: ") and "Traceback" not in result.stderr


def test_console_script_check_migrations(db_path: str) -> None:
    script = Path(sys.executable).with_name("chancy-lite")
    if not script.exists():
        pytest.skip("the chancy-lite console script is not installed next to this Python")
    with Chancy(db_path) as app:
        app.sync_migrate(to_version=0)
    assert run_process(str(script), "--db", db_path, "check-migrations").returncode == 1
    assert run_process(str(script), "--db", db_path, "migrate").returncode == 0
    assert run_process(str(script), "--db", db_path, "check-migrations").returncode == 0


# ----------------------------------------- the console script, run where the user's files are


@pytest.fixture
def script() -> Path:
    found = Path(sys.executable).with_name("chancy-lite")
    if not found.exists():
        pytest.skip("the chancy-lite console script is not installed next to this Python")
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's folder (the current directory of the commands below); logs go next to it, not in it."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing puts this repository or the project on the import path."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", DB_ENV)}
    return {**env, **extra}


def run_script(
    script: Path, cwd: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), *argv], capture_output=True, text=True, timeout=60, cwd=cwd, env=env or user_env()
    )


@contextlib.contextmanager
def worker_process(script: Path, cwd: Path, *argv: str, env: dict[str, str] | None = None) -> Iterator[Path]:
    """``chancy-lite ARGV`` (a ``worker start`` command) in ``cwd``; stopped with SIGTERM at the end of the block,
    where it must exit 0. Yields the path of its log (stdout and stderr)."""
    log_path = cwd.parent / f"worker-{uuid.uuid4().hex[:8]}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(script), *argv], cwd=cwd, env=env or user_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield log_path
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
            assert code == 0, f"the worker exited with {code}:\n{log_path.read_text(errors='replace')}"
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def wait_finished(db_path: str, job_id: str, log_path: Path, timeout: float = 30.0) -> QueuedJob:
    """Poll the job until it succeeded or failed, against a deadline."""

    def finished() -> QueuedJob | None:
        job = get_job(db_path, job_id)
        return job if job is not None and job.is_finished else None

    try:
        return wait_until(finished, timeout=timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(
            f"job {job_id} did not finish within {timeout} s:\n{log_path.read_text(errors='replace')}"
        ) from None


def test_readme_walk_through_with_the_environment_variable(script: Path, project: Path) -> None:
    """README "From the command line", in the folder holding the README's tasks.py: no --app, no --path."""
    (project / "tasks.py").write_text(code_blocks()["tasks.py"])
    env = user_env(**{DB_ENV: "jobs.db"})
    assert run_script(script, project, "migrate", env=env).returncode == 0
    assert run_script(script, project, "queue", "declare", "emails", "--concurrency", "4", env=env).returncode == 0
    pushed = run_script(
        script, project, "queue", "push", "tasks.greet", "--kwargs", '{"name": "ada"}', "--queue", "emails", env=env
    )
    assert (pushed.returncode, pushed.stderr) == (0, ""), pushed
    job_id = pushed.stdout.strip()
    with worker_process(script, project, "worker", "start", "--queue", "emails:4", env=env) as log:
        job = wait_finished(str(project / "jobs.db"), job_id, log)
    assert job.state is QueuedJob.State.SUCCEEDED, job.errors
    assert job.meta == {"greeting": "hello ada (attempt 1)"}
    assert job.max_attempts == 3  # from @job(max_attempts=3) in tasks.py
    shown = run_script(script, project, "job", "get", job_id, env=env)
    assert re.search(r"^state: +succeeded$", shown.stdout, flags=re.M), shown


PATH_TASKS = """\
import os

from chancy_lite import QueuedJob, job


@job(queue="lib")
def where(*, context: QueuedJob) -> None:
    context.meta["module"] = os.path.basename(__file__)
"""


def test_path_option_makes_a_directory_importable_for_push_and_worker(
    script: Path, project: Path, db_path: str
) -> None:
    (project / "lib").mkdir()
    (project / "lib" / "libtasks.py").write_text(PATH_TASKS)
    assert run_script(script, project, "--db", db_path, "migrate").returncode == 0
    without = run_script(script, project, "--db", db_path, "queue", "push", "libtasks.where")
    assert without.returncode == 0
    assert without.stderr.startswith("chancy-lite: warning: cannot import libtasks.where here"), without.stderr
    assert get_job(db_path, without.stdout.strip()).queue == "default"  # type: ignore[union-attr]
    run_script(script, project, "--db", db_path, "job", "purge", without.stdout.strip())

    pushed = run_script(script, project, "--db", db_path, "--path", "lib", "queue", "push", "libtasks.where")
    assert pushed.returncode == 0 and "cannot import" not in pushed.stderr, pushed
    job_id = pushed.stdout.strip()
    # --path after the command works too, and reaches the worker's child processes.
    worker = ["--db", db_path, "worker", "start", "--queue", "lib:1", "--path", "lib"]
    with worker_process(script, project, *worker) as log:
        job = wait_finished(db_path, job_id, log)
    assert (job.queue, job.state, job.meta) == ("lib", QueuedJob.State.SUCCEEDED, {"module": "libtasks.py"})


def test_path_option_must_name_a_directory(script: Path, project: Path, db_path: str) -> None:
    result = run_script(script, project, "--db", db_path, "--path", "no-such-dir", "status")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "chancy-lite: error: --path 'no-such-dir' is not a directory\n"


def test_help_documents_the_path_option(cli: Cli) -> None:
    assert "--path DIR" in cli("--help").out
    assert "@job" in cli("queue", "push", "--help").out


DEFAULTS_TASKS = """\
from chancy_lite import Limit, job

print("tasks imported")  # must not end up in the output a script reads the job id from


@job(
    queue="mail", priority=4, max_attempts=5, unique_key="welcome", meta={"from": "decorator"},
    limits=[Limit(Limit.Type.TIME, 30)], kwargs={"to": "someone"},
)
def send(*, to: str) -> None:
    pass


def plain() -> None:
    pass
"""


def test_queue_push_uses_the_job_decorator_defaults_and_options_win(
    script: Path, project: Path, db_path: str
) -> None:
    (project / "tasks.py").write_text(DEFAULTS_TASKS)
    env = user_env(**{DB_ENV: db_path})
    assert run_script(script, project, "migrate", env=env).returncode == 0

    defaults = run_script(script, project, "queue", "push", "tasks.send", env=env)
    assert defaults.returncode == 0, defaults
    assert re.fullmatch(r"[0-9a-f-]{36}\n", defaults.stdout), defaults.stdout
    assert "tasks imported" in defaults.stderr and "cannot import" not in defaults.stderr
    job = get_job(db_path, defaults.stdout.strip())
    assert job is not None
    assert (job.func, job.queue, job.priority, job.max_attempts) == ("tasks.send", "mail", 4, 5)
    assert job.unique_key == "welcome"
    assert (job.kwargs, job.meta, [(lim.type_.value, lim.value) for lim in job.limits]) == (
        {"to": "someone"}, {"from": "decorator"}, [("time", 30)]
    )

    explicit = run_script(
        script, project, "queue", "push", "tasks.send", "--queue", "urgent", "--priority", "9", "--max-attempts", "1",
        "--unique-key", "other", "--kwargs", '{"to": "ada"}', "--meta", "{}", env=env,
    )
    assert explicit.returncode == 0, explicit
    job = get_job(db_path, explicit.stdout.strip())
    assert job is not None
    assert (job.queue, job.priority, job.max_attempts, job.unique_key) == ("urgent", 9, 1, "other")
    assert (job.kwargs, job.meta, len(job.limits)) == ({"to": "ada"}, {}, 1)  # no option for limits: @job's stay

    plain = run_script(script, project, "queue", "push", "tasks.plain", env=env)
    assert plain.returncode == 0 and "cannot import" not in plain.stderr
    job = get_job(db_path, plain.stdout.strip())
    assert job is not None and (job.queue, job.max_attempts) == ("default", 1)


def test_queue_push_of_a_function_it_cannot_import_warns_and_pushes_it_as_given(
    script: Path, project: Path, db_path: str
) -> None:
    (project / "broken.py").write_text("raise RuntimeError('no config\\nhere')\n")
    assert run_script(script, project, "--db", db_path, "migrate").returncode == 0
    for func, reason in [("elsewhere.tasks.send", "no module found"), ("broken.send", "RuntimeError: no config")]:
        result = run_script(script, project, "--db", db_path, "queue", "push", func, "--max-attempts", "2")
        assert result.returncode == 0, result
        warning, undeclared = result.stderr.splitlines()
        assert warning.startswith(f"chancy-lite: warning: cannot import {func} here (") and reason in warning
        assert "not declared" in undeclared
        job = get_job(db_path, result.stdout.strip())
        assert job is not None and (job.func, job.queue, job.max_attempts) == (func, "default", 2)


# ------------------------------------------------- stored text the CLI must print whatever it holds

# A file name from os.listdir of a non-UTF-8 name (a lone surrogate), a NUL, a terminal escape, a right-to-left
# override, an emoji and an accent.
ODD = "file \udcff.txt nul \x00 esc \x1b[31m rtl \u202e emoji \U0001f600 caf\u00e9"
ODD_TAG = "tag \udcff \x00 \u202e \U0001f600"
ODD_TASKS = """\
from chancy_lite import QueuedJob, job


@job(queue="odd")
def fail(*, text: str, context: QueuedJob) -> None:
    context.meta["seen"] = text
    context.meta["ratio"] = float("nan")  # meta may hold what JSON cannot spell
    context.meta["floor"] = float("-inf")
    raise RuntimeError("cannot open " + text)
"""
ENCODINGS = {
    "default": {},
    "PYTHONIOENCODING=ascii": {"PYTHONIOENCODING": "ascii"},
    "PYTHONIOENCODING=utf-8 (strict)": {"PYTHONIOENCODING": "utf-8"},
    "LANG=C": {"LANG": "C", "LC_ALL": "C"},
}


@dataclasses.dataclass
class Stored:
    project: Path
    db_path: str
    job_id: str


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """A file holding a job that failed in a real worker with ODD in its kwargs, meta and traceback."""
    script = Path(sys.executable).with_name("chancy-lite")
    if not script.exists():
        pytest.skip("the chancy-lite console script is not installed next to this Python")
    project = tmp_path_factory.mktemp("odd") / "project"
    project.mkdir()
    (project / "oddtasks.py").write_text(ODD_TASKS)
    db_path = str(project.parent / "jobs.db")
    with Chancy(db_path) as app:
        app.sync_migrate()
        app.sync_declare(Queue("odd", concurrency=1))
        app.sync_declare(Queue("tagged", tags={ODD_TAG}))
        job_id = str(app.sync_push(Job(func="oddtasks.fail", queue="odd", kwargs={"text": ODD})))
    with worker_process(script, project, "--db", db_path, "worker", "start") as log:
        job = wait_finished(db_path, job_id, log)
    assert job.state is QueuedJob.State.FAILED and job.meta["seen"] == ODD
    assert ODD in job.errors[0]["traceback"]
    return Stored(project, db_path, job_id)


def run_bytes(stored: Stored, env: dict[str, str], *argv: str | bytes) -> subprocess.CompletedProcess[bytes]:
    script = Path(sys.executable).with_name("chancy-lite")
    return subprocess.run(
        [str(script), "--db", stored.db_path, *argv], capture_output=True, timeout=60, cwd=stored.project,
        env=user_env(**env),
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_stored_odd_text_prints_in_any_output_encoding(stored: Stored, encoding: str) -> None:
    env = ENCODINGS[encoding]
    codec = "ascii" if env.get("PYTHONIOENCODING") == "ascii" else "utf-8"
    commands = [["job", "get", stored.job_id], ["job", "list"], ["job", "list", "--state", "failed"],
                ["queue", "list"], ["status"]]
    for argv in commands:
        result = run_bytes(stored, env, *argv)
        assert (result.returncode, result.stderr) == (0, b""), (argv, result)
        out = result.stdout.decode(codec)  # strict: every byte is valid in the terminal's encoding
        for raw in ("\x00", "\x1b", "\u202e"):  # nothing that drives the terminal or reorders the text
            assert raw not in out, (argv, out)
    shown = run_bytes(stored, env, "job", "get", stored.job_id).stdout.decode(codec)
    lines = shown.splitlines()
    assert lines[3].split() == ["state:", "failed"]
    kwargs = next(line for line in lines if line.startswith("kwargs:"))
    assert kwargs.split(None, 1)[1].startswith('{"text": "file \\udcff.txt nul \\u0000 esc \\u001b[31m rtl \\u202e')
    assert lines[-1].startswith("RuntimeError: cannot open file \\udcff.txt nul \\x00 esc \\x1b[31m rtl \\u202e")
    assert lines[-1].endswith("\\U0001f600 caf\\xe9" if codec == "ascii" else "\U0001f600 caf\u00e9")
    listed = table(run_bytes(stored, env, "job", "list").stdout.decode(codec))
    assert [row[:4] for row in listed[1:]] == [[stored.job_id, "odd", "oddtasks.fail", "failed"]]
    queues = table(run_bytes(stored, env, "queue", "list").stdout.decode(codec))
    tagged = next(row for row in queues if row[0] == "tagged")
    assert tagged[4].startswith("tag \\udcff \\x00 \\u202e ")


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_job_get_json_is_strict_json_in_any_output_encoding(stored: Stored, encoding: str) -> None:
    result = run_bytes(stored, ENCODINGS[encoding], "job", "get", stored.job_id, "--json")
    assert (result.returncode, result.stderr) == (0, b""), result
    text = result.stdout.decode("ascii")  # escaped, so no encoding can mangle it
    data = json.loads(text, parse_constant=_no_constants)
    assert data["kwargs"] == {"text": ODD}  # the exact text comes back, lone surrogate included
    assert data["meta"] == {"seen": ODD, "ratio": "NaN", "floor": "-Infinity"}
    assert ODD in data["errors"][0]["traceback"]
    assert (data["id"], data["state"], data["func"]) == (stored.job_id, "failed", "oddtasks.fail")


def test_an_argument_with_undecodable_bytes_is_a_user_mistake(stored: Stored, tmp_path: Path) -> None:
    result = run_bytes(stored, {}, "job", "get", b"\xff")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr == b"chancy-lite: error: '\\udcff' is not valid text: it holds bytes that are not UTF-8\n"
    script = Path(sys.executable).with_name("chancy-lite")
    created = subprocess.run(
        [str(script), "--db", os.fsencode(tmp_path / "x") + b"\xff.db", "migrate"], capture_output=True, timeout=60,
        env=user_env(),
    )
    assert created.returncode == 2 and created.stderr.count(b"\n") == 1 and b"not valid text" in created.stderr
    assert os.listdir(tmp_path) == []


def test_a_reader_that_stops_early_ends_the_output_quietly(script: Path, db_path: str) -> None:
    with Chancy(db_path) as app:
        app.sync_migrate()
        list(app.sync_push_many([Job(func=FUNC) for _ in range(2000)]))  # ~250 KB of table: more than a pipe holds
    process = subprocess.Popen(
        [str(script), "--db", db_path, "job", "list", "--limit", "2000"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=user_env(),
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"id ")
    process.stdout.close()  # as `| head -1` does
    err = process.stderr.read()
    assert process.wait(60) == 141, err
    assert err == b""


class AsciiOnlyStream(io.TextIOBase):
    """A stream of an embedding program that refuses non-ASCII text (chancy-lite cannot make it lenient)."""

    def write(self, text: str) -> int:
        text.encode("ascii")
        return len(text)


def test_an_internal_failure_is_not_reported_as_a_user_mistake(
    stored: Stored, capsys: pytest.CaptureFixture[str]
) -> None:
    with contextlib.redirect_stdout(AsciiOnlyStream()):
        code = main(["--db", stored.db_path, "job", "get", stored.job_id])
    err = capsys.readouterr().err
    assert code == 70, err
    assert "Traceback" in err and "UnicodeEncodeError" in err
    assert err.splitlines()[-1].startswith("chancy-lite: internal error: 'ascii' codec can't encode")


def test_python_dash_m_chancy_lite_is_the_command(db_path: str) -> None:
    assert run_process(sys.executable, "-m", "chancy_lite", "--db", db_path, "migrate").returncode == 0
    result = run_process(sys.executable, "-m", "chancy_lite", "--db", db_path, "check-migrations")
    assert result.returncode == 0 and "migrations are up to date" in result.stdout


def test_export_to_a_server_that_is_not_there_is_a_one_line_error(db: Cli) -> None:
    pytest.importorskip("psycopg")
    db("migrate")
    result = db("export", "--to", "postgresql://127.0.0.1:1/nowhere", "--dry-run")
    assert result.code == 2 and "cannot connect to the PostgreSQL database" in result.err, result
    assert "Traceback" not in result.err

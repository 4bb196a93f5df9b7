"""Bad input fails at once, in the caller, with a clear error, and leaves nothing half-written behind."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from chancy_lite import Chancy, Job, Queue, job
from chancy_lite.errors import (
    ChancyError,
    ConfigurationError,
    InvalidExecutorError,
    InvalidJobError,
    InvalidQueueError,
    MigrationsNeededError,
    NotADatabaseError,
    NotSerializableError,
)

FUNC = "tests.store.test_bad_input.work"
REPO = Path(__file__).resolve().parents[2]


def work(**kwargs: Any) -> None:
    pass


class Opaque:
    pass


def table_rows(db_path: str) -> dict[str, int]:
    """Row counts of every chancy_ table (except the migrations bookkeeping)."""
    conn = apsw.Connection(db_path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'chancy\\_%' ESCAPE '\\'"
                " AND name != 'chancy_migrations'"
            ).fetchall()
        ]
        return {name: conn.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in names}
    finally:
        conn.close()


@pytest.fixture
def empty(chancy: Chancy, db_path: str) -> Iterator[Chancy]:
    """A migrated Chancy; the test fails if anything was written to it."""
    yield chancy
    assert set(table_rows(db_path).values()) == {0}, table_rows(db_path)


def nested_function_job() -> Callable[..., Any]:
    def inner() -> None:
        pass

    return inner


# ------------------------------------------------------------ functions


@pytest.mark.parametrize(
    "func", [lambda: None, nested_function_job(), 42], ids=["lambda", "nested", "int"]
)
def test_a_function_that_cannot_be_imported_by_a_worker_is_refused(empty: Chancy, func: Any) -> None:
    with pytest.raises(InvalidJobError) as info:
        empty.sync_push(Job.from_func(func))
    assert str(info.value)
    with pytest.raises(InvalidJobError):
        Job(func=func)
    with pytest.raises(InvalidJobError):
        empty.sync_push(func)  # not a Job, not decorated


def test_lambda_and_nested_messages_say_what_to_do() -> None:
    with pytest.raises(InvalidJobError, match="lambda"):
        Job.from_func(lambda: None)
    with pytest.raises(InvalidJobError, match="module level"):
        Job.from_func(nested_function_job())
    with pytest.raises(InvalidJobError):
        job(lambda: None)


def test_push_of_something_that_is_not_a_job(empty: Chancy) -> None:
    for bad in ("tests.store.test_bad_input.work", None, {"func": FUNC}, Opaque()):
        with pytest.raises(InvalidJobError, match="Job"):
            empty.sync_push(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError):
        asyncio.run(empty.push(work))  # a plain (undecorated) function


@pytest.mark.parametrize("path", ["nodot", "a..b", "1x.y", ".a.b", "a.b.", "a b.c", "a.b-c", "", "a.<lambda>"])
def test_a_func_path_that_is_not_module_dot_name_is_refused(path: str) -> None:
    with pytest.raises(InvalidJobError, match="import path"):
        Job(func=path)


# ----------------------------------------------------------------- data


NOT_JSON: list[Any] = [{1: Opaque()}, Opaque(), float("nan"), float("inf"), b"bytes", dt.datetime(2030, 1, 1)]
NOT_JSON_IDS = ["nested", "object", "nan", "inf", "bytes", "datetime"]


@pytest.mark.parametrize("value", NOT_JSON, ids=NOT_JSON_IDS)
def test_non_json_kwargs_are_refused_at_push(empty: Chancy, value: Any) -> None:
    bad = Job(func=FUNC, kwargs={"ok": 1, "bad": value})
    with pytest.raises(NotSerializableError, match="kwargs"):
        empty.sync_push(bad)
    with pytest.raises(NotSerializableError):
        asyncio.run(empty.push(bad))
    with pytest.raises(NotSerializableError), empty.transaction() as conn:
        empty.sync_push_ex(conn, bad)


@pytest.mark.parametrize("value", NOT_JSON, ids=NOT_JSON_IDS)
def test_non_json_meta_is_refused_at_push(empty: Chancy, value: Any) -> None:
    with pytest.raises(NotSerializableError, match="meta"):
        empty.sync_push(Job(func=FUNC, meta={"deep": [{"bad": value}]}))


def test_not_serializable_is_also_a_type_error_and_a_chancy_error() -> None:
    assert issubclass(NotSerializableError, TypeError)
    assert issubclass(NotSerializableError, ValueError)
    assert issubclass(NotSerializableError, ChancyError)


@pytest.mark.parametrize("kwargs", [{1: "x"}, ["x"], "x=1"], ids=["int-key", "list", "str"])
def test_kwargs_must_be_a_dict_of_names(kwargs: Any) -> None:
    with pytest.raises(InvalidJobError):
        Job(func=FUNC, kwargs=kwargs)


# ------------------------------------------------------------ numbers


@pytest.mark.parametrize("value", [0, -1, 1.5, "3", None, True])
def test_max_attempts_below_one_or_not_an_int_is_refused(value: Any) -> None:
    with pytest.raises(InvalidJobError, match="max_attempts"):
        Job(func=FUNC, max_attempts=value)


@pytest.mark.parametrize("value", [1.5, "high", None, 2**63])
def test_priority_must_be_an_integer(value: Any) -> None:
    with pytest.raises(InvalidJobError, match="priority"):
        Job(func=FUNC, priority=value)


@pytest.mark.parametrize("value", ["2030-01-01", 0, None])
def test_scheduled_at_must_be_a_datetime(value: Any) -> None:
    with pytest.raises(InvalidJobError, match="scheduled_at"):
        Job(func=FUNC, scheduled_at=value)


@pytest.mark.parametrize("value", ["", 5])
def test_unique_key_must_be_a_non_empty_string(value: Any) -> None:
    with pytest.raises(InvalidJobError, match="unique_key"):
        Job(func=FUNC, unique_key=value)


# --------------------------------------------------------------- queues


BAD_QUEUE_NAMES = ["", " ", "has space", "a/b", "/abs", "-lead", "x" * 101, "tab\tname", "new\nline", None, 3]


@pytest.mark.parametrize("name", BAD_QUEUE_NAMES)
def test_a_bad_queue_name_is_refused_for_jobs_and_queues(name: Any) -> None:
    with pytest.raises(InvalidJobError, match="queue name"):
        Job(func=FUNC, queue=name)
    with pytest.raises(InvalidQueueError, match="queue name"):
        Queue(name)


@pytest.mark.parametrize(
    "fields",
    [
        {"rate_limit": 10},
        {"rate_limit_window": 60},
        {"rate_limit": 0, "rate_limit_window": 60},
        {"rate_limit": 5, "rate_limit_window": 0},
        {"concurrency": 0},
        {"concurrency": True},
        {"polling_interval": 0},
        {"polling_interval": "5"},
        {"tags": "gpu"},
        {"tags": {"(unclosed"}},
        {"state": "stopped"},
        {"executor": "noimportpath"},
        {"resume_at": "tomorrow"},
    ],
    ids=lambda f: ",".join(f),
)
def test_a_bad_queue_declaration_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidQueueError):
        Queue("q", **fields)


def test_non_json_executor_options_are_refused() -> None:
    with pytest.raises(NotSerializableError, match="executor_options"):
        Queue("q", executor_options={"bad": b"bytes"})


def test_sets_and_uuids_are_stored_as_lists_and_text(chancy: Chancy) -> None:
    """As Chancy 0.26's json_dumps: a set becomes a list; a UUID (such as a job id) its text, in kwargs and meta."""
    ident = uuid.uuid4()
    ref = chancy.sync_push(Job(func=FUNC, kwargs={"tags": {"a"}, "parent": ident}, meta={"ids": frozenset([ident])}))
    stored = chancy.sync_get_job(ref)
    assert stored is not None
    assert stored.kwargs == {"tags": ["a"], "parent": str(ident)} and stored.meta == {"ids": [str(ident)]}


def test_declare_of_a_bad_queue_writes_nothing(empty: Chancy) -> None:
    with pytest.raises(TypeError):
        empty.sync_declare("q")  # type: ignore[arg-type]
    with pytest.raises(InvalidQueueError, match="rate_limit"):
        empty.sync_declare(Queue("q", rate_limit=10))
    assert empty.sync_get_all_queues() == []


@pytest.mark.parametrize(
    ("executor", "match"),
    [
        ("nonsense.Exec", "cannot be imported.*no module found"),
        ("tests.custom_executor.Missing", "cannot be imported.*has no attribute 'Missing'"),
        ("tests.custom_executor.NOT_AN_EXECUTOR", "not an Executor class"),
        ("os.path.join", "not an Executor class"),
        ("tests.store.test_bad_input.Opaque", "not an Executor class"),
    ],
)
def test_an_executor_that_cannot_be_loaded_is_refused_at_declare(empty: Chancy, executor: str, match: str) -> None:
    queue = Queue("bad", executor=executor)  # a Queue object alone may name one: stored queues come from elsewhere
    with pytest.raises(InvalidExecutorError, match=match) as info:
        empty.sync_declare(queue)
    message = str(info.value)
    assert "'bad'" in message and executor in message and "Chancy.Executor.Threaded" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidQueueError)
    with pytest.raises(InvalidExecutorError):
        asyncio.run(empty.declare(queue, upsert=True))
    with pytest.raises(InvalidExecutorError), empty.transaction() as conn:
        empty.sync_declare_ex(conn, queue)
    assert empty.sync_get_all_queues() == []


def test_an_existing_queue_is_not_overwritten_with_a_bad_executor(chancy: Chancy) -> None:
    good = chancy.sync_declare(Queue("q", executor="tests.custom_executor.CustomExecutor"))
    with pytest.raises(InvalidExecutorError):
        chancy.sync_declare(Queue("q", executor="nonsense.Exec"), upsert=True)
    assert chancy.sync_get_queue("q") == good


def test_the_cli_refuses_a_bad_executor_in_one_line_and_stores_nothing(db_path: str) -> None:
    with Chancy(db_path) as app:
        app.sync_migrate()
    result = subprocess.run(
        [sys.executable, "-m", "chancy_lite.cli", "--db", db_path, "queue", "declare", "bad", "--executor",
         "nonsense.Exec"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "nonsense.Exec" in result.stderr and "cannot be imported" in result.stderr
    with Chancy(db_path) as app:
        assert app.sync_get_all_queues() == []


# ------------------------------------------------------------ push_many


def test_push_many_with_one_bad_job_pushes_nothing_of_its_batch(chancy: Chancy, db_path: str) -> None:
    jobs = [Job(func=FUNC, kwargs={"i": i}) for i in range(25)]
    jobs[15] = jobs[15].with_kwargs(i=b"not json")
    batches = chancy.sync_push_many(jobs, batch_size=10)
    first = next(batches)
    assert len(first) == 10
    with pytest.raises(NotSerializableError):
        next(batches)
    # The first batch is committed; nothing of the bad batch (nor what follows it).
    assert table_rows(db_path)["chancy_jobs"] == 10
    assert [j.kwargs["i"] for j in chancy.sync_get_jobs(first)] == list(range(10))


def test_async_push_many_with_one_bad_job_pushes_nothing_of_its_batch(chancy: Chancy, db_path: str) -> None:
    jobs: list[Any] = [Job(func=FUNC, kwargs={"i": i}) for i in range(8)]
    jobs[5] = lambda: None  # not a job at all

    async def scenario() -> list[int]:
        seen = []
        with pytest.raises(InvalidJobError):
            async for batch in chancy.push_many(jobs, batch_size=4):
                seen.append(len(batch))
        return seen

    assert asyncio.run(scenario()) == [4]
    assert table_rows(db_path)["chancy_jobs"] == 4


def test_push_many_ex_with_one_bad_job_pushes_nothing(empty: Chancy) -> None:
    jobs = [Job(func=FUNC, kwargs={"i": i}) for i in range(5)] + [Job(func=FUNC, meta={"x": float("nan")})]
    with pytest.raises(NotSerializableError), empty.transaction() as conn:
        empty.sync_push_many_ex(conn, jobs)
    # Even if the caller swallows the error and commits, the batch left nothing behind.
    with empty.transaction() as conn, pytest.raises(NotSerializableError):
        empty.sync_push_many_ex(conn, jobs)


def test_push_many_in_one_batch_with_a_bad_job_pushes_nothing(empty: Chancy) -> None:
    jobs = [Job(func=FUNC, kwargs={"i": i}) for i in range(5)] + [Job(func=FUNC, kwargs={"o": Opaque()})]
    with pytest.raises(NotSerializableError):
        list(empty.sync_push_many(jobs))


# ---------------------------------------------------------------- files


def test_a_path_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "jobs.db"
    with pytest.raises(ConfigurationError, match="does not exist"):
        Chancy(str(missing))
    with pytest.raises(ConfigurationError):
        Chancy(f"sqlite:///{missing}")
    assert not (tmp_path / "no").exists()


def test_a_directory_as_the_database_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="directory"):
        Chancy(str(tmp_path))


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a database\n" * 20, b"\x00" * 4096, b"SQLite format 2\x00" + b"\x01" * 100, b"x"],
    ids=["text", "zeros", "almost-header", "one-byte"],
)
def test_a_file_that_is_not_a_database_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    with pytest.raises(NotADatabaseError):
        app = Chancy(str(path))
        app.sync_migrate()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "notes.txt-wal").exists()
    assert not (tmp_path / "notes.txt-shm").exists()


def test_a_corrupt_database_body_is_a_not_a_database_error(tmp_path: Path) -> None:
    """A valid header over garbage: refused with our error (never apsw's), and the bytes stay as they were."""
    path = tmp_path / "broken.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(NotADatabaseError), Chancy(str(path)) as app:
        app.sync_migrate()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(("options", "match"), [({"synchronous": "SOMETIMES"}, "synchronous"),
                                                ({"busy_timeout": -1}, "busy_timeout")])
def test_bad_connection_options_are_configuration_errors(db_path: str, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Chancy(db_path, **options)


def test_an_empty_path_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Chancy("")
    with pytest.raises(ConfigurationError):
        Chancy("sqlite:///")


@pytest.mark.parametrize(
    "url",
    ["postgresql://user:s3cret@db.example.com:5432/jobs", "postgres://user:s3cret@localhost/jobs",
     "POSTGRESQL://user:s3cret@localhost/jobs", "postgresql+psycopg://user:s3cret@localhost/jobs"],
)
def test_a_postgres_url_is_refused_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Chancy's DSN pasted in: one clear error at Chancy(...), not a missing directory later, and no password."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        Chancy(url)
    message = str(info.value)
    assert "SQLite file path" in message and "sqlite:///" in message
    assert "Postgres DSNs are for Chancy itself" in message
    assert "does not exist" not in message
    assert "s3cret" not in message  # a DSN's password is never echoed
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dsn", ["host=localhost dbname=jobs user=me password=s3cret", "dbname=jobs"])
def test_a_postgres_keyword_dsn_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dsn: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="Chancy itself") as info:
        Chancy(dsn)
    assert "s3cret" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["mysql://me@localhost/jobs", "redis://localhost:6379/0", "file:///tmp/jobs.db"])
def test_any_other_url_scheme_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"SQLite file path .* sqlite:///path URL"):
        Chancy(url)


def test_a_sqlite_url_with_a_host_or_options_is_refused_not_turned_into_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite://jobs.db (two slashes) used to open a private in-memory database: the jobs were silently lost."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=r"sqlite:///jobs\.db"):
        Chancy("sqlite://jobs.db")
    with pytest.raises(ConfigurationError, match="options"):
        Chancy("sqlite:///jobs.db?mode=ro")
    assert list(tmp_path.iterdir()) == []
    with Chancy("SQLite:///jobs.db") as app:  # the scheme is case-insensitive
        assert app.path == str(tmp_path / "jobs.db")


def test_the_cli_refuses_a_postgres_url_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chancy_lite.cli", "--db", "postgresql://me:s3cret@localhost/jobs", "status"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "Chancy itself" in result.stderr and "s3cret" not in result.stderr


# ------------------------------------------------------- unmigrated files


JOB_ID = "0190d5b2-7a4e-7000-8000-000000000000"
# Every public method that needs the schema, with arguments (the sync_ twin takes the same ones).
SCHEMA_CALLS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "declare": ((Queue("q"),), {}),
    "get_queue": (("q",), {}),
    "get_all_queues": ((), {}),
    "pause_queue": (("q",), {}),
    "resume_queue": (("q",), {}),
    "delete_queue": (("q",), {}),
    "push": ((Job(func=FUNC),), {}),
    "push_many": (([Job(func=FUNC)],), {}),
    "get_job": ((JOB_ID,), {}),
    "get_jobs": (([JOB_ID],), {}),
    "list_jobs": ((), {}),
    "count_jobs": ((), {}),
    "cancel_job": ((JOB_ID,), {}),
    "retry_jobs": (([JOB_ID],), {}),
    "purge_jobs": (([JOB_ID],), {}),
    "get_all_workers": ((), {}),
    "wait_for_job": ((JOB_ID,), {"timeout": 5}),
    "wait_for_jobs": (([JOB_ID],), {"timeout": 5}),
}
EX_CALLS: dict[str, Any] = {
    "declare_ex": Queue("q"), "push_ex": Job(func=FUNC), "push_many_ex": [Job(func=FUNC)], "pause_queue_ex": "q",
    "resume_queue_ex": "q", "delete_queue_ex": "q", "cancel_job_ex": str(uuid.uuid4()),
    "retry_jobs_ex": [str(uuid.uuid4())], "purge_jobs_ex": [str(uuid.uuid4())],
}


def test_the_list_of_schema_calls_covers_every_public_method() -> None:
    public = {name[len("sync_"):] for name in dir(Chancy) if name.startswith("sync_")}
    # run_store runs whatever function it is given: its errors are those of that function's SQL.
    # notify needs no table: its events go out as datagrams.
    needs_no_schema = {"migrate", "is_up_to_date", "migration_status", "run_store", "notify", "notify_many"}
    assert public - needs_no_schema == set(SCHEMA_CALLS) | set(EX_CALLS)


def call_sync(app: Chancy, name: str) -> None:
    args, kwargs = SCHEMA_CALLS[name]
    result = getattr(app, f"sync_{name}")(*args, **kwargs)
    if name == "push_many":
        list(result)


async def call_async(app: Chancy, name: str) -> None:
    args, kwargs = SCHEMA_CALLS[name]
    if name == "push_many":
        async for _ in app.push_many(*args, **kwargs):
            pass
    else:
        await getattr(app, name)(*args, **kwargs)


@pytest.fixture(params=["new-file", "migrated-down-to-0", "other-apps-tables"])
def unmigrated(request: pytest.FixtureRequest, db_path: str) -> Iterator[Chancy]:
    with Chancy(db_path) as app:
        if request.param == "migrated-down-to-0":
            app.sync_migrate()
            app.sync_migrate(to_version=0)
        elif request.param == "other-apps-tables":
            with app.transaction() as conn:
                conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        yield app


def assert_says_migrate(error: MigrationsNeededError, db_path: str) -> None:
    message = str(error)
    assert f"chancy-lite --db {db_path} migrate" in message and "await chancy.migrate()" in message, message


@pytest.mark.parametrize("name", sorted(SCHEMA_CALLS))
def test_every_method_on_an_unmigrated_file_says_to_migrate(unmigrated: Chancy, db_path: str, name: str) -> None:
    with pytest.raises(MigrationsNeededError) as info:
        call_sync(unmigrated, name)
    assert_says_migrate(info.value, db_path)
    with pytest.raises(MigrationsNeededError) as info:
        asyncio.run(call_async(unmigrated, name))
    assert_says_migrate(info.value, db_path)
    assert unmigrated.sync_is_up_to_date() is False


@pytest.mark.parametrize("name", sorted(EX_CALLS))
def test_ex_methods_on_an_unmigrated_file_say_to_migrate(unmigrated: Chancy, db_path: str, name: str) -> None:
    with pytest.raises(MigrationsNeededError) as info, unmigrated.transaction() as conn:
        getattr(unmigrated, f"sync_{name}")(conn, EX_CALLS[name])
    assert_says_migrate(info.value, db_path)


def test_migrating_then_works(unmigrated: Chancy) -> None:
    with pytest.raises(MigrationsNeededError):
        unmigrated.sync_push(Job(func=FUNC))
    unmigrated.sync_migrate()
    assert unmigrated.sync_get_job(unmigrated.sync_push(Job(func=FUNC))) is not None


def test_a_table_missing_from_a_migrated_file_is_named(chancy: Chancy, db_path: str) -> None:
    """A damaged schema (a table dropped by hand): migrating would change nothing, so the error says so."""
    conn = apsw.Connection(db_path)
    try:
        conn.execute("DROP TABLE chancy_queues")
    finally:
        conn.close()
    assert chancy.sync_is_up_to_date() is True
    with pytest.raises(MigrationsNeededError, match="has no table chancy_queues") as info:
        chancy.sync_declare(Queue("q"))
    assert "--to-version 0" in str(info.value) and "backup" in str(info.value)
    assert chancy.sync_get_job(chancy.sync_push(Job(func=FUNC))) is not None  # what is left still works

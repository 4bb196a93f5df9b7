"""The file itself: connection settings, permissions, URLs, and where SQL is allowed to live."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import chancy_lite
from chancy_lite import Chancy, Job
from chancy_lite.db import connect
from chancy_lite.errors import DatabaseBusyError

PACKAGE = Path(chancy_lite.__file__).parent
TESTS = Path(__file__).resolve().parents[1]
SQL_MODULES = {"sql.py", "store.py"}


def pragma(chancy: Chancy, name: str) -> object:
    with chancy.connection() as conn:
        return conn.execute(f"PRAGMA {name}").fetchall()[0][0]


# ----------------------------------------------------------- connection


def test_the_connection_recipe(chancy: Chancy) -> None:
    assert str(pragma(chancy, "journal_mode")).lower() == "wal"
    assert pragma(chancy, "synchronous") == 1  # NORMAL
    assert pragma(chancy, "foreign_keys") == 1
    assert pragma(chancy, "journal_size_limit") > 0


def refused_begin_immediate(db_path: str) -> bool:
    """Whether another connection is refused the write lock right now (no waiting: busy timeout 0)."""
    other = apsw.Connection(db_path)
    other.set_busy_timeout(0)
    try:
        other.execute("BEGIN IMMEDIATE")
    except apsw.BusyError:
        return True
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    return False


def test_with_conn_takes_the_write_lock_before_any_write(chancy: Chancy, db_path: str) -> None:
    """``with conn:`` is BEGIN IMMEDIATE: the lock is held from the start, not from the first write (DEFERRED)."""
    assert not refused_begin_immediate(db_path)
    with chancy.connection() as conn, conn:
        conn.execute("SELECT 1").fetchall()  # a read only: under DEFERRED nothing would be locked yet
        assert refused_begin_immediate(db_path)
    assert not refused_begin_immediate(db_path)
    with chancy.transaction():
        assert refused_begin_immediate(db_path)
    conn = connect(db_path)  # the recipe worker children use
    try:
        with conn:
            assert refused_begin_immediate(db_path)
    finally:
        conn.close()
    assert not refused_begin_immediate(db_path)


OLD_APSW_PYTHON = os.environ.get("CHANCY_LITE_TEST_OLD_APSW_PYTHON")


@pytest.mark.skipif(
    not OLD_APSW_PYTHON,
    reason="set CHANCY_LITE_TEST_OLD_APSW_PYTHON to a python with apsw 3.50 (python -m venv v && v/bin/pip install "
    "apsw==3.50.4.0) to check that an apsw without transaction_mode is refused",
)
def test_an_apsw_without_transaction_mode_is_refused_clearly(db_path: str) -> None:
    code = (
        "import sys\n"
        "from chancy_lite import Chancy\n"
        "from chancy_lite.errors import DependencyTooOldError\n"
        "try:\n"
        "    Chancy(sys.argv[1]).sync_migrate()\n"
        "except DependencyTooOldError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run(
        [str(OLD_APSW_PYTHON), "-c", code, db_path], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 3, result.stderr
    assert "apsw >= 3.51.0.0" in result.stdout and "pip install --upgrade" in result.stdout
    assert not os.path.exists(db_path)  # refused before anything was created


def test_synchronous_full_on_request(db_path: str) -> None:
    with Chancy(db_path, synchronous="full") as app:
        app.sync_migrate()
        assert pragma(app, "synchronous") == 2  # FULL
    with Chancy(db_path) as app:
        assert pragma(app, "synchronous") == 1


def test_every_thread_and_the_async_pool_get_the_recipe(chancy: Chancy, db_path: str) -> None:
    """The async methods run on other threads with their own connections: they must be configured too."""
    async def from_pool() -> tuple[object, object]:
        def read() -> tuple[object, object]:
            return pragma(chancy, "foreign_keys"), pragma(chancy, "journal_mode")

        return await chancy._run(read)

    foreign_keys, journal_mode = asyncio.run(from_pool())
    assert foreign_keys == 1
    assert str(journal_mode).lower() == "wal"


def test_the_file_is_in_wal_mode_for_other_connections_too(chancy: Chancy, db_path: str) -> None:
    chancy.sync_push(Job(func="a.b"))
    conn = apsw.Connection(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "wal"  # persistent in the file
    finally:
        conn.close()


def test_the_database_file_is_private(chancy: Chancy, db_path: str) -> None:
    chancy.sync_push(Job(func="a.b"))
    for suffix in ("", "-wal", "-shm"):
        path = db_path + suffix
        if suffix == "":
            assert os.path.exists(path)
        if os.path.exists(path):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, suffix


def test_the_file_is_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "open.db"
        with Chancy(str(path)) as app:
            app.sync_migrate()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_an_existing_files_mode_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with Chancy(str(path)) as app:
        app.sync_migrate()
    os.chmod(path, 0o640)
    with Chancy(str(path)) as app:
        app.sync_push(Job(func="a.b"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_busy_timeout_waits_for_the_lock_then_gives_up_clearly(db_path: str) -> None:
    with Chancy(db_path, busy_timeout=0.3) as app:
        app.sync_migrate()
        blocker = apsw.Connection(db_path)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            start = time.monotonic()
            with pytest.raises(DatabaseBusyError):
                app.sync_push(Job(func="a.b"))
            assert 0.25 <= time.monotonic() - start < 5
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert app.sync_push(Job(func="a.b"))  # usable again once the lock is free


def test_a_writer_waits_for_the_lock_and_other_threads_keep_running(chancy: Chancy, db_path: str) -> None:
    """A push blocked on another connection's lock succeeds when it is released; meanwhile the process runs on."""
    blocker = apsw.Connection(db_path)
    blocker.execute("BEGIN IMMEDIATE")
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(chancy.sync_push(Job(func="a.b"))))
    thread.start()
    ticks = 0
    deadline = time.monotonic() + 10
    while ticks < 20 and time.monotonic() < deadline:  # would stall if the waiting thread held the GIL
        time.sleep(0.01)
        ticks += 1
    assert ticks == 20 and result == []
    blocker.execute("COMMIT")
    blocker.close()
    thread.join(20)
    assert len(result) == 1 and chancy.sync_get_job(result[0]) is not None  # type: ignore[arg-type]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_sqlite_urls(in_tmp: Path) -> None:
    absolute = in_tmp / "abs.db"
    with Chancy(f"sqlite:///{absolute}") as app:  # sqlite:////abs/path
        assert app.path == str(absolute)
        app.sync_migrate()
        ref = app.sync_push(Job(func="a.b"))
    with Chancy(str(absolute)) as same:
        assert same.sync_get_job(ref) is not None

    with Chancy("sqlite:///relative.db") as relative:  # sqlite:///relative/to/cwd
        assert relative.path == str(in_tmp / "relative.db")
        relative.sync_migrate()
    assert (in_tmp / "relative.db").exists()

    with Chancy(in_tmp / "pathlike.db") as pathlike:
        pathlike.sync_migrate()
        assert pathlike.sync_is_up_to_date()


def test_memory_databases_for_single_process_tests() -> None:
    """One shared in-memory database per Chancy, whichever thread (or the async pool) uses it."""
    for spelling in (":memory:", "sqlite://"):
        with Chancy(spelling) as app:
            app.sync_migrate()
            ref = app.sync_push(Job(func="a.b"))
            assert asyncio.run(app.get_job(ref)) is not None
            other = asyncio.run(app.push(Job(func="a.b")))
            assert [j.id for j in app.sync_get_jobs([ref, other])] == [ref, other]


def test_close_releases_every_connection(db_path: str) -> None:
    """After close, another connection can take an exclusive lock: nothing is left open."""
    app = Chancy(db_path)
    app.sync_migrate()
    app.sync_push(Job(func="a.b"))

    asyncio.run(app.get_all_queues())  # opens pool-thread connections as well
    app.close()
    conn = apsw.Connection(db_path)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")  # needs every other connection closed
        assert conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "delete"
    finally:
        conn.close()


# ------------------------------------------------------- source rules


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


SQL_PATTERN = re.compile(
    r"\b(SELECT\s+\S|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\S+\s+SET\b|DELETE\s+FROM\b|CREATE\s+(TABLE|(UNIQUE\s+)?INDEX|"
    r"TRIGGER|VIEW)\b|DROP\s+(TABLE|INDEX)\b|ALTER\s+TABLE\b|BEGIN(\s+(IMMEDIATE|EXCLUSIVE|DEFERRED))?\s*;?$|"
    r"COMMIT\b|ROLLBACK\b|PRAGMA\b|VACUUM\b)"
)


def string_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string constant (f-string parts included), except docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def only_pragmas(text: str) -> bool:
    return all(not part.strip() or part.strip().upper().startswith("PRAGMA") for part in text.split(";"))


def literal_text(node: ast.expr) -> str:
    """The text of a string literal or f-string (placeholders dropped), else its source."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "0" for v in node.values)
    return ast.unparse(node)


def executes_sql(node: ast.AST) -> bool:
    """A ``x.execute(...)`` call whose statement is written here or taken from sql.py."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    if node.func.attr not in {"execute", "executemany"} or not node.args:
        return False
    statement = node.args[0]
    if isinstance(statement, ast.Constant | ast.JoinedStr | ast.BinOp):
        return True
    return "sql." in ast.unparse(statement) or ".q." in ast.unparse(statement)


def test_sql_lives_only_in_sql_and_store() -> None:
    offenders = []
    for path in python_files(PACKAGE):
        # The core's sql.py and store.py, and those of a plugin package with tables of its own (plugins/cron/).
        if path.name in SQL_MODULES and (path.parent in (PACKAGE, PACKAGE / "export")
                                         or path.parent.parent == PACKAGE / "plugins"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        relative = path.relative_to(PACKAGE.parent)
        in_db = path == PACKAGE / "db.py"
        for lineno, text in string_literals(tree):
            match = SQL_PATTERN.search(text)
            if match is None or (in_db and only_pragmas(text)):
                continue  # db.py's connection recipe sets PRAGMAs, nothing else
            offenders.append(f"{relative}:{lineno}: {match.group(0)!r} in {text[:60]!r}")
        for node in ast.walk(tree):
            if executes_sql(node) and not (in_db and only_pragmas(literal_text(node.args[0]))):  # type: ignore[attr-defined]
                offenders.append(f"{relative}:{node.lineno}: {ast.unparse(node)[:80]}")  # type: ignore[attr-defined]
    assert offenders == [], "SQL outside sql.py/store.py:\n" + "\n".join(offenders)


def test_the_sql_scanner_would_catch_sql() -> None:
    """Guard the guard: the patterns above do recognise SQL (and leave prose alone)."""
    caught = [
        "SELECT id FROM chancy_jobs",
        "INSERT INTO chancy_jobs (id) VALUES (?)",
        "UPDATE chancy_jobs SET state = 'failed'",
        "DELETE FROM chancy_jobs WHERE id = ?",
        "CREATE UNIQUE INDEX x ON y (z)",
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "BEGIN IMMEDIATE",
    ]
    prose = ["select a queue", "the job was deleted from the queue", "Update the worker", "begin the claim"]
    assert all(SQL_PATTERN.search(s) for s in caught)
    assert not any(SQL_PATTERN.search(s) for s in prose)


def imports_of(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield node.lineno, str(node.args[0].value)


def test_nothing_imports_the_stdlib_sqlite3_module() -> None:
    """SPEC §6: two SQLite libraries in one process corrupt the file's locks. apsw only."""
    offenders = []
    for root in (PACKAGE, TESTS):
        for path in python_files(root):
            for lineno, module in imports_of(ast.parse(path.read_text(), str(path))):
                if module == "sqlite3" or module.startswith(("sqlite3.", "_sqlite3")):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: imports {module}")
    assert offenders == []


def test_importing_every_module_does_not_load_sqlite3() -> None:
    """Transitive imports count too: load the whole package in a fresh interpreter and look."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import chancy_lite\n"
        "for info in pkgutil.walk_packages(chancy_lite.__path__, 'chancy_lite.'):\n"
        "    if info.name == 'chancy_lite.__main__':\n"
        "        continue\n"  # it runs the command when imported
        "    try:\n"
        "        importlib.import_module(info.name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if (exc.name or '').startswith('chancy_lite'):\n"
        "            raise\n"  # an optional third-party dependency may be missing; our own modules may not
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlite3', '_sqlite3'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PACKAGE.parent
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""

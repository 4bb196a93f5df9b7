"""Schema migrations up, down and up again; refusing newer files; prefixes; the claim's index."""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from chancy_lite import Chancy, Job
from chancy_lite.errors import SchemaTooNewError
from chancy_lite.sql import CORE_MIGRATIONS

CORE_TABLES = {
    "chancy_jobs", "chancy_queues", "chancy_workers", "chancy_leader", "chancy_queue_rate_limits",
    "chancy_key_rate_limits", "chancy_job_counts",
}
# The default plugins' own: Metrics and the WorkflowPlugin.
DEFAULT_PLUGIN_TABLES = {"chancy_metrics", "chancy_metric_definitions", "chancy_workflows", "chancy_workflow_steps"}
# What a default app migrates, in order (the core, then each plugin's key in plugin order), and the way down.
UP = [*(f"chancy {v} -> {v + 1}" for v in range(len(CORE_MIGRATIONS))), "metrics 0 -> 1", "workflow 0 -> 1"]
DOWN = ["workflow 1 -> 0", "metrics 1 -> 0", *(f"chancy {v} -> {v - 1}" for v in range(len(CORE_MIGRATIONS), 0, -1))]


@pytest.fixture
def raw(db_path: str) -> Iterator[apsw.Connection]:
    """A plain apsw connection on the same file, to look at the schema from outside."""
    conn = apsw.Connection(db_path)
    conn.set_busy_timeout(10_000)
    yield conn
    conn.close()


def schema(conn: apsw.Connection, prefix: str = "chancy_") -> dict[str, tuple[str, str | None]]:
    """Every table and index whose name starts with ``prefix``: name -> (type, sql)."""
    rows = conn.execute(
        "SELECT name, type, sql FROM sqlite_master WHERE name LIKE ? ESCAPE '\\' ORDER BY name",
        (prefix.replace("_", "\\_") + "%",),
    ).fetchall()
    return {name: (type_, sql) for name, type_, sql in rows}


def stored_version(conn: apsw.Connection, prefix: str = "chancy_") -> int | None:
    rows = conn.execute(f"SELECT version FROM {prefix}migrations WHERE key = 'chancy'").fetchall()
    return rows[0][0] if rows else None


def test_up_down_to_zero_and_up_again(db_path: str, raw: apsw.Connection) -> None:
    with Chancy(db_path) as app:
        assert app.sync_is_up_to_date() is False
        ran = app.sync_migrate()
        assert ran == UP
        assert app.sync_is_up_to_date() is True
        tables = {name for name, (type_, _) in schema(raw).items() if type_ == "table"}
        assert tables == CORE_TABLES | DEFAULT_PLUGIN_TABLES | {"chancy_migrations"}
        assert stored_version(raw) == len(CORE_MIGRATIONS)
        app.sync_push(Job(func="a.b"))

        down = app.sync_migrate(to_version=0)
        assert down == DOWN
        assert schema(raw) == {}  # every chancy_ table and index is gone, the migrations table too
        assert app.sync_is_up_to_date() is False

        app.sync_migrate()
        assert app.sync_is_up_to_date() is True
        assert set(schema(raw)) >= CORE_TABLES
        assert app.sync_list_jobs() == []  # the old rows went with the tables


def test_migrate_to_zero_leaves_other_tables_alone(db_path: str, raw: apsw.Connection) -> None:
    with raw:
        raw.execute("CREATE TABLE my_app_orders (id INTEGER PRIMARY KEY); INSERT INTO my_app_orders VALUES (1)")
    with Chancy(db_path) as app:
        app.sync_migrate()
        app.sync_migrate(to_version=0)
    assert raw.execute("SELECT id FROM my_app_orders").fetchall() == [(1,)]


def test_a_fresh_schema_equals_one_migrated_down_and_up_again(tmp_path: Path, db_path: str) -> None:
    other_path = str(tmp_path / "fresh.db")
    with Chancy(db_path) as app:
        app.sync_migrate()
        app.sync_migrate(to_version=0)
        app.sync_migrate()
    with Chancy(other_path) as fresh:
        fresh.sync_migrate()
    cycled_conn, fresh_conn = apsw.Connection(db_path), apsw.Connection(other_path)
    try:
        cycled, fresh_schema = schema(cycled_conn), schema(fresh_conn)
    finally:
        cycled_conn.close()
        fresh_conn.close()
    assert cycled == fresh_schema
    assert len(fresh_schema) > len(CORE_TABLES)  # indexes are compared too


def test_migrate_is_idempotent(chancy: Chancy, raw: apsw.Connection) -> None:
    before = schema(raw)
    assert chancy.sync_migrate() == []
    assert schema(raw) == before


def test_migrate_to_an_intermediate_and_too_high_version(db_path: str, raw: apsw.Connection) -> None:
    with Chancy(db_path) as app:
        app.sync_migrate(to_version=1)
        assert stored_version(raw) == 1
        app.sync_migrate(to_version=len(CORE_MIGRATIONS) + 5)  # capped at the newest
        assert stored_version(raw) == len(CORE_MIGRATIONS)
        assert app.sync_is_up_to_date()


def test_a_file_migrated_by_newer_code_is_refused(chancy: Chancy, db_path: str, raw: apsw.Connection) -> None:
    newer = len(CORE_MIGRATIONS) + 1
    with raw:
        raw.execute("UPDATE chancy_migrations SET version = ? WHERE key = 'chancy'", (newer,))
    before = schema(raw)
    with Chancy(db_path) as app:
        with pytest.raises(SchemaTooNewError) as info:
            app.sync_migrate()
        assert str(newer) in str(info.value)
        with pytest.raises(SchemaTooNewError):
            app.sync_migrate(to_version=0)
        with pytest.raises(SchemaTooNewError):
            app.sync_is_up_to_date()
    # Nothing was changed by the refusals.
    assert schema(raw) == before
    assert stored_version(raw) == newer


def test_a_custom_prefix_keeps_its_own_tables(db_path: str, raw: apsw.Connection) -> None:
    with Chancy(db_path, prefix="myq_") as custom, Chancy(db_path) as default:
        assert custom.sync_is_up_to_date() is False
        custom.sync_migrate()
        assert custom.sync_is_up_to_date() is True
        assert default.sync_is_up_to_date() is False  # the default prefix is still unmigrated
        assert {name for name, (t, _) in schema(raw, "myq_").items() if t == "table"} == {
            name.replace("chancy_", "myq_") for name in CORE_TABLES | DEFAULT_PLUGIN_TABLES | {"chancy_migrations"}
        }
        assert schema(raw, "chancy_") == {}

        default.sync_migrate()
        ref = custom.sync_push(Job(func="a.b"))
        assert raw.execute("SELECT id FROM myq_jobs").fetchall() == [(ref.identifier,)]
        assert raw.execute("SELECT count(*) FROM chancy_jobs").fetchall() == [(0,)]
        assert default.sync_get_job(ref) is None

        custom.sync_migrate(to_version=0)
        assert schema(raw, "myq_") == {}
        assert set(schema(raw, "chancy_")) >= CORE_TABLES


# ------------------------------------------------------- concurrent migrators

RACERS = 4
ROUNDS = 20


def _race(jobs: list[tuple[str, int | None]], barrier: Any, results: Any) -> None:
    """In a spawned process: for each (path, to_version), wait for every racer, then migrate at the same moment."""
    for path, to_version in jobs:
        try:
            barrier.wait(timeout=60)
            with Chancy(path) as app:
                ran = app.sync_migrate(to_version=to_version)
            results.put((path, os.getpid(), ran, None))
        except BaseException:
            results.put((path, os.getpid(), None, traceback.format_exc()))


def test_concurrent_migrators_serialise_and_the_losers_find_nothing_to_do(tmp_path: Path) -> None:
    """Several processes migrating one fresh file at once (and then migrating another down to 0 at once): every
    one succeeds, exactly one of them does the work, and the schema ends complete (or gone) at the right version."""
    up = [str(tmp_path / f"up-{r}.db") for r in range(ROUNDS)]
    down = [str(tmp_path / f"down-{r}.db") for r in range(ROUNDS)]
    for path in down:
        with Chancy(path) as app:
            app.sync_migrate()
    jobs: list[tuple[str, int | None]] = [job for r in range(ROUNDS) for job in ((up[r], None), (down[r], 0))]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    racers = [ctx.Process(target=_race, args=(jobs, barrier, results)) for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    try:
        reports: list[tuple[str, int, list[str] | None, str | None]] = []
        deadline = time.monotonic() + 120
        while len(reports) < RACERS * len(jobs) and time.monotonic() < deadline:
            try:
                reports.append(results.get(timeout=1))
            except queue.Empty:
                if not any(r.is_alive() for r in racers):
                    break
        for racer in racers:
            racer.join(30)
    finally:
        for racer in racers:
            if racer.is_alive():
                racer.kill()
                racer.join()
    failures = [error for _, _, _, error in reports if error is not None]
    assert failures == [], failures[0]
    assert len(reports) == RACERS * len(jobs)
    assert [r.exitcode for r in racers] == [0] * RACERS
    steps_up, steps_down = UP, DOWN
    for path, to_version in jobs:
        ran = sorted((r for p, _, r, _ in reports if p == path), key=len)
        assert ran == [[]] * (RACERS - 1) + [steps_up if to_version is None else steps_down], path
        conn = apsw.Connection(path)
        try:
            if to_version is None:
                tables = CORE_TABLES | DEFAULT_PLUGIN_TABLES | {"chancy_migrations"}
                assert {n for n, (t, _) in schema(conn).items() if t == "table"} == tables
                assert stored_version(conn) == len(CORE_MIGRATIONS)
            else:
                assert schema(conn) == {}
        finally:
            conn.close()


@pytest.mark.parametrize("prefix", ["", "1abc_", "my-q_", "x; DROP TABLE y; --"])
def test_an_unsafe_prefix_is_refused(db_path: str, prefix: str) -> None:
    with pytest.raises(ValueError):
        Chancy(db_path, prefix=prefix)


# --------------------------------------------------------------- the claim


def claim_params(n: int) -> dict[str, object]:
    return {"queue": "default", "now": 10**16, "worker_id": "w", "pid": 1, "pid_start": None, "n": n}


@pytest.mark.parametrize(("statement", "n"), [("CLAIM_JOB", 1), ("CLAIM_JOBS", 10)])
def test_the_claim_uses_the_partial_covering_index(chancy: Chancy, statement: str, n: int) -> None:
    # Many finished rows and a few claimable ones, then fresh statistics: the plan must not change.
    with chancy.transaction() as conn:
        refs = chancy.sync_push_many_ex(conn, [Job(func="a.b", priority=i % 3) for i in range(3000)])
    for ref in refs[:2900]:
        chancy.sync_cancel_job(ref)
    with chancy.connection() as conn:
        conn.execute("ANALYZE")
        plan = chancy.store.explain(conn, statement, claim_params(n))
    text = "\n".join(plan)
    assert "USING COVERING INDEX chancy_jobs_claim_unkeyed" in text, text
    assert "TEMP B-TREE" not in text, text  # the index serves the ORDER BY: no sort
    assert not any(line.startswith("SCAN") for line in plan), text


def test_the_claim_takes_priority_then_push_order(chancy: Chancy) -> None:
    """What the index serves: higher priority first, then oldest id."""
    low = [chancy.sync_push(Job(func="a.b", priority=0)) for _ in range(3)]
    high = [chancy.sync_push(Job(func="a.b", priority=5)) for _ in range(2)]
    with chancy.transaction() as conn:
        claimed = chancy.store.claim_jobs(conn, "default", 4, now=chancy.now(), worker_id="w", pid=1, pid_start=None)
    assert [j.id for j in claimed] == [*high, *low[:2]]

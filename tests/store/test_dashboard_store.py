"""The dashboard's reads (Store.page_job_ids, count_jobs_capped, ...): what they return, and that each goes through
an index (EXPLAIN QUERY PLAN), so a page costs the same with a million jobs."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from chancy_lite import Chancy, sql
from chancy_lite.store import STATE_VALUES, CappedCount, JobFilter
from chancy_lite.utils import chancy_uuids

INSERT = (
    "INSERT INTO {p}jobs (id, queue, func, state, priority, attempts, max_attempts, created_at, started_at,"
    " completed_at, scheduled_at, taken_by, holder_pid) VALUES (?, ?, ?, ?, ?, ?, 3, ?, ?, ?, ?, ?, ?)"
)


def fill(app: Chancy, rows: list[tuple[str, str, str, int, int]]) -> list[str]:
    """Insert jobs (queue, func, state, priority, attempts) directly, in id order; returns their ids."""
    ids = chancy_uuids(len(rows))
    now = app.now()
    params = []
    for job_id, (queue, func, state, priority, attempts) in zip(ids, rows, strict=True):
        finished = state in ("succeeded", "failed")
        running = state == "running"
        params.append((job_id, queue, func, state, priority, attempts, now, now if running or finished else None,
                       now if finished else None, now, "w" if running else None, 1 if running else None))
    with app.connection() as conn, conn:
        conn.executemany(INSERT.format(p=app.prefix), params)
    return ids


@pytest.fixture
def mixed(chancy: Chancy) -> Iterator[tuple[Chancy, dict[str, tuple[str, str, str, int, int]]]]:
    rng = random.Random(7)
    rows = []
    for _ in range(600):
        state = rng.choice(STATE_VALUES)
        rows.append((rng.choice(["a", "b", "c"]), rng.choice(["app.mail.send", "app.report.build"]), state,
                     rng.randrange(3), rng.randrange(3)))
    ids = fill(chancy, rows)
    yield chancy, dict(zip(ids, rows, strict=True))


def expected(jobs: dict[str, tuple[str, str, str, int, int]], flt: JobFilter, before: str | None = None) -> list[str]:
    def keep(job_id: str) -> bool:
        queue, func, state, priority, attempts = jobs[job_id]
        values = {"priority": priority, "attempts": attempts}
        ops = {"=": lambda a, b: a == b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
               ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
        return (
            state in flt.states and (flt.queue is None or queue == flt.queue)
            and (flt.func is None or func == flt.func)
            and all(text.lower() in func.lower() for text in flt.func_contains)
            and all(ops[op](values[column], value) for column, op, value in flt.compare)
            and (before is None or job_id < before)
        )

    return sorted((i for i in jobs if keep(i)), reverse=True)


FILTERS = [
    JobFilter(),
    JobFilter(states=("failed",)),
    JobFilter(states=("succeeded",), queue="b"),
    JobFilter(states=("running",)),
    JobFilter(states=("running",), queue="c"),
    JobFilter(states=("pending",)),
    JobFilter(states=("pending", "retrying"), queue="a"),
    JobFilter(queue="c"),
    JobFilter(func="app.mail.send"),
    JobFilter(states=("failed", "succeeded"), func_contains=("REPORT",)),
    JobFilter(func_contains=("mail", "send")),
    JobFilter(compare=(("priority", ">=", 1), ("attempts", "<", 2))),
    JobFilter(states=("failed",), queue="nope"),
    JobFilter(states=()),
]


@pytest.mark.parametrize("flt", FILTERS, ids=repr)
def test_pages_hold_the_newest_matching_jobs_and_page_on(mixed, flt: JobFilter) -> None:
    app, jobs = mixed
    want = expected(jobs, flt)
    with app.connection() as conn:
        first = app.store.page_job_ids(conn, flt, limit=25)
        assert first == want[:25]
        if len(first) == 25:
            second = app.store.page_job_ids(conn, flt, before=first[-1], limit=25)
            assert second == expected(jobs, flt, before=first[-1])[:25]


@pytest.mark.parametrize("walk", [20_000, 30], ids=["the walk fills the page", "the walk falls short"])
def test_a_backlog_of_waiting_jobs_is_paged_along_the_ids(mixed, monkeypatch: pytest.MonkeyPatch, walk: int) -> None:
    app, jobs = mixed
    monkeypatch.setattr(app.store, "FEW_WAITING", 5)  # every waiting set is now "many"
    monkeypatch.setattr(app.store, "WAITING_WALK", walk)
    for flt in (JobFilter(states=("pending",)), JobFilter(states=("retrying",), queue="b"),
                JobFilter(states=("pending",), func_contains=("mail",))):
        with app.connection() as conn:
            first = app.store.page_job_ids(conn, flt, limit=10)
            assert first == expected(jobs, flt)[:10]
            assert app.store.page_job_ids(conn, flt, before=first[-1], limit=10) == expected(
                jobs, flt, before=first[-1])[:10]


def test_func_contains_is_a_literal_substring(chancy: Chancy) -> None:
    fill(chancy, [("q", "app.a_b", "failed", 0, 1), ("q", "app.axb", "failed", 0, 1), ("q", "app.50%", "failed", 0, 1)])
    with chancy.connection() as conn:
        def funcs(text: str) -> list[str]:
            ids = chancy.store.page_job_ids(conn, JobFilter(func_contains=(text,)), limit=10)
            return sorted(job.func for job, _ in chancy.store.get_job_rows(conn, ids))

        assert funcs("a_b") == ["app.a_b"]
        assert funcs("50%") == ["app.50%"]
        assert funcs("APP.A") == ["app.a_b", "app.axb"]


def test_counts_are_exact_below_the_cap_and_floors_at_it(mixed) -> None:
    app, jobs = mixed
    with app.connection() as conn:
        exact = app.store.count_jobs_capped(conn, cap=10_000)
        capped = app.store.count_jobs_capped(conn, cap=50)
        in_b = app.store.count_jobs_capped(conn, "b", cap=10_000)
    for state in STATE_VALUES:
        n = sum(1 for row in jobs.values() if row[2] == state)
        assert exact[state] == CappedCount(n, True)
        assert sum(1 for row in jobs.values() if row[2] == state and row[0] == "b") == in_b[state].count
        if state == "running":
            assert capped[state] == CappedCount(n, True)  # running jobs are few: always exact
        elif state in ("succeeded", "failed"):
            assert capped[state] == CappedCount(min(n, 50), n < 50)
    waiting = capped["pending"].count + capped["retrying"].count
    assert waiting == 50 and not capped["pending"].exact and not capped["retrying"].exact


def test_finished_since_and_funcs(chancy: Chancy) -> None:
    fill(chancy, [("q", "app.b", "succeeded", 0, 1), ("q", "app.a", "failed", 0, 1), ("q", "app.c", "pending", 0, 0)])
    with chancy.connection() as conn:
        now = chancy.now()
        assert chancy.store.count_finished_since(conn, now - 1_000_000, cap=10) == CappedCount(2, True)
        assert chancy.store.count_finished_since(conn, now - 1_000_000, cap=1) == CappedCount(1, False)
        assert chancy.store.count_finished_since(conn, now + 1, cap=10) == CappedCount(0, True)
        assert chancy.store.distinct_funcs(conn) == ["app.a", "app.b", "app.c"]


def test_job_rows_come_with_their_holder(chancy: Chancy) -> None:
    ids = fill(chancy, [("q", "app.a", "running", 0, 0), ("q", "app.b", "pending", 0, 0)])
    with chancy.connection() as conn:
        rows = chancy.store.get_job_rows(conn, [ids[1], "missing", ids[0]])
    assert [(str(job.id), taken_by) for job, taken_by in rows] == [(ids[1], None), (ids[0], "w")]


def test_data_version_moves_when_another_connection_commits(chancy: Chancy) -> None:
    own = chancy.connect()
    try:
        before = chancy.store.data_version(own)
        assert chancy.store.data_version(own) == before
        fill(chancy, [("q", "app.a", "pending", 0, 0)])
        assert chancy.store.data_version(own) != before
    finally:
        own.close()


# ------------------------------------------------------------------ query plans

PARAMS = {"state": "failed", "queue": "q", "before": "~", "limit": 50, "cap": 100, "since": 0, "func": "x", "scan": 9,
          "func_like0": "%x%"}


def plan(app: Chancy, name: str, where: str = "") -> str:
    text = getattr(app.store.q, name)
    if "{where}" in text:
        text = text.format(where=where)
    with app.connection() as conn:
        return " | ".join(row[-1] for row in conn.execute(sql.EXPLAIN + text, PARAMS).fetchall())


@pytest.mark.parametrize(("name", "where", "wanted"), [
    ("QUEUES_WITH_FINISHED", "", "COVERING INDEX chancy_jobs_finished_by_queue (state=? AND queue>?)"),
    ("PAGE_FINISHED_IDS", "", "COVERING INDEX chancy_jobs_finished_by_queue (state=? AND queue=? AND id<?)"),
    ("PAGE_FINISHED_IDS", sql.PAGE_FUNC_EQUALS, "INDEX chancy_jobs_finished_by_queue (state=? AND queue=? AND id<?)"),
    ("PAGE_RUNNING_IDS", sql.PAGE_QUEUE, "INDEX chancy_jobs_running"),
    ("PAGE_FEW_WAITING_IDS", sql.PAGE_QUEUE, "INDEX chancy_jobs_due (queue=?)"),
    ("PAGE_MANY_WAITING_IDS", sql.PAGE_QUEUE, "INDEX sqlite_autoindex_chancy_jobs_1 (id<?)"),
    ("COUNT_FINISHED_CAPPED", "", "COVERING INDEX chancy_jobs_finished_by_queue (state=?)"),
    ("COUNT_FINISHED_IN_QUEUE_CAPPED", "", "COVERING INDEX chancy_jobs_finished_by_queue (state=? AND queue=?)"),
    ("COUNT_RUNNING_BY_QUEUE", "", "INDEX chancy_jobs_running"),
    ("COUNT_WAITING_CAPPED", "", "COVERING INDEX chancy_jobs_due"),
    ("COUNT_WAITING_IN_QUEUE_CAPPED", "", "COVERING INDEX chancy_jobs_due (queue=?)"),
    ("COUNT_FINISHED_SINCE_CAPPED", "", "INDEX chancy_jobs_finished (completed_at>?)"),
])
def test_each_dashboard_read_goes_through_its_index(chancy: Chancy, name: str, where: str, wanted: str) -> None:
    text = plan(chancy, name, where)
    assert wanted in text, text
    # The pages of finished jobs and of a backlog come out of their index in order: nothing is sorted.
    if name in ("PAGE_FINISHED_IDS", "PAGE_MANY_WAITING_IDS"):
        assert "TEMP B-TREE" not in text, text


def test_the_workflow_list_pages_through_an_index(chancy: Chancy) -> None:
    from chancy_lite.plugins.workflow import store_for

    q = store_for(chancy).q
    with chancy.connection() as conn:
        for statement in (q.PAGE_WORKFLOW_IDS, q.PAGE_WORKFLOW_IDS_IN_STATE):
            text = " | ".join(row[-1] for row in conn.execute(
                sql.EXPLAIN + statement, {"state": "failed", "before": "~", "limit": 10}).fetchall())
            assert "SEARCH" in text and "TEMP B-TREE" not in text, text

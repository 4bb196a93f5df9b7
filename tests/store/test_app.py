"""Every public ``Chancy`` method, in both its sync (``sync_x``) and async (``x``) form, on a real file."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import multiprocessing
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import apsw
import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob, Reference, job
from chancy_lite.utils import UTC, chancy_uuid
from chancy_lite.wake import QUEUES_CHANGED, WORKER, Channel, Listener
from tests.conftest import wait_until

FUNC = "tests.store.test_app.work"
PENDING, SUCCEEDED, FAILED = QueuedJob.State.PENDING, QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED


def work(*, n: int = 0) -> int:
    return n


@job(queue="decorated")
def decorated_work() -> None:
    pass


def a_job(n: int = 0, **fields: Any) -> Job:
    return Job(func=FUNC, kwargs={"n": n}, **fields)


class Api:
    """Calls ``chancy.sync_<name>`` or runs ``chancy.<name>`` to completion, so one test covers both forms.

    Async generators are collected into a list; sync generators too, so both forms return the same shape.
    """

    def __init__(self, chancy: Chancy, mode: str) -> None:
        self.chancy = chancy
        self.mode = mode

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self.mode == "sync":
            method = getattr(self.chancy, f"sync_{name}")

            def call_sync(*args: Any, **kwargs: Any) -> Any:
                result = method(*args, **kwargs)
                return list(result) if inspect.isgenerator(result) else result

            return call_sync
        method = getattr(self.chancy, name)
        assert inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method), name

        def call_async(*args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                result = method(*args, **kwargs)
                if inspect.isasyncgen(result):
                    return [item async for item in result]
                return await result

            return asyncio.run(run())

        return call_async


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, chancy: Chancy) -> Api:
    return Api(chancy, request.param)


def raw(db_path: str) -> apsw.Connection:
    """An independent apsw connection, to look at what was committed."""
    conn = apsw.Connection(db_path)
    conn.set_busy_timeout(10_000)
    return conn


def count_jobs(db_path: str, where: str = "1") -> int:
    conn = raw(db_path)
    try:
        return conn.execute(f"SELECT count(*) FROM chancy_jobs WHERE {where}").fetchall()[0][0]
    finally:
        conn.close()


def job_row(db_path: str, job_id: str) -> tuple[Any, ...] | None:
    conn = raw(db_path)
    try:
        rows = conn.execute("SELECT * FROM chancy_jobs WHERE id = ?", (job_id,)).fetchall()
        return tuple(rows[0]) if rows else None
    finally:
        conn.close()


def test_every_method_has_a_sync_and_an_async_form() -> None:
    names = [
        "migrate", "is_up_to_date", "declare", "declare_ex", "push", "push_ex", "push_many", "push_many_ex",
        "get_job", "get_jobs", "wait_for_job", "wait_for_jobs", "cancel_job", "retry_jobs", "purge_jobs",
        "get_queue", "get_all_queues", "pause_queue", "resume_queue", "delete_queue", "get_all_workers",
    ]
    for name in names:
        assert inspect.iscoroutinefunction(getattr(Chancy, name)) or inspect.isasyncgenfunction(
            getattr(Chancy, name)
        ), name
        assert callable(getattr(Chancy, f"sync_{name}")), name
        assert not inspect.iscoroutinefunction(getattr(Chancy, f"sync_{name}")), name


# ---------------------------------------------------------------- migrate


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_migrate_and_is_up_to_date(db_path: str, mode: str) -> None:
    with Chancy(db_path) as app:
        api = Api(app, mode)
        assert api.is_up_to_date() is False
        assert api.migrate() != []
        assert api.is_up_to_date() is True
        assert api.migrate() == []  # nothing left to do
        api.migrate(to_version=0)
        assert api.is_up_to_date() is False
        with pytest.raises(ValueError):
            api.migrate(to_version=-1)


# ---------------------------------------------------------------- queues


def test_declare_get_and_upsert(api: Api) -> None:
    first = Queue("mail", concurrency=2, polling_interval=3)
    assert api.declare(first) == first
    assert api.get_queue("mail") == first

    changed = Queue("mail", concurrency=8, tags={"gpu"}, rate_limit=5, rate_limit_window=1)
    assert api.declare(changed) == first  # without upsert: the stored one, unchanged
    assert api.get_queue("mail") == first

    assert api.declare(changed, upsert=True) == changed
    assert api.get_queue("mail") == changed

    api.declare(Queue("alpha"))
    assert [q.name for q in api.get_all_queues()] == ["alpha", "mail"]


def test_declare_with_a_non_queue_is_refused(api: Api) -> None:
    with pytest.raises(TypeError):
        api.declare("mail")


def test_declare_ex_commits_and_rolls_back_with_the_caller(api: Api, db_path: str) -> None:
    chancy = api.chancy
    with chancy.transaction() as conn:
        assert api.declare_ex(conn, Queue("inside")) == Queue("inside")
        assert api.declare_ex(conn, Queue("inside", concurrency=4)) == Queue("inside")
        assert api.declare_ex(conn, Queue("inside", concurrency=4), upsert=True) == Queue("inside", concurrency=4)
    assert api.get_queue("inside") == Queue("inside", concurrency=4)

    with pytest.raises(RuntimeError), chancy.transaction() as conn:
        api.declare_ex(conn, Queue("rolled-back"))
        raise RuntimeError("abort")
    with pytest.raises(KeyError):
        api.get_queue("rolled-back")


def test_get_queue_missing_raises_key_error(api: Api) -> None:
    with pytest.raises(KeyError):
        api.get_queue("nope")
    assert api.get_all_queues() == []


def test_pause_and_resume_queue(api: Api) -> None:
    api.declare(Queue("q"))
    api.pause_queue("q")
    paused = api.get_queue("q")
    assert (paused.state, paused.resume_at) == (Queue.State.PAUSED, None)

    api.resume_queue("q")
    resumed = api.get_queue("q")
    assert (resumed.state, resumed.resume_at) == (Queue.State.ACTIVE, None)

    at = dt.datetime(2035, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    api.pause_queue("q", resume_at=at)
    assert (api.get_queue("q").state, api.get_queue("q").resume_at) == (Queue.State.PAUSED, at)

    before = dt.datetime.now(UTC)
    api.pause_queue("q", resume_at=dt.timedelta(minutes=10))
    after = dt.datetime.now(UTC)
    resume_at = api.get_queue("q").resume_at
    assert resume_at is not None
    assert before + dt.timedelta(minutes=10) <= resume_at <= after + dt.timedelta(minutes=10)

    with pytest.raises(KeyError):
        api.pause_queue("missing")
    with pytest.raises(KeyError):
        api.resume_queue("missing")
    with pytest.raises(TypeError):
        api.pause_queue("q", resume_at=600)


def test_delete_queue_purges_its_jobs_by_default(api: Api, db_path: str) -> None:
    api.declare(Queue("doomed"))
    api.declare(Queue("kept"))
    doomed = [api.push(a_job(i, queue="doomed")) for i in range(3)]
    kept = api.push(a_job(queue="kept"))
    api.delete_queue("doomed")
    with pytest.raises(KeyError):
        api.get_queue("doomed")
    assert api.get_jobs(doomed) == []
    assert [j.id for j in api.get_jobs([kept])] == [kept]
    assert api.get_queue("kept") == Queue("kept")
    with pytest.raises(KeyError):
        api.delete_queue("doomed")


def test_delete_queue_can_keep_its_jobs(api: Api) -> None:
    api.declare(Queue("q"))
    refs = [api.push(a_job(i, queue="q")) for i in range(3)]
    api.delete_queue("q", purge_jobs=False)
    with pytest.raises(KeyError):
        api.get_queue("q")
    assert [j.id for j in api.get_jobs(refs)] == refs


def test_get_all_workers_is_empty_without_workers(api: Api) -> None:
    assert api.get_all_workers() == []


# ------------------------------------------------------------------ push


def test_push_and_get_job(api: Api) -> None:
    ref = api.push(a_job(7, priority=3, meta={"who": "test"}))
    assert isinstance(ref, Reference)
    stored = api.get_job(ref)
    assert isinstance(stored, QueuedJob)
    assert (str(stored.id), stored.func, stored.kwargs, stored.priority, stored.meta, stored.state) == (
        ref.identifier, FUNC, {"n": 7}, 3, {"who": "test"}, PENDING,
    )
    # Any spelling of the id finds it.
    assert api.get_job(ref.identifier) == stored
    assert api.get_job(stored) == stored
    assert api.get_job(chancy_uuid()) is None


def test_push_accepts_a_decorated_function(api: Api) -> None:
    stored = api.get_job(api.push(decorated_work))
    assert (stored.func, stored.queue) == ("tests.store.test_app.decorated_work", "decorated")


def test_push_with_a_unique_key_returns_the_existing_job(api: Api, db_path: str) -> None:
    first = api.push(a_job(1, unique_key="k", priority=1))
    before = job_row(db_path, first.identifier)
    again = api.push(a_job(2, unique_key="k", priority=9, meta={"x": 1}))
    assert again == first
    assert job_row(db_path, first.identifier) == before  # the existing job is not touched
    assert count_jobs(db_path) == 1
    other = api.push(a_job(3, unique_key="other"))
    assert other != first
    assert count_jobs(db_path) == 2


def test_unique_key_is_free_again_once_the_job_finished(api: Api, db_path: str) -> None:
    first = api.push(a_job(unique_key="k"))
    api.cancel_job(first)  # -> failed
    second = api.push(a_job(unique_key="k"))
    assert second != first
    assert api.push(a_job(unique_key="k")) == second

    # succeeded frees it too (as a worker would leave it).
    conn = raw(db_path)
    with conn:
        conn.execute("UPDATE chancy_jobs SET state = 'succeeded' WHERE id = ?", (second.identifier,))
    conn.close()
    third = api.push(a_job(unique_key="k"))
    assert third not in (first, second)
    assert [j.state for j in api.get_jobs([first, second, third])] == [FAILED, SUCCEEDED, PENDING]


def test_push_ex_commits_and_rolls_back_with_the_callers_rows(api: Api, db_path: str) -> None:
    chancy = api.chancy
    with chancy.transaction() as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")

    with pytest.raises(RuntimeError), chancy.transaction() as conn:
        conn.execute("INSERT INTO orders (item) VALUES ('lost')")
        lost = api.push_ex(conn, a_job(1))
        raise RuntimeError("payment failed")
    assert api.get_job(lost) is None
    assert count_jobs(db_path) == 0
    check = raw(db_path)
    assert check.execute("SELECT count(*) FROM orders").fetchall()[0][0] == 0

    with chancy.transaction() as conn:
        conn.execute("INSERT INTO orders (item) VALUES ('kept')")
        kept = api.push_ex(conn, a_job(2))
        # Not visible outside the transaction before it commits.
        assert check.execute("SELECT count(*) FROM chancy_jobs").fetchall()[0][0] == 0
    assert api.get_job(kept) is not None
    assert check.execute("SELECT item FROM orders").fetchall() == [("kept",)]
    check.close()


def test_push_many_ex_in_the_callers_transaction(api: Api, db_path: str) -> None:
    chancy = api.chancy
    with pytest.raises(RuntimeError), chancy.transaction() as conn:
        api.push_many_ex(conn, [a_job(i) for i in range(5)])
        raise RuntimeError("abort")
    assert count_jobs(db_path) == 0

    with chancy.transaction() as conn:
        refs = api.push_many_ex(conn, [a_job(i) for i in range(5)] + [decorated_work])
    assert len(refs) == 6 and all(isinstance(r, Reference) for r in refs)
    assert [j.kwargs.get("n") for j in api.get_jobs(refs)] == [0, 1, 2, 3, 4, None]


def test_push_many_yields_one_list_per_batch(api: Api) -> None:
    batches = api.push_many((a_job(i) for i in range(7)), batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 1]
    refs = [r for batch in batches for r in batch]
    assert all(isinstance(r, Reference) for r in refs)
    assert [j.kwargs["n"] for j in api.get_jobs(refs)] == list(range(7))
    assert api.push_many([]) == []
    with pytest.raises(ValueError):
        api.push_many([a_job()], batch_size=0)


def test_push_many_with_unique_keys_inside_one_batch(api: Api, db_path: str) -> None:
    [refs] = api.push_many([a_job(1, unique_key="a"), a_job(2, unique_key="a"), a_job(3, unique_key="b")])
    assert refs[0] == refs[1] != refs[2]
    assert count_jobs(db_path) == 2


def test_sync_push_many_commits_each_batch_as_it_goes(chancy: Chancy, db_path: str) -> None:
    batches = chancy.sync_push_many((a_job(i) for i in range(7)), batch_size=3)
    assert count_jobs(db_path) == 0  # lazy: nothing pushed before iterating
    seen = []
    for batch in batches:
        seen.append(len(batch))
        assert count_jobs(db_path) == sum(seen)  # committed before the batch is yielded
    assert seen == [3, 3, 1]


def test_async_push_many_commits_each_batch_as_it_goes(chancy: Chancy, db_path: str) -> None:
    async def scenario() -> list[int]:
        seen: list[int] = []
        batches = chancy.push_many((a_job(i) for i in range(7)), batch_size=3)
        assert isinstance(batches, AsyncIterator)
        async for batch in batches:
            seen.append(len(batch))
            assert count_jobs(db_path) == sum(seen)
        return seen

    assert asyncio.run(scenario()) == [3, 3, 1]


def test_push_wakes_workers_only_after_commit(chancy: Chancy, db_path: str) -> None:
    """A push sends a wake-up to worker listeners; a rolled-back one sends none."""
    channel = Channel(db_path)
    with Listener(channel, WORKER) as listener:
        chancy.sync_push(a_job(queue="mail"))
        assert any(b"mail" in m for m in listener.wait(5))

        with pytest.raises(RuntimeError), chancy.transaction() as conn:
            chancy.sync_push_ex(conn, a_job(queue="ghost"))
            raise RuntimeError("abort")
        chancy.sync_push(a_job(queue="real"))
        messages: list[bytes] = []
        wait_until(lambda: messages.extend(listener.wait(0.1)) or any(b"real" in m for m in messages))
        assert not any(b"ghost" in m for m in messages)
    channel.close()


def test_declare_wakes_workers_when_a_queue_changes(chancy: Chancy, db_path: str) -> None:
    channel = Channel(db_path)
    with Listener(channel, WORKER) as listener:
        chancy.sync_declare(Queue("q"))
        assert QUEUES_CHANGED in listener.wait(5)
        chancy.sync_pause_queue("q")
        assert QUEUES_CHANGED in listener.wait(5)
    channel.close()


# ------------------------------------------------------------- get jobs


def test_get_jobs_keeps_order_and_skips_missing(api: Api) -> None:
    refs = [api.push(a_job(i)) for i in range(4)]
    asked = [refs[2], Reference(chancy_uuid()), refs[0], refs[3].identifier, chancy_uuid()]
    assert [j.kwargs["n"] for j in api.get_jobs(asked)] == [2, 0, 3]
    assert api.get_jobs([]) == []


# ------------------------------------------------------ cancel/retry/purge


def test_cancel_job_fails_a_pending_job_with_a_cancelled_error(api: Api) -> None:
    ref = api.push(a_job(max_attempts=3))
    api.cancel_job(ref)
    cancelled = api.get_job(ref)
    assert cancelled.state is FAILED
    assert cancelled.completed_at is not None
    assert len(cancelled.errors) == 1
    assert cancelled.errors[0]["attempt"] == 0
    assert "cancel" in cancelled.errors[0]["traceback"].lower()
    # Cancelling a finished or missing job changes nothing.
    api.cancel_job(ref)
    assert api.get_job(ref) == cancelled
    api.cancel_job(chancy_uuid())


def test_retry_jobs_gives_finished_jobs_their_attempts_again(api: Api) -> None:
    """Chancy 0.26: retrying, due now, attempts back to 0 (errors kept, max_attempts as it was)."""
    failed = api.push(a_job(1, max_attempts=2))
    pending = api.push(a_job(2))
    api.cancel_job(failed)
    before = api.get_job(failed)
    retried = api.retry_jobs([failed, pending, chancy_uuid()])
    assert retried == [failed]
    job_ = api.get_job(failed)
    assert (job_.state, job_.attempts, job_.max_attempts) == (QueuedJob.State.RETRYING, 0, 2)
    assert job_.completed_at is None and job_.started_at is None and job_.errors == before.errors
    assert job_.scheduled_at <= dt.datetime.now(UTC)
    assert api.get_job(pending).state is PENDING  # a waiting job is left as it is


def test_retry_jobs_leaves_a_job_whose_unique_key_is_taken_again(api: Api) -> None:
    first = api.push(a_job(1, unique_key="k"))
    api.cancel_job(first)
    second = api.push(a_job(2, unique_key="k"))  # the key is free again: a new job holds it
    assert api.retry_jobs([first]) == []
    assert api.get_job(first).state is QueuedJob.State.FAILED and api.get_job(second).state is PENDING


def test_purge_jobs_deletes_them_whatever_their_state(api: Api) -> None:
    refs = [api.push(a_job(i)) for i in range(3)]
    api.cancel_job(refs[0])
    assert api.purge_jobs([refs[0], refs[1], chancy_uuid()]) == 2
    assert [j.id for j in api.get_jobs(refs)] == [refs[2]]
    assert api.purge_jobs([]) == 0


# ------------------------------------------------------------------ wait


def _cancel_in_child(db_path: str, job_id: str) -> None:
    with Chancy(db_path) as app:
        app.sync_cancel_job(job_id)


def test_wait_for_job_returns_at_once_when_already_done(api: Api) -> None:
    ref = api.push(a_job())
    api.cancel_job(ref)
    assert api.wait_for_job(ref, timeout=5).state is FAILED
    assert api.wait_for_job(ref, states=["failed"], timeout=5).state is FAILED
    pending = api.push(a_job())
    assert api.wait_for_job(pending, states=[QueuedJob.State.PENDING], timeout=5).state is PENDING


def test_wait_for_job_times_out(api: Api) -> None:
    ref = api.push(a_job())
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        api.wait_for_job(ref, interval=0.05, timeout=0.3)
    with pytest.raises(TimeoutError):
        api.wait_for_jobs([ref], interval=10, timeout=0.3)
    assert 0.6 <= time.monotonic() - start < 5


def test_wait_for_job_is_woken_promptly_by_a_cancel_in_another_thread(api: Api) -> None:
    ref = api.push(a_job())
    started = threading.Event()

    def cancel_later() -> None:
        started.wait(10)
        api.chancy.sync_cancel_job(ref)

    thread = threading.Thread(target=cancel_later)
    thread.start()
    try:
        start = time.monotonic()
        started.set()
        done = api.wait_for_job(ref, interval=30, timeout=20)
        elapsed = time.monotonic() - start
    finally:
        thread.join()
    assert done.state is FAILED
    assert elapsed < 5  # woken by the change, not by the 30 s interval


def test_wait_for_job_sees_a_job_finished_by_another_process(api: Api) -> None:
    ref = api.push(a_job())
    process = multiprocessing.get_context("spawn").Process(
        target=_cancel_in_child, args=(api.chancy.path, ref.identifier)
    )
    start = time.monotonic()
    process.start()
    try:
        done = api.wait_for_job(ref, interval=30, timeout=20)
    finally:
        process.join(20)
    assert process.exitcode == 0
    assert done.state is FAILED
    assert time.monotonic() - start < 15


def test_wait_for_job_polls_for_changes_that_send_no_wake_up(api: Api, db_path: str) -> None:
    """A row changed behind chancy's back (no wake-up) is still seen at the next interval."""
    ref = api.push(a_job())

    def finish() -> None:
        conn = raw(db_path)
        with conn:
            conn.execute("UPDATE chancy_jobs SET state = 'succeeded' WHERE id = ?", (ref.identifier,))
        conn.close()

    timer = threading.Timer(0.1, finish)
    timer.start()
    try:
        done = api.wait_for_job(ref, interval=0.05, timeout=10)
    finally:
        timer.join()
    assert done.state is SUCCEEDED


def test_wait_for_a_purged_job_counts_as_done(api: Api) -> None:
    keep = api.push(a_job(1))
    gone = api.push(a_job(2))
    api.cancel_job(keep)

    thread = threading.Thread(target=lambda: api.chancy.sync_purge_jobs([gone]))
    start = time.monotonic()
    thread.start()
    try:
        jobs = api.wait_for_jobs([keep, gone], interval=30, timeout=20)
    finally:
        thread.join()
    assert [j.id for j in jobs] == [keep]
    assert time.monotonic() - start < 5
    assert api.wait_for_job(gone, timeout=5) is None


def test_wait_for_jobs_waits_for_every_job(api: Api) -> None:
    refs = [api.push(a_job(i)) for i in range(3)]

    def cancel_all() -> None:
        for ref in refs:
            api.chancy.sync_cancel_job(ref)

    thread = threading.Thread(target=cancel_all)
    thread.start()
    try:
        jobs = api.wait_for_jobs(refs, interval=30, timeout=20)
    finally:
        thread.join()
    assert [j.id for j in jobs] == refs
    assert {j.state for j in jobs} == {FAILED}


# --------------------------------------------------------- context managers


def test_chancy_works_without_and_with_context_managers(db_path: str) -> None:
    app = Chancy(db_path)
    app.sync_migrate()
    ref = app.sync_push(a_job())
    app.close()
    assert app.sync_get_job(ref) is not None  # reopens lazily after close
    app.close()

    with Chancy(db_path) as again:
        assert again.sync_get_job(ref) is not None

    async def scenario() -> QueuedJob | None:
        async with Chancy(db_path) as in_async:
            return await in_async.get_job(ref)

    assert asyncio.run(scenario()) is not None


def test_async_methods_do_not_block_the_event_loop_on_a_locked_file(chancy: Chancy, db_path: str) -> None:
    """While another connection holds the write lock, an awaited push waits without stalling other tasks."""

    async def scenario() -> tuple[int, Reference]:
        blocker = raw(db_path)
        blocker.execute("BEGIN IMMEDIATE")
        ticks = 0
        push = asyncio.ensure_future(chancy.push(a_job()))
        deadline = time.monotonic() + 10
        while ticks < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            ticks += 1
        assert not push.done()  # really waiting on the lock
        blocker.execute("COMMIT")
        blocker.close()
        return ticks, await asyncio.wait_for(push, 20)

    ticks, ref = asyncio.run(scenario())
    assert ticks == 20
    assert chancy.sync_get_job(ref) is not None


def test_every_public_method_is_documented_and_twins_share_their_docstring() -> None:
    for name, method in inspect.getmembers(Chancy, inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue
        assert method.__doc__, f"Chancy.{name} has no docstring"
        twin = getattr(Chancy, f"sync_{name}", None)
        if twin is not None:
            assert twin.__doc__ == method.__doc__, f"Chancy.{name} and sync_{name} say different things"

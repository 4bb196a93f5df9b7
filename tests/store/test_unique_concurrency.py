"""Unique keys under real contention: several processes pushing the same keys into one file at once."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import time
import traceback
from collections import Counter, defaultdict
from typing import Any

import apsw

from chancy_lite import Chancy, Job, QueuedJob

PROCESSES = 4
PUSHES_PER_PROCESS = 2000
KEYS = 100
FUNC = "tests.store.test_unique_concurrency.noop"


def noop() -> None:
    pass


def push_unique_jobs(db_path: str, worker: int, start: multiprocessing.synchronize.Barrier, results: Any) -> None:
    """Child process: push PUSHES_PER_PROCESS jobs over KEYS shared keys.

    Reports (worker, [(key, id)], (first push time, last push time), error or None).
    """
    pairs: list[tuple[str, str]] = []
    span = (0.0, 0.0)
    try:
        with Chancy(db_path) as app:
            app.sync_get_all_queues()  # open the connection before the start line
            start.wait(60)
            began = time.time()
            for i in range(PUSHES_PER_PROCESS):
                key = f"key-{(i * 7 + worker * 13) % KEYS}"
                ref = app.sync_push(Job(func=FUNC, kwargs={"worker": worker, "i": i}, unique_key=key))
                pairs.append((key, ref.identifier))
            span = (began, time.time())
        results.put((worker, pairs, span, None))
    except BaseException:
        results.put((worker, pairs, span, traceback.format_exc()))


def test_concurrent_pushes_keep_one_active_job_per_key(chancy: Chancy, db_path: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    processes = [ctx.Process(target=push_unique_jobs, args=(db_path, w, start, results)) for w in range(PROCESSES)]
    began = time.monotonic()
    for p in processes:
        p.start()
    reports = [results.get(timeout=60) for _ in processes]
    for p in processes:
        p.join(30)
    elapsed = time.monotonic() - began

    errors = [err for *_, err in reports if err]
    assert errors == [], errors[0] if errors else ""
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    assert sorted(w for w, *_ in reports) == list(range(PROCESSES))
    # The processes really pushed at the same time.
    spans = [span for _, _, span, _ in reports]
    assert max(first for first, _ in spans) < min(last for _, last in spans), spans

    pairs = [pair for _, worker_pairs, _, _ in reports for pair in worker_pairs]
    assert len(pairs) == PROCESSES * PUSHES_PER_PROCESS

    conn = apsw.Connection(db_path)
    try:
        rows = conn.execute("SELECT unique_key, id, state FROM chancy_jobs").fetchall()
    finally:
        conn.close()
    # No job finished, so every key has exactly one row, and it is the one every push of that key got back.
    assert len(rows) == KEYS
    assert Counter(key for key, _, _ in rows) == Counter({f"key-{k}": 1 for k in range(KEYS)})
    assert {state for _, _, state in rows} == {QueuedJob.State.PENDING.value}
    stored_id = {key: id_ for key, id_, _ in rows}
    returned: dict[str, set[str]] = defaultdict(set)
    for key, id_ in pairs:
        returned[key].add(id_)
    assert {key: ids for key, ids in returned.items()} == {key: {id_} for key, id_ in stored_id.items()}
    assert elapsed < 30, f"{PROCESSES * PUSHES_PER_PROCESS} contended pushes took {elapsed:.1f} s"


def test_a_key_is_reused_once_its_job_has_finished_under_contention(chancy: Chancy, db_path: str) -> None:
    """Cancel every job, push again from several processes: one new active job per key, the old ones kept."""
    first = {f"key-{k}": chancy.sync_push(Job(func=FUNC, unique_key=f"key-{k}")) for k in range(KEYS)}
    for ref in first.values():
        chancy.sync_cancel_job(ref)

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    results = ctx.Queue()
    processes = [ctx.Process(target=push_unique_jobs, args=(db_path, w, start, results)) for w in range(2)]
    for p in processes:
        p.start()
    reports = [results.get(timeout=60) for _ in processes]
    for p in processes:
        p.join(30)
    assert [err for *_, err in reports] == [None, None]

    active = chancy.sync_list_jobs(state="pending", limit=10 * KEYS)
    failed = chancy.sync_list_jobs(state="failed", limit=10 * KEYS)
    assert len(active) == KEYS
    assert {str(j.id) for j in failed} == {r.identifier for r in first.values()}
    returned = {id_ for _, pairs, _, _ in reports for _, id_ in pairs}
    assert returned == {str(j.id) for j in active}

"""The Pruner plugin: finished jobs matching its rule are deleted; nothing else ever is."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from chancy_lite import Chancy, Job, QueuedJob, Worker
from chancy_lite.plugins.pruner import Pruner
from chancy_lite.testing import Clock, drain

State = QueuedJob.State


def make(tmp_path: Path, *plugins: Pruner, **kwargs: object) -> tuple[Chancy, Clock]:
    clock = Clock(dt.datetime(2031, 5, 1, tzinfo=dt.UTC))
    chancy = Chancy(tmp_path / "jobs.db", clock=clock, plugins=list(plugins), **kwargs)  # type: ignore[arg-type]
    chancy.sync_migrate()
    return chancy, clock


def test_default_pruner_deletes_finished_jobs_older_than_a_day_only(tmp_path: Path) -> None:
    chancy, clock = make(tmp_path)
    [pruner] = [p for p in chancy.plugins.values() if isinstance(p, Pruner)]
    old_ok = chancy.sync_push(Job(func="tests.jobs.noop", scheduled_at=clock()))
    old_failed = chancy.sync_push(Job(func="tests.jobs.fail", scheduled_at=clock()))
    drain(chancy)
    clock.advance(hours=23)
    young = chancy.sync_push(Job(func="tests.jobs.noop", scheduled_at=clock()))
    drain(chancy)
    waiting = chancy.sync_push(Job(func="tests.jobs.noop", scheduled_at=clock() + dt.timedelta(days=30)))
    assert pruner.prune(chancy) == 0
    clock.advance(hours=2)
    assert pruner.prune(chancy) == 2
    left = {str(j.id) for j in chancy.sync_list_jobs(limit=10)}
    assert left == {young.identifier, waiting.identifier}
    assert old_ok.identifier not in left and old_failed.identifier not in left
    clock.advance(days=400)
    assert pruner.prune(chancy) == 1  # the young one now; the pending job is never pruned
    assert [str(j.id) for j in chancy.sync_list_jobs(limit=10)] == [waiting.identifier]
    chancy.close()


def test_rules_combine_queue_state_and_function(tmp_path: Path) -> None:
    rule = (Pruner.Rules.Queue() == "bulk") & (Pruner.Rules.State() == State.SUCCEEDED) | (
        Pruner.Rules.Job() == "tests.jobs.fail"
    )
    chancy, clock = make(tmp_path, Pruner(rule))
    refs = {
        "bulk_ok": chancy.sync_push(Job(func="tests.jobs.noop", queue="bulk", scheduled_at=clock())),
        "bulk_failed": chancy.sync_push(Job(func="tests.jobs.fail", queue="bulk", scheduled_at=clock())),
        "other_ok": chancy.sync_push(Job(func="tests.jobs.noop", queue="other", scheduled_at=clock())),
        "other_failed": chancy.sync_push(Job(func="tests.jobs.fail", queue="other", scheduled_at=clock())),
        "bulk_waiting": chancy.sync_push(Job(func="tests.jobs.fail", queue="bulk",
                                             scheduled_at=clock() + dt.timedelta(hours=1))),
    }
    drain(chancy, "bulk")
    drain(chancy, "other")
    pruner = chancy.plugins["chancy.pruner"]
    assert pruner.prune(chancy) == 3
    left = {str(j.id) for j in chancy.sync_list_jobs(limit=10)}
    assert left == {refs["other_ok"].identifier, refs["bulk_waiting"].identifier}
    chancy.close()


def test_no_default_plugins_means_no_pruning(tmp_path: Path) -> None:
    chancy, _ = make(tmp_path, no_default_plugins=True)
    assert chancy.plugins == {}
    chancy.close()


def test_worker_runs_the_pruner_loop(tmp_path: Path) -> None:
    chancy, clock = make(tmp_path, Pruner(Pruner.Rules.Age() >= 0, poll_interval=0.05))
    ref = chancy.sync_push(Job(func="tests.jobs.noop", scheduled_at=clock()))
    drain(chancy)

    async def run() -> None:
        async with Worker(chancy, register_signal_handlers=False):
            deadline = asyncio.get_running_loop().time() + 10
            while await chancy.get_job(ref) is not None:
                assert asyncio.get_running_loop().time() < deadline, "the pruner never ran"
                await asyncio.sleep(0.02)

    asyncio.run(run())
    chancy.close()


def wal_salts(path: str) -> bytes:
    """The salts in a WAL's header: they change each time the WAL starts over from its beginning."""
    with open(path, "rb") as fh:
        return fh.read(24)[16:24]


def test_a_stuck_reader_is_reported_and_the_wal_is_reused_once_it_ends(tmp_path: Path, caplog) -> None:
    """A read transaction left open stops checkpoints; the worker says so, and shrinks the WAL once it ends."""
    import logging
    import os

    from chancy_lite import db

    chancy, _ = make(tmp_path, no_default_plugins=True)
    reader = db.connect(chancy.path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM chancy_jobs").fetchall()  # holds a snapshot
    wal = chancy.path + "-wal"

    async def run() -> None:
        worker = Worker(chancy, register_signal_handlers=False)
        worker.checkpointer.warning_bytes = 256 * 1024
        async with worker:
            for _ in range(6):
                for _ in chancy.sync_push_many([Job(func="tests.jobs.noop", queue="idle", kwargs={"pad": "x" * 500})]
                                               * 1000):
                    pass
            deadline = asyncio.get_running_loop().time() + 10
            while "holding a read transaction open" not in caplog.text:
                assert asyncio.get_running_loop().time() < deadline, "no warning about the stuck reader"
                await asyncio.sleep(0.05)
            reader.execute("COMMIT")
            stuck_size = os.stat(wal).st_size
            salts = wal_salts(wal)
            # With the reader gone checkpoints catch up, and the next write starts the WAL over (new salts) instead
            # of appending to it: the file stops growing.
            deadline = asyncio.get_running_loop().time() + 10
            while wal_salts(wal) == salts:
                assert asyncio.get_running_loop().time() < deadline, "the WAL never started over"
                for _ in chancy.sync_push_many([Job(func="tests.jobs.noop", queue="idle", kwargs={"pad": "x" * 500})]
                                               * 100):
                    pass
                await asyncio.sleep(0.05)
            assert os.stat(wal).st_size <= stuck_size + 2**20  # at most the batches written before it started over

    with caplog.at_level(logging.WARNING, logger="chancy_lite.worker"):
        asyncio.run(run())
    reader.close()
    chancy.close()


def test_the_documented_rule_works() -> None:
    """The README's example rule builds (comparisons parenthesised, since | binds tighter than >)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [expression] = re.findall(r"plugins=\[(Pruner\(.*\))\]\)", readme)
    pruner = eval(expression, {"Pruner": Pruner})
    assert pruner.rule == ("or", ("cmp", "age", ">", 3600), ("cmp", "queue", "==", "bulk"))

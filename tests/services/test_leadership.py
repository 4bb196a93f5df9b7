"""Leadership stepped with a clock: one leader per file, hand-over on stop and on expiry, no split-brain renewal,
dependencies checked at start, plugins keyed by identifier."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from chancy_lite import Chancy
from chancy_lite.errors import ConfigurationError
from chancy_lite.plugins.leadership import ImmediateLeadership, Leadership
from chancy_lite.plugins.pruner import Pruner
from chancy_lite.plugins.recovery import Recovery
from chancy_lite.testing import Clock
from chancy_lite.worker import Worker


@pytest.fixture
def app(db_path: str, clock: Clock) -> Iterator[Chancy]:
    with Chancy(db_path, clock=clock) as chancy:
        chancy.sync_migrate()
        yield chancy


def leader_of(app: Chancy) -> list[str]:
    return [w["worker_id"] for w in app.sync_get_all_workers() if w["is_leader"]]


def test_defaults_are_keyed_by_identifier_and_duplicates_refused(db_path: str) -> None:
    chancy = Chancy(db_path)
    assert list(chancy.plugins) == ["chancy.leadership", "chancy.pruner", "chancy.recovery", "chancy.workflow_plugin"]
    mine = Leadership(poll_interval=1, timeout=3)
    assert Chancy(db_path, plugins=[mine]).plugins["chancy.leadership"] is mine  # the user's wins
    with pytest.raises(ValueError, match=r"chancy\.pruner"):
        Chancy(db_path, plugins=[Pruner(), Pruner()])
    with pytest.raises(ValueError, match="timeout"):
        Leadership(poll_interval=10, timeout=5)


def test_one_leader_among_workers_and_hand_over_on_stop_and_on_expiry(app: Chancy, clock: Clock) -> None:
    plugin = Leadership(poll_interval=10, timeout=30)
    a, b, c = (Worker(app, worker_id=name, register_signal_handlers=False) for name in "abc")

    async def steps() -> None:
        for worker in (a, b, c):
            await worker.heartbeat.beat(app.now())
        assert [await plugin.tick(w, app.now()) for w in (a, b, c)] == [True, False, False]
        clock.advance(seconds=10)
        assert [await plugin.tick(w, app.now()) for w in (b, c, a)] == [False, False, True]  # a renews
        await plugin.on_worker_stopped(worker=a)  # a stops: it gives the lease up
        assert not a.is_leader.is_set()
        assert await plugin.tick(c, app.now()) and c.is_leader.is_set()
        # c is killed (no more renewals): b takes over only once c's lease expired.
        clock.advance(seconds=29)
        assert not await plugin.tick(b, app.now())
        clock.advance(seconds=2)
        assert await plugin.tick(b, app.now())
        # c wakes up believing it leads: its renewal must not extend b's lease (0.26's split-brain fix).
        assert not await plugin.tick(c, app.now()) and not c.is_leader.is_set()
        assert await plugin.tick(b, app.now())

    asyncio.run(steps())
    assert leader_of(app) == ["b"]


def test_a_worker_refuses_to_start_without_a_plugins_dependencies(db_path: str) -> None:
    with Chancy(db_path, plugins=[Recovery()], no_default_plugins=True) as chancy:
        chancy.sync_migrate()

        async def start() -> None:
            await Worker(chancy, register_signal_handlers=False).start()

        with pytest.raises(ConfigurationError, match=r"chancy\.recovery needs chancy\.leadership"):
            asyncio.run(start())


def test_immediate_leadership_leads_at_start(db_path: str) -> None:
    with Chancy(db_path, plugins=[ImmediateLeadership()], no_default_plugins=True) as chancy:
        chancy.sync_migrate()

        async def run() -> bool:
            async with Worker(chancy, register_signal_handlers=False) as worker:
                return worker.is_leader.is_set()

        assert asyncio.run(run())


def test_intervals_must_be_positive_and_plugins_objects(db_path: str) -> None:
    for make in (lambda: Leadership(0, 0), lambda: Leadership(-1, -1), lambda: Pruner(poll_interval=0),
                 lambda: Recovery(0)):
        with pytest.raises(ValueError, match="poll_interval"):
            make()
    with pytest.raises(TypeError, match=r"Pruner\(\) instead of Pruner"):
        Chancy(db_path, plugins=[Pruner])  # type: ignore[list-item]

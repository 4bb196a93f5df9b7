"""The helpers Chancy users import from ``chancy.utils``."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from chancy_lite.utils import TaskManager, chunked, json_dumps, lock_order_key, sleep


def test_json_dumps_writes_sets_as_lists_and_uuids_as_text_and_refuses_the_rest() -> None:
    ident = uuid.uuid4()
    assert json.loads(json_dumps({"s": {1}, "f": frozenset(["a"]), "u": ident})) == {"s": [1], "f": ["a"],
                                                                                       "u": str(ident)}
    with pytest.raises(TypeError, match="object"):
        json_dumps({"o": object()})


def test_chunked() -> None:
    assert list(chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunked([], 3)) == []
    with pytest.raises(ValueError, match="size"):
        list(chunked([1], 0))


def test_lock_order_key() -> None:
    assert sorted(["b", None, "a"], key=lock_order_key) == [None, "a", "b"]


def test_sleep_ends_early_when_an_event_is_set() -> None:
    async def main() -> tuple[bool, bool, float]:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, event.set)
        start = asyncio.get_running_loop().time()
        woken = await sleep(30, events=[event])
        took = asyncio.get_running_loop().time() - start
        return woken, await sleep(0.001, events=[asyncio.Event()]), took

    woken, timed_out, took = asyncio.run(main())
    assert woken and not timed_out and took < 5


def test_task_manager_cancels_all_and_reraises_a_failure() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def boom() -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        manager = TaskManager()
        manager.add("forever", forever())
        manager.cancel_all()
        await manager.wait_for_shutdown()  # cancelled tasks are not errors
        assert manager.tasks == {}
        manager.add("boom", boom())
        with pytest.raises(RuntimeError, match="boom"):
            await manager.wait_for_shutdown()

    asyncio.run(main())

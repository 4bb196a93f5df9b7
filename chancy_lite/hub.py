"""A tiny in-process event hub: ``hub.on(name, fn)``, ``hub.emit(name, body)``, ``await hub.wait_for(names)``."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Event:
    name: str
    body: dict[str, Any] = dataclasses.field(default_factory=dict)


class Hub:
    """Handlers per event name; a handler may be a plain or an async function."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[[Event], Any]]] = {}
        self._waiters: list[tuple[frozenset[str], asyncio.Future[Event]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, name: str, handler: Callable[[Event], Any]) -> None:
        self._handlers.setdefault(name, []).append(handler)

    def remove(self, name: str, handler: Callable[[Event], Any]) -> None:
        self._handlers.get(name, []).remove(handler)

    def emit(self, name: str, body: dict[str, Any] | None = None) -> Event:
        event = Event(name, body or {})
        for handler in list(self._handlers.get(name, ())) + list(self._handlers.get("*", ())):
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("event handler for %s failed", name)
        for names, future in list(self._waiters):
            if name in names and not future.done():
                future.set_result(event)
        return event

    async def wait_for(self, names: str | Iterable[str], timeout: float | None = None) -> Event:
        """The next event with one of these names; ``TimeoutError`` after ``timeout`` seconds."""
        wanted = frozenset([names] if isinstance(names, str) else names)
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        entry = (wanted, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(entry)

"""Live updates: one poller per dashboard app, shared by every open page.

While at least one page listens (``GET /api/v1/events``, server-sent events), the poller reads SQLite's
``PRAGMA data_version`` on a connection of its own every ``interval`` seconds (a few microseconds: it changes
whenever another connection commits). Only when it changed, or every ``refresh`` seconds, it reads the job counts
(capped, from indexes: see ``Store.count_jobs_capped``) and sends a summary to every listener:
``{"version": n, "counts": {state: {"count", "exact"}}, "at": ISO time}``, where ``version`` grows by one each time
the file changed. Pages refresh what they show when ``version`` moves; a page whose tab is hidden closes its stream.

A listener that falls behind loses old summaries, never the latest. Ten seconds after the last listener left the
poller stops and closes its connection. Every read fetches all its rows at once, so no read transaction stays open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from chancy_lite.utils import from_micros

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.db import Connection

log = logging.getLogger(__name__)
T = TypeVar("T")
LIVE_COUNT_CAP = 10_000


class Live:
    """The poller of one app (see the module docstring)."""

    def __init__(self, chancy: Chancy, *, interval: float = 1.0, refresh: float = 30.0, idle: float = 10.0,
                 cap: int = LIVE_COUNT_CAP) -> None:
        self.chancy = chancy
        self.interval = interval
        self.refresh = refresh
        self.idle = idle
        self.cap = cap
        self.version = 0
        self.latest: dict[str, Any] | None = None
        self._listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: Connection | None = None
        self._closed = False

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def stream(self, *, keepalive: float = 15.0) -> AsyncIterator[dict[str, Any] | None]:
        """Summaries as they come (the latest one first, if any); None after ``keepalive`` quiet seconds. Ends when
        the app closes."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=4)
        self._listeners.add(queue)
        self._ensure_running()
        try:
            if self.latest is not None:
                yield self.latest
            while not self._closed:
                try:
                    item = await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    return
                yield item
        finally:
            self._listeners.discard(queue)

    def close(self) -> None:
        """End every stream (the server is stopping); the poller stops at its next step."""
        self._closed = True
        for queue in list(self._listeners):
            _put_latest(queue, None)

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._closed = False
            self._loop = loop
            self._task = loop.create_task(self._run(), name="chancy-lite live poller")

    async def _run(self) -> None:
        last_version: int | None = None
        last_sent = 0.0
        idle_since: float | None = None
        try:
            while not self._closed:
                now = time.monotonic()
                if self._listeners:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= self.idle:
                    return
                try:
                    data_version = await self._read(self._data_version)
                    if data_version != last_version or now - last_sent >= self.refresh:
                        if last_version is not None and data_version != last_version:
                            self.version += 1
                        last_version = data_version
                        summary = await self._read(self.summary)
                        last_sent = now
                        self._send(summary)
                except Exception as exc:  # a busy or vanished file: say so, and try again
                    log.warning("the dashboard's live view cannot read the database: %s", exc)
                    self._send({"version": self.version, "error": str(exc)})
                    last_version = None
                await asyncio.sleep(self.interval)
        finally:
            await self._stop_thread()

    def _send(self, summary: dict[str, Any]) -> None:
        summary = {**summary, "version": self.version}
        self.latest = summary
        for queue in list(self._listeners):
            _put_latest(queue, summary)

    def summary(self, conn: Connection) -> dict[str, Any]:
        """The counts pages show live, read on ``conn``."""
        counts = self.chancy.store.count_jobs_capped(conn, cap=self.cap)
        return {
            "counts": {state: {"count": c.count, "exact": c.exact} for state, c in counts.items()},
            "at": from_micros(self.chancy.now()).isoformat(),
        }

    def _data_version(self, conn: Connection) -> int:
        return self.chancy.store.data_version(conn)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chancy-lite-live")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._on_own_connection, fn)

    def _on_own_connection(self, fn: Callable[[Connection], T]) -> T:
        if self._conn is None:
            self._conn = self.chancy.connect()
        return fn(self._conn)

    async def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(thread, self._close_connection)
        thread.shutdown(wait=False)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _put_latest(queue: asyncio.Queue[Any], item: Any) -> None:
    """Queue ``item``, dropping the oldest waiting one if the listener fell behind."""
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()

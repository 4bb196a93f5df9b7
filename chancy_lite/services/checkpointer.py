"""``Checkpointer``: the WAL is copied back into the database in the background, and kept small.

Children run with auto-checkpoints off, so their commits never stall on a checkpoint. Idle, a tick is one
``stat()`` of the WAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

from chancy_lite import db
from chancy_lite.services.base import Service

if TYPE_CHECKING:
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)


class Checkpointer(Service):
    """Checkpoints whenever the WAL changed: passive below ``truncate_bytes``, truncating above (waiting at
    most 0.1 s for readers, on its own connection); warns once a minute when the WAL passes ``warning_bytes``,
    the sign of a reader holding a transaction open."""

    name = "checkpointer"

    def __init__(self, worker: Worker, interval: float = 0.1) -> None:
        super().__init__(worker, interval)
        self.truncate_bytes = 16 * 2**20
        self.warning_bytes = 256 * 2**20
        self._conn: db.Connection | None = None
        self._seen: int | None = None
        self._warned: float | None = None

    async def tick(self, now: int) -> float | None:
        chancy = self.worker.chancy
        try:
            st = os.stat(chancy.path + "-wal")
        except FileNotFoundError:
            return None
        if st.st_mtime_ns == self._seen:
            return None
        self._seen = st.st_mtime_ns
        if self._conn is None:
            # Its own connection, whose short busy timeout bounds how long a truncation holds off writers.
            self._conn = await asyncio.to_thread(
                db.connect, chancy.path, busy_timeout=0.1, synchronous=chancy.synchronous, check=False
            )
        try:
            await asyncio.to_thread(chancy.store.checkpoint, self._conn, truncate=st.st_size > self.truncate_bytes)
        except Exception as exc:  # busy past 0.1 s, or a transient error: next time
            log.debug("checkpoint skipped: %s", exc)
        if st.st_size > self.warning_bytes and (self._warned is None or now - self._warned > 60_000_000):
            self._warned = now
            log.warning(
                "the WAL of %s is %.0f MiB and checkpoints cannot shrink it: a connection is probably holding a "
                "read transaction open (a long query, an unfinished cursor, a stopped process); the WAL grows "
                "until it ends", chancy.path, st.st_size / 2**20,
            )
        return None

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

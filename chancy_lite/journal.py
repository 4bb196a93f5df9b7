"""A child's journal: what it started and finished since its last commit.

A child claims several jobs per transaction and writes their outcomes with its
next claim. Should it die in between, its journal tells whoever recovers its
jobs (its supervisor, or any later worker) exactly what happened:

* a job with an outcome record finished: the outcome is written as if the child
  had committed it, so a finished job is never run again;
* a job with only a start record was running when the child died: that attempt
  counts (the job died with its worker);
* a claimed job with no record never started: it goes back to wait, and the
  attempt is not counted.

The journal is a small memory-mapped file beside the wake-up sockets. Writing a
record is a copy into shared memory (no system call); the records' total length
is stored last, so a record cut short by a kill is ignored. Every field is
written again by the guarded statements of the store, so replaying a journal
whose outcomes were already committed changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct

from chancy_lite.job import QueuedJob
from chancy_lite.store import Outcome

_HEADER = struct.Struct("<4sI")  # magic, used length (after the header)
_MAGIC = b"CLJ1"
_RECORD = struct.Struct("<I")
SIZE = 1 << 20

_STATES = {s.value: s for s in QueuedJob.State}


def journal_name(worker_id: str, pid: int, key: str) -> str:
    return f"journal-{worker_id}-{pid}-{key}"


def journal_prefix(worker_id: str, pid: int | None) -> str:
    return f"journal-{worker_id}-{pid}-"


class Journal:
    """The writer side, owned by one child."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, SIZE)
            self.mm = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self.used = 0
        _HEADER.pack_into(self.mm, 0, _MAGIC, 0)

    def _append(self, payload: bytes) -> bool:
        end = _HEADER.size + self.used + _RECORD.size + len(payload)
        if end > SIZE:
            return False
        start = _HEADER.size + self.used
        _RECORD.pack_into(self.mm, start, len(payload))
        self.mm[start + _RECORD.size:end] = payload
        self.used = end - _HEADER.size
        _HEADER.pack_into(self.mm, 0, _MAGIC, self.used)  # publishes the record
        return True

    def started(self, job_id: str) -> bool:
        return self._append(b"S" + job_id.encode())

    def finished(self, outcome: Outcome) -> bool:
        record = [outcome.id, outcome.attempts, outcome.state.value, outcome.completed_at, outcome.meta,
                  outcome.error, outcome.scheduled_at, outcome.started_at]
        return self._append(b"O" + json.dumps(record).encode())

    def reset(self) -> None:
        """Everything recorded so far is committed."""
        if self.used:
            self.used = 0
            _HEADER.pack_into(self.mm, 0, _MAGIC, 0)

    def close(self, *, remove: bool = True) -> None:
        with contextlib.suppress(Exception):
            self.mm.close()
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def read(path: str) -> tuple[set[str], list[Outcome]] | None:
    """The started job ids and finished outcomes in a journal file; None if it is missing or unreadable."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if len(data) < _HEADER.size:
        return None
    magic, used = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC:
        return None
    started: set[str] = set()
    outcomes: list[Outcome] = []
    pos, end = _HEADER.size, min(_HEADER.size + used, len(data))
    while pos + _RECORD.size <= end:
        (length,) = _RECORD.unpack_from(data, pos)
        payload = data[pos + _RECORD.size:pos + _RECORD.size + length]
        pos += _RECORD.size + length
        if len(payload) != length or not payload:
            break
        if payload[:1] == b"S":
            started.add(payload[1:].decode())
        elif payload[:1] == b"O":
            job_id, attempts, state, completed_at, meta, error, scheduled_at, *rest = json.loads(payload[1:])
            started.add(job_id)
            outcomes.append(
                Outcome(job_id, attempts, _STATES[state], completed_at, meta, error, scheduled_at, *rest[:1])
            )
    return started, outcomes


def find(directory: str, worker_id: str, pid: int | None) -> list[str]:
    """Journal files of one holder process (several for a threaded executor)."""
    prefix = journal_prefix(worker_id, pid)
    try:
        return [os.path.join(directory, name) for name in os.listdir(directory) if name.startswith(prefix)]
    except FileNotFoundError:
        return []


def remove(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

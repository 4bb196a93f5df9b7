"""The wake-up channel: how a commit in one process reaches idle processes at once.

SQLite has no LISTEN/NOTIFY. After a commit that matters (a push, a cancel, a
queue change, a finished job), the committing process sends one Unix datagram
to each listener registered for the database file. A listener is a socket file
in a private directory keyed by the database file's identity::

    /tmp/chancy-lite-<uid>/<key>/<kind>-<pid>-<random>.sock

``kind`` says what the listener wants: ``w`` (worker supervisors: pushes,
cancels, queue changes), ``j`` (callers waiting for jobs to finish), ``c``
(one worker child, addressed by its supervisor) and ``h`` (one worker child's
inbox, addressed by pushers). An idle child links its inbox as
``i-<queue>~<key>.sock``, so that a push wakes it directly, without a hop
through its supervisor; the supervisors hear only of the pushes that no idle
child took. Wake-ups are hints: they are never the only way work is found
(every sleeper also has a timeout), so a lost or dropped datagram costs
latency, never a job. Sending never blocks.

Hand-over: a single job pushed on its own, due now and without limits, is
inserted already held by one idle child of its queue (as if that child had
claimed it) and sent to that child's inbox in the same datagram, so the child
runs it without a claim transaction of its own. The child's identity (worker,
pid, start time) is in ``h-<key>.json`` beside its inbox. A child stops
advertising before it takes any work and then empties its inbox, so a job
handed to it is never held up behind work it took meanwhile; a hand-over that
cannot be delivered (the child just left) is put back to wait by the pusher.

Measured here: a datagram wakes a blocked waiter in ~0.1 ms, and an idle
listener costs no CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import random
import secrets
import select
import socket
import tempfile
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

WORKER = "w"
WAITER = "j"
CHILD = "c"
IDLE = "i"
INBOX = "h"
#: The largest hand-over datagram (the job's data): a bigger job is pushed the usual way and claimed.
MAX_HANDOVER_BYTES = 16_384

_MAX_SUN_PATH = 107
# Directory mtimes come from the kernel's coarse clock (a tick of at most 10 ms): re-list while the last change is
# this recent, since a later change within the same tick would leave the mtime as it is.
_RELIST_WINDOW_NS = 20_000_000


def _base_dir() -> str:
    for candidate in (tempfile.gettempdir(), "/tmp"):
        path = os.path.join(candidate, f"chancy-lite-{os.getuid()}")
        if len(path) < 60:
            return path
    return os.path.join("/tmp", f"chancy-lite-{os.getuid()}")


def channel_key(db_path: str) -> str:
    """The key of a database file: its device and inode, so every path to it agrees."""
    st = os.stat(db_path)
    return hashlib.sha256(f"{st.st_dev}:{st.st_ino}".encode()).hexdigest()[:20]


def directory_for(db_path: str) -> str:
    """The private directory of one database file: its listeners' sockets and its children's journals."""
    return os.path.join(_base_dir(), channel_key(db_path))


class Channel:
    """The listeners of one database file, and a socket to send them datagrams."""

    def __init__(self, db_path: str) -> None:
        self.directory = directory_for(db_path)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._lock = threading.RLock()  # re-entrant: signal handlers send too
        self._listing: tuple[int, dict[str, list[str]]] = (-1, {})
        self._identities: dict[str, Target | None] = {}  # child key -> who it is (see handover_target)

    def close(self) -> None:
        self._sender.close()

    def listeners(self, kind: str) -> list[str]:
        """Socket paths of listeners of this kind (cached while the directory is unchanged)."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            mtime = -2
        cached_mtime, by_kind = self._listing
        if mtime != cached_mtime or time.time_ns() - mtime < _RELIST_WINDOW_NS:
            by_kind = {}
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self.directory):
                    if entry.name.endswith(".sock"):
                        by_kind.setdefault(entry.name[0], []).append(entry.path)
            self._listing = (mtime, by_kind)
        return by_kind.get(kind, [])

    def send(self, kind: str, message: bytes) -> int:
        """Send ``message`` to every listener of ``kind``; return how many got it."""
        sent = 0
        for path in self.listeners(kind):
            if self.send_to(path, message):
                sent += 1
        return sent

    def wake_idle(self, queue: str, count: int) -> int:
        """Wake up to ``count`` idle children of ``queue`` directly; return how many were woken."""
        prefix = f"{IDLE}-{queue}~"
        idle = [path for path in self.listeners(IDLE) if os.path.basename(path).startswith(prefix)]
        if len(idle) > count:
            start = random.randrange(len(idle))  # spread concurrent pushers over the idle children
            idle = (idle[start:] + idle[:start])[:count]
        if not idle:
            return 0
        message = b"w %d" % -(-count // len(idle))  # each child's share of the jobs, to size its claim
        return sum(self.send_to(path, message) for path in idle)

    def handover_target(self, queue: str) -> Target | None:
        """An idle child of ``queue`` that takes hand-overs (picked at random among them), or None."""
        prefix = f"{IDLE}-{queue}~"
        idle = [path for path in self.listeners(IDLE)
                if os.path.basename(path).startswith(prefix) and len(path) <= _MAX_SUN_PATH]
        if not idle:
            return None
        start = random.randrange(len(idle))
        for path in idle[start:] + idle[:start]:
            target = self._identity(path, os.path.basename(path)[len(prefix):-len(".sock")])
            if target is not None:
                return target
        return None

    def _identity(self, path: str, key: str) -> Target | None:
        """The child behind an idle link, from its ``h-<key>.json`` (read once per child)."""
        if key in self._identities:
            return self._identities[key]
        target = None
        try:
            with open(os.path.join(self.directory, identity_name(key)), "rb") as fh:
                data = json.loads(fh.read())
        except (OSError, ValueError):
            return None  # not written yet, or gone: not cached
        if data.get("handover"):
            target = Target(path, str(data["worker_id"]), int(data["pid"]), data.get("pid_start"))
        if len(self._identities) > 1000:
            self._identities.clear()
        self._identities[key] = target
        return target

    def hand_over(self, target: Target, row: tuple[Any, ...]) -> bool:
        """Send a job inserted as held by ``target`` to its inbox; False if it was not delivered."""
        return self.send_to(target.path, handed_message(row))

    def publish(self, changes: Changes) -> None:
        """Tell the listeners what a committed transaction changed (each datagram is a hint)."""
        for queue, count in changes.claimable.items():
            self.announce(queue, count)
        if changes.queues:
            self.send(WORKER, QUEUES_CHANGED)
        for job_id, pid in changes.cancels:
            self.send(WORKER, cancel_message(job_id, pid))
        if changes.done and self.listeners(WAITER):
            self.send(WAITER, JOBS_DONE)
        for name, body in changes.events:
            self.send(WORKER, event_message(name, body))

    def announce(self, queue: str, count: int) -> None:
        """After a commit that made ``count`` jobs of ``queue`` claimable: wake idle children, then supervisors
        for what they did not take (a queue served by the async executor, or every child busy)."""
        left = count - (self.wake_idle(queue, count) if queue != "*" else 0)
        if left > 0:
            self.send(WORKER, claimable_message(queue, left))

    def send_to(self, path: str, message: bytes) -> bool:
        try:
            with self._lock:
                self._sender.sendto(message, path)
            return True
        except (ConnectionRefusedError, FileNotFoundError):
            # The listener died without cleaning up: remove its socket file.
            with contextlib.suppress(OSError):
                os.unlink(path)
        except BlockingIOError:
            pass  # its buffer is full: it has plenty of wake-ups already
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                log.debug("wake-up to %s failed: %s", path, exc)
        return False


class Listener:
    """A socket file that receives wake-ups. Close it when done (it is removed)."""

    def __init__(self, channel: Channel, kind: str, name: str | None = None) -> None:
        self.channel = channel
        self.name = name or f"{kind}-{os.getpid()}-{secrets.token_hex(4)}.sock"
        self.path = os.path.join(channel.directory, self.name)
        if len(self.path) > _MAX_SUN_PATH:
            raise OSError(f"wake-up socket path too long: {self.path}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> list[bytes]:
        """Every datagram waiting, without blocking."""
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(512))
            except (BlockingIOError, InterruptedError):
                return messages
            except OSError:
                return messages

    def wait(self, timeout: float | None) -> list[bytes]:
        """Block until a datagram arrives or ``timeout`` seconds pass; return what arrived."""
        return wait_any([self], timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_any(listeners: list[Listener], timeout: float | None) -> list[bytes]:
    """Block until a datagram arrives on any of ``listeners`` or ``timeout`` seconds pass; return what arrived."""
    messages = [m for listener in listeners for m in listener.drain()]
    if messages or (timeout is not None and timeout <= 0):
        return messages
    with contextlib.suppress(InterruptedError):
        select.select(listeners, [], [], timeout)
    return [m for listener in listeners for m in listener.drain()]


def write_identity(directory: str, key: str, *, worker_id: str, pid: int, pid_start: int | None,
                   handover: bool) -> str:
    """Write a child's ``h-<key>.json`` (atomically): who holds the jobs handed to it. Returns its path."""
    path = os.path.join(directory, identity_name(key))
    data = json.dumps({"worker_id": worker_id, "pid": pid, "pid_start": pid_start, "handover": handover})
    scratch = f"{path}.{os.getpid()}.tmp"
    with open(scratch, "w") as fh:
        fh.write(data)
    os.replace(scratch, path)
    return path


# ------------------------------------------------------------ what changed


@dataclasses.dataclass
class Changes:
    """What a transaction changed that other processes should hear of once it commits.

    The store records these on the connection (``db.Connection.pending_changes``); the connection's owner
    publishes them after the commit (``Channel.publish``), and drops them on a rollback.
    """

    claimable: dict[str, int] = dataclasses.field(default_factory=dict)  # queue -> jobs made claimable
    done: bool = False  # jobs finished (callers of wait_for_job)
    queues: bool = False  # a queue's configuration changed
    cancels: list[tuple[str, int | None]] = dataclasses.field(default_factory=list)  # (job id, holder pid)
    events: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)  # Chancy.notify

    def add_claimable(self, queue: str, count: int = 1) -> None:
        if count > 0:
            self.claimable[queue] = self.claimable.get(queue, 0) + count


# ------------------------------------------------------------------ messages
# Supervisors (WORKER listeners) hear: "p <queue> <n>" (n jobs of queue claimable; "*": any queue), "q" (queues
# changed), "c <job id> <pid>" (cancel the running job), "n <json>" (an event of Chancy.notify, JSON
# ``{"t": name, **body}`` as Chancy's NOTIFY payload). Waiters hear "d" (jobs finished). A child's mailbox
# hears: "w" or "w <n>" (work: n jobs for it), "s" (stop after this job), "c <job id>" (cancel that job). A child's
# inbox hears "w <n>" and "j <json>" (a job handed over to it: its INSERT_JOB parameters).

QUEUES_CHANGED = b"q"
JOBS_DONE = b"d"
WAKE = b"w"
STOP = b"s"


@dataclasses.dataclass(frozen=True)
class Claimable:
    queue: str
    count: int


@dataclasses.dataclass(frozen=True)
class Cancel:
    job_id: str
    pid: int | None = None


@dataclasses.dataclass(frozen=True)
class Work:
    count: int | None  # jobs announced for this child, None: an unsized wake-up


@dataclasses.dataclass(frozen=True)
class Handed:
    """A job handed over to this child: held by it already (see the module docstring)."""

    row: list[Any]  # the job's INSERT_JOB parameters (chancy_lite.store.JobRow)


@dataclasses.dataclass(frozen=True)
class Target:
    """An idle child that takes hand-overs: where to send, and who holds what it is sent."""

    path: str  # its idle link (to its inbox)
    worker_id: str
    pid: int
    pid_start: int | None


class QueuesChanged:
    pass


class Stop:
    pass


def claimable_message(queue: str, count: int) -> bytes:
    return f"p {queue} {count}".encode()


def cancel_message(job_id: str, pid: int | None) -> bytes:
    return f"c {job_id} {pid or 0}".encode()


def work_message(count: int | None = None) -> bytes:
    return WAKE if count is None else b"w %d" % count


def child_cancel_message(job_id: str) -> bytes:
    return f"c {job_id}".encode()


def handed_message(row: tuple[Any, ...]) -> bytes:
    return b"j " + json.dumps(row, separators=(",", ":")).encode()


#: The largest event payload, in bytes of JSON (PostgreSQL's NOTIFY limit, which Chancy's events live with).
MAX_EVENT_BYTES = 8000


@dataclasses.dataclass(frozen=True)
class Notification:
    """An event sent with ``Chancy.notify``: emitted on each worker's hub."""

    name: str
    body: dict[str, Any]


def event_payload(name: object, body: object) -> bytes:
    """An event as its JSON payload (``{"t": name, **body}``); ValueError/TypeError saying what to fix."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"an event name is non-empty text, such as 'report.ready', got {name!r}")
    if not isinstance(body, dict):
        raise TypeError(f"an event's payload is a dict, got {body!r}")
    if "t" in body:
        raise ValueError("an event's payload cannot use the key 't': it carries the event's name")
    try:
        payload = json.dumps({"t": name, **body}, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the payload of event {name!r} must be JSON-serialisable: {exc}") from None
    if len(payload) > MAX_EVENT_BYTES:
        raise ValueError(f"the payload of event {name!r} is {len(payload)} bytes of JSON; the limit is "
                         f"{MAX_EVENT_BYTES} (as PostgreSQL's NOTIFY): send an id and store the rest in a table")
    return payload


def event_message(name: str, body: dict[str, Any]) -> bytes:
    return b"n " + event_payload(name, body)


def decode_worker(message: bytes) -> Claimable | Cancel | QueuesChanged | Notification | None:
    """A supervisor's datagram; None for one it does not know (a newer sender), ValueError if malformed."""
    if message.startswith(b"n "):
        data = json.loads(message[2:])
        return Notification(data.pop("t"), data)
    kind, _, rest = message.decode().partition(" ")
    if kind == "p":
        queue, _, count = rest.rpartition(" ")
        return Claimable(queue, int(count))
    if kind == "q":
        return QueuesChanged()
    if kind == "c":
        job_id, _, pid = rest.partition(" ")
        return Cancel(job_id, int(pid or 0) or None)
    return None


def decode_child(message: bytes) -> Work | Stop | Cancel | Handed | None:
    """A child's mailbox datagram; None for one it does not know."""
    if message == WAKE:
        return Work(None)
    if message.startswith(b"w "):
        return Work(int(message[2:] or 1))
    if message == STOP:
        return Stop()
    if message.startswith(b"c "):
        return Cancel(message[2:].decode())
    if message.startswith(b"j "):
        return Handed(json.loads(message[2:]))
    return None


def idle_name(queue: str, key: str) -> str:
    return f"{IDLE}-{queue}~{key}.sock"


def inbox_name(key: str) -> str:
    """The socket file name of one child's inbox, which its idle link points to."""
    return f"{INBOX}-{key}.sock"


def identity_name(key: str) -> str:
    """The file naming who one child is (see ``write_identity``)."""
    return f"{INBOX}-{key}.json"


def remove_child_files(directory: str, queue: str, key: str) -> None:
    """Remove what a child that exited may have left (it removes them itself when it exits cleanly)."""
    for name in (idle_name(queue, key), inbox_name(key), identity_name(key), mailbox_name(key)):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))


def mailbox_name(key: str) -> str:
    """The socket file name of one child's mailbox (``key``: its name among its supervisor's children)."""
    return f"{CHILD}-{key}.sock"


def child_mailbox(directory: str, key: str) -> str:
    """The socket path of one child's mailbox."""
    return os.path.join(directory, mailbox_name(key))

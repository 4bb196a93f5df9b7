"""The one connection recipe, and the translation of SQLite errors into ours.

Every connection chancy_lite opens comes from :func:`connect`: WAL mode,
``synchronous=NORMAL`` (or ``FULL``), a busy timeout, foreign keys, a bounded
WAL and ``BEGIN IMMEDIATE`` for every write transaction. A connection belongs
to the process (and normally the thread) that opened it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any

import apsw

from chancy_lite import wake
from chancy_lite.errors import (
    ConfigurationError,
    DatabaseBusyError,
    DatabaseError,
    DatabaseFullError,
    DependencyTooOldError,
    NotADatabaseError,
    ReadOnlyDatabaseError,
)

log = logging.getLogger(__name__)

MEMORY = ":memory:"
SYNCHRONOUS = ("NORMAL", "FULL", "OFF")
# Filesystems on which SQLite's locks (and our wake-up sockets) cannot be trusted.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "sshfs",
     "davfs", "gcsfuse", "s3fs", "virtiofs", "vboxsf", "prl_fs", "vmhgfs"}
)
SQLITE_HEADER = b"SQLite format 3\x00"
# apsw 3.51.0.0 added Connection.transaction_mode, which makes ``with conn:`` open BEGIN IMMEDIATE. On older apsw,
# setting it on our subclass only creates a plain attribute and every ``with conn:`` silently stays DEFERRED.
APSW_MINIMUM = "3.51.0.0"


def require_apsw() -> None:
    """Refuse an apsw too old to open write transactions with BEGIN IMMEDIATE (see :data:`APSW_MINIMUM`)."""
    if not hasattr(apsw.Connection, "transaction_mode"):
        raise DependencyTooOldError(
            f"chancy_lite needs apsw >= {APSW_MINIMUM} (its Connection.transaction_mode makes every write "
            f"transaction BEGIN IMMEDIATE) but apsw {apsw.apsw_version()} is installed: "
            f"upgrade it with: pip install --upgrade 'apsw>={APSW_MINIMUM}'"
        )


# A URL's scheme ("postgresql://..."), and a libpq keyword DSN ("host=db dbname=jobs user=me").
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_KEYWORD_DSN = re.compile(r"\s*(\w+\s*=\s*\S*\s*)+")
_LIBPQ_KEYS = re.compile(r"(?:^|\s)(host|hostaddr|dbname|user|password|port|sslmode|service)\s*=")
_USE_SQLITE = "chancy_lite needs a SQLite file path (such as 'jobs.db') or a sqlite:///path URL"


def parse_path(path: str | os.PathLike[str]) -> str:
    """A file path from a path or a ``sqlite:///path`` URL; any other URL (a Postgres DSN) is refused."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ConfigurationError("the database path is empty: give a file path such as 'jobs.db'")
    url = _URL_SCHEME.match(text)
    if url is not None and url.group(1).lower() != "sqlite":
        # Never echo the URL itself: a DSN often carries a password.
        postgres = url.group(1).lower().startswith("postgres")
        raise ConfigurationError(
            f"{_USE_SQLITE}, not a {url.group(1)}:// URL"
            + ("; Postgres DSNs are for Chancy itself, chancy_lite keeps its jobs in one file" if postgres else "")
        )
    if url is None and _KEYWORD_DSN.fullmatch(text) and _LIBPQ_KEYS.search(text):
        raise ConfigurationError(
            f"{_USE_SQLITE}, not a Postgres connection string (host=... dbname=...): those are for Chancy itself"
        )
    if url is not None:
        # SQLAlchemy's spelling: sqlite:///relative.db, sqlite:////absolute.db, sqlite:// = memory.
        rest = text[url.end():]
        if rest and not rest.startswith("/"):
            raise ConfigurationError(
                f"{text!r} names a host, not a file: write sqlite:///{rest} (relative to the current directory) "
                "or sqlite:////absolute/path.db"
            )
        if "?" in rest:
            raise ConfigurationError(
                "chancy_lite reads no options from a sqlite:/// URL (the part after '?'): pass them to Chancy(...)"
            )
        text = rest[1:] if rest else MEMORY
        if not text:
            raise ConfigurationError("the sqlite:/// URL names no file: use sqlite:///path/to/jobs.db")
    if text == MEMORY:
        return text
    return os.path.abspath(os.path.expanduser(text))


def filesystem_type(path: str) -> str | None:
    """The type of the filesystem holding ``path``, from /proc/mounts (Linux), or None."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    target = os.path.realpath(path)
    best, fstype = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        mount_point = _unescape_mount_field(fields[1])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fstype = mount_point, fields[2]
    return fstype


def _unescape_mount_field(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash in paths as octal escapes (``\\040``...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def is_network_filesystem(fstype: str | None) -> bool:
    """Whether SQLite's locking cannot be trusted on a filesystem of this type (network, FUSE, VM shares)."""
    return fstype is not None and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse"))


def check_path(path: str, *, allow_network_fs: bool = False) -> None:
    """Refuse, with an actionable message, a path that cannot hold a queue file."""
    if path == MEMORY:
        return
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise ConfigurationError(f"the directory {directory!r} does not exist: create it first or choose another path")
    if os.path.exists(path):
        if os.path.isdir(path):
            raise ConfigurationError(f"{path!r} is a directory: give the path of a database file inside it")
        if not os.access(path, os.R_OK):
            raise ReadOnlyDatabaseError(f"cannot read {path!r}: check its permissions")
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise NotADatabaseError(f"{path!r} is not a SQLite database; refusing to touch it")
        if not os.access(path, os.W_OK) or not os.access(directory, os.W_OK):
            raise ReadOnlyDatabaseError(
                f"{path!r} or its directory is read-only: workers and pushes need to write the file and its WAL"
            )
    elif not os.access(directory, os.W_OK):
        raise ReadOnlyDatabaseError(f"cannot create a database in {directory!r}: the directory is not writable")
    fstype = filesystem_type(directory)
    if not allow_network_fs and is_network_filesystem(fstype):
        raise ConfigurationError(
            f"{path!r} is on a {fstype} filesystem: SQLite's locking is unreliable there and jobs could run twice "
            "or the file could be corrupted. Put the queue file on a local disk, or pass allow_network_fs=True "
            "(CHANCY_LITE_ALLOW_NETWORK_FS=1) if you know this filesystem is safe."
        )


class Connection(apsw.Connection):
    """An apsw connection that sends queued wake-ups after its transaction commits.

    Use it as apsw intends: ``with conn:`` opens a ``BEGIN IMMEDIATE``
    transaction (a savepoint when nested) that commits on success.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_commit: list[Callable[[], None]] = []
        #: Who publishes what a committed transaction changed (``Channel.publish``); None: nobody hears.
        self.publisher: Callable[[wake.Changes], None] | None = None
        #: The wake-up channel through which single pushes are handed over to idle children; None: never.
        self.handoff: wake.Channel | None = None
        self._changes: wake.Changes | None = None
        #: The core ``Store`` (so the table prefix) and the clock (integer µs since the epoch) of whoever writes
        #: through this connection, set by ``Chancy.connect`` and by worker children: a plugin's
        #: ``on_jobs_updated_in_transaction`` gets only this connection (and ``worker=None`` in a child), and
        #: reads them to write its own rows and push jobs in the same transaction. None / the wall clock when unset.
        self.store: Any = None
        self.now: Callable[[], int] = _wall_micros

    def pending_changes(self) -> wake.Changes:
        """What the current transaction changed so far, published once it commits (see ``publish_changes``).
        Outside a transaction the caller publishes at once, after its statement."""
        if self._changes is None:
            self._changes = wake.Changes()
            if self.in_transaction:
                self.after_commit.append(self.publish_changes)
        return self._changes

    def publish_changes(self) -> None:
        changes, self._changes = self._changes, None
        if changes is not None and self.publisher is not None:
            self.publisher(changes)

    def __exit__(self, *exc: Any) -> bool | None:  # type: ignore[override]  # apsw's stub names each argument
        result = super().__exit__(*exc)
        if not self.in_transaction:
            self.run_after_commit(committed=exc[0] is None)
        return result

    def run_after_commit(self, committed: bool = True) -> None:
        callbacks, self.after_commit = self.after_commit, []
        if not committed:
            self._changes = None
        if committed:
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # a wake-up is a hint; never fail a commit for it
                    log.debug("after-commit callback failed", exc_info=True)


class WriterLock:
    """A kernel lock (``flock``) that worker children take around their write transactions.

    SQLite's own busy handling sleeps and retries, so a child that finds another one committing sleeps at least
    0.2 ms, often more than the other needs: with two children draining, each slept through a quarter to a third of
    the drain. Waiting here instead, a child wakes the moment the other releases the lock, and then finds
    SQLite's lock free (unless someone outside the children, a pusher, holds it: then SQLite's busy handling
    applies as before). Released by the kernel when its process dies. One per runner (an ``flock`` belongs to an
    open file, so two runners of one process exclude each other too).
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, stat.S_IRUSR | stat.S_IWUSR)

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _wall_micros() -> int:
    return time.time_ns() // 1000


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only (SQLite gives WAL/SHM the same mode)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, stat.S_IRUSR | stat.S_IWUSR)
    except FileExistsError:
        return
    os.close(fd)


# Back-off between lock attempts, in seconds: finer than SQLite's own (1, 2, 5, 10 ms...) because our write
# transactions last well under a millisecond, so a waiter that sleeps 1 ms first mostly waits for nothing.
_BUSY_DELAYS = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.016, 0.025, 0.05, 0.1)


def busy_handler(timeout: float) -> Callable[[int], bool]:
    """A busy handler that waits up to ``timeout`` seconds for a lock, backing off.

    It replaces ``set_busy_timeout`` because apsw runs ``with conn:`` (``BEGIN IMMEDIATE``)
    holding the GIL: SQLite's built-in handler would then sleep with the GIL held and
    freeze every thread of the process (an event loop included) while another process
    holds the write lock. ``time.sleep`` here releases the GIL.
    """

    def handler(prior_calls: int) -> bool:
        waited = sum(_BUSY_DELAYS[:prior_calls]) + _BUSY_DELAYS[-1] * max(0, prior_calls - len(_BUSY_DELAYS))
        delay = min(_BUSY_DELAYS[min(prior_calls, len(_BUSY_DELAYS) - 1)], timeout - waited)
        if delay <= 0:
            return False
        time.sleep(delay)
        return True

    return handler


def _switch_to_wal(conn: Connection, wait: Callable[[int], bool]) -> object:
    """``PRAGMA journal_mode = WAL``, waiting like the busy handler when another connection is switching a new file
    at the same moment: SQLite then answers SQLITE_BUSY at once, without calling the busy handler."""
    calls = 0
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
        except apsw.BusyError:
            if not wait(calls):
                raise
            calls += 1


def connect(
    path: str,
    *,
    busy_timeout: float = 30.0,
    synchronous: str = "NORMAL",
    journal_size_limit: int = 64 * 1024 * 1024,
    allow_network_fs: bool = False,
    check: bool = True,
    autocheckpoint: int = 1000,
) -> Connection:
    """Open a connection with the recipe. ``path`` is already parsed (see :func:`parse_path`).

    ``autocheckpoint`` is SQLite's WAL auto-checkpoint threshold in pages; 0 leaves checkpoints to someone else
    (a worker's supervisor checkpoints in the background so that its children's commits never pay for it).
    """
    require_apsw()
    synchronous = synchronous.upper()
    if synchronous not in SYNCHRONOUS:
        raise ConfigurationError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
    if check:
        check_path(path, allow_network_fs=allow_network_fs)
    if path != MEMORY:
        _create_private(path)
    with translate_errors(path):
        conn = Connection(path, statementcachesize=256)
        try:
            wait = busy_handler(busy_timeout)
            conn.set_busy_handler(wait)
            conn.transaction_mode = "IMMEDIATE"
            # Plans never depend on bound values. Otherwise SQLite re-prepares a statement on every run once its
            # planner looked at a bound value (the claim's :queue, against its ORDER BY): a one-job claim in its own
            # transaction took 88 µs here, 36 µs without.
            conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 1)
            conn.wal_autocheckpoint(autocheckpoint)
            if path != MEMORY:
                mode = _switch_to_wal(conn, wait)
                if str(mode).lower() != "wal":
                    raise DatabaseError(f"could not switch {path!r} to WAL mode (got {mode!r})")
            conn.execute(
                f"PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
                f" PRAGMA journal_size_limit = {int(journal_size_limit)}; PRAGMA temp_store = MEMORY"
            )
        except BaseException:
            conn.close()
            raise
    return conn


_TRANSLATIONS: tuple[tuple[type[BaseException], type[DatabaseError], str], ...] = (
    (apsw.BusyError, DatabaseBusyError, "the database stayed locked by another connection past the busy timeout"),
    (apsw.LockedError, DatabaseBusyError, "the database table is locked"),
    (apsw.FullError, DatabaseFullError, "the disk is full (SQLITE_FULL): free space, then retry"),
    (apsw.ReadOnlyError, ReadOnlyDatabaseError, "the database is read-only"),
    (apsw.NotADBError, NotADatabaseError, "the file is not a SQLite database"),
    (apsw.CorruptError, NotADatabaseError, "the database file is corrupt"),
    (apsw.CantOpenError, ReadOnlyDatabaseError, "the database file cannot be opened"),
    (apsw.IOError, DatabaseError, "a disk I/O error occurred"),
)


def translate(exc: BaseException, path: str = "") -> BaseException:
    """The chancy_lite error for an apsw error a user can act on, else ``exc`` itself."""
    for source, target, message in _TRANSLATIONS:
        if isinstance(exc, source):
            where = f" ({path})" if path else ""
            return target(f"{message}{where}: {exc}")
    return exc


@contextlib.contextmanager
def translate_errors(path: str = "") -> Iterator[None]:
    """Re-raise apsw errors that a user can act on as chancy_lite errors."""
    try:
        yield
    except apsw.Error as exc:
        error = translate(exc, path)
        if error is exc:
            raise
        raise error from exc


_NO_SUCH_TABLE = re.compile(r"no such table: (?:\w+\.)?(\S+)")


def missing_table(exc: BaseException) -> str | None:
    """The table an apsw "no such table" error names (without its schema), or None for any other error."""
    if not isinstance(exc, apsw.SQLError):
        return None
    found = _NO_SUCH_TABLE.search(str(exc))
    return found.group(1) if found else None


def is_transient(exc: BaseException) -> bool:
    """Errors a loop should retry with backoff rather than give up on."""
    return isinstance(
        exc, apsw.BusyError | apsw.LockedError | apsw.FullError | apsw.IOError | DatabaseBusyError | DatabaseFullError
    ) or (isinstance(exc, DatabaseError) and isinstance(exc.__cause__, apsw.IOError))

"""Database faults, each produced for real: another process holding the write lock, a full disk (a small tmpfs),
read-only files, directories and filesystems, corrupt files, a schema newer than the code, a file on a FUSE
filesystem, and a worker suspended (SIGSTOP, a laptop asleep) for longer than its heartbeat timeout.

Every fault must give a clear ``chancy_lite.errors`` error (never an apsw traceback from deep inside), lose no
committed job, and leave a running worker running and able to finish its jobs once the fault is gone. The mount
tests need root (they skip, saying so, without it).

A schema newer than the code is covered by tests/store/test_migrations.py
(test_a_file_migrated_by_newer_code_is_refused) and tests/acceptance/test_cli.py (test_a_schema_newer_than_the_code);
here only a worker starting on such a file is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.cli import main as cli_main
from chancy_lite.db import NETWORK_FILESYSTEMS, filesystem_type, is_network_filesystem
from chancy_lite.errors import (
    ConfigurationError,
    DatabaseBusyError,
    DatabaseFullError,
    NotADatabaseError,
    ReadOnlyDatabaseError,
    SchemaTooNewError,
)
from chancy_lite.utils import utcnow
from chancy_lite.worker import Worker
from tests.conftest import wait_until
from tests.worker_support import REPO, Supervisor, pids, workers_of

SUCCEEDED, RUNNING, PENDING = QueuedJob.State.SUCCEEDED, QueuedJob.State.RUNNING, QueuedJob.State.PENDING
NOBODY = 65534

# ------------------------------------------------------------------ helpers


class Launched(Supervisor):
    """``tests.worker_main`` on a file migrated already, with a 10 s shutdown timeout, in its own session."""

    def __init__(self, db_path: str, *args: str, log_path: str | Path) -> None:
        super().__init__(db_path, "--no-migrate", "--shutdown-timeout", "10", *args, log_path=log_path)

    def running(self) -> bool:
        return self.popen.poll() is None


_HOLDER = r"""
import select, sys, time
import apsw
conn = apsw.Connection(sys.argv[1])
conn.set_busy_timeout(10_000)
conn.execute("BEGIN IMMEDIATE")
print("locked", time.time(), flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))  # hold until told, or for at most this long
print("releasing", time.time(), flush=True)
conn.execute("COMMIT")
conn.close()
"""


class LockHolder:
    """Another process (apsw, as SQLite's other users would) holding the write lock: ``BEGIN IMMEDIATE``."""

    def __init__(self, db_path: str, hold: float) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, db_path, str(hold)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        self.locked_at = self._read("locked", timeout=20)

    def _read(self, word: str, timeout: float) -> float:
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        line = self.popen.stdout.readline().decode() if ready else ""
        assert line.startswith(word), f"the lock holder did not say {word!r} within {timeout} s (got {line!r})"
        return float(line.split()[1])

    def released(self, timeout: float = 30) -> float:
        """Wait until it lets go (by itself, or after ``release()``); the time it did, by the wall clock."""
        return self._read("releasing", timeout)

    def release(self) -> float:
        assert self.popen.stdin is not None
        self.popen.stdin.write(b"go\n")
        self.popen.stdin.flush()
        return self.released()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("this fault needs root (to mount a filesystem or to drop privileges)")


def umount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@contextlib.contextmanager
def tmpfs(target: Path, size: str = "8m") -> Iterator[Path]:
    """A small tmpfs mounted at ``target`` (a disk we can fill, or remount read-only), unmounted afterwards."""
    need_root()
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        umount(target)


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem is full (ENOSPC); return its path."""
    filler = directory / "filler"
    with open(filler, "ab", buffering=0) as fh:
        for chunk in (1 << 16, 1 << 12, 1 << 9):
            while True:
                try:
                    fh.write(b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    st = os.statvfs(directory)
    assert st.f_bavail == 0, "the filesystem is not full"
    return filler


def child_backoff(log: str, cause: str) -> float:
    """The longest delay a worker child logged before retrying a write that failed with ``cause``."""
    delays = [float(m.group(1)) for line in log.splitlines() if "[default:" in line and cause in line
              for m in [re.search(r"retrying in ([0-9.]+) s", line)] if m]
    return max(delays, default=0.0)


def job_count(app: Chancy) -> int:
    return sum(sum(states.values()) for states in app.sync_count_jobs().values())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli_main(list(argv))
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("chancy-lite: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def gated_jobs(app: Chancy, n: int, *, path: Path, gate: Path, blob: int = 0) -> list[str]:
    refs = [app.sync_push(Job(func="tests.jobs_faults.gated", kwargs={"path": str(path), "gate": str(gate),
                                                                       "blob": blob})) for _ in range(n)]
    return [str(r) for r in refs]


def runs(path: Path) -> list[str]:
    """Job ids in the order ``tests.jobs_faults.gated`` started running them (one line per run)."""
    try:
        return [line.split()[1] for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


# ------------------------------------------------------------ a locked database


def test_a_push_gives_up_with_a_clear_busy_error_while_another_process_holds_the_lock(db_path: str) -> None:
    with Chancy(db_path, busy_timeout=1) as app:
        app.sync_migrate()
        holder = LockHolder(db_path, hold=60)
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseBusyError) as info:
                app.sync_push(Job(func="tests.jobs.noop"))
            waited = time.monotonic() - started
            assert 0.9 <= waited < 5, waited  # it waited for its busy timeout, then gave up
            assert "locked" in str(info.value) and "busy timeout" in str(info.value)
            assert isinstance(info.value, TimeoutError)
            assert job_count(app) == 0  # reads still work, and the push wrote nothing
            holder.release()
        finally:
            holder.close()
        assert app.sync_push(Job(func="tests.jobs.noop"))
        assert job_count(app) == 1


def test_a_worker_and_a_push_wait_out_a_lock_held_for_ten_seconds(chancy: Chancy, db_path: str,
                                                                   tmp_path: Path) -> None:
    """Default busy timeout (30 s): nobody errs, everybody waits. Jobs pushed before the lock, and one pushed
    during it, all run once afterwards; the worker is still running."""
    path, gate = tmp_path / "runs", tmp_path / "gate"
    with Launched(db_path, "--queue", "default:2", "--heartbeat-poll-interval", "1",
                  log_path=tmp_path / "worker.log") as worker:
        worker.wait_ready()
        before = gated_jobs(chancy, 6, path=path, gate=gate)
        wait_until(lambda: len(runs(path)) == 2, message="two jobs started")
        holder = LockHolder(db_path, hold=10)
        try:
            gate.touch()  # the two running jobs return: their results now wait for the lock
            pushed_at = time.time()
            during = str(chancy.sync_push(Job(func="tests.jobs_faults.gated",
                                              kwargs={"path": str(path), "gate": str(gate)})))
            returned_at = time.time()
            released_at = holder.released()
        finally:
            holder.close()
        assert returned_at >= released_at, "the push returned while the lock was held"
        assert released_at - pushed_at > 8, "the lock was not held for ~10 s"
        jobs = chancy.sync_wait_for_jobs([*before, during], timeout=30)
        assert [j.state for j in jobs] == [SUCCEEDED] * 7
        assert sorted(runs(path)) == sorted([*before, during])  # each ran exactly once
        assert worker.running()
        assert any(w["pid"] == worker.pid and alive(w) for w in chancy.sync_get_all_workers())
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        assert "Traceback" not in worker.log()


def test_a_worker_whose_busy_timeout_expires_backs_off_and_retries(chancy: Chancy, db_path: str,
                                                                    tmp_path: Path) -> None:
    """A short busy timeout: the children's and the supervisor's writes fail with SQLITE_BUSY while the lock is
    held; they log, back off and retry, and finish every job once it is released."""
    path, gate = tmp_path / "runs", tmp_path / "gate"
    with Launched(db_path, "--queue", "default:2", "--busy-timeout", "0.2", "--heartbeat-poll-interval", "0.2",
                  log_path=tmp_path / "worker.log") as worker:
        worker.wait_ready()
        refs = gated_jobs(chancy, 5, path=path, gate=gate)
        wait_until(lambda: len(runs(path)) == 2, message="two jobs started")
        holder = LockHolder(db_path, hold=60)
        try:
            gate.touch()
            wait_until(lambda: child_backoff(worker.log(), "database is locked") >= 0.3, timeout=20,
                       message="the children met the lock and backed off, retrying")
            supervisor = [line for line in worker.log().splitlines() if "chancy_lite.worker" in line]
            assert any("locked" in line and "retrying" in line for line in supervisor), "the supervisor never retried"
            states = [j.state for j in chancy.sync_get_jobs(refs)]
            assert states.count(RUNNING) == 2 and states.count(PENDING) == 3  # nothing lost, nothing failed
            assert worker.running()
            holder.release()
        finally:
            holder.close()
        jobs = chancy.sync_wait_for_jobs(refs, timeout=30)
        assert [j.state for j in jobs] == [SUCCEEDED] * 5 and all(j.errors == [] for j in jobs)
        assert sorted(runs(path)) == sorted(refs)
        assert worker.running()
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        assert "Traceback" not in worker.log()


# -------------------------------------------------------------- a full disk


def test_a_push_on_a_full_disk_raises_database_full_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tmpfs(tmp_path / "disk") as disk:
        db_path = str(disk / "jobs.db")
        with Chancy(db_path) as app:
            app.sync_migrate()
            app.sync_declare(Queue("default"))
            app.sync_push(Job(func="tests.jobs.noop"))
            with app.connection() as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # an empty WAL: the next write needs new space
            filler = fill(disk)
            with pytest.raises(DatabaseFullError, match="disk is full"):
                app.sync_push(Job(func="tests.jobs.noop", kwargs={"n": 1}))
            with pytest.raises(DatabaseFullError, match="disk is full"):
                list(app.sync_push_many([Job(func="tests.jobs.noop", kwargs={"n": i}) for i in range(50)]))
            code, err = run_cli(capsys, "--db", db_path, "queue", "push", "tests.jobs.noop")
            assert_one_line_error(code, err, "disk is full")
            assert job_count(app) == 1  # nothing half-written
            filler.unlink()
            ref = app.sync_push(Job(func="tests.jobs.noop", kwargs={"n": 2}))
            assert job_count(app) == 2
            stored = app.sync_get_job(ref)
            assert stored is not None and stored.kwargs == {"n": 2}
            with app.connection() as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_worker_backs_off_on_a_full_disk_and_finishes_its_jobs_when_space_returns(tmp_path: Path) -> None:
    """Jobs finish while the disk is full and their results (256 KiB of meta each) cannot be written: the
    children log and retry; nothing fails or is lost; once space is freed every job ends succeeded, once."""
    path, gate = tmp_path / "runs", tmp_path / "gate"
    blob = 256 * 1024
    with tmpfs(tmp_path / "disk", size="8m") as disk:
        db_path = str(disk / "jobs.db")
        with Chancy(db_path) as app:
            app.sync_migrate()
            with Launched(db_path, "--queue", "default:2", "--heartbeat-poll-interval", "0.5",
                          log_path=tmp_path / "worker.log") as worker:
                worker.wait_ready()
                refs = gated_jobs(app, 4, path=path, gate=gate, blob=blob)
                wait_until(lambda: len(runs(path)) == 2, message="two jobs started")
                filler = fill(disk)
                gate.touch()
                wait_until(lambda: child_backoff(worker.log(), "disk is full") >= 0.3, timeout=20,
                           message="the children met the full disk and backed off, retrying")
                states = [j.state for j in app.sync_get_jobs(refs)]
                assert states.count(RUNNING) == 2 and states.count(PENDING) == 2, states
                assert worker.running()
                filler.unlink()
                jobs = app.sync_wait_for_jobs(refs, timeout=30)
                assert [j.state for j in jobs] == [SUCCEEDED] * 4, [j.errors for j in jobs]
                assert all(len(j.meta["blob"]) == blob and j.errors == [] for j in jobs)
                assert sorted(runs(path)) == sorted(refs)  # each ran exactly once
                assert worker.running()
                worker.signal(signal.SIGTERM)
                assert worker.wait(15) == 0
                assert "Traceback" not in worker.log()
            with app.connection() as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# ------------------------------------------------------------ read-only files


def test_a_read_only_filesystem_is_refused_at_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with tmpfs(tmp_path / "ro") as mount:
        db_path = mount / "jobs.db"
        with Chancy(str(db_path)) as app:
            app.sync_migrate()
            app.sync_push(Job(func="tests.jobs.noop"))
        before = digest(db_path)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        try:
            with pytest.raises(ReadOnlyDatabaseError, match="read-only"):
                Chancy(str(db_path))
            with pytest.raises(ReadOnlyDatabaseError, match="not writable"):
                Chancy(str(mount / "new.db"))
            code, err = run_cli(capsys, "--db", str(db_path), "status")
            assert_one_line_error(code, err, "read-only")
            code, err = run_cli(capsys, "--db", str(mount / "new.db"), "migrate")
            assert_one_line_error(code, err, "not writable")
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        assert digest(db_path) == before
        assert not (mount / "new.db").exists()


_UNPRIVILEGED = r"""
import contextlib, io, json, os, sys
from chancy_lite import Chancy
from chancy_lite.cli import main
import chancy_lite.store, chancy_lite.wake, chancy_lite.worker  # import all first use needs while we can

os.setgroups([])
os.setgid(int(sys.argv[2]))
os.setuid(int(sys.argv[2]))
result = {}
try:
    with Chancy(sys.argv[1]) as app:
        app.sync_get_all_queues()
    result["api"] = ["ok", ""]
except Exception as exc:
    result["api"] = [type(exc).__name__, str(exc)]
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    result["cli"] = [main(["--db", sys.argv[1], "status"]), err.getvalue()]
print(json.dumps(result))
"""


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("read-only file", "read-only"),
        ("read-only directory", "read-only"),
        ("unreadable file", "cannot read"),
        ("another user's private file", "cannot read"),
        ("no file in a read-only directory", "not writable"),
    ],
)
def test_read_only_files_and_directories_are_refused_at_open_for_an_unprivileged_user(case: str,
                                                                                        message: str) -> None:
    """Root ignores permission bits, so the check runs in a subprocess that drops to user ``nobody``."""
    need_root()
    directory = Path(tempfile.mkdtemp(prefix="chancy-ro-", dir="/tmp"))
    try:
        db_path = directory / "jobs.db"
        if case != "no file in a read-only directory":
            with Chancy(str(db_path)) as app:
                app.sync_migrate()
                app.sync_push(Job(func="tests.jobs.noop"))
        os.chown(directory, NOBODY, NOBODY)
        if db_path.exists() and case != "another user's private file":
            os.chown(db_path, NOBODY, NOBODY)
        mode = {"read-only file": 0o444, "unreadable file": 0o000, "read-only directory": 0o644}.get(case)
        if mode is not None:
            os.chmod(db_path, mode)
        if "read-only directory" in case:
            os.chmod(directory, 0o555)
        before = digest(db_path) if db_path.exists() else None
        done = subprocess.run([sys.executable, "-c", _UNPRIVILEGED, str(db_path), str(NOBODY)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        kind, text = result["api"]
        assert kind == ReadOnlyDatabaseError.__name__ and message in text, result
        code, err = result["cli"]
        assert_one_line_error(code, err, message)
        assert (digest(db_path) if db_path.exists() else None) == before
        assert sorted(p.name for p in directory.iterdir()) == (["jobs.db"] if before else [])
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(directory)


# ------------------------------------------------------------- corrupt files


def _garbage_pages(path: Path) -> None:
    """A real queue file whose every other page after the first is overwritten with random bytes."""
    with Chancy(str(path)) as app:
        app.sync_migrate()
        list(app.sync_push_many([Job(func="tests.jobs.noop", kwargs={"i": i, "pad": "x" * 400}) for i in range(200)]))
    data = bytearray(path.read_bytes())
    rng = random.Random(7)
    for page in range(1, len(data) // 4096, 2):
        data[page * 4096:(page + 1) * 4096] = rng.randbytes(4096)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "make",
    [
        _garbage_pages,
        lambda path: path.write_bytes(b"SQLite format 3\x00" + random.Random(1).randbytes(20_000)),
        lambda path: path.write_bytes(random.Random(2).randbytes(20_000)),
    ],
    ids=["garbage-pages", "header-then-garbage", "random-bytes"],
)
def test_a_corrupt_file_gives_not_a_database_error_and_keeps_its_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any
) -> None:
    """At open or at first use, through the API, a worker and the CLI (tests/store/test_bad_input.py covers more
    kinds of non-database files at migrate)."""
    path = tmp_path / "jobs.db"
    make(path)
    before = digest(path)
    try:
        app = Chancy(str(path))
    except NotADatabaseError:
        pass  # refused at open (the header is wrong)
    else:
        with app:
            for use in (app.sync_is_up_to_date, app.sync_count_jobs, app.sync_get_all_queues,
                        lambda: app.sync_list_jobs(limit=1000), lambda: app.sync_push(Job(func="tests.jobs.noop"))):
                with pytest.raises(NotADatabaseError, match=r"corrupt|not a SQLite database"):
                    use()

            async def start_worker() -> None:
                async with Worker(app, register_signal_handlers=False):
                    pass

            with pytest.raises(NotADatabaseError):
                asyncio.run(start_worker())
    for argv in (["status"], ["job", "list"], ["migrate"]):
        code, err = run_cli(capsys, "--db", str(path), *argv)
        assert_one_line_error(code, err)
        assert "corrupt" in err or "not a SQLite database" in err, err
    assert digest(path) == before


def test_a_worker_refuses_a_schema_newer_than_the_code(chancy: Chancy, db_path: str) -> None:
    with Chancy(db_path) as newer:
        newer.store.add_migrations("chancy", [*newer.store.migrations["chancy"], (["SELECT 1"], ["SELECT 1"])])
        newer.sync_migrate()

    async def start_worker() -> None:
        async with Worker(chancy, register_signal_handlers=False):
            pass

    with pytest.raises(SchemaTooNewError):
        asyncio.run(start_worker())


# ---------------------------------------------------------- network and FUSE filesystems


@pytest.mark.parametrize("name", ["plain", "with space", "with\ttab", "with\\backslash"])
def test_filesystem_type_finds_a_real_mount(tmp_path: Path, name: str) -> None:
    """/proc/mounts escapes space, tab, newline and backslash in mount points; each must still be found."""
    outside = filesystem_type(str(tmp_path))
    assert outside is not None and outside != "tmpfs"
    with tmpfs(tmp_path / name) as mount:
        assert filesystem_type(str(mount)) == "tmpfs"
        assert filesystem_type(str(mount / "jobs.db")) == "tmpfs"
        assert filesystem_type(str(tmp_path / "beside.db")) == outside


def test_is_network_filesystem_decides_on_the_type_alone() -> None:
    for fstype in (*NETWORK_FILESYSTEMS, "fuse", "fuse.sshfs", "fuse.rclone", "fuseblk"):
        assert is_network_filesystem(fstype), fstype
    for fstype in ("ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "apfs", "", None):
        assert not is_network_filesystem(fstype), fstype


class FuseMount:
    """A real, minimal FUSE filesystem: an empty root directory, served by a thread of this process over
    /dev/fuse (no libfuse needed). Enough for the checks a Chancy makes before it opens anything."""

    _IN = struct.Struct("<IIQQIIIHH")  # fuse_in_header
    _OUT = struct.Struct("<IiQ")  # fuse_out_header
    INIT, GETATTR, LOOKUP, FORGET, INTERRUPT, BATCH_FORGET = 26, 3, 1, 2, 36, 42

    def __init__(self, target: Path) -> None:
        need_root()
        self.target = target
        target.mkdir(parents=True, exist_ok=True)
        try:
            self.fd = os.open("/dev/fuse", os.O_RDWR)
        except OSError as exc:
            pytest.skip(f"no FUSE here: /dev/fuse: {exc}")
        libc = ctypes.CDLL(None, use_errno=True)
        options = f"fd={self.fd},rootmode=40000,user_id=0,group_id=0".encode()
        if libc.mount(b"chancytest", str(target).encode(), b"fuse.chancytest", 0, options) != 0:
            os.close(self.fd)
            pytest.skip(f"cannot mount a FUSE filesystem here: {os.strerror(ctypes.get_errno())}")
        self.thread = threading.Thread(target=self._serve, daemon=True, name="fuse")
        self.thread.start()

    def _reply(self, unique: int, error: int = 0, payload: bytes = b"") -> None:
        os.write(self.fd, self._OUT.pack(self._OUT.size + len(payload), -error, unique) + payload)

    def _serve(self) -> None:
        while True:
            try:
                request = os.read(self.fd, 1 << 20)
            except OSError:  # ENODEV once unmounted
                return
            _, opcode, unique, node, *_ = self._IN.unpack_from(request)
            if opcode == self.INIT:  # protocol 7.31, no optional features
                self._reply(unique, 0, struct.pack("<IIIIHHIIHHI", 7, 31, 0, 0, 1, 1, 4096, 1, 1, 0, 0) + bytes(28))
            elif opcode == self.GETATTR and node == 1:  # the root: a directory
                attr = struct.pack("<QQQQQQIIIIIIIIII", 1, 0, 0, 0, 0, 0, 0, 0, 0, stat.S_IFDIR | 0o755, 2,
                                   0, 0, 0, 4096, 0)
                self._reply(unique, 0, struct.pack("<QII", 0, 0, 0) + attr)
            elif opcode in (self.FORGET, self.BATCH_FORGET, self.INTERRUPT):
                continue  # no reply expected
            else:  # nothing else exists; everything else is not implemented
                self._reply(unique, errno.ENOENT if opcode in (self.LOOKUP, self.GETATTR) else errno.ENOSYS)

    def close(self) -> None:
        umount(self.target)
        self.thread.join(10)
        os.close(self.fd)


def test_a_file_on_a_fuse_filesystem_is_refused_with_an_actionable_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHANCY_LITE_ALLOW_NETWORK_FS", raising=False)
    fuse = FuseMount(tmp_path / "fuse")
    try:
        path = str(fuse.target / "jobs.db")
        assert filesystem_type(path) == "fuse.chancytest"
        with pytest.raises(ConfigurationError) as info:
            Chancy(path)
        message = str(info.value)
        for advice in ("fuse.chancytest", "local disk", "allow_network_fs=True", "CHANCY_LITE_ALLOW_NETWORK_FS=1"):
            assert advice in message, message
        code, err = run_cli(capsys, "--db", path, "status")
        assert_one_line_error(code, err, "fuse.chancytest filesystem", "local disk")
        # The override, from the environment or the argument (an explicit argument wins).
        assert Chancy(path, allow_network_fs=True).allow_network_fs
        monkeypatch.setenv("CHANCY_LITE_ALLOW_NETWORK_FS", "1")
        assert Chancy(path).allow_network_fs
        with pytest.raises(ConfigurationError):
            Chancy(path, allow_network_fs=False)
        monkeypatch.setenv("CHANCY_LITE_ALLOW_NETWORK_FS", "0")
        with pytest.raises(ConfigurationError):
            Chancy(path)
    finally:
        fuse.close()
    assert filesystem_type(path) != "fuse.chancytest"


# ------------------------------------------------------------ suspend and resume


def alive(worker: dict[str, Any] | None) -> bool:
    """A worker row whose heartbeat has not expired."""
    return worker is not None and worker["expires_at"] > utcnow()


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_worker_suspended_past_its_heartbeat_timeout_keeps_its_job(chancy: Chancy, db_path: str,
                                                                    tmp_path: Path) -> None:
    """A laptop that sleeps: worker A's whole process group is stopped mid-job for longer than its heartbeat
    timeout, while worker B on the same file keeps running recovery passes. A's job must not be taken for
    orphaned: after SIGCONT it ends succeeded, having run exactly once, in A's child."""
    path = tmp_path / "runs"
    options = ["--queue", "default:1", "--heartbeat-timeout", "1", "--heartbeat-poll-interval", "0.5"]
    ref = chancy.sync_push(Job(func="tests.jobs.pid_then_sleep", kwargs={"path": str(path), "seconds": 3},
                               max_attempts=3))
    with Launched(db_path, *options, "--worker-id", "A", log_path=tmp_path / "a.log") as a:
        a.wait_ready()
        wait_until(lambda: pids(path), message="A started the job")
        [child] = pids(path)
        assert child in workers_of(a.pid)
        suspended = (a.pid, child)  # each child leads a process group of its own (for its jobs' processes)
        for group in suspended:
            os.killpg(group, signal.SIGSTOP)
        try:
            wait_until(lambda: _stopped(a.pid) and _stopped(child), message="A and its child are stopped")
            with Launched(db_path, *options, "--worker-id", "B", log_path=tmp_path / "b.log") as b:
                b.wait_ready()
                beats: set[Any] = set()

                def b_recovered_a_few_times_since_a_expired() -> bool:
                    workers = {w["worker_id"]: w for w in chancy.sync_get_all_workers()}
                    if not alive(workers.get("A")) and alive(workers.get("B")):  # A's heartbeat is past its timeout
                        beats.add(workers["B"]["last_seen"])  # each heartbeat of B follows a recovery pass
                    return len(beats) >= 4

                wait_until(b_recovered_a_few_times_since_a_expired, timeout=20,
                           message="A's heartbeat expired and B ran several recovery passes")
                held = chancy.sync_get_job(ref)
                assert held is not None and held.state is RUNNING and held.attempts == 0 and held.errors == []
                assert pids(path) == [child]  # B has not run it
                for group in suspended:
                    os.killpg(group, signal.SIGCONT)
                done = chancy.sync_wait_for_job(ref, timeout=20)
                assert done is not None and done.state is SUCCEEDED, done
                assert done.attempts == 1 and done.errors == []
                assert pids(path) == [child]  # exactly once, in A's child
                wait_until(lambda: any(w["worker_id"] == "A" and alive(w) for w in chancy.sync_get_all_workers()),
                           message="A is back and heartbeating")
                for worker in (a, b):
                    worker.signal(signal.SIGTERM)
                assert b.wait(15) == 0 and a.wait(15) == 0
                assert "recovered" not in b.log()
        finally:
            for group in suspended:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGCONT)

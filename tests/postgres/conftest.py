"""A real PostgreSQL server (Debian's binaries, started in a temp dir on a free port, as the ``postgres`` user when
we are root) and real Chancy 0.26 (in ``.venv-chancy``, see scripts/_setup.sh) to migrate it and run workers.

Tests that need either skip, saying exactly what is missing, when it cannot be had here.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHANCY_PYTHON = ROOT / ".venv-chancy" / "bin" / "python"
_names = itertools.count()

MIGRATE = """
import asyncio, sys
from chancy import Chancy
from chancy.plugins.cron import Cron
from chancy.plugins.workflow import WorkflowPlugin

async def main():
    async with Chancy(sys.argv[1], plugins=[Cron(), WorkflowPlugin()]) as chancy:
        await chancy.migrate()

asyncio.run(main())
"""


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


class PostgresServer:
    def __init__(self, bindir: Path, base: Path, owner: str | None) -> None:
        self.bindir, self.base, self.owner = bindir, base, owner
        self.port = _free_port()
        self.data = base / "data"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(_as_owner([str(self.bindir / argv[0]), *argv[1:]], self.owner),
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")
        return done

    def start(self) -> None:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(statement)  # test set-up: CREATE DATABASE cannot run in a transaction


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed (the [postgres] extra)")
    owner = None
    if os.geteuid() == 0:  # initdb refuses root
        try:
            pwd.getpwnam("postgres")
            owner = "postgres"
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user for initdb")
    base = Path(tempfile.mkdtemp(prefix="chancy-lite-pg-", dir="/tmp"))
    if owner:
        shutil.chown(base, owner, owner)
    server = PostgresServer(bindir, base, owner)
    try:
        server.start()
    except RuntimeError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def chancy_python() -> str:
    if not CHANCY_PYTHON.exists():
        pytest.skip("real Chancy is not installed in .venv-chancy (scripts/_setup.sh makes it; needs PyPI)")
    return str(CHANCY_PYTHON)


@pytest.fixture(scope="session")
def chancy_template(postgres: PostgresServer) -> str:
    """A database migrated once by Chancy 0.26's own migrate() (core, cron, workflow, metrics)."""
    python = chancy_python()
    postgres.admin("CREATE DATABASE chancy_template")
    done = subprocess.run([python, "-c", MIGRATE, postgres.dsn("chancy_template")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return "chancy_template"


@pytest.fixture
def chancy_dsn(postgres: PostgresServer, chancy_template: str) -> str:
    """A fresh database, a copy of the migrated template."""
    name = f"t{os.getpid()}_{next(_names)}"
    postgres.admin(f"CREATE DATABASE {name} TEMPLATE {chancy_template}")
    return postgres.dsn(name)


@pytest.fixture
def empty_dsn(postgres: PostgresServer) -> str:
    name = f"e{os.getpid()}_{next(_names)}"
    postgres.admin(f"CREATE DATABASE {name}")
    return postgres.dsn(name)


class ChancyWorker:
    """A real Chancy 0.26 worker process (tests/postgres/chancy_worker.py) on the given database."""

    def __init__(self, dsn: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHANCY_LITE_AS_CHANCY")}
        env["PYTHONPATH"] = str(HERE)  # the job module, shared with the chancy_lite side
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen([chancy_python(), str(HERE / "chancy_worker.py"), dsn], env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.log.read_text(errors="replace")


@pytest.fixture
def chancy_worker(tmp_path: Path) -> Iterator[Any]:
    workers: list[ChancyWorker] = []

    def start(dsn: str) -> ChancyWorker:
        worker = ChancyWorker(dsn, tmp_path / f"chancy-worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        output = worker.stop()
        if "Traceback" in output:
            sys.stderr.write(output[-4000:])


def wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)

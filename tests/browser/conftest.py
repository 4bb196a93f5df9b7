"""Browser tests: Debian's chromium, driven by Playwright for Python (no browser download), against the dashboard
served for real (``chancy-lite worker web`` in its own process, with a worker running the jobs).

Without /usr/bin/chromium (``scripts/test`` installs Debian's ``chromium`` when it can) or without Playwright,
every test here is skipped with the reason printed loudly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chancy_lite import Chancy, Queue

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHANCY_LITE_CHROMIUM", "/usr/bin/chromium")
# The flags that work on this machine kind: no sandbox (root), and no background networking, which the closed
# network refuses (see the machine notes).
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "correct horse battery"


def _why_not() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return (f"NO BROWSER: {CHROMIUM} is missing (install Debian's chromium: apt-get install chromium; "
                "scripts/test tries to): the dashboard's browser tests did not run")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "NO PLAYWRIGHT: pip install playwright (the dev extra): the dashboard's browser tests did not run"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _why_not()
    if reason is None:
        return
    mine = [item for item in items if Path(str(item.fspath)).is_relative_to(Path(__file__).parent)]
    if mine:
        print(f"\n!!! {reason}\n", file=sys.stderr)
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of purge, cancel, bulk actions
    try:
        yield page
    finally:
        context.close()


class Server:
    """``chancy-lite worker web`` (with a worker, unless ``--no-worker``) on a fresh file."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.db = str(directory / "jobs.db")
        self.chancy = Chancy(self.db)
        self.chancy.sync_migrate()
        env = {**os.environ, "CHANCY_LITE_WEB_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)}
        self.log = open(directory / "server.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chancy_lite.cli", "--db", self.db, "worker", "web", "--port", "0",
             "--shutdown-timeout", "2", *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("dashboard: "), f"worker web did not start: {line!r}, see {self.log.name}"
        self.url = line.split(" ", 1)[1].strip().rstrip("/")
        wait_for(lambda: _answers(self.url + "/health"), 20, "the dashboard to answer")

    def declare(self, name: str, **options: Any) -> None:
        self.chancy.sync_declare(Queue(name, **options), upsert=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.chancy.close()
        self.log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("dashboard"))
    try:
        yield running
    finally:
        running.stop()


def log_in(page: Any, base: str, *, password: str = PASSWORD, path: str = "/") -> None:
    page.goto(base + path)
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")

"""The dashboard served for real: the live poller, the Api plugin inside a Worker (uvicorn), and
``chancy-lite worker web`` as a process."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chancy_lite import Chancy, Job
from chancy_lite.errors import ConfigurationError
from chancy_lite.plugins.api import Api
from chancy_lite.plugins.api.auth import SimpleAuthBackend
from chancy_lite.web.live import Live
from tests.worker_support import run_worker

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
AUTH = SimpleAuthBackend({"admin": PASSWORD})


# -------------------------------------------------------------------- live


def test_the_live_poller_sends_a_summary_when_the_file_changes(chancy: Chancy) -> None:
    async def main() -> None:
        live = Live(chancy, interval=0.02, idle=0.1)
        stream = live.stream(keepalive=5)
        first = await asyncio.wait_for(anext(stream), 5)
        assert first["version"] == 0 and first["counts"]["pending"] == {"count": 0, "exact": True}
        await asyncio.to_thread(chancy.sync_push, Job(func="app.tasks.a"))
        second = await asyncio.wait_for(anext(stream), 5)
        assert second["version"] == 1 and second["counts"]["pending"] == {"count": 1, "exact": True}
        await stream.aclose()
        assert live.listeners == 0
        task = live._task
        assert task is not None
        await asyncio.wait_for(task, 5)  # it stops once nobody listens
        assert live._thread is None and live._conn is None

    asyncio.run(main())


def test_closing_the_live_view_ends_its_streams(chancy: Chancy) -> None:
    async def main() -> list[Any]:
        live = Live(chancy, interval=0.02)
        seen = []

        async def listen() -> None:
            async for summary in live.stream():
                seen.append(summary)

        listener = asyncio.ensure_future(listen())
        await asyncio.sleep(0.2)
        live.close()
        await asyncio.wait_for(listener, 5)
        await asyncio.wait_for(live._task, 5)  # type: ignore[arg-type]
        return seen

    assert asyncio.run(main())


# ------------------------------------------------------------- Api plugin


def get(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def login(base: str) -> str:
    request = urllib.request.Request(base + "api/v1/login", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": "admin", "password": PASSWORD}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["token"]


def first_event(host: str, port: int, token: str) -> dict[str, Any]:
    """Open the event stream, read its first summary, and leave the connection open (returned to the caller)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
    data = None
    while data is None:
        line = response.fp.readline().decode()
        if line.startswith("data: "):
            data = json.loads(line[6:])
    return {"summary": data, "connection": conn}


def test_the_api_plugin_serves_from_a_worker_and_stops_with_it(db_path: str) -> None:
    plugin = Api(port=0, authentication_backend=AUTH)
    with Chancy(db_path, plugins=[plugin]) as app:
        app.sync_migrate()

        async def body(worker: Any) -> None:
            deadline = time.monotonic() + 10
            while plugin.server is None or not plugin.server.started:
                assert time.monotonic() < deadline, "the dashboard did not start"
                await asyncio.sleep(0.02)
            base = plugin.url
            assert base.startswith("http://127.0.0.1:") and plugin.port != 0
            status, health = await asyncio.to_thread(get, base + "health")
            assert (status, health["status"]) == (200, "healthy")
            token = await asyncio.to_thread(login, base)
            status, queues = await asyncio.to_thread(get, base + "api/v1/queues", token)
            assert status == 200 and [q["name"] for q in queues] == ["default"]
            opened = await asyncio.to_thread(first_event, "127.0.0.1", plugin.port, token)
            assert opened["summary"]["counts"]["pending"]["count"] == 0
            body.stream = opened["connection"]  # type: ignore[attr-defined]

        run_worker(app, body, stop_within=6)  # an open event stream does not hold the worker up
        assert plugin.server is None
        body.stream.close()  # type: ignore[attr-defined]


def test_the_api_plugin_checks_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANCY_LITE_WEB_PASSWORD", raising=False)
    with pytest.raises(ConfigurationError, match="no default password"):
        Api()
    with pytest.raises(ConfigurationError, match="port"):
        Api(port=70000, authentication_backend=AUTH)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(ConfigurationError, match=r"cannot listen on 127\.0\.0\.1"):
            Api(port=busy.getsockname()[1], authentication_backend=AUTH).bind()
    finally:
        busy.close()
    assert Api.get_identifier() == "chancy.api"


# --------------------------------------------------------- chancy-lite worker web


@pytest.fixture
def migrated(db_path: str) -> str:
    with Chancy(db_path) as app:
        app.sync_migrate()
    return db_path


def start_web(db_path: str, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    environment = {**os.environ, "CHANCY_LITE_WEB_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT), **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "chancy_lite.cli", "--db", db_path, "worker", "web", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("dashboard: http://127.0.0.1:"), (line, process.stderr.read() if process.stderr else "")
    return process, line.split(" ", 1)[1].strip()


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize("mode", [[], ["--no-worker"]], ids=["with a worker", "alone"])
def test_worker_web_serves_until_sigterm(migrated: str, mode: list[str], stop: list[Any]) -> None:
    process, base = start_web(migrated, *mode)
    stop.append(process)
    deadline = time.monotonic() + 20
    while True:
        try:
            status, health = get(base + "health")
            break
        except OSError:
            assert time.monotonic() < deadline, "worker web never answered"
            time.sleep(0.05)
    assert (status, health["status"]) == (200, "healthy")
    token = login(base)
    if not mode:  # the worker is there: it declared the default queue and shows in the workers list
        deadline = time.monotonic() + 20
        while not get(base + "api/v1/workers", token)[1]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0


def test_worker_web_refuses_to_start_without_credentials_or_with_an_open_writable_dashboard(migrated: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CHANCY_LITE_WEB_PASSWORD", None)
    base = [sys.executable, "-m", "chancy_lite.cli", "--db", migrated, "worker", "web", "--port", "0"]
    no_password = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
    assert no_password.returncode == 2 and "no default password" in no_password.stderr
    open_writable = subprocess.run([*base, "--no-login"], capture_output=True, text=True, env=env, timeout=60)
    assert open_writable.returncode == 2 and "only allowed with read_only=True" in open_writable.stderr


def test_worker_web_can_serve_an_open_read_only_dashboard(migrated: str, stop: list[Any]) -> None:
    process, base = start_web(migrated, "--no-worker", "--read-only", "--no-login",
                              env={"CHANCY_LITE_WEB_PASSWORD": ""})
    stop.append(process)
    deadline = time.monotonic() + 20
    while True:
        try:
            status, jobs = get(base + "api/v1/jobs")
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert (status, jobs) == (200, [])
    process.send_signal(signal.SIGINT)
    assert process.wait(20) == 0


def test_a_second_worker_whose_port_is_taken_runs_without_the_dashboard(db_path: str,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    plugin = Api(port=busy.getsockname()[1], authentication_backend=AUTH)
    try:
        with Chancy(db_path, plugins=[plugin]) as app:
            app.sync_migrate()

            async def body(worker: Any) -> None:
                deadline = time.monotonic() + 10
                while "does not serve the dashboard" not in caplog.text:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
                ref = await app.push(Job(func="tests.jobs.noop"))
                assert (await app.wait_for_job(ref, timeout=30)).state.value == "succeeded"

            run_worker(app, body)
    finally:
        busy.close()

"""The dashboard's pages timed against a big file (part of scripts/bench; ``--only pages`` runs it alone).

A file is filled with ``rows`` jobs written directly (apsw ``executemany``, through chancy_lite's connection):
96 % succeeded, 3 % failed, 1 % pending, 20 running, over four queues, one of which ("rare") holds 0.1 % of the
jobs, and 20 function names. The dashboard (``chancy_lite.web.create_app``) is served by uvicorn on loopback in
this process, and each page is fetched ``repeat`` times over one keep-alive connection with a bearer token: the
figures are end to end (HTTP, rendering, SQLite). The live view's summary (what every open page polls for,
at most once a second, when the file changed) is timed on its own.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import statistics
import threading
import time
from typing import Any

PASSWORD = "bench-password"
QUEUES = ("default", "emails", "reports")
BATCH = 50_000


def build(path: str, rows: int) -> dict[str, Any]:
    """A migrated file with ``rows`` jobs (see the module docstring); returns how long it took and its size."""
    from chancy_lite import Chancy, Queue
    from chancy_lite.utils import chancy_uuids

    chancy = Chancy(path)
    chancy.sync_migrate()
    for name in (*QUEUES, "rare"):
        chancy.sync_declare(Queue(name), upsert=True)
    rng = random.Random(12)
    now = chancy.now()
    statement = (
        f"INSERT INTO {chancy.prefix}jobs (id, queue, func, kwargs, meta, state, attempts, max_attempts, created_at,"
        " started_at, completed_at, scheduled_at, taken_by, holder_pid, errors)"
        " VALUES (?, ?, ?, ?, '{}', ?, ?, 3, ?, ?, ?, ?, ?, ?, ?)"
    )
    error = json.dumps([{"attempt": 0, "traceback": "Traceback (most recent call last):\n  ...\nValueError: bad row"}])
    started = time.perf_counter()
    left, step = rows, 0
    with chancy.connection() as conn:
        while left > 0:
            n = min(left, BATCH)
            ids = chancy_uuids(n)
            params = []
            for i, job_id in enumerate(ids):
                at = now - (rows - step - i) * 1000  # one job a millisecond, the newest now
                r = rng.random()
                state = "succeeded" if r < 0.96 else "failed" if r < 0.99 else "pending"
                queue = "rare" if rng.random() < 0.001 else QUEUES[rng.randrange(len(QUEUES))]
                finished = state != "pending"
                params.append((
                    job_id, queue, f"app.tasks.task_{rng.randrange(20)}", json.dumps({"n": step + i}), state,
                    1 if finished else 0, at, at if finished else None, at + 500 if finished else None, at, None,
                    None, error if state == "failed" else "[]",
                ))
            with conn:
                conn.executemany(statement, params)
            left -= n
            step += n
        with conn:  # some running jobs, held by a worker
            conn.executemany(statement, [
                (job_id, QUEUES[i % 3], "app.tasks.long", "{}", "running", 0, now, now, None, now, "bench-worker", 1,
                 "[]") for i, job_id in enumerate(chancy_uuids(20))
            ])
    built = time.perf_counter() - started
    chancy.close()
    return {"rows": rows, "build_s": built, "file_mib": os.path.getsize(path) / 2**20}


class Served:
    """The dashboard of ``path`` served by uvicorn in a thread of this process."""

    def __init__(self, path: str) -> None:
        import uvicorn

        from chancy_lite import Chancy
        from chancy_lite.plugins.api.auth import SimpleAuthBackend
        from chancy_lite.web import create_app

        self.chancy = Chancy(path)
        self.app = create_app(self.chancy, auth=SimpleAuthBackend({"admin": PASSWORD}))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio: TCP_NODELAY
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, log_level="warning",
                                                    lifespan="off", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        _, body = self.request("POST", "/api/v1/login", {"username": "admin", "password": PASSWORD})
        self.token = json.loads(body)["token"]

    def request(self, method: str, path: str, data: Any = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        self.conn.request(method, path, body=json.dumps(data) if data is not None else None, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()
        self.server.should_exit = True
        self.thread.join(15)
        self.chancy.close()


def time_page(served: Served, path: str, repeat: int) -> dict[str, Any]:
    times = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        status, body = served.request("GET", path)
        times.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
        size = len(body)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[min(len(times) - 1, int(len(times) * 0.95))],
            "max_ms": times[-1], "bytes": size}


def run(workdir: str, rows: int, repeat: int = 20) -> dict[str, Any]:
    path = os.path.join(workdir, f"pages-{rows}.db")
    result: dict[str, Any] = {"build": build(path, rows), "repeat": repeat, "pages": {}}
    served = Served(path)
    try:
        _, body = served.request("GET", "/api/v1/jobs?state=failed&limit=50&pagination=true")
        page = json.loads(body)
        cursor = page["next_cursor"]
        job_id = page["items"][0]["id"]
        _, body = served.request("GET", "/api/v1/jobs?state=succeeded&limit=100&pagination=true")
        deep = json.loads(body)["next_cursor"]
        paths = [
            ("overview", "/"),
            ("jobs, every state", "/jobs"),
            ("failed jobs", "/jobs?state=failed"),
            ("failed jobs, page 2 (keyset)", f"/jobs?state=failed&before={cursor}"),
            ("succeeded jobs", "/jobs?state=succeeded"),
            ("succeeded jobs, page 3 (keyset)", f"/jobs?state=succeeded&before={deep}"),
            ("succeeded jobs of a rare queue", "/jobs?state=succeeded&queue=rare"),
            ("pending jobs (a backlog of ~10,000)", "/jobs?state=pending"),
            ("retrying jobs (none, behind that backlog)", "/jobs?state=retrying"),
            ("running jobs", "/jobs?state=running"),
            ("failed jobs, function contains (scans the failed)", "/jobs?state=failed&func=task_7"),
            ("a job", f"/jobs/{job_id}"),
            ("queues", "/queues"),
            ("workers", "/workers"),
            ("API: 100 failed jobs", "/api/v1/jobs?state=failed&limit=100"),
            ("API: 100 jobs, no filter", "/api/v1/jobs?limit=100"),
            ("API: counts", "/api/v1/jobs/counts"),
            ("health", "/health"),
        ]
        for name, path_ in paths:
            result["pages"][name] = {"path": path_, **time_page(served, path_, repeat)}
        live = served.app.state.chancy_lite.live
        with served.chancy.connection() as conn:
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                live.summary(conn)
                times.append((time.perf_counter() - started) * 1000)
        result["live_summary_ms"] = statistics.median(times)
    finally:
        served.close()
    return result


def rows_for_report(result: dict[str, Any]) -> list[tuple[str, str]]:
    build_ = result["build"]
    out = [(f"dashboard file: {build_['rows']:,} jobs",
            f"{build_['file_mib']:.0f} MiB, built in {build_['build_s']:.1f} s")]
    for name, page in result["pages"].items():
        out.append((f"page: {name}, median ms", f"{page['median_ms']:.1f} (p95 {page['p95_ms']:.1f}, "
                                                  f"max {page['max_ms']:.1f}; {page['bytes'] / 1024:.0f} KiB)"))
    out.append(("live view summary (counts from indexes), median ms", f"{result['live_summary_ms']:.2f}"))
    return out

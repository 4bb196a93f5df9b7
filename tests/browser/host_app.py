"""A host application that mounts the dashboard under /admin/jobs, served by uvicorn (for the browser tests):
``python -m tests.browser.host_app DB`` prints ``listening: URL`` once it listens."""

from __future__ import annotations

import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from chancy_lite import Chancy
from chancy_lite.plugins.api.auth import SimpleAuthBackend
from chancy_lite.web import create_app


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("the host application")


def build(db: str, password: str) -> Starlette:
    dashboard = create_app(Chancy(db), auth=SimpleAuthBackend({"admin": password}))
    return Starlette(routes=[Route("/", home), Mount("/admin/jobs", app=dashboard)])


def main() -> None:
    db, password = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio: TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    print(f"listening: http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(build(db, password), log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

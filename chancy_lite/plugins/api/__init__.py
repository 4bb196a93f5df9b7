"""``Api``: serve the dashboard and HTTP API from a worker (Chancy's ``chancy.plugins.api.Api``).

::

    from chancy_lite.plugins.api import Api
    from chancy_lite.plugins.api.auth import SimpleAuthBackend

    chancy = Chancy("jobs.db", plugins=[Api(authentication_backend=SimpleAuthBackend({"admin": "a long password"}))])
    # every worker of this app now serves http://127.0.0.1:8000/ too

The server is uvicorn, run inside the worker's event loop as the plugin's ``run`` loop; it stops with the worker
(open live streams are ended, then connections get two seconds to finish). The worker keeps its own signal
handling. ``chancy-lite worker web`` starts a worker with this plugin (``--no-worker``: the server alone).

Options as Chancy's (``port=8000``, ``host="127.0.0.1"``, ``debug``, ``allow_origins``, ``secret_key``,
``authentication_backend``), and chancy_lite's: ``read_only`` (no action is possible), ``login_required`` (False
only with ``read_only``), ``root_path`` (the prefix a reverse proxy serves it under). The web extra is needed
(``pip install 'chancy-lite[web]'``): without it, or without credentials, ``Api(...)`` raises at once
(``MissingDependencyError``, ``ConfigurationError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from chancy_lite.errors import ConfigurationError
from chancy_lite.plugin import Plugin
from chancy_lite.plugins.api.auth import AuthBackend, SimpleAuthBackend

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker

__all__ = ["Api", "AuthBackend", "SimpleAuthBackend"]

log = logging.getLogger(__name__)
SHUTDOWN_GRACE = 2  # seconds open connections get to finish when the server stops


class Api(Plugin):
    """Serve the dashboard and HTTP API from every worker of the app (see the module docstring)."""

    def __init__(
        self,
        *,
        port: int = 8000,
        host: str = "127.0.0.1",
        debug: bool = False,
        allow_origins: Iterable[str] | None = None,
        secret_key: str | bytes | None = None,
        authentication_backend: AuthBackend | None = None,
        read_only: bool = False,
        login_required: bool = True,
        root_path: str = "",
    ) -> None:
        from chancy_lite.web import require_web
        from chancy_lite.web.context import resolve_auth

        require_web(server=True)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be an integer from 0 to 65535 (0: any free port), got {port!r}")
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"host must be an address such as '127.0.0.1', got {host!r}")
        self.port = port
        self.host = host
        self.debug = debug
        self.allow_origins = list(allow_origins) if allow_origins else None
        self.secret_key = secret_key
        self.read_only = read_only
        self.login_required = login_required
        self.root_path = root_path.rstrip("/")
        self.authentication_backend = resolve_auth(
            authentication_backend, read_only=read_only, login_required=login_required
        )
        self.server: Any = None
        self._socket: socket.socket | None = None

    @staticmethod
    def get_identifier() -> str:
        return "chancy.api"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.root_path}/"

    def build_starlette_app(self, worker: Worker | None, chancy: Chancy) -> Any:
        """The dashboard app with this plugin's options (Chancy 0.26's name), ready to mount elsewhere."""
        from chancy_lite.web import create_app

        return create_app(
            chancy, auth=self.authentication_backend, secret_key=self.secret_key, read_only=self.read_only,
            login_required=self.login_required, worker=worker, allow_origins=self.allow_origins, debug=self.debug,
        )

    def bind(self) -> socket.socket:
        """Listen on ``host:port`` now (port 0 picks a free one and updates ``port``): the server started later
        serves this socket, so a port in use is reported here (``ConfigurationError``), not inside a worker."""
        if self._socket is not None:
            return self._socket
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Answers go out in two writes (head, body): without TCP_NODELAY the second waits ~40 ms for the
            # client's delayed ACK (asyncio sets it only on sockets whose proto says TCP: set it here, inherited).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.bind(address)
                sock.listen(128)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise ConfigurationError(
                f"the dashboard cannot listen on {self.host}:{self.port} ({exc.strerror or exc}): choose another "
                "port (port=..., or --port) or stop what uses it"
            ) from exc
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._socket = sock
        return sock

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        try:
            self.bind()
        except ConfigurationError as exc:  # another process serves this port (another worker of the same app?)
            log.error("this worker does not serve the dashboard: %s", exc)
            return
        await self.serve(chancy, worker=worker)

    async def serve(self, chancy: Chancy, *, worker: Worker | None = None, handle_signals: bool = False) -> None:
        """Serve until cancelled (or, with ``handle_signals``, until SIGTERM or SIGINT)."""
        import uvicorn

        app = self.build_starlette_app(worker, chancy)
        sock = self.bind()
        self._socket = None  # uvicorn closes it when it stops; a restart binds again
        config = uvicorn.Config(
            app, log_config=None, log_level="debug" if self.debug else "warning", lifespan="off",
            access_log=self.debug, root_path=self.root_path, timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        server = self.server = _Server(config)
        log.info("dashboard at %s", self.url)
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        with _stop_on_signals(server, app, enabled=handle_signals):
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                _stop(server, app)
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(task, SHUTDOWN_GRACE + 3)
                raise
            finally:
                self.server = None


def _stop(server: Any, app: Any) -> None:
    server.should_exit = True
    app.state.chancy_lite.live.close()  # end the live streams, so their connections close at once


@contextlib.contextmanager
def _stop_on_signals(server: Any, app: Any, *, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop, server, app)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn without its signal handlers: the worker (or ``serve``) owns SIGTERM and SIGINT."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


def _Server(config: Any) -> Any:
    return _server_class()(config)

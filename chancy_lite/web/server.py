"""The ASGI app: routes, middleware and the options of ``create_app``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chancy_lite.plugins.api.auth import AuthBackend
from chancy_lite.utils import import_string
from chancy_lite.web.api import ApiViews
from chancy_lite.web.context import Context, guarded, json_response, resolve_auth
from chancy_lite.web.filters import BadRequest
from chancy_lite.web.live import Live
from chancy_lite.web.pages import Pages
from chancy_lite.web.security import Signer

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)
SECRET_ENV = "CHANCY_LITE_WEB_SECRET"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def build_app(
    chancy: Chancy,
    *,
    auth: AuthBackend | None = None,
    secret_key: str | bytes | None = None,
    read_only: bool = False,
    login_required: bool = True,
    worker: Worker | None = None,
    allow_origins: Iterable[str] | None = None,
    debug: bool = False,
    live_interval: float = 1.0,
) -> Starlette:
    """See :func:`chancy_lite.web.create_app`."""
    backend = resolve_auth(auth, read_only=read_only, login_required=login_required)
    ctx = Context(
        chancy=chancy, worker=worker, auth=backend,
        signer=Signer(secret_key or os.environ.get(SECRET_ENV) or None),
        read_only=read_only, login_required=login_required, live=Live(chancy, interval=live_interval), debug=debug,
    )
    api, pages = ApiViews(ctx), Pages(ctx)
    middleware = [Middleware(SecurityHeaders)]
    if allow_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(allow_origins), allow_credentials=False,
                                     allow_headers=["*"], allow_methods=["*"]))
    app = Starlette(
        debug=debug, routes=[*api_routes(api), *plugin_routes(ctx), *page_routes(pages)], middleware=middleware,
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.state.chancy_lite = ctx
    return app


def api_routes(api: ApiViews) -> list[BaseRoute]:
    v1 = "/api/v1"
    return [
        Route("/health", api.health, methods=["GET"], name="health"),
        Route(f"{v1}/login", api.login, methods=["POST"], name="api_login"),
        Route(f"{v1}/logout", api.logout, methods=["POST"], name="api_logout"),
        Route(f"{v1}/configuration", api.configuration, methods=["GET"]),
        Route(f"{v1}/system", api.system, methods=["GET"]),
        Route(f"{v1}/plugins", api.plugins, methods=["GET"]),
        Route(f"{v1}/queues", api.queues, methods=["GET"]),
        Route(f"{v1}/queues", api.create_queue, methods=["POST"]),
        Route(f"{v1}/queues/{{name}}", api.update_queue, methods=["PATCH"]),
        Route(f"{v1}/queues/{{name}}", api.delete_queue, methods=["DELETE"]),
        Route(f"{v1}/queues/{{name}}/pause", api.pause_queue, methods=["POST"]),
        Route(f"{v1}/queues/{{name}}/resume", api.resume_queue, methods=["POST"]),
        Route(f"{v1}/workers", api.workers, methods=["GET"]),
        Route(f"{v1}/jobs", api.jobs, methods=["GET"]),
        Route(f"{v1}/jobs", api.act_on_jobs, methods=["POST"]),
        Route(f"{v1}/jobs/bulk", api.bulk, methods=["POST"]),
        Route(f"{v1}/jobs/counts", api.counts, methods=["GET"]),
        Route(f"{v1}/jobs/functions", api.functions, methods=["GET"]),
        Route(f"{v1}/jobs/{{id}}", api.job, methods=["GET"]),
        Route(f"{v1}/jobs/{{id}}", api.purge_job, methods=["DELETE"]),
        Route(f"{v1}/jobs/{{id}}/retry", api.retry_job, methods=["POST"]),
        Route(f"{v1}/jobs/{{id}}/cancel", api.cancel_job, methods=["POST"]),
        Route(f"{v1}/crons", api.crons, methods=["GET"]),
        Route(f"{v1}/crons/{{key}}/run", api.run_cron, methods=["POST"]),
        Route(f"{v1}/workflows", api.workflows, methods=["GET"]),
        Route(f"{v1}/workflows/{{id}}", api.workflow, methods=["GET"]),
        Route(f"{v1}/metrics", api.metrics, methods=["GET"]),
        Route(f"{v1}/metrics/{{prefix:path}}", api.metric, methods=["GET"]),
        Route(f"{v1}/events", api.events, methods=["GET"]),
        WebSocketRoute(f"{v1}/ws", api.websocket),
    ]


def page_routes(pages: Pages) -> list[BaseRoute]:
    return [
        Route("/static/{name}", pages.static, methods=["GET", "HEAD"]),
        Route("/login", pages.login_form, methods=["GET"], name="login"),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"], name="logout"),
        Route("/", pages.overview, methods=["GET"], name="overview"),
        Route("/jobs", pages.jobs, methods=["GET"], name="jobs"),
        Route("/jobs/bulk", pages.bulk, methods=["POST"]),
        Route("/jobs/{id}", pages.job, methods=["GET"], name="job"),
        Route("/jobs/{id}/{action}", pages.job_action, methods=["POST"]),
        Route("/queues", pages.queues, methods=["GET"], name="queues"),
        Route("/queues", pages.save_queue, methods=["POST"]),
        Route("/queues/new", pages.queue_form, methods=["GET"]),
        Route("/queues/{name}", pages.queue_form, methods=["GET"], name="queue"),
        Route("/queues/{name}", pages.save_queue, methods=["POST"]),
        Route("/queues/{name}/pause", pages.pause_queue, methods=["POST"]),
        Route("/queues/{name}/resume", pages.resume_queue, methods=["POST"]),
        Route("/queues/{name}/delete", pages.delete_queue, methods=["POST"]),
        Route("/workers", pages.workers, methods=["GET"], name="workers"),
        Route("/crons", pages.crons, methods=["GET"], name="crons"),
        Route("/crons/{key}/run", pages.run_cron, methods=["POST"]),
        Route("/workflows", pages.workflows, methods=["GET"], name="workflows"),
        Route("/workflows/{id}", pages.workflow, methods=["GET"], name="workflow"),
        Route("/metrics", pages.metrics, methods=["GET"], name="metrics"),
        Route("/metrics/{key:path}", pages.metric, methods=["GET"], name="metric"),
    ]


class ApiPlugin:
    """Routes a plugin adds to the dashboard's app, as Chancy's: a plugin's ``api_plugin()`` returns the import
    path of an ``ApiPlugin`` subclass, built with the dashboard's context, whose ``routes()`` gives
    ``{"path", "endpoint", "methods", "name"}`` dicts. Each endpoint is called as
    ``await endpoint(request, chancy=..., worker=...)`` behind the dashboard's login (and its CSRF check and
    read-only mode for methods other than GET)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def name(self) -> str:
        return type(self).__name__

    def routes(self) -> list[dict[str, Any]]:
        return []


class _PluginEndpoint:
    def __init__(self, ctx: Context, endpoint: Any) -> None:
        self.ctx = ctx
        self.endpoint = endpoint

    async def refuse(self, request: Request, exc: BadRequest) -> Response:
        return json_response(exc.body(), exc.status)

    @guarded()
    async def __call__(self, request: Request) -> Response:
        result: Response = await self.endpoint(request, chancy=self.ctx.chancy, worker=self.ctx.worker)
        return result


def plugin_routes(ctx: Context) -> list[BaseRoute]:
    """The routes of plugins that declare an ``api_plugin()`` (the built-in views of Cron, workflows and metrics
    are part of the dashboard already)."""
    routes: list[BaseRoute] = []
    for identifier, plugin in ctx.chancy.plugins.items():
        path = plugin.api_plugin() if callable(getattr(plugin, "api_plugin", None)) else None
        if not path:
            continue
        try:
            extra = import_string(path)(ctx)
            for spec in extra.routes():
                if spec.get("is_websocket"):
                    log.warning("plugin %s: websocket routes are not supported by the dashboard; skipped %s",
                                identifier, spec.get("path"))
                    continue
                handler = _PluginEndpoint(ctx, spec["endpoint"])
                routes.append(Route(spec["path"], handler.__call__, methods=list(spec.get("methods") or ["GET"]),
                                    name=spec.get("name")))
        except Exception:
            log.exception("plugin %s: its API routes (%s) could not be added", identifier, path)
    return routes


async def not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith(str(request.scope.get("root_path", "")) + "/api/"):
        return json_response({"title": "Not found"}, 404)
    return HTMLResponse("<!doctype html><title>Not found</title><h1>Not found</h1>", status_code=404)


async def not_allowed(request: Request, exc: Exception) -> Response:
    return json_response({"title": "Method not allowed"}, 405)


class SecurityHeaders:
    """Headers every answer carries: a Content-Security-Policy allowing only the dashboard's own script and
    stylesheet (no inline script), no framing, no MIME sniffing, no referrer outside the site."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
            await send(message)

        await self.app(scope, receive, send_with_headers)

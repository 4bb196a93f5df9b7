"""The JSON API: Chancy 0.26's routes and shapes under ``/api/v1`` (so its clients work), plus a few of
chancy_lite's own (marked *lite* below). Every route but ``/health`` and ``/api/v1/login`` needs a bearer token
(or the dashboard's session cookie, with its CSRF token on writes); errors are JSON.

=====================================  ========================================================================
``GET /health``                        no auth: ``{"status": "healthy", "database": "reachable", "schema":
                                       "current"}``, or 503 with ``"status": "unhealthy"`` and what is wrong
``POST /api/v1/login``                 ``{username, password}`` -> ``{"token"}``; 401 ``{"error"}``; 429 after
                                       too many failures from one address
``POST /api/v1/logout``                ``{"success": true}`` (tokens are stateless)
``GET /api/v1/configuration``          ``{"plugins": [class names]}``
``GET /api/v1/system``                 ``{"chancy_version", "database": {"version", "prefix", ...}}``
``GET /api/v1/plugins``                ``[{identifier, tables, migrate_key, migrate_package, api_plugin,
                                       dependencies, scope}]``
``GET /api/v1/queues``                 ``[Queue.pack()]``
``POST /api/v1/queues``                a queue over the defaults, declared with upsert; the stored queue
``PATCH /api/v1/queues/{name}``        fields merged over the stored queue; 404 ``{"title": "Queue not found"}``
``DELETE /api/v1/queues/{name}``       ``?purge_jobs=true`` (default); ``{"ok": true}``
``POST /api/v1/queues/{name}/pause``   ``{"resume_at"?: ISO time}``; ``{"ok": true}``
``POST /api/v1/queues/{name}/resume``  ``{"ok": true}``
``GET /api/v1/workers``                worker rows with ``is_leader``
``GET /api/v1/jobs``                   filters (see ``chancy_lite.web.filters``), ``limit``, ``before``,
                                       ``pagination=true`` -> ``{"items", "has_more", "next_cursor"}``
``POST /api/v1/jobs``                  ``{"action": "retry"|"cancel"|"purge", "ids": [...]}`` -> per-job results
``POST /api/v1/jobs/bulk``             *lite*: the action on every job matching a filter, capped (10,000)
``GET /api/v1/jobs/counts``            *lite*: jobs per state, counted from indexes up to a cap
``GET /api/v1/jobs/functions``         sorted distinct function names (cached 60 s)
``GET /api/v1/jobs/{id}``              the job, or 404 ``{}``
``DELETE /api/v1/jobs/{id}``           purge it; ``{"ok": true}``
``POST /api/v1/jobs/{id}/retry``       ``{"ok": true}``
``POST /api/v1/jobs/{id}/cancel``      ``{"ok": true}``
``GET /api/v1/crons``                  with the Cron plugin: the schedules
``POST /api/v1/crons/{key}/run``       *lite*: push the schedule's job now; ``{"ok": true, "job_id"}``
``GET /api/v1/workflows[/{id}]``       with a workflow plugin
``GET /api/v1/metrics[/{prefix}]``     with a metrics plugin
``GET /api/v1/events``                 *lite*: server-sent events of live job counts (``chancy_lite.web.live``)
``WS /api/v1/ws?token=``               the serving worker's hub events, as 0.26
=====================================  ========================================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

import chancy_lite
from chancy_lite.hub import Event
from chancy_lite.queue import Queue
from chancy_lite.store import JobFilter
from chancy_lite.web import actions, plugins
from chancy_lite.web.context import Context, guarded, json_response
from chancy_lite.web.filters import BadRequest, job_filter, job_id, page_limit, triples, truthy
from chancy_lite.web.shapes import dumps, job_to_json, pack_queue, parse_time, unpack_queue, worker_to_json

if TYPE_CHECKING:
    from chancy_lite.db import Connection

log = logging.getLogger(__name__)
WS_QUEUE = 256


class ApiViews:
    """The JSON routes of one app."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.chancy = ctx.chancy

    async def refuse(self, request: Request, exc: BadRequest) -> Response:
        return json_response(exc.body(), exc.status)

    async def body(self, request: Request, *, required: bool = True) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            if required:
                raise BadRequest("Invalid payload", "the body must be a JSON object")
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadRequest("Invalid payload", "the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise BadRequest("Invalid payload", "the body must be a JSON object")
        return data

    # ---------------------------------------------------------------- health

    @guarded(public=True)
    async def health(self, request: Request) -> Response:
        chancy = self.chancy
        if chancy.path != ":memory:" and not os.path.exists(chancy.path):
            return json_response({"status": "unhealthy", "database": "missing", "schema": "unknown"}, 503)
        try:
            current = await chancy.run_store(chancy.store.is_up_to_date)
        except Exception as exc:
            return json_response({"status": "unhealthy", "database": "unreachable", "schema": "unknown",
                                  "detail": str(exc)}, 503)
        if not current:
            return json_response({"status": "unhealthy", "database": "reachable", "schema": "outdated",
                                  "detail": "migrations are pending: run `chancy-lite migrate`"}, 503)
        return json_response({"status": "healthy", "database": "reachable", "schema": "current"})

    # ------------------------------------------------------------------ auth

    @guarded(public=True)
    async def login(self, request: Request) -> Response:
        ctx = self.ctx
        client = request.client.host if request.client else "?"
        if ctx.throttle.blocked(client):
            return json_response({"error": "Too many failed logins; try again later"}, 429)
        try:
            data = await self.body(request)
        except BadRequest:
            data = {}
        username, password = data.get("username"), data.get("password")
        ok = (
            ctx.auth is not None and isinstance(username, str) and isinstance(password, str) and username != ""
            and await ctx.auth.login(request, username, password)
        )
        if not ok:
            ctx.throttle.failed(client)
            return json_response({"error": "Invalid username or password"}, 401)
        assert isinstance(username, str)
        return json_response({"token": ctx.signer.token(username)})

    @guarded(public=True)
    async def logout(self, request: Request) -> Response:
        return json_response({"success": True})

    # ------------------------------------------------------------- the app

    @guarded()
    async def configuration(self, request: Request) -> Response:
        return json_response({"plugins": [type(p).__name__ for p in self.chancy.plugins.values()]})

    @guarded()
    async def system(self, request: Request) -> Response:
        chancy = self.chancy
        version = await chancy.run_store(chancy.store.sqlite_version)
        return json_response({
            "chancy_version": chancy_lite.__version__,
            "database": {"version": f"SQLite {version}", "prefix": chancy.prefix, "engine": "sqlite",
                         "path": chancy.path, "file_size": file_size(chancy.path),
                         "wal_size": file_size(chancy.path + "-wal")},
        })

    @guarded()
    async def plugins(self, request: Request) -> Response:
        rows = []
        for identifier, plugin in self.chancy.plugins.items():
            api_plugin = getattr(plugin, "api_plugin", None)
            rows.append({
                "identifier": identifier, "tables": list(plugin.get_tables()) if hasattr(plugin, "get_tables") else [],
                "migrate_key": plugin.migrate_key() if hasattr(plugin, "migrate_key") else None,
                "migrate_package": None, "api_plugin": api_plugin() if callable(api_plugin) else None,
                "dependencies": list(plugin.get_dependencies()) if hasattr(plugin, "get_dependencies") else [],
                "scope": "worker",
            })
        return json_response(rows)

    # ---------------------------------------------------------------- queues

    @guarded()
    async def queues(self, request: Request) -> Response:
        return json_response([pack_queue(q) for q in await self.chancy.get_all_queues()])

    @guarded()
    async def create_queue(self, request: Request) -> Response:
        data = await self.body(request)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("Invalid queue payload", "name is required")
        return await self._declare(lambda: {**pack_queue(Queue(name)), **data})

    @guarded()
    async def update_queue(self, request: Request) -> Response:
        name = request.path_params["name"]
        data = await self.body(request)
        try:
            current = await self.chancy.get_queue(name)
        except KeyError:
            return json_response({"title": "Queue not found"}, 404)
        return await self._declare(lambda: {**pack_queue(current), **data, "name": name})

    async def _declare(self, build: Any) -> Response:
        try:
            queue = unpack_queue(build())
            stored = await self.chancy.declare(queue, upsert=True)
        except (ValueError, TypeError) as exc:
            raise BadRequest("Invalid queue payload", str(exc)) from None
        return json_response(pack_queue(stored))

    @guarded()
    async def delete_queue(self, request: Request) -> Response:
        purge = truthy(request.query_params.get("purge_jobs"), True)
        try:
            await self.chancy.delete_queue(request.path_params["name"], purge_jobs=purge)
        except KeyError:
            pass  # as 0.26: ok even when there was no such queue
        return json_response({"ok": True})

    @guarded()
    async def pause_queue(self, request: Request) -> Response:
        data = await self.body(request, required=False)
        resume_at = data.get("resume_at")
        if resume_at is not None and not isinstance(resume_at, str):
            raise BadRequest("Invalid payload", "resume_at is an ISO 8601 time")
        try:
            when = parse_time(resume_at) if resume_at else None
        except ValueError as exc:
            raise BadRequest("Invalid payload", str(exc)) from None
        try:
            await self.chancy.pause_queue(request.path_params["name"], resume_at=when)
        except KeyError:
            return json_response({"title": "Queue not found"}, 404)
        return json_response({"ok": True})

    @guarded()
    async def resume_queue(self, request: Request) -> Response:
        try:
            await self.chancy.resume_queue(request.path_params["name"])
        except KeyError:
            return json_response({"title": "Queue not found"}, 404)
        return json_response({"ok": True})

    # --------------------------------------------------------------- workers

    @guarded()
    async def workers(self, request: Request) -> Response:
        return json_response([worker_to_json(w) for w in await self.chancy.get_all_workers()])

    # ------------------------------------------------------------------ jobs

    @guarded()
    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        flt = job_filter(params)
        limit = page_limit(params)
        before = job_id(params.get("before"))
        paginate = truthy(params.get("pagination"), False)
        rows, has_more = await self.chancy.run_store(read_page, self.chancy, flt, before, limit)
        items = [job_to_json(job, taken_by) for job, taken_by in rows]
        if not paginate:
            return json_response(items)
        cursor = items[-1]["id"] if has_more and items else None
        return json_response({"items": items, "has_more": has_more, "next_cursor": cursor})

    @guarded()
    async def act_on_jobs(self, request: Request) -> Response:
        data = await self.body(request)
        action = data.get("action")
        if not isinstance(action, str) or action.lower() not in actions.ACTIONS:
            raise BadRequest("Invalid action", "action must be retry, cancel or purge")
        try:
            ids = actions.ids_from(data.get("ids"))
        except ValueError as exc:
            raise BadRequest("Invalid ids", str(exc)) from None
        result = await self.chancy.run_store(actions.act_on_jobs, self.chancy, action.lower(), ids)
        return json_response(result)

    @guarded()
    async def bulk(self, request: Request) -> Response:
        """*lite*: ``{"action", "state"?, "queue"?, "func"?, "filters"?, "limit"?}`` -> ``{"action", "matched",
        "completed", "skipped", "failed", "has_more"}``. At least one filter is required (there is no "act on every
        job"); ``limit`` is at most 10,000 (the default)."""
        data = await self.body(request)
        action = data.get("action")
        if not isinstance(action, str) or action.lower() not in actions.ACTIONS:
            raise BadRequest("Invalid action", "action must be retry, cancel or purge")
        flt = bulk_filter(data)
        cap = data.get("limit", actions.BULK_CAP)
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= actions.BULK_CAP:
            raise BadRequest("Invalid limit", f"limit must be an integer from 1 to {actions.BULK_CAP}")
        result = await self.chancy.run_store(actions.act_on_matching, self.chancy, action.lower(), flt, cap=cap)
        return json_response(result)

    @guarded()
    async def counts(self, request: Request) -> Response:
        """*lite*: ``{state: {"count", "exact"}}``, of ``?queue=`` or every queue, each counted from an index up to
        ``?cap=`` (default 10,000, at most 1,000,000): ``exact`` false means "at least"."""
        queue = request.query_params.get("queue") or None
        try:
            cap = int(request.query_params.get("cap") or 10_000)
        except ValueError:
            cap = 0
        if not 1 <= cap <= 1_000_000:
            raise BadRequest("Invalid cap", "cap must be an integer from 1 to 1000000")
        counts = await self.chancy.run_store(self.chancy.store.count_jobs_capped, queue, cap=cap)
        return json_response({state: {"count": c.count, "exact": c.exact} for state, c in counts.items()})

    @guarded()
    async def functions(self, request: Request) -> Response:
        return json_response(await self.ctx.funcs())

    @guarded()
    async def job(self, request: Request) -> Response:
        try:
            key = job_id(request.path_params["id"], "job ID")
        except BadRequest:
            return json_response({}, 404)
        assert key is not None
        rows = await self.chancy.run_store(self.chancy.store.get_job_rows, [key])
        if not rows:
            return json_response({}, 404)
        return json_response(job_to_json(*rows[0]))

    def _job_id(self, request: Request) -> str:
        key = job_id(request.path_params["id"], "job ID")
        assert key is not None
        return key

    @guarded()
    async def purge_job(self, request: Request) -> Response:
        await self.chancy.purge_jobs([self._job_id(request)])
        return json_response({"ok": True})

    @guarded()
    async def retry_job(self, request: Request) -> Response:
        await self.chancy.retry_jobs([self._job_id(request)])
        return json_response({"ok": True})

    @guarded()
    async def cancel_job(self, request: Request) -> Response:
        await self.chancy.cancel_job(self._job_id(request))
        return json_response({"ok": True})

    # -------------------------------------------------------------- plugins

    def _plugin(self, plugin: Any, name: str) -> Any:
        if plugin is None:
            raise BadRequest(f"The {name} plugin is not enabled", status=404)
        return plugin

    @guarded()
    async def crons(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.cron, "Cron")
        return json_response(await plugins.schedules(plugin, self.chancy))

    @guarded()
    async def run_cron(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.cron, "Cron")
        try:
            pushed = await plugins.run_now(plugin, self.chancy, request.path_params["key"])
        except KeyError:
            return json_response({"title": "Schedule not found"}, 404)
        return json_response({"ok": True, "job_id": pushed})

    @guarded()
    async def workflows(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.workflows, "workflow")
        params = request.query_params
        state = None
        name_filter: tuple[str, str] | None = None
        for key, op, value in _workflow_filters(params.get("filters")):
            if key == "state":
                if value not in plugins.WORKFLOW_STATES:
                    states = ", ".join(plugins.WORKFLOW_STATES)
                    raise BadRequest("Invalid filters", f"a workflow state is one of {states}")
                state = value
            else:
                name_filter = (op, value)
        limit = page_limit(params)
        before = job_id(params.get("before"))
        rows, has_more = await plugins.list_workflows(plugin, self.chancy, state=state, limit=limit, before=before)
        if name_filter is not None:
            op, text = name_filter
            rows = [r for r in rows if (r["name"] == text if op == "=" else text.lower() in str(r["name"]).lower())]
        if not truthy(params.get("pagination"), False):
            return json_response(rows)
        return json_response({"items": rows, "has_more": has_more,
                              "next_cursor": str(rows[-1]["id"]) if has_more and rows else None})

    @guarded()
    async def workflow(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.workflows, "workflow")
        found = await plugins.get_workflow(plugin, self.chancy, request.path_params["id"])
        if found is None:
            return json_response({"error": "Workflow not found"}, 404)
        return json_response(plugins.workflow_detail(found))

    @guarded()
    async def metrics(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.metrics, "Metrics")
        data = await plugins.metric_categories(plugin, self.chancy)
        return json_response({"categories": data["categories"], "count": data["count"]})

    @guarded()
    async def metric(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.metrics, "Metrics")
        resolution = request.query_params.get("resolution") or "5min"
        if resolution not in plugins.RESOLUTIONS:
            raise BadRequest("Invalid resolution", f"resolution is one of {', '.join(plugins.RESOLUTIONS)}")
        try:
            data = await plugins.metric_series(plugin, self.chancy, request.path_params["prefix"],
                                               resolution=resolution,
                                               worker_id=request.query_params.get("worker_id") or None)
        except ValueError as exc:
            raise BadRequest("Invalid metrics query", str(exc)) from None
        return json_response(data)

    # ------------------------------------------------------------------ live

    @guarded()
    async def events(self, request: Request) -> Response:
        live = self.ctx.live

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 3000\n\n"
            async for summary in live.stream():
                if summary is None:
                    yield b": keepalive\n\n"
                else:
                    yield b"event: summary\ndata: " + dumps(summary) + b"\n\n"

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def websocket(self, websocket: WebSocket) -> None:
        """0.26's live events: the token in the query (else close 1008), then ``{"event", "data"}`` text frames of
        the serving worker's hub events (none when the app has no worker); a slow client loses events."""
        ctx = self.ctx
        token = websocket.query_params.get("token", "")
        if ctx.signer.check_token(token) is None and ctx.login_required:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(WS_QUEUE)

        def forward(event: Event) -> None:
            if not queue.full():
                queue.put_nowait({"event": event.name, "data": event.body})

        hub = ctx.worker.hub if ctx.worker is not None else None
        if hub is not None:
            hub.on("*", forward)
        receiving = asyncio.ensure_future(_until_closed(websocket))
        try:
            while not receiving.done():
                getting = asyncio.ensure_future(queue.get())
                await asyncio.wait({getting, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                try:
                    text = dumps(getting.result()).decode()
                except (TypeError, ValueError):  # a local event carrying a live object
                    continue
                await websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            receiving.cancel()
            if hub is not None:
                hub.remove("*", forward)


async def _until_closed(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


_WORKFLOW_OPS = {"state": ("=",), "name": ("=", "~")}


def _workflow_filters(text: str | None) -> list[tuple[str, str, str]]:
    found = triples(text, _WORKFLOW_OPS)
    for item in found:
        if not isinstance(item[2], str):
            raise BadRequest("Invalid filters", f"a workflow filter compares with text, got {item[2]!r}")
    return found


def read_page(conn: Connection, chancy: Any, flt: JobFilter, before: str | None,
              limit: int) -> tuple[list[tuple[Any, str | None]], bool]:
    """A page of jobs (with who holds each) and whether more follow: the ids first, then their rows."""
    ids = chancy.store.page_job_ids(conn, flt, before=before, limit=limit + 1)
    return chancy.store.get_job_rows(conn, ids[:limit]), len(ids) > limit


def bulk_filter(data: dict[str, Any]) -> JobFilter:
    """The filter of a bulk request (``state``, ``queue``, ``func``, ``filters`` as for ``GET /api/v1/jobs``);
    at least one of them."""
    params: dict[str, str] = {}
    for key in ("state", "queue", "func"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise BadRequest("Invalid filter", f"{key} is a string")
        if value:
            params[key] = value
    filters = data.get("filters")
    if filters:
        params["filters"] = filters if isinstance(filters, str) else json.dumps(filters)
    if not params:
        raise BadRequest("A filter is required", "give a state, queue, func or filters: there is no 'every job'")
    return job_filter(params)


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0

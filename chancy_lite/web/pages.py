"""The dashboard's pages: server-rendered HTML, forms for every action (each with its CSRF token), and one small
script for live updates (``static/app.js``). Every list reads one page through an index (keyset paging by id)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.resources
import json
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

import chancy_lite
from chancy_lite.job import QueuedJob
from chancy_lite.queue import ExecutorPath, Queue
from chancy_lite.store import FINISHED_VALUES, STATE_VALUES, WAITING_VALUES, JobFilter
from chancy_lite.utils import from_micros
from chancy_lite.web import actions, plugins, render
from chancy_lite.web.api import file_size, read_page
from chancy_lite.web.context import Context, guarded, root
from chancy_lite.web.filters import BadRequest, job_filter, job_id
from chancy_lite.web.live import LIVE_COUNT_CAP
from chancy_lite.web.security import (
    CSRF_FIELD,
    FLASH_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    same_secret,
)
from chancy_lite.web.shapes import pack_queue

if TYPE_CHECKING:
    from chancy_lite.db import Connection

log = logging.getLogger(__name__)
PAGE_SIZE = 50
QUEUE_COUNT_CAP = 1_000
THROUGHPUT_CAP = 100_000
EXECUTORS = {"process": ExecutorPath.Process.value, "threaded": ExecutorPath.Threaded.value,
             "async": ExecutorPath.Async.value}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}


class Pages:
    """The HTML routes of one app."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.chancy = ctx.chancy
        self.env = render.environment()

    # ------------------------------------------------------------- rendering

    def now(self) -> dt.datetime:
        return from_micros(self.chancy.now())

    async def render(self, request: Request, name: str, title: str, *, status: int = 200,
                     **values: Any) -> Response:
        user = getattr(request.state, "user", None)
        flash = self._flash(request)
        partial = request.headers.get("x-chancy-partial") == "1"  # the live part only: no navigation to count for
        nav_counts = values.pop("nav_counts", None)
        if nav_counts is None and not partial:
            nav_counts = await self.chancy.run_store(self.chancy.store.count_jobs_capped, cap=LIVE_COUNT_CAP)
        now = self.now()
        context = {
            "root": root(request), "title": title, "user": user, "csrf": user.csrf if user else "",
            "csrf_field": CSRF_FIELD, "read_only": self.ctx.read_only, "flash": flash, "nav_counts": nav_counts,
            "states": STATE_VALUES, "has_cron": self.ctx.cron is not None,
            "has_workflows": self.ctx.workflows is not None, "has_metrics": self.ctx.metrics is not None,
            "version": chancy_lite.__version__, "now": now, "ago": lambda v: render.ago(v, now),
            "path": request.url.path[len(root(request)):] or "/", "section": values.pop("section", ""),
            "login_required": self.ctx.login_required, **values,
        }
        if partial:
            html = render.render_block(self.env, name, "content", context)
        else:
            html = self.env.get_template(name).render(context)
        response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=cookie_path(request))
        return response

    def _flash(self, request: Request) -> dict[str, str] | None:
        value = request.cookies.get(FLASH_COOKIE)
        found = self.ctx.signer.check_flash(value) if value else None
        return {"text": found[0], "kind": found[1]} if found else None

    def redirect(self, request: Request, path: str, message: str | None = None, kind: str = "ok") -> Response:
        response = RedirectResponse(root(request) + path, status_code=303)
        if message:
            response.set_cookie(FLASH_COOKIE, self.ctx.signer.flash(message, kind), path=cookie_path(request),
                                httponly=True, samesite="lax", secure=request.url.scheme == "https")
        return response

    async def refuse(self, request: Request, exc: BadRequest) -> Response:
        if request.method == "POST" and exc.status == 422:
            return self.redirect(request, _back(request), f"{exc.title}: {exc.detail or ''}".rstrip(": "), "error")
        if not hasattr(request.state, "user"):
            request.state.user = self.ctx.identify(request)
        try:
            return await self.render(request, "error.html", exc.title, status=exc.status, error=exc,
                                     nav_counts={s: render.CappedCount(0, True) for s in STATE_VALUES})
        except Exception:  # the database itself is the problem: a bare page
            return HTMLResponse(f"<h1>{exc.status}</h1>", status_code=exc.status)

    # ------------------------------------------------------------------ login

    @guarded(public=True)
    async def login_form(self, request: Request) -> Response:
        nonce = os.urandom(18).hex()
        next_path = _local(request.query_params.get("next", "/"))
        response = await self._login_page(request, nonce, next_path, None, 200)
        response.set_cookie(LOGIN_COOKIE, nonce, path=cookie_path(request), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", max_age=3600)
        return response

    async def _login_page(self, request: Request, nonce: str, next_path: str, error: str | None,
                          status: int) -> Response:
        request.state.user = None
        html = self.env.get_template("login.html").render(
            root=root(request), title="Log in", nonce=nonce, csrf_field=CSRF_FIELD, next=next_path, error=error,
            version=chancy_lite.__version__, has_backend=self.ctx.auth is not None,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    @guarded(public=True)
    async def login(self, request: Request) -> Response:
        ctx = self.ctx
        form = await request.form()
        next_path = _local(_field(form, "next") or "/")
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not same_secret(_field(form, CSRF_FIELD), nonce):
            return await self._login_page(request, nonce or os.urandom(18).hex(), next_path,
                                          "The form expired: please log in again.", 403)
        client = request.client.host if request.client else "?"
        if ctx.throttle.blocked(client):
            return await self._login_page(request, nonce, next_path, "Too many failed logins: try again later.", 429)
        username, password = _field(form, "username"), _field(form, "password")
        ok = ctx.auth is not None and bool(username) and await ctx.auth.login(request, username, password)
        if not ok:
            ctx.throttle.failed(client)
            return await self._login_page(request, nonce, next_path, "Wrong username or password.", 401)
        cookie, _ = ctx.signer.session(username)
        response = RedirectResponse(root(request) + next_path, status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, path=cookie_path(request), httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", max_age=SESSION_MAX_AGE)
        response.delete_cookie(LOGIN_COOKIE, path=cookie_path(request))
        return response

    @guarded(write=True, page=True)
    async def logout(self, request: Request) -> Response:
        if self.ctx.auth is not None:
            await self.ctx.auth.logout(request)
        response = RedirectResponse(root(request) + "/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=cookie_path(request))
        return response

    # --------------------------------------------------------------- overview

    @guarded(page=True)
    async def overview(self, request: Request) -> Response:
        data = await self.chancy.run_store(self._overview, self.chancy.now())
        chancy = self.chancy
        data["file"] = {"path": chancy.path, "size": file_size(chancy.path), "wal": file_size(chancy.path + "-wal")}
        return await self.render(request, "overview.html", "Overview", section="overview",
                                 nav_counts=data["counts"], **data)

    def _overview(self, conn: Connection, now: int) -> dict[str, Any]:
        store = self.chancy.store
        counts = store.count_jobs_capped(conn, cap=LIVE_COUNT_CAP)
        minute = store.count_finished_since(conn, now - 60_000_000, cap=THROUGHPUT_CAP)
        quarter = store.count_finished_since(conn, now - 900_000_000, cap=THROUGHPUT_CAP)
        running = store.get_job_rows(conn, store.page_job_ids(conn, JobFilter(states=("running",)), limit=20))
        failed = store.get_job_rows(conn, store.page_job_ids(conn, JobFilter(states=("failed",)), limit=8))
        workers = store.get_all_workers(conn, now=now)
        queues = store.get_all_queues(conn)
        versions = store.migration_status(conn)
        return {
            "counts": counts, "minute": minute, "quarter": quarter, "running": running, "failed": failed,
            "workers": workers, "queues": queues, "sqlite_version": store.sqlite_version(conn),
            "schema_current": all(newest is None or v == newest for _, v, newest in versions),
            "leader": next((w for w in workers if w["is_leader"]), None),
            "progress": {str(job.id): render.progress(job.meta) for job, _ in running},
        }

    # ------------------------------------------------------------------- jobs

    @guarded(page=True)
    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        state = params.get("state") or ""
        queue = params.get("queue") or ""
        func = params.get("func") or ""
        flt = job_filter({"state": state, "queue": queue, "func": func})
        before = job_id(params.get("before"))
        rows, has_more = await self.chancy.run_store(read_page, self.chancy, flt, before, PAGE_SIZE)
        queues = await self.chancy.get_all_queues()
        filters = {k: v for k, v in (("state", state), ("queue", queue), ("func", func)) if v}
        next_url = None
        if has_more and rows:
            next_url = _jobs_url(**filters, before=str(rows[-1][0].id))
        bulk = []
        if filters:
            if not state or state in FINISHED_VALUES:
                bulk.append(("retry", "Retry"))
            if not state or state in (*WAITING_VALUES, "running"):
                bulk.append(("cancel", "Cancel"))
            bulk.append(("purge", "Purge"))
        tabs = [("all", _jobs_url(queue=queue, func=func), not state)]
        tabs += [(s, _jobs_url(state=s, queue=queue, func=func), s == state) for s in STATE_VALUES]
        title = f"{state.capitalize()} jobs" if state else "Jobs"
        return await self.render(
            request, "jobs.html", title, section="jobs", rows=rows, state=state, queue=queue, func=func,
            queue_names=sorted({q.name for q in queues} | ({queue} if queue else set())), next_url=next_url,
            first_url=_jobs_url(**filters) if before else None, filters=filters, bulk=bulk,
            bulk_cap=actions.BULK_CAP, progress={str(j.id): render.progress(j.meta) for j, _ in rows}, tabs=tabs,
        )

    @guarded(write=True, page=True)
    async def bulk(self, request: Request) -> Response:
        form = await request.form()
        action = _field(form, "action")
        if action not in actions.ACTIONS:
            raise BadRequest("Invalid action", "choose retry, cancel or purge")
        params = {k: _field(form, k) for k in ("state", "queue", "func") if _field(form, k)}
        if not params:
            raise BadRequest("A filter is required", "choose a state, a queue or a function first")
        flt = job_filter(params)
        result = await self.chancy.run_store(actions.act_on_matching, self.chancy, action, flt)
        return self.redirect(request, "/jobs?" + urlencode(params), actions.summary_text(result).capitalize())

    @guarded(page=True)
    async def job(self, request: Request) -> Response:
        key = job_id(request.path_params["id"], "job ID")
        assert key is not None
        rows = await self.chancy.run_store(self.chancy.store.get_job_rows, [key])
        if not rows:
            raise BadRequest("Job not found", f"there is no job {key} (purged, or never pushed)", status=404)
        job, taken_by = rows[0]
        now = self.now()
        timings = _timings(job, now)
        return await self.render(
            request, "job.html", f"Job {job.func}", section="jobs", job=job, taken_by=taken_by, timings=timings,
            progress=render.progress(job.meta), finished=job.state.value in FINISHED_VALUES,
        )

    @guarded(write=True, page=True)
    async def job_action(self, request: Request) -> Response:
        key = job_id(request.path_params["id"], "job ID")
        action = request.path_params["action"]
        if action not in actions.ACTIONS:
            raise BadRequest("Invalid action", "choose retry, cancel or purge", status=404)
        result = await self.chancy.run_store(actions.act_on_jobs, self.chancy, action, [key])
        outcome = result["results"][0]
        verbs = {"retry": "Retried", "cancel": "Cancelled", "purge": "Purged"}
        if outcome["status"] == "completed":
            message, kind = f"{verbs[action]} job {key}.", "ok"
        else:
            message, kind = f"Nothing done: {outcome.get('message', outcome['status'])}.", "error"
        target = "/jobs" if action == "purge" and outcome["status"] == "completed" else f"/jobs/{key}"
        return self.redirect(request, target, message, kind)

    # ----------------------------------------------------------------- queues

    @guarded(page=True)
    async def queues(self, request: Request) -> Response:
        data = await self.chancy.run_store(self._queues)
        return await self.render(request, "queues.html", "Queues", section="queues", **data)

    def _queues(self, conn: Connection) -> dict[str, Any]:
        store = self.chancy.store
        queues = store.get_all_queues(conn)
        counts = {q.name: store.count_jobs_capped(conn, q.name, cap=QUEUE_COUNT_CAP) for q in queues}
        workers = store.get_all_workers(conn, now=self.chancy.now())
        serving = {q.name: sorted({w["worker_id"] for w in workers if q.name in w["queues"]}) for q in queues}
        return {"queues": queues, "counts": counts, "serving": serving, "executors": _executor_names()}

    @guarded(page=True)
    async def queue_form(self, request: Request) -> Response:
        name = request.path_params.get("name")
        if name is None:
            return await self._queue_page(request, None, _form_values(Queue("default")) | {"name": ""}, None)
        try:
            queue = await self.chancy.get_queue(name)
        except KeyError:
            raise BadRequest("Queue not found", f"there is no queue named {name!r}", status=404) from None
        return await self._queue_page(request, queue, _form_values(queue), None)

    async def _queue_page(self, request: Request, queue: Queue | None, values: dict[str, Any], error: str | None,
                          status: int = 200) -> Response:
        title = f"Queue {queue.name}" if queue else "New queue"
        return await self.render(request, "queue_edit.html", title, section="queues", queue=queue, values=values,
                                 error=error, status=status, executors=EXECUTORS)

    @guarded(write=True, page=True)
    async def save_queue(self, request: Request) -> Response:
        form = await request.form()
        name = request.path_params.get("name")
        current = None
        if name is not None:
            try:
                current = await self.chancy.get_queue(name)
            except KeyError:
                raise BadRequest("Queue not found", f"there is no queue named {name!r}", status=404) from None
        values: dict[str, Any] = {key: _field(form, key) for key in _FORM_KEYS}
        values["eager_polling"] = "eager_polling" in form
        try:
            queue = _queue_from_form(values, current)
            stored = await self.chancy.declare(queue, upsert=True)
        except (ValueError, TypeError) as exc:
            if current is None:
                values.setdefault("name", _field(form, "name"))
            return await self._queue_page(request, current, values, str(exc), status=422)
        return self.redirect(request, "/queues", f"Saved queue {stored.name}.")

    @guarded(write=True, page=True)
    async def pause_queue(self, request: Request) -> Response:
        form = await request.form()
        name = request.path_params["name"]
        minutes = _field(form, "minutes").strip()
        resume_at = None
        if minutes:
            try:
                amount = float(minutes)
            except ValueError:
                amount = -1
            if not 0 < amount <= 10**7:
                raise BadRequest("Invalid duration", "pause for a positive number of minutes, or leave it empty")
            resume_at = dt.timedelta(minutes=amount)
        try:
            await self.chancy.pause_queue(name, resume_at=resume_at)
        except KeyError:
            raise BadRequest("Queue not found", f"there is no queue named {name!r}", status=404) from None
        until = f" for {minutes} min" if minutes else ""
        return self.redirect(request, "/queues", f"Paused queue {name}{until}.")

    @guarded(write=True, page=True)
    async def resume_queue(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            await self.chancy.resume_queue(name)
        except KeyError:
            raise BadRequest("Queue not found", f"there is no queue named {name!r}", status=404) from None
        return self.redirect(request, "/queues", f"Resumed queue {name}.")

    @guarded(write=True, page=True)
    async def delete_queue(self, request: Request) -> Response:
        form = await request.form()
        name = request.path_params["name"]
        purge = "purge_jobs" in form
        try:
            await self.chancy.delete_queue(name, purge_jobs=purge)
        except KeyError:
            raise BadRequest("Queue not found", f"there is no queue named {name!r}", status=404) from None
        return self.redirect(request, "/queues", f"Deleted queue {name}" + (" and its jobs." if purge else "."))

    # ---------------------------------------------------------------- workers

    @guarded(page=True)
    async def workers(self, request: Request) -> Response:
        workers = await self.chancy.get_all_workers()
        return await self.render(request, "workers.html", "Workers", section="workers", workers=workers)

    # ------------------------------------------------------------------- cron

    @guarded(page=True)
    async def crons(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.cron, "Cron")
        schedules = await plugins.raw_schedules(plugin, self.chancy)
        return await self.render(request, "crons.html", "Cron", section="cron", schedules=schedules)

    @guarded(write=True, page=True)
    async def run_cron(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.cron, "Cron")
        key = request.path_params["key"]
        try:
            pushed = await plugins.run_now(plugin, self.chancy, key)
        except KeyError:
            raise BadRequest("Schedule not found", f"there is no cron schedule {key!r}", status=404) from None
        return self.redirect(request, "/crons", f"Pushed job {pushed} of schedule {key}.")

    def _plugin(self, plugin: Any, name: str) -> Any:
        if plugin is None:
            raise BadRequest(f"The {name} plugin is not enabled",
                             f"add {name}() to Chancy(plugins=[...]) to see this page", status=404)
        return plugin

    # -------------------------------------------------------------- workflows

    @guarded(page=True)
    async def workflows(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.workflows, "WorkflowPlugin")
        state = request.query_params.get("state") or None
        if state is not None and state not in plugins.WORKFLOW_STATES:
            raise BadRequest("Invalid state", f"a workflow state is one of {', '.join(plugins.WORKFLOW_STATES)}")
        before = job_id(request.query_params.get("before"))
        rows, has_more = await plugins.list_workflows(plugin, self.chancy, state=state, limit=PAGE_SIZE,
                                                      before=before)
        next_url = None
        if has_more and rows:
            next_url = "/workflows?" + urlencode({**({"state": state} if state else {}), "before": str(rows[-1]["id"])})
        return await self.render(request, "workflows.html", "Workflows", section="workflows", rows=rows,
                                 state=state or "", next_url=next_url)

    @guarded(page=True)
    async def workflow(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.workflows, "WorkflowPlugin")
        found = await plugins.get_workflow(plugin, self.chancy, request.path_params["id"])
        if found is None:
            raise BadRequest("Workflow not found", status=404)
        steps = plugins.graph_steps(found)
        return await self.render(request, "workflow.html", f"Workflow {getattr(found, 'name', '')}",
                                 section="workflows", workflow=plugins.workflow_row(found), steps=steps,
                                 graph=render.workflow_graph(steps))

    # ---------------------------------------------------------------- metrics

    @guarded(page=True)
    async def metrics(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.metrics, "Metrics")
        data = await plugins.metric_categories(plugin, self.chancy)
        groups: dict[str, list[str]] = {}
        for key in data["keys"]:
            groups.setdefault(str(key).partition(":")[0], []).append(str(key))
        return await self.render(request, "metrics.html", "Metrics", section="metrics", groups=groups,
                                 total=data["count"])

    @guarded(page=True)
    async def metric(self, request: Request) -> Response:
        plugin = self._plugin(self.ctx.metrics, "Metrics")
        key = request.path_params["key"]
        resolution = request.query_params.get("resolution") or "5min"
        if resolution not in plugins.RESOLUTIONS:
            resolution = "5min"
        try:
            data = await plugins.metric_series(plugin, self.chancy, key, resolution=resolution)
        except ValueError as exc:
            raise BadRequest("Invalid metrics query", str(exc)) from None
        series = [
            {"key": name, "type": entry.get("type"), "unit": entry.get("unit"), "summary": entry.get("summary"),
             "chart": render.chart(entry.get("data") or [])}
            for name, entry in sorted(data["series"].items())
        ]
        return await self.render(request, "metric.html", f"Metric {key}", section="metrics", key=key,
                                 series=series, resolution=resolution, resolutions=plugins.RESOLUTIONS)

    # ----------------------------------------------------------------- static

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        suffix = os.path.splitext(name)[1]
        if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
            return Response("not found", status_code=404)
        try:
            content = importlib.resources.files("chancy_lite.web").joinpath("static", name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return Response("not found", status_code=404)
        return Response(content, media_type=STATIC_TYPES[suffix], headers={"Cache-Control": "public, max-age=3600"})


# --------------------------------------------------------------------- helpers


def cookie_path(request: Request) -> str:
    return (root(request) or "") + "/"


def _local(path: str) -> str:
    """A path inside the dashboard to go to after a login or an action: never another site."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(ord(c) < 32 for c in path):
        return "/"
    return path


def _back(request: Request) -> str:
    """The dashboard page a form was sent from (its Referer), or the overview."""
    parts = urlsplit(request.headers.get("referer", ""))
    base = root(request)
    if (parts.netloc and parts.netloc != request.url.netloc) or not parts.path.startswith(base + "/"):
        return "/"
    return _local(parts.path[len(base):] + (f"?{parts.query}" if parts.query else ""))


def _jobs_url(**params: str) -> str:
    given = {key: value for key, value in params.items() if value}
    return "/jobs" + (f"?{urlencode(given)}" if given else "")


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _timings(job: QueuedJob, now: dt.datetime) -> dict[str, float | None]:
    def seconds(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
        return (b - a).total_seconds() if a is not None and b is not None else None

    running = job.state is QueuedJob.State.RUNNING
    return {
        "waited": seconds(job.scheduled_at if job.created_at is None or job.scheduled_at > job.created_at
                          else job.created_at, job.started_at),
        "ran": seconds(job.started_at, job.completed_at) if not running else seconds(job.started_at, now),
        "total": seconds(job.created_at, job.completed_at) if not running else None,
    }


def _executor_names() -> dict[str, str]:
    return {path: name for name, path in EXECUTORS.items()}


_FORM_KEYS = ("name", "concurrency", "tags", "executor", "executor_custom", "executor_options", "polling_interval",
              "rate_limit", "rate_limit_window")


def _form_values(queue: Queue) -> dict[str, Any]:
    packed = pack_queue(queue)
    executor = next((name for name, path in EXECUTORS.items() if path == queue.executor), "custom")
    return {
        "name": queue.name, "concurrency": "" if queue.concurrency is None else str(queue.concurrency),
        "tags": ", ".join(sorted(queue.tags)), "executor": executor,
        "executor_custom": queue.executor if executor == "custom" else "",
        "executor_options": json.dumps(packed["executor_options"]) if queue.executor_options else "",
        "polling_interval": str(queue.polling_interval),
        "rate_limit": "" if queue.rate_limit is None else str(queue.rate_limit),
        "rate_limit_window": "" if queue.rate_limit_window is None else str(queue.rate_limit_window),
        "eager_polling": queue.eager_polling,
    }


def _queue_from_form(values: dict[str, Any], current: Queue | None) -> Queue:
    """A Queue from the edit form (``ValueError`` naming the field at fault)."""

    def number(key: str, kind: type, label: str) -> Any:
        text = str(values.get(key) or "").strip()
        if not text:
            return None
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{label} must be a number, got {text!r}") from None

    name = current.name if current is not None else str(values.get("name") or "").strip()
    tags_text = str(values.get("tags") or "").strip()
    tags = {t.strip() for t in tags_text.split(",") if t.strip()} if tags_text else {".*"}
    executor_choice = values.get("executor") or "process"
    executor = (str(values.get("executor_custom") or "").strip() if executor_choice == "custom"
                else EXECUTORS.get(executor_choice, ""))
    options_text = str(values.get("executor_options") or "").strip()
    try:
        options = json.loads(options_text) if options_text else {}
    except ValueError:
        raise ValueError("executor options must be a JSON object, such as {\"batch_size\": 16}") from None
    if not isinstance(options, dict):
        raise ValueError("executor options must be a JSON object, such as {\"batch_size\": 16}")
    polling = number("polling_interval", float, "polling interval")
    fields: dict[str, Any] = {
        "concurrency": number("concurrency", int, "concurrency"), "tags": tags, "executor": executor,
        "executor_options": options, "polling_interval": 5 if polling is None else polling,
        "rate_limit": number("rate_limit", int, "rate limit"),
        "rate_limit_window": number("rate_limit_window", float, "rate limit window"),
        "eager_polling": bool(values.get("eager_polling")),
    }
    if current is not None:  # the form does not pause or resume: keep the state
        return dataclasses.replace(current, **fields)
    return Queue(name, **fields)

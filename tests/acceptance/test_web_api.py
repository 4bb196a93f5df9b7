"""The HTTP API and the pages, in-process (Starlette's TestClient) on a real file: every route, its shapes and
errors, login, CSRF, read-only mode, and mounting under a sub-path."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.errors import ConfigurationError, MissingDependencyError
from chancy_lite.hub import Hub
from chancy_lite.plugin import Plugin
from chancy_lite.plugins.api.auth import SimpleAuthBackend
from chancy_lite.utils import utcnow
from chancy_lite.web import create_app
from tests.store.test_dashboard_store import fill

PASSWORD = "correct horse battery"
AUTH = SimpleAuthBackend({"admin": PASSWORD})


def make_client(app: Any, **kwargs: Any) -> TestClient:
    return TestClient(app, **kwargs)


@pytest.fixture
def chancy(chancy: Chancy) -> Chancy:
    """The conftest's migrated app, with the default queue (a worker would declare it)."""
    chancy.sync_declare(Queue("default"))
    return chancy


@pytest.fixture
def client(chancy: Chancy) -> Iterator[TestClient]:
    with make_client(create_app(chancy, auth=AUTH, secret_key="s3cret")) as c:
        yield c


def token_of(client: TestClient) -> str:
    response = client.post("/api/v1/login", json={"username": "admin", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["token"]


@pytest.fixture
def api(client: TestClient) -> TestClient:
    client.headers["Authorization"] = f"Bearer {token_of(client)}"
    return client


def page_login(client: TestClient, prefix: str = "", next_path: str = "/") -> str:
    """Log in through the form; returns the session's CSRF token (from a page)."""
    form = client.get(f"{prefix}/login?next={next_path}")
    assert form.status_code == 200
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    done = client.post(f"{prefix}/login", data={"username": "admin", "password": PASSWORD, "csrf_token": nonce,
                                                "next": next_path}, follow_redirects=False)
    assert done.status_code == 303, done.text
    return csrf_of(client.get(f"{prefix}/").text)


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]*)">', html).group(1)


@pytest.fixture
def browser(client: TestClient) -> tuple[TestClient, str]:
    return client, page_login(client)


def claim(app: Chancy, queue: str = "default") -> QueuedJob:
    with app.connection() as conn, conn:
        [job] = app.store.claim_jobs(conn, queue, 1, now=app.now(), worker_id="w1", pid=os.getpid(), pid_start=None)
    return job


def failed_job(app: Chancy, queue: str = "default", func: str = "app.tasks.boom") -> str:
    """A job that failed with a traceback, written as a worker would."""
    from chancy_lite.outcome import Outcome

    ref = app.sync_push(Job(func=func, queue=queue))
    job = claim(app, queue)
    assert str(job.id) == ref.identifier
    error = '{"attempt": 0, "traceback": "Traceback (most recent call last):\\nValueError: boom <b>"}'
    with app.connection() as conn, conn:
        outcome = Outcome(ref.identifier, 0, QueuedJob.State.FAILED, app.now(), error=error, started_at=app.now())
        assert app.store.complete_job(conn, outcome, worker_id="w1", pid=os.getpid())
    return ref.identifier


# ------------------------------------------------------------------ health


def test_health_needs_no_login_and_says_what_is_wrong(chancy: Chancy, tmp_path) -> None:
    with make_client(create_app(chancy, auth=AUTH)) as client:
        assert client.get("/health").json() == {"status": "healthy", "database": "reachable", "schema": "current"}
        chancy.sync_migrate(to_version=1)
        outdated = client.get("/health")
        assert outdated.status_code == 503 and outdated.json()["schema"] == "outdated"
    with Chancy(tmp_path / "never.db") as nowhere, make_client(create_app(nowhere, auth=AUTH)) as client:
        missing = client.get("/health")
        assert missing.status_code == 503 and missing.json()["database"] == "missing"


# ------------------------------------------------------------------- login


def test_api_login_gives_a_token_and_refuses_wrong_passwords(client: TestClient) -> None:
    assert client.get("/api/v1/jobs").status_code == 403
    bad = client.post("/api/v1/login", json={"username": "admin", "password": "wrong"})
    assert (bad.status_code, bad.json()) == (401, {"error": "Invalid username or password"})
    assert client.post("/api/v1/login", json={"username": "admin"}).status_code == 401
    assert client.post("/api/v1/login", content=b"not json").status_code == 401
    token = token_of(client)
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}x"}).status_code == 403
    assert client.post("/api/v1/logout").json() == {"success": True}


def test_tokens_are_signed_with_the_secret(chancy: Chancy) -> None:
    with make_client(create_app(chancy, auth=AUTH, secret_key="one")) as one:
        token = token_of(one)
    with make_client(create_app(chancy, auth=AUTH, secret_key="one")) as same:
        assert same.get("/api/v1/queues", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with make_client(create_app(chancy, auth=AUTH, secret_key="two")) as other:
        assert other.get("/api/v1/queues", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_too_many_failed_logins_from_one_address_are_refused(client: TestClient) -> None:
    for _ in range(10):
        assert client.post("/api/v1/login", json={"username": "admin", "password": "x"}).status_code == 401
    assert client.post("/api/v1/login", json={"username": "admin", "password": PASSWORD}).status_code == 429


def test_page_login_sets_a_session_and_a_wrong_password_is_refused(client: TestClient) -> None:
    first = client.get("/jobs?state=failed", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Dfailed"
    form = client.get("/login?next=/jobs")
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    wrong = client.post("/login", data={"username": "admin", "password": "nope", "csrf_token": nonce, "next": "/"})
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    forged = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": "x"})
    assert forged.status_code == 403
    good = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": nonce,
                                       "next": "//evil.example/"}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/"  # never another site
    cookie = good.headers["set-cookie"]
    assert "chancy_lite_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert client.get("/").status_code == 200


def test_logout_needs_the_csrf_token_and_ends_the_session(browser) -> None:
    client, csrf = browser
    assert client.post("/logout", follow_redirects=False).status_code == 403
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


# -------------------------------------------------------------------- CSRF


def test_writes_with_the_session_cookie_need_the_csrf_token(browser, chancy: Chancy) -> None:
    client, csrf = browser
    no_token = client.post("/api/v1/queues/default/pause", json={})
    assert (no_token.status_code, no_token.json()["title"]) == (403, "Missing or wrong CSRF token")
    wrong = client.post("/api/v1/queues/default/pause", json={}, headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403
    cross = client.post("/api/v1/queues/default/pause", json={},
                        headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert chancy.sync_get_queue("default").state is Queue.State.ACTIVE
    ok = client.post("/api/v1/queues/default/pause", json={}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and chancy.sync_get_queue("default").state is Queue.State.PAUSED
    form = client.post("/queues/default/resume", data={"csrf_token": csrf}, follow_redirects=False)
    assert form.status_code == 303 and chancy.sync_get_queue("default").state is Queue.State.ACTIVE
    bare_form = client.post("/queues/default/pause", data={"minutes": ""})
    assert bare_form.status_code == 403 and "CSRF" in bare_form.text
    assert chancy.sync_get_queue("default").state is Queue.State.ACTIVE


def test_bearer_tokens_need_no_csrf_token(api: TestClient, chancy: Chancy) -> None:
    assert api.post("/api/v1/queues/default/pause", json={}).status_code == 200


# -------------------------------------------------------------- read-only


def test_read_only_refuses_every_action_and_hides_the_buttons(chancy: Chancy) -> None:
    job_id = failed_job(chancy)
    with make_client(create_app(chancy, auth=AUTH, read_only=True)) as client:
        csrf = page_login(client)
        headers = {"X-CSRF-Token": csrf}
        for method, path in [("POST", f"/api/v1/jobs/{job_id}/retry"), ("DELETE", f"/api/v1/jobs/{job_id}"),
                             ("POST", "/api/v1/queues/default/pause"), ("POST", "/api/v1/queues")]:
            refused = client.request(method, path, json={"name": "x"}, headers=headers)
            assert (refused.status_code, refused.json()["title"]) == (403, "The dashboard is read-only"), path
        assert client.post(f"/jobs/{job_id}/retry", data={"csrf_token": csrf}).status_code == 403
        page = client.get(f"/jobs/{job_id}").text
        assert "ValueError: boom" in page and 'id="retry"' not in page and "read-only" in page
    assert chancy.sync_get_job(job_id).state is QueuedJob.State.FAILED


def test_an_open_dashboard_must_be_read_only(chancy: Chancy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANCY_LITE_WEB_PASSWORD", raising=False)
    with pytest.raises(ConfigurationError, match="no default password"):
        create_app(chancy)
    with pytest.raises(ConfigurationError, match="only allowed with read_only=True"):
        create_app(chancy, auth=AUTH, login_required=False)
    with make_client(create_app(chancy, read_only=True, login_required=False)) as client:
        assert client.get("/api/v1/jobs").status_code == 200
        assert client.get("/").status_code == 200
        assert client.post("/api/v1/queues/default/pause", json={}).status_code == 403


def test_credentials_can_come_from_the_environment(chancy: Chancy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANCY_LITE_WEB_PASSWORD", "from-env")
    monkeypatch.setenv("CHANCY_LITE_WEB_USERNAME", "ops")
    with make_client(create_app(chancy)) as client:
        assert client.post("/api/v1/login", json={"username": "ops", "password": "from-env"}).status_code == 200
        assert client.post("/api/v1/login", json={"username": "admin", "password": "from-env"}).status_code == 401


def test_bad_backends_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        SimpleAuthBackend({})
    with pytest.raises(ConfigurationError, match="empty password"):
        SimpleAuthBackend({"admin": ""})


def test_a_missing_web_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch, chancy: Chancy) -> None:
    import chancy_lite.web as web

    monkeypatch.setattr(web, "_importable", lambda name: name != "jinja2")
    with pytest.raises(MissingDependencyError, match=r"pip install 'chancy-lite\[web\]'"):
        create_app(chancy, auth=AUTH)


# ------------------------------------------------------------------ queues


def test_queue_routes(api: TestClient, chancy: Chancy) -> None:
    assert [q["name"] for q in api.get("/api/v1/queues").json()] == ["default"]
    created = api.post("/api/v1/queues", json={"name": "emails", "concurrency": 3})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body == {**body, "name": "emails", "concurrency": 3, "tags": [".*"], "state": "active", "resume_at": None}
    assert set(body) == {"name", "concurrency", "tags", "state", "executor", "executor_options",
                         "polling_interval", "rate_limit", "rate_limit_window", "resume_at", "eager_polling"}
    assert api.post("/api/v1/queues", json={"name": "idle", "tags": []}).json()["tags"] == []
    bad = api.post("/api/v1/queues", json={"name": "emails", "concurrency": "many"})
    assert bad.status_code == 422 and bad.json()["title"] == "Invalid queue payload" and bad.json()["detail"]
    assert api.post("/api/v1/queues", json={"concurrency": 1}).status_code == 422
    assert api.post("/api/v1/queues", json={"name": "x", "colour": "red"}).status_code == 422
    patched = api.patch("/api/v1/queues/emails", json={"polling_interval": 2})
    assert patched.json()["polling_interval"] == 2 and patched.json()["concurrency"] == 3
    assert api.patch("/api/v1/queues/nope", json={}).json() == {"title": "Queue not found"}
    resume_at = (utcnow() + dt.timedelta(hours=1)).replace(microsecond=0)
    assert api.post("/api/v1/queues/emails/pause", json={"resume_at": resume_at.isoformat()}).json() == {"ok": True}
    paused = chancy.sync_get_queue("emails")
    assert paused.state is Queue.State.PAUSED and paused.resume_at == resume_at
    assert api.post("/api/v1/queues/emails/pause", json={"resume_at": "soon"}).status_code == 422
    assert api.post("/api/v1/queues/nope/pause", json={}).status_code == 404
    assert api.post("/api/v1/queues/emails/resume").json() == {"ok": True}
    assert chancy.sync_get_queue("emails").state is Queue.State.ACTIVE
    assert api.post("/api/v1/queues/nope/resume").status_code == 404
    chancy.sync_push(Job(func="app.tasks.a", queue="emails"))
    assert api.delete("/api/v1/queues/emails?purge_jobs=false").json() == {"ok": True}
    assert chancy.sync_count_jobs()["emails"] == {"pending": 1}
    assert api.delete("/api/v1/queues/emails").json() == {"ok": True}  # gone already: still ok, as 0.26


# -------------------------------------------------------------------- jobs


def test_job_list_shapes_filters_and_pages(api: TestClient, chancy: Chancy) -> None:
    refs = [chancy.sync_push(Job(func=f"app.tasks.f{i % 2}", queue="q" if i < 4 else "r", priority=i))
            for i in range(6)]
    newest_first = [r.identifier for r in reversed(refs)]
    jobs = api.get("/api/v1/jobs").json()
    assert [j["id"] for j in jobs] == newest_first
    assert set(jobs[0]) == {"id", "queue", "func", "kwargs", "limits", "meta", "state", "priority", "attempts",
                            "max_attempts", "taken_by", "created_at", "started_at", "completed_at",
                            "scheduled_at", "unique_key", "errors", "claim_id"}
    assert jobs[0]["claim_id"] is None and dt.datetime.fromisoformat(jobs[0]["created_at"]).tzinfo is not None
    assert [j["id"] for j in api.get("/api/v1/jobs?queue=r").json()] == newest_first[:2]
    assert len(api.get("/api/v1/jobs?func=TASKS.F1").json()) == 3
    filters = '[["priority", ">=", 2], ["queue", "=", "q"]]'
    assert [j["priority"] for j in api.get("/api/v1/jobs", params={"filters": filters}).json()] == [3, 2]
    page = api.get("/api/v1/jobs?pagination=true&limit=4").json()
    assert page["has_more"] and page["next_cursor"] == newest_first[3] and len(page["items"]) == 4
    rest = api.get(f"/api/v1/jobs?pagination=true&limit=4&before={page['next_cursor']}").json()
    assert [j["id"] for j in rest["items"]] == newest_first[4:] and rest == {**rest, "has_more": False,
                                                                            "next_cursor": None}
    claim(chancy, "q")
    running = api.get("/api/v1/jobs?state=running").json()
    assert len(running) == 1 and running[0]["taken_by"] == "w1"
    for bad in ("limit=0", "limit=101", "limit=x", "before=nope", "state=done", "filters=[1]",
                'filters=[["colour", "=", 1]]', 'filters=[["priority", "~", 1]]', 'filters=[["priority", "=", "1"]]',
                "filters={"):
        answer = api.get(f"/api/v1/jobs?{bad}")
        assert answer.status_code == 422 and "title" in answer.json(), bad


def test_one_job_and_its_actions(api: TestClient, chancy: Chancy) -> None:
    job_id = failed_job(chancy)
    got = api.get(f"/api/v1/jobs/{job_id}").json()
    assert got["state"] == "failed" and got["errors"][0]["traceback"].endswith("boom <b>")
    assert (api.get(f"/api/v1/jobs/{uuid.uuid4()}").status_code, api.get("/api/v1/jobs/nope").json()) == (404, {})
    assert api.post(f"/api/v1/jobs/{job_id}/retry").json() == {"ok": True}
    assert chancy.sync_get_job(job_id).state is QueuedJob.State.RETRYING
    assert api.post(f"/api/v1/jobs/{job_id}/cancel").json() == {"ok": True}
    assert chancy.sync_get_job(job_id).state is QueuedJob.State.FAILED
    assert api.delete(f"/api/v1/jobs/{job_id}").json() == {"ok": True}
    assert chancy.sync_get_job(job_id) is None
    assert api.delete(f"/api/v1/jobs/{job_id}").json() == {"ok": True}
    assert api.post("/api/v1/jobs/nope/retry").status_code == 422


def test_batch_actions_report_each_job(api: TestClient, chancy: Chancy) -> None:
    failed = failed_job(chancy)
    running = chancy.sync_push(Job(func="app.tasks.slow", queue="slow")).identifier
    claim(chancy, "slow")
    waiting = chancy.sync_push(Job(func="app.tasks.a")).identifier
    missing = str(uuid.uuid4())
    result = api.post("/api/v1/jobs", json={"action": "RETRY", "ids": [failed, running, waiting, missing, "bad",
                                                                        failed]}).json()
    assert result == {"ok": False, "results": [
        {"id": failed, "status": "completed"},
        {"id": running, "status": "skipped", "message": "Running jobs cannot be retried"},
        {"id": waiting, "status": "skipped", "message": "Job is already waiting to run"},
        {"id": missing, "status": "skipped", "message": "Job no longer exists"},
        {"id": "bad", "status": "failed", "message": "Invalid job ID"},
    ]}
    succeeded = fill(chancy, [("q", "app.tasks.a", "succeeded", 0, 1)])[0]
    cancel = api.post("/api/v1/jobs", json={"action": "cancel", "ids": [succeeded, running]}).json()
    assert cancel["results"] == [{"id": succeeded, "status": "skipped", "message": "Job is already finished"},
                                 {"id": running, "status": "completed"}]
    assert chancy.sync_get_job(running).state is QueuedJob.State.FAILED
    assert api.post("/api/v1/jobs", json={"action": "purge", "ids": [running]}).json()["ok"]
    assert chancy.sync_get_job(running) is None
    assert api.post("/api/v1/jobs", json={"action": "explode", "ids": [failed]}).status_code == 422
    assert api.post("/api/v1/jobs", json={"action": "purge", "ids": []}).status_code == 422
    assert api.post("/api/v1/jobs", content=b"[]").status_code == 422


def test_bulk_actions_take_every_matching_job_up_to_the_cap(api: TestClient, chancy: Chancy) -> None:
    ids = fill(chancy, [("a", "app.tasks.x", "failed", 0, 1)] * 12 + [("b", "app.tasks.x", "failed", 0, 1)] * 3)
    first = api.post("/api/v1/jobs/bulk", json={"action": "retry", "state": "failed", "queue": "a", "limit": 10})
    assert first.json() == {"action": "retry", "matched": 10, "completed": 10, "skipped": 0, "failed": 0,
                            "has_more": True}
    second = api.post("/api/v1/jobs/bulk", json={"action": "retry", "state": "failed", "queue": "a"}).json()
    assert (second["matched"], second["has_more"]) == (2, False)
    states = {str(j.id): j.state.value for j in chancy.sync_get_jobs(ids)}
    assert sorted(states.values()) == ["failed"] * 3 + ["retrying"] * 12
    purge = api.post("/api/v1/jobs/bulk", json={"action": "purge", "filters": [["queue", "=", "b"]]}).json()
    assert purge["completed"] == 3 and len(chancy.sync_get_jobs(ids)) == 12
    assert api.post("/api/v1/jobs/bulk", json={"action": "purge"}).json()["title"] == "A filter is required"
    too_many = api.post("/api/v1/jobs/bulk", json={"action": "retry", "state": "failed", "limit": 10_001})
    assert too_many.status_code == 422


def test_counts_and_functions(api: TestClient, chancy: Chancy) -> None:
    fill(chancy, [("a", "app.b", "failed", 0, 1), ("a", "app.a", "failed", 0, 1), ("b", "app.a", "pending", 0, 0)])
    counts = api.get("/api/v1/jobs/counts").json()
    assert counts["failed"] == {"count": 2, "exact": True} and counts["pending"] == {"count": 1, "exact": True}
    assert api.get("/api/v1/jobs/counts?cap=1").json()["failed"] == {"count": 1, "exact": False}
    assert api.get("/api/v1/jobs/counts?queue=b").json()["failed"]["count"] == 0
    assert api.get("/api/v1/jobs/counts?cap=0").status_code == 422
    assert api.get("/api/v1/jobs/functions").json() == ["app.a", "app.b"]


def test_workers_configuration_system_and_plugins(api: TestClient, chancy: Chancy) -> None:
    now = chancy.now()
    with chancy.connection() as conn:
        chancy.store.upsert_worker(conn, worker_id="w1", hostname="box", pid=42, pid_start=None, tags=["*"],
                                   queues=["default"], now=now, expires_at=now + 60_000_000)
        chancy.store.elect_leader(conn, "w1", now=now, expires_at=now + 60_000_000)
    [worker] = api.get("/api/v1/workers").json()
    assert worker == {**worker, "worker_id": "w1", "hostname": "box", "pid": 42, "tags": ["*"], "is_leader": True}
    assert api.get("/api/v1/configuration").json() == {
        "plugins": ["Leadership", "Pruner", "Recovery", "WorkflowPlugin"]}
    system = api.get("/api/v1/system").json()
    assert system["database"]["prefix"] == "chancy_" and system["database"]["version"].startswith("SQLite 3.")
    plugins = {p["identifier"]: p for p in api.get("/api/v1/plugins").json()}
    assert plugins["chancy.pruner"]["dependencies"] == ["chancy.leadership"]
    assert set(plugins["chancy.pruner"]) == {"identifier", "tables", "migrate_key", "migrate_package", "api_plugin",
                                            "dependencies", "scope"}


# ------------------------------------------------------------ plugin routes


def test_cron_routes_with_and_without_the_plugin(api: TestClient, db_path: str) -> None:
    from chancy_lite.plugins.cron import Cron

    assert api.get("/api/v1/crons").status_code == 404
    with Chancy(db_path, plugins=[Cron()]) as app:
        app.sync_migrate()
        Cron.sync_schedule(app, "*/5 * * * *", Job(func="app.tasks.tick", unique_key="tick"), timezone="Europe/Paris")
        with make_client(create_app(app, auth=AUTH)) as client:
            client.headers["Authorization"] = f"Bearer {token_of(client)}"
            [schedule] = client.get("/api/v1/crons").json()
            assert schedule == {**schedule, "unique_key": "tick", "cron": "*/5 * * * *", "timezone": "Europe/Paris",
                                "last_run": None}
            assert schedule["job"]["func"] == "app.tasks.tick" and schedule["next_run"]
            run = client.post("/api/v1/crons/tick/run").json()
            assert run["ok"] and app.sync_get_job(run["job_id"]).func == "app.tasks.tick"
            assert client.post("/api/v1/crons/nope/run").status_code == 404
            page = client.get("/crons")
            assert page.status_code == 200 and "*/5 * * * *" in page.text and "Run now" in page.text


@dataclasses.dataclass
class Step:
    job: Job
    step_id: str
    dependencies: list[str]
    state: QueuedJob.State | None = None
    job_id: uuid.UUID | None = None


@dataclasses.dataclass
class Flow:
    name: str
    steps: dict[str, Step]
    state: str
    id: uuid.UUID
    created_at: dt.datetime
    updated_at: dt.datetime


class FakeWorkflows(Plugin):
    """Stands for the WorkflowPlugin (built in another branch): its 0.26 read API."""

    def __init__(self, flows: list[Flow]) -> None:
        self.flows = flows

    @staticmethod
    def get_identifier() -> str:
        return "chancy.workflow"

    async def fetch_workflows(self, chancy: Chancy, *, states: list[str] | None = None, ids: Any = None,
                              limit: int = 100) -> list[Flow]:
        return [f for f in self.flows if states is None or f.state in states][:limit]

    async def fetch_workflow(self, chancy: Chancy, workflow_id: uuid.UUID) -> Flow | None:
        return next((f for f in self.flows if f.id == workflow_id), None)


@dataclasses.dataclass
class Point:
    timestamp: dt.datetime
    value: float
    sampled_at: dt.datetime


@dataclasses.dataclass
class Metric:
    type: str
    unit: str
    data: list[Point]

    @property
    def summary(self) -> float:
        return sum(p.value for p in self.data)


class FakeMetrics(Plugin):
    """Stands for the Metrics plugin (built in another branch): its 0.26 read API."""

    @staticmethod
    def get_identifier() -> str:
        return "chancy.metrics"

    async def list_metrics(self, chancy: Chancy) -> list[str]:
        return ["global:status:succeeded", "queue:default:throughput"]

    async def get_metrics(self, chancy: Chancy, prefix: str | None = None, worker_id: str | None = None, *,
                          resolution: str = "5min") -> dict[str, Any]:
        now = utcnow().replace(second=0, microsecond=0)
        points = [Point(now - dt.timedelta(minutes=5 * i), float(i), now) for i in range(6)]
        return {"start": now - dt.timedelta(hours=1), "end": now, "resolution": resolution, "generated_at": now,
                "series": {prefix: Metric("counter", "count", points)}}


def test_workflow_routes_with_the_workflow_plugin(api: TestClient, chancy: Chancy) -> None:
    from chancy_lite.plugins.workflow import Workflow, WorkflowPlugin
    from chancy_lite.testing import drain

    ids = [WorkflowPlugin.sync_push(chancy, Workflow(f"flow {i}").add("a", Job(func="tests.jobs.noop"))
                                    .add("b", Job(func="tests.jobs.noop"), ["a"])) for i in range(3)]
    first = api.get("/api/v1/workflows?pagination=true&limit=2").json()
    assert [r["name"] for r in first["items"]] == ["flow 2", "flow 1"] and first["has_more"]
    assert first["items"][0] == {**first["items"][0], "id": str(ids[2]), "state": "running", "total_steps": 2,
                                 "waiting_steps": 1, "pending_steps": 1}
    rest = api.get(f"/api/v1/workflows?pagination=true&limit=2&before={first['next_cursor']}").json()
    assert [r["name"] for r in rest["items"]] == ["flow 0"] and not rest["has_more"]
    drain(chancy)  # every step runs: the workflows complete
    done = api.get("/api/v1/workflows", params={"filters": '[["state", "=", "completed"], ["name", "~", "FLOW 1"]]'})
    assert [r["name"] for r in done.json()] == ["flow 1"] and done.json()[0]["succeeded_steps"] == 2
    assert api.get("/api/v1/workflows", params={"filters": '[["state", "=", "done"]]'}).status_code == 422
    detail = api.get(f"/api/v1/workflows/{ids[0]}").json()
    assert detail["name"] == "flow 0" and detail["steps"]["b"]["dependencies"] == ["a"]
    assert api.get(f"/api/v1/workflows/{uuid.uuid4()}").json() == {"error": "Workflow not found"}
    csrf_free = api  # bearer token: pages accept it too
    page = csrf_free.get(f"/workflows/{ids[0]}")
    assert page.status_code == 200 and "<svg" in page.text and 'class="node succeeded"' in page.text
    assert "flow 2" in csrf_free.get("/workflows").text
    assert csrf_free.get("/workflows?state=done").status_code == 422


def test_workflow_and_metrics_routes_use_the_plugins_api(db_path: str) -> None:
    """Plugins with Chancy 0.26's read API only (a workflow plugin without ``fetch_workflow_page``, a metrics
    plugin): the routes and pages use that API."""
    now = utcnow()
    a = Step(Job(func="app.a"), "a", [], QueuedJob.State.SUCCEEDED, uuid.uuid4())
    b = Step(Job(func="app.b"), "b", ["a"])
    flow = Flow("nightly", {"a": a, "b": b}, "running", uuid.uuid4(), now, now)
    with Chancy(db_path, plugins=[FakeWorkflows([flow]), FakeMetrics()], no_default_plugins=True) as app:
        app.sync_migrate()
        with make_client(create_app(app, auth=AUTH)) as client:
            client.headers["Authorization"] = f"Bearer {token_of(client)}"
            [row] = client.get("/api/v1/workflows").json()
            assert row == {**row, "name": "nightly", "state": "running", "total_steps": 2, "waiting_steps": 1,
                           "succeeded_steps": 1, "pending_steps": 0}
            paged = client.get("/api/v1/workflows?pagination=true&filters=" + '[["name", "~", "NIGHT"]]').json()
            assert paged["items"][0]["id"] == str(flow.id) and not paged["has_more"]
            detail = client.get(f"/api/v1/workflows/{flow.id}").json()
            assert detail["name"] == "nightly" and detail["steps"]["b"]["dependencies"] == ["a"]
            assert client.get(f"/api/v1/workflows/{uuid.uuid4()}").json() == {"error": "Workflow not found"}
            assert client.get("/api/v1/metrics").json() == {
                "categories": {"global": ["status"], "queue": ["default"]}, "count": 2}
            series = client.get("/api/v1/metrics/queue:default:throughput?resolution=1hour").json()
            assert series["resolution"] == "1hour"
            entry = series["series"]["queue:default:throughput"]
            assert entry["type"] == "counter" and len(entry["data"]) == 6 and entry["summary"] == 15.0
            assert client.get("/api/v1/metrics/x?resolution=2min").status_code == 422
            for path in ("/workflows", f"/workflows/{flow.id}", "/metrics", "/metrics/queue:default:throughput"):
                page = client.get(path)
                assert page.status_code == 200, (path, page.text)
            assert "<svg" in client.get(f"/workflows/{flow.id}").text
            assert "<polyline" in client.get("/metrics/queue:default:throughput").text


def test_pages_of_absent_plugins_say_how_to_add_them(browser) -> None:
    client, _ = browser
    for path, name in (("/crons", "Cron"), ("/metrics", "Metrics")):
        page = client.get(path)
        assert page.status_code == 404 and f"{name}()" in page.text
    assert client.get("/api/v1/crons").status_code == 404


# -------------------------------------------------------------- websocket


def test_websocket_needs_a_token_and_forwards_hub_events(chancy: Chancy) -> None:
    hub = Hub()

    class FakeWorker:
        pass

    worker: Any = FakeWorker()
    worker.hub = hub
    with make_client(create_app(chancy, auth=AUTH, worker=worker)) as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/api/v1/ws") as ws:
            ws.receive_text()
        assert refused.value.code == 1008
        with client.websocket_connect(f"/api/v1/ws?token={token_of(client)}") as ws:
            assert client.portal is not None
            client.portal.call(lambda: hub.emit("queue.pushed", {"q": "default"}))
            assert ws.receive_json() == {"event": "queue.pushed", "data": {"q": "default"}}


# ------------------------------------------------------------------- pages


def test_every_page_renders(browser, chancy: Chancy) -> None:
    client, _ = browser
    job_id = failed_job(chancy)
    chancy.sync_push(Job(func="app.tasks.slow", kwargs={"x": "<script>alert(1)</script>"}))
    for path in ("/", "/jobs", "/jobs?state=failed", "/jobs?state=pending&queue=default&func=slow", f"/jobs/{job_id}",
                 "/queues", "/queues/new", "/queues/default", "/workers"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "<script>alert" not in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert page.headers["x-frame-options"] == "DENY"
    detail = client.get(f"/jobs/{job_id}").text
    assert "ValueError: boom &lt;b&gt;" in detail and "app.tasks.boom" in detail
    pending = client.get("/jobs?state=pending").text
    assert "&lt;script&gt;" not in pending  # kwargs are not on the list
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert client.get("/jobs/nope").status_code == 422
    assert client.get("/queues/nope").status_code == 404
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/nowhere").status_code == 404


def test_the_live_part_of_a_page_renders_alone(browser, chancy: Chancy) -> None:
    client, _ = browser
    job_id = failed_job(chancy)
    whole = client.get(f"/jobs/{job_id}").text
    part = client.get(f"/jobs/{job_id}", headers={"X-Chancy-Partial": "1"}).text
    assert whole.startswith("<!doctype html>") and not part.lstrip().startswith("<!doctype")
    assert "ValueError: boom" in part and "<nav" not in part


def test_progress_shows_as_a_bar(browser, chancy: Chancy) -> None:
    client, _ = browser
    ref = chancy.sync_push(Job(func="app.tasks.slow", meta={"progress": {"done": 3, "total": 4, "message": "3 of 4"}}))
    claim(chancy)
    page = client.get(f"/jobs/{ref.identifier}").text
    assert '<progress id="job-progress" value="3" max="4">' in page and "75 %" in page and "3 of 4" in page
    assert '<progress value="3" max="4">' in client.get("/").text  # running now, on the overview


def test_page_actions_redirect_with_a_message(browser, chancy: Chancy) -> None:
    client, csrf = browser
    job_id = failed_job(chancy)
    done = client.post(f"/jobs/{job_id}/retry", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job_id}"
    assert f"Retried job {job_id}." in client.get(done.headers["location"]).text
    again = client.post(f"/jobs/{job_id}/retry", data={"csrf_token": csrf})
    assert "Nothing done: Job is already waiting to run." in again.text
    bulk = client.post("/jobs/bulk", data={"csrf_token": csrf, "action": "cancel", "state": "retrying"})
    assert "Cancelled 1 of 1 matching job(s)" in bulk.text
    nothing = client.post("/jobs/bulk", data={"csrf_token": csrf, "action": "purge"},
                          headers={"Referer": "http://testserver/jobs"})
    assert "A filter is required" in nothing.text
    purged = client.post(f"/jobs/{job_id}/purge", data={"csrf_token": csrf}, follow_redirects=False)
    assert purged.headers["location"] == "/jobs" and chancy.sync_get_job(job_id) is None


def test_queue_forms(browser, chancy: Chancy) -> None:
    client, csrf = browser
    form = {"csrf_token": csrf, "name": "reports", "concurrency": "2", "tags": "gpu, cpu", "executor": "threaded",
            "executor_options": "", "polling_interval": "3", "rate_limit": "", "rate_limit_window": ""}
    created = client.post("/queues", data=form)
    assert created.status_code == 200 and "Saved queue reports." in created.text
    queue = chancy.sync_get_queue("reports")
    assert (queue.concurrency, queue.tags, queue.polling_interval) == (2, {"gpu", "cpu"}, 3)
    assert queue.executor == Chancy.Executor.Threaded
    bad = client.post("/queues/reports", data={**form, "executor_options": "[1]"})
    assert bad.status_code == 422 and "executor options must be a JSON object" in bad.text
    edited = client.post("/queues/reports", data={**form, "concurrency": "", "rate_limit": "5",
                                                  "rate_limit_window": "60"})
    assert "Saved queue reports." in edited.text
    queue = chancy.sync_get_queue("reports")
    assert (queue.concurrency, queue.rate_limit, queue.rate_limit_window) == (None, 5, 60)
    paused = client.post("/queues/reports/pause", data={"csrf_token": csrf, "minutes": "30"})
    assert "Paused queue reports for 30 min." in paused.text
    queue = chancy.sync_get_queue("reports")
    assert queue.state is Queue.State.PAUSED and queue.resume_at is not None
    assert client.post("/queues/reports/pause", data={"csrf_token": csrf, "minutes": "-1"},
                       headers={"Referer": "http://testserver/queues"}).status_code == 200
    assert "Resumed queue reports." in client.post("/queues/reports/resume", data={"csrf_token": csrf}).text
    deleted = client.post("/queues/reports/delete", data={"csrf_token": csrf})
    assert "Deleted queue reports" in deleted.text
    with pytest.raises(KeyError):
        chancy.sync_get_queue("reports")


# --------------------------------------------------------------- mounting


def test_mounted_under_a_sub_path_every_url_keeps_the_prefix(chancy: Chancy) -> None:
    job_id = failed_job(chancy)
    host = Starlette(routes=[Mount("/admin/jobs", app=create_app(chancy, auth=AUTH))])
    with make_client(host) as client:
        first = client.get("/admin/jobs/", follow_redirects=False)
        assert first.headers["location"] == "/admin/jobs/login?next=%2F"
        form = client.get("/admin/jobs/login")
        assert 'action="/admin/jobs/login"' in form.text and 'href="/admin/jobs/static/app.css' in form.text
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        done = client.post("/admin/jobs/login", data={"username": "admin", "password": PASSWORD,
                                                      "csrf_token": nonce, "next": "/"}, follow_redirects=False)
        assert done.headers["location"] == "/admin/jobs/" and "Path=/admin/jobs/" in done.headers["set-cookie"]
        overview = client.get("/admin/jobs/").text
        assert 'href="/admin/jobs/jobs?state=failed"' in overview
        assert 'data-events="/admin/jobs/api/v1/events"' in overview
        assert f'href="/admin/jobs/jobs/{job_id}"' in overview
        csrf = csrf_of(overview)
        retried = client.post(f"/admin/jobs/jobs/{job_id}/retry", data={"csrf_token": csrf}, follow_redirects=False)
        assert retried.headers["location"] == f"/admin/jobs/jobs/{job_id}"
        assert client.get("/admin/jobs/health").json()["status"] == "healthy"
        assert client.post("/admin/jobs/api/v1/login", json={"username": "admin", "password": PASSWORD}).json()["token"]


def test_the_readmes_mounting_example_works(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.acceptance.test_readme import code_blocks

    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code_blocks()["dashboard.py"], "dashboard.py", "exec"), namespace)
    with namespace["chancy"] as app:
        app.sync_migrate()
        with make_client(namespace["app"]) as client:
            first = client.get("/admin/jobs/", follow_redirects=False)
            assert first.headers["location"] == "/admin/jobs/login?next=%2F"
            login = client.post("/admin/jobs/api/v1/login", json={"username": "admin", "password": "a long password"})
            assert login.status_code == 200

"""The dashboard's pure parts: filter parsing, JSON shapes, signing, throttling, and what the pages draw."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math

import pytest

from chancy_lite import Queue
from chancy_lite.plugins.api.auth import SimpleAuthBackend
from chancy_lite.store import CappedCount, JobFilter
from chancy_lite.web import render
from chancy_lite.web.filters import BadRequest, job_filter, job_id, page_limit, truthy
from chancy_lite.web.security import LoginThrottle, Signer, same_secret
from chancy_lite.web.shapes import dumps, pack_queue, plain, unpack_queue


def test_filters_combine_query_parameters_and_triples() -> None:
    flt = job_filter({"state": "failed", "queue": "emails", "func": "send",
                      "filters": json.dumps([["priority", ">=", 2], ["func", "~", "mail"], ["attempts", "<", 3]])})
    assert flt == JobFilter(states=("failed",), queue="emails", func_contains=("send", "mail"),
                            compare=(("priority", ">=", 2), ("attempts", "<", 3)))
    assert job_filter({}) == JobFilter()
    assert job_filter({"filters": '[["func", "=", "app.a"]]'}).func == "app.a"
    # contradictions match nothing rather than one side
    assert job_filter({"state": "failed", "filters": '[["state", "=", "pending"]]'}).states == ()
    assert job_filter({"queue": "a", "filters": '[["queue", "=", "b"]]'}).states == ()


@pytest.mark.parametrize("params", [
    {"state": "done"}, {"filters": "{"}, {"filters": '{"state": "failed"}'}, {"filters": '[["state", "="]]'},
    {"filters": '[["colour", "=", "red"]]'}, {"filters": '[["queue", "~", "a"]]'}, {"filters": '[["queue", "=", 1]]'},
    {"filters": '[["priority", "=", true]]'}, {"filters": '[["attempts", ">", 1.5]]'},
    {"filters": '[["priority", "=", 9223372036854775807]]'}, {"filters": '[["func", "~", 3]]'},
])
def test_bad_filters_are_422_with_a_title(params: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as refused:
        job_filter(params)
    assert refused.value.status == 422 and refused.value.body()["title"]


def test_limits_ids_and_booleans() -> None:
    assert page_limit({}) == 100 and page_limit({"limit": "7"}) == 7
    for bad in ("0", "101", "x", "-1"):
        with pytest.raises(BadRequest):
            page_limit({"limit": bad})
    assert job_id("01A2301F-1039-70C7-AD3A-761E28B3968A") == "01a2301f-1039-70c7-ad3a-761e28b3968a"
    assert job_id(None) is None and job_id("") is None
    with pytest.raises(BadRequest):
        job_id("nope")
    assert truthy("YES", False) and truthy("1", False) and not truthy("no", True) and truthy(None, True)


def test_json_is_strict() -> None:
    value = {"nan": math.nan, "inf": -math.inf, "when": dt.datetime(2030, 1, 1, tzinfo=dt.UTC), "tags": {"b", "a"},
             "state": Queue.State.PAUSED}
    assert json.loads(dumps(value)) == {"nan": "NaN", "inf": "-Infinity", "when": "2030-01-01T00:00:00+00:00",
                                        "tags": ["a", "b"], "state": "paused"}


def test_queues_pack_and_unpack() -> None:
    queue = Queue("emails", concurrency=2, tags={"gpu"}, resume_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                  state=Queue.State.PAUSED)
    packed = pack_queue(queue)
    assert packed["tags"] == ["gpu"] and packed["resume_at"] == "2030-01-01T00:00:00+00:00"
    assert unpack_queue(packed) == queue
    for bad in ({"concurrency": 1}, {"name": "x", "colour": 1}, {"name": "x", "tags": "gpu"},
                {"name": "x", "resume_at": "soon"}, {"name": "x", "concurrency": 0}):
        with pytest.raises((ValueError, TypeError)):
            unpack_queue(bad)


def test_tokens_sessions_and_flashes_are_signed() -> None:
    signer = Signer("k")
    assert signer.check_token(signer.token("ada")) == "ada"
    assert Signer("other").check_token(signer.token("ada")) is None
    assert signer.check_token("garbage") is None
    cookie, csrf = signer.session("ada")
    user = signer.check_session(cookie)
    assert user is not None and (user.name, user.via, user.csrf) == ("ada", "session", csrf)
    assert signer.check_session(signer.token("ada")) is None  # a token is not a session (salts differ)
    assert signer.check_flash(signer.flash("done", "ok")) == ("done", "ok")
    assert same_secret(csrf, csrf) and not same_secret(csrf + "x", csrf) and not same_secret(None, csrf)
    assert not same_secret("", "")


def test_login_throttle_counts_failures_per_address_in_a_window() -> None:
    throttle = LoginThrottle(failures=3, window=60)
    for t in (0, 1, 2):
        assert not throttle.blocked("a", now=t)
        throttle.failed("a", now=t)
    assert throttle.blocked("a", now=3) and not throttle.blocked("b", now=3)
    assert not throttle.blocked("a", now=61)  # the first failure left the window


def test_simple_backend_checks_passwords() -> None:
    backend = SimpleAuthBackend({"admin": "pw", "ops": "other"})

    async def check(user: str, password: str) -> bool:
        return await backend.login(None, user, password)

    assert asyncio.run(check("admin", "pw")) and asyncio.run(check("ops", "other"))
    assert not asyncio.run(check("admin", "other")) and not asyncio.run(check("nobody", "pw"))
    assert SimpleAuthBackend.from_env({}) is None
    from_env = SimpleAuthBackend.from_env({"CHANCY_LITE_WEB_PASSWORD": "s"})
    assert from_env is not None and from_env.usernames == ["admin"]


def test_progress_reads_what_queued_job_progress_stores() -> None:
    assert render.progress({"progress": {"done": 3, "total": 4, "message": "m"}}) == {
        "done": 3, "total": 4, "percent": 75.0, "message": "m"}
    assert render.progress({"progress": {"done": 9, "total": 4}})["percent"] == 100.0
    assert render.progress({"progress": {"done": 5}}) == {"done": 5, "total": None, "percent": None, "message": ""}
    for meta in ({}, {"progress": 3}, {"progress": {"done": "x"}}, {"progress": {"done": math.nan}}, []):
        assert render.progress(meta) is None  # type: ignore[arg-type]


def test_counts_sizes_and_durations_read_well() -> None:
    assert render.count(CappedCount(10_000, False)) == "10,000+" and render.count(CappedCount(12, True)) == "12"
    assert render.count({"count": 5, "exact": False}) == "5+"
    assert render.size(512) == "512 B" and render.size(3 * 2**20) == "3.0 MiB"
    assert render.duration(0.0123) == "12.3 ms" and render.duration(75) == "1 min 15 s"
    assert render.duration(None) == "—"
    now = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
    assert render.ago(now - dt.timedelta(minutes=3), now) == "3 min ago"
    assert render.ago(now + dt.timedelta(seconds=30), now) == "in 30 s"
    assert render.short("01a2301f-1039-70c7-ad3a-761e28b3968a") == "…28b3968a"


def test_a_workflow_graph_is_laid_out_in_layers() -> None:
    steps = [
        {"step_id": "fetch", "dependencies": [], "state": "succeeded", "job_id": "j1", "func": "a"},
        {"step_id": "parse", "dependencies": ["fetch"], "state": "running", "job_id": "j2", "func": "b"},
        {"step_id": "index", "dependencies": ["fetch"], "state": None, "job_id": None, "func": "c"},
        {"step_id": "report", "dependencies": ["parse", "index", "missing"], "state": None, "job_id": None,
         "func": "d"},
    ]
    graph = render.workflow_graph(steps)
    x = {n["step_id"]: n["x"] for n in graph["nodes"]}
    assert x["fetch"] < x["parse"] == x["index"] < x["report"]
    assert len(graph["edges"]) == 4  # the missing dependency draws nothing
    cycle = render.workflow_graph([{"step_id": "a", "dependencies": ["b"], "state": None, "job_id": None, "func": ""},
                                   {"step_id": "b", "dependencies": ["a"], "state": None, "job_id": None, "func": ""}])
    assert len(cycle["nodes"]) == 2


def test_a_chart_scales_its_points() -> None:
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    points = [{"timestamp": (t0 + dt.timedelta(minutes=i)).isoformat(), "value": v} for i, v in enumerate([1, 3, 2])]
    points.append({"timestamp": t0.isoformat(), "value": {"avg": 2.0, "count": 1}})
    chart = render.chart(points)
    assert chart is not None and (chart["min"], chart["max"]) == (1, 3) and len(chart["dots"]) == 4
    assert render.chart([{"timestamp": "x", "value": 1}, {"value": "y"}]) is None


def test_plain_handles_dataclasses_and_unknowns() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Thing:
        a: int
        _private: int = 0

    assert plain(Thing(1)) == {"a": 1}
    assert plain(object).startswith("<class")

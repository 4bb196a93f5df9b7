"""The dashboard's view of the Cron, WorkflowPlugin and Metrics plugins, when the app has them.

Each is found in ``chancy.plugins`` by its identifier (``chancy.cron``; ``chancy.workflow`` or Chancy's
``chancy.workflow_plugin``; ``chancy.metrics``) and called through its Chancy 0.26 API (``get_schedules`` /
``run_now``; ``fetch_workflows`` / ``fetch_workflow``; ``list_metrics`` / ``get_metrics``), so nothing is imported
unless the app configured the plugin. Shapes are 0.26's (``/api/v1/crons``, ``/api/v1/workflows``,
``/api/v1/metrics``).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from chancy_lite.web.shapes import plain, schedule_to_json

if TYPE_CHECKING:
    from chancy_lite.app import Chancy

WORKFLOW_STEP_STATES = ("pending", "running", "succeeded", "failed", "retrying")
WORKFLOW_STATES = ("pending", "running", "completed", "failed")
RESOLUTIONS = ("1min", "5min", "1hour", "1day")


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a plugin's method, awaiting it if it is a coroutine (Chancy's are; a sync twin may not be)."""
    result = fn(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


# ------------------------------------------------------------------------ cron


async def raw_schedules(plugin: Any, chancy: Chancy) -> list[dict[str, Any]]:
    """Every schedule as ``Cron.get_schedules`` gives it (a ``Job``, datetimes), by key."""
    found = await _call(plugin.get_schedules, chancy)
    return [found[key] for key in sorted(found)]


async def schedules(plugin: Any, chancy: Chancy) -> list[dict[str, Any]]:
    """Every schedule as 0.26's ``/api/v1/crons`` gives it, by key."""
    return [schedule_to_json(s) for s in await raw_schedules(plugin, chancy)]


async def run_now(plugin: Any, chancy: Chancy, unique_key: str) -> str:
    """Push a schedule's job now; its id. ``KeyError`` if there is no such schedule."""
    ref = await _call(plugin.run_now, chancy, unique_key)
    return str(ref.identifier if hasattr(ref, "identifier") else ref)


# ------------------------------------------------------------------- workflows


def _state(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def workflow_row(workflow: Any) -> dict[str, Any]:
    """0.26's list row: ``id``, ``name``, ``state``, ``created_at``, ``updated_at``, ``total_steps``,
    ``waiting_steps`` (no job yet), and ``{state}_steps`` for each job state."""
    steps = list(_steps(workflow))
    row: dict[str, Any] = {
        "id": getattr(workflow, "id", None), "name": getattr(workflow, "name", None),
        "state": _state(getattr(workflow, "state", None)), "created_at": getattr(workflow, "created_at", None),
        "updated_at": getattr(workflow, "updated_at", None), "total_steps": len(steps),
        "waiting_steps": sum(1 for s in steps if getattr(s, "job_id", None) is None),
    }
    for state in WORKFLOW_STEP_STATES:
        row[f"{state}_steps"] = sum(
            1 for s in steps if getattr(s, "job_id", None) is not None and _state(getattr(s, "state", None)) == state
        )
    return plain(row)


def workflow_detail(workflow: Any) -> dict[str, Any]:
    """``asdict(Workflow)`` with its steps (0.26's ``/api/v1/workflows/{id}``)."""
    data = plain(workflow)
    if isinstance(data, dict):
        data["steps"] = {str(getattr(s, "step_id", i)): plain(s) for i, s in enumerate(_steps(workflow))}
    return data


def _steps(workflow: Any) -> Iterable[Any]:
    steps = getattr(workflow, "steps", None) or {}
    return steps.values() if isinstance(steps, dict) else steps


async def list_workflows(plugin: Any, chancy: Chancy, *, state: str | None, limit: int,
                         before: str | None) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` workflows, newest id first, below ``before``; and whether there are more. chancy_lite's
    WorkflowPlugin pages through an index (``fetch_workflow_page``); a plugin with only Chancy's ``fetch_workflows``
    is asked for (at most 10,000) workflows, which are sorted here."""
    page = getattr(plugin, "fetch_workflow_page", None)
    if page is not None:
        found = await _call(page, chancy, state=state, before=before, limit=limit + 1)
        rows = [workflow_row(w) for w in found]
        return rows[:limit], len(rows) > limit
    states = [state] if state else None
    fetched = await _call(plugin.fetch_workflows, chancy, states=states, limit=10_000)
    rows = sorted((workflow_row(w) for w in fetched), key=lambda r: str(r["id"]), reverse=True)
    if before is not None:
        rows = [r for r in rows if str(r["id"]) < before]
    return rows[:limit], len(rows) > limit


async def get_workflow(plugin: Any, chancy: Chancy, workflow_id: str) -> Any | None:
    try:
        key = uuid.UUID(workflow_id)
    except ValueError:
        return None
    found = await _call(plugin.fetch_workflow, chancy, key)
    if found is None:  # a plugin keyed by text
        found = await _call(plugin.fetch_workflow, chancy, str(key))
    return found


def graph_steps(workflow: Any) -> list[dict[str, Any]]:
    """The steps for the graph: ``step_id``, ``dependencies``, ``state`` (the job's, or None), ``job_id``."""
    return [
        {"step_id": str(getattr(s, "step_id", "")), "dependencies": [str(d) for d in getattr(s, "dependencies", [])],
         "state": _state(getattr(s, "state", None)), "job_id": _text(getattr(s, "job_id", None)),
         "func": getattr(getattr(s, "job", None), "func", "")}
        for s in _steps(workflow)
    ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------- metrics


async def metric_categories(plugin: Any, chancy: Chancy) -> dict[str, Any]:
    """0.26's ``/api/v1/metrics``: ``{"categories": {first segment: [second segments]}, "count": keys}``."""
    keys = list(await _call(plugin.list_metrics, chancy))
    categories: dict[str, set[str]] = {}
    for key in keys:
        first, _, rest = str(key).partition(":")
        categories.setdefault(first, set())
        if rest:
            categories[first].add(rest.split(":")[0])
    return {"categories": {k: sorted(v) for k, v in sorted(categories.items())}, "count": len(keys), "keys": keys}


async def metric_series(plugin: Any, chancy: Chancy, prefix: str, *, resolution: str,
                        worker_id: str | None = None) -> dict[str, Any]:
    """0.26's ``/api/v1/metrics/{prefix}``: ``{"start", "end", "resolution", "generated_at", "series": {key:
    {"type", "unit", "data": [{"timestamp", "value", "sampled_at"}], "aggregation", "sampled_at", "summary"}}}``."""
    result = await _call(plugin.get_metrics, chancy, prefix, worker_id, resolution=resolution)
    if isinstance(result, dict) and "series" in result:  # 0.26
        series, envelope = result["series"], {k: plain(v) for k, v in result.items() if k != "series"}
    else:  # 0.25: {key: Metric}
        series, envelope = (result if isinstance(result, dict) else {}), {}
    out = {}
    for key, metric in series.items():
        entry = plain(metric)
        if not isinstance(entry, dict):
            continue
        for name in ("aggregation", "sampled_at", "summary"):
            if name not in entry and hasattr(metric, name):
                entry[name] = plain(getattr(metric, name))
        if "type" not in entry and "metric_type" in entry:
            entry["type"] = entry["metric_type"]
        out[str(key)] = entry
    return {**envelope, "resolution": resolution, "series": out}

"""Templates (Jinja2, autoescaped: every stored text is shown as text) and the small pictures the pages draw as
inline SVG: a workflow's graph and a metric's chart. No script runs inline (the pages' Content-Security-Policy
allows only the dashboard's own script and stylesheet)."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import jinja2

from chancy_lite.store import CappedCount
from chancy_lite.utils import UTC

STATE_CLASSES = ("pending", "running", "retrying", "succeeded", "failed", "completed", "active", "paused")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("chancy_lite.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when, count=count, pretty=pretty, short=short, duration=duration, number=number, size=size,
        state_class=state_class,
    )
    return env


def render_block(env: jinja2.Environment, name: str, block: str, values: dict[str, Any]) -> str:
    """One block of a template (a page's live part), rendered alone."""
    template = env.get_template(name)
    return "".join(template.blocks[block](template.new_context(values)))


def when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: dt.datetime | None, now: dt.datetime) -> str:
    """"3 min ago" / "in 2 h" for a page (the full time goes in a title)."""
    if value is None:
        return "—"
    seconds = (now - value).total_seconds()
    text = duration(abs(seconds), coarse=True)
    return "just now" if abs(seconds) < 1 else (f"{text} ago" if seconds > 0 else f"in {text}")


def duration(seconds: float | None, *, coarse: bool = False) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 1 and not coarse:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s" if coarse else f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min" if coarse else f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def count(value: CappedCount | dict[str, Any] | int) -> str:
    """A capped count: "1,234", or "10,000+" when it is a floor."""
    if isinstance(value, CappedCount):
        number_, exact = value.count, value.exact
    elif isinstance(value, dict):
        number_, exact = int(value.get("count", 0)), bool(value.get("exact", True))
    else:
        number_, exact = int(value), True
    return f"{number_:,}" + ("" if exact else "+")


def number(value: int | float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def size(value: int) -> str:
    if value < 1024:
        return f"{value} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024  # type: ignore[assignment]
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value:.1f} PiB"


def pretty(value: Any) -> str:
    """JSON for a person: indented, non-ASCII shown as itself, NaN and infinities as strings."""
    from chancy_lite.web.shapes import plain

    return json.dumps(plain(value), indent=2, ensure_ascii=False, sort_keys=True)


def short(value: Any) -> str:
    """The last 8 characters of an id: a UUIDv7 starts with its time (the same for jobs made together) and ends
    with random bits, which tell jobs apart."""
    text = str(value)
    return "…" + text[-8:] if len(text) > 8 else text


def state_class(value: Any) -> str:
    text = str(getattr(value, "value", value) or "none")
    return text if text in STATE_CLASSES else "none"


def progress(meta: dict[str, Any]) -> dict[str, Any] | None:
    """``meta["progress"]`` = ``{"done", "total", "message"}`` (what ``QueuedJob.progress()`` stores) as
    ``{"done", "total", "percent", "message"}``, or None when absent or not numbers."""
    data = meta.get("progress") if isinstance(meta, dict) else None
    if not isinstance(data, dict):
        return None
    done, total = data.get("done"), data.get("total")
    if isinstance(done, bool) or not isinstance(done, int | float) or not math.isfinite(done):
        return None
    if isinstance(total, bool) or not isinstance(total, int | float) or not math.isfinite(total) or total <= 0:
        total = None
    percent = None if total is None else max(0.0, min(100.0, 100.0 * done / total))
    message = data.get("message")
    return {"done": done, "total": total, "percent": percent, "message": message if isinstance(message, str) else ""}


# ----------------------------------------------------------------- workflows

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 170, 44, 60, 18, 12


def workflow_graph(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Positions for a workflow's steps, in layers by longest dependency chain: ``{"width", "height", "nodes":
    [{step_id, x, y, state, job_id, func}], "edges": [{path}]}``. A dependency on a step that does not exist is
    drawn from nowhere (it is skipped); a cycle (which a workflow refuses at push) is broken where found."""
    by_id = {s["step_id"]: s for s in steps}
    layer: dict[str, int] = {}

    def depth(step_id: str, seen: frozenset[str]) -> int:
        if step_id in layer:
            return layer[step_id]
        deps = [d for d in by_id[step_id]["dependencies"] if d in by_id and d not in seen]
        value = 0 if not deps else 1 + max(depth(d, seen | {step_id}) for d in deps)
        layer[step_id] = value
        return value

    for step_id in sorted(by_id):
        depth(step_id, frozenset())
    columns: dict[int, list[str]] = {}
    for step_id in sorted(by_id):
        columns.setdefault(layer[step_id], []).append(step_id)
    nodes, where = [], {}
    for col, ids in sorted(columns.items()):
        for row, step_id in enumerate(ids):
            x, y = PAD + col * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y)
            where[step_id] = (x, y)
            step = by_id[step_id]
            nodes.append({**step, "x": x, "y": y, "label": step_id if len(step_id) <= 22 else step_id[:21] + "…"})
    edges = []
    for step_id, (x, y) in where.items():
        for dep in by_id[step_id]["dependencies"]:
            if dep in where:
                x0, y0 = where[dep][0] + NODE_W, where[dep][1] + NODE_H / 2
                x1, y1 = x, y + NODE_H / 2
                mid = (x0 + x1) / 2
                edges.append({"path": f"M{x0:.0f},{y0:.0f} C{mid:.0f},{y0:.0f} {mid:.0f},{y1:.0f} {x1:.0f},{y1:.0f}"})
    width = PAD * 2 + (max(columns) + 1) * (NODE_W + GAP_X) - GAP_X if columns else PAD * 2
    height = PAD * 2 + max((len(v) for v in columns.values()), default=0) * (NODE_H + GAP_Y)
    return {"width": width, "height": max(height, NODE_H + PAD * 2), "nodes": nodes, "edges": edges,
            "node_w": NODE_W, "node_h": NODE_H}


# ------------------------------------------------------------------- metrics

CHART_W, CHART_H, CHART_PAD = 640, 160, 28


def chart(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An SVG polyline for a metric's points (``timestamp``, ``value``; a histogram's value is its average):
    ``{"width", "height", "line", "dots", "min", "max", "first", "last"}``; None without numeric points."""
    values: list[tuple[float, float]] = []
    for point in points:
        value = point.get("value")
        if isinstance(value, dict):
            value = value.get("avg", value.get("sum"))
        stamp = point.get("timestamp")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and stamp:
            try:
                when_ = dt.datetime.fromisoformat(str(stamp)).timestamp()
            except ValueError:
                continue
            values.append((when_, float(value)))
    if not values:
        return None
    values.sort()
    t0, t1 = values[0][0], values[-1][0]
    lo, hi = min(v for _, v in values), max(v for _, v in values)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD
    coords = [
        (CHART_PAD + (t - t0) / span_t * inner_w, CHART_PAD + inner_h - (v - lo) / span_v * inner_h) for t, v in values
    ]
    return {
        "width": CHART_W, "height": CHART_H, "pad": CHART_PAD,
        "line": " ".join(f"{x:.1f},{y:.1f}" for x, y in coords),
        "dots": [{"x": round(x, 1), "y": round(y, 1)} for x, y in coords] if len(coords) <= 60 else [],
        "min": lo, "max": hi,
        "first": dt.datetime.fromtimestamp(t0, UTC), "last": dt.datetime.fromtimestamp(t1, UTC),
    }

"""The Metrics plugin's data and rules, pure (no I/O, time passed in): resolutions, the checks on what is recorded,
the query window and retention, and ``Metric`` / ``MetricPoint`` (Chancy 0.26's classes)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, Literal

from chancy_lite.utils import from_micros, to_micros

MetricType = Literal["counter", "gauge", "histogram"]
METRIC_TYPES: tuple[MetricType, ...] = ("counter", "gauge", "histogram")

#: Bucket length of each resolution, in seconds (as Chancy 0.26).
RESOLUTIONS: dict[str, int] = {"1min": 60, "5min": 300, "1hour": 3600, "1day": 86400}
#: Buckets kept per resolution unless ``max_points_per_resolution`` says otherwise (as Chancy 0.26).
DEFAULT_POINTS: dict[str, int] = {"1min": 60, "5min": 288, "1hour": 168, "1day": 90}
#: The longest span a query may cover, in buckets (as Chancy 0.26).
MAX_WINDOW_BUCKETS = 1000
#: The most keys one ``get_metrics`` call may return (as Chancy 0.26).
MAX_SERIES = 100
#: The default span of a query, in seconds, when no start, range or limit is given (capped by the retention).
DEFAULT_SPAN = 86_400

MAX_KEY_BYTES = 1024
MAX_UNIT_CHARS = 64


def positive(name: str, value: Any) -> float:
    """``value`` as a number, or ``ValueError`` unless it is a finite int or float above 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return value


def points_per_resolution(overrides: Mapping[str, int] | None) -> dict[str, int]:
    """The defaults with ``overrides`` laid over them; ``ValueError`` for an unknown resolution or a count that is
    not a positive integer."""
    points = dict(DEFAULT_POINTS)
    for name, value in (overrides or {}).items():
        if name not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {name!r} in max_points_per_resolution: use {', '.join(RESOLUTIONS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"max_points_per_resolution[{name!r}] must be an integer > 0, got {value!r}")
        points[name] = value
    return points


def resolution_seconds(resolution: str) -> int:
    try:
        return RESOLUTIONS[resolution]
    except (KeyError, TypeError):
        raise ValueError(f"unknown resolution {resolution!r}: use one of {', '.join(RESOLUTIONS)}") from None


def bucket_start(at: int, seconds: int) -> int:
    """The start (µs since the epoch) of the bucket of ``seconds`` that holds ``at`` (µs)."""
    size = seconds * 1_000_000
    return at - at % size


# ------------------------------------------------------------------ checks


def check_key(key: Any) -> str:
    """A metric key: a str of 1 to 1024 UTF-8 bytes without NUL (as 0.26); ``ValueError`` otherwise."""
    if not isinstance(key, str):
        raise ValueError(f"a metric key must be a str, got {type(key).__name__}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"a metric key must be valid UTF-8: {key!r}") from None
    if not 1 <= size <= MAX_KEY_BYTES or "\x00" in key:
        raise ValueError(f"a metric key must be 1 to {MAX_KEY_BYTES} UTF-8 bytes without NUL, got {key[:80]!r}")
    return key


def check_unit(unit: Any) -> str:
    """A unit: a str of 1 to 64 characters (as 0.26); ``ValueError`` otherwise."""
    if not isinstance(unit, str) or not 1 <= len(unit) <= MAX_UNIT_CHARS:
        raise ValueError(f"a metric unit must be a str of 1 to {MAX_UNIT_CHARS} characters, got {unit!r}")
    return unit


def check_value(value: Any) -> int | float:
    """A value: a finite int or float, not a bool (as 0.26); ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"a metric value must be a finite int or float, got {value!r}")
    return value


# ------------------------------------------------------------------ retention and windows


def retention(points: int, seconds: int, maximum_age: float) -> float:
    """How far back a resolution keeps data, in seconds: ``min(points * bucket, maximum_metric_age)``."""
    return min(points * seconds, maximum_age)


def expiry_cutoff(now: int, seconds: int, keep: float) -> int:
    """The start (µs) of the oldest bucket kept at ``now``: a bucket is kept while it began less than ``keep``
    seconds before the end of the current bucket, so at most ``keep / seconds`` buckets, the current one included."""
    return bucket_start(now, seconds) + seconds * 1_000_000 - int(keep * 1_000_000)


def _aligned(name: str, value: dt.datetime, seconds: int) -> int:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    micros = to_micros(value)
    if micros % (seconds * 1_000_000):
        raise ValueError(f"{name} {value.isoformat()} is not on a bucket boundary of {seconds} s")
    return micros


def window(
    resolution: str, keep: float, now: int, *, start: dt.datetime | None = None, end: dt.datetime | None = None,
    range_seconds: int | None = None, limit: int | None = None,
) -> tuple[dt.datetime, dt.datetime]:
    """The window ``[start, end)`` of a query at ``now`` (µs), as Chancy 0.26's rules (see ``Metrics.window``);
    ``keep`` is the resolution's retention in seconds. Raises ``ValueError`` for a window it refuses."""
    seconds = resolution_seconds(resolution)
    size = seconds * 1_000_000
    if limit is not None and (start is not None or range_seconds is not None):
        raise ValueError("limit (a number of buckets) cannot be combined with start or range_seconds")
    if start is not None and range_seconds is not None:
        raise ValueError("give start (with end) or range_seconds, not both")
    last = _aligned("end", end, seconds) if end is not None else bucket_start(now, seconds) + size
    if start is not None:
        first = _aligned("start", start, seconds)
    elif range_seconds is not None:
        if isinstance(range_seconds, bool) or not isinstance(range_seconds, int) or range_seconds <= 0:
            raise ValueError(f"range_seconds must be a positive integer, got {range_seconds!r}")
        if range_seconds % seconds:
            raise ValueError(f"range_seconds ({range_seconds}) must be a multiple of the resolution ({seconds} s)")
        if range_seconds > keep:
            raise ValueError(f"range_seconds ({range_seconds}) is beyond the {resolution} retention ({keep:g} s)")
        first = last - range_seconds * 1_000_000
    elif limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive number of buckets, got {limit!r}")
        first = last - limit * size
    else:
        span = max(seconds, int(min(DEFAULT_SPAN, keep)) // seconds * seconds)
        first = last - span * 1_000_000
    if first >= last:
        raise ValueError("the window is empty: start must be before end")
    if (last - first) // size > MAX_WINDOW_BUCKETS:
        raise ValueError(f"the window spans {(last - first) // size} buckets; at most {MAX_WINDOW_BUCKETS}")
    return from_micros(first), from_micros(last)


def matches(key: str, prefix: str | None) -> bool:
    """Whether ``key`` is ``prefix`` or below it by whole ``:`` segments (the rule of ``MATCHING_DEFINITIONS``)."""
    return prefix is None or key == prefix or key.startswith(prefix + ":")


# ------------------------------------------------------------------ results


@dataclasses.dataclass(frozen=True)
class MetricPoint:
    """One bucket of a metric: its start (``timestamp``), its value, and when its latest observation was made.

    ``value`` is a number for counters (the sum of the increments) and gauges (the latest value), and
    ``{"count", "sum", "avg", "min", "max"}`` for histograms (as Chancy 0.26).
    """

    timestamp: dt.datetime
    value: Any
    sampled_at: dt.datetime


@dataclasses.dataclass
class Metric:
    """A metric's buckets in a window, oldest first, merged over every worker (or one): Chancy 0.26's ``Metric``.
    Buckets without observations are left out, not zero-filled."""

    type: MetricType
    unit: str
    data: list[MetricPoint] = dataclasses.field(default_factory=list)

    @property
    def aggregation(self) -> str:
        """How points combine: ``"sum"`` (counter), ``"last"`` (gauge) or ``"summary"`` (histogram)."""
        return {"counter": "sum", "gauge": "last", "histogram": "summary"}[self.type]

    @property
    def sampled_at(self) -> dt.datetime | None:
        """When the latest observation in the window was made, or None without data."""
        return max((point.sampled_at for point in self.data), default=None)

    @property
    def summary(self) -> Any:
        """The whole window as one value: a counter's total, a gauge's latest value, a histogram's merged
        ``{"count", "sum", "avg", "min", "max"}``; None for a gauge or a histogram without data."""
        if self.type == "counter":
            return _number(sum(point.value for point in self.data))
        if not self.data:
            return None
        if self.type == "gauge":
            return max(self.data, key=lambda point: point.sampled_at).value
        count = sum(point.value["count"] for point in self.data)
        total = sum(point.value["sum"] for point in self.data)
        return {
            "count": count, "sum": total, "avg": total / count if count else None,
            "min": min(point.value["min"] for point in self.data),
            "max": max(point.value["max"] for point in self.data),
        }


class Cell:
    """Observations merged into one bucket (of one worker, or of all): what a ``{p}metrics`` row holds."""

    __slots__ = ("count", "gauge", "maximum", "minimum", "sampled_at", "total")

    def __init__(self, count: int, total: float, minimum: float, maximum: float, gauge: float, sampled_at: int) -> None:
        self.count, self.total, self.minimum, self.maximum = count, total, minimum, maximum
        self.gauge, self.sampled_at = gauge, sampled_at

    def merge(self, count: int, total: float, minimum: float, maximum: float, gauge: float, sampled_at: int) -> None:
        self.count += count
        self.total += total
        self.minimum = min(self.minimum, minimum)
        self.maximum = max(self.maximum, maximum)
        if sampled_at >= self.sampled_at:
            self.gauge, self.sampled_at = gauge, sampled_at

    def value(self, kind: str) -> Any:
        """The bucket's value for a metric of type ``kind``."""
        if kind == "counter":
            return _number(self.total)
        if kind == "gauge":
            return _number(self.gauge)
        return {
            "count": self.count, "sum": self.total, "avg": self.total / self.count if self.count else None,
            "min": self.minimum, "max": self.maximum,
        }


def _number(value: float) -> int | float:
    """Whole floats as ints (a count read back from a REAL column is an int again)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def point(bucket: int, kind: str, cell: Cell) -> MetricPoint:
    return MetricPoint(from_micros(bucket), cell.value(kind), from_micros(cell.sampled_at))


"""When a cron expression runs in a time zone: pure functions, no I/O.

The expression is read by croniter (the ``[cron]`` extra, imported on first use) as a pattern of **local wall
times** in the schedule's zone; this module turns the matching wall times into instants (UTC) with Chancy 0.26's
daylight-saving rules. A schedule is *fixed-time* when neither its minute field nor its hour field starts with
``*`` (``30 2 * * *``, ``0 0/2 * * *``), else *wildcard* (``*/30 * * * *``, ``0 */2 * * *``, ``@hourly``):

============================  =====================================  =====================================
transition                    fixed-time                             wildcard
============================  =====================================  =====================================
skipped hour (spring)         once, at the end of the gap (03:00)    only at local times that exist
repeated hour (autumn)        once, in the first pass                in both passes
============================  =====================================  =====================================

Zones without daylight saving time, UTC included, are unaffected. Unlike croniter's own zone handling, which 0.26
notes can miss repeated-hour runs of some wildcard schedules, every matching instant is found here.
"""

from __future__ import annotations

import datetime as dt
import importlib
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chancy_lite.errors import InvalidCronError, MissingDependencyError
from chancy_lite.utils import UTC, aware

INSTALL_HINT = "pip install 'chancy-lite[cron]'"
DEFAULT_ZONE = "Etc/UTC"
MAX_YEARS = 50  # a schedule with no run within this many years is refused (croniter's bound, as Chancy 0.26)
_LOOKAHEAD_HOURS = 26  # the widest backward jump of a zone's clock within a day (offsets span -12 h to +14 h)


def croniter_module() -> ModuleType:
    """The croniter module; ``MissingDependencyError`` (an ``ImportError``) naming the extra when it is absent."""
    try:
        return importlib.import_module("croniter")
    except ImportError as exc:
        raise MissingDependencyError(f"cron schedules need the croniter package: {INSTALL_HINT}") from exc


def as_zone(value: ZoneInfo | dt.tzinfo | str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA zone name or object (``datetime.UTC`` means ``Etc/UTC``).

    ``InvalidCronError`` (a ``ValueError``) for an unknown name, for ``localtime`` (it differs between hosts) and
    for a ``ZoneInfo`` read from a file (it has no name to store); ``TypeError`` for anything else.
    """
    if isinstance(value, ZoneInfo):
        name = value.key
        if not name:
            raise InvalidCronError("a ZoneInfo read from a file has no name to store: use ZoneInfo('Area/City')")
    elif value is UTC:
        name = DEFAULT_ZONE
    elif isinstance(value, str):
        name = value
    else:
        raise TypeError(f"timezone must be a ZoneInfo or an IANA zone name such as 'Europe/Paris', got {value!r}")
    if name == "localtime":
        raise InvalidCronError("timezone 'localtime' means something else on each host: name the zone, such as "
                               "'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidCronError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'Etc/UTC' (the tzdata package, "
            f"part of {INSTALL_HINT}, provides them where the system has none)"
        ) from None


def parse(cron: str) -> tuple[Any, bool]:
    """croniter's reading of ``cron`` and whether it is fixed-time; ``InvalidCronError`` if croniter refuses it."""
    if not isinstance(cron, str):
        raise TypeError(f"a cron expression is a str such as '*/5 * * * *', got {cron!r}")
    module = croniter_module()
    try:
        reader = module.croniter(cron, dt.datetime(2000, 1, 1), ret_type=dt.datetime,
                                 max_years_between_matches=MAX_YEARS)
    except (module.CroniterError, ValueError, TypeError, KeyError) as exc:
        raise InvalidCronError(
            f"{cron!r} is not a cron expression croniter accepts ({exc}): write five fields, "
            "'minute hour day-of-month month day-of-week', such as '*/5 * * * *' or '30 2 * * 1-5'"
        ) from None
    minute, hour = reader.expressions[0], reader.expressions[1]
    return reader, not (str(minute).startswith("*") or str(hour).startswith("*"))


def is_fixed_time(cron: str) -> bool:
    """True when neither the minute nor the hour field starts with ``*`` (how the fields are written counts:
    ``0 0/2 * * *`` is fixed-time, ``0 */2 * * *`` is not); ``@daily`` and the like count as their five fields."""
    return parse(cron)[1]


def next_run(cron: str, after: dt.datetime, tz: ZoneInfo | dt.tzinfo | str = DEFAULT_ZONE) -> dt.datetime:
    """The first run of ``cron`` in zone ``tz`` strictly after ``after``, as an aware UTC datetime.

    ``after`` is an aware datetime (a naive one is local time, the rule for every datetime in chancy_lite).
    Raises ``InvalidCronError`` (a ``ValueError``) for an expression croniter refuses, an unknown zone, or an
    expression without a run in the next ``MAX_YEARS`` years (``0 0 30 2 *``); ``MissingDependencyError`` without
    croniter.
    """
    zone = as_zone(tz)
    reader, fixed = parse(cron)
    after = aware(after).astimezone(UTC)
    # Instants after `after` can show an earlier wall time only if the clock goes back soon: start from the
    # earliest wall time any of them can show (one second earlier, since croniter yields times strictly after).
    start = (after + _lowest_offset_ahead(after, zone)).replace(tzinfo=None) - dt.timedelta(seconds=1)
    reader.set_current(start, force=True)
    give_up = start + dt.timedelta(days=366 * (MAX_YEARS + 1))
    no_more = croniter_module().CroniterBadDateError
    best: dt.datetime | None = None
    while True:
        try:
            wall: dt.datetime | None = reader.get_next(dt.datetime)
        except no_more:
            wall = None
        if wall is None or wall > give_up:
            if best is not None:
                return best
            raise InvalidCronError(f"{cron!r} has no run in {zone.key} within {MAX_YEARS} years of {after:%Y-%m-%d}")
        instants = instants_of(wall, zone, fixed=fixed)
        if not instants:
            continue  # a wildcard schedule's time that does not exist that day
        if best is not None and instants[0] >= best:
            return best  # the earliest instant of each later wall time is later still
        later = [t for t in instants if t > after]
        if later and (best is None or later[0] < best):
            best = later[0]


def instants_of(wall: dt.datetime, zone: ZoneInfo, *, fixed: bool) -> list[dt.datetime]:
    """The instants (UTC, in order) at which a schedule matching the naive local time ``wall`` runs.

    A time that exists once gives one instant. A repeated time (the clock went back) gives both passes for a
    wildcard schedule, the first only for a fixed-time one. A skipped time (the clock went forward) gives nothing
    for a wildcard schedule, and the end of the gap for a fixed-time one.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first < second:  # repeated: fold=0 is the first pass
        return [first] if fixed else [first, second]
    # Skipped: fold=1 read it with the offset after the jump (an instant before it), fold=0 with the offset
    # before (an instant after it).
    return [transition_between(second, first, zone)] if fixed else []


def transition_between(before: dt.datetime, after: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The instant in ``(before, after]`` at which ``zone``'s offset changes to the one it has at ``after`` (zone
    transitions fall on whole seconds)."""
    target = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, UTC)


def _lowest_offset_ahead(after: dt.datetime, zone: ZoneInfo) -> dt.timedelta:
    """The smallest UTC offset ``zone`` has within the next day or so (hourly samples)."""
    offsets = [(after + dt.timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(_LOOKAHEAD_HOURS + 1)]
    return min(o for o in offsets if o is not None)

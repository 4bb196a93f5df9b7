"""``next_run``: cron expressions in a time zone with Chancy 0.26's daylight-saving rules, checked by hand around
real transitions and against a brute-force oracle that walks every minute."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from chancy_lite.errors import InvalidCronError, MissingDependencyError
from chancy_lite.plugins.cron.expression import as_zone, croniter_module, is_fixed_time, next_run

UTC = dt.UTC
NY = ZoneInfo("America/New_York")


def local(zone: ZoneInfo, *fields: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*fields, tzinfo=zone, fold=fold)  # type: ignore[misc]


def runs(cron: str, start: dt.datetime, zone: ZoneInfo, n: int) -> list[str]:
    """The next ``n`` runs after ``start``, as local wall times with the zone's abbreviation."""
    out, at = [], start
    for _ in range(n):
        at = next_run(cron, at, zone)
        out.append(at.astimezone(zone).strftime("%m-%d %H:%M %Z"))
    return out


# ------------------------------------------------------------- classification


@pytest.mark.parametrize(("cron", "fixed"), [
    ("30 2 * * *", True),
    ("0 0/2 * * *", True),  # the fields as written decide: 0/2 is fixed-time...
    ("0 */2 * * *", False),  # ...*/2 is a wildcard, although both run at the same hours
    ("*/30 * * * *", False),
    ("0 * * * *", False),
    ("* 3 * * *", False),
    ("15,45 1-3 * * 1-5", True),
    ("@hourly", False),
    ("@daily", True),
    ("@midnight", True),
    ("0 0 * * * 30", True),  # a sixth field is seconds
])
def test_fixed_time_or_wildcard_by_how_minute_and_hour_are_written(cron: str, fixed: bool) -> None:
    assert is_fixed_time(cron) is fixed


# ---------------------------------------------------- the 0.26 table, by hand


def test_fixed_time_in_the_skipped_hour_runs_once_at_the_end_of_the_gap() -> None:
    start = local(NY, 2025, 3, 8, 12)
    assert runs("30 2 * * *", start, NY, 3) == ["03-09 03:00 EDT", "03-10 02:30 EDT", "03-11 02:30 EDT"]
    # Several times inside the gap still make one run.
    assert runs("0,15,30,45 2 * * *", start, NY, 3) == ["03-09 03:00 EDT", "03-10 02:00 EDT", "03-10 02:15 EDT"]
    # A run that also falls at the end of the gap is one run, not two.
    assert runs("30 2,3 * * *", start, NY, 3) == ["03-09 03:00 EDT", "03-09 03:30 EDT", "03-10 02:30 EDT"]
    assert runs("0 0/2 * * *", local(NY, 2025, 3, 8, 23), NY, 3) == ["03-09 00:00 EST", "03-09 03:00 EDT",
                                                                    "03-09 04:00 EDT"]


def test_wildcard_in_the_skipped_hour_runs_only_at_times_that_exist() -> None:
    assert runs("*/30 * * * *", local(NY, 2025, 3, 9, 0, 45), NY, 4) == [
        "03-09 01:00 EST", "03-09 01:30 EST", "03-09 03:00 EDT", "03-09 03:30 EDT"]
    assert runs("0 */2 * * *", local(NY, 2025, 3, 8, 23), NY, 3) == ["03-09 00:00 EST", "03-09 04:00 EDT",
                                                                    "03-09 06:00 EDT"]
    # A wildcard schedule limited to the gap does not run that day.
    assert runs("*/30 2 * * *", local(NY, 2025, 3, 8, 12), NY, 2) == ["03-10 02:00 EDT", "03-10 02:30 EDT"]


def test_fixed_time_in_the_repeated_hour_runs_once_in_the_first_pass() -> None:
    assert runs("30 1 * * *", local(NY, 2025, 11, 1, 12), NY, 3) == ["11-02 01:30 EDT", "11-03 01:30 EST",
                                                                    "11-04 01:30 EST"]
    # From inside the second pass, the repeated 01:30 is not run again.
    second_pass = local(NY, 2025, 11, 2, 1, 10, fold=1)
    assert runs("30 1 * * *", second_pass, NY, 1) == ["11-03 01:30 EST"]


def test_wildcard_in_the_repeated_hour_runs_in_both_passes() -> None:
    assert runs("*/30 * * * *", local(NY, 2025, 11, 2, 0, 45), NY, 6) == [
        "11-02 01:00 EDT", "11-02 01:30 EDT", "11-02 01:00 EST", "11-02 01:30 EST", "11-02 02:00 EST",
        "11-02 02:30 EST"]
    assert runs("0 * * * *", local(NY, 2025, 11, 2, 0, 30), NY, 3) == ["11-02 01:00 EDT", "11-02 01:00 EST",
                                                                      "11-02 02:00 EST"]
    # From the end of the first pass, the next run is the start of the second.
    assert runs("*/30 * * * *", local(NY, 2025, 11, 2, 1, 30), NY, 1) == ["11-02 01:00 EST"]


def test_a_half_hour_shift_lord_howe() -> None:
    zone = ZoneInfo("Australia/Lord_Howe")  # 02:00 -> 02:30 in October, 02:00 -> 01:30 in April
    assert runs("15 2 * * *", local(zone, 2025, 10, 4, 12), zone, 2)[0].startswith("10-05 02:30")
    assert runs("*/15 2 * * *", local(zone, 2025, 10, 4, 12), zone, 1) == ["10-05 02:30 +11"]
    assert runs("*/15 1 * * *", local(zone, 2025, 4, 6, 1), zone, 5) == [
        "04-06 01:15 +11", "04-06 01:30 +11", "04-06 01:45 +11", "04-06 01:30 +1030", "04-06 01:45 +1030"]


def test_a_skipped_day_samoa_2011() -> None:
    zone = ZoneInfo("Pacific/Apia")  # 2011-12-29 23:59:59 was followed by 2011-12-31 00:00:00
    start = local(zone, 2011, 12, 29, 13)
    assert runs("0 12 * * *", start, zone, 2) == ["12-31 00:00 +14", "12-31 12:00 +14"]
    assert runs("0 */12 * * *", start, zone, 2) == ["12-31 00:00 +14", "12-31 12:00 +14"]
    assert runs("0 12 30 12 *", start, zone, 1) == ["12-31 00:00 +14"]


@pytest.mark.parametrize("zone", ["Etc/UTC", "Asia/Kolkata", "Asia/Tokyo"])
def test_zones_without_daylight_saving_time_follow_croniter(zone: str) -> None:
    tz = ZoneInfo(zone)
    for cron in ("*/7 * * * *", "30 2 * * *", "0 0 29 2 *", "15 10 * * 1-5", "0 0 L * *"):
        start = dt.datetime(2024, 1, 1, 3, 17, tzinfo=tz)
        reader = croniter(cron, start)
        for _ in range(5):
            expected = reader.get_next(dt.datetime)
            assert next_run(cron, start, zone) == expected
            start = expected


def test_the_next_run_is_strictly_after_and_in_utc() -> None:
    at = dt.datetime(2030, 1, 1, 12, 5, tzinfo=UTC)
    result = next_run("*/5 * * * *", at)
    assert result == dt.datetime(2030, 1, 1, 12, 10, tzinfo=UTC) and result.tzinfo is UTC
    assert next_run("*/5 * * * *", at - dt.timedelta(microseconds=1)) == at
    assert next_run("0 0 * * * 30", at) == dt.datetime(2030, 1, 2, 0, 0, 30, tzinfo=UTC)  # seconds field
    # Another aware zone for `after` is the same instant.
    assert next_run("*/5 * * * *", at.astimezone(NY), "Etc/UTC") == result


# -------------------------------------------------------------- the oracle


def oracle(cron: str, zone: ZoneInfo, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every run in [start, end) by walking each UTC minute: a minute runs if its wall time matches (a fixed-time
    schedule only in its first pass); a fixed-time schedule also runs at the first minute after a gap in which
    some wall time matched. Independent of next_run's wall-time search."""
    fixed = is_fixed_time(cron)
    reader = croniter(cron, (start - dt.timedelta(days=2)).replace(tzinfo=None))
    matching = set(itertools.takewhile(lambda w: w < end.replace(tzinfo=None) + dt.timedelta(days=2),
                                       (reader.get_next(dt.datetime) for _ in itertools.count())))
    found = []
    t = start
    previous = (t - dt.timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
    while t < end:
        shown = t.astimezone(zone)
        wall = shown.replace(tzinfo=None)
        runs_now = wall in matching and (not fixed or shown.fold == 0)
        if fixed and wall - previous > dt.timedelta(minutes=1):  # the clock jumped: a gap of wall times
            gap = (previous + dt.timedelta(minutes=k) for k in range(1, (wall - previous) // dt.timedelta(minutes=1)))
            runs_now = runs_now or any(w in matching for w in gap)
        if runs_now:
            found.append(t)
        previous = wall
        t += dt.timedelta(minutes=1)
    return found


ZONES = ["America/New_York", "Europe/London", "Europe/Dublin", "Australia/Lord_Howe", "America/Santiago",
         "Pacific/Chatham", "America/St_Johns", "Asia/Kolkata", "Etc/UTC"]
EXPRESSIONS = ["*/30 * * * *", "30 2 * * *", "0 0/2 * * *", "0 */2 * * *", "45 1 * * *", "*/20 1-3 * * *",
               "0,30 2 * * *", "59 23 * * *", "0 * * * *", "15 0-4 * * 0", "*/7 2 * * *", "10 3 * * *"]


def transitions(zone: ZoneInfo, year: int) -> list[dt.datetime]:
    """The instants (UTC, to the hour) around which the zone's offset changes in ``year``."""
    found, t = [], dt.datetime(year, 1, 1, tzinfo=UTC)
    while t.year == year:
        if t.astimezone(zone).utcoffset() != (t + dt.timedelta(hours=1)).astimezone(zone).utcoffset():
            found.append(t)
        t += dt.timedelta(hours=1)
    return found


@pytest.mark.parametrize("zone_name", ZONES)
def test_next_run_agrees_with_a_minute_by_minute_oracle_around_every_transition(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    rand = random.Random(zone_name)
    windows = [(t - dt.timedelta(hours=30), t + dt.timedelta(hours=30)) for t in transitions(zone, 2025)]
    windows = windows or [(dt.datetime(2025, 3, 1, tzinfo=UTC), dt.datetime(2025, 3, 3, tzinfo=UTC))]
    for (start, end), cron in itertools.product(windows, EXPRESSIONS):
        expected = oracle(cron, zone, start, end)
        got, at = [], start - dt.timedelta(microseconds=1)
        while True:
            at = next_run(cron, at, zone)
            if at >= end:
                break
            got.append(at)
        assert got == expected, (zone_name, cron, start)
        # From arbitrary instants (on a run, between runs, in either pass of a repeated hour) too.
        for _ in range(20):
            after = start + dt.timedelta(seconds=rand.randrange(int((end - start).total_seconds()) - 7200))
            want = next((t for t in expected if t > after), None)
            if want is not None:
                assert next_run(cron, after, zone) == want, (zone_name, cron, after)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("cron", ["", "x", "* * *", "61 * * * *", "* 24 * * *", "@fortnightly", "H * * * *"])
def test_an_expression_croniter_refuses_is_an_invalid_cron_error(cron: str) -> None:
    with pytest.raises(InvalidCronError, match="croniter accepts") as caught:
        next_run(cron, dt.datetime(2030, 1, 1, tzinfo=UTC))
    assert isinstance(caught.value, ValueError)
    assert "such as '*/5 * * * *'" in str(caught.value)


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 1 1 * * 2020"])
def test_an_expression_without_a_run_is_refused(cron: str) -> None:
    with pytest.raises(InvalidCronError, match="has no run"):
        next_run(cron, dt.datetime(2030, 1, 1, tzinfo=UTC))


def test_the_last_run_of_a_bounded_expression_is_found() -> None:
    assert next_run("0 0 1 1 * * 2031", dt.datetime(2030, 6, 1, tzinfo=UTC)) == dt.datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "localtime"])
def test_an_unknown_zone_is_an_invalid_cron_error(zone: str) -> None:
    with pytest.raises(InvalidCronError, match=r"zone|localtime") as caught:
        next_run("* * * * *", dt.datetime(2030, 1, 1, tzinfo=UTC), zone)
    assert isinstance(caught.value, ValueError)


def test_zone_forms() -> None:
    assert as_zone("Europe/Paris") == ZoneInfo("Europe/Paris")
    assert as_zone(ZoneInfo("Europe/Paris")).key == "Europe/Paris"
    assert as_zone(UTC).key == "Etc/UTC"
    with pytest.raises(TypeError, match="IANA"):
        as_zone(dt.timezone(dt.timedelta(hours=2)))
    with pytest.raises(TypeError, match="cron expression is a str"):
        next_run(None, dt.datetime(2030, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


def test_without_croniter_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)  # what an uninstalled package looks like to import
    with pytest.raises(MissingDependencyError, match=r"pip install 'chancy-lite\[cron\]'") as caught:
        croniter_module()
    assert isinstance(caught.value, ImportError)


def test_the_package_and_the_plugin_module_import_without_croniter() -> None:
    code = (
        "import sys; sys.modules['croniter'] = None\n"
        "import chancy_lite, chancy_lite.plugins.cron as cron\n"
        "from chancy_lite.errors import MissingDependencyError\n"
        "try:\n    cron.Cron()\nexcept MissingDependencyError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'chancy-lite[cron]'" in result.stdout

"""Per-key limits on a Job: the builders, what they refuse (and say to do instead), and the packed form."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest

from chancy_lite import Job, job
from chancy_lite.errors import InvalidJobError

BASE = Job(func="tests.jobs.noop")


def test_with_concurrency_and_with_rate_limit_share_one_key() -> None:
    limited = BASE.with_concurrency(2, key="customer-42").with_rate_limit(10, 60)
    assert (limited.limit_key, limited.concurrency_max) == ("customer-42", 2)
    assert (limited.rate_limit, limited.rate_limit_window) == (10, 60)
    again = BASE.with_rate_limit(5, 0.5, key="k").with_concurrency(1, key="k")  # the same key given twice is fine
    assert (again.limit_key, again.concurrency_max, again.rate_limit, again.rate_limit_window) == ("k", 1, 5, 0.5)
    assert BASE.with_concurrency(3, "k").concurrency_max == 3  # key may be positional, as in Chancy PR #50
    moved = BASE.with_concurrency(2, key="a").with_concurrency(4, key="b")  # nothing else used "a": the key moves
    assert (moved.limit_key, moved.concurrency_max) == ("b", 4)
    assert BASE.limit_key is None and BASE.concurrency_max is None and BASE.rate_limit is None


@job(queue="mail", limit_key="smtp", concurrency_max=4)
def send() -> None:
    """A job declared with per-key limits."""


def test_the_decorator_and_the_constructor_take_the_fields() -> None:
    assert (send.job.limit_key, send.job.concurrency_max) == ("smtp", 4)  # type: ignore[attr-defined]
    pushed = send.job.with_kwargs().with_concurrency(1, key="customer-7")  # type: ignore[attr-defined]
    assert (pushed.limit_key, pushed.concurrency_max, pushed.queue) == ("customer-7", 1, "mail")
    built = Job(func="a.b", limit_key="k", rate_limit=3, rate_limit_window=1)
    assert (built.rate_limit, built.rate_limit_window) == (3, 1)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"limit_key": "k", "concurrency_max": 0}, "concurrency_max must be an integer >= 1"),
        ({"limit_key": "k", "concurrency_max": True}, "concurrency_max must be an integer >= 1"),
        ({"limit_key": "k", "concurrency_max": 1.5}, "concurrency_max must be an integer >= 1"),
        ({"limit_key": "k", "concurrency_max": 2**62}, "concurrency_max must be an integer >= 1"),
        ({"limit_key": "k", "rate_limit": 3}, "rate_limit and rate_limit_window go together"),
        ({"limit_key": "k", "rate_limit_window": 3}, "rate_limit and rate_limit_window go together"),
        ({"limit_key": "k", "rate_limit": 0, "rate_limit_window": 1}, "rate_limit must be an integer >= 1"),
        ({"limit_key": "k", "rate_limit": "3", "rate_limit_window": 1}, "rate_limit must be an integer >= 1"),
        ({"limit_key": "k", "rate_limit": 3, "rate_limit_window": 0}, "rate_limit_window must be a number of seconds"),
        ({"limit_key": "k", "rate_limit": 3, "rate_limit_window": 0.0001}, "from 0.001 to 1e+09"),
        ({"limit_key": "k", "rate_limit": 3, "rate_limit_window": math.nan}, "rate_limit_window must be"),
        ({"limit_key": "k", "rate_limit": 3, "rate_limit_window": math.inf}, "rate_limit_window must be"),
        ({"limit_key": "k", "rate_limit": 3, "rate_limit_window": "60"}, "rate_limit_window must be"),
        ({"limit_key": "", "concurrency_max": 1}, "limit_key must be a non-empty string"),
        ({"limit_key": 42, "concurrency_max": 1}, "limit_key must be a non-empty string"),
        ({"limit_key": "k\udcff", "concurrency_max": 1}, "limit_key must be a non-empty string"),
        ({"limit_key": "k"}, "limit_key 'k' limits nothing: add .with_concurrency(n)"),
        ({"concurrency_max": 2}, "apply per limit_key: give the key"),
        ({"rate_limit": 2, "rate_limit_window": 1}, "apply per limit_key: give the key"),
    ],
)
def test_bad_limits_are_refused_with_what_to_do(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidJobError, match=re.escape(says)):
        Job(func="a.b", **fields)


def test_the_builders_refuse_a_missing_or_second_key() -> None:
    with pytest.raises(InvalidJobError, match=r"with_concurrency\(\) needs a key"):
        BASE.with_concurrency(2)
    with pytest.raises(InvalidJobError, match=r"with_rate_limit\(\) needs a key"):
        BASE.with_rate_limit(2, 1)
    with pytest.raises(InvalidJobError, match="one limit key for its concurrency cap and rate limit"):
        BASE.with_concurrency(2, key="a").with_rate_limit(5, 1, key="b")
    with pytest.raises(InvalidJobError, match="one limit key"):
        BASE.with_rate_limit(5, 1, key="a").with_concurrency(2, key="b")
    with pytest.raises(InvalidJobError, match="concurrency_max must be an integer >= 1"):
        BASE.with_concurrency(0, key="a")
    with pytest.raises(InvalidJobError, match="rate_limit_window must be"):
        BASE.with_rate_limit(1, -1, key="a")


def test_pack_round_trips_the_limits_and_leaves_unkeyed_packs_as_they_were() -> None:
    limited = BASE.with_concurrency(2, key="c").with_rate_limit(7, 1.5)
    unpacked = Job.unpack(limited.pack())
    assert unpacked == dataclasses.replace(limited, scheduled_at=unpacked.scheduled_at)  # (a float time in packs)
    assert (unpacked.limit_key, unpacked.concurrency_max, unpacked.rate_limit, unpacked.rate_limit_window) == (
        "c", 2, 7, 1.5
    )
    assert not {"lk", "lc", "lr", "lw"} & set(BASE.pack())

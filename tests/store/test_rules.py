"""chancy_lite.rule: every rule means the same compiled to SQL (on a real file) and evaluated on a job in
Python; Reprioritize raises each matching waiting job once per pass."""

from __future__ import annotations

import datetime as dt

import pytest

from chancy_lite import Chancy, Job, QueuedJob
from chancy_lite.plugins.pruner import Pruner
from chancy_lite.plugins.reprioritize import Reprioritize
from chancy_lite.rule import Condition
from chancy_lite.rule import JobRules as R
from chancy_lite.testing import Clock, drain
from tests.conftest import START


@pytest.fixture
def app(clocked: Chancy) -> Chancy:
    return clocked


def sample(app: Chancy, clock: Clock) -> list[QueuedJob]:
    refs = []
    for i, (queue, func, priority) in enumerate([
        ("bulk", "tests.jobs.noop", 0), ("mail", "tests.jobs.fail", 5), ("bulk", "tests.jobs.fail", -1),
        ("reports_10", "tests.jobs.noop", 2), ("Mail", "tests.jobs.noop", 9), ("reportsx10", "tests.jobs.noop", 1),
    ]):
        refs.append(app.sync_push(Job(func=func, queue=queue, priority=priority,
                                      scheduled_at=START + dt.timedelta(minutes=i))))
        clock.advance(seconds=30)
    for queue in ("bulk", "mail"):
        clock.advance(minutes=10)
        drain(app, queue)
    return app.sync_get_jobs(refs)


RULES: list[Condition] = [
    R.Queue() == "bulk",
    R.Queue() != "bulk",
    R.Queue().contains("MAIL"),
    R.Queue().contains("s_1"),  # _ is literal here, not LIKE's any-character
    R.Queue().ilike("rep%"),
    R.Job() == "tests.jobs.fail",
    R.State() == QueuedJob.State.FAILED,
    (R.Age() > 1230) & (R.State() == "pending"),
    R.Age() <= 1230,
    R.Priority() >= 2,
    R.Attempts() == 1,
    R.ScheduledAt() < START + dt.timedelta(minutes=2),
    R.CreatedAt() >= START + dt.timedelta(seconds=60),
    (R.Queue() == "bulk") | (R.Priority() > 8),
    (R.Queue() == "bulk") & ((R.State() == "succeeded") | (R.Priority() < 0)),
]


@pytest.mark.parametrize("rule", RULES, ids=[repr(r.rule) for r in RULES])
def test_sql_and_python_agree(app: Chancy, clock: Clock, rule: Condition) -> None:
    jobs = sample(app, clock)
    in_python = [str(j.id) for j in jobs if rule.matches(j, clock())]
    in_sql = app.sync_run_store(app.store.matching_job_ids, rule.rule, now=app.now())
    assert in_sql == in_python


def test_the_rules_catch_what_they_say(app: Chancy, clock: Clock) -> None:
    jobs = {j.queue + ":" + j.func.rsplit(".", 1)[1]: j for j in sample(app, clock)}
    assert {k for k, j in jobs.items() if R.Queue().contains("MAIL").matches(j, clock())} == {"mail:fail", "Mail:noop"}
    assert {k for k, j in jobs.items() if R.Queue().contains("s_1").matches(j, clock())} == {"reports_10:noop"}
    assert Pruner.Rules is R and Reprioritize.Rules is R


def test_reprioritize_raises_each_waiting_match_once_per_pass(app: Chancy, clock: Clock) -> None:
    waiting = [app.sync_push(Job(func="tests.jobs.noop", queue="q", scheduled_at=START + dt.timedelta(hours=1)))
               for _ in range(25)]
    other = app.sync_push(Job(func="tests.jobs.noop", queue="other", scheduled_at=START + dt.timedelta(hours=1)))
    done = app.sync_push(Job(func="tests.jobs.noop", queue="q"))
    drain(app, "q")  # only `done` is due
    plugin = Reprioritize(R.Queue() == "q", priority_increase=2, batch_size=4)
    assert plugin.reprioritize_jobs(app) == 25  # 7 transactions of at most 4, each job once
    assert plugin.reprioritize_jobs(app) == 25
    priorities = {str(j.id): j.priority for j in app.sync_get_jobs([*waiting, other, done])}
    assert {priorities[r.identifier] for r in waiting} == {4}
    assert priorities[other.identifier] == 0 and priorities[done.identifier] == 0  # not matching; finished
    with pytest.raises(ValueError, match="batch_size"):
        Reprioritize(R.Queue() == "q", batch_size=0)


def test_values_a_field_cannot_compare_with_are_refused_at_once() -> None:
    for make in (lambda: R.Queue() == None, lambda: R.Priority() == "5", lambda: R.Priority() < 2**63,  # noqa: E711
                 lambda: R.Age() > START, lambda: R.Age().contains("1"), lambda: R.CreatedAt() < 5,
                 lambda: R.Attempts() == True):  # noqa: E712
        with pytest.raises(ValueError, match=r"compare|holds"):
            make()


@pytest.mark.parametrize("rule", [R.Job().ilike("tests.jobs.[n]oop"), R.Job().ilike("%[%"),
                                  R.Queue().contains("\u212a"), R.Age() > 90, R.Age() == 90, R.Age() >= 90.0000001],
                         ids=["bracket", "bracket-inside", "kelvin", "age>", "age==", "age>=frac"])
def test_edge_cases_mean_the_same_in_sql_and_python(app: Chancy, clock: Clock, rule: Condition) -> None:
    jobs = [app.sync_get_job(app.sync_push(Job(func="tests.jobs.noop", queue=q))) for q in ("a", "bulk", "k")]
    clock.advance(seconds=90)  # every job is exactly 90 s old
    in_python = [str(j.id) for j in jobs if j is not None and rule.matches(j, clock())]
    assert app.sync_run_store(app.store.matching_job_ids, rule.rule, now=app.now()) == in_python


def test_misbuilt_rules_and_plugins_get_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"job state"):
        R.State() == "bogus"  # noqa: B015
    with pytest.raises(TypeError, match=r"parenthesise"):
        (R.Age() > 1) & 5  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"parenthesise"):
        R.Age() > 1 & R.Queue() == "bulk"  # type: ignore[operator]  # noqa: B015
    for plugin in (Pruner, Reprioritize):
        with pytest.raises(TypeError, match=r"takes a rule"):
            plugin(5)  # type: ignore[arg-type]

"""The data model: Job, QueuedJob, Limit, Reference, @job and Queue, and how they round-trip through the file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import pytest

from chancy_lite import Chancy, Job, Limit, Queue, QueuedJob, Reference, job
from chancy_lite.errors import InvalidJobError
from chancy_lite.utils import UTC, chancy_uuid

MIN_UTC = dt.datetime.min.replace(tzinfo=UTC)


def double(*, x: int) -> int:
    return 2 * x


@job(queue="reports", priority=7, max_attempts=3, unique_key="nightly", meta={"owner": "ops"})
def nightly_report(*, day: str = "today") -> str:
    return f"report for {day}"


@job
def plain_decorated() -> str:
    return "plain"


def full_job(**overrides: Any) -> Job:
    """A job with every field away from its default."""
    fields: dict[str, Any] = {
        "func": "tests.unit.test_job_model.double",
        "queue": "crunch",
        "kwargs": {"x": 21, "nested": {"list": [1, "two", None, 3.5], "flag": True}},
        "limits": [Limit(Limit.Type.TIME, 30), Limit(Limit.Type.MEMORY, 256 * 1024 * 1024)],
        "priority": -5,
        "max_attempts": 4,
        "scheduled_at": dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        "unique_key": "crunch-1",
        "meta": {"retry_settings": {"backoff": 2}, "tags": ["a", "b"]},
    }
    fields.update(overrides)
    return Job(**fields)


# ------------------------------------------------------------------- Job


def test_job_defaults() -> None:
    before = dt.datetime.now(UTC)
    j = Job(func="tests.unit.test_job_model.double")
    after = dt.datetime.now(UTC)
    assert (j.queue, j.kwargs, j.limits, j.priority, j.max_attempts, j.unique_key, j.meta) == (
        "default", {}, [], 0, 1, None, {},
    )
    assert before <= j.scheduled_at <= after
    assert j.scheduled_at.tzinfo is not None


def test_job_is_frozen_and_keyword_only() -> None:
    j = full_job()
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.priority = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Job("tests.unit.test_job_model.double")  # type: ignore[misc]


def test_from_func_uses_the_import_path() -> None:
    j = Job.from_func(double, kwargs={"x": 1}, priority=2)
    assert j.func == "tests.unit.test_job_model.double"
    assert j.kwargs == {"x": 1}
    assert j.priority == 2
    assert Job(func=double).func == "tests.unit.test_job_model.double"  # type: ignore[arg-type]




def test_pack_unpack_round_trip() -> None:
    j = full_job()
    packed = j.pack()
    assert set(packed) == {"f", "k", "p", "a", "s", "l", "u", "q", "m"}
    assert packed["s"] == j.scheduled_at.timestamp()
    assert Job.unpack(packed) == j
    # The packed form is what cron and workflows store as JSON.
    assert Job.unpack(json.loads(json.dumps(packed))) == j


def test_pack_unpack_round_trip_of_defaults_and_extremes() -> None:
    j = Job(func="tests.unit.test_job_model.double", scheduled_at=MIN_UTC)
    assert Job.unpack(j.pack()) == j
    minimal = Job.unpack({"f": "tests.unit.test_job_model.double", "s": None})
    assert (minimal.queue, minimal.max_attempts, minimal.kwargs) == ("default", 1, {})


BUILDERS: list[tuple[str, tuple[Any, ...], dict[str, Any], str, Any]] = [
    ("with_priority", (9,), {}, "priority", 9),
    ("with_max_attempts", (7,), {}, "max_attempts", 7),
    ("with_scheduled_at", (MIN_UTC,), {}, "scheduled_at", MIN_UTC),
    ("with_limits", ([Limit(Limit.Type.TIME, 1.5)],), {}, "limits", [Limit(Limit.Type.TIME, 1.5)]),
    ("with_kwargs", (), {"x": 5, "y": "z"}, "kwargs", {"x": 5, "y": "z"}),
    ("with_unique_key", ("other-key",), {}, "unique_key", "other-key"),
    ("with_unique_key", (None,), {}, "unique_key", None),
    ("with_queue", ("elsewhere",), {}, "queue", "elsewhere"),
    ("with_meta", ({"m": 1},), {}, "meta", {"m": 1}),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "field", "expected"), BUILDERS)
def test_with_builders_return_a_new_job(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], field: str, expected: Any
) -> None:
    original = full_job()
    snapshot = dataclasses.asdict(original)
    built = getattr(original, method)(*args, **kwargs)
    assert isinstance(built, Job)
    assert built is not original
    assert getattr(built, field) == expected
    # Every other field is carried over; the original is untouched.
    for name, value in snapshot.items():
        if name != field:
            assert dataclasses.asdict(built)[name] == value, name
    assert dataclasses.asdict(original) == snapshot


def test_with_builders_validate() -> None:
    with pytest.raises(ValueError):
        full_job().with_max_attempts(0)
    with pytest.raises(ValueError):
        full_job().with_queue("has space")


def test_limit_validation_and_lookup() -> None:
    j = full_job()
    assert j.limit(Limit.Type.TIME) == 30
    assert j.limit(Limit.Type.MEMORY) == 256 * 1024 * 1024
    assert Job(func="a.b").limit(Limit.Type.TIME) is None
    assert Limit("time", 2).type_ is Limit.Type.TIME  # type: ignore[arg-type]
    for bad in (0, -1, True, "10"):
        with pytest.raises(ValueError):
            Limit(Limit.Type.TIME, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Limit("cpu", 1)  # type: ignore[arg-type]
    for kind, too_big in ((Limit.Type.TIME, 1e300), (Limit.Type.TIME, float("inf")), (Limit.Type.MEMORY, 2**63)):
        with pytest.raises(InvalidJobError, match="at most"):
            Limit(kind, too_big)  # a timer or rlimit would overflow in the worker


# ------------------------------------------------------------------ @job


def test_job_decorator_keeps_the_function_callable() -> None:
    assert nightly_report(day="monday") == "report for monday"
    assert plain_decorated() == "plain"
    attached = nightly_report.job  # type: ignore[attr-defined]
    assert isinstance(attached, Job)
    assert attached.func == "tests.unit.test_job_model.nightly_report"
    assert (attached.queue, attached.priority, attached.max_attempts, attached.unique_key, attached.meta) == (
        "reports", 7, 3, "nightly", {"owner": "ops"},
    )
    assert plain_decorated.job == Job(  # type: ignore[attr-defined]
        func="tests.unit.test_job_model.plain_decorated", scheduled_at=plain_decorated.job.scheduled_at  # type: ignore[attr-defined]
    )


def test_decorated_function_is_accepted_wherever_a_job_is(chancy: Chancy) -> None:
    ref = chancy.sync_push(nightly_report)
    stored = chancy.sync_get_job(ref)
    assert stored is not None
    assert (stored.func, stored.queue, stored.priority, stored.max_attempts, stored.unique_key, stored.meta) == (
        "tests.unit.test_job_model.nightly_report", "reports", 7, 3, "nightly", {"owner": "ops"},
    )
    with chancy.transaction() as conn:
        assert chancy.sync_push_ex(conn, plain_decorated) != ref
        assert len(chancy.sync_push_many_ex(conn, [plain_decorated, plain_decorated])) == 2
    assert [len(b) for b in chancy.sync_push_many([plain_decorated, nightly_report])] == [2]
    assert len(chancy.sync_list_jobs(func="tests.unit.test_job_model.plain_decorated")) == 4


# ------------------------------------------------------------- Reference


def test_reference_equality_and_hashing() -> None:
    assert isinstance(chancy_uuid(), uuid.UUID) and chancy_uuid().version == 7  # as Chancy 0.26
    ident = str(chancy_uuid())
    ref = Reference(ident)
    assert ref == Reference(ident)
    assert ref == ident
    assert ident == ref
    assert ref == uuid.UUID(ident)
    assert Reference(uuid.UUID(ident)) == ref
    assert ref.identifier == ident == str(ref)
    assert ref != Reference(chancy_uuid())
    assert ref != chancy_uuid() and ref != str(chancy_uuid())
    assert ref != 42
    assert ref != None  # noqa: E711
    assert hash(ref) == hash(Reference(ident))
    assert len({ref, Reference(ident), Reference(uuid.UUID(ident))}) == 1
    assert {ref: "found"}[Reference(ident)] == "found"
    assert ident in {ref}
    assert repr(ref) == f"Reference({ident!r})"


# ------------------------------------------------------------- QueuedJob


def test_queued_job_is_immutable_except_meta(chancy: Chancy) -> None:
    ref = chancy.sync_push(full_job(meta={"k": "v"}))
    context = chancy.sync_get_job(ref)
    assert isinstance(context, QueuedJob)
    for name, value in (("state", QueuedJob.State.SUCCEEDED), ("attempts", 5), ("id", "x"), ("meta", {})):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(context, name, value)
    context.meta["progress"] = 50
    context.meta["k"] = "changed"
    assert context.meta == {"k": "changed", "progress": 50}
    assert context.state is QueuedJob.State.PENDING


def test_queued_job_states_are_lower_case_names() -> None:
    assert [s.value for s in QueuedJob.State] == [s.name.lower() for s in QueuedJob.State]
    assert {s.value for s in QueuedJob.State} == {"pending", "running", "retrying", "succeeded", "failed"}


# --------------------------------------------------------- through the file


def test_every_job_field_round_trips_through_the_file(chancy: Chancy) -> None:
    pushed = full_job()
    ref = chancy.sync_push(pushed)
    stored = chancy.sync_get_job(ref)
    assert stored is not None
    for field in dataclasses.fields(Job):
        assert getattr(stored, field.name) == getattr(pushed, field.name), field.name
    assert stored.id == ref
    assert (stored.state, stored.attempts, stored.errors) == (QueuedJob.State.PENDING, 0, [])
    assert stored.started_at is None and stored.completed_at is None


@pytest.mark.parametrize(
    "scheduled_at",
    [
        MIN_UTC,
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        dt.datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.datetime.max.replace(tzinfo=UTC),
    ],
    ids=["min", "before-epoch", "micros", "offset", "max"],
)
def test_scheduled_at_round_trips_exactly(chancy: Chancy, scheduled_at: dt.datetime) -> None:
    stored = chancy.sync_get_job(chancy.sync_push(full_job(scheduled_at=scheduled_at)))
    assert stored is not None
    assert stored.scheduled_at == scheduled_at
    assert stored.scheduled_at.microsecond == scheduled_at.astimezone(UTC).microsecond
    assert stored.scheduled_at.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "now", [dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), MIN_UTC], ids=["micros", "min"]
)
def test_created_and_completed_at_round_trip_exactly(db_path: str, now: dt.datetime) -> None:
    with Chancy(db_path, clock=lambda: now) as app:
        app.sync_migrate()
        ref = app.sync_push(full_job())
        app.sync_cancel_job(ref)
        stored = app.sync_get_job(ref)
    assert stored is not None
    assert stored.created_at == now
    assert stored.completed_at == now


def test_created_at_is_the_push_time(chancy: Chancy) -> None:
    before = dt.datetime.now(UTC)
    stored = chancy.sync_get_job(chancy.sync_push(full_job()))
    after = dt.datetime.now(UTC)
    assert stored is not None and stored.created_at is not None
    assert before - dt.timedelta(milliseconds=1) <= stored.created_at <= after + dt.timedelta(milliseconds=1)


# ------------------------------------------------------------------ ids


def test_ids_are_uuid7_in_push_order(chancy: Chancy) -> None:
    jobs = [Job(func="tests.unit.test_job_model.double", kwargs={"x": i}) for i in range(2000)]
    refs = [ref for batch in chancy.sync_push_many(jobs, batch_size=500) for ref in batch]
    refs += [chancy.sync_push(Job(func="tests.unit.test_job_model.double", kwargs={"x": i})) for i in range(2000, 2100)]
    ids = [r.identifier for r in refs]
    assert len(set(ids)) == 2100
    assert ids == sorted(ids)
    stored = chancy.sync_get_jobs(refs)
    assert [j.kwargs["x"] for j in sorted(stored, key=lambda j: j.id)] == list(range(2100))
    now_ms = dt.datetime.now(UTC).timestamp() * 1000
    for ident in ids:
        parsed = uuid.UUID(ident)
        assert str(parsed) == ident
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert now_ms - 60_000 < parsed.int >> 80 <= now_ms + 1  # the 48-bit millisecond timestamp


def test_chancy_uuid_is_monotonic_within_a_millisecond() -> None:
    ids = [chancy_uuid() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


# ----------------------------------------------------------------- Queue


def full_queue(name: str = "everything") -> Queue:
    """A queue with every field away from its default."""
    return Queue(
        name,
        concurrency=3,
        tags={"^hostname=web-\\d+$", "gpu", "python=3\\.1[1-3].*"},
        state=Queue.State.PAUSED,
        executor=Chancy.Executor.Threaded,
        executor_options={"maximum_jobs_per_worker": 10, "nested": {"a": [1, 2]}},
        polling_interval=0.25,
        rate_limit=10,
        rate_limit_window=60,
        resume_at=MIN_UTC,
        eager_polling=True,
    )


def test_queue_defaults() -> None:
    q = Queue("q")
    assert (q.concurrency, q.tags, q.state, q.executor, q.executor_options) == (
        None, {".*"}, Queue.State.ACTIVE, Chancy.Executor.Process.value, {},
    )
    assert (q.polling_interval, q.rate_limit, q.rate_limit_window, q.resume_at, q.eager_polling) == (
        5, None, None, None, False,
    )


def test_queue_round_trips_through_the_file(chancy: Chancy) -> None:
    declared = full_queue()
    assert all(
        getattr(declared, f.name) != getattr(Queue("x"), f.name) for f in dataclasses.fields(Queue) if f.name != "name"
    )
    returned = chancy.sync_declare(declared)
    fetched = chancy.sync_get_queue("everything")
    assert returned == declared
    assert fetched == declared
    assert isinstance(fetched.tags, set)
    assert fetched.resume_at == MIN_UTC
    assert fetched.executor == "chancy_lite.executors.thread.ThreadedExecutor"
    assert chancy.sync_get_all_queues() == [declared]


def test_queue_with_defaults_round_trips(chancy: Chancy) -> None:
    chancy.sync_declare(Queue("plain", tags=[".*", "x"]))  # type: ignore[arg-type]
    fetched = chancy.sync_get_queue("plain")
    assert fetched == Queue("plain", tags={".*", "x"})
    assert fetched.polling_interval == 5 and isinstance(fetched.polling_interval, int)


def test_queue_resume_at_keeps_microseconds_and_instant(chancy: Chancy) -> None:
    resume_at = dt.datetime(2040, 6, 7, 8, 9, 10, 654321, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    chancy.sync_declare(Queue("later", state=Queue.State.PAUSED, resume_at=resume_at))
    assert chancy.sync_get_queue("later").resume_at == resume_at


def test_pack_round_trips_the_ends_of_the_calendar() -> None:
    for when in (dt.datetime.max.replace(tzinfo=UTC), dt.datetime(1970, 1, 1, tzinfo=UTC)):
        assert Job.unpack(Job(func="a.b", scheduled_at=when).pack()).scheduled_at == when

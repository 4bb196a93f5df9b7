"""Fuzzing with hypothesis: whatever a caller passes as kwargs, meta, job fields, func path, queue name or
command-line arguments either works (the job round-trips exactly through push/get_job, and a worker runs it) or
raises a clear error (``chancy_lite.errors``, ``ValueError``, ``TypeError``). Never a crash, a corrupt row or a
stuck queue.

Each test uses one migrated database for all its examples; jobs are run with ``chancy_lite.testing.drain``
(the worker child's own claim/run/record code) on ``tests.jobs_faults.echo``, which copies its kwargs into meta.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from chancy_lite import Chancy, Job, Queue, QueuedJob
from chancy_lite.cli import main as cli_main
from chancy_lite.errors import ChancyError, InvalidJobError, InvalidQueueError, NotSerializableError
from chancy_lite.testing import drain
from chancy_lite.utils import MAX_JSON_DEPTH
from chancy_lite.worker import Worker
from tests.jobs_faults import ECHO_CONTEXT
from tests.worker_support import run_worker

SUCCEEDED, FAILED = QueuedJob.State.SUCCEEDED, QueuedJob.State.FAILED
CLEAR_ERRORS = (ChancyError, ValueError, TypeError)
ECHO = "tests.jobs_faults.echo"

FUZZ = settings(
    max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------ strategies

# Any code point, lone surrogates (text decoded from bad bytes) made common, and characters that matter to JSON.
CHARS = st.one_of(
    st.characters(exclude_categories=()),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
    st.sampled_from('\x00\n"\\{}[]\'é€😀'),
)
TEXT = st.text(CHARS, max_size=20)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(),  # NaN, ±inf and -0.0 included
    TEXT,
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20
)
KWARGS = st.dictionaries(TEXT.filter(lambda key: key != ECHO_CONTEXT), JSON, max_size=5)
META = st.dictionaries(TEXT, JSON, max_size=5)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same JSON types all the way down (1, 1.0 and True differ; so do 0.0 and -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def non_finite(value: Any) -> bool:
    """Whether ``value`` holds a NaN or an infinity somewhere (JSON has no spelling for them)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(non_finite(v) for v in value.values())
    return False


def nest(depth: int, kind: str) -> Any:
    """A value ``depth`` lists (or objects) deep."""
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def unfinished(chancy: Chancy) -> dict[str, dict[str, int]]:
    """Queues with jobs still waiting or running: after a drain there must be none."""
    return {
        queue: states for queue, states in chancy.sync_count_jobs().items()
        if any(states.get(s, 0) for s in ("pending", "running", "retrying"))
    }


def push_or_refuse(chancy: Chancy, job_fields: dict[str, Any]) -> QueuedJob | Exception:
    """Push; on a refusal check it is one of ours and that nothing was written. Returns the stored job or the error."""
    before = sum(sum(states.values()) for states in chancy.sync_count_jobs().values())
    try:
        ref = chancy.sync_push(Job(**job_fields))
    except CLEAR_ERRORS as exc:
        assert str(exc)
        assert sum(sum(states.values()) for states in chancy.sync_count_jobs().values()) == before
        return exc
    stored = chancy.sync_get_job(ref)
    assert stored is not None and stored.state is QueuedJob.State.PENDING
    return stored


def run_one(chancy: Chancy, job: QueuedJob) -> QueuedJob:
    """Drain the job's queue; the job must be the one that ran, and end finished."""
    done = drain(chancy, job.queue)
    assert [j.id for j in done] == [job.id]
    assert not unfinished(chancy), "the drain left work behind"
    return done[0]


# ------------------------------------------------------------ kwargs and meta


@FUZZ
@given(kwargs=KWARGS, meta=META)
def test_kwargs_and_meta_of_any_json_shape_round_trip_or_are_refused(chancy: Chancy, kwargs: Any, meta: Any) -> None:
    stored = push_or_refuse(chancy, {"func": ECHO, "kwargs": kwargs, "meta": meta})
    if isinstance(stored, Exception):
        assert isinstance(stored, NotSerializableError), stored
        assert non_finite(kwargs) or non_finite(meta), f"refused valid JSON: {stored}"
        return
    assert not non_finite(kwargs) and not non_finite(meta), "NaN/inf must be refused: JSON cannot hold them"
    assert same(stored.kwargs, kwargs) and same(stored.meta, meta)
    done = run_one(chancy, stored)
    assert done.state is SUCCEEDED, done.errors
    expected = dict(meta)
    expected["echo"] = kwargs
    assert same(done.meta, expected)


@FUZZ
@given(
    depth=st.one_of(
        st.integers(1, 3000), st.integers(MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH + 1), st.integers(975, 1000)
    ),
    kind=st.sampled_from(["list", "object"]),
    where=st.sampled_from(["kwargs", "meta"]),
)
@example(depth=984, kind="list", where="kwargs")  # pushed fine before the depth bound, then never decoded again
def test_deep_nesting_works_or_is_refused_at_push_never_later(chancy: Chancy, depth: int, kind: str,
                                                              where: str) -> None:
    value = {"v": nest(depth, kind)}  # depth + 1 levels
    stored = push_or_refuse(chancy, {"func": ECHO, where: value})
    if isinstance(stored, Exception):
        assert isinstance(stored, NotSerializableError) and "deep" in str(stored), stored
        assert depth + 1 > MAX_JSON_DEPTH
        return
    assert depth + 1 <= MAX_JSON_DEPTH
    assert getattr(stored, where) == value  # (== rather than same(): same() recurses three frames per level)
    done = run_one(chancy, stored)
    if where == "meta" or depth + 2 <= MAX_JSON_DEPTH:
        assert done.state is SUCCEEDED, done.errors
        assert done.meta["echo"] == stored.kwargs
    else:  # the echo nests the kwargs one level deeper in meta, past the bound: the job fails and says why
        assert done.state is FAILED
        assert "meta could not be saved" in done.errors[-1]["traceback"]
        assert done.meta == {}


@settings(FUZZ, max_examples=6)
@given(
    char=CHARS, size=st.integers(900_000, 1_100_000), where=st.sampled_from(["kwargs", "meta", "key"]),
)
def test_megabyte_strings_round_trip(chancy: Chancy, char: str, size: int, where: str) -> None:
    text = char * size
    kwargs = {text: 1} if where == "key" else {"s": text} if where == "kwargs" else {}
    meta = {"s": text} if where == "meta" else {}
    stored = push_or_refuse(chancy, {"func": ECHO, "kwargs": kwargs, "meta": meta})
    assert isinstance(stored, QueuedJob), stored
    assert same(stored.kwargs, kwargs) and same(stored.meta, meta)
    done = run_one(chancy, stored)
    assert done.state is SUCCEEDED, done.errors
    assert same(done.meta["echo"], kwargs)


# ------------------------------------------------------------------ job fields


@FUZZ
@given(
    priority=st.one_of(st.integers(), st.integers(-5, 5), st.booleans(), st.floats(), st.none()),
    max_attempts=st.one_of(st.integers(), st.integers(-2, 3), st.booleans(), st.floats(), st.none()),
    unique_key=st.one_of(st.none(), TEXT, st.integers()),
)
@example(priority=0, max_attempts=2**64, unique_key=None)  # was an OverflowError from SQLite
@example(priority=0, max_attempts=1, unique_key="\udcff")  # was a UnicodeEncodeError from SQLite
def test_job_fields_work_or_are_refused(chancy: Chancy, priority: Any, max_attempts: Any, unique_key: Any) -> None:
    stored = push_or_refuse(
        chancy, {"func": ECHO, "priority": priority, "max_attempts": max_attempts, "unique_key": unique_key}
    )
    if isinstance(stored, Exception):
        assert isinstance(stored, InvalidJobError), repr(stored)
        return
    assert (stored.priority, stored.max_attempts, stored.unique_key) == (priority, max_attempts, unique_key)
    assert run_one(chancy, stored).state is SUCCEEDED


# ------------------------------------------------------------------ func paths

IDENTIFIERS = st.one_of(
    st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"),
    st.sampled_from(["tests", "jobs_faults", "echo", "__main__", "é"]),
    TEXT,
)
FUNC_PATHS = st.one_of(
    TEXT,
    st.lists(IDENTIFIERS, min_size=1, max_size=4).map(".".join),
    st.sampled_from([
        ECHO, "tests.jobs_faults", "tests.jobs_faults.ECHO_CONTEXT", "tests.jobs_faults.missing", "tests.jobs.noop",
        "nonexistent_fuzz_module.f", "__main__.f", "a..b", ".a.b", "a.b.", "a.b c", "a.b\n", "a", "",
    ]),
    st.integers(), st.none(),
)
# Functions a drain may call; anything else that exists is only pushed (a fuzzer must not call os.* functions).
CALLABLE = {ECHO, "tests.jobs.noop", "tests.jobs_faults", "tests.jobs_faults.ECHO_CONTEXT", "tests.jobs_faults.missing"}


@FUZZ
@given(func=FUNC_PATHS)
def test_odd_func_paths_are_refused_at_push_or_fail_clearly_in_the_worker(chancy: Chancy, func: Any) -> None:
    stored = push_or_refuse(chancy, {"func": func})
    if isinstance(stored, Exception):
        assert isinstance(stored, InvalidJobError), repr(stored)
        return
    assert stored.func == func
    top = func.split(".")[0]
    if func not in CALLABLE and importlib.util.find_spec(top) is not None:
        chancy.sync_purge_jobs([stored])
        return
    done = run_one(chancy, stored)
    if func in (ECHO, "tests.jobs.noop"):
        assert done.state is SUCCEEDED, done.errors
    else:  # not importable, or not callable: the job fails with the reason, and the queue goes on
        assert done.state is FAILED and done.errors and done.errors[0]["traceback"].strip()


# ------------------------------------------------------------------ queue names

QUEUE_NAMES = st.one_of(
    TEXT,
    st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,104}\Z"),
    st.sampled_from(["", " ", "-a", ".a", "a" * 100, "a" * 101, "../x", "a/b", "a~b", "é", "a b", "a\x00", "default"]),
    st.integers(), st.none(),
)


@FUZZ
@given(name=QUEUE_NAMES)
def test_queue_names_work_everywhere_or_are_refused_everywhere(chancy: Chancy, name: Any) -> None:
    try:
        queue = Queue(name, concurrency=1, polling_interval=60)
    except InvalidQueueError:
        with pytest.raises(InvalidJobError):
            Job(func=ECHO, queue=name)
        return
    assert chancy.sync_declare(queue, upsert=True) == queue
    assert chancy.sync_get_queue(name) == queue
    stored = push_or_refuse(chancy, {"func": ECHO, "queue": name, "kwargs": {"q": name}})
    assert isinstance(stored, QueuedJob) and stored.queue == name
    done = run_one(chancy, stored)
    assert done.state is SUCCEEDED and done.meta["echo"] == {"q": name}
    assert name in {q.name for q in chancy.sync_get_all_queues()}


NUMBERS = st.one_of(st.none(), st.integers(), st.integers(-2, 5), st.floats(), st.booleans())


@FUZZ
@given(concurrency=NUMBERS, polling=NUMBERS, rate_limit=NUMBERS, window=NUMBERS)
@example(concurrency=2**64, polling=5, rate_limit=None, window=None)  # was an OverflowError from SQLite
@example(concurrency=None, polling=5, rate_limit=2**64, window=1)
@example(concurrency=None, polling=1e300, rate_limit=None, window=None)  # a worker's select() would overflow
def test_queue_numbers_round_trip_or_are_refused(chancy: Chancy, concurrency: Any, polling: Any, rate_limit: Any,
                                                 window: Any) -> None:
    try:
        queue = Queue("fuzz", concurrency=concurrency, polling_interval=polling, rate_limit=rate_limit,
                      rate_limit_window=window)
    except InvalidQueueError:
        return
    assert chancy.sync_declare(queue, upsert=True) == queue
    assert chancy.sync_get_queue("fuzz") == queue


def test_a_queue_with_the_longest_valid_name_is_served_by_a_worker(chancy: Chancy) -> None:
    """A 100-character name makes the idle child's wake-up socket path too long to address: pushes must still
    reach the queue (through its supervisor), not get lost."""
    name = "q:" + "x" * 96 + ".-"
    chancy.sync_declare(Queue(name, concurrency=1, polling_interval=60))

    async def body(worker: Worker) -> QueuedJob | None:
        ref = await chancy.push(Job(func=ECHO, queue=name, kwargs={"n": 1}))
        return await chancy.wait_for_job(ref, timeout=20)

    done = run_worker(chancy, body)
    assert done is not None and done.state is SUCCEEDED and done.meta["echo"] == {"n": 1}


# ---------------------------------------------------- job output that cannot be stored


@pytest.mark.parametrize(
    ("func", "kwargs", "why"),
    [("tests.jobs_faults.deep_meta", {"depth": MAX_JSON_DEPTH + 5}, "nested more than"),
     ("tests.jobs_faults.circular_meta", {}, "Circular reference")],
    ids=["too-deep", "circular"],
)
def test_meta_a_job_cannot_store_fails_the_job_clearly_and_the_queue_goes_on(
    chancy: Chancy, func: str, kwargs: dict[str, Any], why: str
) -> None:
    bad = chancy.sync_push(Job(func=func, kwargs=kwargs, meta={"before": 1}))
    after = chancy.sync_push(Job(func=ECHO, kwargs={"after": True}))
    done = {str(j.id): j for j in drain(chancy)}
    assert not unfinished(chancy)
    failed = done[bad.identifier]
    assert failed.state is FAILED and failed.meta == {"before": 1}  # the stored meta was kept
    assert "meta could not be saved" in failed.errors[0]["traceback"] and why in failed.errors[0]["traceback"]
    assert done[after.identifier].state is SUCCEEDED


def test_meta_a_job_cannot_store_does_not_kill_its_worker_child(chancy: Chancy) -> None:
    chancy.sync_declare(Queue("default", concurrency=1, polling_interval=60), upsert=True)

    async def body(worker: Worker) -> tuple[list[QueuedJob], set[int]]:
        children = {p.pid for p in worker.executors["default"].processes.values()}  # type: ignore[attr-defined]
        refs = [
            await chancy.push(Job(func="tests.jobs_faults.circular_meta")),
            await chancy.push(Job(func="tests.jobs_faults.deep_meta", kwargs={"depth": 5000})),
            await chancy.push(Job(func=ECHO, kwargs={"x": 1})),
        ]
        jobs = await chancy.wait_for_jobs(refs, timeout=20)
        return jobs, children ^ {p.pid for p in worker.executors["default"].processes.values()}  # type: ignore

    (circular, deep, fine), replaced = run_worker(chancy, body)
    assert replaced == set(), "the child died"
    assert circular.state is FAILED and "Circular reference" in circular.errors[0]["traceback"]
    assert deep.state is FAILED and "meta could not be saved" in deep.errors[0]["traceback"]
    assert fine.state is SUCCEEDED and fine.meta == {"echo": {"x": 1}}


# ------------------------------------------------------------------ the command line

COMMANDS = [
    [], ["migrate"], ["check-migrations"], ["status"], ["queue"], ["queue", "list"], ["queue", "declare"],
    ["queue", "push"], ["queue", "pause"], ["queue", "resume"], ["queue", "delete"], ["job"], ["job", "list"],
    ["job", "get"], ["job", "cancel"], ["job", "retry"], ["job", "purge"], ["worker"], ["worker", "web"], ["bogus"],
]
OPTIONS = [
    "-v", "-vv", "--verbose", "-h", "--help", "--version", "--concurrency", "--tags", "--executor",
    "--polling-interval", "--rate-limit", "--rate-limit-window", "--paused", "--upsert", "--resume-in", "--keep-jobs",
    "--queue", "--kwargs", "--meta", "--priority", "--max-attempts", "--unique-key", "--delay", "--state", "--func",
    "--limit", "--json", "--to-version", "--worker-id", "--", "-", "--bogus",
]
WORDS = [
    "0", "1", "-1", "3", "99999999999999999999", "-99999999999999999999", "1e309", "1e300", "1e10", "nan", "inf",
    "-0", "0.5", "default", "fuzzq", "pending", "failed", "succeeded", "process", "threaded", "async", "x.y",
    "tests.jobs.noop", ECHO, ".*", "(", "[", "@job", "{}", "[]", '{"a": 1}', '{"a": NaN}', '{"a": 1e999}', "{bad",
    '"\\ud800"', '{"\\udfff": "\\ud800"}', "a" * 101,
]
# --db and --app only ever take these (never generated text: it could name any file, or any module to import).
DBS = ["@main", "rel.db", "", "missing/x.db", "notadb.txt", "sqlite:///rel2.db", ":memory:", "sqlite://", "@dir"]
APPS = ["os:path", "nonexistent_fuzz_module:app", "tests.jobs:noop", "tests", ":", "x:", "tests.jobs_faults:ECHO"]


def _free_text(token: str) -> bool:
    """Generated words must not turn into --db/--app (by abbreviation) nor start a worker."""
    return not token.startswith(("--a", "--d")) and token != "start"


TOKENS = st.one_of(
    st.sampled_from(OPTIONS).map(lambda t: [t]),
    st.sampled_from(WORDS).map(lambda t: [t]),
    TEXT.filter(_free_text).map(lambda t: [t]),
    st.one_of(JSON, KWARGS).map(lambda v: [json.dumps(v)]),
    st.sampled_from(DBS).map(lambda d: ["--db", d]),
    st.sampled_from(DBS).map(lambda d: [f"--db={d}"]),
    st.sampled_from(APPS).map(lambda a: ["--app", a]),
)
ANY_ARGVS = st.tuples(st.booleans(), st.sampled_from(COMMANDS), st.lists(TOKENS, max_size=8)).map(
    lambda t: (["--db", "@main"] if t[0] else []) + t[1] + [word for token in t[2] for word in token]
)
# Well-formed commands with generated values, to get past the parser: command -> (positionals, options, flags).
SPECS: dict[tuple[str, ...], tuple[int, list[str], list[str]]] = {
    ("migrate",): (0, ["--to-version"], []),
    ("check-migrations",): (0, [], []),
    ("status",): (0, [], []),
    ("queue", "list"): (0, [], []),
    ("queue", "declare"): (1, ["--concurrency", "--tags", "--executor", "--polling-interval", "--rate-limit",
                               "--rate-limit-window"], ["--paused", "--upsert"]),
    ("queue", "push"): (1, ["--queue", "--kwargs", "--meta", "--priority", "--max-attempts", "--unique-key",
                            "--delay"], []),
    ("queue", "pause"): (1, ["--resume-in"], []),
    ("queue", "resume"): (1, [], []),
    ("queue", "delete"): (1, [], ["--keep-jobs"]),
    ("job", "list"): (0, ["--state", "--queue", "--func", "--limit"], []),
    ("job", "get"): (1, [], ["--json"]),
    ("job", "cancel"): (1, [], []),
    ("job", "retry"): (2, [], []),
    ("job", "purge"): (2, [], []),
}
VALUES = st.one_of(  # mostly plausible values, to reach the commands' own code
    st.sampled_from(WORDS), st.sampled_from(WORDS), TEXT.filter(_free_text), st.one_of(JSON, KWARGS).map(json.dumps),
)


def _well_formed(spec: tuple[tuple[str, ...], tuple[int, list[str], list[str]]]) -> st.SearchStrategy[list[str]]:
    command, (positionals, options, flags) = spec
    return st.tuples(
        st.lists(VALUES, min_size=min(positionals, 1), max_size=positionals),
        st.lists(st.tuples(st.sampled_from(options), VALUES), max_size=3) if options else st.just([]),
        st.lists(st.sampled_from(flags), max_size=2) if flags else st.just([]),
    ).map(lambda t: [*command, *t[0], *(word for pair in t[1] for word in pair), *t[2]])


WELL_FORMED_ARGVS = st.sampled_from(sorted(SPECS.items())).flatmap(_well_formed)
ARGVS = st.one_of(ANY_ARGVS, WELL_FORMED_ARGVS, WELL_FORMED_ARGVS)


@contextlib.contextmanager
def cli_sandbox(tmp: Path, main_db: str) -> Iterator[None]:
    """A scratch working directory, $CHANCY_LITE_DB set, and logging and sys.path restored afterwards."""
    cwd, env, path = os.getcwd(), os.environ.get("CHANCY_LITE_DB"), list(sys.path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    os.chdir(tmp)
    os.environ["CHANCY_LITE_DB"] = main_db
    try:
        yield
    finally:
        os.chdir(cwd)
        if env is None:
            os.environ.pop("CHANCY_LITE_DB", None)
        else:
            os.environ["CHANCY_LITE_DB"] = env
        sys.path[:] = path
        root.handlers[:] = handlers
        root.setLevel(level)


def run_cli(argv: list[str]) -> tuple[Any, str, str]:
    """``main(argv)`` with stdout and stderr encoded as a UTF-8 terminal would (stdout strict, stderr lenient)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(argv)
    out.flush()
    err.flush()
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()  # type: ignore[attr-defined]


@settings(FUZZ, max_examples=200)
@given(argv=ARGVS)
@example(argv=["--db", "@main", "job", "list", "--limit", "99999999999999999999"])
@example(argv=["queue", "push", ECHO, "--max-attempts", "99999999999999999999"])
@example(argv=["queue", "push", ECHO, "--delay", "1e300"])
@example(argv=["queue", "pause", "default", "--resume-in", "1e300"])
@example(argv=["queue", "declare", "q", "--concurrency", "99999999999999999999"])
@example(argv=["queue", "declare", "q", "--polling-interval", "1e300"])
@example(argv=["queue", "push", ECHO, "--unique-key", "\udcff"])
@example(argv=["job", "get", "\udcff"])
def test_the_cli_returns_an_exit_status_for_any_arguments(tmp_path: Path, argv: list[str]) -> None:
    main_db = str(tmp_path / "main.db")
    with Chancy(main_db) as app:
        app.sync_migrate()
        job_id = str(app.sync_push(Job(func=ECHO, queue="fuzzq")))
    (tmp_path / "notadb.txt").write_text("not a database\n")
    (tmp_path / "adir").mkdir(exist_ok=True)
    places = {"@main": main_db, "@dir": str(tmp_path / "adir"), "@job": job_id}
    argv = [places.get(word, word) for word in argv]
    argv = [f"--db={places.get(word[5:], word[5:])}" if word.startswith("--db=") else word for word in argv]
    assume(not ({"worker", "start"} <= set(argv)))
    with cli_sandbox(tmp_path, main_db):
        code, out, err = run_cli(argv)
    assert type(code) is int and code in (0, 1, 2), (code, out, err)
    event(f"exit status {code}")
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    if code == 2:  # a mistake: one line saying so (after warnings, if any)
        errors = [line for line in lines if line.startswith("chancy-lite: error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], err
    if not {"-v", "-vv", "--verbose"} & set(argv):  # (verbose runs may log to stderr too)
        assert all(line.startswith("chancy-lite: ") for line in lines), err
    with Chancy(main_db) as app, app.connection() as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]

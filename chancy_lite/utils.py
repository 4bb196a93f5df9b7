"""Small helpers shared by every layer: ids, import paths, time and JSON."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, TypeVar, overload

UTC = dt.UTC
T = TypeVar("T")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

# --------------------------------------------------------------------------- ids

_id_lock = threading.Lock()
_last_ms = 0
_last_seq = 0
_SEQ_BITS = 74  # 12 bits of rand_a + 62 bits of rand_b in a UUIDv7
_random = random.Random(os.urandom(32))  # seeded per process; ids need uniqueness, not secrecy
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def chancy_uuid() -> uuid.UUID:
    """A new time-ordered id (a UUIDv7), as Chancy 0.26 (0.25 returned text). Job ids are these, as text.

    Ids made by one process sort in the order they were made, even within one
    millisecond: the 74 random bits act as a counter seeded at random each
    millisecond. Ids from different processes sort by their millisecond.
    """
    return uuid.UUID(chancy_uuids(1)[0])


def chancy_uuids(n: int) -> list[str]:
    """``n`` new time-ordered ids as text (``xxxxxxxx-xxxx-7xxx-…``), in order."""
    global _last_ms, _last_seq
    values = []
    with _id_lock:
        for _ in range(n):
            ms = time.time_ns() // 1_000_000
            if ms > _last_ms:
                _last_ms = ms
                # Leave headroom so the counter cannot overflow within the millisecond.
                _last_seq = _random.getrandbits(_SEQ_BITS - 2)
            else:
                _last_seq += 1 + _random.getrandbits(4)
                if _last_seq >> _SEQ_BITS:
                    _last_ms += 1
                    _last_seq = 0
            seq = _last_seq
            values.append((_last_ms << 80) | _VERSION | ((seq >> 62) << 64) | _VARIANT | (seq & _LOW62))
    ids = []
    for value in values:
        h = f"{value:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_LOW62 = (1 << 62) - 1


# ---------------------------------------------------------------- import paths


def importable_name(obj: Any) -> str:
    """The ``module.qualname`` path under which ``obj`` can be imported again.

    Raises ``chancy_lite.errors.InvalidJobError`` for lambdas, nested functions
    and objects defined in ``__main__`` of a script that a worker cannot import.
    """
    from chancy_lite.errors import InvalidJobError

    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname:
        raise InvalidJobError(f"{obj!r} has no module or qualified name; jobs must be module-level functions")
    if module == "__main__":
        # Run with `python -m package.module`: the module has a real, importable name.
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name and spec.name != "__main__":
            module = spec.name
    if "<lambda>" in qualname:
        raise InvalidJobError("a lambda cannot be a job: define the function with `def` at module level")
    if "<locals>" in qualname:
        raise InvalidJobError(
            f"{qualname} is defined inside another function; move it to module level so workers can import it"
        )
    return f"{module}.{qualname}"


def import_string(path: str) -> Any:
    """Import ``module.attr`` (nested attributes allowed) and return the object."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ImportError(f"{path!r} is not an import path of the form 'module.name'")
    parts = [attr]
    while True:
        try:
            obj: Any = importlib.import_module(module_name)
            break
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name):
                raise  # a missing module inside the user's code, not our path.
            module_name, _, head = module_name.rpartition(".")
            if not module_name:
                raise ImportError(f"cannot import {path!r}: no module found") from exc
            parts.append(head)
    for name in reversed(parts):
        try:
            obj = getattr(obj, name)
        except AttributeError as exc:
            raise ImportError(f"cannot import {path!r}: {obj!r} has no attribute {name!r}") from exc
    return obj


@contextlib.contextmanager
def timed_block() -> Iterator[Any]:
    """Measure a block: ``with timed_block() as t: ...; t.elapsed`` (seconds)."""

    class _Timer:
        start = time.perf_counter()
        elapsed = 0.0

    timer = _Timer()
    try:
        yield timer
    finally:
        timer.elapsed = time.perf_counter() - timer.start


# ------------------------------------------------------------------------ time


def is_text(value: str) -> bool:
    """Whether ``value`` can be stored or printed as UTF-8 (it holds no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def aware(value: dt.datetime) -> dt.datetime:
    """The one rule for every datetime a user passes (``scheduled_at``, ``resume_at``, ``Clock``, …).

    An aware datetime is kept as it is. A naive one is read as **local time**, Python's own convention
    (``datetime.timestamp()`` and ``datetime.astimezone()`` read naive values so), and converted to UTC:
    ``datetime.now() + timedelta(seconds=3)`` means three seconds from now in any ``TZ``. A naive value
    too close to the ends of the calendar to convert becomes ``datetime.min`` / ``datetime.max`` in UTC.
    """
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError, OSError):
        return (dt.datetime.max if value.year > 1970 else dt.datetime.min).replace(tzinfo=UTC)


def to_micros(value: dt.datetime) -> int:
    """Exact integer microseconds since the epoch (works down to datetime.min)."""
    delta = aware(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@overload
def from_micros(value: int) -> dt.datetime: ...
@overload
def from_micros(value: None) -> None: ...
@overload
def from_micros(value: int | None) -> dt.datetime | None: ...
def from_micros(value: int | None) -> dt.datetime | None:
    if value is None:
        return None
    return _EPOCH + dt.timedelta(microseconds=value)


def micros_now() -> int:
    return time.time_ns() // 1000


# ------------------------------------------------------------------------ JSON


def json_default(value: Any) -> Any:
    """What JSON cannot hold itself: a UUID as its text, a set or frozenset as a list (as Chancy 0.26's
    ``json_dumps``); anything else raises TypeError."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=json_default).encode

# Python's json decodes nested lists and objects recursively: a value nested nearly as deep as the encoder
# allows could be stored, then fail to decode in a worker or a reader further down the stack. Refuse it instead.
MAX_JSON_DEPTH = 256


def dump_json(value: Any, what: str) -> str:
    """Serialise to compact JSON or raise NotSerializableError naming ``what``."""
    from chancy_lite.errors import NotSerializableError

    try:
        text = _encode(value)
    except RecursionError:
        raise NotSerializableError(f"{what} is nested more than {MAX_JSON_DEPTH} lists or objects deep") from None
    except (TypeError, ValueError) as exc:
        raise NotSerializableError(f"{what} must be JSON-serialisable: {exc}") from None
    check_json_depth(text, value, what, NotSerializableError)
    return text


def check_json_depth(text: str, value: Any, what: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` if ``value`` (encoded as ``text``) nests lists and objects deeper than MAX_JSON_DEPTH."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # the common case: too few brackets to nest that deep
    depth, level = 0, [value]
    while level:
        level = [v for v in level if isinstance(v, dict | list | tuple)]
        if level:
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise error(f"{what} is nested more than {MAX_JSON_DEPTH} lists or objects deep")
            level = [child for v in level for child in (v.values() if isinstance(v, dict) else v)]



Clock = Callable[[], dt.datetime]


# ------------------------------------------------------- helpers Chancy users import (chancy.utils)


def json_dumps(value: Any, **options: Any) -> str:
    """JSON text of ``value``, as Chancy 0.26's ``json_dumps``: sets and frozensets as lists, and (here also)
    UUIDs as their text; ``TypeError`` for any other object JSON cannot hold. ``options`` go to ``json.dumps``."""
    return json.dumps(value, default=json_default, **options)


def chunked(iterable: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to ``size`` items of ``iterable``, in order (as Chancy's ``chunked``)."""
    if not (isinstance(size, int) and size >= 1):
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    chunk: list[T] = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def lock_order_key(unique_key: str | None) -> str:
    """The order in which rows are written, as Chancy 0.26 (``unique_key or ""``). SQLite takes one lock for the
    whole file, so chancy_lite needs no such order; it is here for code that imports it."""
    return unique_key or ""


async def sleep(seconds: float, *, events: Iterable[asyncio.Event] = ()) -> bool:
    """Sleep ``seconds``, or less if one of ``events`` is set meanwhile; returns whether an event ended it."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    if not waits:
        await asyncio.sleep(seconds)
        return False
    try:
        done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        for wait in waits:
            wait.cancel()


class TaskManager:
    """Named asyncio tasks started together and stopped together (as Chancy's ``TaskManager``)."""

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task[Any], str] = {}

    def add(self, name: str, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start ``coroutine`` as a task named ``name``; it is forgotten once it ends."""
        task = asyncio.create_task(coroutine, name=name)
        self.tasks[task] = name
        task.add_done_callback(lambda t: self.tasks.pop(t, None))
        return task

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    async def wait_for_shutdown(self) -> None:
        """Wait for every task to end; re-raises the first error a task raised (a cancelled task is not one)."""
        while self.tasks:
            results = await asyncio.gather(*list(self.tasks), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    raise result

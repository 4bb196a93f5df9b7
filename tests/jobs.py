"""Job functions for the worker tests (importable by spawned children)."""

from __future__ import annotations

import os
import time

from chancy_lite import QueuedJob


def noop() -> None:
    pass


def record(*, path: str, value: str = "x") -> None:
    with open(path, "a") as fh:
        fh.write(value + "\n")


def fail(*, message: str = "boom") -> None:
    raise ValueError(message)


def record_n(*, n: int, context: QueuedJob) -> None:
    context.meta["n"] = n


def cancel_myself(*, db: str, context: QueuedJob) -> None:
    """Cancel this very job while it runs, then return normally (its result must not be written)."""
    from chancy_lite import Chancy

    with Chancy(db) as app:
        app.sync_cancel_job(context)


def sleep(*, seconds: float) -> None:
    time.sleep(seconds)


def with_context(*, job_info: QueuedJob, other: int = 0) -> None:
    job_info.meta["seen_id"] = job_info.id
    job_info.meta["attempts"] = job_info.attempts


def die() -> None:
    os._exit(3)


async def async_sleep(*, seconds: float) -> str:
    import asyncio

    await asyncio.sleep(seconds)
    return "ok"


# ------------------------------------------------------------ worker tests
# (this module has `from __future__ import annotations`; tests/jobs_plain.py is its twin without it)

def ctx_context(*, context: QueuedJob) -> None:
    context.meta["injected"] = context.id


def ctx_job_info(*, job_info: QueuedJob) -> None:
    job_info.meta["injected"] = job_info.id


def ctx_ctx(*, ctx: QueuedJob) -> None:
    ctx.meta["injected"] = ctx.id


def ctx_generic(*, items: list[str], ctx: QueuedJob, extra: dict[str, list[int]] | None = None) -> None:
    ctx.meta["items"] = items
    ctx.meta["injected"] = ctx.id


def ctx_unresolvable(*, ctx: QueuedJob, other: NoSuchName | None = None) -> None:  # noqa: F821
    """``typing.get_type_hints`` fails on this signature; the context must still be found."""
    ctx.meta["injected"] = ctx.id


def ctx_positional(context: QueuedJob | None = None, *, ctx: QueuedJob) -> None:
    """A positional-or-keyword parameter annotated QueuedJob is not injected."""
    ctx.meta["positional"] = None if context is None else context.id
    ctx.meta["injected"] = ctx.id


def ctx_frozen(*, ctx: QueuedJob) -> None:
    """Assigning attributes of the context raises; its meta stays writable."""
    import dataclasses

    for attribute, value in (("priority", 99), ("meta", {}), ("id", "other")):
        try:
            setattr(ctx, attribute, value)
        except dataclasses.FrozenInstanceError:
            ctx.meta[f"frozen_{attribute}"] = True
        else:
            ctx.meta[f"frozen_{attribute}"] = False


def meta_then_raise(*, ctx: QueuedJob) -> None:
    started = time.monotonic()
    try:
        raise RuntimeError("the job failed")
    finally:
        ctx.meta["status"] = "error"
        ctx.meta["duration"] = time.monotonic() - started


def stamp(*, path: str, value: str = "") -> None:
    """Append 'pid time value' to ``path`` when the job starts."""
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()} {time.time():.6f} {value}\n")


def pid_then_sleep(*, path: str, seconds: float) -> None:
    """Write this child's pid to ``path``, then sleep."""
    stamp(path=path)
    time.sleep(seconds)


def hang_first_attempt(*, path: str, ctx: QueuedJob) -> None:
    """Write the pid; hang on the first attempt only."""
    stamp(path=path, value=str(ctx.attempts))
    if ctx.attempts == 0:
        time.sleep(120)


def hang_once(*, path: str) -> None:
    """Write the pid; hang the first time (the file did not exist yet), return at once after."""
    first = not os.path.exists(path)
    stamp(path=path)
    if first:
        time.sleep(120)


def ignore_timeout(*, path: str, seconds: float = 30) -> None:
    """Catch the TimeoutError of a TIME limit and keep going."""
    try:
        time.sleep(seconds)
    except TimeoutError:
        stamp(path=path, value="caught")
        time.sleep(seconds)


def block_signals(*, path: str, seconds: float = 30) -> None:
    """Block every signal a TIME limit could use, then sleep (like C code that never returns to Python)."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2})
    stamp(path=path, value="blocked")
    time.sleep(seconds)


def allocate(*, mb: int, path: str, reserve_only: bool = False) -> None:
    """Allocate ``mb`` megabytes, recording the pid and the outcome. ``reserve_only`` maps the
    memory without touching it (cheap, yet counted against the address-space limit)."""
    import mmap

    try:
        size = mb * 1024 * 1024
        if reserve_only:
            try:
                mmap.mmap(-1, size).close()
            except OSError as exc:
                raise MemoryError(str(exc)) from exc
        else:
            bytearray(size)
    except MemoryError:
        stamp(path=path, value="MemoryError")
        raise
    stamp(path=path, value=f"ok {size}")


def cancellable(*, path: str, seconds: float = 60) -> None:
    """Write 'started'; on cancellation write 'cancelled' and re-raise."""
    import asyncio

    stamp(path=path, value="started")
    try:
        time.sleep(seconds)
    except asyncio.CancelledError:
        stamp(path=path, value="cancelled")
        raise


async def async_cancellable(*, path: str, seconds: float = 60) -> None:
    import asyncio

    stamp(path=path, value="started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        stamp(path=path, value="cancelled")
        raise


async def async_with_context(*, ctx: QueuedJob) -> None:
    import asyncio

    await asyncio.sleep(0)
    ctx.meta["injected"] = ctx.id


def thread_name(*, ctx: QueuedJob) -> None:
    import threading

    ctx.meta["thread"] = threading.current_thread().name
    ctx.meta["pid"] = os.getpid()


def sleep_in_steps(*, seconds: float, path: str | None = None) -> None:
    """Sleep in short steps (Python code runs between them, so a thread can be interrupted)."""
    import asyncio

    if path:
        stamp(path=path, value="started")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except (asyncio.CancelledError, TimeoutError) as exc:
        if path:
            stamp(path=path, value=type(exc).__name__)
        raise


def exit_job(*, code: int = 0) -> None:
    """``sys.exit`` inside a job: a failure of the job, not of its worker."""
    import sys

    sys.exit(code)


def interrupt_job() -> None:
    raise KeyboardInterrupt


def unserialisable_meta(*, ctx: QueuedJob) -> None:
    ctx.meta["when"] = {1, 2}  # a set: stored as a list (as Chancy 0.26)
    ctx.meta["how"] = complex(1, 2)  # not JSON: stored as its repr
    ctx.meta["ok"] = True


def checkpointed_steps(*, seconds: float, path: str, ctx: QueuedJob) -> None:
    """Work in short steps, calling ``ctx.checkpoint()`` between them (the cooperative TIME limit)."""
    stamp(path=path, value=f"started {ctx.time_remaining is not None}")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(0.01)
            ctx.checkpoint()
            stamp(path=path, value="step")
    except TimeoutError as exc:
        stamp(path=path, value=f"{type(exc).__name__} {ctx.time_remaining}")
        raise


def overrun_without_checkpoint(*, seconds: float, path: str, ctx: QueuedJob) -> str:
    """Block past the TIME limit without calling checkpoint(): the run fails when it returns."""
    time.sleep(seconds)
    stamp(path=path, value="returned")
    return "late result"


def progress_then_wait(*, path: str, steps: int, context: QueuedJob) -> None:
    """Report ``steps`` steps as fast as it can, then wait (up to 30 s) for ``path`` to exist."""
    for i in range(steps):
        context.progress(i + 1, steps, f"step {i + 1}")
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)


async def async_progress_then_wait(*, path: str, steps: int, context: QueuedJob) -> None:
    import asyncio

    for i in range(steps):
        context.progress(i + 1, steps, f"step {i + 1}")
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def fail_until(*, attempts: int, path: str | None = None, ctx: QueuedJob) -> None:
    """Fail until ``attempts`` earlier attempts were made (so attempt number ``attempts + 1`` succeeds)."""
    if path is not None:
        stamp(path=path, value=str(ctx.attempts))
    if ctx.attempts < attempts:
        raise RuntimeError(f"attempt {ctx.attempts + 1} fails on purpose")

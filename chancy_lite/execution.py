"""Turning a claimed job into a call: executor capabilities, the function, its kwargs, the injected context.

Every executor prepares a job here, where the job runs (a child process, a pool thread, the supervisor's event
loop), so a job an executor cannot honour fails the same way everywhere: as a failed attempt whose error says
what to change. The rules and their order follow Chancy 0.26 (``chancy/executors/base.py``,
``prepare_job_for_execution``).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from chancy_lite.job import Limit, QueuedJob
from chancy_lite.utils import import_string

T = TypeVar("T")


class Capability(enum.IntFlag):
    """What an executor can do for a job (``Executor.Capability`` in Chancy 0.26)."""

    NONE = 0
    SYNC_JOBS = enum.auto()  # runs plain functions
    ASYNC_JOBS = enum.auto()  # runs ``async def`` functions
    CANCELLATION = enum.auto()  # interrupts a running job on cancel_job
    AUTOMATIC_TIME_LIMITS = enum.auto()  # interrupts a job at its TIME limit by itself
    COOPERATIVE_TIME_LIMITS = enum.auto()  # TIME limits through QueuedJob.checkpoint() / time_remaining
    MEMORY_LIMITS = enum.auto()  # enforces MEMORY limits


# The flags as plain ints for the hot path: ``int & IntFlag`` calls the enum's reflected operator (microseconds).
_SYNC, _ASYNC_JOBS = int(Capability.SYNC_JOBS), int(Capability.ASYNC_JOBS)
_AUTO_TIME, _COOP_TIME = int(Capability.AUTOMATIC_TIME_LIMITS), int(Capability.COOPERATIVE_TIME_LIMITS)
_MEMORY = int(Capability.MEMORY_LIMITS)


class JobAbortedError(Exception):
    """Carries a ``SystemExit``/``KeyboardInterrupt``/``GeneratorExit`` raised by a job out of its coroutine.

    asyncio lets those escape the event loop; a job's exception must stay that job's failure. The original is
    the ``__cause__`` and is what the job's error records.
    """


# ----------------------------------------------------------- the job function

_PARAMS: dict[Callable[..., Any], tuple[str, ...]] = {}
_FUNCS: dict[str, Callable[..., Any]] = {}


def context_parameters(func: Callable[..., Any]) -> tuple[str, ...]:
    """Names of the keyword-only parameters annotated ``QueuedJob`` (or a subclass). Cached per function.

    String annotations (``from __future__ import annotations``) are resolved with ``typing.get_type_hints``;
    one that cannot be resolved counts when its last dotted part is ``QueuedJob``.
    """
    cached = _PARAMS.get(func)
    if cached is not None:
        return cached
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        names: tuple[str, ...] = ()
    else:
        try:
            hints = typing.get_type_hints(func)
        except Exception:
            hints = {}
        names = tuple(
            name
            for name, param in signature.parameters.items()
            if param.kind is inspect.Parameter.KEYWORD_ONLY and _is_context(hints.get(name, param.annotation))
        )
    _PARAMS[func] = names
    return names


def _is_context(annotation: Any) -> bool:
    if isinstance(annotation, str):  # an unresolvable string annotation: judge by name
        return annotation.rsplit(".", 1)[-1].strip("'\" ") == "QueuedJob"
    return inspect.isclass(annotation) and issubclass(annotation, QueuedJob)


def check_allowed(path: str, allowed: tuple[str, ...] | None) -> None:
    """Refuse (``PermissionError``) a job function outside the worker's ``allowed_modules``, if it has them."""
    if allowed is not None and not any(path == m or path.startswith(m + ".") for m in allowed):
        raise PermissionError(
            f"{path} is not in this worker's allowed_modules ({', '.join(allowed)}); the job was refused"
        )


def resolve(path: str) -> Callable[..., Any]:
    """Import the job function ``path`` (cached)."""
    func = _FUNCS.get(path)
    if func is None:
        func = import_string(path)
        if not callable(func):
            raise TypeError(f"{path} is not callable")
        _FUNCS[path] = func
    return func


_ASYNC: dict[Callable[..., Any], bool] = {}


def is_coroutine_function(func: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, cached per function."""
    known = _ASYNC.get(func)
    if known is None:
        known = _ASYNC[func] = inspect.iscoroutinefunction(func)
    return known


def function_and_kwargs(job: QueuedJob) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The job's function and a copy of its kwargs with the context injected where annotated."""
    func = resolve(job.func)
    kwargs = dict(job.kwargs)
    for name in context_parameters(func):
        kwargs[name] = job
    return func, kwargs


def prepare(
    job: QueuedJob,
    capabilities: Capability | int,
    get_function_and_kwargs: Callable[[QueuedJob], tuple[Callable[..., Any], dict[str, Any]]],
    executor_name: str,
) -> tuple[QueuedJob, Callable[..., Any], dict[str, Any]]:
    """Check the job against what the executor can do, then resolve its call. Returns (job, func, kwargs).

    Raises ``ValueError`` (a failed attempt, as in Chancy 0.26) for a MEMORY limit on an executor without
    memory limits, a TIME limit on one with neither automatic nor cooperative limits, a function kind the
    executor cannot run, and a cooperative TIME limit on a function without a ``QueuedJob`` context parameter.
    """
    caps = int(capabilities)  # plain int arithmetic: enum flag operations cost microseconds on this hot path
    cooperative = False
    if job.limits:
        if job.limit(Limit.Type.MEMORY) and not caps & _MEMORY:
            raise ValueError(
                f"{executor_name} does not support memory limits: run jobs with a MEMORY limit on the Process "
                "executor"
            )
        time_limit = job.limit(Limit.Type.TIME)
        cooperative = bool(time_limit) and not caps & _AUTO_TIME
        if cooperative:
            if not caps & _COOP_TIME:
                raise ValueError(f"{executor_name} does not support time limits")
            job = job._with_time_limit(float(time_limit or 0))
    func, kwargs = get_function_and_kwargs(job)
    is_async = is_coroutine_function(func)
    if is_async and not caps & _ASYNC_JOBS:
        raise ValueError(f"{executor_name} does not support asynchronous jobs: {job.func} is `async def`")
    if not is_async and not caps & _SYNC:
        raise ValueError(
            f"{executor_name} does not support synchronous jobs: {job.func} is a plain function; make it "
            "`async def` or run it on the Process or Threaded executor"
        )
    if cooperative and not any(value is job for value in kwargs.values()):
        raise ValueError(
            f"{job.func} has a TIME limit, which {executor_name} enforces cooperatively: give the function a "
            "keyword-only parameter annotated QueuedJob and call its checkpoint() between steps (or awaits)"
        )
    return job, func, kwargs


async def guarded(awaitable: Awaitable[T]) -> T:
    """Await a job's coroutine so that a ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit`` it raises
    stays inside the job (asyncio would let it escape the event loop) as a ``JobAbortedError``."""
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
        raise JobAbortedError(f"the job raised {type(exc).__name__}({exc})") from exc


async def limited(awaitable: Awaitable[T], seconds: float) -> T:
    """Await a job's coroutine under its TIME limit: ``TimeoutError`` saying so once ``seconds`` pass (a
    ``TimeoutError`` the job raises itself goes through as it is)."""
    try:
        async with asyncio.timeout(seconds) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise TimeoutError(f"the job exceeded its time limit of {seconds:g} s") from None
        raise


def original(error: BaseException) -> BaseException:
    """The exception a job raised, unwrapped from ``JobAbortedError``."""
    if isinstance(error, JobAbortedError) and error.__cause__ is not None:
        return error.__cause__
    return error

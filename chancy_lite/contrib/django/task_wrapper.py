"""The job functions a Django task runs under, on a chancy_lite worker (Chancy 0.26's ``task_wrapper``, the
same keyword arguments, so an exported Django task runs on Chancy's wrapper too after renaming the func path).

The worker's child imports this module; with ``DJANGO_SETTINGS_MODULE`` set it runs ``django.setup()`` first.
The task's return value goes to ``context.meta["_django_return_value"]`` (JSON), which the worker saves with
the job when it succeeds.
"""

from __future__ import annotations

import os
from typing import Any

from chancy_lite.job import QueuedJob
from chancy_lite.utils import import_string

RESULT_KEY = "_django_return_value"


def _setup() -> None:
    import django
    from django.apps import apps

    if not apps.ready and os.environ.get("DJANGO_SETTINGS_MODULE"):
        django.setup()


def _call_args(context: QueuedJob, task_path: str, args: list[Any], kwargs: dict[str, Any],
               takes_context: bool) -> tuple[Any, list[Any]]:
    _setup()
    from chancy_lite.contrib.django.backend import result_of
    from chancy_lite.contrib.django.compat import Task, TaskContext

    target = import_string(task_path)
    func = target.func if isinstance(target, Task) else target
    if takes_context:
        task = target if isinstance(target, Task) else None
        return func, [TaskContext(task_result=result_of(context, task, "default")), *args]
    return func, list(args)


def django_task_executor(*, _task_path: str, _args: list[Any], _kwargs: dict[str, Any],
                         _takes_context: bool = False, _store_result: bool = True, context: QueuedJob) -> None:
    func, args = _call_args(context, _task_path, _args, _kwargs, _takes_context)
    value = func(*args, **_kwargs)
    if _store_result:
        context.meta[RESULT_KEY] = value


async def async_django_task_executor(*, _task_path: str, _args: list[Any], _kwargs: dict[str, Any],
                                     _takes_context: bool = False, _store_result: bool = True,
                                     context: QueuedJob) -> None:
    func, args = _call_args(context, _task_path, _args, _kwargs, _takes_context)
    value = await func(*args, **_kwargs)
    if _store_result:
        context.meta[RESULT_KEY] = value

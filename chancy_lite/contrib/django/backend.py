"""A Django Tasks backend that stores tasks as chancy_lite jobs in one SQLite file (Chancy 0.26's
``ChancyBackend``, without Postgres).

Settings::

    TASKS = {"default": {
        "BACKEND": "chancy_lite.contrib.django.backend.ChancyLiteBackend",
        "QUEUES": ["default"],                  # Django's allowed queue names (the worker command serves them)
        "OPTIONS": {"path": "jobs.db",          # the queue file (required)
                    "queue": "default",         # the queue of a task without queue_name
                    "store_results": True},     # keep return values (in the job's meta) for get_result()
    }}

Any other option goes to ``chancy_lite.Chancy(path, **options)`` (``prefix``, ``busy_timeout``, ...).

``enqueue`` pushes one job (``max_attempts=1``: Django tasks are not retried) with the task's priority and
``run_after``; ``get_result(id)`` reads it back as a ``TaskResult`` (``TaskResultDoesNotExist`` for an unknown
id). Run the tasks with ``python manage.py chancy_lite_worker``.
"""

from __future__ import annotations

import datetime as dt
import inspect
import threading
from typing import Any

from chancy_lite.app import Chancy
from chancy_lite.contrib.django.compat import (
    BaseTaskBackend,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from chancy_lite.contrib.django.task_wrapper import RESULT_KEY
from chancy_lite.job import Job, QueuedJob
from chancy_lite.utils import import_string

SYNC_WRAPPER = "chancy_lite.contrib.django.task_wrapper.django_task_executor"
ASYNC_WRAPPER = "chancy_lite.contrib.django.task_wrapper.async_django_task_executor"

_STATUS = {
    QueuedJob.State.PENDING: TaskResultStatus.READY,
    QueuedJob.State.RETRYING: TaskResultStatus.READY,
    QueuedJob.State.RUNNING: TaskResultStatus.RUNNING,
    QueuedJob.State.FAILED: TaskResultStatus.FAILED,
    QueuedJob.State.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
}


class ChancyLiteBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(params.get("OPTIONS", {}))
        if "path" not in options:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS'] needs 'path', the chancy_lite queue file")
        self.path = str(options.pop("path"))
        self.default_queue = str(options.pop("queue", "default"))
        self.store_results = bool(options.pop("store_results", True))
        self.chancy_options = options
        self._chancy: Chancy | None = None
        self._lock = threading.Lock()

    @property
    def chancy(self) -> Chancy:
        """The backend's ``Chancy`` (created on first use; one connection per thread)."""
        with self._lock:
            if self._chancy is None:
                self._chancy = Chancy(self.path, **self.chancy_options)
            return self._chancy

    def job_for(self, task: Task, args: list[Any], kwargs: dict[str, Any]) -> Job:
        """The chancy_lite job that runs ``task(*args, **kwargs)``."""
        func = task.func
        return Job(
            func=ASYNC_WRAPPER if inspect.iscoroutinefunction(func) else SYNC_WRAPPER,
            queue=task.queue_name or self.default_queue,
            priority=task.priority,
            scheduled_at=task.run_after or dt.datetime.now(dt.UTC),
            max_attempts=1,
            kwargs={"_task_path": f"{task.module_path}", "_args": list(args), "_kwargs": dict(kwargs),
                    "_takes_context": task.takes_context, "_store_result": self.store_results},
        )

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Push the task; returns a READY ``TaskResult`` whose ``id`` is the job id (text)."""
        self.validate_task(task)
        ref = self.chancy.sync_push(self.job_for(task, list(args), dict(kwargs)))
        job = self.chancy.sync_get_job(ref)
        assert job is not None
        return result_of(job, task, self.alias)

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result as stored now; ``TaskResultDoesNotExist`` for an unknown or malformed id."""
        try:
            job = self.chancy.sync_get_job(result_id)
        except (ValueError, TypeError):
            job = None
        if job is None or job.func not in (SYNC_WRAPPER, ASYNC_WRAPPER):
            raise TaskResultDoesNotExist(result_id)
        return result_of(job, import_string(job.kwargs["_task_path"]), self.alias)

    def close(self) -> None:
        if self._chancy is not None:
            self._chancy.close()
            self._chancy = None


def result_of(job: QueuedJob, task: Task | None, alias: str) -> TaskResult:
    """A Django ``TaskResult`` for a job (status mapped; one ``TaskError`` per failed attempt; the return value
    from the job's meta; ``attempts`` counts the attempts made, the running one included)."""
    result = TaskResult(
        task=task, id=str(job.id), status=_STATUS[job.state], enqueued_at=job.created_at,
        started_at=job.started_at, finished_at=job.completed_at, last_attempted_at=job.started_at,
        args=list(job.kwargs.get("_args", [])), kwargs=dict(job.kwargs.get("_kwargs", {})), backend=alias,
        errors=[TaskError(exception_class_path="builtins.Exception", traceback=str(e.get("traceback", "")))
                for e in job.errors],
        worker_ids=[str(job.queue)] * (job.attempts + (job.state == QueuedJob.State.RUNNING)),
    )
    object.__setattr__(result, "_return_value", job.meta.get(RESULT_KEY))
    return result

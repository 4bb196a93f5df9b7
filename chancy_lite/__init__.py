"""chancy_lite: a durable background-job queue in one SQLite file, with Chancy's API.

The public names are imported on first use, so that a worker child, which
needs only the claim/run/record path, does not pay for the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The data model is light and is imported here (this also keeps the name ``job`` the decorator, not the module).
from chancy_lite.job import Job, Limit, QueuedJob, Reference, job
from chancy_lite.queue import Queue

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker

__all__ = ["Chancy", "Job", "Limit", "Queue", "QueuedJob", "Reference", "Worker", "job"]
__version__ = "0.1.0"

_WHERE = {"Chancy": "chancy_lite.app", "Worker": "chancy_lite.worker"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'chancy_lite' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

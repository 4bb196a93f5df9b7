"""Jobs for the template tests: modules a template preloads, and jobs that report where they were imported."""

from __future__ import annotations

import os

from chancy_lite import QueuedJob

#: The process that imported this module: the template when it preloaded it, else the child that ran a job.
IMPORTED_BY = os.getpid()


def where(*, context: QueuedJob) -> None:
    """Records its process, its parent, its process group and which process imported its module."""
    context.meta.update(pid=os.getpid(), ppid=os.getppid(), pgid=os.getpgrp(), imported_by=IMPORTED_BY)


def at_exit(*, path: str) -> None:
    """Registers an exit handler that writes ``path``: a child leaving after its last job must run it."""
    import atexit

    def write() -> None:
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))

    atexit.register(write)

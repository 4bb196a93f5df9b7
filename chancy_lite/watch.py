"""``chancy-lite watch``: what a file's workers are doing now, refreshed every second.

Running jobs with their progress (``QueuedJob.progress``), how many jobs wait and run, the jobs finished per
second over the last ``WINDOW`` seconds, and the newest failures with their messages. Every figure comes from an
index (waiting, running and finished jobs each have one), so a refresh costs the same with millions of finished
jobs in the file. In a terminal it draws with `rich <https://rich.readthedocs.io>`_ (``pip install
'chancy-lite[cli]'``); piped, or without rich, it prints plain text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from chancy_lite.job import QueuedJob
from chancy_lite.outcome import error_summary
from chancy_lite.utils import from_micros

if TYPE_CHECKING:
    from chancy_lite.app import Chancy

#: Seconds over which throughput is measured.
WINDOW = 10.0


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One look at a file: counts, the running jobs (longest-running first) and the newest failures."""

    taken_at: dt.datetime
    waiting: int
    running: int
    per_second: float  # jobs finished per second over the last WINDOW seconds
    jobs: list[QueuedJob]
    failures: list[QueuedJob]


def take(chancy: Chancy, *, limit: int = 20, failures: int = 5) -> Snapshot:
    """A snapshot of ``chancy``'s file, at its clock's time; at most ``limit`` running jobs listed."""
    now = chancy.now()
    waiting, running, finished = chancy.sync_run_store(chancy.store.activity, since=now - int(WINDOW * 1_000_000))
    jobs = chancy.sync_run_store(chancy.store.list_jobs, state="running", limit=limit)
    jobs.sort(key=lambda j: j.started_at or from_micros(now))
    failed = chancy.sync_run_store(chancy.store.recent_failures, limit=failures)
    return Snapshot(from_micros(now), waiting, running, finished / WINDOW, jobs, failed)


def progress_of(job: QueuedJob) -> tuple[float, float | None, str | None] | None:
    """(done, total, message) of a job that reported progress, else None (meta written by hand is checked)."""
    progress = job.meta.get("progress") if isinstance(job.meta, dict) else None
    if not isinstance(progress, dict):
        return None
    done, total, message = progress.get("done"), progress.get("total"), progress.get("message")
    if not isinstance(done, int | float) or isinstance(done, bool):
        return None
    total = total if isinstance(total, int | float) and not isinstance(total, bool) and total > 0 else None
    return float(done), float(total) if total is not None else None, message if isinstance(message, str) else None


def _elapsed(job: QueuedJob, now: dt.datetime) -> str:
    if job.started_at is None:
        return "-"
    seconds = max(0.0, (now - job.started_at).total_seconds())
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _short(job: QueuedJob) -> str:
    return str(job.id)[:13]


def _failure_line(job: QueuedJob) -> str:
    last = job.errors[-1].get("traceback", "") if job.errors else ""
    return error_summary(str(last) or "failed", limit=160)


def render_plain(snapshot: Snapshot, *, title: str, width: int = 20) -> str:
    """The snapshot as plain text (no colour, no cursor movement), every stored string made printable."""
    from chancy_lite.cli import printable

    when = snapshot.taken_at.astimezone().strftime("%H:%M:%S")
    lines = [f"{title}  {when}",
             f"waiting {snapshot.waiting}  running {snapshot.running}  finished {snapshot.per_second:.1f}/s "
             f"(last {WINDOW:g} s)"]
    lines.append("running:" if snapshot.jobs else "running: none")
    for job in snapshot.jobs:
        line = f"  {_short(job)}  {printable(job.func)}  {printable(job.queue)}  {_elapsed(job, snapshot.taken_at)}"
        progress = progress_of(job)
        if progress is not None:
            done, total, message = progress
            if total:
                filled = min(width, int(width * done / total))
                line += f"  [{'#' * filled}{'-' * (width - filled)}] {done:g}/{total:g}"
            else:
                line += f"  {done:g} done"
            if message:
                line += f"  {printable(message)}"
        lines.append(line)
    if snapshot.failures:
        lines.append("recent failures:")
        for job in snapshot.failures:
            when = job.completed_at.astimezone().strftime("%H:%M:%S") if job.completed_at else "-"
            lines.append(f"  {_short(job)}  {printable(job.func)}  {when}  {printable(_failure_line(job))}")
    return "\n".join(lines)


def render_rich(snapshot: Snapshot, *, title: str) -> Any:
    """The snapshot as a rich renderable: a header, a table of running jobs with bars, the failures."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    from chancy_lite.cli import printable

    when = snapshot.taken_at.astimezone().strftime("%H:%M:%S")
    header = Text.assemble(
        (title, "bold"), f"  {when}\n", "waiting ", (str(snapshot.waiting), "bold"), "  running ",
        (str(snapshot.running), "bold cyan"), "  finished ", (f"{snapshot.per_second:.1f}/s", "bold green"),
        f" (last {WINDOW:g} s)",
    )
    running = Table(title="running", title_justify="left", expand=True)
    running.add_column("id", no_wrap=True, min_width=13)
    running.add_column("function @ queue", ratio=3, overflow="fold")
    running.add_column("for", no_wrap=True, justify="right")
    running.add_column("progress", no_wrap=True, min_width=24)
    running.add_column("message", ratio=2, overflow="fold")
    for job in snapshot.jobs:
        progress = progress_of(job)
        cell: Any = "-"
        message = ""
        if progress is not None:
            done, total, message_text = progress
            if total:
                cell = Table.grid(padding=(0, 1))
                cell.add_row(ProgressBar(total=total, completed=min(done, total), width=12),
                             Text(f"{done:g}/{total:g}"))
            else:
                cell = Text(f"{done:g} done")
            message = printable(message_text or "")
        running.add_row(_short(job), Text(f"{printable(job.func)} @ {printable(job.queue)}"),
                        _elapsed(job, snapshot.taken_at), cell, Text(message))
    parts: list[Any] = [header, running]
    if snapshot.failures:
        failed = Table(title="recent failures", title_justify="left", expand=True)
        for column in ("id", "function", "at", "error"):
            failed.add_column(column, no_wrap=column != "error")
        for job in snapshot.failures:
            at = job.completed_at.astimezone().strftime("%H:%M:%S") if job.completed_at else "-"
            failed.add_row(_short(job), Text(printable(job.func)), at, Text(printable(_failure_line(job)), "red"))
        parts.append(failed)
    return Group(*parts)


def has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def run(chancy: Chancy, *, interval: float = 1.0, once: bool = False, limit: int = 20, out: TextIO | None = None,
        fancy: bool | None = None) -> int:
    """Show snapshots until interrupted (Ctrl-C ends it with status 0), or one with ``once``.

    ``fancy``: draw with rich (default: when ``out`` is a terminal and rich is installed).
    """
    out = out or sys.stdout
    title = f"chancy-lite watch - {chancy.path}"
    if fancy is None:
        fancy = out.isatty() and has_rich()
    try:
        if not fancy:
            while True:
                print(render_plain(take(chancy, limit=limit), title=title), file=out, flush=True)
                if once:
                    return 0
                print(file=out)
                time.sleep(interval)
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        if once:
            console.print(render_rich(take(chancy, limit=limit), title=title))
            return 0
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                live.update(render_rich(take(chancy, limit=limit), title=title), refresh=True)
                time.sleep(interval)
    except KeyboardInterrupt:
        return 0

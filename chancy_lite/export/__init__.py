"""Move a queue file to Chancy on Postgres (:func:`export_to_postgres`), or a Postgres queue into a file
(:func:`import_from_postgres`). Needs the ``[postgres]`` extra (psycopg 3).

The Postgres side must have been migrated by Chancy itself (0.25 or 0.26, told apart by Chancy's
``{p}schema_version`` rows, which this module only reads). Each transfer first collects every blocker (see
:mod:`chancy_lite.export.mapping`); it then copies queues, jobs in batches (one transaction each, Chancy's workers
woken after each), non-terminal workflows with the jobs their steps name, and cron schedules, every insert
``ON CONFLICT DO NOTHING``, so a rerun or a resumed run only adds what is missing. At the end it checks, per
(queue, state), that every copied job is in the target.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

from chancy_lite.errors import ChancyError, ConfigurationError, MissingDependencyError
from chancy_lite.export import mapping
from chancy_lite.export.mapping import FINISHED, WAITING, Blocker
from chancy_lite.export.store import FIRST_ID, LiteSide, PostgresSide
from chancy_lite.utils import to_micros

Progress = Callable[[int, int], None]  # (jobs done, jobs in all)

__all__ = ["Blocker", "ExportBlockedError", "Report", "VerificationError", "export_to_postgres",
           "import_from_postgres"]


class ExportBlockedError(ChancyError):
    """The transfer would be wrong; ``blockers`` says why, each with what to do. Nothing was written."""

    def __init__(self, blockers: Sequence[Blocker]) -> None:
        self.blockers = list(blockers)
        lines = "\n".join(f"  - {b}" for b in self.blockers)
        super().__init__(f"{len(self.blockers)} blocker(s), nothing was copied:\n{lines}")


class VerificationError(ChancyError):
    """Some copied rows are not in the target afterwards (``report`` has the counts and the missing ids)."""

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(report.summary())


@dataclasses.dataclass
class Report:
    """What a transfer found, would do (``dry_run``) or did.

    ``expected`` and ``present`` count jobs per (queue, state in the source); ``missing`` lists ids (at most
    100) that are not in the target after the copy, with the reason when known (an active job with the same
    unique key).
    """

    direction: str  # "export" or "import"
    release: str | None
    dry_run: bool
    blockers: list[Blocker] = dataclasses.field(default_factory=list)
    queues: int = 0
    schedules: int = 0
    workflows: int = 0
    expected: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    present: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    missing: list[str] = dataclasses.field(default_factory=list)
    schedules_present: int = 0
    workflows_present: int = 0
    skipped_running: int = 0

    @property
    def jobs(self) -> int:
        return sum(self.expected.values())

    @property
    def verified(self) -> bool:
        return (not self.dry_run and not self.blockers and self.present == self.expected
                and self.schedules_present == self.schedules and self.workflows_present == self.workflows)

    def summary(self) -> str:
        target = f"Chancy {self.release}" if self.release else "an unknown schema"
        verb = "would copy" if self.dry_run else "copied"
        lines = [f"{self.direction} ({target}): {verb} {self.queues} queue(s), {self.jobs} job(s),"
                 f" {self.schedules} cron schedule(s), {self.workflows} workflow(s)"]
        for (queue, state), n in sorted(self.expected.items()):
            got = "" if self.dry_run else f"  in target: {self.present.get((queue, state), 0)}"
            lines.append(f"  {queue:<20} {state:<10} {n:>8}{got}")
        if self.skipped_running:
            lines.append(f"  skipped {self.skipped_running} running job(s) (--requeue-running copies them)")
        if not self.dry_run and not self.blockers:
            lines.append(f"  cron schedules in target: {self.schedules_present}/{self.schedules},"
                         f" workflows: {self.workflows_present}/{self.workflows}")
            lines += [f"  missing: {m}" for m in self.missing]
            lines.append("  verified: every row is in the target" if self.verified else "  NOT VERIFIED")
        if self.blockers:
            lines.append(f"{len(self.blockers)} blocker(s):")
            lines += [f"  - {b}" for b in self.blockers]
        return "\n".join(lines)


def connect_postgres(dsn: str) -> Any:
    """A psycopg 3 connection (not autocommit); MissingDependencyError naming the extra, or ConfigurationError
    when the server cannot be reached (``--dry-run`` needs it too: it reads the target's schema)."""
    try:
        import psycopg
    except ImportError as exc:
        raise MissingDependencyError("export/import needs psycopg 3: pip install 'chancy-lite[postgres]'") from exc
    try:
        return psycopg.connect(dsn)
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        raise ConfigurationError(f"cannot connect to the PostgreSQL database ({detail}): check the DSN and that the "
                                 "server runs; --dry-run needs it too, as it reads the target's schema") from exc


def _states(*, include_finished: bool, requeue_running: bool) -> tuple[str, ...]:
    return WAITING + (("running",) if requeue_running else ()) + (FINISHED if include_finished else ())


def _micros(since: dt.datetime | None) -> int | None:
    return None if since is None else to_micros(since)


# ------------------------------------------------------------------- export


def export_to_postgres(
    app: Any, dsn: str, *, include_finished: bool = False, since: dt.datetime | None = None,
    requeue_running: bool = False, dry_run: bool = False, batch_size: int = 1000, progress: Progress | None = None,
    drop_key_limits: bool = False,
) -> Report:
    """Copy ``app``'s queues, waiting jobs (pending, retrying, scheduled), cron schedules and non-terminal
    workflows to the Chancy database at ``dsn`` (with ``include_finished``, also succeeded and failed jobs
    finished at or after ``since``; with ``requeue_running``, running jobs as waiting and live workers allowed;
    with ``drop_key_limits``, waiting jobs with per-key limits are copied without them, as Chancy has none).

    Returns the :class:`Report`; with ``dry_run`` nothing is written and the report lists every blocker.
    Raises :class:`ExportBlockedError` (nothing written) when there are blockers, :class:`VerificationError`
    when rows are missing from the target afterwards, MissingDependencyError without psycopg.
    """
    conn = connect_postgres(dsn)
    try:
        pg, lite = PostgresSide(conn, app.prefix), LiteSide(app)
        states = _states(include_finished=include_finished, requeue_running=requeue_running)
        report, plan = _plan_export(app, pg, lite, states, _micros(since), requeue_running, dry_run)
        if not drop_key_limits:
            report.blockers += mapping.key_limit_blockers(lite.keyed_jobs())
        if dry_run:
            return report
        if report.blockers:
            raise ExportBlockedError(report.blockers)
        _copy_export(pg, lite, report, plan, states, _micros(since), requeue_running, batch_size, progress)
        if not report.verified:
            raise VerificationError(report)
        return report
    finally:
        conn.close()


@dataclasses.dataclass
class _ExportPlan:
    queues: list[dict[str, Any]]
    schedules: list[dict[str, Any]]
    workflows: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    step_job_ids: list[str]


def _plan_export(app: Any, pg: PostgresSide, lite: LiteSide, states: Sequence[str], since: int | None,
                 requeue_running: bool, dry_run: bool) -> tuple[Report, _ExportPlan]:
    versions = pg.schema_versions()
    release, blockers = mapping.release_of(versions)
    if not requeue_running:
        blockers += mapping.running_blockers(lite.running_jobs(), lite.live_workers(app.now()))
    queues = []
    for row in lite.queues():
        params, queue_blockers = mapping.queue_to_chancy(row)
        queues.append(params)
        blockers += queue_blockers
    schedules = []
    for row in lite.schedules():
        params, cron_blockers = mapping.cron_to_chancy(row, release or "0.26")
        schedules.append(params)
        blockers += cron_blockers
    if schedules and versions is not None and "cron" not in versions:
        blockers.append(Blocker("cron", "target", f"{len(schedules)} schedule(s) but the target has no cron tables:"
                                " migrate it with Chancy's Cron plugin enabled"))
    workflows = [mapping.workflow_to_chancy(row) for row in lite.active_workflows()]
    steps = [mapping.step_to_chancy(row) for row in lite.workflow_steps([w["id"] for w in workflows])]
    if workflows and versions is not None and "workflow" not in versions:
        blockers.append(Blocker("workflow", "target", f"{len(workflows)} workflow(s) but the target has no workflow"
                                " tables: migrate it with Chancy's WorkflowPlugin (a default plugin)"))
    report = Report("export", release, dry_run, blockers, queues=len(queues), schedules=len(schedules),
                    workflows=len(workflows), expected=mapping.tally(lite.count_jobs(states, since)))
    step_job_ids = sorted({s["job_id"] for s in steps if s["job_id"]})
    return report, _ExportPlan(queues, schedules, workflows, steps, step_job_ids)


def _copy_export(pg: PostgresSide, lite: LiteSide, report: Report, plan: _ExportPlan, states: Sequence[str],
                 since: int | None, requeue: bool, batch_size: int, progress: Progress | None) -> None:
    pg.execute_many("PG_INSERT_QUEUE", plan.queues)
    pg.commit()
    done, total, after = 0, report.jobs, FIRST_ID
    while rows := lite.jobs_page(states, since, after, batch_size):
        _export_batch(pg, report, rows, requeue, count=True)
        done, after = done + len(rows), rows[-1][0]
        if progress:
            progress(done, total)
    # The jobs the workflows' steps name, whatever their state (Chancy reads them to advance the workflow).
    for start in range(0, len(plan.step_job_ids), batch_size):
        _export_batch(pg, report, lite.jobs_by_id(plan.step_job_ids[start:start + batch_size]), requeue, count=False)
    pg.execute_many("PG_INSERT_WORKFLOW", plan.workflows)
    pg.execute_many("PG_INSERT_WORKFLOW_STEP", plan.steps)
    pg.execute_many("PG_INSERT_CRON_026" if report.release == "0.26" else "PG_INSERT_CRON_025", plan.schedules)
    pg.commit()
    report.schedules_present = pg.count_schedules([s["unique_key"] for s in plan.schedules])
    report.workflows_present = pg.count_workflows([w["id"] for w in plan.workflows])
    pg.commit()


def _export_batch(pg: PostgresSide, report: Report, rows: Sequence[tuple[Any, ...]], requeue: bool, *,
                  count: bool) -> None:
    """One batch in one transaction, workers woken at its commit; then which of its rows the target has."""
    params = [mapping.job_to_chancy(row, requeue=requeue) for row in rows]
    pg.execute_many("PG_INSERT_JOB", params)
    pg.wake(p["queue"] for p in params if p["state"] in WAITING)
    pg.commit()
    present = pg.present_job_ids([p["id"] for p in params])
    pg.commit()
    _tally_present(report, rows, present, pg.held_unique_keys, count=count)


def _tally_present(report: Report, rows: Sequence[tuple[Any, ...]], present: set[str],
                   held: Callable[[Sequence[str]], dict[str, str]], *, count: bool) -> None:
    lost = [row for row in rows if row[0] not in present]
    if count:
        for row in rows:
            if row[0] in present:
                report.present[(row[1], row[6])] = report.present.get((row[1], row[6]), 0) + 1
    if lost:
        holders = held([row[14] for row in lost if row[14]])
        for row in lost[: max(0, 100 - len(report.missing))]:
            why = f" (unique key {row[14]!r} is held by active job {holders[row[14]]})" if row[14] in holders else ""
            report.missing.append(f"{row[0]} {row[2]} on {row[1]!r}{why}")
        if not count:
            report.present[("<workflow steps>", "missing")] = len(lost)


# ------------------------------------------------------------------- import


def import_from_postgres(
    app: Any, dsn: str, *, include_finished: bool = False, since: dt.datetime | None = None,
    requeue_running: bool = False, dry_run: bool = False, batch_size: int = 1000, progress: Progress | None = None,
) -> Report:
    """Copy a Chancy database's queues, waiting jobs, cron schedules and active workflows into ``app``'s file
    (migrated first), to reproduce a production queue locally. Running jobs are skipped unless
    ``requeue_running`` (then copied as waiting); the other options are those of :func:`export_to_postgres`.

    Raises :class:`ExportBlockedError` for an unknown schema, or schedules/workflows the file has no tables for
    (add the Cron/workflow plugin to the app); :class:`VerificationError` when rows are missing afterwards.
    """
    conn = connect_postgres(dsn)
    try:
        pg, lite = PostgresSide(conn, app.prefix), LiteSide(app)
        release, blockers = mapping.release_of(pg.schema_versions())
        if release is None:
            raise ExportBlockedError(blockers)
        if not dry_run:
            app.sync_migrate()
        queues = [mapping.queue_to_lite(row) for row in pg.queues()]
        schedules = [mapping.cron_to_lite(row) for row in pg.schedules(release)]
        workflows = pg.active_workflows()
        if schedules and not lite.has_table("cron"):
            blockers.append(Blocker("cron", "file", f"{len(schedules)} schedule(s) but the file has no cron table:"
                                    " open it with the Cron plugin (--app with plugins=[Cron()])"))
        if workflows and not lite.has_table("workflows"):
            blockers.append(Blocker("workflow", "file", f"{len(workflows)} workflow(s) but the file has no workflow"
                                    " tables: open it with the workflow plugin"))
        states = _states(include_finished=include_finished, requeue_running=requeue_running)
        report = Report("import", release, dry_run, blockers, queues=len(queues), schedules=len(schedules),
                        workflows=len(workflows))
        if dry_run:
            _count_import(pg, report, states, _micros(since), batch_size)
            return report
        if blockers:
            raise ExportBlockedError(blockers)
        lite.insert("LITE_INSERT_QUEUE", queues)
        _copy_import(pg, lite, report, states, _micros(since), requeue_running, batch_size, progress)
        lite.insert("LITE_INSERT_CRON", schedules)
        _import_workflows(pg, lite, report, workflows)
        report.schedules_present = len(schedules)  # upserts into a table this process just wrote: checked by id below
        if not report.verified:
            raise VerificationError(report)
        return report
    finally:
        conn.close()


def _count_import(pg: PostgresSide, report: Report, states: Sequence[str], since: int | None, batch: int) -> None:
    after = FIRST_ID
    while rows := pg.jobs_page(states, since, after, batch):
        for row in rows:
            report.expected[(row[1], row[6])] = report.expected.get((row[1], row[6]), 0) + 1
        after = rows[-1][0]
    pg.commit()


def _copy_import(pg: PostgresSide, lite: LiteSide, report: Report, states: Sequence[str], since: int | None,
                 requeue: bool, batch: int, progress: Progress | None) -> None:
    after, done = FIRST_ID, 0
    while rows := pg.jobs_page(states, since, after, batch):
        pg.commit()
        lite.insert("LITE_INSERT_JOB", [mapping.job_to_lite(row, requeue=requeue) for row in rows])
        present = lite.present_job_ids([row[0] for row in rows])
        for row in rows:
            key = (row[1], row[6])
            report.expected[key] = report.expected.get(key, 0) + 1
        _tally_present(report, rows, present, lambda keys: {}, count=True)
        done, after = done + len(rows), rows[-1][0]
        if progress:
            progress(done, done)


def _import_workflows(pg: PostgresSide, lite: LiteSide, report: Report, workflows: Sequence[tuple[Any, ...]]) -> None:
    if not workflows:
        return
    steps = pg.workflow_steps([w[0] for w in workflows])
    job_ids = sorted({s[4] for s in steps if s[4]})
    lite.insert("LITE_INSERT_JOB", [mapping.job_to_lite(row) for row in pg.jobs_by_id(job_ids)])
    lite.insert("LITE_INSERT_WORKFLOW", [mapping.workflow_to_lite(w) for w in workflows])
    lite.insert("LITE_INSERT_WORKFLOW_STEP", [mapping.step_to_lite(s) for s in steps])
    pg.commit()
    report.workflows_present = len(workflows)


def describe(report: Report) -> str:
    """The report as JSON text (for ``--json``)."""
    return json.dumps({
        "direction": report.direction, "release": report.release, "dry_run": report.dry_run,
        "blockers": [dataclasses.asdict(b) for b in report.blockers], "queues": report.queues,
        "schedules": report.schedules, "workflows": report.workflows,
        "jobs": [{"queue": q, "state": s, "expected": n, "present": report.present.get((q, s), 0)}
                 for (q, s), n in sorted(report.expected.items())],
        "missing": report.missing, "verified": report.verified,
    }, indent=2)

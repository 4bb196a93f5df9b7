"""``chancy-lite``: the command line over one queue file.

Every command goes through :class:`~chancy_lite.app.Chancy` (no SQL here) and
fetches all it needs at once, so no read transaction stays open. A user
mistake prints one ``chancy-lite: error: ...`` line on stderr and exits 2; an
internal error prints its traceback and exits 70 (EX_SOFTWARE).

Output never fails on stored text: stdout and stderr escape what their encoding
cannot show (``errors="backslashreplace"``), stored text is printed with control
characters, lone surrogates and bidirectional controls escaped, and ``--json``
is ASCII-only JSON that any parser reads.

Like ``python -m``, the command puts the current directory (after any
``--path`` directories) first on ``sys.path``, so job functions and ``--app``
modules next to the user's files import in this process and in the worker's
children, which inherit the supervisor's ``sys.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib
import io
import json
import logging
import math
import os
import sys
import traceback
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from chancy_lite import __version__, alias
from chancy_lite.app import Chancy
from chancy_lite.db import MEMORY
from chancy_lite.errors import ChancyError, JobNotFoundError, MigrationsNeededError
from chancy_lite.job import Job, Limit, QueuedJob
from chancy_lite.queue import MAX_SECONDS, ExecutorPath, Queue
from chancy_lite.utils import UTC, aware, import_string, is_text, utcnow

PROG = "chancy-lite"
DB_ENV = "CHANCY_LITE_DB"
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug, not the user's mistake
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE
EXECUTORS = {"process": ExecutorPath.Process.value, "threaded": ExecutorPath.Threaded.value,
             "async": ExecutorPath.Async.value}
STATES = [state.value for state in QueuedJob.State]

Handler = Callable[[Chancy, argparse.Namespace], int]
Subparsers = argparse._SubParsersAction


class UsageError(Exception):
    """A mistake on the command line or in its input."""


# Overflow: a huge number. UnicodeError is a ValueError but never the user's mistake here (see main()).
USER_ERRORS = (UsageError, ChancyError, KeyError, ValueError, TypeError, OverflowError)


class _Parser(argparse.ArgumentParser):
    """Reports its errors as a UsageError, so they print on one line like every other mistake."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------ entry point


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 check failed, 2 user mistake, 70 internal error)."""
    import_path = list(sys.path)
    restore_output = _lenient_output()
    if alias.wanted(os.environ):  # a Chancy project's --app module may say `from chancy import Chancy`
        alias.install()
    try:
        args = build_parser().parse_args(argv)
        _configure_logging(args.verbose)
        code = run(args)
        sys.stdout.flush()  # here, so a closed pipe is seen below rather than at exit
        return code
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as tools killed by SIGPIPE do
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if isinstance(exc, USER_ERRORS) and not isinstance(exc, UnicodeError):
            print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USER_ERROR
        traceback.print_exception(exc, file=sys.stderr)
        print(f"{PROG}: internal error: {_one_line(exc)} (a bug: please report it with the traceback above)",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    finally:
        sys.path[:] = import_path  # run() extends it; a caller of main() in-process gets its own back
        restore_output()


def run(args: argparse.Namespace) -> int:
    _check_arguments_are_text(args)
    extend_import_path([*args.path, *getattr(args, "path_after_command", [])])
    app = open_app(args)
    with app:
        _check_database(app, args)
        return args.handler(app, args)


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return printable(" ".join(str(text).split())) or type(exc).__name__


def _lenient_output() -> Callable[[], None]:
    """Make stdout and stderr escape what their encoding cannot show; returns what puts them back."""
    changed: list[tuple[io.TextIOWrapper, str | None]] = []
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors != "backslashreplace":
            previous = stream.errors
            if _reconfigure(stream, "backslashreplace"):
                changed.append((stream, previous))

    def restore() -> None:
        for stream, previous in changed:
            _reconfigure(stream, previous)

    return restore


def _reconfigure(stream: io.TextIOWrapper, errors: str | None) -> bool:
    try:
        stream.reconfigure(errors=errors)  # flushes first
    except (OSError, ValueError):  # closed, or its pipe is gone
        return False
    return True


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the final flush at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (an in-process caller's buffer)
        pass


def _check_arguments_are_text(args: argparse.Namespace) -> None:
    """Refuse arguments holding undecodable bytes (lone surrogates): SQLite can neither store nor look them up.

    --kwargs and --meta are JSON documents stored escaped, and --path directories are file names: they may.
    """
    for name, value in vars(args).items():
        if name in ("kwargs", "meta", "path", "path_after_command"):
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            for text in item if isinstance(item, tuple) else [item]:
                if isinstance(text, str) and not is_text(text):
                    raise UsageError(f"{text!r} is not valid text: it holds bytes that are not UTF-8")


def _configure_logging(verbosity: int) -> None:
    if verbosity:
        logging.basicConfig(
            level=logging.DEBUG if verbosity > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )


# --------------------------------------------------------------- imports


def extend_import_path(directories: Sequence[str]) -> None:
    """Put ``directories`` (``--path``), then the current directory, first on ``sys.path``.

    ``--db``, ``$CHANCY_LITE_DB`` and ``--app`` all get this, as ``python -m`` would: a console script otherwise
    has only its own ``bin`` directory there. Worker children are spawned with this ``sys.path``.
    """
    wanted: list[str] = []
    for directory in directories:
        full = os.path.abspath(directory)
        if not os.path.isdir(full):
            raise UsageError(f"--path {directory!r} is not a directory")
        wanted.append(full)
    try:
        wanted.append(os.getcwd())
    except OSError:  # the current directory was deleted: nothing there to import
        pass
    wanted = list(dict.fromkeys(wanted))
    sys.path[:] = [*wanted, *(entry for entry in sys.path if entry not in wanted)]


def job_defaults(func: str) -> tuple[Job | None, str | None]:
    """The ``@job(...)`` of ``func`` if it can be imported here, and why it could not (None if it could).

    A plain function (no ``@job``) has no defaults. Anything the module prints while it is imported goes to stderr,
    so stdout keeps only the command's own output (the pushed job's id).
    """
    try:
        with contextlib.redirect_stdout(sys.stderr):
            target = import_string(func)
    except Exception as exc:  # ImportError, or whatever the module raised while it was imported
        return None, " ".join(f"{type(exc).__name__}: {exc}".split())
    attached = getattr(target, "job", None)
    return (attached if isinstance(attached, Job) else None), None


# --------------------------------------------------------------- the database


def open_app(args: argparse.Namespace) -> Chancy:
    """The Chancy named by --app, --db or $CHANCY_LITE_DB (options win over the variable)."""
    if args.app and args.db:
        raise UsageError("give either --db or --app, not both")
    if args.app:
        return import_app(args.app)
    path = args.db or os.environ.get(DB_ENV)
    if not path:
        raise UsageError(f"no database given: pass --db PATH, set {DB_ENV}, or pass --app module:attribute")
    return Chancy(path)


def import_app(spec: str) -> Chancy:
    """Import ``package.module:attribute`` (from ``sys.path``, which :func:`run` starts with the current directory)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--app {spec!r} must look like 'package.module:attribute'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--app: cannot import {module_name!r}: {exc}") from exc
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise UsageError(f"--app: {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, name)
    if not isinstance(target, Chancy):
        raise UsageError(f"--app {spec!r} is a {type(target).__name__}, not a Chancy instance")
    return target


def _check_database(app: Chancy, args: argparse.Namespace) -> None:
    if app.path != MEMORY and not args.creates_file and not os.path.exists(app.path):
        raise UsageError(f"there is no database at {app.path}: check the path, or create it with '{PROG} migrate'")
    if args.needs_schema and not app.sync_is_up_to_date():
        raise MigrationsNeededError(f"the database {app.path} is not migrated or is out of date: run '{PROG} migrate'")


# ------------------------------------------------------------------- parsing


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Manage a chancy_lite job queue file.")
    _add_global_options(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    _add_migration_commands(commands)
    _add_queue_commands(commands)
    _add_job_commands(commands)
    _add_cron_commands(commands)
    add_command(commands, "status", cmd_status, "job counts per queue and state, file and WAL size")
    watch = add_command(commands, "watch", cmd_watch,
                        "running jobs with their progress, throughput and recent failures, live")
    watch.add_argument("--interval", type=POSITIVE_SECONDS, default=1.0, help="seconds between refreshes (1)")
    watch.add_argument("--once", action="store_true", help="show one snapshot and exit")
    watch.add_argument("--limit", type=POSITIVE_INT, default=20, help="running jobs to list (20)")
    watch.add_argument("--plain", action="store_true", help="plain text even in a terminal")
    add_worker_commands(commands)
    _add_transfer_commands(commands)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--db, --app, --path and -v; on subcommands they default to SUPPRESS so they never undo the top-level ones."""
    absent = argparse.SUPPRESS if suppress else None
    parser.add_argument("--db", metavar="PATH", default=absent, help=f"the queue file (default: ${DB_ENV})")
    parser.add_argument(
        "--app", metavar="MODULE:ATTR", default=absent, help="import this Chancy instance, e.g. myproject.jobs:chancy"
    )
    parser.add_argument(  # a subcommand's --path goes to its own list, which would otherwise replace the top one
        "--path", action="append", metavar="DIR", dest="path_after_command" if suppress else "path",
        default=argparse.SUPPRESS if suppress else [],
        help="look for job functions and --app modules in DIR too (repeatable; the current directory always is)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0,
        help="log progress (-vv for debug)",
    )


def add_command(
    subparsers: Subparsers, name: str, handler: Handler, summary: str, *, needs_schema: bool = True,
    creates_file: bool = False, epilog: str | None = None,
) -> argparse.ArgumentParser:
    """Add a command whose ``handler(chancy, args)`` runs on the opened, checked database."""
    common = _Parser(add_help=False)
    _add_global_options(common, suppress=True)
    parser = subparsers.add_parser(name, parents=[common], help=summary, description=summary, epilog=epilog)
    parser.set_defaults(handler=handler, needs_schema=needs_schema, creates_file=creates_file)
    return parser


def add_group(subparsers: Subparsers, name: str, summary: str) -> Subparsers:
    parser = subparsers.add_parser(name, help=summary, description=summary)
    return parser.add_subparsers(title="commands", dest=f"{name}_command", metavar="COMMAND", required=True)


def add_worker_commands(subparsers: Subparsers) -> None:
    """``worker start``: run a worker in this process until SIGTERM or Ctrl-C; ``worker web``: the same with the
    dashboard (or the dashboard alone)."""
    workers = add_group(subparsers, "worker", "run workers")
    parser = add_command(workers, "start", cmd_worker_start, "run a worker until SIGTERM/Ctrl-C (twice: at once)")
    _add_worker_options(parser)
    web = add_command(
        workers, "web", cmd_worker_web, "serve the dashboard and HTTP API, in a worker (or alone: --no-worker)",
        epilog="Credentials: the app's Api plugin (--app), else CHANCY_LITE_WEB_PASSWORD (and "
        "CHANCY_LITE_WEB_USERNAME, default admin); there is no default password. Prints 'dashboard: URL' once "
        "it listens. --host, --port, --read-only and --root-path override the Api plugin's settings when given.",
    )
    web.add_argument("--host", help="the address to listen on (default 127.0.0.1: this machine only)")
    web.add_argument("--port", type=PORT, help="the port (default 8000; 0: any free port)")
    web.add_argument("--read-only", action="store_true", help="allow no action (retry, cancel, purge, queues)")
    web.add_argument("--no-login", action="store_true", help="ask for no login (only with --read-only)")
    web.add_argument("--root-path", help="the path prefix a reverse proxy serves the dashboard under")
    web.add_argument("--allow-origin", action="append", dest="allow_origins", metavar="ORIGIN",
                     help="an origin allowed by CORS to call the JSON API (repeatable)")
    web.add_argument("--debug", action="store_true", help="log every request and show tracebacks")
    web.add_argument("--no-worker", action="store_true", help="serve the dashboard only: run no jobs")
    _add_worker_options(web)


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker-id", help="a stable id for this worker (default: a new one)")
    parser.add_argument("--tags", nargs="+", default=[], metavar="TAG", help="extra worker tags queues can match")
    parser.add_argument(
        "--queue", action="append", default=[], type=_queue_spec, metavar="NAME[:CONCURRENCY]",
        help="declare (or resize) this queue before starting; repeatable",
    )
    parser.add_argument(
        "--shutdown-timeout", type=NON_NEGATIVE_SECONDS, default=30.0,
        help="seconds running jobs get to finish on shutdown (default 30)",
    )
    parser.add_argument(
        "--allowed-module", action="append", dest="allowed_modules", metavar="MODULE",
        help="run only job functions from these modules (repeatable); others fail with a clear error",
    )


def _queue_spec(text: str) -> tuple[str, int | None]:
    name, _, concurrency = text.partition(":")
    if not concurrency:
        return name, None
    return name, POSITIVE_INT(concurrency)


def cmd_worker_start(app: Chancy, args: argparse.Namespace) -> int:
    if not args.verbose:
        _configure_logging(1)
    return _run_worker(app, args)


def cmd_worker_web(app: Chancy, args: argparse.Namespace) -> int:
    import asyncio

    from chancy_lite.plugins.api import Api

    if not args.verbose:
        _configure_logging(1)
    plugin = app.plugins.get(Api.get_identifier())
    if plugin is None:
        plugin = Api(
            host=args.host or "127.0.0.1", port=8000 if args.port is None else args.port, read_only=args.read_only,
            login_required=not args.no_login, root_path=args.root_path or "", allow_origins=args.allow_origins,
            debug=args.debug,
        )
        app.plugins[plugin.get_identifier()] = plugin
    else:  # the app's own plugin: flags given explicitly win (Chancy 0.26, #68)
        plugin.host = args.host or plugin.host
        plugin.port = plugin.port if args.port is None else args.port
        plugin.read_only = plugin.read_only or args.read_only
        plugin.root_path = plugin.root_path if args.root_path is None else args.root_path.rstrip("/")
        plugin.allow_origins = args.allow_origins or plugin.allow_origins
        plugin.debug = plugin.debug or args.debug
    plugin.bind()
    print(f"dashboard: {plugin.url}", flush=True)
    if args.no_worker:
        asyncio.run(plugin.serve(app, handle_signals=True))
        return 0
    return _run_worker(app, args)


def _run_worker(app: Chancy, args: argparse.Namespace) -> int:
    import asyncio

    from chancy_lite.worker import Worker

    for name, concurrency in args.queue:
        _declare_for_worker(app, name, concurrency)
    worker = Worker(
        app, worker_id=args.worker_id, tags=args.tags, shutdown_timeout=args.shutdown_timeout,
        allowed_modules=args.allowed_modules,
    )

    async def serve() -> None:
        async with worker:
            await worker.wait_for_shutdown()

    asyncio.run(serve())
    return 0


def _declare_for_worker(app: Chancy, name: str, concurrency: int | None) -> None:
    try:
        stored = app.sync_get_queue(name)
    except KeyError:
        app.sync_declare(Queue(name, concurrency=concurrency))
        return
    if concurrency is not None and stored.concurrency != concurrency:
        app.sync_declare(dataclasses.replace(stored, concurrency=concurrency), upsert=True)


def _number(convert: Callable[[str], Any], what: str, valid: Callable[[Any], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and valid(value)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


POSITIVE_INT = _number(int, "an integer >= 1", lambda v: v >= 1)
NON_NEGATIVE_INT = _number(int, "an integer >= 0", lambda v: v >= 0)
PORT = _number(int, "a port number from 0 to 65535", lambda v: 0 <= v <= 65535)
POSITIVE_SECONDS = _number(float, "a number of seconds > 0", lambda v: v > 0)
NON_NEGATIVE_SECONDS = _number(float, "a number of seconds >= 0", lambda v: v >= 0)
DELAY_SECONDS = _number(float, f"a number of seconds from 0 to {MAX_SECONDS:g}", lambda v: 0 <= v <= MAX_SECONDS)
RESUME_SECONDS = _number(float, f"a number of seconds > 0, at most {MAX_SECONDS:g}", lambda v: 0 < v <= MAX_SECONDS)


def DATETIME(text: str) -> dt.datetime:
    """An ISO 8601 date and time; without an offset it is local time (the rule for every datetime, see README)."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date and time, such as 2030-01-31T09:00 (local time) or "
            "2030-01-31T09:00+00:00"
        ) from None
    return aware(value)


def _executor(text: str) -> str:
    if text in EXECUTORS:
        return EXECUTORS[text]
    if "." not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: use process, threaded, async or an executor's import path")
    return text


def _add_migration_commands(commands: Subparsers) -> None:
    parser = add_command(
        commands, "migrate", cmd_migrate, "create or upgrade the schema (or downgrade with --to-version)",
        needs_schema=False, creates_file=True,
    )
    parser.add_argument("--to-version", type=NON_NEGATIVE_INT, metavar="N", help="migrate up or down to version N")
    add_command(
        commands, "check-migrations", cmd_check_migrations, "exit 0 if the schema is up to date, 1 if not",
        needs_schema=False,
    )


def _add_queue_commands(commands: Subparsers) -> None:
    queues = add_group(commands, "queue", "declare, inspect and control queues; push jobs")
    declare = add_command(queues, "declare", cmd_queue_declare, "declare a queue")
    declare.add_argument("name")
    declare.add_argument("--concurrency", type=POSITIVE_INT, metavar="N", help="default: the executor's")
    declare.add_argument("--tags", nargs="+", action="extend", metavar="REGEX", help="worker tags to match")
    declare.add_argument("--executor", type=_executor, help="process (default), threaded, async, or an import path")
    declare.add_argument("--polling-interval", type=POSITIVE_SECONDS, metavar="S")
    declare.add_argument("--rate-limit", type=POSITIVE_INT, metavar="N", help="at most N jobs per window")
    declare.add_argument("--rate-limit-window", type=POSITIVE_SECONDS, metavar="S")
    declare.add_argument("--paused", action="store_true", help="declare it paused")
    declare.add_argument("--upsert", action="store_true", help="replace the configuration of an existing queue")
    add_command(queues, "list", cmd_queue_list, "list queues")
    pause = add_command(queues, "pause", cmd_queue_pause, "stop claiming jobs from a queue")
    pause.add_argument("name")
    when = pause.add_mutually_exclusive_group()
    when.add_argument("--resume-in", type=RESUME_SECONDS, metavar="SECONDS", help="resume automatically after this")
    when.add_argument("--resume-at", type=DATETIME, metavar="DATETIME",
                      help="resume automatically at this ISO 8601 time (no offset: local time)")
    add_command(queues, "resume", cmd_queue_resume, "resume a paused queue").add_argument("name")
    delete = add_command(queues, "delete", cmd_queue_delete, "delete a queue and its jobs")
    delete.add_argument("name")
    delete.add_argument("--keep-jobs", action="store_true", help="keep the queue's jobs")
    _add_push_command(queues)


def _add_push_command(queues: Subparsers) -> None:
    push = add_command(
        queues, "push", cmd_queue_push, "push a job; prints its id",
        epilog="If FUNC can be imported here, its @job(...) settings (queue, priority, max_attempts, limits, "
        "unique_key, per-key limits, kwargs, meta) are the defaults, and the options given replace them; if not, "
        "it is pushed as given with a warning (a worker may still import it).",
    )
    push.add_argument("func", help="the job function's import path, e.g. myproject.jobs.send_email")
    push.add_argument("--queue", help="default: the function's @job queue, else default")
    push.add_argument("--kwargs", metavar="JSON", help="keyword arguments as a JSON object")
    push.add_argument("--meta", metavar="JSON", help="metadata as a JSON object")
    push.add_argument("--priority", type=int, metavar="N", help="higher runs first (default: @job's, else 0)")
    push.add_argument(
        "--max-attempts", type=int, metavar="N", help="total number of tries (default: @job's, else 1)"
    )
    push.add_argument("--unique-key", metavar="K", help="push nothing if an unfinished job has this key")
    push.add_argument("--limit-key", metavar="K",
                      help="the key whose jobs share --concurrency-max and --rate-limit (such as a customer id)")
    push.add_argument("--concurrency-max", type=POSITIVE_INT, metavar="N",
                      help="at most N jobs of the limit key run at once, across every worker")
    push.add_argument("--rate-limit", type=POSITIVE_INT, metavar="N",
                      help="at most N jobs of the limit key claimed per --rate-limit-window")
    push.add_argument("--rate-limit-window", type=POSITIVE_SECONDS, metavar="S", help="seconds")
    when = push.add_mutually_exclusive_group()
    when.add_argument("--delay", type=DELAY_SECONDS, default=0.0, metavar="SECONDS", help="run no sooner")
    when.add_argument("--at", type=DATETIME, metavar="DATETIME",
                      help="run no sooner than this ISO 8601 time (no offset: local time)")


def _add_job_commands(commands: Subparsers) -> None:
    jobs = add_group(commands, "job", "inspect and act on jobs")
    listing = add_command(jobs, "list", cmd_job_list, "list jobs, newest first")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--queue")
    listing.add_argument("--func", help="only jobs of this function")
    listing.add_argument("--limit", type=POSITIVE_INT, default=100, metavar="N")
    get = add_command(jobs, "get", cmd_job_get, "show every field of a job, with its errors' tracebacks")
    get.add_argument("id")
    get.add_argument(
        "--json", action="store_true", help="print JSON (ASCII only; NaN and infinities as strings)"
    )
    add_command(jobs, "cancel", cmd_job_cancel, "cancel a job that has not finished").add_argument("id")
    add_command(jobs, "retry", cmd_job_retry, "put failed jobs back to pending").add_argument("ids", nargs="+")
    add_command(jobs, "purge", cmd_job_purge, "delete jobs").add_argument("ids", nargs="+")


def _add_cron_commands(commands: Subparsers) -> None:
    crons = add_group(commands, "cron", "inspect and act on cron schedules (the Cron plugin)")
    listing = add_command(crons, "list", cmd_cron_list, "list cron schedules by key, with their next runs")
    listing.add_argument("--json", action="store_true", help="print JSON (ASCII only; times in ISO 8601, UTC)")
    run_now = add_command(
        crons, "run-now", cmd_cron_run_now, "push a schedule's job now (its next run stays as it is); prints its id"
    )
    run_now.add_argument("key", help="the schedule's unique key")
    add_command(crons, "remove", cmd_cron_remove, "delete a cron schedule").add_argument("key")


# ------------------------------------------------------------------ commands


def cmd_migrate(app: Chancy, args: argparse.Namespace) -> int:
    steps = app.sync_migrate(to_version=args.to_version)
    for step in steps:
        print(f"migrated {step}")
    if not steps:
        print("nothing to migrate")
    return 0


def cmd_check_migrations(app: Chancy, args: argparse.Namespace) -> int:
    for key, version, newest in app.sync_migration_status():
        if newest is None:
            note = "not known to this app (a plugin it does not have)"
        elif version == newest:
            note = "up to date"
        else:
            note = f"pending: {newest - version} step(s) to version {newest}"
        print(f"{printable(key)}: version {version} - {note}")
    if app.sync_is_up_to_date():
        print("migrations are up to date")
        return 0
    print(f"{PROG}: migrations are pending for {printable(app.path)}: run '{PROG} migrate'", file=sys.stderr)
    return 1


def cmd_queue_declare(app: Chancy, args: argparse.Namespace) -> int:
    given = {
        "concurrency": args.concurrency, "executor": args.executor, "polling_interval": args.polling_interval,
        "rate_limit": args.rate_limit, "rate_limit_window": args.rate_limit_window,
        "tags": set(args.tags) if args.tags else None, "state": Queue.State.PAUSED if args.paused else None,
    }
    wanted = Queue(args.name, **{key: value for key, value in given.items() if value is not None})
    stored = app.sync_declare(wanted, upsert=args.upsert)
    if stored == wanted:
        print(f"declared queue {stored.name}")
    else:
        _warn(f"queue {stored.name} already exists with another configuration; kept it (use --upsert to replace it)")
    return 0


def cmd_queue_list(app: Chancy, args: argparse.Namespace) -> int:
    queues = app.sync_get_all_queues()
    if not queues:
        print("no queues")
        return 0
    headers = ["name", "state", "concurrency", "executor", "tags", "polling", "rate limit", "resume at"]
    print(format_table(headers, (_queue_row(queue) for queue in queues)))
    return 0


def _queue_row(queue: Queue) -> list[object]:
    executor = next((short for short, path in EXECUTORS.items() if path == queue.executor), queue.executor)
    rate = f"{queue.rate_limit}/{queue.rate_limit_window:g}s" if queue.rate_limit is not None else None
    return [
        queue.name, queue.state.value, queue.concurrency or "default", executor, ",".join(sorted(queue.tags)),
        f"{queue.polling_interval:g}s", rate, queue.resume_at,
    ]


def cmd_queue_pause(app: Chancy, args: argparse.Namespace) -> int:
    resume_at = args.resume_at
    if args.resume_in is not None:
        resume_at = _now(app) + dt.timedelta(seconds=args.resume_in)
    app.sync_pause_queue(args.name, resume_at=resume_at)
    until = f" until {_time(resume_at)}" if resume_at is not None else ""
    print(f"paused queue {args.name}{until}")
    return 0


def cmd_queue_resume(app: Chancy, args: argparse.Namespace) -> int:
    app.sync_resume_queue(args.name)
    print(f"resumed queue {args.name}")
    return 0


def cmd_queue_delete(app: Chancy, args: argparse.Namespace) -> int:
    app.sync_get_queue(args.name)  # an unknown name must not purge the jobs pushed to it
    app.sync_delete_queue(args.name, purge_jobs=not args.keep_jobs)
    kept = " (its jobs were kept)" if args.keep_jobs else " and its jobs"
    print(f"deleted queue {args.name}{kept}")
    return 0


def cmd_queue_push(app: Chancy, args: argparse.Namespace) -> int:
    given = {
        "queue": args.queue, "priority": args.priority, "max_attempts": args.max_attempts,
        "unique_key": args.unique_key, "limit_key": args.limit_key, "concurrency_max": args.concurrency_max,
        "rate_limit": args.rate_limit, "rate_limit_window": args.rate_limit_window,
        "kwargs": _json_object(args.kwargs, "--kwargs") if args.kwargs is not None else None,
        "meta": _json_object(args.meta, "--meta") if args.meta is not None else None,
    }
    plain = Job(func=args.func)  # a malformed path is a mistake, not something to try importing
    defaults, not_imported = job_defaults(args.func)
    job = dataclasses.replace(
        defaults or plain, func=args.func,
        scheduled_at=args.at if args.at is not None else _now(app) + dt.timedelta(seconds=args.delay),
        **{name: value for name, value in given.items() if value is not None},
    )
    if not_imported is not None:
        _warn(f"cannot import {args.func} here ({not_imported}); pushed it as given, without its @job settings")
    try:
        app.sync_get_queue(job.queue)
    except KeyError:
        _warn(f"queue {job.queue!r} is not declared: the job waits until a worker serves that queue")
    print(app.sync_push(job))
    return 0


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object such as '{{\"name\": 1}}', got {type(value).__name__}")
    return value


def cmd_job_list(app: Chancy, args: argparse.Namespace) -> int:
    jobs = app.sync_list_jobs(state=args.state, queue=args.queue, func=args.func, limit=args.limit)
    if not jobs:
        print("no jobs")
        return 0
    headers = ["id", "queue", "func", "state", "attempts", "priority", "created", "scheduled"]
    rows = (
        [j.id, j.queue, j.func, j.state.value, f"{j.attempts}/{j.max_attempts}", j.priority, j.created_at,
         j.scheduled_at]
        for j in jobs
    )
    print(format_table(headers, rows))
    return 0


def cmd_job_get(app: Chancy, args: argparse.Namespace) -> int:
    job = _get_job(app, args.id)
    print(job_to_json(job) if args.json else describe_job(job))
    return 0


def cmd_job_cancel(app: Chancy, args: argparse.Namespace) -> int:
    job = _get_job(app, args.id)
    if job.is_finished:
        raise UsageError(f"job {job.id} has already {job.state.value}: there is nothing to cancel")
    app.sync_cancel_job(job)
    print(f"cancelled job {job.id} (it was {job.state.value})")
    return 0


def cmd_job_retry(app: Chancy, args: argparse.Namespace) -> int:
    jobs = _existing_jobs(app, args.ids)
    not_failed = [f"{job.id} is {job.state.value}" for job in jobs if job.state is not QueuedJob.State.FAILED]
    if not_failed:
        raise UsageError(f"only failed jobs can be retried ({', '.join(not_failed)}); nothing was changed")
    for ref in app.sync_retry_jobs(jobs):
        print(f"retrying job {ref}")
    return 0


def cmd_job_purge(app: Chancy, args: argparse.Namespace) -> int:
    count = app.sync_purge_jobs(_existing_jobs(app, args.ids))
    print(f"purged {count} job(s)")
    return 0


def _get_job(app: Chancy, job_id: str) -> QueuedJob:
    job = app.sync_get_job(job_id)
    if job is None:
        raise JobNotFoundError(f"no job with id {job_id!r}")
    return job


def _existing_jobs(app: Chancy, ids: Sequence[str]) -> list[QueuedJob]:
    """The jobs, without duplicates; fails (changing nothing) if any is missing."""
    unique = list(dict.fromkeys(ids))
    jobs = app.sync_get_jobs(unique)
    missing = sorted(set(unique) - {str(job.id) for job in jobs})
    if missing:
        raise JobNotFoundError(f"no job with id {', '.join(map(repr, missing))}; nothing was changed")
    return jobs


def cmd_cron_list(app: Chancy, args: argparse.Namespace) -> int:
    from chancy_lite.plugins.cron import Cron

    schedules = Cron.sync_get_schedules(app)
    if args.json:
        print(json.dumps([_finite(_schedule_to_dict(s)) for s in schedules.values()], indent=2,
                         default=_json_default, ensure_ascii=True, allow_nan=False))
        return 0
    if not schedules:
        print("no cron schedules")
        return 0
    headers = ["key", "func", "queue", "cron", "timezone", "next run", "next run (local)", "last run"]
    rows = (
        [s["unique_key"], s["job"].func, s["job"].queue, s["cron"], s["timezone"], s["next_run"],
         _local_time(s["next_run"], s["timezone"]), s["last_run"]]
        for s in schedules.values()
    )
    print(format_table(headers, rows))
    return 0


def _schedule_to_dict(schedule: dict[str, Any]) -> dict[str, Any]:
    job: Job = schedule["job"]
    fields = {field.name: getattr(job, field.name) for field in dataclasses.fields(job)
              if not field.name.startswith("_") and field.name != "scheduled_at"}
    return {**schedule, "job": fields}


def _local_time(value: dt.datetime, zone: str) -> str:
    """``value`` on the wall clock of the IANA zone ``zone`` (with its abbreviation), or "?" if it is unknown here."""
    from zoneinfo import ZoneInfo

    try:
        local = value.astimezone(ZoneInfo(zone))
    except (ValueError, KeyError, OSError):
        return "?"
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def cmd_cron_run_now(app: Chancy, args: argparse.Namespace) -> int:
    from chancy_lite.plugins.cron import Cron

    before = _now(app)
    ref = Cron.sync_run_now(app, args.key)
    job = app.sync_get_job(ref)
    if job is not None and job.created_at is not None and job.created_at < before:
        _warn(f"an unfinished job of schedule {args.key} holds its key ({job.state.value}): nothing new was pushed")
    print(ref)
    return 0


def cmd_cron_remove(app: Chancy, args: argparse.Namespace) -> int:
    from chancy_lite.plugins.cron import Cron

    if not Cron.sync_unschedule(app, args.key):
        raise KeyError(f"no cron schedule has the key {args.key!r}")
    print(f"removed cron schedule {args.key}")
    return 0


def _add_transfer_commands(commands: Subparsers) -> None:
    """``export --to`` and ``import --from``: move queues and jobs between the file and Chancy on Postgres."""
    export = add_command(commands, "export", cmd_export,
                         "copy queues, waiting jobs, cron schedules and workflows to Chancy on Postgres",
                         epilog="The target must be migrated by Chancy 0.25 or 0.26 itself."
                                " Needs chancy-lite[postgres].")
    export.add_argument("--to", required=True, metavar="DSN", dest="dsn", help="postgresql://user@host/db")
    export.add_argument("--drop-key-limits", action="store_true",
                        help="copy waiting jobs with per-key limits without them (Chancy has none)")
    imp = add_command(commands, "import", cmd_import, "copy a Chancy Postgres queue into this file",
                      needs_schema=False, creates_file=True)
    imp.add_argument("--from", required=True, metavar="DSN", dest="dsn", help="postgresql://user@host/db")
    for parser in (export, imp):
        parser.add_argument("--include-finished", action="store_true", help="also succeeded and failed jobs")
        parser.add_argument("--since", type=DATETIME, help="with --include-finished: only jobs finished since then")
        parser.add_argument("--requeue-running", action="store_true",
                            help="copy running jobs as waiting (and go ahead despite live workers)")
        parser.add_argument("--dry-run", action="store_true", help="write nothing; list every blocker and the counts")
        parser.add_argument("--batch-size", type=POSITIVE_INT, default=1000, help="jobs per transaction (1000)")
        parser.add_argument("--json", action="store_true", help="the report as JSON")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def cmd_export(app: Chancy, args: argparse.Namespace) -> int:
    from chancy_lite.export import export_to_postgres

    return _transfer(export_to_postgres, app, args)


def cmd_import(app: Chancy, args: argparse.Namespace) -> int:
    from chancy_lite.export import import_from_postgres

    return _transfer(import_from_postgres, app, args)


def _transfer(fn: Callable[..., Any], app: Chancy, args: argparse.Namespace) -> int:
    """Exit 0 when copied and verified (or a dry run without blockers), 1 for blockers or missing rows."""
    from chancy_lite.export import ExportBlockedError, VerificationError, describe

    if args.since is not None and not args.include_finished:
        raise UsageError("--since goes with --include-finished")
    bar = None if args.no_progress or args.dry_run else ProgressBar(sys.stderr, "jobs")
    try:
        extra = {"drop_key_limits": True} if getattr(args, "drop_key_limits", False) else {}
        report = fn(app, args.dsn, include_finished=args.include_finished, since=args.since,
                    requeue_running=args.requeue_running, dry_run=args.dry_run, batch_size=args.batch_size,
                    progress=bar, **extra)
    except ExportBlockedError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except VerificationError as exc:
        report = exc.report
    finally:
        if bar is not None:
            bar.close()
    print(describe(report) if args.json else report.summary())
    ok = not report.blockers and (report.dry_run or report.verified)
    return 0 if ok else 1


class ProgressBar:
    """``done/total`` on one redrawn line in a terminal; in a pipe, a line at each tenth of the way."""

    def __init__(self, stream: Any, unit: str, width: int = 30) -> None:
        self.stream, self.unit, self.width = stream, unit, width
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.shown = -1
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        total = max(total, done, 1)
        if self.tty:
            filled = self.width * done // total
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {self.unit}")
            self.drawn = True
        elif (tenth := 10 * done // total) > self.shown:
            self.shown = tenth
            self.stream.write(f"{done}/{total} {self.unit}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def cmd_watch(app: Chancy, args: argparse.Namespace) -> int:
    from chancy_lite import watch

    fancy = sys.stdout.isatty() and not args.plain
    if fancy and not watch.has_rich():
        print(f"{PROG}: plain output: pip install 'chancy-lite[cli]' for the live view", file=sys.stderr)
        fancy = False
    return watch.run(app, interval=args.interval, once=args.once, limit=args.limit, fancy=fancy)


def cmd_status(app: Chancy, args: argparse.Namespace) -> int:
    counts = app.sync_count_jobs()
    queues = {queue.name: queue for queue in app.sync_get_all_queues()}
    workers = app.sync_get_all_workers()
    print(f"database: {printable(app.path)}")
    if app.path != MEMORY:
        print(f"file size: {_size(app.path)}, WAL size: {_size(app.path + '-wal')}")
    print(f"workers: {len(workers)}")
    rows = []
    for name in sorted(set(counts) | set(queues)):
        per_state = counts.get(name, {})
        state = queues[name].state.value if name in queues else "undeclared"
        rows.append([name, state, *(per_state.get(s, 0) for s in STATES), sum(per_state.values())])
    print(format_table(["queue", "state", *STATES, "total"], rows) if rows else "no queues and no jobs")
    return 0


# ------------------------------------------------------------------ output


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned plain-text columns, two spaces apart, under a header line."""
    lines = [list(headers), *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return _time(value)
    return printable(str(value))


# Characters that reorder the text shown around them ("Trojan Source"): shown escaped, like control characters.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters (but those in ``keep``), lone surrogates and bidirectional controls
    backslash-escaped, so stored text can neither break the layout nor drive the terminal. Emoji, accents and
    other scripts are kept (stdout escapes what its encoding cannot show)."""
    if text.isprintable():
        return text
    return "".join(
        _escape(ch) if ch not in keep and (unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS) else ch
        for ch in text
    )


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _time(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def describe_job(job: QueuedJob) -> str:
    """Every field of a job, one per line, then each error's traceback."""
    fields: list[tuple[str, object]] = [
        ("id", job.id), ("func", job.func), ("queue", job.queue), ("state", job.state.value),
        ("attempts", f"{job.attempts}/{job.max_attempts}"), ("priority", job.priority),
        ("unique_key", job.unique_key), ("limit_key", job.limit_key), ("key_limits", _key_limits(job)),
        ("created_at", job.created_at), ("scheduled_at", job.scheduled_at),
        ("started_at", job.started_at), ("completed_at", job.completed_at), ("kwargs", _json_text(job.kwargs)),
        ("meta", _json_text(job.meta)), ("limits", ", ".join(_limit(lim) for lim in job.limits) or None),
        ("errors", len(job.errors)),
    ]
    width = max(len(name) for name, _ in fields) + 1
    lines = [f"{name + ':':<{width}} {_precise(value)}" for name, value in fields]
    for error in job.errors:
        lines.append(f"--- error in attempt {_cell(error.get('attempt'))} ---")
        lines.append(printable(str(error.get("traceback", "")).rstrip(), keep="\n\t"))
    return "\n".join(lines)


def _precise(value: object) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else _cell(value)


def _key_limits(job: QueuedJob) -> str | None:
    parts = []
    if job.concurrency_max is not None:
        parts.append(f"at most {job.concurrency_max} running")
    if job.rate_limit is not None:
        parts.append(f"at most {job.rate_limit} per {job.rate_limit_window:g} s")
    return ", ".join(parts) or None


def _limit(limit: Limit) -> str:
    return f"{limit.type_.value}={limit.value:g}"


def _json_text(value: object) -> str:
    """Stored JSON for a person: non-ASCII text as itself, then made printable."""
    return printable(json.dumps(value, ensure_ascii=False, default=repr))


def job_to_dict(job: QueuedJob) -> dict[str, Any]:
    data = {field.name: getattr(job, field.name) for field in dataclasses.fields(job) if not field.name.startswith("_")}
    data["claim_id"] = None if job.claim_id is None else str(job.claim_id)
    data.pop("id")
    return {"id": str(job.id), **data, "state": job.state.value}


def job_to_json(job: QueuedJob) -> str:
    """Strict JSON, ASCII only: lone surrogates and control characters escaped (\\udcff), NaN and infinities
    (which a job's meta may hold) as the strings "NaN", "Infinity" and "-Infinity"."""
    return json.dumps(
        _finite(job_to_dict(job)), indent=2, default=_json_default, ensure_ascii=True, allow_nan=False
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Limit):
        return {"type": value.type_.value, "value": value.value}
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def _size(path: str) -> str:
    size = os.path.getsize(path) if os.path.exists(path) else 0
    exponent = min(int(math.log(size, 1024)), 3) if size else 0
    return f"{size} B" if exponent == 0 else f"{size / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def _now(app: Chancy) -> dt.datetime:
    return app.clock() if app.clock is not None else utcnow()


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {printable(message)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

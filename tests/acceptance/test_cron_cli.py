"""``chancy-lite cron list | run-now | remove``, in-process, on a file migrated with the Cron plugin."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chancy_lite import Chancy, Job, QueuedJob
from chancy_lite.cli import DB_ENV, main
from chancy_lite.plugins.cron import Cron


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def app(db_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chancy]:
    monkeypatch.delenv(DB_ENV, raising=False)
    with Chancy(db_path, plugins=[Cron()]) as chancy:
        chancy.sync_migrate()
        yield chancy


@pytest.fixture
def cron(app: Chancy, db_path: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``chancy-lite --db <the file> cron ARGS`` in-process."""

    def run(*argv: str) -> Result:
        code = main(["--db", db_path, "cron", *argv])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def schedule_two(app: Chancy) -> None:
    Cron.sync_schedule(app, "30 2 * * *", Job(func="myproject.jobs.nightly", unique_key="nightly",
                                              kwargs={"note": "café \u202e"}), timezone="America/New_York")
    Cron.sync_schedule(app, "*/5 * * * *", Job(func="myproject.jobs.poll", unique_key="poll", queue="fast"))


def test_list_is_a_table_with_next_runs_in_utc_and_in_the_schedules_zone(app: Chancy, cron: Cli) -> None:
    assert cron("list") == Result(0, "no cron schedules\n", "")
    schedule_two(app)
    result = cron("list")
    assert result.code == 0 and result.err == ""
    header, nightly, poll = result.out.splitlines()
    assert header.split() == ["key", "func", "queue", "cron", "timezone", "next", "run", "next", "run", "(local)",
                              "last", "run"]
    next_nightly = Cron.sync_get_schedules(app)["nightly"]["next_run"]
    assert nightly.startswith("nightly  myproject.jobs.nightly  default  30 2 * * *   America/New_York")
    assert next_nightly.strftime("%Y-%m-%d %H:%M:%SZ") in nightly and " 02:30:00 E" in nightly  # EST or EDT
    assert nightly.endswith("-")  # never run yet
    assert poll.startswith("poll     myproject.jobs.poll     fast     */5 * * * *  Etc/UTC")


def test_list_json(app: Chancy, cron: Cli) -> None:
    schedule_two(app)
    result = cron("list", "--json")
    assert result.code == 0 and result.out.isascii()
    nightly, poll = json.loads(result.out)
    assert nightly["unique_key"] == "nightly" and nightly["timezone"] == "America/New_York"
    assert nightly["job"]["kwargs"] == {"note": "café \u202e"} and nightly["last_run"] is None
    assert dt.datetime.fromisoformat(nightly["next_run"]) == Cron.sync_get_schedules(app)["nightly"]["next_run"]
    assert poll["job"]["queue"] == "fast" and poll["cron"] == "*/5 * * * *"


def test_run_now_pushes_the_job_and_leaves_the_next_run(app: Chancy, cron: Cli) -> None:
    schedule_two(app)
    before = Cron.sync_get_schedules(app)
    result = cron("run-now", "poll")
    assert result.code == 0 and result.err == ""
    job = app.sync_get_job(result.out.strip())
    assert job is not None and job.state is QueuedJob.State.PENDING
    assert (job.func, job.queue, job.unique_key) == ("myproject.jobs.poll", "fast", "poll")
    assert Cron.sync_get_schedules(app) == before
    again = cron("run-now", "poll")  # its job has not run: nothing new, and it says so
    assert again.code == 0 and again.out == result.out
    assert "holds its key (pending): nothing new was pushed" in again.err


def test_remove(app: Chancy, cron: Cli) -> None:
    schedule_two(app)
    assert cron("remove", "poll") == Result(0, "removed cron schedule poll\n", "")
    assert list(Cron.sync_get_schedules(app)) == ["nightly"]


@pytest.mark.parametrize(("args", "message"), [
    (["run-now", "nope"], "no cron schedule has the key 'nope'"),
    (["remove", "nope"], "no cron schedule has the key 'nope'"),
    (["run-now"], "the following arguments are required: key"),
])
def test_mistakes_print_one_line_and_exit_2(cron: Cli, args: list[str], message: str) -> None:
    result = cron(*args)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("chancy-lite: error: ") and message in result.err and result.err.count("\n") == 1


def test_a_file_without_the_cron_table_says_how_to_create_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    path = str(tmp_path / "plain.db")
    assert main(["--db", path, "migrate"]) == 0  # --db: an app without plugins, so no cron table
    capsys.readouterr()
    assert main(["--db", path, "cron", "list"]) == 2
    err = capsys.readouterr().err
    assert "no chancy_cron table" in err and "plugins=[Cron()]" in err and err.count("\n") == 1

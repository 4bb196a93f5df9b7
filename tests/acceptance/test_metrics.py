"""Metrics across real worker processes: two supervisors with two children each run a mix of jobs on one file; the
counts read back, merged over both workers, equal the runs, and each worker's own rows add up to them. The
README's example runs as written."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from chancy_lite import Chancy, Job, Queue
from chancy_lite.plugins.metrics import Metrics
from tests.acceptance.test_readme import README, code_blocks
from tests.conftest import wait_until
from tests.worker_support import Supervisor


def totals(metrics: Metrics, app: Chancy, worker_id: str | None = None) -> dict[str, Any]:
    report = metrics.sync_get_metrics(app, "global", worker_id, resolution="1hour")
    return {key: m.summary for key, m in report["series"].items() if m.summary}


def test_counts_merged_from_two_workers_equal_the_jobs_run(db_path: str, tmp_path: Path) -> None:
    metrics = Metrics()
    with Chancy(db_path, plugins=[metrics], no_default_plugins=True) as app:
        app.sync_migrate()
        app.sync_declare(Queue("work", concurrency=2))
        jobs = [Job(func="tests.jobs.sleep", queue="work", kwargs={"seconds": 0.01}) for _ in range(150)]
        jobs += [Job(func="tests.jobs.fail", queue="work") for _ in range(30)]
        jobs += [Job(func="tests.jobs.fail", queue="work", max_attempts=2) for _ in range(20)]
        want = {"global:status:succeeded": 150, "global:status:failed": 50, "global:status:retrying": 20}
        # Metrics is a default plugin: the supervisors' apps have it.
        with Supervisor(db_path, "--queue", "work:2", "--worker-id", "w1", log_path=tmp_path / "w1.log") as w1, \
                Supervisor(db_path, "--queue", "work:2", "--worker-id", "w2", log_path=tmp_path / "w2.log") as w2:
            w1.wait_ready()
            w2.wait_ready()
            for _ in app.sync_push_many(jobs):
                pass
            wait_until(lambda: app.sync_count_jobs().get("work", {}).get("pending", 0) == 0
                       and sum(app.sync_count_jobs()["work"].get(s, 0) for s in ("succeeded", "failed")) == 200,
                       timeout=60, message="every job finished")
            # Children write their counts as they go idle, right after the last job.
            wait_until(lambda: totals(metrics, app) == want, timeout=20, message=f"counts {totals(metrics, app)}")
            for sup in (w1, w2):
                sup.signal(signal.SIGTERM)
            assert w1.wait(20) == 0 and w2.wait(20) == 0, w1.log() + w2.log()
        assert totals(metrics, app) == want  # stopping wrote nothing twice
        one, two = totals(metrics, app, "w1"), totals(metrics, app, "w2")
        assert one and two, "both workers ran jobs"
        assert {key: one.get(key, 0) + two.get(key, 0) for key in want} == want
        throughput = metrics.sync_get_metrics(app, "queue:work:throughput", resolution="1min", limit=10)
        assert throughput["series"]["queue:work:throughput"].summary == 220
        assert sorted({k.split(":")[1] for k in metrics.sync_list_metrics(app) if k.startswith("job:")}) == [
            "tests.jobs.fail", "tests.jobs.sleep"]


def test_the_readme_metrics_example_runs_as_written(tmp_path: Path) -> None:
    blocks = code_blocks()
    for name in ("tasks.py", "metrics_example.py"):
        (tmp_path / name).write_text(blocks[name])
    result = subprocess.run([sys.executable, "metrics_example.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    shown = re.search(r"\$ python metrics_example.py\n(.*?)```", README.read_text(), flags=re.S)
    assert shown is not None
    assert result.stdout.splitlines() == shown.group(1).strip().splitlines()


def test_the_dashboard_serves_the_plugins_metrics(db_path: str) -> None:
    """The HTTP API's metrics routes (Chancy 0.26's shapes) over the real plugin, a default one."""
    from chancy_lite.testing import drain
    from chancy_lite.web import create_app
    from tests.acceptance.test_web_api import AUTH, make_client, token_of

    with Chancy(db_path) as app:
        app.sync_migrate()
        for _ in app.sync_push_many([Job(func="tests.jobs.noop") for _ in range(4)] + [Job(func="tests.jobs.fail")]):
            pass
        drain(app)
        with make_client(create_app(app, auth=AUTH)) as client:
            client.headers["Authorization"] = f"Bearer {token_of(client)}"
            categories = client.get("/api/v1/metrics").json()
            assert categories["categories"]["queue"] == ["default"] and categories["categories"]["global"] == ["status"]
            report = client.get("/api/v1/metrics/queue:default?resolution=1min").json()
            assert report["resolution"] == "1min" and {"start", "end", "generated_at"} <= set(report)
            succeeded = report["series"]["queue:default:succeeded"]
            assert (succeeded["type"], succeeded["unit"], succeeded["aggregation"], succeeded["summary"]) == (
                "counter", "count", "sum", 4)
            assert [point["value"] for point in succeeded["data"]] == [4]
            timing = report["series"]["queue:default:execution_time"]
            assert timing["type"] == "histogram" and timing["summary"]["count"] == 5
            assert client.get("/api/v1/metrics/queue:default?resolution=2min").status_code == 422
            assert client.get("/metrics/queue:default:throughput").status_code == 200

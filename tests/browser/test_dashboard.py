"""The dashboard in a real headless Chromium, against ``chancy-lite worker web`` running real jobs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chancy_lite import Chancy, Job, QueuedJob
from tests.browser.conftest import PASSWORD, ROOT, Server, log_in, wait_for

SCREENSHOT = ROOT / "docs" / "dashboard.png"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def state_of(chancy: Chancy, job_id: str) -> str:
    job = chancy.sync_get_job(job_id)
    return job.state.value if job is not None else "missing"


def progress_of(chancy: Chancy, job_id: str) -> Any:
    job = chancy.sync_get_job(job_id)
    return job.meta.get("progress") if job is not None else None


def finished(chancy: Chancy, *ids: str) -> bool:
    return all(state_of(chancy, i) in ("succeeded", "failed") for i in ids)


# --------------------------------------------------------------------- login


def test_a_wrong_password_is_refused(page: Any, server: Server) -> None:
    log_in(page, server.url, password="not the password")
    expect(page.locator(".flash.error")).to_have_text("Wrong username or password.")
    assert "/login" in page.url
    assert not [c for c in page.context.cookies() if c["name"] == "chancy_lite_session"]
    page.goto(server.url + "/jobs")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fjobs$"))


# ----------------------------------------------- find, read, retry, succeed


def test_find_a_failed_job_read_its_traceback_retry_it_and_watch_it_succeed(
    page: Any, server: Server, tmp_path: Path
) -> None:
    chancy = server.chancy
    server.declare("reports", concurrency=1)
    server.declare("emails", concurrency=1)
    marker = str(tmp_path / "server-fixed")
    noise = [chancy.sync_push(Job(func="tests.jobs.fail", queue="emails", kwargs={"message": f"bounce {i}"}))
             for i in range(3)]
    target = chancy.sync_push(Job(func="tests.jobs_web.fail_until_fixed", queue="reports", kwargs={"marker": marker}))
    wait_for(lambda: finished(chancy, target.identifier, *(r.identifier for r in noise)), 30, "the jobs to fail")

    log_in(page, server.url)
    expect(page.locator("h1")).to_have_text("Overview")
    page.click("nav.side >> text=failed")
    expect(page.locator("table.jobs tbody tr")).to_have_count(4)
    page.select_option("form.filters select[name=queue]", "reports")
    page.fill("form.filters input[name=func]", "until_fixed")
    page.click("form.filters button[type=submit]")
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(1)
    rows.first.locator("td.func a").click()

    expect(page.locator("h1")).to_have_text("Job tests.jobs_web.fail_until_fixed")
    expect(page.locator(".job-head .badge")).to_have_text("failed")
    expect(page.locator("pre.traceback").first).to_contain_text("ConnectionError: the report server is down")

    Path(marker).touch()  # someone fixes the server
    page.click("#retry")
    expect(page.locator(".flash")).to_contain_text(f"Retried job {target.identifier}.")
    # No reload from here on: the live view swaps the page's state in once the worker has run the job again.
    expect(page.locator(".job-head .badge")).to_have_text("succeeded", timeout=30_000)
    assert state_of(chancy, target.identifier) == "succeeded"
    expect(page.locator("#live-status")).to_have_text("live")


# ---------------------------------------------------------- cancel, progress


def test_cancel_a_running_job_from_its_page_while_its_progress_moves(page: Any, server: Server) -> None:
    chancy = server.chancy
    server.declare("slow", concurrency=1)
    ref = chancy.sync_push(Job(func="tests.jobs_web.work_with_progress", queue="slow",
                               kwargs={"seconds": 60}))
    wait_for(lambda: progress_of(chancy, ref.identifier), 30, "the job to report progress")
    log_in(page, server.url, path=f"/jobs/{ref.identifier}")
    expect(page.locator(".job-head .badge")).to_have_text("running")
    bar = page.locator("#job-progress")
    first = float(bar.get_attribute("value"))
    # the bar moves on its own (the live view refreshes the page's part when the row changes)
    wait_for(lambda: float(page.locator("#job-progress").get_attribute("value")) > first, 15, "the bar to move")

    page.click("#cancel")
    expect(page.locator(".job-head .badge")).to_have_text("failed", timeout=20_000)
    expect(page.locator("pre.traceback").first).to_contain_text("cancelled")
    job = chancy.sync_get_job(ref)
    assert job is not None and job.state is QueuedJob.State.FAILED and job.meta["progress"]["done"] < 240


def test_live_updates_pause_while_the_tab_is_hidden(page: Any, server: Server) -> None:
    log_in(page, server.url)
    status = page.locator("#live-status")
    expect(status).to_have_text("live")
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {value: true, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    expect(status).to_have_text("paused")
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {value: false, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    expect(status).to_have_text("live")


# -------------------------------------------------------------------- queues


def test_pause_and_resume_a_queue(page: Any, server: Server) -> None:
    chancy = server.chancy
    server.declare("batch", concurrency=1)
    log_in(page, server.url, path="/queues")
    row = page.locator('tr[data-queue="batch"]')
    row.locator("button[name=pause]").click()
    expect(page.locator(".flash")).to_have_text("Paused queue batch.")
    expect(page.locator('tr[data-queue="batch"] .badge').first).to_have_text("paused")
    assert chancy.sync_get_queue("batch").state.value == "paused"

    ref = chancy.sync_push(Job(func="tests.jobs_web.quick", queue="batch"))
    page.wait_for_timeout(1500)  # a paused queue's job waits
    assert state_of(chancy, ref.identifier) == "pending"

    page.locator('tr[data-queue="batch"] button[name=resume]').click()
    expect(page.locator(".flash")).to_have_text("Resumed queue batch.")
    expect(page.locator('tr[data-queue="batch"] .badge').first).to_have_text("active")
    wait_for(lambda: state_of(chancy, ref.identifier) == "succeeded", 30, "the job of the resumed queue to run")


def test_bulk_retry_all_failed_jobs_of_a_queue(page: Any, server: Server, tmp_path: Path) -> None:
    chancy = server.chancy
    server.declare("imports", concurrency=2)
    server.declare("exports", concurrency=1)
    marker = str(tmp_path / "fixed")
    mine = [chancy.sync_push(Job(func="tests.jobs_web.fail_until_fixed", queue="imports", kwargs={"marker": marker}))
            for _ in range(5)]
    other = [chancy.sync_push(Job(func="tests.jobs_web.fail_until_fixed", queue="exports", kwargs={"marker": marker}))
             for _ in range(2)]
    ids = [r.identifier for r in (*mine, *other)]
    wait_for(lambda: all(state_of(chancy, i) == "failed" for i in ids), 30, "the jobs to fail")
    Path(marker).touch()

    log_in(page, server.url, path="/jobs?state=failed&queue=imports")
    expect(page.locator("table.jobs tbody tr")).to_have_count(5)
    page.click("button[name=bulk][value=retry]")  # confirmed by the page fixture
    expect(page.locator(".flash")).to_contain_text("Retried 5 of 5 matching job(s)")
    wait_for(lambda: all(state_of(chancy, r.identifier) == "succeeded" for r in mine), 30, "the retried jobs")
    expect(page.locator("table.jobs tbody td.empty")).to_have_text("No jobs here.", timeout=15_000)  # live
    assert [state_of(chancy, r.identifier) for r in other] == ["failed", "failed"]


# ---------------------------------------------------------------------- CSRF


def test_an_action_without_a_csrf_token_is_refused(page: Any, server: Server) -> None:
    chancy = server.chancy
    ref = chancy.sync_push(Job(func="tests.jobs.fail", queue="emails"))
    wait_for(lambda: state_of(chancy, ref.identifier) == "failed", 30, "the job to fail")
    log_in(page, server.url, path=f"/jobs/{ref.identifier}")
    page.evaluate("() => document.querySelector('form[action$=\"/retry\"] input[name=csrf_token]').remove()")
    page.click("#retry")
    expect(page.locator("h1")).to_have_text("Missing or wrong CSRF token")
    assert state_of(chancy, ref.identifier) == "failed"

    page.goto(server.url + f"/jobs/{ref.identifier}")
    bare = page.evaluate("""(id) => fetch(document.body.dataset.root + '/api/v1/jobs/' + id + '/retry',
                                            {method: 'POST', credentials: 'same-origin'}).then(r => r.status)""",
                         ref.identifier)
    assert bare == 403 and state_of(chancy, ref.identifier) == "failed"
    with_token = page.evaluate("(id) => window.chancyLite.post('/api/v1/jobs/' + id + '/retry').then(r => r.status)",
                               ref.identifier)
    assert with_token == 200  # the same call with the page's token goes through: the job runs (and fails) again
    wait_for(lambda: len(chancy.sync_get_job(ref).errors) == 2, 30, "the retried job to fail again")


# ------------------------------------------------------------------- mounting


def test_the_dashboard_mounted_under_admin_jobs_in_a_host_app(page: Any, server: Server, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    host = subprocess.Popen([sys.executable, "-m", "tests.browser.host_app", server.db, PASSWORD],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert host.stdout is not None
        base = host.stdout.readline().split(" ", 1)[1].strip()
        page.goto(base + "/")
        expect(page.locator("body")).to_have_text("the host application")
        log_in(page, base + "/admin/jobs")
        expect(page).to_have_url(base + "/admin/jobs/")
        expect(page.locator("h1")).to_have_text("Overview")
        expect(page.locator("#live-status")).to_have_text("live")  # the event stream, under the prefix
        page.click("nav.side >> text=Queues")
        expect(page).to_have_url(base + "/admin/jobs/queues")
        server.declare("mounted")
        page.reload()
        page.locator('tr[data-queue="mounted"] button[name=pause]').click()
        expect(page).to_have_url(base + "/admin/jobs/queues")
        expect(page.locator(".flash")).to_have_text("Paused queue mounted.")
        assert server.chancy.sync_get_queue("mounted").state.value == "paused"
        page.click("nav.side >> text=failed")
        expect(page).to_have_url(base + "/admin/jobs/jobs?state=failed")
        page.locator("table.jobs tbody tr td.func a").first.click()
        expect(page).to_have_url(re.compile(re.escape(base) + r"/admin/jobs/jobs/[0-9a-f-]{36}$"))
    finally:
        host.send_signal(signal.SIGTERM)
        try:
            host.wait(10)
        except subprocess.TimeoutExpired:
            host.kill()
            host.wait(10)


# ---------------------------------------------------------------- screenshot


def test_screenshot_for_the_readme(page: Any, tmp_path: Path) -> None:
    """The README's picture: a dashboard with some history. Written to docs/dashboard.png when
    CHANCY_LITE_UPDATE_SCREENSHOT=1, else to a temporary file (so a test run leaves the repository as it was)."""
    shown = Server(tmp_path)
    try:
        chancy = shown.chancy
        for name, concurrency in (("emails", 2), ("reports", 1), ("imports", 1)):
            shown.declare(name, concurrency=concurrency)
        refs = [chancy.sync_push(Job(func="tests.jobs_web.quick", queue="emails", kwargs={"n": i})) for i in range(40)]
        refs += [chancy.sync_push(Job(func="tests.jobs.fail", queue="imports", kwargs={"message": f"row {i} is bad"}))
                 for i in range(3)]
        wait_for(lambda: finished(chancy, *(r.identifier for r in refs)), 60, "the jobs")
        long = chancy.sync_push(Job(func="tests.jobs_web.work_with_progress", queue="reports",
                                    kwargs={"seconds": 12}))
        wait_for(lambda: (progress_of(chancy, long.identifier) or {}).get("done", 0) >= 18, 30, "progress")
        log_in(page, shown.url)
        expect(page.locator("#live-status")).to_have_text("live")
        page.wait_for_timeout(1200)
        target = SCREENSHOT if os.environ.get("CHANCY_LITE_UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
        target.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(target))
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        shown.stop()


pytestmark = pytest.mark.timeout(180)

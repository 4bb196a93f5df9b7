"""The Django Tasks backend in a real Django project: enqueue from a view, run with the management command, read
the result (Django 6's django.tasks, or the django-tasks backport on older Django)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chancy_lite import Chancy

pytest.importorskip("django")


def _has_tasks() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("django.tasks") is not None
    except ImportError:
        return importlib.util.find_spec("django_tasks") is not None


if not _has_tasks() and importlib.util.find_spec("django_tasks") is None:
    pytest.skip("neither django.tasks (Django 6) nor the django-tasks backport is installed", allow_module_level=True)

TASKS_IMPORT = ("try:\n    from django.tasks import task\nexcept ImportError:\n"
                "    from django_tasks import task\n")
FILES = {
    "manage.py": ("import os, sys\nfrom django.core.management import execute_from_command_line\n"
                  "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n"
                  "execute_from_command_line(sys.argv)\n"),
    "shop/__init__.py": "",
    "shop/settings.py": (
        "import os\nSECRET_KEY = 'test'\nUSE_TZ = True\nDATABASES = {}\n"
        "INSTALLED_APPS = ['chancy_lite.contrib.django']\n"
        "TASKS = {'default': {'BACKEND': 'chancy_lite.contrib.django.backend.ChancyLiteBackend',\n"
        "                     'QUEUES': ['default', 'mail'],\n"
        "                     'OPTIONS': {'path': os.environ['SHOP_JOBS_DB']}}}\n"
    ),
    "shop/tasks.py": TASKS_IMPORT + (
        "@task(priority=10)\ndef add(a, b):\n    return {'sum': a + b}\n\n"
        "@task(takes_context=True, queue_name='mail')\ndef send(context, to):\n"
        "    return f'sent to {to} on attempt {context.attempt}'\n\n"
        "@task\ndef boom():\n    raise ValueError('no')\n"
    ),
    "shop/views.py": (
        "import datetime as dt\nfrom django.http import JsonResponse\nfrom shop import tasks\n\n"
        "def checkout(request):\n"
        "    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)\n"
        "    ids = [tasks.add.enqueue(2, b=3).id, tasks.send.enqueue('ann@example.com').id,\n"
        "           tasks.boom.enqueue().id, tasks.add.using(run_after=later, priority=-5).enqueue(1, b=1).id]\n"
        "    return JsonResponse({'ids': ids})\n"
    ),
    "enqueue.py": (
        "import django, json\ndjango.setup()\nfrom django.test import RequestFactory\nfrom shop.views import checkout\n"
        "print(checkout(RequestFactory().post('/checkout')).content.decode())\n"
    ),
    "results.py": (
        "import django, json, sys\ndjango.setup()\nfrom shop.tasks import add\n"
        "out = []\nfor rid in sys.argv[1:]:\n    r = add.get_backend().get_result(rid)\n"
        "    out.append({'status': str(r.status), 'value': r.return_value if r.status == 'SUCCESSFUL' else None,\n"
        "                'errors': len(r.errors), 'attempts': r.attempts, 'args': r.args, 'kwargs': r.kwargs,\n"
        "                'finished': r.finished_at is not None})\n"
        "print(json.dumps(out))\n"
    ),
}


def test_enqueue_from_a_view_run_with_the_worker_command_read_the_result(tmp_path: Path) -> None:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    db = tmp_path / "jobs.db"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHANCY_LITE_AS_CHANCY")}
    env.update(SHOP_JOBS_DB=str(db), DJANGO_SETTINGS_MODULE="shop.settings", PYTHONPATH=str(tmp_path))

    def run(*argv: str) -> str:
        done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    Chancy(db).sync_migrate()
    ids = json.loads(run("enqueue.py"))["ids"]
    app = Chancy(db)
    add_job = app.sync_get_job(ids[0])
    assert add_job is not None and add_job.priority == 10 and add_job.queue == "default"
    later = app.sync_get_job(ids[3])
    assert later is not None and later.priority == -5 and later.scheduled_at > add_job.scheduled_at

    worker = subprocess.Popen([sys.executable, "manage.py", "chancy_lite_worker"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not all(j.is_finished for j in app.sync_get_jobs(ids)):
            assert time.monotonic() < deadline, "the worker did not finish the tasks"
            assert worker.poll() is None, worker.communicate()[0]
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
    app.close()

    results = json.loads(run("results.py", *ids))
    assert results[0] == {"status": "SUCCESSFUL", "value": {"sum": 5}, "errors": 0, "attempts": 1, "args": [2],
                          "kwargs": {"b": 3}, "finished": True}, output
    assert results[1]["status"] == "SUCCESSFUL" and results[1]["value"] == "sent to ann@example.com on attempt 1"
    assert results[2]["status"] == "FAILED" and results[2]["errors"] == 1  # max_attempts 1: never retried
    assert results[3]["value"] == {"sum": 2}
    missing = subprocess.run([sys.executable, "-c", "import django; django.setup(); from shop.tasks import add\n"
                              "try:\n    add.get_backend().get_result('00000000-0000-0000-0000-000000000000')\n"
                              "except Exception as e:\n    print(type(e).__name__)"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert missing.stdout.strip() == "TaskResultDoesNotExist", missing.stderr

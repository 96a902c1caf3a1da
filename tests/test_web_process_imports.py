"""The site's processes stay thin: loading every page and the admin imports no learning library.

torch alone costs a gunicorn worker over a second of start-up and some 200 MB of
memory; the libraries below belong to the workers and commands that train or
predict.  Pages queue work by task name (``rlhf.dispatch``, ``annotations.dispatch``),
so not even the task modules load in a web process with a broker.  The checks run in
a fresh interpreter, because this test process has long since imported them for
other tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium")
ROOT = Path(__file__).resolve().parent.parent

# Loads what a web process loads, and names the project frames that first imported each heavy library.
SCRIPT = """
import json, os, sys, traceback

HEAVY = %(heavy)r
ROOT = %(root)r
first_importer = {}


class Tracer:
    def find_spec(self, name, path=None, target=None):
        if name in HEAVY and name not in first_importer:
            frames = [f for f in traceback.extract_stack()[:-1]
                      if f.filename.startswith(ROOT) and "site-packages" not in f.filename]
            first_importer[name] = " <- ".join(
                f"{os.path.relpath(f.filename, ROOT)}:{f.lineno}" for f in reversed(frames))
        return None


sys.meta_path.insert(0, Tracer())

import django

django.setup()  # runs admin.autodiscover(): every app's admin module

from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver

import feedback_site.urls


def views(resolver):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from views(pattern)
        elif isinstance(pattern, URLPattern):
            yield pattern.lookup_str


n_views = len(list(views(get_resolver())))
admin.site.get_urls()

from annotations.dispatch import export_enqueue, upload_analysis_enqueue
from rlhf.dispatch import cycle_dispatch, retarget_job_enqueue

# Queue one of each kind of work, as the pages do, to the broker (an in-memory one here).
export_enqueue(1)
upload_analysis_enqueue(1)
retarget_job_enqueue(1)
cycle_dispatch(1, ["train_reward_model", "train_policy", "propose"])
from kombu import Connection
with Connection("memory://") as connection:
    queued = {name: connection.SimpleQueue(name).qsize() for name in ("default", "training")}

print(json.dumps({"n_views": n_views, "queued": queued,
                  "task_modules": sorted(m for m in ("annotations.tasks", "rlhf.tasks") if m in sys.modules),
                  "loaded": {name: first_importer.get(name, "?") for name in HEAVY if name in sys.modules}}))
"""


def test_pages_admin_and_queuing_work_import_no_learning_library():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "feedback_site.settings", "SECRET_KEY": "web-process-import-test",
           "CELERY_BROKER_URL": "memory://",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT % {"heavy": HEAVY, "root": str(ROOT) + os.sep}],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The walk really reached the pages and the tasks (a broken walk would pass vacuously).
    assert result["n_views"] > 20
    # Every piece of work reached the broker (the cycle's first step; the rest ride on it) ...
    assert result["queued"] == {"default": 3, "training": 1}
    # ... without loading the task modules, which import what they run.
    assert result["task_modules"] == []
    assert result["loaded"] == {}, "the site imported: " + "; ".join(
        f"{name} (first from {chain})" for name, chain in result["loaded"].items())

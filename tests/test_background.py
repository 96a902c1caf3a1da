"""With no broker, a task started from a web page runs in a thread of the site, not inside the request."""
from __future__ import annotations

import threading
import time

import pytest
from django.test import Client

from annotations.models import ExportJob
from tests.annotations.factories import make_comparison, make_judgement, make_user


@pytest.mark.django_db(transaction=True)
def test_export_started_from_the_api_finishes_after_the_response(settings, storage_root, monkeypatch):
    settings.TASKS_IN_THREAD = True
    admin = make_user("boss", role="admin")
    annotator = make_user("ears", role="annotator")
    make_judgement(annotator, make_comparison(), choice="b", confidence=2)
    release = threading.Event()

    import annotations.tasks as tasks

    real_run = tasks.export_job_run

    def slow_run(*, job_id):
        assert release.wait(30), "the test never released the export"
        return real_run(job_id=job_id)

    monkeypatch.setattr(tasks, "export_job_run", slow_run)
    client = Client()
    client.force_login(admin)

    response = client.post("/api/exports/", {"format": "jsonl", "filters": {}}, content_type="application/json")

    # The request returned while the export was still held back: it did not run inline.
    assert response.status_code == 201
    job_id = response.json()["id"]
    assert ExportJob.objects.get(pk=job_id).status == ExportJob.Status.QUEUED
    release.set()
    deadline = time.monotonic() + 30
    while ExportJob.objects.get(pk=job_id).status != ExportJob.Status.DONE:
        assert time.monotonic() < deadline, ExportJob.objects.get(pk=job_id).error
        time.sleep(0.1)
    assert ExportJob.objects.get(pk=job_id).n_rows == 1

"""The production path: PostgreSQL and a real Celery worker process over Redis.

The rest of the suite runs tasks in-process; these tests prove that the same
services run in a separate worker that shares only the database, the broker
and the storage root with the site.
"""
from __future__ import annotations

import time

import pytest
from django.test import Client

from annotations.models import ExportJob
from tests.annotations.factories import make_comparison, make_judgement, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.celery, pytest.mark.slow]


def test_training_tasks_are_routed_to_their_own_queue():
    from feedback_site.celery import app

    route = app.amqp.router.route({}, "rlhf.tasks.train_reward_model_task")
    assert route["queue"].name == "training"
    assert app.amqp.router.route({}, "annotations.export_run")["queue"].name == "default"


def test_background_export_runs_in_a_real_worker(celery_worker_process, storage_root):
    celery_worker_process()
    admin = make_user("exporter", role="admin")
    annotator = make_user("ears", role="annotator")
    for _ in range(3):
        make_judgement(annotator, make_comparison(), choice="a", confidence=4)
    client = Client()
    client.force_login(admin)

    response = client.post("/api/exports/", {"format": "csv", "filters": {}}, content_type="application/json")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = ExportJob.objects.get(pk=job_id)
        if job.status in (ExportJob.Status.DONE, ExportJob.Status.FAILED):
            break
        time.sleep(0.5)
    assert job.status == ExportJob.Status.DONE, job.error or celery_worker_process.log_path.read_text()[-2000:]
    assert job.n_rows == 3
    download = client.get(f"/api/exports/{job_id}/download/")
    body = b"".join(download.streaming_content).decode()
    assert len(body.strip().splitlines()) == 1 + 3  # header + rows

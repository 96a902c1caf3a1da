"""With no broker, a task started from a web page runs in a thread of the site, not inside the request."""
from __future__ import annotations

import threading

import pytest
from django.test import Client

from annotations.models import ExportJob
from rlhf.models import Cycle
from tests.annotations.factories import make_comparison, make_judgement, make_user


def join_task_threads(*, timeout: float = 30) -> None:
    """Wait for the site's task threads to end, without reading the database meanwhile.

    The test database is SQLite in memory with a shared cache, whose table locks make a write
    fail at once (no busy wait) while another connection reads: polling a job's status while its
    thread saves it could fail the thread's write.
    """
    for thread in [t for t in threading.enumerate() if t.name.startswith("task-")]:
        thread.join(timeout=timeout)
        assert not thread.is_alive(), thread.name


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
    join_task_threads()
    job = ExportJob.objects.get(pk=job_id)
    assert job.status == ExportJob.Status.DONE, job.error
    assert job.n_rows == 1


@pytest.mark.django_db(transaction=True)
def test_a_cycle_started_from_the_api_runs_its_steps_in_a_thread_in_order(settings):
    """The API answers at once; the thread then runs the steps one after another (here the first one
    fails: the judged pairs are factory rows without audio analysis, and the later ones, linked to
    it, see an ended cycle)."""
    from tests.rlhf.cycle_data import judged_pairs

    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 6, 6
    judged_pairs(n_pairs=6)  # past the preflight, so the cycle is queued
    settings.TASKS_IN_THREAD = True
    client = Client()
    client.force_login(make_user("curie", role="researcher"))

    response = client.post("/api/rlhf/cycles/", {"ppo_timesteps": 128}, content_type="application/json")

    assert response.status_code == 201
    cycle_id = response.json()["id"]
    # The thread also runs the linked later steps (no-ops on an ended cycle); it ends by itself.
    join_task_threads(timeout=60)
    cycle = Cycle.objects.get(pk=cycle_id)
    assert cycle.status == Cycle.Status.FAILED and "train_reward_model" in cycle.error, cycle.log
    assert cycle.reward_model_version is None and cycle.policy_version is None

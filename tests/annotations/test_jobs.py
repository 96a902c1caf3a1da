"""Recovery of long jobs whose worker stopped (annotations.jobs): every kind, its reason, its partial files."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from annotations.jobs import job_heartbeat, job_scratch_path, job_storing, jobs_recover
from annotations.models import ExportJob, TrackUpload
from annotations.uploads import track_upload_run
from rlhf.cycle.state import cycle_create
from rlhf.models import Cycle, RetargetJob
from tests.annotations.factories import make_edit, make_track, make_user
from tests.rlhf.cycle_data import TINY

pytestmark = pytest.mark.django_db

OLD = timedelta(minutes=10)


def _ago(delta: timedelta):
    return timezone.now() - delta


def _scratch_with_a_partial_file(kind: str, pk: int):
    path = job_scratch_path(kind, pk)
    path.mkdir(parents=True)
    (path / "half.wav").write_bytes(b"\0" * 1000)
    return path


def _upload(status: str, heartbeat_at) -> TrackUpload:
    row = TrackUpload.objects.create(uploaded_by=make_user(), original_name="song.wav", size_bytes=1000,
                                     status=status, progress=0.3, heartbeat_at=heartbeat_at)
    row.file.save(f"{row.pk}.wav", ContentFile(b"\0" * 1000), save=True)
    return row


def test_a_stale_upload_fails_with_the_reason_and_its_files_go(storage_root):
    row = _upload(TrackUpload.Status.ANALYSING, _ago(OLD))
    scratch = _scratch_with_a_partial_file("upload", row.pk)
    stored = row.file.name

    [recovered] = jobs_recover()

    assert (recovered.kind, recovered.pk) == ("upload", row.pk)
    row.refresh_from_db()
    assert row.status == TrackUpload.Status.FAILED and row.finished_at is not None
    assert row.message == "song.wav: the worker running it stopped (heartbeat 10 min old); upload the file again"
    assert not default_storage.exists(stored) and not row.file and not scratch.exists()


def test_live_finished_and_queued_uploads_are_left_alone(storage_root):
    live = _upload(TrackUpload.Status.ANALYSING, _ago(timedelta(seconds=30)))
    done = _upload(TrackUpload.Status.DONE, _ago(OLD))
    queued = _upload(TrackUpload.Status.QUEUED, None)  # waits in the broker, not in a dead worker
    TrackUpload.objects.filter(pk=queued.pk).update(created_at=_ago(OLD))
    scratch = _scratch_with_a_partial_file("upload", live.pk)

    assert jobs_recover() == []

    for row, status in ((live, "analysing"), (done, "done"), (queued, "queued")):
        row.refresh_from_db()
        assert row.status == status and default_storage.exists(row.file.name)
    assert scratch.exists()


def test_a_redelivered_upload_task_leaves_an_ended_upload_as_it_is(storage_root):
    row = _upload(TrackUpload.Status.ANALYSING, _ago(OLD))
    jobs_recover()
    again = track_upload_run(upload_id=row.pk)  # the broker's second delivery, after the visibility timeout
    assert again.status == TrackUpload.Status.FAILED and "worker running it stopped" in again.message


def _export(status: str, heartbeat_at) -> ExportJob:
    return ExportJob.objects.create(requested_by=make_user(role="admin"), format="csv", status=status,
                                    heartbeat_at=heartbeat_at)


def test_a_stale_export_fails_and_its_partial_files_go_but_not_another_exports(storage_root):
    job, other = _export(ExportJob.Status.RUNNING, _ago(OLD)), _export(ExportJob.Status.DONE, _ago(OLD))
    mine = default_storage.save(f"exports/export-{job.pk}-20250101T000000.card.json", ContentFile(b"{}"))
    theirs = default_storage.save(f"exports/export-{other.pk}-20250101T000000.csv", ContentFile(b"a\n"))
    scratch = _scratch_with_a_partial_file("export", job.pk)

    assert [(r.kind, r.pk) for r in jobs_recover()] == [("export", job.pk)]

    job.refresh_from_db()
    assert job.status == ExportJob.Status.FAILED
    assert job.error == "the worker running it stopped (heartbeat 10 min old); start the export again"
    assert not default_storage.exists(mine) and not scratch.exists()
    assert default_storage.exists(theirs)


def test_the_export_api_shows_a_stale_export_as_failed_without_waiting_for_a_worker(storage_root):
    job = _export(ExportJob.Status.RUNNING, _ago(OLD))
    client = Client()
    client.force_login(job.requested_by)
    body = client.get(f"/api/exports/{job.pk}/").json()
    assert body["status"] == "failed" and "worker running it stopped" in body["error"]


def test_a_fresh_export_is_left_alone(storage_root):
    job = _export(ExportJob.Status.RUNNING, _ago(timedelta(seconds=10)))
    assert jobs_recover() == []
    job.refresh_from_db()
    assert job.status == ExportJob.Status.RUNNING


def _retarget(status: str, heartbeat_at) -> RetargetJob:
    return RetargetJob.objects.create(track=make_track(), target_seconds=30.0, methods=["heuristic"], status=status,
                                      progress=0.1, heartbeat_at=heartbeat_at)


def test_a_stale_retarget_job_fails_with_the_reason_and_others_stay(storage_root):
    stale = _retarget(RetargetJob.Status.RUNNING, _ago(OLD))
    live = _retarget(RetargetJob.Status.RUNNING, _ago(timedelta(seconds=10)))
    done = _retarget(RetargetJob.Status.DONE, _ago(OLD))

    assert [(r.kind, r.pk) for r in jobs_recover()] == [("retarget", stale.pk)]

    stale.refresh_from_db()
    assert stale.status == RetargetJob.Status.FAILED and stale.finished_at is not None
    assert stale.error == "the worker running it stopped (heartbeat 10 min old); start the retarget again"
    for row, status in ((live, "running"), (done, "done")):
        row.refresh_from_db()
        assert row.status == status


def test_a_stale_retarget_job_removes_the_edit_files_it_stored_without_a_row_and_keeps_the_others(storage_root):
    kept = make_edit(make_track(), range(16))  # an edit whose row committed: its files are no orphans
    stale = _retarget(RetargetJob.Status.RUNNING, _ago(OLD))
    orphans = [default_storage.save(f"edits/track{stale.track_id}/half{suffix}", ContentFile(b"\0" * 100))
               for suffix in (".wav", ".mp3")]
    scratch = job_scratch_path("retarget", stale.pk)
    scratch.mkdir(parents=True)
    for name in [kept.audio.name, *orphans, "edits/never-stored.wav"]:
        job_storing(scratch, name)

    assert [(r.kind, r.pk) for r in jobs_recover()] == [("retarget", stale.pk)]

    assert not any(default_storage.exists(name) for name in orphans)
    assert default_storage.exists(kept.audio.name) and not scratch.exists()


def test_a_stale_cycle_step_is_sent_again_then_fails_and_a_new_cycle_may_start(
        monkeypatch, settings, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("rlhf.cycle.state.cycle_dispatch", lambda pk, steps: sent.append((pk, steps[0])))
    monkeypatch.setattr("rlhf.cycle.state.cycle_require_data", lambda: None)
    settings.CYCLE_MAX_REDISPATCHES = 1
    cycle = cycle_create(parameters=TINY)

    def lose_the_worker():
        Cycle.objects.filter(pk=cycle.pk).update(status=Cycle.Status.TRAINING_REWARD_MODEL,
                                                 celery_task_id="dead-worker-task", heartbeat_at=_ago(OLD))

    lose_the_worker()
    with django_capture_on_commit_callbacks(execute=True):
        assert [(r.kind, r.pk) for r in jobs_recover()] == [("cycle", cycle.pk)]
    cycle.refresh_from_db()
    assert cycle.is_running and sent == [(cycle.pk, "train_reward_model")]
    assert "the worker running it stopped (heartbeat 10 min old)" in cycle.log

    lose_the_worker()  # the re-dispatched step's worker dies too: no third try
    with django_capture_on_commit_callbacks(execute=True):
        new = cycle_create(parameters=TINY)  # the refusal recovers first
    cycle.refresh_from_db()
    assert not cycle.is_running and cycle.status == Cycle.Status.FAILED
    assert cycle.error == ("train_reward_model: the worker running it stopped (heartbeat 10 min old) after "
                           "1 re-dispatches; start a new cycle")
    assert new.is_running and len(sent) == 1


def test_a_cycle_whose_step_beats_is_left_alone():
    cycle = cycle_create(parameters=TINY)
    Cycle.objects.filter(pk=cycle.pk).update(status=Cycle.Status.TRAINING_POLICY, celery_task_id="live",
                                             heartbeat_at=_ago(timedelta(seconds=20)))
    assert jobs_recover() == []


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_from_a_thread_while_the_job_is_busy(storage_root):
    row = _upload(TrackUpload.Status.ANALYSING, None)
    with job_heartbeat(TrackUpload, row.pk, running=(TrackUpload.Status.ANALYSING,), every_seconds=0.05):
        TrackUpload.objects.filter(pk=row.pk).update(heartbeat_at=_ago(OLD))
        time.sleep(0.5)  # a long call that reports nothing (librosa's analysis)
        row.refresh_from_db()
        assert timezone.now() - row.heartbeat_at < timedelta(seconds=5)
    TrackUpload.objects.filter(pk=row.pk).update(heartbeat_at=_ago(OLD))
    time.sleep(0.2)
    row.refresh_from_db()
    assert row.heartbeat_at < _ago(timedelta(minutes=5))  # the beat stops with the job

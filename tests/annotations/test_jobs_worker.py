"""Jobs orphaned by a worker killed with SIGKILL end once a new worker starts: a real worker over Redis on PostgreSQL.

Each job is stopped mid-way by a table lock that another connection holds (a real job on the
real worker, waiting on the database the way a slow step would), the worker is killed, and a
new worker's recovery must end every job, with its reason, and leave no partial file.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from annotations.export import export_job_start
from annotations.jobs import job_scratch_path
from annotations.models import Edit, ExportJob, TrackUpload
from annotations.selectors import ExportFilters
from annotations.services import track_ingest
from annotations.uploads import track_upload_start
from editing.demo import write_demo_corpus
from rlhf.models import RetargetJob
from rlhf.retarget.services import retarget_job_start
from tests.annotations.factories import make_comparison, make_judgement, make_user

pytestmark = [pytest.mark.slow, pytest.mark.celery, pytest.mark.postgres]

# The new worker presumes a job dead after 10 s of silence (the default is 5 min) and looks every 2 s.
FAST_RECOVERY = {"JOB_HEARTBEAT_SECONDS": "2", "JOB_STALE_AFTER_SECONDS": "10", "JOB_RECOVER_EVERY_SECONDS": "2"}


def _wait(what: str, predicate, *, timeout: float, log: Path) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s; worker log:\n{log.read_text()[-4000:]}")


def _files(root: Path, folder: str) -> list[str]:
    base = root / folder
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file()) if base.is_dir() else []


def test_jobs_of_a_killed_worker_end_within_two_minutes_of_a_new_worker_with_no_partial_files(
        storage_root, celery_worker_process, tmp_path):
    log = celery_worker_process.log_path
    audio = write_demo_corpus(tmp_path / "demo", seed=0, n_tracks=2)
    track, _ = track_ingest(path=audio[0])
    exporter = make_user("exporter", role="admin")
    for _ in range(3):
        make_judgement(make_user(), make_comparison(), choice="a", confidence=4)
    edit_files = set(_files(storage_root, "edits"))

    worker = celery_worker_process(env=FAST_RECOVERY, concurrency=3)
    dsn = "host={HOST} port={PORT} user={USER} dbname={NAME}".format(
        **{k: connection.settings_dict[k] or d for k, d in (("HOST", "127.0.0.1"), ("PORT", 5432),
                                                               ("USER", "postgres"), ("NAME", ""))})
    lock = psycopg.connect(dsn)
    try:
        # The retarget job renders its edit and stores its files, then waits where it inserts the edit's row
        # (SHARE lets it read edits, not write one); the export waits where it reads judgements, the upload
        # where it looks for a track with the same content (after copying the file to its scratch).
        lock.execute("LOCK TABLE annotations_edit IN SHARE MODE")
        lock.execute("LOCK TABLE annotations_judgement IN ACCESS EXCLUSIVE MODE")
        retarget = retarget_job_start(requested_by=exporter, duration=track.duration_seconds * 0.75, track=track, methods=["heuristic"])
        _wait("the retarget job running", lambda: RetargetJob.objects.get(pk=retarget.pk).status == "running",
              timeout=90, log=log)
        # Killed mid-render: the edit's WAV and its listening copy are stored, its row is not.
        _wait("the retarget's edit files stored", lambda: len(set(_files(storage_root, "edits")) - edit_files) >= 2,
              timeout=90, log=log)
        lock.execute("LOCK TABLE annotations_track IN ACCESS EXCLUSIVE MODE")
        upload = track_upload_start(uploaded_by=exporter, upload=SimpleUploadedFile(
            "long song.wav", audio[1].read_bytes(), content_type="audio/wav"))
        export = export_job_start(requested_by=exporter, fmt="csv", filters=ExportFilters.parse({}))
        _wait("the upload copied to its scratch folder", lambda: TrackUpload.objects.get(pk=upload.pk).progress == 0.3,
              timeout=90, log=log)
        _wait("the export running", lambda: ExportJob.objects.get(pk=export.pk).status == "running", timeout=90, log=log)
        assert any(job_scratch_path("upload", upload.pk).iterdir())  # the partial copy a kill leaves behind
        assert (job_scratch_path("retarget", retarget.pk) / "storing.txt").is_file()  # its notes of the edit files
        assert job_scratch_path("export", export.pk).is_dir()

        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        lock.close()  # its transaction ends: the tables are free again

    celery_worker_process(env=FAST_RECOVERY)

    def ended() -> bool:
        return (TrackUpload.objects.get(pk=upload.pk).status == TrackUpload.Status.FAILED
                and ExportJob.objects.get(pk=export.pk).status == ExportJob.Status.FAILED
                and RetargetJob.objects.get(pk=retarget.pk).status == RetargetJob.Status.FAILED)

    _wait("every job of the killed worker ended", ended, timeout=120, log=log)

    upload, export, retarget = (TrackUpload.objects.get(pk=upload.pk), ExportJob.objects.get(pk=export.pk),
                                RetargetJob.objects.get(pk=retarget.pk))
    assert upload.message.startswith("long song.wav: the worker running it stopped (heartbeat ")
    assert upload.message.endswith("; upload the file again")
    assert "the worker running it stopped" in export.error and "the worker running it stopped" in retarget.error
    assert not upload.file and not export.file
    # No partial file: no scratch folder, no stored upload, no export file, no edit without its row.
    assert _files(storage_root, "tmp/jobs") == []
    assert _files(storage_root, "uploads") == [] and _files(storage_root, "exports") == []
    referenced = {name for row in Edit.objects.values_list("audio", "listening_audio") for name in row}
    assert set(_files(storage_root, "edits")) - edit_files - referenced == set()

"""Audio uploads from the admin: size-checked, stored, then analysed by a task that reports its progress.

The request only checks the size (before the body is read, see
``feedback_site.limits``), stores the file and queues its analysis; the task
(``annotations.tasks.track_upload_analyse``, or a retarget job for the retarget
page's uploads) runs :func:`track_upload_run`,
which calls the same ``track_ingest`` as ``manage.py ingest_audio``.  Messages
shown to the uploader name the file as it was uploaded, never a server path.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from editing.audio import AudioError

from .dispatch import upload_analysis_enqueue
from .errors import AnnotationError
from .jobs import JobKind, job_run, job_scratch
from .models import TrackUpload
from .services import track_ingest

logger = logging.getLogger(__name__)


class UploadTooLarge(AnnotationError):
    """An upload is larger than ``settings.MAX_UPLOAD_BYTES``; refused before it is read."""

    status_code = 413
    code = "upload_too_large"


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1_000_000:.1f} MB"


def upload_check_size(*, n_bytes: int, what: str) -> None:
    """Refuse ``what`` (a file name, or "the upload") when it exceeds ``settings.MAX_UPLOAD_BYTES``."""
    limit = settings.MAX_UPLOAD_BYTES
    if n_bytes > limit:
        raise UploadTooLarge(f"{what} is {_megabytes(n_bytes)}, at most {_megabytes(limit)} can be uploaded at once")


def track_upload_store(*, uploaded_by, upload: UploadedFile, title: str = "") -> TrackUpload:
    """Size-check and store an uploaded file as a queued upload (the admin's and the retarget page's one path).

    The caller queues or runs its analysis (:func:`track_upload_run`).
    """
    name = Path(upload.name or "upload").name[:255]
    upload_check_size(n_bytes=upload.size, what=name)
    with transaction.atomic():
        row = TrackUpload.objects.create(uploaded_by=uploaded_by, original_name=name, title=title,
                                         size_bytes=upload.size)
        row.file.save(f"{row.pk}{Path(name).suffix.lower()}", upload, save=True)
    return row


def track_upload_start(*, uploaded_by, upload: UploadedFile, title: str = "") -> TrackUpload:
    """Store an uploaded file and queue its analysis once the row is committed."""
    with transaction.atomic():
        row = track_upload_store(uploaded_by=uploaded_by, upload=upload, title=title)
        transaction.on_commit(lambda: upload_analysis_enqueue(row.pk))
    return row


def _without_server_paths(message: str, *, local: Path, shown_name: str) -> str:
    """The message with the temporary copy's path, its folder and the storage root taken out."""
    for path, replacement in ((str(local), shown_name), (str(local.parent), ""), (str(settings.STORAGE_ROOT), ""),
                              (tempfile.gettempdir(), "")):
        message = message.replace(path, replacement)
    return message


RUNNING = (TrackUpload.Status.ANALYSING,)


def track_upload_run(*, upload_id: int) -> TrackUpload:
    """Analyse a queued upload into a Track (or find the track with the same content), then drop the upload file.

    The outcome is recorded on the row: ``done`` with its track, ``duplicate``
    with the existing track, or ``refused`` with the reason.  An upload that is not
    queued (a second delivery of the task, or one whose worker stopped and that
    :mod:`annotations.jobs` ended) is left as it is.
    """
    return job_run(TrackUpload, upload_id, queued=TrackUpload.Status.QUEUED, started=TrackUpload.Status.ANALYSING,
                   running=RUNNING, work=_analyse, progress=0.1)


def _analyse(row: TrackUpload) -> TrackUpload:
    with job_scratch(UPLOAD_JOB_NAME, row.pk) as tmp:
        # The local copy keeps the uploaded name: the default title and the analysis's messages use it.
        local = tmp / row.original_name
        try:
            with row.file.open("rb") as source, open(local, "wb") as out:
                shutil.copyfileobj(source, out)
            TrackUpload.objects.filter(pk=row.pk, status__in=RUNNING).update(progress=0.3)
            track, created = track_ingest(path=local, title=row.title or None)
        except AudioError as err:
            row.status, row.message = TrackUpload.Status.REFUSED, _without_server_paths(
                str(err), local=local, shown_name=row.original_name)
        except Exception as err:
            logger.exception("analysis of upload %s failed", row.pk)
            row.status = TrackUpload.Status.REFUSED
            row.message = f"{row.original_name}: the analysis failed ({type(err).__name__}); the server log has details"
        else:
            row.track = track
            if created:
                row.status = TrackUpload.Status.DONE
                row.message = f"{track.title}: {track.n_beats} beats at {track.tempo_bpm:.1f} BPM"
            else:
                row.status = TrackUpload.Status.DUPLICATE
                row.message = f"{row.original_name}: same content as track '{track.title}', nothing added"
    if not TrackUpload.objects.filter(pk=row.pk, status__in=RUNNING).update(
            status=row.status, message=row.message, track=row.track, progress=1.0, finished_at=timezone.now()):
        # Recovery ended it while this process was silent (and removed its file); its ending stands.
        return TrackUpload.objects.get(pk=row.pk)
    _upload_file_drop(row)
    row.refresh_from_db()
    return row


def _upload_file_drop(row: TrackUpload) -> None:
    row.file.delete(save=False)
    TrackUpload.objects.filter(pk=row.pk).update(file="")


UPLOAD_JOB_NAME = "upload"


def _upload_end_stale(row: TrackUpload, reason: str) -> None:
    row.status, row.progress, row.finished_at = TrackUpload.Status.FAILED, 1.0, timezone.now()
    row.message = f"{row.original_name}: {reason}; upload the file again"
    row.save(update_fields=["status", "progress", "finished_at", "message"])


UPLOAD_JOB = JobKind(name=UPLOAD_JOB_NAME, model=TrackUpload, running=RUNNING, end=_upload_end_stale,
                     cleanup=_upload_file_drop)

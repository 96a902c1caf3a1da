"""Long jobs run by a worker (uploads, exports, retarget jobs, cycles): heartbeat, scratch folder, recovery.

One home for what every long job needs to survive a worker that dies mid-job (``kill -9``, an
out-of-memory kill, a lost machine):

* :func:`job_heartbeat` writes the row's ``heartbeat_at`` when the job starts and then every
  ``JOB_HEARTBEAT_SECONDS`` from a thread of the process running it, so a long step that
  reports no progress (librosa's analysis, one PPO update) still shows the job is alive, and
  a dead process stops beating.
* :func:`job_scratch` is the job's own folder for its partial files, named after the job
  (``STORAGE_ROOT/tmp/jobs/<kind>-<id>/``), so whichever process recovers the job can remove
  what the dead one left.  A file the job stores before the row that refers to it commits (an
  edit's audio) is noted there first (:func:`job_storing`), so recovery can remove it too.
* :func:`jobs_recover` ends every running job whose heartbeat is older than
  ``JOB_STALE_AFTER_SECONDS``: each kind says how (an upload, an export and a retarget job
  fail with the reason and can be started again; a cycle re-dispatches its step), then its
  scratch folder and partial files are removed.  It runs when a worker starts, every minute
  in every worker and from the beat schedule (``feedback_site.celery``), and when someone
  looks at a job (:func:`job_refresh`) or is refused a new cycle.

Each app registers its kinds (:func:`job_kind_register`, from its ``AppConfig.ready``);
``annotations`` cannot import ``rlhf``, so the list is filled from both sides.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger(__name__)

SCRATCH_DIR_NAME = "jobs"  # under STORAGE_ROOT/tmp/, beside the model artifacts' partial files


@dataclass(frozen=True)
class JobKind:
    """One kind of long job, as recovery sees it.

    ``running``: the statuses of a job a worker has taken and not finished (a queued job waits
    in the broker, not in a dead worker, and is left alone).  ``end(row, reason)`` records the
    end of a stale job on its row (called with the row locked, inside a transaction); ``cleanup(row)``
    removes partial files kept outside the job's scratch folder (called after the commit, before the
    scratch folder is removed: it may read the job's notes, :func:`job_stored_names`).
    ``taken``: a further condition on the rows that count as taken by a worker.
    """

    name: str
    model: type[models.Model]
    running: tuple[str, ...]
    end: Callable[[models.Model, str], None]
    cleanup: Callable[[models.Model], None] | None = None
    taken: Q = field(default_factory=Q)


@dataclass(frozen=True)
class RecoveredJob:
    kind: str
    pk: int
    reason: str


_KINDS: dict[str, JobKind] = {}


def job_kind_register(kind: JobKind) -> None:
    """Add ``kind`` to the jobs :func:`jobs_recover` watches (once per name: ``AppConfig.ready`` may run twice)."""
    _KINDS[kind.name] = kind


def job_kinds() -> list[JobKind]:
    return list(_KINDS.values())


def job_kind_of(model: type[models.Model]) -> JobKind:
    for kind in _KINDS.values():
        if kind.model is model:
            return kind
    raise LookupError(f"{model.__name__} is not a registered long job")


# --------------------------------------------------------------------------- running a job

@contextmanager
def job_heartbeat(model: type[models.Model], pk: int, *, running: tuple[str, ...],
                  every_seconds: float | None = None) -> Iterator[None]:
    """Beat ``heartbeat_at`` of row ``pk`` now and every ``every_seconds`` (``JOB_HEARTBEAT_SECONDS``) until exit.

    Only a row still in a ``running`` status is touched, so a job recovered meanwhile stays ended.
    The beats after the first come from a thread: they go on while the job's own thread is
    busy in a long call, and stop when the process dies, which is what recovery looks for.
    """
    every = settings.JOB_HEARTBEAT_SECONDS if every_seconds is None else every_seconds
    rows = model.objects.filter(pk=pk, status__in=running)
    rows.update(heartbeat_at=timezone.now())
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(every):
                try:
                    rows.update(heartbeat_at=timezone.now())
                except Exception as err:  # noqa: BLE001 - a missed beat is retried; recovery judges the silence
                    logger.warning("heartbeat of %s %s not written: %s", model.__name__, pk, err)
        finally:
            connections.close_all()  # this thread's own connections

    thread = threading.Thread(target=beat, name=f"heartbeat-{model._meta.model_name}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)


def job_run(model: type[models.Model], pk: int, *, queued: str, started: str, running: tuple[str, ...],
            work: Callable[[models.Model], models.Model], **fields) -> models.Model:
    """Claim row ``pk`` (``queued`` -> ``started``, with ``fields``) and run ``work(row)`` under its heartbeat.

    The claim is one conditional update, so of two deliveries of the same task only one runs the
    work; a row that is not queued (a second delivery, or a job recovery ended) is returned as it is.
    """
    claimed = model.objects.filter(pk=pk, status=queued).update(status=started, **fields)
    row = model.objects.get(pk=pk)
    if not claimed:
        logger.info("%s %s is %s: not run again", model.__name__, pk, row.status)
        return row
    with job_heartbeat(model, pk, running=running):
        return work(row)


def job_scratch_path(kind: str, pk: int) -> Path:
    """The scratch folder of job ``kind`` ``pk`` (not created)."""
    return Path(settings.STORAGE_ROOT) / "tmp" / SCRATCH_DIR_NAME / f"{kind}-{pk}"


STORING_NOTES_NAME = "storing.txt"


def job_storing(scratch: Path | None, name: str) -> None:
    """Note in ``scratch`` (a job's scratch folder) that a file is being stored as ``name``; call before storing it.

    A job killed between storing a file and committing the row that refers to it leaves a file
    nothing refers to; its kind's ``cleanup`` reads these notes (:func:`job_stored_names`) and
    removes those no row took.  Nothing is noted without a scratch folder (work outside a job).
    """
    if scratch is None:
        return
    with open(scratch / STORING_NOTES_NAME, "a", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())  # on disk before the file it names is


def job_stored_names(kind: str, pk: int) -> list[str]:
    """The storage names job ``kind`` ``pk`` noted with :func:`job_storing`, in order (none once its scratch is gone)."""
    path = job_scratch_path(kind, pk) / STORING_NOTES_NAME
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@contextmanager
def job_scratch(kind: str, pk: int) -> Iterator[Path]:
    """A fresh scratch folder for the job's partial files, removed on exit (and by recovery if the process dies)."""
    path = job_scratch_path(kind, pk)
    shutil.rmtree(path, ignore_errors=True)  # a previous attempt's leftovers
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- recovery

def _age_text(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def stale_reason(heartbeat_at, now=None) -> str:
    """What a job recovered with a heartbeat from ``heartbeat_at`` says (its kind adds how to retry)."""
    age = ((now or timezone.now()) - heartbeat_at).total_seconds()
    return f"the worker running it stopped (heartbeat {_age_text(age)} old)"


def _stale(kind: JobKind, cutoff) -> Q:
    # A row taken before heartbeats existed has none: its creation is the last sign of life.
    return (Q(status__in=kind.running) & kind.taken
            & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)))


def _recover_row(kind: JobKind, pk: int, cutoff) -> RecoveredJob | None:
    """End job ``pk`` if it is still stale once locked (another recoverer, or a late beat, may have come first)."""
    with transaction.atomic():
        row = kind.model.objects.select_for_update().filter(_stale(kind, cutoff), pk=pk).first()
        if row is None:
            return None
        reason = stale_reason(row.heartbeat_at or row.created_at)
        kind.end(row, reason)
    if kind.cleanup is not None:
        kind.cleanup(row)
    shutil.rmtree(job_scratch_path(kind.name, pk), ignore_errors=True)
    logger.warning("%s %s recovered: %s", kind.name, pk, reason)
    return RecoveredJob(kind=kind.name, pk=pk, reason=reason)


def jobs_recover(*, stale_after_seconds: float | None = None, kinds: list[str] | None = None) -> list[RecoveredJob]:
    """End every running job (of ``kinds``, default all) whose heartbeat is older than ``stale_after_seconds``.

    ``stale_after_seconds`` defaults to ``JOB_STALE_AFTER_SECONDS``.  Safe to run from several
    processes at once: each job is ended by one of them.
    """
    stale = settings.JOB_STALE_AFTER_SECONDS if stale_after_seconds is None else stale_after_seconds
    cutoff = timezone.now() - timedelta(seconds=stale)
    recovered = []
    for kind in job_kinds():
        if kinds is not None and kind.name not in kinds:
            continue
        for pk in kind.model.objects.filter(_stale(kind, cutoff)).values_list("pk", flat=True):
            done = _recover_row(kind, pk, cutoff)
            if done is not None:
                recovered.append(done)
    return recovered


def job_refresh(row: models.Model) -> models.Model:
    """``row`` as it stands, after recovering it if its worker stopped (pages and APIs that show a job call this)."""
    kind = job_kind_of(type(row))
    if getattr(row, "status", None) not in kind.running:
        return row
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)
    if _recover_row(kind, row.pk, cutoff) is not None:
        row.refresh_from_db()
    return row

"""Celery tasks of the annotation app: thin wrappers around services, queued by name (``annotations.dispatch``).

With no broker configured (the default) Celery runs them in-process (see ``feedback_site.celery``).
"""
from __future__ import annotations

from celery import shared_task

from .export import export_job_run
from .jobs import jobs_recover
from .uploads import track_upload_run


@shared_task(name="annotations.export_run")
def export_run(job_id: int) -> int:
    """Run export job ``job_id``; returns the number of rows written (0 when it failed, see the job)."""
    return export_job_run(job_id=job_id).n_rows


@shared_task(name="annotations.track_upload_analyse")
def track_upload_analyse(upload_id: int) -> str:
    """Analyse upload ``upload_id`` into a track; returns its status (the row holds the outcome)."""
    return track_upload_run(upload_id=upload_id).status


@shared_task(name="annotations.jobs_recover")
def jobs_recover_task() -> str:
    """Periodic (the beat schedule, and every worker): end the long jobs whose worker stopped."""
    recovered = jobs_recover()
    return "; ".join(f"{r.kind} {r.pk}: {r.reason}" for r in recovered) or "no job to recover"

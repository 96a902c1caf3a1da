"""Celery tasks of the annotation app: thin wrappers around services.

With no broker configured (the default) Celery runs them in-process (eager).
"""
from __future__ import annotations

from celery import shared_task

from .export import export_job_run


@shared_task(name="annotations.export_run")
def export_run(job_id: int) -> int:
    """Run export job ``job_id``; returns the number of rows written (0 when it failed, see the job)."""
    return export_job_run(job_id=job_id).n_rows

"""Queue the annotation side's work by task name: services enqueue here and tasks never import this back.

``annotations.tasks`` wraps the services (exports, upload analysis); the services only name
the task, so there is no import circle between them.  Where a name runs (a broker's worker,
a thread of the site, inline) is the Celery app's configuration (``feedback_site.celery``).
"""
from __future__ import annotations

from celery import current_app

EXPORT_TASK = "annotations.export_run"
UPLOAD_ANALYSIS_TASK = "annotations.track_upload_analyse"


def export_enqueue(job_id: int) -> None:
    """Queue export job ``job_id``."""
    current_app.signature(EXPORT_TASK, args=(job_id,)).delay()


def upload_analysis_enqueue(upload_id: int) -> None:
    """Queue the analysis of track upload ``upload_id``."""
    current_app.signature(UPLOAD_ANALYSIS_TASK, args=(upload_id,)).delay()

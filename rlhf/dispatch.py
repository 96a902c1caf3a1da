"""Queue the learning side's work by task name: what enqueues never imports the task modules.

The tasks (``rlhf.tasks``) import the steps they run, and the steps import torch; the pages
and services that start cycles and retarget jobs only name the task.  Whether a name goes to
a broker, a thread of the site or an inline run is the Celery app's configuration
(``feedback_site.celery``).
"""
from __future__ import annotations

from typing import Sequence

from celery import chain, current_app

CYCLE_STEP_TASK = "rlhf.tasks.run_cycle_step"
RETARGET_JOB_TASK = "rlhf.tasks.retarget_job_task"


def cycle_dispatch(cycle_id: int, steps: Sequence[str]) -> None:
    """Send the cycle's ``steps`` in order, each after the previous one succeeded.

    The first step is sent with the rest linked to it, so sending goes through the
    configured route (a worker, a thread of the site or an inline run); a ``chain``'s own
    eager path would bypass that choice and run the whole cycle inside the request.
    """
    first, *rest = (current_app.signature(CYCLE_STEP_TASK, args=(cycle_id, step), immutable=True) for step in steps)
    if rest:
        first.link(chain(*rest) if len(rest) > 1 else rest[0])
    first.delay()


def retarget_job_enqueue(job_id: int) -> None:
    """Queue the work of retarget job ``job_id``."""
    current_app.signature(RETARGET_JOB_TASK, args=(job_id,)).delay()

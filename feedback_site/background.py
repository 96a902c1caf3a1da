"""Send a task to the Celery workers or, with no broker configured, to a thread of this process.

With embedded defaults (no ``CELERY_BROKER_URL``) Celery executes tasks
eagerly, inside the caller.  A web request that starts a retrain cycle or a
large export must not wait minutes for it, so in that mode the task runs in a
daemon thread of the site's process instead; ``TASKS_IN_THREAD=0`` (the test
default) runs it inline, which keeps tests deterministic.
"""
from __future__ import annotations

import logging
import threading

from celery.canvas import Signature
from django.conf import settings
from django.db import connections

from .celery import app

logger = logging.getLogger(__name__)


def enqueue(signature: Signature) -> None:
    """Run ``signature`` on a worker, in a background thread, or inline (see the module docstring)."""
    if not app.conf.task_always_eager or not settings.TASKS_IN_THREAD:
        signature.apply_async()
        return
    thread = threading.Thread(target=_run_here, args=(signature,), name=f"task-{signature.task}", daemon=True)
    thread.start()


def _run_here(signature: Signature) -> None:
    try:
        signature.apply_async()
    except Exception:
        # The services record their own failures (a cycle is marked failed, an
        # export job keeps its error); this log line is for the operator.
        logger.exception("in-process task %s failed", signature.task)
    finally:
        connections.close_all()

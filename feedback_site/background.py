"""The site's Celery task class: a broker, an eager run, or a thread of this process, by configuration.

Apps queue their tasks by name (``annotations.dispatch``, ``rlhf.dispatch``), so the
modules that enqueue never import the task modules (which import what they run: torch,
for training); the Celery app (``feedback_site.celery``) is a :class:`SiteCelery` whose
default task class is :class:`SiteTask`, so where a task runs is decided here and nowhere else:

* ``CELERY_BROKER_URL`` set: the task goes to the workers, as usual.
* no broker, ``TASKS_IN_THREAD`` on (the embedded default): a web request that
  starts a retrain cycle or a large export must not wait minutes for it, so the
  task runs eagerly in a daemon thread of the site's process.  Tasks queued by
  that thread (a cycle's next steps) run inline in the same thread, in order.
* no broker, ``TASKS_IN_THREAD=0`` (the test default): the task runs inline,
  which keeps tests deterministic.

Without a broker the site is its own worker: the first task it queues loads the task
modules through Celery's own autodiscovery (:meth:`SiteCelery.send_task`).
"""
from __future__ import annotations

import logging
import threading

from celery import Celery, Task
from celery.utils import uuid
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

_local = threading.local()


class SiteCelery(Celery):
    """The site's Celery app: a task sent by name with no broker runs here, through its task class."""

    def send_task(self, name, args=None, kwargs=None, **options):
        if not self.conf.task_always_eager:
            return super().send_task(name, args, kwargs, **options)
        # No broker: this process runs its own tasks, so it registers them (the apps' tasks
        # modules, as a worker would at start) and applies the task, which SiteTask routes.
        self.loader.import_default_modules()
        return self.tasks[name].apply_async(args=args, kwargs=kwargs, **options)


class SiteTask(Task):
    """Default task class of the site's Celery app (see the module docstring)."""

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None,
                    shadow=None, **options):
        run = super().apply_async
        task_id = task_id or uuid()
        call = dict(args=args, kwargs=kwargs, task_id=task_id, producer=producer, link=link,
                    link_error=link_error, shadow=shadow, **options)
        if not self.app.conf.task_always_eager or not settings.TASKS_IN_THREAD or getattr(_local, "inside", False):
            return run(**call)
        thread = threading.Thread(target=_run_in_thread, args=(self.name, run, call), name=f"task-{self.name}",
                                  daemon=True)
        thread.start()
        return self.AsyncResult(task_id)


def _run_in_thread(name: str, run, call: dict) -> None:
    _local.inside = True
    try:
        run(**call)
    except Exception:
        # The services record their own failures (a cycle is marked failed, an
        # export job keeps its error); this log line is for the operator.
        logger.exception("in-process task %s failed", name)
    finally:
        _local.inside = False
        connections.close_all()

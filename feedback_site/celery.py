"""The Celery app.  Training tasks go to their own queue so GPU workers can take them alone.

Run workers with ``celery -A feedback_site worker -Q default`` and
``celery -A feedback_site worker -Q training --concurrency 1`` (on a GPU machine).

Every worker recovers the long jobs that a dead worker left running (``annotations.jobs``) as
soon as it is ready and then every ``JOB_RECOVER_EVERY_SECONDS``, so recovery needs no beat
process (the beat schedule runs it too, for sites whose workers are all busy or gone).
"""
import logging
import os
import threading
import time

from celery.signals import worker_process_init, worker_ready
from django.conf import settings
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_site.settings")

from annotations.jobs import jobs_recover  # noqa: E402
from feedback_site.background import SiteCelery  # noqa: E402  (after the settings module is named)

# The app and its default task class decide where a task runs (workers, a thread of the site,
# or inline): apps only queue their tasks by name (see feedback_site.background).
app = SiteCelery("feedback_site", task_cls="feedback_site.background:SiteTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_up_audio(**_kwargs) -> None:
    # librosa's numba kernels compile on first use (seconds per process): pay that once per worker
    # process, never inside a task or a web request.  Workers starting together take turns (a file
    # lock), and a cache that crashes a probe in a child process is rebuilt (editing.jit_cache).
    from editing.audio import warm_up

    warm_up()


logger = logging.getLogger(__name__)


@worker_ready.connect
def _recover_jobs_of_dead_workers(**_kwargs) -> None:
    # A thread of the worker's main process: the first pass runs at once, the next ones go on while
    # tasks run (the thread's database connection is its own).
    threading.Thread(target=_recover_jobs_forever, name="jobs-recover", daemon=True).start()


def _recover_jobs_forever() -> None:
    while True:
        try:
            jobs_recover()  # it logs each job it ends
        except Exception:  # noqa: BLE001 - the next pass tries again; the log keeps the reason
            logger.exception("recovering the jobs of dead workers failed")
        finally:
            connections.close_all()
        time.sleep(settings.JOB_RECOVER_EVERY_SECONDS)

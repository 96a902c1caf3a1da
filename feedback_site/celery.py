"""The Celery app.  Training tasks go to their own queue so GPU workers can take them alone.

Run workers with ``celery -A feedback_site worker -Q default`` and
``celery -A feedback_site worker -Q training --concurrency 1`` (on a GPU machine).
"""
import os

from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_site.settings")

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

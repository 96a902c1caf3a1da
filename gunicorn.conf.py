"""gunicorn settings for the site: ``gunicorn feedback_site.wsgi`` reads this file from the working directory.

Sized for the 2-core machines this project runs on, behind an HTTPS proxy
that buffers requests and responses (``README.md``, production topology);
``bench/bench_annotate.py`` measures it.

- sync workers, 3 of them: a request is a few milliseconds of database
  round trips between Django/DRF work on the CPU, so a third process keeps
  two cores busy.  Threads inside a process only queue on its GIL (4 workers
  x 4 threads: paced p99 of ``next`` 0.2-0.7 s), and the threaded worker's
  keep-alive ties a connection to one worker, whose busy thread then holds
  the request while other workers idle (3 x 1 threads: p99 171 ms against
  63 ms for 3 sync workers, same series).  ``WEB_CONCURRENCY`` overrides the
  count (more cores: about 1.5 per core).
- a sync worker is only known alive between requests, and a streamed
  export (``/api/exports/stream/``, JSONL or CSV) takes some
  30 s per million judgements: ``timeout`` leaves it 120 s (bigger exports
  belong in export jobs, which run in a task).
- the app is loaded once in the master (``preload_app``), its URLconf and
  views imported there too, and everything then alive is moved out of the
  garbage collector's reach (``gc.freeze``): the workers fork sharing those
  pages, the first request of each worker does not import half the site, and a
  full collection walks only what requests allocate (about 2 ms instead of a
  40 ms pause every few hundred requests).
"""
from __future__ import annotations

import gc
import os

wsgi_app = "feedback_site.wsgi"
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
timeout = 120
# gunicorn's largest request line (its default is 4094): URLs up to settings.MAX_URL_CHARS reach the site,
# which answers a longer one itself (414, JSON under /api/); only a request line over this gets gunicorn's 400.
limit_request_line = 8190
preload_app = True


def when_ready(server) -> None:
    """In the master, after the app is loaded and before any worker forks."""
    if not server.cfg.preload_app:
        return  # nothing is loaded here: each worker imports the app itself
    from django.db import connections
    from django.urls import get_resolver

    get_resolver().reverse_dict  # noqa: B018 -- imports every view module and builds the reverse() tables
    connections.close_all()  # a connection opened while importing must not be shared by the forks
    gc.freeze()

"""Shared fixtures: a storage root per test, a real Celery worker process (settings: feedback_site.test_settings)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip_pg)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a test's fixtures are torn down, the test thread's connection must not be left with autocommit off.

    Outside an atomic block autocommit is never off in this suite (pytest-django's own wrapping of
    non-transactional tests is an atomic block, which may outlive one test).  A connection left so
    (see ``live_server`` below) refuses every later test's ``on_commit`` callbacks, so the failure
    would show tests away from its cause; this makes the test that left it fail instead.
    """
    result = yield
    from django.db import connection

    if connection.connection is None or connection.in_atomic_block or connection.autocommit:
        return result
    from pytest_django.plugin import blocking_manager_key

    with item.config.stash[blocking_manager_key].unblock():
        connection.set_autocommit(True)  # the next tests start clean; this one carries the failure
    raise AssertionError(f"{item.nodeid} left the database connection with autocommit off")


@pytest.fixture
def storage_root(settings, tmp_path) -> Path:
    """A storage root of this test's own, so a test can assert on exactly what was written."""
    root = tmp_path / "storage"
    root.mkdir()
    settings.STORAGE_ROOT = root
    settings.MEDIA_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    return root


@pytest.fixture(scope="session")
def live_server(live_server):
    """pytest-django's live server, answering one request at a time while it shares the test's database connection.

    On SQLite the test database lives in memory, so every request thread of the
    server uses the test thread's one connection object, and its transaction
    state (in an atomic block, autocommit) is that object's.  Two requests at
    once (the annotate page saves a judgement while it fetches the next pair)
    interleave their atomic blocks on it and can leave autocommit off, after
    which every later test's ``on_commit`` callbacks never run.  On PostgreSQL
    each request thread has its own connection and nothing is serialised.
    """
    import threading

    if live_server.thread.connections_override:
        httpd = live_server.thread.httpd
        app, lock = httpd.get_app(), threading.Lock()

        def one_at_a_time(environ, start_response):
            with lock:
                response = app(environ, start_response)
                try:
                    body = b"".join(response)  # a streamed body may read the database too
                finally:
                    if hasattr(response, "close"):
                        response.close()
            return [body]

        httpd.set_app(one_at_a_time)
    return live_server


def _database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or "postgres"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"


def _reset_broker_connections(app) -> None:
    """Drop pooled broker connections so the next send uses the current ``broker_url``."""
    from kombu import pools

    pools.reset()  # kombu keeps producer pools per broker URL, process-wide
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def celery_worker_process(transactional_db, settings, storage_root):
    """A real Celery worker process over Redis, on the test's PostgreSQL database.

    The test process stops executing tasks in-process and sends them to the
    broker instead; the worker consumes both the default and the training queue.
    Yields a function that starts (or restarts) the worker and returns the process:
    ``start(env={"JOB_STALE_AFTER_SECONDS": "10"}, concurrency=3)`` adds environment variables
    and runs that many prefork processes instead of the solo pool.
    """
    import signal
    import subprocess
    import sys
    import time
    from urllib.parse import urlsplit

    from django.db import connection

    from feedback_site.celery import app

    if not connection.vendor == "postgresql":
        pytest.skip("the worker test needs PostgreSQL (DATABASE_URL=postgres://...)")
    # The broker is flushed: TEST_REDIS_URL's own database, never database 0 (7 instead), which may be in use.
    redis_url = urlsplit(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    db = redis_url.path.strip("/") or "0"
    broker = redis_url._replace(path=f"/{db if db != '0' else 7}").geturl()
    old = {k: app.conf[k] for k in ("task_always_eager", "broker_url")}
    app.conf.update(task_always_eager=False, broker_url=broker)
    _reset_broker_connections(app)
    import redis

    redis.Redis.from_url(broker).flushdb()

    base_env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CELERY_BROKER_URL": broker,
        "STORAGE_ROOT": str(storage_root),
        "DB_CONN_MAX_AGE": "0",
    }
    procs: list[subprocess.Popen] = []
    log_path = Path(settings.STORAGE_ROOT) / "celery-worker.log"

    def start(*, env: dict[str, str] | None = None, concurrency: int | None = None) -> subprocess.Popen:
        log = open(log_path, "ab")
        ready_before = log_path.read_bytes().count(b"ready.") if log_path.exists() else 0
        pool = ["--pool", "solo"] if concurrency is None else ["--pool", "prefork", "--concurrency", str(concurrency)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "feedback_site", "worker", "-Q", "default,training",
             *pool, "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"],
            env={**base_env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append(proc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {log_path.read_text()[-3000:]}")
            if log_path.read_bytes().count(b"ready.") > ready_before:
                return proc
            time.sleep(0.3)
        raise RuntimeError(f"celery worker did not start: {log_path.read_text()[-3000:]}")

    start.log_path = log_path
    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    app.conf.update(**old)
    _reset_broker_connections(app)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """An empty cache per test: DRF throttles count requests there, and user ids recur across tests."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def throttle_rates(monkeypatch):
    """Set DRF scoped throttle rates for one test: ``throttle_rates(cycle_start="2/hour")``.

    ScopedRateThrottle copies the rates when DRF is imported, so overriding the setting alone would not reach it.
    """
    from rest_framework.throttling import ScopedRateThrottle

    def set_rates(**rates: str) -> None:
        monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, **rates})

    return set_rates


@pytest.fixture
def quiet_queue(settings, storage_root):
    """Only regular work in the queue (no gold, no repeats) and a 1 s minimum listen, files in a temporary root."""
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0

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
    Yields a function that starts (or restarts) the worker and returns the process.
    """
    import signal
    import subprocess
    import sys
    import time

    from django.db import connection

    from feedback_site.celery import app

    if not connection.vendor == "postgresql":
        pytest.skip("the worker test needs PostgreSQL (DATABASE_URL=postgres://...)")
    broker = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/7"
    old = {k: app.conf[k] for k in ("task_always_eager", "broker_url")}
    app.conf.update(task_always_eager=False, broker_url=broker)
    _reset_broker_connections(app)
    import redis

    redis.Redis.from_url(broker).flushdb()

    env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CELERY_BROKER_URL": broker,
        "STORAGE_ROOT": str(storage_root),
        "DB_CONN_MAX_AGE": "0",
    }
    procs: list[subprocess.Popen] = []
    log_path = Path(settings.STORAGE_ROOT) / "celery-worker.log"

    def start() -> subprocess.Popen:
        log = open(log_path, "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "feedback_site", "worker", "-Q", "default,training",
             "--pool", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append(proc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {log_path.read_text()[-3000:]}")
            if b"ready." in log_path.read_bytes():
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

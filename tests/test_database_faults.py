"""Database faults: a restarted database costs no request, an unreachable one answers 503 (PostgreSQL).

The stale-connection case needs a real server process that keeps its
connection between requests (gunicorn, one sync worker, ``DB_CONN_MAX_AGE``
as in production): Django's test client switches off the per-request
connection check that ``CONN_HEALTH_CHECKS`` relies on.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from tests.annotations.factories import make_user

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url() -> str:
    d = connection.settings_dict
    return f"postgres://{d.get('USER') or 'postgres'}@{d.get('HOST') or '127.0.0.1'}:{d.get('PORT') or 5432}/{d['NAME']}"


def _terminate_other_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.slow
def test_requests_succeed_after_the_sites_connections_were_terminated(tmp_path):
    annotator = make_user("ears", role="annotator")
    client = Client()
    client.force_login(annotator)
    session = client.cookies["sessionid"].value
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update({"DJANGO_SETTINGS_MODULE": "feedback_site.settings", "DJANGO_DEBUG": "1",  # plain HTTP, as the tests
                "DATABASE_URL": _database_url(), "DB_CONN_MAX_AGE": "60", "STORAGE_ROOT": str(tmp_path)})
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "feedback_site.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )

    def progress() -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/progress/",
                                         headers={"Cookie": f"sessionid={session}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, {"body": err.read()[:300].decode(errors="replace")}

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = progress()
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        assert first[0] == 200, first
        for _ in range(2):
            assert _terminate_other_connections() >= 1  # the worker's persistent connection
            answers = [progress() for _ in range(3)]
            assert [code for code, _ in answers] == [200, 200, 200], answers
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def unreachable_database():
    """Points the site's connection at a port where no database listens, then restores it."""
    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = _free_port()
    yield
    connection.close()
    connection.settings_dict["PORT"] = saved


@pytest.fixture
def logged_in() -> Client:
    client = Client()
    client.force_login(make_user("ears", role="annotator"))
    return client


def test_while_the_database_is_unreachable_the_api_answers_503_json_and_pages_a_plain_page(logged_in,
                                                                                          unreachable_database):
    client = logged_in
    api = client.get("/api/progress/")
    assert api.status_code == 503 and api["Retry-After"].isdigit()
    assert api.json()["code"] == "database_unavailable"
    page = client.get("/annotate/")
    assert page.status_code == 503 and page["Retry-After"].isdigit()
    assert b"Temporarily unavailable" in page.content and b"Traceback" not in page.content
    posted = client.post("/api/judgements/", {"comparison": 1, "choice": "a"}, content_type="application/json")
    assert posted.status_code == 503

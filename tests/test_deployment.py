"""The production configuration: gunicorn, DEBUG off, static files by WhiteNoise, HTTPS behind a proxy."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _production_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "feedback_site.settings",
        "DJANGO_DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,studio.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "STORAGE_ROOT": str(tmp_path / "storage"),
        "STATIC_ROOT": str(tmp_path / "static"),
    })
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_check_deploy_is_clean(tmp_path):
    result = _manage(_production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    env = _production_env(tmp_path)
    del env["SECRET_KEY"]
    env.update({"DJANGO_ENV": "production", "VAR_DIR": str(tmp_path / "var")})
    result = _manage(env, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY must be set when DJANGO_ENV=production" in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


def _print_secret_key(env: dict[str, str]) -> str:
    result = _manage(env, "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]  # after the shell's own "N objects imported" line


@pytest.mark.parametrize("debug", ["0", "1"])
def test_a_first_run_without_a_secret_key_generates_one_and_later_runs_reuse_it(tmp_path, debug):
    env = _production_env(tmp_path)
    del env["SECRET_KEY"]
    env.pop("DJANGO_ENV", None)
    env.update({"DJANGO_DEBUG": debug, "VAR_DIR": str(tmp_path / "var")})
    first = _manage(env, "check")
    assert first.returncode == 0, first.stdout + first.stderr
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 50
    assert _print_secret_key(env) == key
    assert _print_secret_key(env) == key
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["secret_key"]  # no temporary files left


def test_an_explicit_secret_key_wins_and_nothing_is_written(tmp_path):
    env = _production_env(tmp_path)
    env.update({"DJANGO_ENV": "production", "VAR_DIR": str(tmp_path / "var")})
    assert _print_secret_key(env) == env["SECRET_KEY"]
    assert not (tmp_path / "var" / "secret_key").exists()


def test_gunicorn_serves_pages_and_static_files_behind_an_https_proxy(tmp_path):
    env = _production_env(tmp_path)
    assert _manage(env, "migrate", "--noinput").returncode == 0
    assert _manage(env, "collectstatic", "--noinput").returncode == 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "feedback_site.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        def get(path: str, **headers: str):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            opener = urllib.request.build_opener(_NoRedirect)
            return opener.open(request, timeout=10)

        deadline = time.monotonic() + 60
        while True:
            try:
                get("/accounts/login/", **{"X-Forwarded-Proto": "https"})
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)

        page = get("/accounts/login/", **{"X-Forwarded-Proto": "https"})
        assert page.status == 200 and b"csrfmiddlewaretoken" in page.read()
        assert "Strict-Transport-Security" in page.headers
        css = get("/static/css/site.css", **{"X-Forwarded-Proto": "https"})
        assert css.status == 200 and b"topbar" in css.read()
        with pytest.raises(urllib.error.HTTPError) as plain_http:
            get("/accounts/login/")
        assert plain_http.value.code == 301 and plain_http.value.headers["Location"].startswith("https://")
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            get("/api/judgements/", **{"X-Forwarded-Proto": "https"})
        assert anonymous.value.code == 403
    finally:
        server.terminate()
        server.wait(timeout=30)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_slow_clients_do_not_stop_gunicorn_serving_others(tmp_path):
    """Two clients trickle a request body at one byte a second (each holds a sync worker while it reads);
    the third of the production configuration's workers still answers everyone else at once.

    With as many slow clients as workers the site would wait on them until ``timeout``: in production the
    buffering HTTPS proxy in front (README, production topology) reads whole requests before gunicorn
    sees them, which is why the topology requires one.
    """
    env = _production_env(tmp_path)
    assert _manage(env, "migrate", "--noinput").returncode == 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}"],
        cwd=ROOT, env={**env, "WEB_CONCURRENCY": "3"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    trickles: list[socket.socket] = []
    try:
        def get_seconds() -> float:
            began = time.monotonic()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/accounts/login/",
                                             headers={"X-Forwarded-Proto": "https"})
            with urllib.request.build_opener(_NoRedirect).open(request, timeout=10) as page:
                assert page.status == 200
            return time.monotonic() - began

        deadline = time.monotonic() + 60
        while True:
            try:
                get_seconds()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
            trickles.append(s)
        slowest = 0.0
        for second in range(8):
            for s in trickles:
                s.sendall(b"a")  # one byte a second: each slow request keeps its worker reading
            slowest = max(slowest, get_seconds())
            time.sleep(1.0)
        assert slowest < 2.0, f"a page took {slowest:.1f} s while two clients trickled their requests"
    finally:
        for s in trickles:
            s.close()
        server.terminate()
        server.wait(timeout=30)

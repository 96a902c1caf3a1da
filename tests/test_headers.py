"""Security headers and defaults under the production configuration (DJANGO_DEBUG=0), and the API docs.

The production settings are loaded in a fresh interpreter, as gunicorn loads
them: this test process runs the test settings (DEBUG on, no HTTPS redirect).
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.annotations.factories import make_user

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json
import django
from django.core.management import call_command

django.setup()
call_command("migrate", verbosity=0)
from django.conf import settings
from django.test import Client

client = Client(HTTP_X_FORWARDED_PROTO="https")  # behind the HTTPS proxy
answers = {}
for path in ("/accounts/login/", "/api/schema/", "/api/docs/"):
    response = client.get(path)
    answers[path] = {"status": response.status_code, "headers": dict(response.headers)}
answers["plain_http"] = Client().get("/accounts/login/").status_code
answers["debug"] = settings.DEBUG
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("production")
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "feedback_site.settings",  # DJANGO_DEBUG unset: the default must be off
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "STORAGE_ROOT": str(tmp / "storage"),
        "STATIC_ROOT": str(tmp / "static"),
    })
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_debug_is_off_unless_set(production):
    assert production["debug"] is False
    assert production["plain_http"] == 301  # to HTTPS


def test_pages_carry_csp_hsts_and_permissions_policy(production):
    page = production["/accounts/login/"]
    assert page["status"] == 200
    headers = page["headers"]
    csp = {d.split()[0]: d.split()[1:] for d in headers["Content-Security-Policy"].split("; ")}
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"] and csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"  # one year, no preload
    assert "camera=()" in headers["Permissions-Policy"] and "microphone=()" in headers["Permissions-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"


def test_schema_and_docs_are_behind_login_in_production(production):
    assert production["/api/schema/"]["status"] == 403
    docs = production["/api/docs/"]
    assert docs["status"] == 302 and docs["headers"]["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_api_docs_load_swagger_ui_from_our_static_files_without_inline_code():
    client = Client()
    assert client.get("/api/schema/").status_code == 403
    client.force_login(make_user("reader", role="annotator"))
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn." not in html and "https://" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "<style" not in html and "<script>" not in html  # every script has a src: script-src 'self' holds
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    assert client.get("/api/schema/").status_code == 200

"""With CACHE_URL (or REDIS_URL) set, the default cache is Redis, shared by every process: throttles count per user."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


def _redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _redis_reachable(), reason=f"no Redis at {REDIS_URL}")]

# One request's worth of DRF's judgement throttle for one user, in a process of its own: prints whether it passed.
THROTTLE = """
from django.contrib.auth.models import User
from rest_framework.test import APIRequestFactory
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.request import Request
import sys

class View:
    throttle_scope = "judgements"

request = Request(APIRequestFactory().get("/api/judgements/"))
request.user = User(pk=int(sys.argv[1]), username="throttled")
print(ScopedRateThrottle().allow_request(request, View()))
"""


def _throttled_request(env: dict[str, str], user_id: int) -> str:
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", THROTTLE.replace("sys.argv[1]", str(user_id))],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("variable", ["CACHE_URL", "REDIS_URL"])
def test_the_throttle_counts_one_user_across_processes(tmp_path, variable):
    env = {k: v for k, v in os.environ.items() if k not in ("CACHE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({"DJANGO_SETTINGS_MODULE": "feedback_site.settings", "DJANGO_DEBUG": "1", "VAR_DIR": str(tmp_path),
                "THROTTLE_JUDGEMENTS": "2/hour", variable: REDIS_URL})
    user_id = uuid.uuid4().int % 2**31  # a user no earlier run counted
    # Three processes, as three gunicorn workers would be: the third request of the hour is refused.
    assert [_throttled_request(env, user_id) for _ in range(3)] == ["True", "True", "False"]


def test_a_cache_url_that_is_not_redis_is_refused_at_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update({"DJANGO_SETTINGS_MODULE": "feedback_site.settings", "DJANGO_DEBUG": "1", "VAR_DIR": str(tmp_path),
                "CACHE_URL": "memcached://127.0.0.1:11211"})
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0 and "CACHE_URL must be a redis://" in result.stderr

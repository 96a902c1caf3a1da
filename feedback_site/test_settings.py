"""Settings for the test suite: the project's own, with a throw-away storage root and tasks run inline.

pytest-django loads settings before any conftest runs, so these defaults
must be in place before ``settings`` is imported.
"""
import os
import tempfile

os.environ.setdefault("STORAGE_ROOT", tempfile.mkdtemp(prefix="studio-test-storage-"))
# Tests of the threaded mode (feedback_site.background) switch it on themselves.
os.environ.setdefault("TASKS_IN_THREAD", "0")
# The site defaults to DEBUG off (which needs a SECRET_KEY and redirects to HTTPS); tests run it
# as a developer does.  pytest-django still renders with DEBUG False, and the production
# configuration has its own tests (tests/test_deployment.py, tests/test_headers.py).
os.environ.setdefault("DJANGO_DEBUG", "1")
# Judging waits out the minimum listen in wall time (annotations.listening), simulated annotators
# included: a short one keeps simulation-driven tests fast; tests of the rule set their own.
os.environ.setdefault("ANNOTATION_MIN_LISTEN_SECONDS", "0.1")

from .settings import *  # noqa: E402,F401,F403

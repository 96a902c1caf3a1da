"""Settings for the test suite: the project's own, with a throw-away storage root and tasks run inline.

pytest-django loads settings before any conftest runs, so these defaults
must be in place before ``settings`` is imported.
"""
import os
import tempfile

os.environ.setdefault("STORAGE_ROOT", tempfile.mkdtemp(prefix="studio-test-storage-"))
# Tests of the threaded mode (feedback_site.background) switch it on themselves.
os.environ.setdefault("TASKS_IN_THREAD", "0")

from .settings import *  # noqa: E402,F401,F403

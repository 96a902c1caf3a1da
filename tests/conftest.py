"""Shared fixtures: an isolated storage root per test session, users with roles."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never write into a developer's var/: a fresh storage root per session.
_STORAGE = Path(tempfile.mkdtemp(prefix="studio-test-storage-"))
os.environ.setdefault("STORAGE_ROOT", str(_STORAGE))


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

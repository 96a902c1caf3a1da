"""Atomic artifacts: write to a temporary path, verify by loading, move into place, register.

Used for every model file: reward-model and policy versions alike.  Temporary files
live in ``STORAGE_ROOT/tmp/``, a folder the app never reads from; a process
killed while writing leaves only a ``*.partial`` file there, which
``artifacts_clean`` removes once it is older than any live write could be.
The move into place is ``os.replace`` (atomic on one filesystem), done inside
the database transaction that registers the row, and undone if that
transaction fails: the app sees a registered version with its file, or neither.
Artifacts therefore need a filesystem storage root (local or a shared mount).
"""
from __future__ import annotations

import hashlib
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from django.conf import settings
from django.db import transaction

TMP_DIR_NAME = "tmp"
STALE_TMP_SECONDS = 6 * 3600  # longer than any training run writes one file
# A file in place but unregistered is either mid-commit (a second at most) or
# left by a process killed between the move and the commit.
STALE_UNREGISTERED_SECONDS = 600

T = TypeVar("T")


class ArtifactError(RuntimeError):
    """An artifact could not be verified or put in place."""


def storage_root() -> Path:
    return Path(settings.STORAGE_ROOT)


def tmp_dir() -> Path:
    path = storage_root() / TMP_DIR_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def staged_file(suffix: str) -> Iterator[Path]:
    """A fresh temporary path in the app-ignored tmp folder, removed if still there on exit."""
    path = tmp_dir() / f"{uuid.uuid4().hex}{suffix}.partial"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def artifact_publish(
    *, staged: Path, name: str, verify: Callable[[Path], None], register: Callable[[str, str], T]
) -> T:
    """Verify ``staged``, move it to ``name`` (relative to the storage root) and register it.

    Parameters
    ----------
    staged : Path
        The finished temporary file (from ``staged_file``).
    name : str
        Final path relative to the storage root, e.g. ``"reward_models/rm-….pt"``; must not exist.
    verify : callable(path)
        Loads the file and raises if it is not usable.
    register : callable(name, sha256) -> row
        Creates the database row; runs inside the transaction.

    Raises
    ------
    ArtifactError
        When the final path already exists.
    """
    verify(staged)
    sha = file_sha256(staged)
    final = storage_root() / name
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise ArtifactError(f"{name}: an artifact already exists there; versions are never overwritten")
    moved = False
    try:
        with transaction.atomic():
            os.replace(staged, final)
            moved = True
            row = register(name, sha)
    except BaseException:
        if moved:
            final.unlink(missing_ok=True)
        raise
    return row


def artifacts_clean(*, folder: str, referenced: set[str], tmp_age_seconds: float = STALE_TMP_SECONDS,
                    unregistered_age_seconds: float = STALE_UNREGISTERED_SECONDS) -> list[Path]:
    """Remove stale temporary files, and files under ``folder`` that no row references.

    Only files older than the given ages go, so a write or a commit in
    progress in another process is never touched.  Returns the removed paths.
    """
    now = time.time()
    candidates = [(p, tmp_age_seconds) for p in tmp_dir().glob("*.partial")]
    base = storage_root() / folder
    if base.is_dir():
        candidates += [
            (p, unregistered_age_seconds) for p in base.rglob("*")
            if p.is_file() and p.relative_to(storage_root()).as_posix() not in referenced
        ]
    removed: list[Path] = []
    for path, age in candidates:
        if now - path.stat().st_mtime >= age:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed

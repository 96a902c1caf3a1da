"""The site's SECRET_KEY when the environment gives none: generated once into a file, reused ever after.

A first run (``scripts/run.sh``, ``manage.py ingest_audio ~/Music`` on a fresh
machine) needs no configuration; production names its key explicitly
(``feedback_site.settings`` refuses to start otherwise).  Django-free: settings
call it before Django is configured.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

# As long as Django's own get_random_secret_key() (50 characters), from a larger alphabet.
_KEY_BYTES = 48


def stored_secret_key(path: Path) -> str:
    """The key in ``path`` (text, one line), created there first when absent.

    The file is readable by its owner only (mode 600) and appears whole or not
    at all: the key is written to a private temporary file in the same folder,
    then hard-linked to ``path``, which fails rather than replaces when another
    process got there first, so processes starting together all read one key.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(_KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process's key won the race: everyone uses that one
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path}: the secret key file is empty; delete it to have a new key generated")
    return key

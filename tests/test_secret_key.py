"""feedback_site/secret_key.py: one generated key per var/ folder, whoever asks first."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from feedback_site.secret_key import stored_secret_key


def test_the_key_is_generated_once_then_read_back(tmp_path):
    path = tmp_path / "var" / "secret_key"
    key = stored_secret_key(path)
    assert path.read_text() == key + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert stored_secret_key(path) == key


def test_an_existing_key_file_is_kept(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("an-operator-supplied-key\n")
    assert stored_secret_key(path) == "an-operator-supplied-key"


def test_processes_starting_together_all_get_the_same_key(tmp_path):
    path = tmp_path / "var" / "secret_key"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        keys = pool.map(stored_secret_key, [path] * 24)
    assert len(set(keys)) == 1 and keys[0] == path.read_text().strip()
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]


def test_an_empty_key_file_is_refused_with_its_path(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("")
    with pytest.raises(ValueError, match=r"secret_key: the secret key file is empty"):
        stored_secret_key(path)

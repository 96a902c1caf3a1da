"""editing/jit_cache.py: numba's kernel cache survives processes compiling at once, and a corrupt one is rebuilt.

Each test runs real processes on a cache folder of its own (cold: every
kernel compiles, tens of seconds on a 2-core machine).
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# A child that analyses 20 s of clicks at 100 BPM (not the warm-up's 120) and prints how many beats it found.
ANALYSE = """
import sys
import numpy as np
from editing.audio import ANALYSIS_SR, analyze, warm_up
if sys.argv[1] == "warm":
    warm_up()
sr = ANALYSIS_SR
y = np.zeros(20 * sr, dtype=np.float32)
click = (np.exp(-np.arange(800) / 80.0) * np.sin(np.arange(800) * 0.3)).astype(np.float32)
for start in range(0, y.size - click.size, int(sr * 0.6)):
    y[start:start + click.size] += click
print(analyze(y, sr, name="clicks").n_beats)
"""


def _analyse(cache: Path, *, warm: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", ANALYSE, "warm" if warm else "cold"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def _beats(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.strip().splitlines()[-1])


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.suffix in (".nbi", ".nbc"))


def test_four_workers_starting_at_once_on_a_cold_cache_leave_it_sound(tmp_path):
    cache = tmp_path / "numba-cache"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _analyse(cache, warm=True), range(4)))
    beats = [_beats(r) for r in results]
    assert len(set(beats)) == 1 and beats[0] >= 16
    assert _cache_files(cache)
    # Later processes, which take no lock and probe nothing, load the kernels and analyse alike.
    assert [_beats(_analyse(cache, warm=False)) for _ in range(2)] == beats[:2]


def test_a_corrupted_cache_is_detected_by_the_probe_and_rebuilt(tmp_path):
    cache = tmp_path / "numba-cache"
    expected = _beats(_analyse(cache, warm=True))
    for path in _cache_files(cache):
        path.write_bytes(os.urandom(256))
    # The damage is real: an analysis straight from this cache dies.
    assert _analyse(cache, warm=False).returncode != 0
    # A worker starting now finds it in its probe, rebuilds the cache, and analyses.
    rebuilt = _analyse(cache, warm=True)
    assert _beats(rebuilt) == expected
    assert "unusable" in rebuilt.stderr and "rebuilding" in rebuilt.stderr
    assert _beats(_analyse(cache, warm=False)) == expected


def test_the_cache_folder_is_the_project_s_var_folder_in_every_django_process(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "feedback_site.settings", "VAR_DIR": str(tmp_path / "var"),
           "DJANGO_DEBUG": "1"}
    env.pop("NUMBA_CACHE_DIR", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", "import numba; print(numba.config.CACHE_DIR)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "var" / "numba-cache")

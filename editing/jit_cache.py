"""numba's on-disk cache of compiled kernels (librosa's beat tracker, the planner), owned by the project.

numba caches compiled code beside the sources unless ``NUMBA_CACHE_DIR``
names a folder, and several processes compiling into one cache at once can
leave it inconsistent, so that a later analysis loads broken machine code
and the process dies (a segfault, not an exception).  Hence:

* the cache lives in one folder of the project's choosing, named before numba
  is imported (:func:`use_cache_dir`; ``feedback_site.settings`` calls it
  with ``var/numba-cache``, so every manage.py command, the site and the
  Celery workers agree);
* kernels are compiled by one process at a time, under an exclusive lock
  (``fcntl.flock`` on a file beside the folder) (:func:`warm_up_under_lock`);
* before a process uses the cache it is probed by a child process that runs
  the kernels from it; if the child dies, the cache is deleted and rebuilt by
  another child, instead of the process itself crashing.

Pure: no Django.  ``python -m editing.jit_cache MODULE:FUNCTION`` is the probe: it runs the
kernels' warm-up function, named by its caller (``editing.audio.warm_up`` names its own), so
this module imports nothing of the project.
"""
from __future__ import annotations

import fcntl
import importlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "NUMBA_CACHE_DIR"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A probe compiles every kernel from scratch on a cold cache: some 25 s on a 2-core machine.
PROBE_TIMEOUT_SECONDS = 600


class JitCacheError(RuntimeError):
    """The kernels cannot be compiled even into a fresh cache; the message carries the probe's output."""


def use_cache_dir(path: Path) -> Path:
    """Make ``path`` numba's cache folder for this process and its children (an explicit ``NUMBA_CACHE_DIR`` wins).

    Must run before numba is imported: numba reads the variable once.

    Raises
    ------
    RuntimeError
        numba is already loaded with another cache folder.
    """
    chosen = Path(os.environ.setdefault(CACHE_DIR_VARIABLE, str(path)))
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None and Path(numba_config.CACHE_DIR or ".").resolve() != chosen.resolve():
        raise RuntimeError(f"numba was imported before its cache folder was set to {chosen} "
                           f"(it uses {numba_config.CACHE_DIR or 'the source folders'})")
    return chosen


def cache_dir() -> Path | None:
    """The cache folder of this process, or None when numba writes beside the sources (nothing set)."""
    value = os.environ.get(CACHE_DIR_VARIABLE, "").strip()
    return Path(value) if value else None


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes, or the process dies
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def probe(directory: Path, entry: str) -> subprocess.CompletedProcess:
    """Run ``entry`` (``module:function``, the kernels' warm-up) from the cache in ``directory`` in a child process."""
    env = {**os.environ, CACHE_DIR_VARIABLE: str(directory)}
    return subprocess.run([sys.executable, "-m", "editing.jit_cache", entry], cwd=_PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS)


def _describe(result: subprocess.CompletedProcess) -> str:
    how = f"was killed by signal {-result.returncode}" if result.returncode < 0 else f"exited {result.returncode}"
    return f"the probe {how}: {result.stderr.strip()[-1500:]}"


def ensure_sound_cache(directory: Path, entry: str) -> bool:
    """Probe the cache in ``directory`` with ``entry``; if the probe fails, delete the folder and rebuild it in a fresh probe.

    Call under the lock (:func:`warm_up_under_lock` does).  Returns True when the
    cache was rebuilt.

    Raises
    ------
    JitCacheError
        the probe fails on a fresh cache too (not a cache problem: the message says what).
    """
    directory.mkdir(parents=True, exist_ok=True)
    first = probe(directory, entry)
    if first.returncode == 0:
        return False
    logger.warning("numba cache %s is unusable (%s); deleting and rebuilding it", directory, _describe(first))
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    second = probe(directory, entry)
    if second.returncode != 0:
        raise JitCacheError(f"numba kernels fail to compile into a fresh cache {directory}: {_describe(second)}")
    return True


def warm_up_under_lock(compile_kernels: Callable[[], object]) -> None:
    """Make sure the cache is sound, then run ``compile_kernels`` here, one process at a time.

    The probe child runs the same function, found by its module and name.

    With no cache folder set (numba's default, beside the sources), only
    ``compile_kernels`` runs: there is no folder of ours to probe or delete.
    """
    directory = cache_dir()
    if directory is None:
        compile_kernels()
        return
    with _exclusive_lock(directory.with_name(directory.name + ".lock")):
        ensure_sound_cache(directory, f"{compile_kernels.__module__}:{compile_kernels.__qualname__}")
        compile_kernels()


if __name__ == "__main__":
    # The probe: numba loads (or compiles and stores) the kernels that the named function runs.
    module_name, _, function_name = sys.argv[1].partition(":")
    getattr(importlib.import_module(module_name), function_name)()

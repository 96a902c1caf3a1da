"""Benchmark: ``manage.py evaluate_loop`` at its default sizes (target: under 30 minutes on 2 CPU cores).

The evaluation is its own benchmark: 3 seeds x 3 cycles on the default corpus (``var/corpus`` from
``scripts/make_corpus.py`` when present, else the 6-track demo corpus), a fold of tracks held out per
seed, every arm at the cycle's default sizes, 24 held-out passages per seed.  Each seed runs in a
throw-away studio of its own (SQLite and storage in a temporary folder), so this touches no studio.
Prints the table, the wall time and where the JSON and the plot went.

Usage: ``python bench/bench_evaluate.py [evaluate_loop options, e.g. --seeds 1 --listener mine.py:score]``
(``--device cpu|cuda`` sets ``TRAINING_DEVICE``; default: CUDA when present).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    args, rest = parser.parse_known_args()
    if args.device:
        os.environ["TRAINING_DEVICE"] = args.device
    corpus = Path(__file__).resolve().parents[1] / "var" / "corpus"  # the studio's, before VAR_DIR moves
    if corpus.is_dir() and not any(a == "--corpus" or a.startswith("--corpus=") for a in rest):
        rest += ["--corpus", str(corpus)]
    var = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    os.environ.update(VAR_DIR=str(var), STORAGE_ROOT=str(var / "storage"), DJANGO_SETTINGS_MODULE="feedback_site.settings")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("CELERY_BROKER_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    if not any(a == "--out" or a.startswith("--out=") for a in rest):
        rest += ["--out", str(var / "evaluate_loop.json")]
    began = time.perf_counter()
    call_command("evaluate_loop", *rest, "--workdir", str(var / "work"))
    minutes = (time.perf_counter() - began) / 60
    print(f"evaluate_loop: {minutes:.1f} min wall time (target: under 30 min on 2 CPU cores)")


if __name__ == "__main__":
    main()

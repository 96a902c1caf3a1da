"""Export benchmark: rows/s and peak memory of ``annotations.export`` over N judgements on PostgreSQL.

    python bench/bench_export.py                      # 1,000,000 judgements, JSONL + CSV + Parquet
    python bench/bench_export.py --rows 200000 --formats parquet

It (re)creates the database named in --database-url (default ``studio_bench_export``;
never the site's own), fills it with ``bulk_create`` (32 annotators, 4
judgements per comparison, 20 edits per track), then runs each export in a
fresh child process, so the peak resident memory it reports (``VmHWM``)
belongs to the export alone (Django, numpy and pyarrow loaded included).
Targets: 1M rows in under 60 s, peak memory under 300 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/studio_bench_export"
N_ANNOTATORS = 32
JUDGEMENTS_PER_COMPARISON = 4
EDITS_PER_TRACK = 20
BATCH = 20_000


def _setup_django(database_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = database_url
    # As in production: DEBUG off, so Django does not keep every query's SQL in memory.
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_site.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def recreate_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    if name in {"studio", "postgres"}:
        raise SystemExit(f"refusing to drop database {name!r}: name a bench database")
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def fill(n_rows: int) -> float:
    """Create ``n_rows`` judgements (and what they need) with bulk_create; returns seconds taken."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotations.models import Comparison, Edit, Judgement, Track

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(0)
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"annotator{i}") for i in range(N_ANNOTATORS)]
    )
    n_comparisons = -(-n_rows // JUDGEMENTS_PER_COMPARISON)
    n_tracks = max(1, n_comparisons // 500)
    tracks = Track.objects.bulk_create(
        [Track(title=f"track {i}", original_name=f"t{i}.wav", content_hash=f"{i:064x}", audio=f"tracks/t{i}.wav",
               analysis=f"tracks/t{i}.npz", sample_rate=22050, source_sample_rate=44100, duration_seconds=60.0,
               tempo_bpm=120.0, n_beats=120, feature_version="bench") for i in range(n_tracks)]
    )
    sources = ["policy:v1", "policy:v2", "baseline:random", "baseline:bar_cut"]
    edits = Edit.objects.bulk_create(
        [Edit(track=t, source=sources[j % len(sources)], excerpt_start_beat=0, n_source_beats=32,
              actions=rng.integers(0, 9, size=32).tolist(), entries=[], actions_key=f"{t.pk}-{j}",
              audio=f"edits/{t.pk}/{j}.wav", duration_seconds=15.0)
         for t in tracks for j in range(EDITS_PER_TRACK)],
        batch_size=BATCH,
    )
    for start in range(0, n_comparisons, BATCH):
        batch = []
        for c in range(start, min(start + BATCH, n_comparisons)):
            track_index = c % n_tracks
            a, b = rng.choice(EDITS_PER_TRACK, size=2, replace=False)
            batch.append(Comparison(
                track=tracks[track_index], edit_a=edits[track_index * EDITS_PER_TRACK + a],
                edit_b=edits[track_index * EDITS_PER_TRACK + b], proposed_by=f"cycle {c % 5}",
                predicted_preference=float(rng.random()), is_gold=c % 20 == 0, gold_answer="a" if c % 20 == 0 else "",
            ))
        Comparison.objects.bulk_create(batch, batch_size=BATCH)
    comparisons = list(Comparison.objects.order_by("id").values_list("id", "edit_a_id", "edit_b_id"))
    made = 0
    choices = ("a", "b", "tie")
    while made < n_rows:
        batch = []
        for _ in range(min(BATCH, n_rows - made)):
            cid, a_id, b_id = comparisons[made // JUDGEMENTS_PER_COMPARISON]
            k = made % JUDGEMENTS_PER_COMPARISON
            annotator = users[(cid + k * (N_ANNOTATORS // JUDGEMENTS_PER_COMPARISON)) % N_ANNOTATORS]
            batch.append(Judgement(
                annotator=annotator, comparison_id=cid, choice=choices[int(rng.integers(0, 3))],
                confidence=int(rng.integers(1, 6)), left_edit_id=a_id if rng.random() < 0.5 else b_id,
                seconds_a=float(rng.uniform(5, 30)), seconds_b=float(rng.uniform(5, 30)),
                switches=int(rng.integers(0, 10)), decision_seconds=float(rng.uniform(5, 60)),
            ))
            made += 1
        Judgement.objects.bulk_create(batch, batch_size=BATCH)
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    """This process's own peak resident memory (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the high-water mark of the address space
    an ``exec`` replaces into it, so a child started from this bench's filling
    process would report the parent's peak (measured: 252 MB "before export"
    in a child whose own peak was then 191 MB).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fmt: str) -> dict:
    """Run one export in this process; report time, rows and peak memory."""
    from annotations import export
    from annotations.selectors import ExportFilters

    baseline_mb = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        started = time.perf_counter()
        result = export.export_to_file(filters=ExportFilters(), fmt=fmt, path=Path(tmp) / f"prefs.{fmt}")
        seconds = time.perf_counter() - started
        size_mb = result.path.stat().st_size / 2**20
    peak_mb = peak_rss_mb()
    return {"format": fmt, "rows": result.n_rows, "seconds": seconds, "rows_per_s": result.n_rows / seconds,
            "peak_rss_mb": peak_mb, "rss_before_export_mb": baseline_mb, "file_mb": size_mb,
            "alpha": result.card["agreement"]["krippendorff_alpha"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--formats", default="jsonl,csv,parquet")
    parser.add_argument("--reuse", action="store_true", help="keep the database filled by an earlier run")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: one export
    args = parser.parse_args()

    if args.measure:
        _setup_django(args.database_url)
        print(json.dumps(measure(args.measure)))
        return

    if not args.reuse:
        recreate_database(args.database_url)
    _setup_django(args.database_url)
    if not args.reuse:
        fill_seconds = fill(args.rows)
        print(f"filled {args.rows:,} judgements with bulk_create in {fill_seconds:.1f} s")
    for fmt in filter(None, args.formats.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--measure", fmt, "--database-url", args.database_url],
            check=True, capture_output=True, text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        verdict = "OK" if r["seconds"] < 60 * r["rows"] / 1_000_000 and r["peak_rss_mb"] < 300 else "MISSED"
        print(f"{fmt:8s} {r['rows']:>9,} rows  {r['seconds']:6.1f} s  {r['rows_per_s']:>9,.0f} rows/s  "
              f"peak RSS {r['peak_rss_mb']:5.0f} MB (before export {r['rss_before_export_mb']:.0f} MB)  "
              f"file {r['file_mb']:.0f} MB  [{verdict} vs 60 s per 1M rows, 300 MB]")


if __name__ == "__main__":
    main()

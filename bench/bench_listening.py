"""Bytes per pair and time to first audio at 10 Mbit/s for each listening format annotators can be served.

A pair of real edits (the retargeting heuristic and the bar-aligned cut, to 0.75x and to 1.5x) of the
first 32 beats of the stereo 44.1 kHz test recording (tests/data), rendered as the studio renders
them: natively (``render_native``: the source's rate and channels) for Opus and FLAC, at the analysis
rate in mono for the legacy MP3.  Each is encoded as ``annotations.services`` does
(``editing.listening``), and the script prints, per format: the bytes of the pair, the bit rate, and
the time to first audio on a 10 Mbit/s line with 20 ms of latency (the page fetches both files of a
pair whole and decodes them before playing): transfer + the decode measured here with libsndfile
(the browser's own decoders differ, but are of the same order).  The page fetches the next pair
while the current one is judged, so this is the wait for the very first pair only; the browser test
``test_next_comparison_is_playable_soon_after_submit_on_a_10_mbit_line`` measures the next one.
Run: ``python bench/bench_listening.py [--repeats N]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editing.audio import analyze_file, load_native  # noqa: E402
from editing.baselines import BAR_CUT, HEURISTIC, baseline_actions  # noqa: E402
from editing.dense import dense_context  # noqa: E402
from editing.edit import apply_actions, reachable_target  # noqa: E402
from editing.listening import encode_listening, write_legacy_mp3  # noqa: E402
from editing.render import render_edit, render_native  # noqa: E402

STEREO_CLIP = Path(__file__).resolve().parents[1] / "tests" / "data" / "caribbean-ending-stereo-44k.ogg"
LINE_BITS_PER_SECOND = 10_000_000
LATENCY_SECONDS = 0.020
EXCERPT_BEATS = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="decodes timed per file (the best is kept)")
    args = parser.parse_args()
    analysis, y, _ = analyze_file(STEREO_CLIP)
    source = load_native(STEREO_CLIP)
    context = dense_context(analysis.features, analysis.beat_samples, analysis.bar_positions)
    n_beats = min(EXCERPT_BEATS, analysis.n_beats)
    bars = analysis.bar_positions[:n_beats]
    print(f"source: {STEREO_CLIP.name}, {source.sample_rate} Hz, {source.channels} channels; "
          f"excerpt: beats 0-{n_beats - 1}; line: {LINE_BITS_PER_SECOND / 1e6:g} Mbit/s + "
          f"{LATENCY_SECONDS * 1000:g} ms")
    for stretch in (0.75, 1.5):
        target = reachable_target(bars, round(stretch * n_beats))
        edits = [apply_actions(baseline_actions(name, rng=np.random.default_rng(0), context=context, excerpt_start=0,
                                                bar_positions=bars, target_beats=target),
                               excerpt_start=0, bar_positions=bars, target_beats=target)
                 for name in (HEURISTIC, BAR_CUT)]
        native = [render_native(source.samples, source.sample_rate, analysis.beat_samples, analysis.sample_rate, e)
                  for e in edits]
        legacy = [render_edit(y, analysis.sample_rate, analysis.beat_samples, e) for e in edits]
        seconds = [r.duration_seconds for r in native]
        print(f"\npair to {stretch:g}x ({target} beats): {seconds[0]:.1f} s + {seconds[1]:.1f} s natively")
        print(f"  {'format':<28} {'bytes/pair':>11} {'kbit/s':>7} {'transfer':>9} {'decode':>7} {'first audio':>12}")
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for label, fmt, renders in (("mp3 (legacy, 22.05 kHz mono)", "mp3", legacy),
                                        ("opus (48 kHz, 2 ch)", "opus", native),
                                        (f"flac ({source.sample_rate} Hz, 2 ch)", "flac", native)):
                paths = []
                for k, r in enumerate(renders):
                    path = Path(tmp) / f"{fmt}{k}.{fmt}"
                    if fmt == "mp3":
                        write_legacy_mp3(path, r.audio, r.sample_rate)
                    else:
                        encode_listening(path, r.audio, r.sample_rate, fmt, flac_subtype="PCM_16")
                    paths.append(path)
                rows.append((label, paths, sum(r.duration_seconds for r in renders)))
            for label, paths, total_seconds in rows:
                n_bytes = sum(p.stat().st_size for p in paths)
                transfer = LATENCY_SECONDS + n_bytes * 8 / LINE_BITS_PER_SECOND
                decode = sum(_decode_seconds(p, args.repeats) for p in paths)
                print(f"  {label:<28} {n_bytes:>11,} {n_bytes * 8 / total_seconds / 1000:>7.0f} "
                      f"{transfer * 1000:>7.0f}ms {decode * 1000:>5.0f}ms {(transfer + decode) * 1000:>10.0f}ms")


def _decode_seconds(path: Path, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        sf.read(path, dtype="float32")
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":
    main()

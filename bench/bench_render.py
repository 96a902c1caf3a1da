"""Rendering speed as a multiple of real time (target: >= 1000x).

Renders random retargets of 32-beat excerpts of every demo track (to 0.5x..2x, as the
comparisons draw them), with and without loudness normalisation, and prints seconds of audio
rendered per second of wall time.  Run: ``python bench/bench_render.py [--edits N]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editing.audio import analyze_file  # noqa: E402
from editing.baselines import random_actions  # noqa: E402
from editing.demo import DEMO_SPECS, write_demo_corpus  # noqa: E402
from editing.edit import DEFAULT_EXCERPT_BEATS, MAX_STRETCH, MIN_STRETCH, apply_actions, reachable_target  # noqa: E402
from editing.render import render_edit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=50, help="random edits per demo track")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_corpus(tmp, seed=0, n_tracks=len(DEMO_SPECS))
        tracks = [analyze_file(Path(tmp) / f"{spec.name}.wav")[:2] for spec in DEMO_SPECS]

    jobs = []
    for analysis, y in tracks:
        for _ in range(args.edits):
            start = int(rng.integers(0, analysis.n_beats - DEFAULT_EXCERPT_BEATS + 1))
            bars = analysis.bar_positions[start : start + DEFAULT_EXCERPT_BEATS]
            stretch = float(np.exp(rng.uniform(np.log(MIN_STRETCH), np.log(MAX_STRETCH))))
            target = reachable_target(bars, round(stretch * DEFAULT_EXCERPT_BEATS))
            actions = random_actions(rng, bar_positions=bars, target_beats=target)
            jobs.append((analysis, y, apply_actions(actions, excerpt_start=start, bar_positions=bars, target_beats=target)))

    print(f"{len(jobs)} random retargets of {DEFAULT_EXCERPT_BEATS}-beat excerpts (0.5x..2x) over {len(tracks)} demo tracks")
    for normalize in (True, False):
        render_edit(jobs[0][1], jobs[0][0].sample_rate, jobs[0][0].beat_samples, jobs[0][2], normalize=normalize)
        audio_seconds = 0.0
        per_edit = []
        cpu_started = time.process_time()
        for analysis, y, edit in jobs:
            started = time.perf_counter()
            result = render_edit(y, analysis.sample_rate, analysis.beat_samples, edit, normalize=normalize)
            per_edit.append(time.perf_counter() - started)
            audio_seconds += result.duration_seconds
        cpu = time.process_time() - cpu_started
        wall = sum(per_edit)
        label = "normalised (BS.1770 + limiter)" if normalize else "raw (no normalisation)"
        # CPU time is reported too: on a shared machine wall time also counts other processes' turns.
        print(
            f"{label:31s} {audio_seconds:7.1f} s audio: wall {wall:6.3f} s = {audio_seconds / wall:6.0f}x real time, "
            f"CPU {cpu:6.3f} s = {audio_seconds / cpu:6.0f}x; median {1000 * np.median(per_edit):.2f} ms per edit"
        )


if __name__ == "__main__":
    main()

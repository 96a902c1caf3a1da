"""Rendering speed as a multiple of real time (targets: >= 1000x for the edits annotators hear, >= 500x native).

Renders random retargets of 32-beat excerpts of every demo track (to 0.5x..2x, as the
comparisons draw them), with and without loudness normalisation, and prints seconds of audio
rendered per second of wall time.  Then the delivered rendering (``render_native``): a 5-minute
44.1 kHz stereo recording (the stereo test clip, tests/data, looped) retargeted to 4 minutes,
with its lead-in and ring-out, measured the same way.
Run: ``python bench/bench_render.py [--edits N] [--native-only]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editing.audio import ANALYSIS_SR, load_native  # noqa: E402
from editing.audio import analyze_file  # noqa: E402
from editing.baselines import bar_aligned_cut, random_actions  # noqa: E402
from editing.demo import DEMO_SPECS, write_demo_corpus  # noqa: E402
from editing.edit import DEFAULT_EXCERPT_BEATS, MAX_STRETCH, MIN_STRETCH, apply_actions, reachable_target  # noqa: E402
from editing.render import render_edit, render_native  # noqa: E402

STEREO_CLIP = Path(__file__).resolve().parents[1] / "tests" / "data" / "caribbean-ending-stereo-44k.ogg"
NATIVE_SOURCE_SECONDS = 300.0
NATIVE_TARGET_SECONDS = 240.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=50, help="random edits per demo track")
    parser.add_argument("--native-only", action="store_true", help="only the native-rate line")
    args = parser.parse_args()
    if not args.native_only:
        bench_analysis_rate(args.edits)
    bench_native()


def bench_analysis_rate(n_edits: int) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_corpus(tmp, seed=0, n_tracks=len(DEMO_SPECS))
        tracks = [analyze_file(Path(tmp) / f"{spec.name}.wav")[:2] for spec in DEMO_SPECS]

    jobs = []
    for analysis, y in tracks:
        for _ in range(n_edits):
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


def bench_native(repeats: int = 5) -> None:
    """A 4-minute 44.1 kHz stereo edit rendered from its source at the source's rate: x real time, wall and CPU."""
    clip = load_native(STEREO_CLIP)
    sr = clip.sample_rate
    n = int(NATIVE_SOURCE_SECONDS * sr)
    source = np.resize(clip.samples, (n, clip.channels))  # the clip looped to 5 minutes
    # A regular 104 BPM grid at the analysis rate (the clip's tempo), starting after a 0.5 s lead-in
    # and ending 2 s before the end: the render's cost does not depend on where the beats fall.
    beat_samples = np.arange(int(0.5 * ANALYSIS_SR), int((NATIVE_SOURCE_SECONDS - 2.0) * ANALYSIS_SR),
                             int(round(ANALYSIS_SR * 60 / 104)), dtype=np.int64)
    bars = (np.arange(beat_samples.size - 1) % 4).astype(np.int8)
    beat_seconds = float(np.diff(beat_samples).mean()) / ANALYSIS_SR
    target = reachable_target(bars, round((NATIVE_TARGET_SECONDS - 2.5) / beat_seconds))
    rng = np.random.default_rng(0)
    edits = {
        "bar-aligned cut": apply_actions(bar_aligned_cut(bar_positions=bars, target_beats=target), excerpt_start=0,
                                         bar_positions=bars, target_beats=target),
        "random actions": apply_actions(random_actions(rng, bar_positions=bars, target_beats=target), excerpt_start=0,
                                        bar_positions=bars, target_beats=target),
    }
    # Wall time on a shared machine also counts other processes' turns: say how busy it was.
    print(f"native-rate rendering; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, edit in edits.items():
        for normalize in (True, False):
            render_native(source, sr, beat_samples, ANALYSIS_SR, edit, normalize=normalize)  # warm caches
            walls, cpus = [], []
            for _ in range(repeats):
                cpu_started, started = time.process_time(), time.perf_counter()
                result = render_native(source, sr, beat_samples, ANALYSIS_SR, edit, normalize=normalize)
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu_started)
            seconds = result.duration_seconds
            label = f"native {sr} Hz x{result.audio.shape[1]}, {name}, {'normalised' if normalize else 'raw'}"
            print(
                f"{label:50s} {seconds:6.1f} s audio, {len(result.seam_seconds):3d} seams: median wall "
                f"{1000 * np.median(walls):6.1f} ms = {seconds / np.median(walls):5.0f}x real time, "
                f"CPU {seconds / np.median(cpus):5.0f}x"
            )


if __name__ == "__main__":
    main()

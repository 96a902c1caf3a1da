"""Benchmark: retargeting a 4-minute track, analysing a new one, and scoring long edits.

Prints figures; it is not a test.  Run from the repository root:

    python bench/bench_retarget.py [--minutes 4] [--repeats 3]

1. Retargeting a generated track of ``--minutes`` minutes (analysis cached) to 0.75x and
   1.5x of its length, by the policy (the default PPO network, most probable edit), best of
   8 (the policy's edit and 7 samples, scored by a 3-member reward ensemble of the default
   architecture) and the heuristic (the dynamic program).  Target: under 2 s each on 2 cores.
   Untrained weights cost exactly what trained ones do.
2. The first analysis of the same track (decode + beat tracking + features), in seconds per
   minute of audio.  Target: at most 0.3 s per minute (Audition's Remix: about 4 s per minute).
3. Reward-model scoring of one edit of 32 to 400 output beats: time and peak memory, each
   length in a fresh process; the ratio to 32 beats should grow no faster than the length
   (windows around seams: ``editing.edit.scoring_windows``).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from editing.audio import ANALYSIS_SR, analyze_file, warm_up  # noqa: E402
from editing.demo import DemoTrackSpec, synthesize_track  # noqa: E402
from editing.render import write_audio  # noqa: E402

SECTIONS = (("intro", 8), ("verse", 16), ("chorus", 16), ("verse", 16), ("chorus", 16))


def long_track(minutes: float, folder: Path) -> Path:
    bars_per_minute = 120 / 4
    n_bars = int(round(minutes * bars_per_minute))
    sections, left = [], n_bars
    for name, bars in SECTIONS * 10:
        take = min(bars, left)
        if take <= 0:
            break
        sections.append((name, take))
        left -= take
    spec = DemoTrackSpec("bench-long", 120.0, 57, ((0, False), (7, False), (9, True), (5, False)), tuple(sections))
    y, _, _ = synthesize_track(spec, sr=ANALYSIS_SR, seed=1)
    path = folder / "bench-long.wav"
    write_audio(path, y, ANALYSIS_SR)
    return path


def best_of(seconds: list[float]) -> str:
    return f"{min(seconds):6.3f} s (median {float(np.median(seconds)):.3f})"


def bench_retarget(path: Path, repeats: int) -> None:
    import torch

    from editing.baselines import HEURISTIC, baseline_actions
    from editing.edit import N_MODEL_FEATURES, reachable_target
    from editing.env import EnvConfig, Excerpt, TrackArrays
    from rlhf.learning.configs import PolicyConfig
    from rlhf.learning.learned_reward import EnsembleReward
    from rlhf.learning.policy import best_of_n_actions, build_policy, sample_actions
    from rlhf.learning.reward_model import RewardEnsemble, RewardModelConfig, RewardNet

    began = time.perf_counter()
    warm_up()  # what a worker does once at start (numba compilation); not per track
    warm = time.perf_counter() - began
    began = time.perf_counter()
    analysis, _, _ = analyze_file(path)
    first_analysis = time.perf_counter() - began
    minutes = analysis.duration_seconds / 60.0
    print(f"track: {analysis.duration_seconds / 60:.2f} min, {analysis.n_beats} beats, {analysis.tempo_bpm:.1f} BPM; "
          f"torch threads {torch.get_num_threads()}")
    print(f"\n1. first analysis of the track (decode included): {first_analysis:.2f} s = {first_analysis / minutes:.3f} s "
          f"per minute (target <= 0.3 s/min; Remix ~4 s/min); the process's warm_up() before it: {warm:.1f} s")

    arrays = TrackArrays(name="bench", features=analysis.features, beat_samples=analysis.beat_samples,
                         bar_positions=analysis.bar_positions)
    policy = build_policy([arrays], env_config=EnvConfig(), config=PolicyConfig())
    config = RewardModelConfig()
    members = [RewardNet(config, np.zeros(N_MODEL_FEATURES), np.ones(N_MODEL_FEATURES)).eval() for _ in range(3)]
    ensemble = RewardEnsemble(members=members, config=config)
    scorer = EnsembleReward(ensemble)
    n = analysis.n_beats
    print("\n2. retarget the whole track (analysis cached), best of", repeats, "runs:")
    for factor in (0.75, 1.5):
        target = reachable_target(analysis.bar_positions, round(factor * n))
        excerpt = Excerpt(track_index=0, start=0, n_beats=n, target_beats=target)
        rng = np.random.default_rng(0)
        timings: dict[str, list[float]] = {"policy": [], "best-of-8": [], "heuristic": []}
        for _ in range(repeats):
            # Each method plans the passage afresh (best-of-N plans once for its N edits).
            t0 = time.perf_counter()
            sample_actions(policy, [arrays], [excerpt], deterministic=True, rng=rng)
            timings["policy"].append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            best_of_n_actions(policy, scorer, [arrays], [excerpt], n=8, rng=rng)
            timings["best-of-8"].append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            baseline_actions(HEURISTIC, rng=rng, context=arrays.dense, excerpt_start=0,
                             bar_positions=analysis.bar_positions, target_beats=target)
            timings["heuristic"].append(time.perf_counter() - t0)
        for method, seconds in timings.items():
            flag = "ok" if min(seconds) < 2.0 else "OVER"
            print(f"   {factor:.2f}x ({n} -> {target} beats)  {method:>10}: {best_of(seconds)}  [{flag}; target < 2 s]")


def score_one_length(n_beats: int, repeats: int) -> dict:
    """Time and peak RSS of scoring one edit of ``n_beats`` output beats, in this (fresh) process."""
    import torch

    from editing.audio import N_AUDIO_FEATURES
    from editing.edit import N_MODEL_FEATURES
    from rlhf.learning.reward_data import EditInput
    from rlhf.learning.reward_model import RewardEnsemble, RewardModelConfig, RewardNet

    config = RewardModelConfig()
    members = [RewardNet(config, np.zeros(N_MODEL_FEATURES), np.ones(N_MODEL_FEATURES)).eval() for _ in range(3)]
    ensemble = RewardEnsemble(members=members, config=config)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n_beats, N_MODEL_FEATURES)).astype(np.float32)
    features[:, N_AUDIO_FEATURES] = 0.0
    features[::16, N_AUDIO_FEATURES] = 1.0  # a seam every 16 beats, as a long retarget has
    edit = EditInput(features, np.zeros(n_beats, dtype=np.int64))
    ensemble.member_rewards([edit])  # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ensemble.member_rewards([edit])
        seconds.append(time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"beats": n_beats, "seconds": min(seconds), "peak_kib": after, "growth_kib": after - before,
            "threads": torch.get_num_threads()}


def bench_scoring(repeats: int) -> None:
    print("\n3. reward-model scoring of one edit (3 members), each length in a fresh process:")
    rows = []
    for n in (32, 64, 128, 200, 300, 400):
        out = subprocess.run([sys.executable, __file__, "--score-child", str(n), "--repeats", str(repeats)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"   {'beats':>5}  {'time':>9}  {'x time':>6}  {'x length':>8}  {'peak RSS':>9}  {'growth':>8}")
    for row in rows:
        print(f"   {row['beats']:>5}  {row['seconds'] * 1e3:7.1f} ms  {row['seconds'] / base['seconds']:6.2f}  "
              f"{row['beats'] / base['beats']:8.2f}  {row['peak_kib'] / 1024:7.1f} MB  {row['growth_kib'] / 1024:6.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--score-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score_child is not None:
        print(json.dumps(score_one_length(args.score_child, args.repeats)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = long_track(args.minutes, Path(tmp))
        bench_retarget(path, args.repeats)
    bench_scoring(args.repeats)


if __name__ == "__main__":
    main()

"""Benchmark: heuristic retarget of long recordings (4, 10, 20 minutes) to 0.5x and 2x: time and peak memory.

Prints figures; it is not a test.  Run from the repository root:

    python bench/bench_long_retarget.py [--minutes 4 10 20] [--no-render]

The tracks are musical, not silence: the real recording in ``tests/data`` (30 s, about 65 beats)
repeated to the length asked, each copy varied (its level by up to +-2 dB, every other copy
darkened by a one-pole low-pass), written as a WAV at the analysis rate.

Each length runs in a fresh process (so each peak is its own), twice:

1. *end to end from the file*: decode + beat tracking + features (``analyze_file``), the
   heuristic's context, the plan (``retarget_heuristic``) and the edit for 0.5x and 2x, and the
   render of each edit (``render_edit``, at the analysis rate); time per stage and the process's
   peak resident memory.  Targets (issue): < 2 s for 4 minutes, < 10 s for 20 minutes.  The
   worker's one-off ``warm_up()`` (numba compilation) is done first and not counted.
2. *the planner alone* at 2x, from the cached features: the resident memory it adds (peak during
   planning minus resident before it).  Target (issue): a 20-minute track at 2x within 2 GB.

Ratios are to the first (shortest) length of the same run.  The machine is shared: compare
figures within one run.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIP = ROOT / "tests" / "data" / "caribbean-excerpt.ogg"
FACTORS = (0.5, 2.0)


def long_track(minutes: float, folder: Path) -> Path:
    """A ``minutes``-long WAV made of varied copies of the real clip, at the analysis rate."""
    from editing.audio import ANALYSIS_SR, load_audio
    from editing.render import write_audio

    clip, _ = load_audio(CLIP, sr=ANALYSIS_SR)
    n_copies = int(np.ceil(minutes * 60 * ANALYSIS_SR / clip.size))
    copies = []
    for k in range(n_copies):
        copy = clip * np.float32(10 ** (((k * 3) % 5 - 2) / 20))
        if k % 2:  # darker: a one-pole low-pass, so that copies differ in timbre as well as level
            copy = copy.copy()
            copy[1:] = 0.6 * copy[1:] + 0.4 * copy[:-1]
        copies.append(copy)
    y = np.concatenate(copies)[: int(minutes * 60 * ANALYSIS_SR)]
    path = folder / f"long-{minutes:g}min.wav"
    write_audio(path, y, ANALYSIS_SR)
    return path


def _resident_bytes() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()


def _peak_bytes() -> int:
    """This process's own peak resident memory (``VmHWM``); ``ru_maxrss`` would carry over the parent's."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def end_to_end(path: Path, cache: Path, render: bool) -> dict:
    """Child: analyse, plan and edit (and render) 0.5x and 2x; stage times and the process's peak memory."""
    from editing.audio import ANALYSIS_SR, analyze_file, warm_up
    from editing.baselines import retarget_heuristic
    from editing.dense import dense_context
    from editing.edit import Action, apply_actions, reachable_target
    from editing.render import render_edit

    warm_up()
    out: dict = {"warm_rss_bytes": _resident_bytes()}
    began = time.perf_counter()
    analysis, y, _ = analyze_file(path)
    out["analysis_s"] = time.perf_counter() - began
    np.savez(cache, features=analysis.features, beat_samples=analysis.beat_samples,
             bar_positions=analysis.bar_positions)
    t0 = time.perf_counter()
    context = dense_context(analysis.features, analysis.beat_samples, analysis.bar_positions)
    out["context_s"] = time.perf_counter() - t0
    out["n_beats"], out["seconds"] = analysis.n_beats, analysis.duration_seconds
    for factor in FACTORS:
        target = reachable_target(analysis.bar_positions, round(factor * analysis.n_beats))
        t0 = time.perf_counter()
        actions = retarget_heuristic(context=context, excerpt_start=0, bar_positions=analysis.bar_positions,
                                     target_beats=target)
        edit = apply_actions(actions, excerpt_start=0, bar_positions=analysis.bar_positions, target_beats=target)
        plan_s = time.perf_counter() - t0
        render_s = 0.0
        if render:
            t0 = time.perf_counter()
            render_edit(y, ANALYSIS_SR, analysis.beat_samples, edit, normalize=False)
            render_s = time.perf_counter() - t0
        out[f"{factor:g}x"] = {"target_beats": target, "plan_s": plan_s, "render_s": render_s,
                               "seams": int(edit.seam_beats().size),
                               "phrase_repeats": int(actions.count(Action.LOOP_PHRASE)),
                               "bar_loops": int(actions.count(Action.LOOP_BAR))}
    out["peak_bytes"] = _peak_bytes()
    return out


def planner_alone(cache: Path) -> dict:
    """Child: the resident memory the planner adds while planning 2x from cached features."""
    from editing.baselines import retarget_heuristic
    from editing.dense import dense_context
    from editing.edit import reachable_target

    data = np.load(cache)
    bar_positions = data["bar_positions"]
    context = dense_context(data["features"], data["beat_samples"], bar_positions)
    retarget_heuristic(context=context, excerpt_start=0, bar_positions=bar_positions[:64], target_beats=96)  # compile
    target = reachable_target(bar_positions, 2 * bar_positions.size)
    before = _resident_bytes()
    t0 = time.perf_counter()
    retarget_heuristic(context=context, excerpt_start=0, bar_positions=bar_positions, target_beats=target)
    seconds = time.perf_counter() - t0
    return {"planner_bytes": max(0, _peak_bytes() - before), "planner_s": seconds, "target_beats": target}


def _child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise RuntimeError(f"child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def mb(n: float) -> str:
    return f"{n / 2**20:7.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[4.0, 10.0, 20.0])
    parser.add_argument("--no-render", action="store_true", help="leave the render out of the end-to-end time")
    parser.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, path, cache = args.child
        figures = end_to_end(Path(path), Path(cache), render=mode == "e2e") if mode.startswith("e2e") \
            else planner_alone(Path(cache))
        print(json.dumps(figures))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = long_track(minutes, Path(tmp))
            cache = Path(tmp) / f"{minutes:g}.npz"
            e2e = _child("--child", "e2e-norender" if args.no_render else "e2e", str(path), str(cache))
            alone = _child("--child", "plan", str(path), str(cache))
            rows.append((minutes, e2e, alone))
    base_minutes, base, base_alone = rows[0]
    print(f"heuristic retarget from the file (analysis, context, plan + edit{'' if args.no_render else ', render'}); "
          f"ratios to {base_minutes:g} min")
    for minutes, e2e, alone in rows:
        print(f"\n{minutes:g} min: {e2e['n_beats']} beats ({e2e['seconds'] / 60:.1f} min analysed)")
        print(f"  analysis {e2e['analysis_s']:.2f} s, context {e2e['context_s']:.2f} s")
        for factor in FACTORS:
            f = e2e[f"{factor:g}x"]
            whole = e2e["analysis_s"] + e2e["context_s"] + f["plan_s"] + f["render_s"]
            base_whole = base["analysis_s"] + base["context_s"] + base[f"{factor:g}x"]["plan_s"] + \
                base[f"{factor:g}x"]["render_s"]
            target_s = 2.0 if minutes <= 4 else 10.0 if minutes <= 20 else float("inf")
            print(f"  {factor:g}x -> {f['target_beats']} beats: plan + edit {f['plan_s']:.2f} s, render {f['render_s']:.2f} s; "
                  f"end to end {whole:.2f} s (x{whole / base_whole:.2f}) [{'ok' if whole < target_s else 'OVER'}; "
                  f"target < {target_s:g} s]; {f['seams']} seams, {f['phrase_repeats']} phrase repeats, "
                  f"{f['bar_loops']} bar loops")
        print(f"  peak resident memory of the whole run {mb(e2e['peak_bytes'])} (x{e2e['peak_bytes'] / base['peak_bytes']:.2f}; "
              f"after warm-up {mb(e2e['warm_rss_bytes'])})")
        print(f"  planner alone at 2x ({alone['target_beats']} beats): {alone['planner_s']:.2f} s, adds "
              f"{mb(alone['planner_bytes'])} (x{alone['planner_bytes'] / max(base_alone['planner_bytes'], 1):.2f}) "
              f"[{'ok' if alone['planner_bytes'] < 2 * 2**30 else 'OVER'}; target < 2 GB]")


if __name__ == "__main__":
    main()

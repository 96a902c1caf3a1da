"""Benchmark: the learned planner (heuristic seam cost + a residual learned from judgements), speed and evidence.

Prints figures; it is not a test.  Run from the repository root:

    python bench/bench_learned_planner.py [--seeds 3] [--rounds 4] [--listener module:NAME] [--pessimism K] [--corpus DIR]
                                          [--minutes 4] [--skip-speed] [--skip-evidence]

1. Speed: planning a ``--minutes``-minute track (the demo tracks' beats tiled to that length) to
   0.75x and 1.5x, by the heuristic and by the learned planner with a trained-looking seam model
   (every residual non-zero, priced in one batch), as a ratio in the same run; and peak memory
   of the planner's tables for 4, 10 and 20 minutes at 2x, each in a fresh process.
2. Evidence: per seed, the corpus (``--corpus DIR``, e.g. ``var/corpus`` from
   ``scripts/make_corpus.py``; default the generated demo corpus) is split by track: a third held
   out (at least 2), rotated by seed, the rest for training.  Simulated annotators (``--listener``, default the project's default
   listener, hearing the rendered audio; ``AnnotatorModel`` noise and ties) judge single-departure
   pairs on training passages: each round asks, per passage, the learned plan against its 3
   most disputed departures, then retrains the seam model.  After each round the learned plan and
   the heuristic's plan of 15 passages per held-out track are scored by the same listener:
   win rate (the annotators' expected preference, ties half), the shares better / worse /
   identical, with a 95 % bootstrap interval over held-out tracks, then passages within them; and,
   pooled over seeds per round, the same over every (seed, held-out track).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_site.settings")
os.environ.setdefault("SECRET_KEY", "bench-learned-planner")

import django  # noqa: E402

django.setup()

from editing.baselines import retarget_heuristic  # noqa: E402
from editing.demo import DEMO_SPECS, write_demo_corpus  # noqa: E402
from editing.dense import dense_context  # noqa: E402
from editing.edit import reachable_target  # noqa: E402
from editing.env import Excerpt  # noqa: E402
from rlhf.evidence.evaluation import corpus_files, eval_track_from_file, listen  # noqa: E402
from rlhf.evidence.listeners import DEFAULT_LISTENER, load_listener  # noqa: E402
from rlhf.evidence.simulate import AnnotatorModel  # noqa: E402
from rlhf.learning.configs import SeamTrainingConfig  # noqa: E402
from rlhf.learning.reward_data import confidence_target  # noqa: E402
from rlhf.learning.seam_model import (  # noqa: E402
    N_SEAM_FEATURES, Passage, SeamModel, SeamPairs, departures, heuristic_plan, learned_plan, track_feature_scale,
    train_seam_model,
)

PASSAGE_BEATS = 40
STRETCHES = (0.55, 0.7, 1.4, 1.8)


def passages_of(track, rng: np.random.Generator, n: int) -> list[tuple[Passage, Excerpt]]:
    arrays = track.arrays
    length = min(PASSAGE_BEATS, arrays.n_beats - 4)
    scaled = track_feature_scale(arrays.features)
    out = []
    for _ in range(n):
        start = int(rng.integers(0, arrays.n_beats - length + 1))
        while start > 0 and arrays.bar_positions[start] != 0:
            start -= 1
        bars = arrays.bar_positions[start:start + length]
        target = reachable_target(bars, int(round(length * rng.choice(STRETCHES))))
        out.append((Passage(context=arrays.dense, scaled=scaled, start=start, bar_positions=bars, target_beats=target),
                    Excerpt(track_index=0, start=start, n_beats=length, target_beats=target)))
    return out


def bootstrap(values_by_track: list[np.ndarray], *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean: resample tracks, then passages within each."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        picked = [values_by_track[i] for i in rng.integers(0, len(values_by_track), len(values_by_track))]
        means.append(np.mean(np.concatenate([v[rng.integers(0, v.size, v.size)] for v in picked])))
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def corpus_tracks(corpus: str | None) -> list:
    """The tracks to evaluate on: every audio file of ``corpus`` (analysed in memory), or the demo corpus."""
    if corpus:
        files = corpus_files(Path(corpus))
    else:
        files = write_demo_corpus(Path(tempfile.mkdtemp(prefix="bench-learned-")), seed=3, n_tracks=len(DEMO_SPECS))
    tracks = []
    for path in files:
        track = eval_track_from_file(path)
        if track.arrays.n_beats >= 24:
            tracks.append(track)
    if len(tracks) < 4:
        raise SystemExit(f"{corpus or 'the demo corpus'}: {len(tracks)} usable tracks, at least 4 needed")
    return tracks


def evidence(seeds: int, rounds: int, listener_spec: str, pessimism: float, corpus: str | None = None) -> list[dict]:
    listener = load_listener(listener_spec)
    annotator = AnnotatorModel()
    tracks = corpus_tracks(corpus)
    n_held = max(2, len(tracks) // 3)
    results = []
    pooled: dict[int, dict] = {}
    for seed in range(seeds):
        # Held-out tracks rotate with the seed (folds over tracks); a fold is never trained on.
        order = np.roll(np.arange(len(tracks)), -n_held * seed)
        train, held = [tracks[i] for i in order[:-n_held]], [tracks[i] for i in order[-n_held:]]
        rng = np.random.default_rng(100 + seed)
        answer_rng = random.Random(seed)
        per_track = max(2, 48 // len(train))
        train_passages = [(t, p, e) for t in train for p, e in passages_of(t, rng, per_track)]
        test_passages = [(t, p, e) for t in held
                         for p, e in passages_of(t, np.random.default_rng(500 + seed), max(5, 30 // len(held)))]
        heuristic_scores = [listen(listener, t, e, p.edit(heuristic_plan(p))) for t, p, e in test_passages]
        model, rows = SeamModel.untrained(), []
        for round_ in range(rounds):
            began = time.perf_counter()
            for group, (track, passage, excerpt) in enumerate(train_passages):
                plan = learned_plan(passage, model)
                score_plan = listen(listener, track, excerpt, passage.edit(plan))
                for departure in departures(passage, model, plan)[:3]:
                    margin = score_plan - listen(listener, track, excerpt, passage.edit(departure.actions))
                    choice, confidence, _ = annotator.answer(margin, answer_rng)
                    rows.append((passage.seam_sum(plan), passage.seam_sum(departure.actions),
                                 passage.heuristic_cost(plan), passage.heuristic_cost(departure.actions),
                                 confidence_target(choice, confidence), group))
            if rows:
                phi_a, phi_b, h_a, h_b, target, group = (np.array(x) for x in zip(*rows))
                pairs = SeamPairs(phi_a, phi_b, h_a.astype(float), h_b.astype(float), target.astype(float),
                                  np.ones(len(rows)), group.astype(np.int64))
                model = train_seam_model(pairs, SeamTrainingConfig(seed=seed, pessimism=pessimism))
            margins, identical, by_track = [], [], {}
            for (track, passage, excerpt), h_score in zip(test_passages, heuristic_scores):
                plan = learned_plan(passage, model)
                same = plan == heuristic_plan(passage)
                margin = 0.0 if same else listen(listener, track, excerpt, passage.edit(plan)) - h_score
                margins.append(margin)
                identical.append(same)
                by_track.setdefault(track.arrays.name, []).append(float(annotator.win_probability(margin)))
            margins = np.array(margins)
            wins = np.concatenate([np.array(v) for v in by_track.values()])
            lo, hi = bootstrap([np.array(v) for v in by_track.values()], seed=seed)
            pooled.setdefault(round_ + 1, {"judgements": [], "tracks": [], "margins": [], "identical": []})
            pooled[round_ + 1]["judgements"].append(len(rows))
            pooled[round_ + 1]["tracks"] += [np.array(v) for v in by_track.values()]
            pooled[round_ + 1]["margins"] += list(margins)
            pooled[round_ + 1]["identical"] += identical
            row = {"seed": seed, "round": round_ + 1, "judgements": len(rows), "win_rate": round(float(wins.mean()), 3),
                   "ci95": [round(lo, 3), round(hi, 3)], "better": round(float(np.mean(margins > 0)), 3),
                   "worse": round(float(np.mean(margins < 0)), 3), "identical": round(float(np.mean(identical)), 3),
                   "held_out": sorted(by_track), "seconds": round(time.perf_counter() - began, 1)}
            results.append(row)
            print(json.dumps(row), flush=True)
    for round_, data in sorted(pooled.items()):
        wins = np.concatenate(data["tracks"])
        lo, hi = bootstrap(data["tracks"])
        margins = np.array(data["margins"])
        summary = {"pooled_round": round_, "seeds": seeds, "mean_judgements": round(float(np.mean(data["judgements"]))),
                   "win_rate": round(float(wins.mean()), 3), "ci95": [round(lo, 3), round(hi, 3)],
                   "better": round(float(np.mean(margins > 0)), 3), "worse": round(float(np.mean(margins < 0)), 3),
                   "identical": round(float(np.mean(data["identical"])), 3), "held_out_passages": int(margins.size)}
        results.append(summary)
        print(json.dumps(summary), flush=True)
    return results


def long_passage(minutes: float) -> Passage:
    folder = Path(tempfile.mkdtemp(prefix="bench-long-"))
    track = eval_track_from_file(write_demo_corpus(folder, seed=0, n_tracks=1)[0])
    beats_per_minute = track.arrays.n_beats / (track.arrays.beat_samples[-1] / track.sample_rate / 60)
    n = int(round(minutes * beats_per_minute))
    reps = int(np.ceil(n / track.arrays.n_beats))
    features = np.tile(track.arrays.features, (reps, 1))[:n]
    bars = np.tile(track.arrays.bar_positions, reps)[:n]
    step = np.diff(track.arrays.beat_samples)
    samples = np.concatenate([[0], np.cumsum(np.tile(step, reps)[:n])])
    return Passage(context=dense_context(features, samples, bars), scaled=track_feature_scale(features), start=0,
                   bar_positions=bars, target_beats=n)


def speed(minutes: float, repeats: int) -> dict:
    passage = long_passage(minutes)
    n = len(passage.bar_positions)
    rng = np.random.default_rng(0)
    model = SeamModel(rng.normal(0, 0.05, (8, N_SEAM_FEATURES)), np.ones(8))
    out = {"minutes": minutes, "beats": n}
    for stretch in (0.75, 1.5):
        target = reachable_target(passage.bar_positions, int(round(stretch * n)))
        p = Passage(context=passage.context, scaled=passage.scaled, start=0, bar_positions=passage.bar_positions,
                    target_beats=target)
        retarget_heuristic(context=p.context, excerpt_start=0, bar_positions=p.bar_positions, target_beats=target)
        best_h = best_l = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            heuristic_plan(p)
            best_h = min(best_h, time.perf_counter() - t)
            t = time.perf_counter()
            learned_plan(p, model)
            best_l = min(best_l, time.perf_counter() - t)
        out[f"x{stretch}"] = {"heuristic_s": round(best_h, 3), "learned_s": round(best_l, 3),
                              "ratio": round(best_l / best_h, 1)}
    return out


def memory_child(minutes: float) -> None:
    passage = long_passage(minutes)
    n = len(passage.bar_positions)
    target = reachable_target(passage.bar_positions, 2 * n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    learned_plan(Passage(context=passage.context, scaled=passage.scaled, start=0, bar_positions=passage.bar_positions,
                         target_beats=target), SeamModel(np.full((8, N_SEAM_FEATURES), 0.01), np.ones(8)))
    print(json.dumps({"minutes": minutes, "beats": n, "peak_rss_mb": round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "before_mb": round(before / 1024, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--listener", default=DEFAULT_LISTENER)
    parser.add_argument("--corpus", default=None, help="a folder of audio files (scripts/make_corpus.py); default: "
                                                      "the generated demo corpus")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pessimism", type=float, default=SeamTrainingConfig().pessimism,
                        help="k of the learned seam cost's mean + k * spread (default: the studio's)")
    parser.add_argument("--skip-evidence", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--memory-child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return
    if not args.skip_speed:
        print("speed:", json.dumps(speed(args.minutes, args.repeats)), flush=True)
        for minutes in (4, 10, 20):
            done = subprocess.run([sys.executable, __file__, "--memory-child", str(minutes)], capture_output=True,
                                  text=True)
            print("memory at 2x:", done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr[-500:],
                  flush=True)
    if not args.skip_evidence:
        print(f"evidence: listener {args.listener}, pessimism {args.pessimism}, corpus {args.corpus or 'demo'}",
              flush=True)
        evidence(args.seeds, args.rounds, args.listener, args.pessimism, args.corpus)


if __name__ == "__main__":
    main()

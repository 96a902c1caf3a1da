"""Benchmark: the learned planner (heuristic seam cost + a residual learned from judgements), speed and evidence.

Prints figures; it is not a test.  Run from the repository root:

    python bench/bench_learned_planner.py [--seeds 3] [--rounds 4] [--listener module:NAME] [--pessimism K] [--corpus DIR]
    python bench/bench_learned_planner.py --curve [--selections random,disagreement,departures] [--checkpoints 100,200,400,800]
    python bench/bench_learned_planner.py --plot-from default=CURVE.log texture=CURVE2.log --plot docs/seam_selection_curve.png
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
import dataclasses
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
from rlhf.evidence.statistics import nested_bootstrap_ci  # noqa: E402
from rlhf.learning.configs import SeamTrainingConfig  # noqa: E402
from rlhf.learning.reward_data import confidence_target  # noqa: E402
from rlhf.learning.seam_model import (  # noqa: E402
    N_SEAM_FEATURES, QUESTION_SELECTIONS, Passage, SeamModel, SeamPairs, choose_pessimism, departures, heuristic_plan,
    learned_plan, seam_questions, track_feature_scale, train_seam_model,
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
            lo, hi = nested_bootstrap_ci(list(by_track.values()), seed=seed)
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
        lo, hi = nested_bootstrap_ci(data["tracks"])
        margins = np.array(data["margins"])
        summary = {"pooled_round": round_, "seeds": seeds, "mean_judgements": round(float(np.mean(data["judgements"]))),
                   "win_rate": round(float(wins.mean()), 3), "ci95": [round(lo, 3), round(hi, 3)],
                   "better": round(float(np.mean(margins > 0)), 3), "worse": round(float(np.mean(margins < 0)), 3),
                   "identical": round(float(np.mean(data["identical"])), 3), "held_out_passages": int(margins.size)}
        results.append(summary)
        print(json.dumps(summary), flush=True)
    return results


SELECTIONS = QUESTION_SELECTIONS
CHECKPOINTS = (100, 200, 400, 800)


def selection_curve(seeds: int, listener_spec: str, pessimism: float | None, corpus: str | None,
                    selections: tuple[str, ...] = SELECTIONS, checkpoints: tuple[int, ...] = CHECKPOINTS) -> list[dict]:
    """Win rate of the learned planner against the heuristic after J judgements, per pair selection.

    Per seed, the same held-out fold and training passages for every selection; questions are
    asked a batch at a time (one per training passage), the seam model retrained after each
    batch; at each checkpoint the learned plan of every held-out passage is scored.  Pooled over
    seeds, intervals over (seed, held-out track) then passages.
    """
    listener = load_listener(listener_spec)
    annotator = AnnotatorModel()
    tracks = corpus_tracks(corpus)
    n_held = max(2, len(tracks) // 3)
    heard: dict[tuple, float] = {}

    def hear(track, passage, excerpt, actions) -> float:
        key = (track.arrays.name, excerpt.start, excerpt.n_beats, excerpt.target_beats,
               tuple(passage.edit(actions).track_beats().tolist()))
        if key not in heard:
            heard[key] = listen(listener, track, excerpt, passage.edit(actions))
        return heard[key]

    pooled: dict[tuple[str, int], dict] = {}
    chosen_k: dict[tuple[str, int], list[float]] = {}
    for seed in range(seeds):
        order = np.roll(np.arange(len(tracks)), -n_held * seed)
        train, held = [tracks[i] for i in order[:-n_held]], [tracks[i] for i in order[-n_held:]]
        train_passages = [(t, p, e) for t in train for p, e in passages_of(t, np.random.default_rng(100 + seed),
                                                                          max(2, 48 // len(train)))]
        test_passages = [(t, p, e) for t in held
                         for p, e in passages_of(t, np.random.default_rng(500 + seed), max(5, 30 // len(held)))]
        h_scores = [hear(t, p, e, heuristic_plan(p)) for t, p, e in test_passages]
        names = sorted({t.arrays.name for t, _, _ in train_passages})
        track_of = [names.index(t.arrays.name) for t, _, _ in train_passages]
        for selection in selections:
            rng, answer_rng = np.random.default_rng(7 + seed), random.Random(seed)
            model, rows, began = SeamModel.untrained(), [], time.perf_counter()
            for checkpoint in checkpoints:
                while len(rows) < checkpoint:
                    asked = 0
                    for group, (track, passage, excerpt) in enumerate(train_passages):
                        for question in seam_questions(selection, passage, model, rng, 1):
                            a, b = question.a.actions, question.b.actions
                            margin = hear(track, passage, excerpt, a) - hear(track, passage, excerpt, b)
                            choice, confidence, _ = annotator.answer(margin, answer_rng)
                            rows.append((passage.seam_sum(a), passage.seam_sum(b), passage.heuristic_cost(a),
                                         passage.heuristic_cost(b), confidence_target(choice, confidence), group))
                            asked += 1
                        if len(rows) >= checkpoint:
                            break
                    if asked == 0:
                        break  # nothing left to ask
                    phi_a, phi_b, h_a, h_b, target, group = (np.array(x) for x in zip(*rows))
                    pairs = SeamPairs(phi_a, phi_b, h_a.astype(float), h_b.astype(float), target.astype(float),
                                      np.ones(len(rows)), group.astype(np.int64))
                    config = SeamTrainingConfig(seed=seed, pessimism=2.0 if pessimism is None else pessimism)
                    if pessimism is None:  # k chosen on the training tracks' own judgements
                        judged = sorted(set(group.tolist()))
                        row_tracks = np.array([track_of[g] for g in group.tolist()], dtype=np.int64)
                        by_track: dict[int, list[Passage]] = {}
                        for g in judged:
                            by_track.setdefault(track_of[g], []).append(train_passages[g][1])
                        choice = choose_pessimism(pairs, row_tracks, by_track, config)
                        config = dataclasses.replace(config, pessimism=choice.k)
                        chosen_k.setdefault((selection, checkpoint), []).append(choice.k)
                    model = train_seam_model(pairs, config)
                cell = pooled.setdefault((selection, checkpoint), {"tracks": {}, "margins": [], "identical": [],
                                                                   "judgements": []})
                cell["judgements"].append(len(rows))
                for (track, passage, excerpt), h_score in zip(test_passages, h_scores):
                    plan = learned_plan(passage, model)
                    same = plan == heuristic_plan(passage)
                    margin = 0.0 if same else hear(track, passage, excerpt, plan) - h_score
                    cell["margins"].append(margin)
                    cell["identical"].append(same)
                    cell["tracks"].setdefault((seed, track.arrays.name), []).append(
                        float(annotator.win_probability(margin)))
            print(json.dumps({"seed": seed, "selection": selection, "judgements": len(rows),
                              "seconds": round(time.perf_counter() - began, 1)}), flush=True)
    out = []
    for (selection, checkpoint), cell in pooled.items():
        wins = np.concatenate([np.array(v) for v in cell["tracks"].values()])
        lo, hi = nested_bootstrap_ci(list(cell["tracks"].values()))
        margins = np.array(cell["margins"])
        row = {"selection": selection, "judgements": checkpoint, "mean_judgements": round(float(np.mean(cell["judgements"]))),
               "win_rate": round(float(wins.mean()), 3), "ci95": [round(lo, 3), round(hi, 3)],
               "better": round(float(np.mean(margins >= annotator.tie_margin)), 3),
               "worse": round(float(np.mean(margins <= -annotator.tie_margin)), 3),
               "identical": round(float(np.mean(cell["identical"])), 3), "seeds": seeds,
               "held_out_passages": int(margins.size)}
        if (selection, checkpoint) in chosen_k:
            row["k_chosen"] = chosen_k[(selection, checkpoint)]
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def plot_curves(rows_by_listener: dict[str, list[dict]], path: Path) -> None:
    """One panel per listener: win rate against the heuristic by judgements, one line per selection, 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows_by_listener), figsize=(5.5 * len(rows_by_listener), 3.8), sharey=True,
                             squeeze=False)
    for ax, (listener, rows) in zip(axes[0], rows_by_listener.items()):
        for selection in SELECTIONS:
            points = sorted((r for r in rows if r.get("selection") == selection and "win_rate" in r),
                            key=lambda r: r["judgements"])
            if not points:
                continue
            x = [r["judgements"] for r in points]
            y = [r["win_rate"] for r in points]
            ax.errorbar(x, y, yerr=[[v - r["ci95"][0] for v, r in zip(y, points)],
                                    [r["ci95"][1] - v for v, r in zip(y, points)]],
                        marker="o", capsize=3, label=selection)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.axhline(0.6, color="tab:red", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_title(f"{listener} listener")
        ax.set_xlabel("judgements")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("learned planner vs heuristic (held out)")
    axes[0][0].set_ylim(0.3, 0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seam_training_time(n_judgements: int = 5000) -> dict:
    """Seconds to train the studio's seam model (8 members) on ``n_judgements`` pairs of edits."""
    rng = np.random.default_rng(0)
    phi_a, phi_b = rng.normal(size=(2, n_judgements, N_SEAM_FEATURES))
    pairs = SeamPairs(phi_a, phi_b, rng.random(n_judgements) * 3, rng.random(n_judgements) * 3,
                      rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], n_judgements), np.ones(n_judgements),
                      rng.integers(0, 40, n_judgements))
    began = time.perf_counter()
    train_seam_model(pairs, SeamTrainingConfig())
    return {"judgements": n_judgements, "seconds": round(time.perf_counter() - began, 2)}


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
    before = _peak_kib()
    learned_plan(Passage(context=passage.context, scaled=passage.scaled, start=0, bar_positions=passage.bar_positions,
                         target_beats=target), SeamModel(np.full((8, N_SEAM_FEATURES), 0.01), np.ones(8)))
    print(json.dumps({"minutes": minutes, "beats": n, "peak_rss_mb": round(_peak_kib() / 1024, 1),
                      "before_mb": round(before / 1024, 1)}))


def _peak_kib() -> int:
    """This process's own peak resident memory (``VmHWM``); ``ru_maxrss`` would carry over the parent's."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--listener", default=DEFAULT_LISTENER)
    parser.add_argument("--corpus", default=None, help="a folder of audio files (scripts/make_corpus.py); default: "
                                                      "the generated demo corpus")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pessimism", type=lambda v: None if v == "auto" else float(v),
                        default=SeamTrainingConfig().pessimism,
                        help="k of the learned seam cost's mean + k * spread, or auto: chosen on the training tracks "
                             "(choose_pessimism, the cycle's default) (default: 2)")
    parser.add_argument("--skip-evidence", action="store_true")
    parser.add_argument("--curve", action="store_true",
                        help="the judgements-to-threshold curve per pair selection (random, disagreement, departures)")
    parser.add_argument("--selections", default=",".join(SELECTIONS))
    parser.add_argument("--checkpoints", default=",".join(str(c) for c in CHECKPOINTS), help="judgement counts")
    parser.add_argument("--plot-from", nargs="+", default=None, metavar="LISTENER=LOG",
                        help="draw the curves of earlier --curve runs (their printed lines) into --plot, then stop")
    parser.add_argument("--plot", default="seam_selection_curve.png")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--memory-child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return
    if args.plot_from:
        rows = {}
        for item in args.plot_from:
            listener, _, log = item.partition("=")
            rows[listener] = [json.loads(line) for line in Path(log).read_text().splitlines() if line.startswith("{")]
        plot_curves(rows, Path(args.plot))
        return
    if args.curve:
        print(f"curve: listener {args.listener}, pessimism {args.pessimism}, corpus {args.corpus or 'demo'}", flush=True)
        selection_curve(args.seeds, args.listener, args.pessimism, args.corpus, tuple(args.selections.split(",")),
                        tuple(int(c) for c in args.checkpoints.split(",")))
        return
    if not args.skip_speed:
        print("speed:", json.dumps(speed(args.minutes, args.repeats)), flush=True)
        print("seam training:", json.dumps(seam_training_time()), flush=True)
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

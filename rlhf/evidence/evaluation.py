"""The evidence: does feedback make the editor better?  Arms, opponents, held-out tracks, intervals.

``manage.py evaluate_loop`` (and ``bench/bench_evaluate.py``) answer it; the pieces live here.

Tracks (:func:`split_tracks`)
    The corpus is split once into training tracks and held-out tracks (the same split for
    every seed).  Held-out tracks are never ingested: they are analysed in memory only for
    scoring, so no PPO run, reward model or comparison can see them (:func:`seed_run` also
    checks the database for their content before and after).
Arms (:data:`ARMS`)
    Per seed, ONE stream of judgements: simulated annotators (the listener under test, through
    the real annotation services) judge what the cycles propose; each cycle trains one reward
    model on them.  Three policies then train for the same PPO steps, each fine-tuning its own
    previous one: ``mix`` (the cycle's own policy, ``w * learned + (1 - w) * dense``),
    ``dense_only`` (w = 0) and ``learned_only`` (w = 1), with the same PPO seeds.  So the arms
    differ only in the reward they optimise: same compute, same judgements.
Opponents (:data:`OPPONENTS`)
    Random valid actions, the bar-aligned cut and the retargeting heuristic
    (``editing.baselines``), the arm's own first policy, and the other arms' policies of the
    same cycle (head to head).
Best of 8 (row ``mix_best_of_8``)
    What a user of ``/retarget/`` or ``manage.py retarget`` gets by default: the mix policy's most
    probable edit and 7 samples, the cycle's reward model choosing (``rlhf.learning.policy.best_of_n_actions``),
    scored against the same opponents.  It spends 8 rollouts and 8 reward-model scores where the
    heuristic spends one dynamic program; more compute cannot help the heuristic, which is already
    the least-cost edit by its own measure.
Win rates
    On ``eval_excerpts`` passages of the held-out tracks (fixed per seed), each edit is rendered
    and scored by the listener; the win rate is the annotator model's expected preference for
    the arm's edit (``AnnotatorModel.win_probability``: noise included, a tie counts one half),
    averaged over excerpts and seeds.  Policies take their most probable actions
    (``deterministic``), as the retarget command's policy method does.
Intervals (:func:`bootstrap_ci`)
    95 % percentile bootstrap, two levels: resample seeds, then excerpts within each seed.
Reward-model accuracy
    On an unbiased random slice of held-out comparisons: per held-out excerpt, pairs drawn
    uniformly from its candidates (the mix policy's samples, random actions, the bar-aligned
    cut, the heuristic); the label is the listener's preference (pairs within the tie margin are
    dropped); the reward model's accuracy (ensemble mean) sits beside the dense score's.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from annotations.models import Track
from annotations.services import (
    baseline_comparisons_create, track_ingest, track_load_analysis, track_load_audio, track_load_truth,
)
from editing.audio import SUPPORTED_EXTENSIONS, analyze_file, file_sha256
from editing.baselines import BAR_CUT, BASELINES, HEURISTIC, RANDOM, baseline_actions
from editing.demo import read_beats
from editing.dense import dense_rewards
from editing.edit import Edit, apply_actions
from editing.env import EnvConfig, Excerpt, TrackArrays
from editing.render import render_edit
from rlhf.cycle.policy_services import policy_artifact_path, policy_load, track_arrays
from rlhf.cycle.reward_services import policy_reward, training_device
from rlhf.cycle.state import Status, cycle_create
from rlhf.cycle.steps import cycle_run
from rlhf.evidence.listeners import Listener, clip_build, default_listener, listener_score
from rlhf.evidence.simulate import AnnotatorModel, annotators_simulate
from rlhf.learning.policy import best_of_n_actions, load_policy, sample_actions, save_policy, train_policy
from rlhf.learning.configs import BEST_OF_N
from rlhf.learning.proposal import choose_excerpts

ARMS = ("mix", "dense_only", "learned_only")
ARM_LEARNED_WEIGHT = {"dense_only": 0.0, "learned_only": 1.0}  # mix: the cycle's own learned_weight
# What the retarget page and command give by default: the mix policy's best of N by the reward model.
BEST_OF = BEST_OF_N
BEST_OF_ROW = f"mix_best_of_{BEST_OF}"
ROWS = (*ARMS, BEST_OF_ROW)
# Opponent keys in the results: the baselines by their short names, then "first" and the arms.
BASELINE_KEYS = {RANDOM: "random", BAR_CUT: "bar_cut", HEURISTIC: "heuristic"}
OPPONENTS = (*BASELINE_KEYS.values(), "first", *ARMS)


class EvaluationError(ValueError):
    """The evaluation cannot run as asked; the message says why."""


# --------------------------------------------------------------------------- tracks

@dataclass(frozen=True, eq=False)
class EvalTrack:
    """A track as the evaluation scores it: env arrays, audio and ground truth (if any)."""

    arrays: TrackArrays
    audio: np.ndarray
    sample_rate: int
    truth: tuple[np.ndarray, np.ndarray] | None
    content_hash: str


def truth_beside(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Ground truth written next to an audio file as ``NAME.beats.txt`` (the demo corpus), else None."""

    sidecar = path.parent / f"{path.stem}.beats.txt"
    return read_beats(sidecar) if sidecar.is_file() else None


def eval_track_from_file(path: Path) -> EvalTrack:
    """Analyse ``path`` in memory (nothing is stored)."""
    analysis, y, _ = analyze_file(path)
    arrays = TrackArrays(name=path.stem, features=analysis.features, beat_samples=analysis.beat_samples,
                         bar_positions=analysis.bar_positions)
    return EvalTrack(arrays=arrays, audio=y, sample_rate=analysis.sample_rate, truth=truth_beside(path),
                     content_hash=file_sha256(path))


def eval_track_from_row(track) -> EvalTrack:
    """An ingested Track row as an :class:`EvalTrack`."""

    analysis = track_load_analysis(track)
    arrays = TrackArrays(name=track.title, features=analysis.features, beat_samples=analysis.beat_samples,
                         bar_positions=analysis.bar_positions)
    return EvalTrack(arrays=arrays, audio=track_load_audio(track), sample_rate=analysis.sample_rate,
                     truth=track_load_truth(track), content_hash=track.content_hash)


def corpus_files(folder: Path) -> list[Path]:
    """The audio files of ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"corpus {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.is_file())
    if len(files) < 2:
        raise EvaluationError(f"corpus {folder}: {len(files)} audio files, at least 2 needed (training and held out)")
    return files


def split_tracks(files: Sequence[Path], *, n_held_out: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files): ``n_held_out`` files drawn with ``seed``, the rest for training."""
    if not 1 <= n_held_out < len(files):
        raise EvaluationError(f"{n_held_out} held-out tracks asked of {len(files)}: at least 1 and at most "
                              f"{len(files) - 1} (training needs a track)")
    order = np.random.default_rng(seed).permutation(len(files))
    held = {int(i) for i in order[:n_held_out]}
    return ([f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held])


# --------------------------------------------------------------------------- scoring edits

def edit_of(track: EvalTrack, excerpt: Excerpt, actions: Sequence[int]) -> Edit:
    return apply_actions(list(actions), excerpt_start=excerpt.start,
                         bar_positions=track.arrays.bar_positions[excerpt.start: excerpt.start + excerpt.n_beats],
                         target_beats=excerpt.target_beats)


def listen(listener: Listener, track: EvalTrack, excerpt: Excerpt, edit: Edit) -> float:
    """The listener's score of ``edit`` rendered as annotators would hear it."""
    result = render_edit(track.audio, track.sample_rate, track.arrays.beat_samples, edit)
    clip = clip_build(audio=result.audio, sample_rate=result.sample_rate,
                      output_beat_seconds=result.beat_starts_seconds,
                      source_beats=result.track_beats, seam_seconds=result.seam_seconds, track_audio=track.audio,
                      beat_samples=track.arrays.beat_samples, bar_positions=track.arrays.bar_positions,
                      truth=track.truth, excerpt_start=excerpt.start, n_source_beats=excerpt.n_beats,
                      target_beats=excerpt.target_beats)
    return listener_score(listener, clip)


def baseline_edits(name: str, tracks: Sequence[EvalTrack], excerpts: Sequence[Excerpt],
                   rng: np.random.Generator) -> list[Edit]:
    """The edits of baseline ``name`` (one of ``editing.baselines.BASELINES``) of each excerpt."""
    if name not in BASELINES:
        raise EvaluationError(f"opponent {name!r}: expected a policy or one of {', '.join(BASELINES)}")
    out = []
    for ex in excerpts:
        track = tracks[ex.track_index]
        actions = baseline_actions(name, rng=rng, context=track.arrays.dense, excerpt_start=ex.start,
                                   bar_positions=track.arrays.bar_positions[ex.start: ex.start + ex.n_beats],
                                   target_beats=ex.target_beats)
        out.append(edit_of(track, ex, actions))
    return out


def policy_edits(policy, tracks: Sequence[EvalTrack], excerpts: Sequence[Excerpt], *, deterministic: bool,
                 rng: np.random.Generator) -> list[Edit]:
    """The policy's edit of each excerpt."""

    actions = sample_actions(policy, [t.arrays for t in tracks], excerpts, deterministic=deterministic, rng=rng)
    return [edit_of(tracks[ex.track_index], ex, a) for ex, a in zip(excerpts, actions)]


def listen_all(listener: Listener, tracks: Sequence[EvalTrack], excerpts: Sequence[Excerpt],
               edits: Sequence[Edit]) -> np.ndarray:
    """Listener scores, float64 (len(excerpts),)."""
    return np.array([listen(listener, tracks[ex.track_index], ex, e) for ex, e in zip(excerpts, edits)])


def held_out_excerpts(tracks: Sequence[EvalTrack], n: int, seed: int) -> list[Excerpt]:
    """``n`` passages of the tracks, as proposals choose them (short enough to judge)."""

    return choose_excerpts([t.arrays for t in tracks], n, np.random.default_rng(seed))


# --------------------------------------------------------------------------- win rates (one set of excerpts)

@dataclass(frozen=True)
class WinRate:
    """Expected share of simulated judgements preferring the policy, over ``n_excerpts`` excerpts."""

    opponent: str
    win_rate: float
    n_excerpts: int
    mean_score_policy: float
    mean_score_opponent: float


def simulated_win_rates(
    *,
    tracks: Sequence[EvalTrack],
    policy,
    opponents: dict[str, Any],
    listener: Listener,
    n_excerpts: int = 24,
    seed: int = 12345,
    deterministic: bool = True,
    annotator: AnnotatorModel = AnnotatorModel(),
) -> dict[str, WinRate]:
    """Win rate of ``policy`` against each opponent (a policy, or a name in ``editing.baselines.BASELINES``).

    The excerpts depend only on ``seed`` and the tracks, so figures from different cycles are
    measured on the same excerpts.
    """
    excerpts = held_out_excerpts(tracks, n_excerpts, seed)

    def scores(who) -> np.ndarray:
        draw = np.random.default_rng(seed + 2)
        if isinstance(who, str):
            edits = baseline_edits(who, tracks, excerpts, draw)
        else:
            edits = policy_edits(who, tracks, excerpts, deterministic=deterministic, rng=draw)
        return listen_all(listener, tracks, excerpts, edits)

    mine = scores(policy)
    results = {}
    for name, who in opponents.items():
        theirs = scores(who)
        p_win = annotator.win_probability(mine - theirs)
        results[name] = WinRate(opponent=name, win_rate=float(p_win.mean()), n_excerpts=len(excerpts),
                                mean_score_policy=float(mine.mean()), mean_score_opponent=float(theirs.mean()))
    return results


# --------------------------------------------------------------------------- the simulated loop (training tracks)

@dataclass(frozen=True)
class LoopRow:
    """One cycle of :func:`simulated_loop`: what it trained and how the simulated annotators rate its policy."""

    cycle: int
    reward_model: str
    policy: str
    rm_accuracy: float | None
    win_vs_random: float
    win_vs_heuristic: float
    win_vs_first: float | None  # None for the first policy itself
    n_judgements: int
    seconds: float


def simulated_loop(
    *,
    n_cycles: int,
    parameters,
    listener: Listener | None = None,
    n_annotators: int = 3,
    noise: float = 0.1,
    eval_excerpts: int = 24,
    seed: int = 0,
    echo: Callable[[float, str], None] | None = None,
    on_row: Callable[[LoopRow], None] | None = None,
) -> list[LoopRow]:
    """``n_cycles`` full cycles in the current studio, simulated annotators answering every open comparison before each.

    A quick look at whether the loop learns, on the studio's own (training) tracks: the win
    rates are measured on the same excerpts every cycle, against random actions, the
    retargeting heuristic and the first policy of this loop.  The evidence on held-out tracks,
    with arms and intervals, is :func:`seed_run` (``manage.py evaluate_loop``).
    Raises :class:`EvaluationError` when a cycle fails.
    """

    listener = listener or default_listener
    tracks = [eval_track_from_row(t) for t in Track.objects.order_by("pk")]
    if not tracks:
        raise EvaluationError("no tracks are ingested: nothing to edit")
    annotator = AnnotatorModel(noise=noise)
    rows: list[LoopRow] = []
    first = None
    for k in range(n_cycles):
        began = time.perf_counter()
        report = annotators_simulate(n_annotators=n_annotators, listener=listener, model=annotator, seed=seed + k)
        cycle = cycle_run(cycle=cycle_create(parameters=parameters, trigger="simulation"), echo=echo)
        if cycle.status != Status.DONE:
            raise EvaluationError(f"cycle {cycle.pk} {cycle.status}: {cycle.error}")
        policy = cycle.policy_version
        first = first or policy
        opponents: dict[str, Any] = {RANDOM: RANDOM, HEURISTIC: HEURISTIC}
        if first.pk != policy.pk:
            opponents["first"] = policy_load(first)
        rates = simulated_win_rates(tracks=tracks, policy=policy_load(policy), opponents=opponents, listener=listener,
                                    n_excerpts=eval_excerpts, seed=seed + 12345, annotator=annotator)
        row = LoopRow(
            cycle=cycle.pk, reward_model=cycle.reward_model_version.label, policy=policy.label,
            rm_accuracy=cycle.metrics["reward_model"]["accuracy"], win_vs_random=rates[RANDOM].win_rate,
            win_vs_heuristic=rates[HEURISTIC].win_rate,
            win_vs_first=rates["first"].win_rate if "first" in rates else None,
            n_judgements=report.n_judgements, seconds=time.perf_counter() - began,
        )
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


# --------------------------------------------------------------------------- intervals

def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` [shape=(n_seeds, n_excerpts)].

    Two levels: each replicate draws seeds with replacement, then excerpts with replacement
    within each drawn seed, so both sources of variation widen the interval.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2 or values.size == 0:
        raise EvaluationError(f"bootstrap needs a (seeds, excerpts) array, got shape {values.shape}")
    n_seeds, n_items = values.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    items = rng.integers(0, n_items, size=(n_boot, n_seeds, n_items))
    means = values[seeds[:, :, None], items].mean(axis=(1, 2))
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def win_summary(p_win: np.ndarray) -> dict[str, Any]:
    """``{"win_rate", "ci95"}`` of per-excerpt win probabilities [shape=(n_seeds, n_excerpts)]."""
    lo, hi = bootstrap_ci(p_win)
    return {"win_rate": round(float(np.mean(p_win)), 4), "ci95": [round(lo, 4), round(hi, 4)]}


# --------------------------------------------------------------------------- one seed

def _rm_slice(*, listener: Listener, annotator: AnnotatorModel, tracks: Sequence[EvalTrack],
              excerpts: Sequence[Excerpt], candidates: list[list[Edit]], reward, rng: np.random.Generator,
              pairs_per_excerpt: int = 2) -> dict[str, Any]:
    """Reward-model and dense accuracy on uniformly drawn pairs of each excerpt's candidates."""
    rm_correct: list[float] = []
    dense_correct: list[float] = []
    for ex, edits in zip(excerpts, candidates):
        unique = list({e.key(): e for e in edits}.values())
        if len(unique) < 2:
            continue
        track = tracks[ex.track_index]
        listened = np.array([listen(listener, track, ex, e) for e in unique])
        rewards = np.asarray(reward.member_rewards([(track.arrays, e) for e in unique]), dtype=np.float64).mean(0)
        dense = np.array([dense_rewards(e, context=track.arrays.dense, target_beats=ex.target_beats).combined
                          for e in unique])
        all_pairs = [(i, j) for i in range(len(unique)) for j in range(i + 1, len(unique))]
        for row in rng.choice(len(all_pairs), size=min(pairs_per_excerpt, len(all_pairs)), replace=False):
            i, j = all_pairs[int(row)]
            margin = listened[i] - listened[j]
            if abs(margin) < annotator.tie_margin:
                continue
            rm_correct.append(float(np.sign(rewards[i] - rewards[j]) == np.sign(margin)))
            d = np.sign(dense[i] - dense[j])
            dense_correct.append(0.5 if d == 0 else float(d == np.sign(margin)))
    return {"rm_correct": rm_correct, "dense_correct": dense_correct}


def _check_unseen(held_out: Sequence[EvalTrack]) -> None:

    hashes = [t.content_hash for t in held_out]
    leaked = list(Track.objects.filter(content_hash__in=hashes).values_list("title", flat=True))
    if leaked:
        raise EvaluationError(f"held-out tracks {', '.join(leaked)} are in the studio: they would reach training")


def seed_run(
    *,
    train_files: Sequence[Path],
    held_out: Sequence[EvalTrack],
    n_cycles: int,
    parameters,
    listener: Listener,
    annotator: AnnotatorModel = AnnotatorModel(),
    n_annotators: int = 3,
    eval_excerpts: int = 16,
    baseline_excerpts: int = 8,
    seed: int = 0,
    workdir: Path,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One seed of the evaluation in the current (throw-away) studio; returns its raw figures.

    Ingests the training files, lets simulated annotators judge baseline comparisons, then runs
    ``n_cycles`` cycles (see the module docstring), scoring every arm on the held-out excerpts
    after each.  Raises :class:`EvaluationError` when a held-out track is in the studio, or a
    cycle fails.
    """

    say = echo or (lambda message: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_unseen(held_out)
    parameters = replace(parameters, seed=parameters.seed + 1000 * seed)
    tracks = [track_ingest(path=p)[0] for p in train_files]
    _check_unseen(held_out)
    for i, track in enumerate(tracks):
        baseline_comparisons_create(track=track, n_excerpts=baseline_excerpts, seed=1000 * seed + i)
    arrays = track_arrays(tracks)
    excerpts = held_out_excerpts(held_out, eval_excerpts, 7919 + seed)
    baseline_scores = {
        key: listen_all(listener, held_out, excerpts,
                        baseline_edits(name, held_out, excerpts, np.random.default_rng(31 + seed))).tolist()
        for name, key in BASELINE_KEYS.items()
    }
    parents: dict[str, Path | None] = {arm: None for arm in ARM_LEARNED_WEIGHT}
    first_scores: dict[str, list[float]] = {}
    cycles: list[dict[str, Any]] = []
    for k in range(n_cycles):
        began = time.perf_counter()
        report = annotators_simulate(n_annotators=n_annotators, listener=listener, model=annotator,
                                     seed=1000 * seed + k)
        say(f"seed {seed} cycle {k + 1}: {report.n_judgements} judgements; training")
        cycle = cycle_run(cycle=cycle_create(parameters=parameters, trigger="evaluation"))
        if cycle.status != Status.DONE:
            raise EvaluationError(f"seed {seed}: cycle {cycle.pk} {cycle.status}: {cycle.error}")
        # The learned reward exactly as the cycle's own policy trained on it (scale and guard).
        reward = policy_reward(cycle.reward_model_version, pessimism=parameters.rm_pessimism)
        policies = {"mix": load_policy(policy_artifact_path(cycle.policy_version), device="cpu")}
        config = parameters.policy_config(seed=parameters.seed + cycle.pk, device=training_device())
        ppo_log: dict[str, Any] = {"mix": cycle.metrics.get("policy", {})}
        for arm, weight in ARM_LEARNED_WEIGHT.items():
            run = train_policy(arrays, total_timesteps=parameters.ppo_timesteps,
                               learned_reward=reward if weight > 0 else None,
                               env_config=EnvConfig(learned_weight=weight), config=config, parent=parents[arm])
            path = save_policy(run.model, workdir / f"seed{seed}-{arm}-cycle{k + 1}.zip")
            parents[arm] = path
            policies[arm] = run.model
            ppo_log[arm] = run.summary()
        arm_edits = {arm: policy_edits(policy, held_out, excerpts, deterministic=True, rng=np.random.default_rng(0))
                     for arm, policy in policies.items()}  # computed once: scored, then rewarded below
        scores = {arm: listen_all(listener, held_out, excerpts, edits).tolist() for arm, edits in arm_edits.items()}
        chosen = best_of_n_actions(policies["mix"], reward, [t.arrays for t in held_out], excerpts, n=BEST_OF,
                                   rng=np.random.default_rng(0))
        scores[BEST_OF_ROW] = listen_all(listener, held_out, excerpts,
                                         [edit_of(held_out[ex.track_index], ex, a)
                                          for ex, a in zip(excerpts, chosen)]).tolist()
        if k == 0:
            first_scores = {arm: list(s) for arm, s in scores.items()}
        # Learned reward against the listener on the arms' held-out edits: over-optimisation shows
        # as the learned reward rising while the listener's score does not.
        reward_vs_listener = {}
        for arm, edits in arm_edits.items():
            learned = reward([_Finished(held_out[ex.track_index].arrays, e) for ex, e in zip(excerpts, edits)])
            reward_vs_listener[arm] = {"learned": float(np.mean(learned)), "listener": float(np.mean(scores[arm]))}
        draw = np.random.default_rng(97 + 1000 * seed + k)
        samples = [policy_edits(policies["mix"], held_out, excerpts, deterministic=False, rng=draw) for _ in range(2)]
        candidates = [[samples[0][i], samples[1][i]] for i in range(len(excerpts))]
        for name in BASELINES:
            for i, e in enumerate(baseline_edits(name, held_out, excerpts, draw)):
                candidates[i].append(e)
        rm = _rm_slice(listener=listener, annotator=annotator, tracks=held_out, excerpts=excerpts,
                       candidates=candidates, reward=reward, rng=draw)
        _check_unseen(held_out)
        cycles.append({
            "cycle": k + 1, "scores": {**scores, **baseline_scores}, "first": first_scores,
            "reward_model": rm, "cycle_metrics": cycle.metrics.get("reward_model", {}), "ppo": ppo_log,
            "reward_vs_listener": reward_vs_listener, "n_judgements": report.n_judgements,
            "seconds": round(time.perf_counter() - began, 1),
        })
        say(f"seed {seed} cycle {k + 1}: done in {cycles[-1]['seconds']} s; mean listener score "
            + ", ".join(f"{a} {np.mean(s):.2f}" for a, s in {**scores, **baseline_scores}.items()))
    return {"seed": seed, "train_tracks": [p.name for p in train_files],
            "held_out_tracks": [t.arrays.name for t in held_out],
            "excerpts": [[int(e.track_index), int(e.start), int(e.n_beats), int(e.target_beats)] for e in excerpts],
            "cycles": cycles}


@dataclass(frozen=True)
class _Finished:
    """The two fields of ``editing.env.FinishedEpisode`` that ``EnsembleReward`` reads."""

    track: TrackArrays
    edit: Edit


# --------------------------------------------------------------------------- summary

def summarise(seed_results: Sequence[dict[str, Any]], *,
              annotator: AnnotatorModel = AnnotatorModel()) -> dict[str, Any]:
    """Per cycle and arm: win rates with intervals against every opponent, and reward-model accuracy.

    Returns ``{"cycles": [...], "final": final}`` with ``final[arm][opponent] = {"win_rate",
    "ci95"}`` and ``final[arm]["reward_model"] = {"accuracy", "dense_accuracy", ...}``; the
    ``mix_best_of_8`` row sits beside the arms (its opponents: the baselines and the arms).
    """
    if not seed_results:
        raise EvaluationError("no seed results to summarise")
    n_cycles = min(len(r["cycles"]) for r in seed_results)
    per_cycle = []
    for k in range(n_cycles):
        rows = [r["cycles"][k] for r in seed_results]
        table: dict[str, Any] = {}
        rm_correct = [c for row in rows for c in row["reward_model"]["rm_correct"]]
        dense_correct = [c for row in rows for c in row["reward_model"]["dense_correct"]]
        rm = {"accuracy": round(float(np.mean(rm_correct)), 4) if rm_correct else None,
              "dense_accuracy": round(float(np.mean(dense_correct)), 4) if dense_correct else None,
              "n_pairs": len(rm_correct)}
        for arm in ROWS:
            mine = np.array([row["scores"][arm] for row in rows])
            entry: dict[str, Any] = {"mean_listener_score": round(float(mine.mean()), 4)}
            for opponent in (*BASELINE_KEYS.values(), *ARMS):
                if opponent == arm:
                    continue
                theirs = np.array([row["scores"][opponent] for row in rows])
                entry[opponent] = win_summary(annotator.win_probability(mine - theirs))
            if k > 0 and arm in ARMS:
                theirs = np.array([row["first"][arm] for row in rows])
                entry["first"] = win_summary(annotator.win_probability(mine - theirs))
            entry["reward_model"] = rm
            table[arm] = entry
        baselines = {key: round(float(np.mean([row["scores"][key] for row in rows])), 4)
                     for key in BASELINE_KEYS.values()}
        per_cycle.append({"cycle": k + 1, "arms": table, "baseline_mean_listener_score": baselines})
    return {"cycles": per_cycle, "final": per_cycle[-1]["arms"]}


def format_table(summary: dict[str, Any]) -> str:
    """The final cycle as a plain-text table: one row per arm, win rate [95 % interval] per opponent."""
    final = summary["final"]
    columns = [o for o in OPPONENTS if any(o in final[arm] for arm in ROWS)]
    lines = [f"{'arm':<15}" + "".join(f"{c:>22}" for c in columns) + f"{'RM acc':>9}{'dense acc':>11}"]
    for arm in ROWS:
        cells = []
        for c in columns:
            cell = final[arm].get(c)
            cells.append(f"{cell['win_rate']:.3f} [{cell['ci95'][0]:.2f}, {cell['ci95'][1]:.2f}]" if cell else "-")
        rm = final[arm]["reward_model"]
        acc = "-" if rm["accuracy"] is None else f"{rm['accuracy']:.3f}"
        dense = "-" if rm["dense_accuracy"] is None else f"{rm['dense_accuracy']:.3f}"
        lines.append(f"{arm:<15}" + "".join(f"{cell:>22}" for cell in cells) + f"{acc:>9}{dense:>11}")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Win rate per cycle with its interval, one panel per opponent, one line per arm (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opponents = ["random", "bar_cut", "heuristic", "dense_only"]
    fig, axes = plt.subplots(1, len(opponents), figsize=(4 * len(opponents), 3.4), sharey=True)
    cycles = [c["cycle"] for c in summary["cycles"]]
    colours = dict(zip(ROWS, ("tab:blue", "tab:orange", "tab:green", "tab:purple")))
    for ax, opponent in zip(axes, opponents):
        for arm in ROWS:
            cells = [c["arms"][arm].get(opponent) for c in summary["cycles"]]
            if not any(cells):
                continue
            rate = [cell["win_rate"] if cell else np.nan for cell in cells]
            lo = [cell["ci95"][0] if cell else np.nan for cell in cells]
            hi = [cell["ci95"][1] if cell else np.nan for cell in cells]
            ax.plot(cycles, rate, marker="o", label=arm, color=colours[arm])
            ax.fill_between(cycles, lo, hi, alpha=0.2, color=colours[arm])
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_title(f"vs {opponent}")
        ax.set_xlabel("cycle")
        ax.set_xticks(cycles)
    axes[0].set_ylabel("win rate on held-out tracks")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=1))

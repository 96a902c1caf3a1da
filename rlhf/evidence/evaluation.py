"""The evidence: does feedback make the editor better than the hand-written one?  Arms, held-out tracks, intervals.

``manage.py evaluate_loop`` (and ``bench/bench_evaluate.py``) answer it; the pieces live here,
the statistics in :mod:`rlhf.evidence.statistics`.

Tracks (:func:`fold_split`)
    The corpus is cut into ``folds`` folds of tracks (one fixed shuffle); seed ``s`` holds out
    fold ``s mod folds`` and trains on the rest, so the seeds hold out different tracks.
    Held-out tracks are never ingested: they are analysed in memory only for scoring, so no
    PPO run, reward model, seam model or comparison can see them (:func:`seed_run` also checks
    the database for their content before and after), and nothing is tuned on them.
One seed
    ONE stream of judgements: simulated annotators (the listener under test, through the real
    annotation services) judge baseline comparisons, then what each cycle proposes; each cycle
    trains its reward model, seam model and PPO policy on them, as the studio does.
Arms (:data:`ARMS`), scored on the same held-out excerpts after each cycle
    ``heuristic`` (``editing.baselines.retarget_heuristic``: the strongest hand-written editor),
    ``learned_planner`` (the cycle's seam model priced into the same exact planner),
    ``policy`` (the cycle's PPO policy on the mix of learned and dense reward, most probable
    edit: PPO's own arm), ``policy_best_of_n`` (its most probable edit and N - 1 samples, the
    heuristic's plan, and the learned planner's plan and its cheapest single departures, the
    reward model choosing: the retarget page's default; which candidate won is counted per
    cycle, ``best_of_n_sources``), ``dense_only`` (PPO on the dense score alone, the same steps,
    imitating the heuristic: no judgement reaches it), ``bar_cut`` and ``random``.
Compute-matched (:data:`MATCHED`)
    An arm that chooses among candidates meets ``heuristic_best_of_n``: as many of the heuristic's
    best plans (its own and its cheapest single departures, :func:`heuristic_candidates`) with
    the same chooser.  Both the matched and the single-candidate comparison are reported.
Learned planner against PPO
    The table reports the learned planner against ``policy`` and ``policy_best_of_n`` and says
    in words when the learned planner beats PPO (:func:`format_table`).
Figures (:func:`summarise`)
    Every arm against every other on the last cycle: win rate (the annotator model's expected
    preference, ties half), the shares better / worse / level / identical, the mean paired
    listener-score difference, each with a 95 % two-level bootstrap interval (tracks, then
    excerpts within a track), and n excerpts and tracks.  Reward-model and seam-model accuracy
    on held-out heuristic-versus-challenger pairs the listener can tell apart, beside the dense
    score's and the heuristic cost's on the same pairs.  The judgement-efficiency curve: the
    learned planner retrained on the first J judgements of each selection strategy, and every
    learned arm after each cycle, against the heuristic.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf

from annotations.models import Judgement, Track
from annotations.services import (
    baseline_comparisons_create, track_ingest, track_load_analysis, track_load_audio, track_load_truth,
)
from editing.audio import SUPPORTED_EXTENSIONS, analyze_file, file_sha256
from editing.baselines import BAR_CUT, BASELINES, HEURISTIC, RANDOM, baseline_actions, edit_cost
from editing.demo import read_beats
from editing.dense import dense_rewards
from editing.edit import Edit, apply_actions
from editing.env import EnvConfig, Excerpt, TrackArrays
from editing.render import render_edit
from rlhf.cycle.policy_services import policy_artifact_path, policy_load, track_arrays
from rlhf.cycle.reward_services import policy_reward, training_device
from rlhf.cycle.seam_services import seam_data_build, seam_model_fit, seam_model_load
from rlhf.cycle.state import Status, cycle_create
from rlhf.cycle.steps import cycle_run
from rlhf.evidence.listeners import Listener, ListenerError, clip_build, default_listener, listener_score
from rlhf.evidence.simulate import AnnotatorModel, annotators_simulate
from rlhf.evidence.statistics import agreement, mean_with_ci, paired_comparison
from rlhf.learning.configs import BEST_OF_N, SeamTrainingConfig
from rlhf.learning.policy import (
    BEST_OF_N_SOURCES, best_of_n_actions, load_policy, sample_actions, save_policy, train_policy,
)
from rlhf.learning.proposal import choose_excerpts
from rlhf.learning.seam_model import (
    Passage, SeamModel, departures, edit_seam_sum, heuristic_plan, learned_plan, track_feature_scale,
)

ARMS = ("heuristic", "heuristic_best_of_n", "learned_planner", "policy", "policy_best_of_n", "dense_only", "bar_cut",
        "random")
LEARNED_ARMS = ("learned_planner", "policy", "policy_best_of_n", "dense_only")
MATCHED = {"policy_best_of_n": "heuristic_best_of_n"}  # an arm choosing among N -> the heuristic given N and the chooser
BEST_OF = BEST_OF_N
BASELINE_KEYS = {RANDOM: "random", BAR_CUT: "bar_cut", HEURISTIC: "heuristic"}
CURVE_JUDGEMENTS = (100, 200, 400, 800)  # and each selection's total
MIN_TRACKS = 4  # a corpus needs this many usable tracks: folds of held-out tracks and enough to train on
MIN_SECONDS = 8.0  # a usable track lasts at least this long (an excerpt of several bars)


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
    """The usable audio files of ``folder``, sorted by name: readable, at least :data:`MIN_SECONDS` long.

    Raises :class:`EvaluationError` with the counts when fewer than :data:`MIN_TRACKS` are usable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"corpus {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.is_file())
    usable, refused = [], []
    for path in files:
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as err:
            refused.append(f"{path.name} (unreadable: {err})")
            continue
        if info.duration < MIN_SECONDS:
            refused.append(f"{path.name} ({info.duration:.1f} s)")
            continue
        usable.append(path)
    if len(usable) < MIN_TRACKS:
        why = f"; refused {', '.join(refused[:5])}" if refused else ""
        raise EvaluationError(f"corpus {folder}: {len(usable)} usable tracks of {len(files)} audio files, at least "
                              f"{MIN_TRACKS} needed (held-out folds and training){why}")
    return usable


def fold_split(files: Sequence[Path], *, seed: int, n_folds: int) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files) of seed ``seed``: fold ``seed mod n_folds`` of one fixed shuffle held out.

    Every fold is held out by some seed once there are ``n_folds`` seeds; a fold never trains the
    seed that holds it out.  Raises :class:`EvaluationError` when a fold would be empty or fewer
    than 2 tracks would be left to train on (the reward model splits its data by track).
    """
    if n_folds < 2:
        raise EvaluationError(f"{n_folds} folds: at least 2 (a fold held out, the others trained on)")
    if n_folds > len(files) or len(files) - int(np.ceil(len(files) / n_folds)) < 2:
        raise EvaluationError(f"{n_folds} folds of {len(files)} tracks: each fold needs a track and training at "
                              f"least 2; use fewer folds or more tracks")
    order = np.random.default_rng(0).permutation(len(files))
    held = {int(i) for i in np.array_split(order, n_folds)[seed % n_folds]}
    return ([f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held])


def listener_probe(listener: Listener, path: Path) -> float:
    """Score the heuristic's edit of one passage of ``path``: a listener that fails, takes the wrong
    arguments or returns NaN is refused here, before any training (:class:`ListenerError`)."""
    track = eval_track_from_file(path)
    excerpt = held_out_excerpts([track], 1, 0)[0]
    edit = baseline_edits(HEURISTIC, [track], [excerpt], np.random.default_rng(0))[0]
    try:
        return listen(listener, track, excerpt, edit)
    except ListenerError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of an outside listener is reported with its reason
        raise ListenerError(f"the listener failed on a probe clip of {path.name}: {type(err).__name__}: {err}") from err


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


# --------------------------------------------------------------------------- one seed

def _short(edit: Edit) -> str:
    return edit.key()[:16]


def _passages(tracks: Sequence[EvalTrack], excerpts: Sequence[Excerpt]) -> list[Passage]:
    """Each excerpt as the planners take it (the track's scaled features computed once)."""
    scaled = {i: track_feature_scale(t.arrays.features) for i, t in enumerate(tracks)}
    return [Passage(context=tracks[ex.track_index].arrays.dense, scaled=scaled[ex.track_index], start=ex.start,
                    bar_positions=tracks[ex.track_index].arrays.bar_positions[ex.start: ex.start + ex.n_beats],
                    target_beats=ex.target_beats) for ex in excerpts]


def heuristic_candidates(passage: Passage, n: int) -> list[list[int]]:
    """The heuristic's ``n`` best plans it can name: its own, then its cheapest single departures (each re-planned).

    What the heuristic gets when an arm it is compared with chooses among ``n`` candidates.
    """
    plan = heuristic_plan(passage)
    others = [d.actions for d in departures(passage, SeamModel.untrained(), plan, max_extra_cost=np.inf)]
    others.sort(key=passage.heuristic_cost)
    return [plan, *others[: n - 1]]


def _choose(reward, track: EvalTrack, candidates: Sequence[Edit]) -> Edit:
    """The candidate the reward-model ensemble's mean scores highest (ties: the first), as best-of-N chooses."""
    rewards = np.asarray(reward.member_rewards([(track.arrays, e) for e in candidates]), dtype=np.float64).mean(0)
    return candidates[int(np.argmax(rewards))]


def _learned_cost(edit: Edit, passage: Passage, model: SeamModel) -> float:
    """The seam model's mean cost of an edit: the heuristic's cost plus the learned residual of its seams."""
    residual = model.residual(edit_seam_sum(passage.scaled, edit.track_beats(), edit.seam_beats())[None, :])
    return float(edit_cost(edit, passage.context) + residual[0])


def _scored(listener: Listener, tracks: Sequence[EvalTrack], excerpts: Sequence[Excerpt], edits: Sequence[Edit],
            known: dict[tuple[int, str], float]) -> list[float]:
    """Listener scores, an edit already heard on the same excerpt not rendered twice."""
    out = []
    for i, (ex, e) in enumerate(zip(excerpts, edits)):
        key = (i, e.key())
        if key not in known:
            known[key] = listen(listener, tracks[ex.track_index], ex, e)
        out.append(known[key])
    return out


def selection_of(comparison) -> str:
    """How a comparison was chosen: ``baseline`` (no reward model picked it), ``departure`` (a seam question,
    ``rlhf.learning.proposal.seam_question_pairs``: one of its edits the learned planner's plan or a single
    departure, ``planner:...``) or ``uncertainty`` (the reward model's disagreement)."""
    if not comparison.reward_model_version:
        return "baseline"
    if comparison.edit_a.source.startswith("planner:") or comparison.edit_b.source.startswith("planner:"):
        return "departure"
    return "uncertainty"


def _judgements_by_selection() -> dict[str, list[int]]:
    """Judgement ids in the order they were given: all of them, and per selection strategy."""
    out: dict[str, list[int]] = {"all": []}
    judgements = (Judgement.objects.filter(comparison__is_gold=False)
                  .select_related("comparison__edit_a", "comparison__edit_b").order_by("pk"))
    for j in judgements:
        out["all"].append(j.pk)
        out.setdefault(selection_of(j.comparison), []).append(j.pk)
    return out


def _curve(*, listener: Listener, held_out: Sequence[EvalTrack], excerpts: Sequence[Excerpt],
           passages: Sequence[Passage], heuristic: Sequence[Edit], known: dict, config: SeamTrainingConfig,
           choose_k: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The learned planner retrained on the first J judgements (per selection strategy), scored on the held-out excerpts."""
    points = []
    for selection, ids in _judgements_by_selection().items():
        counts = sorted({*(j for j in CURVE_JUDGEMENTS if j < len(ids)), len(ids)})
        for n in counts:
            if n == 0:
                continue
            data = seam_data_build(judgement_ids=ids[:n])
            model = (seam_model_fit(data, config, choose_k=choose_k)[0] if data.pairs.n_pairs
                     else SeamModel.untrained(config))
            edits = [p.edit(learned_plan(p, model)) for p in passages]
            points.append({"selection": selection, "judgements": n, "arm": "learned_planner",
                           "scores": _scored(listener, held_out, excerpts, edits, known),
                           "keys": [_short(e) for e in edits],
                           "heuristic_keys": [_short(e) for e in heuristic]})
        say(f"  curve: {selection} at {', '.join(str(c) for c in counts)} judgements")
    return points


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
    eval_excerpts: int = 24,
    baseline_excerpts: int = 8,
    seed: int = 0,
    workdir: Path,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One seed of the evaluation in the current (throw-away) studio; returns its raw figures.

    Ingests the training files, lets simulated annotators judge baseline comparisons, then runs
    ``n_cycles`` cycles (see the module docstring), scoring every arm on the held-out excerpts
    after each, and after the last the judgement-efficiency curve.  Raises
    :class:`EvaluationError` when a held-out track is in the studio, or a cycle fails.
    """

    say = echo or (lambda message: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_unseen(held_out)
    parameters = replace(parameters, seed=parameters.seed + 1000 * seed)
    say(f"PROGRESS 0/{n_cycles} ingesting {len(train_files)} training tracks")
    tracks = [track_ingest(path=p)[0] for p in train_files]
    _check_unseen(held_out)
    for i, track in enumerate(tracks):
        baseline_comparisons_create(track=track, n_excerpts=baseline_excerpts, seed=1000 * seed + i)
    arrays = track_arrays(tracks)
    excerpts = held_out_excerpts(held_out, eval_excerpts, 7919 + seed)
    passages = _passages(held_out, excerpts)
    known: dict[tuple[int, str], float] = {}
    fixed = {key: baseline_edits(name, held_out, excerpts, np.random.default_rng(31 + seed))
             for name, key in BASELINE_KEYS.items()}
    dense_parent: Path | None = None
    cycles: list[dict[str, Any]] = []
    for k in range(n_cycles):
        began = time.perf_counter()
        report = annotators_simulate(n_annotators=n_annotators, listener=listener, model=annotator,
                                     seed=1000 * seed + k)
        say(f"PROGRESS {k}/{n_cycles} cycle {k + 1}: {report.n_judgements} new judgements; training")
        cycle = cycle_run(cycle=cycle_create(parameters=parameters, trigger="evaluation"))
        if cycle.status != Status.DONE:
            raise EvaluationError(f"seed {seed}: cycle {cycle.pk} {cycle.status}: {cycle.error}")
        # The learned reward exactly as the cycle's own policy trained on it (scale and guard).
        reward = policy_reward(cycle.reward_model_version, pessimism=parameters.rm_pessimism)
        policy = load_policy(policy_artifact_path(cycle.policy_version), device="cpu")
        config = parameters.policy_config(seed=parameters.seed + cycle.pk, device=training_device())
        # dense_only: the same PPO steps from the same start, optimising the dense score alone.
        run = train_policy(arrays, total_timesteps=parameters.ppo_timesteps, learned_reward=None,
                           env_config=EnvConfig(learned_weight=0.0), config=config, parent=dense_parent)
        dense_parent = save_policy(run.model, workdir / f"seed{seed}-dense_only-cycle{k + 1}.zip")
        seam = seam_model_load(cycle.seam_model_version) if cycle.seam_model_version_id else SeamModel.untrained()
        say(f"PROGRESS {k}/{n_cycles} cycle {k + 1}: scoring {len(excerpts)} held-out passages")
        edits: dict[str, list[Edit]] = dict(fixed)
        edits["policy"] = policy_edits(policy, held_out, excerpts, deterministic=True, rng=np.random.default_rng(0))
        edits["dense_only"] = policy_edits(run.model, held_out, excerpts, deterministic=True,
                                           rng=np.random.default_rng(0))
        chosen = best_of_n_actions(policy, reward, [t.arrays for t in held_out], excerpts, n=BEST_OF,
                                   rng=np.random.default_rng(0), seam_model=seam)
        edits["policy_best_of_n"] = [edit_of(held_out[ex.track_index], ex, c.actions) for ex, c in zip(excerpts, chosen)]
        # Matched: as many of the heuristic's best plans as best-of-N had candidates.
        edits["heuristic_best_of_n"] = [
            _choose(reward, held_out[ex.track_index], [p.edit(a) for a in heuristic_candidates(p, c.n_candidates)])
            for ex, p, c in zip(excerpts, passages, chosen)]
        # The k the cycle's seam model carries: chosen on the training tracks, or the cycle's seam_pessimism.
        edits["learned_planner"] = [p.edit(learned_plan(p, seam)) for p in passages]
        scores = {arm: _scored(listener, held_out, excerpts, edits[arm], known) for arm in ARMS}
        keys = {arm: [_short(e) for e in edits[arm]] for arm in ARMS}
        # Heuristic against each challenger, the pairs that matter: who ranks them as the listener does?
        pairs = []
        for i, (ex, p) in enumerate(zip(excerpts, passages)):
            track = held_out[ex.track_index]
            challengers: dict[str, Edit] = {}
            arms_of: dict[str, list[str]] = {}
            for arm in LEARNED_ARMS:
                challengers[edits[arm][i].key()] = edits[arm][i]
                arms_of.setdefault(edits[arm][i].key(), []).append(arm)
            challengers.pop(edits["heuristic"][i].key(), None)
            for edit in challengers.values():
                margin = known[(i, edit.key())] - known[(i, edits["heuristic"][i].key())]
                if abs(margin) < annotator.tie_margin:
                    continue
                both = [edits["heuristic"][i], edit]
                rm = np.asarray(reward.member_rewards([(track.arrays, e) for e in both]), dtype=np.float64).mean(0)
                dense = [dense_rewards(e, context=track.arrays.dense, target_beats=ex.target_beats).combined
                         for e in both]
                cost = [edit_cost(e, p.context) for e in both]
                learned = [_learned_cost(e, p, seam) for e in both]
                pairs.append({"track": track.arrays.name, "arms": arms_of[edit.key()], "listener": round(float(margin), 4),
                              "reward_model": float(rm[1] - rm[0]), "dense": float(dense[1] - dense[0]),
                              "heuristic_cost": float(cost[0] - cost[1]), "seam_model": float(learned[0] - learned[1])})
        # Learned reward against the listener on the policies' held-out edits: over-optimisation
        # shows as the learned reward rising while the listener's score does not.
        reward_vs_listener = {}
        for arm in ("policy", "dense_only"):
            learned = reward([_Finished(held_out[ex.track_index].arrays, e) for ex, e in zip(excerpts, edits[arm])])
            reward_vs_listener[arm] = {"learned": float(np.mean(learned)), "listener": float(np.mean(scores[arm]))}
        _check_unseen(held_out)
        cycles.append({
            "cycle": k + 1, "judgements": Judgement.objects.filter(comparison__is_gold=False).count(),
            "scores": scores, "keys": keys, "pairs": pairs,
            "cycle_metrics": cycle.metrics.get("reward_model", {}),
            "ppo": {"policy": cycle.metrics.get("policy", {}), "dense_only": run.summary()},
            "reward_vs_listener": reward_vs_listener, "seconds": round(time.perf_counter() - began, 1),
            "best_of_n_sources": {source: sum(c.source == source for c in chosen) for source in BEST_OF_N_SOURCES},
        })
        say(f"PROGRESS {k + 1}/{n_cycles} cycle {k + 1}: done in {cycles[-1]['seconds']} s; mean listener score "
            + ", ".join(f"{a} {np.mean(s):.2f}" for a, s in scores.items()))
    curve = _curve(listener=listener, held_out=held_out, excerpts=excerpts, passages=passages,
                   heuristic=fixed["heuristic"], known=known,
                   config=SeamTrainingConfig(seed=parameters.seed, pessimism=parameters.seam_pessimism),
                   choose_k=parameters.seam_pessimism_auto, say=say)
    return {"seed": seed, "train_tracks": [p.name for p in train_files],
            "held_out_tracks": [t.arrays.name for t in held_out],
            "excerpts": [{"track": held_out[e.track_index].arrays.name, "start": int(e.start),
                          "n_beats": int(e.n_beats), "target_beats": int(e.target_beats)} for e in excerpts],
            "cycles": cycles, "curve": curve}


@dataclass(frozen=True)
class _Finished:
    """The two fields of ``editing.env.FinishedEpisode`` that ``EnsembleReward`` reads."""

    track: TrackArrays
    edit: Edit


# --------------------------------------------------------------------------- summary

def _pair_cell(rows: Sequence[dict[str, Any]], arm: str, opponent: str, annotator: AnnotatorModel) -> dict[str, Any]:
    """``arm`` against ``opponent`` over every seed's excerpts of one cycle (``rows``: (seed result, cycle) dicts)."""
    mine, theirs, same, tracks = [], [], [], []
    for row in rows:
        cycle = row["cycle"]
        mine += cycle["scores"][arm]
        theirs += cycle["scores"][opponent]
        same += [a == b for a, b in zip(cycle["keys"][arm], cycle["keys"][opponent])]
        tracks += [e["track"] for e in row["excerpts"]]
    return paired_comparison(mine, theirs, same_edit=same, tracks=tracks, win_probability=annotator.win_probability,
                             tie_margin=annotator.tie_margin)


def _accuracy_block(pairs: Sequence[dict[str, Any]], main: str, *, by_challenger: bool = True) -> dict[str, Any]:
    """Accuracy of ``main`` (a key of the pairs) with its interval over tracks, beside the dense score's and the heuristic cost's.

    ``by_challenger`` adds the same per arm whose edit challenged the heuristic's: a pair is not a
    neutral sample of every scorer.  The heuristic's edit is the least-cost plan by its own cost,
    so the heuristic cost never prefers a challenger; the learned planner's edit is the least-cost
    plan by the seam model's pessimistic cost, so the seam model never prefers the heuristic's
    there; best of N was chosen by the reward model.
    """
    if not pairs:
        return {"accuracy": None, "dense_accuracy": None, "heuristic_cost_accuracy": None, "ci95": None, "n_pairs": 0,
                "n_tracks": 0}
    label = [p["listener"] for p in pairs]
    tracks = [p["track"] for p in pairs]
    correct = {name: agreement([p[name] for p in pairs], label) for name in (main, "dense", "heuristic_cost")}
    figure = mean_with_ci(correct[main], tracks)
    block = {"accuracy": figure["mean"], "dense_accuracy": round(float(correct["dense"].mean()), 4),
             "heuristic_cost_accuracy": round(float(correct["heuristic_cost"].mean()), 4), "ci95": figure["ci95"],
             "n_pairs": len(pairs), "n_tracks": figure["n_tracks"]}
    if by_challenger and all("arms" in p for p in pairs):
        block["by_challenger"] = {
            arm: _accuracy_block([p for p in pairs if arm in p["arms"]], main, by_challenger=False)
            for arm in LEARNED_ARMS if any(arm in p["arms"] for p in pairs)}
    return block


def _curve_points(seed_results: Sequence[dict[str, Any]], annotator: AnnotatorModel) -> list[dict[str, Any]]:
    """Win rate against the heuristic by judgements used: the learned planner per selection strategy
    (retrained on the first J), and every learned arm after each cycle (``selection`` "cycles")."""
    points: dict[tuple[str, str, str], list[tuple[dict, dict]]] = {}
    for result in seed_results:
        totals = {p["selection"]: p["judgements"] for p in result.get("curve", [])}
        for p in result.get("curve", []):
            label = "total" if p["judgements"] == totals[p["selection"]] else str(p["judgements"])
            points.setdefault((p["selection"], label, p["arm"]), []).append((result, p))
        for cycle in result["cycles"]:
            for arm in LEARNED_ARMS:
                points.setdefault(("cycles", f"cycle {cycle['cycle']}", arm), []).append(
                    (result, {"judgements": cycle["judgements"], "scores": cycle["scores"][arm],
                              "keys": cycle["keys"][arm], "heuristic": cycle["scores"]["heuristic"],
                              "heuristic_keys": cycle["keys"]["heuristic"]}))
    out = []
    for (selection, label, arm), members in points.items():
        mine, theirs, same, tracks = [], [], [], []
        for result, p in members:
            heuristic = p.get("heuristic", result["cycles"][0]["scores"]["heuristic"])
            mine += p["scores"]
            theirs += heuristic
            same += [a == b for a, b in zip(p["keys"], p["heuristic_keys"])]
            tracks += [e["track"] for e in result["excerpts"]]
        cell = paired_comparison(mine, theirs, same_edit=same, tracks=tracks,
                                 win_probability=annotator.win_probability, tie_margin=annotator.tie_margin)
        out.append({"selection": selection, "judgements": round(float(np.mean([p["judgements"] for _, p in members]))),
                    "point": label, "arm": arm, "win_rate": cell["win_rate"], "ci95": cell["ci95"],
                    "identical": cell["identical"], "n_seeds": len(members)})
    return sorted(out, key=lambda p: (p["selection"], p["arm"], p["judgements"]))


def summarise(seed_results: Sequence[dict[str, Any]], *,
              annotator: AnnotatorModel = AnnotatorModel()) -> dict[str, Any]:
    """The figures of ``manage.py evaluate_loop`` from the seeds' raw results (see the README for the layout).

    Returns ``{"final", "cycles", "reward_model", "seam_model", "curve"}``: ``final[arm][opponent]``
    (every arm against every other, the last cycle, excerpts of all seeds), ``cycles`` (the
    learned arms against the heuristic, and the matched pair, after each cycle), the reward
    model's and the seam model's accuracy on held-out heuristic-versus-challenger pairs of the
    last cycle, and the judgement-efficiency curve.
    """
    if not seed_results:
        raise EvaluationError("no seed results to summarise")
    n_cycles = min(len(r["cycles"]) for r in seed_results)
    if n_cycles == 0:
        raise EvaluationError("the seed results hold no cycle")

    def rows(k: int) -> list[dict[str, Any]]:
        return [{"cycle": r["cycles"][k], "excerpts": r["excerpts"]} for r in seed_results]

    last = rows(n_cycles - 1)
    final = {arm: {opponent: _pair_cell(last, arm, opponent, annotator) for opponent in ARMS if opponent != arm}
             for arm in ARMS}
    per_cycle = []
    for k in range(n_cycles):
        these = rows(k)
        cells = {arm: {"heuristic": _pair_cell(these, arm, "heuristic", annotator)} for arm in LEARNED_ARMS}
        for arm, opponent in MATCHED.items():
            cells[arm][opponent] = _pair_cell(these, arm, opponent, annotator)
        per_cycle.append({"cycle": k + 1, "judgements": round(float(np.mean([r["cycle"]["judgements"] for r in these]))),
                          "arms": cells})
    pairs = [p for r in last for p in r["cycle"]["pairs"]]
    return {"final": final, "cycles": per_cycle, "reward_model": _accuracy_block(pairs, "reward_model"),
            "seam_model": _accuracy_block(pairs, "seam_model"), "curve": _curve_points(seed_results, annotator)}


# The comparisons the table shows (the JSON holds every arm against every other).
TABLE = (
    ("learned_planner", "heuristic"), ("policy", "heuristic"), ("policy_best_of_n", "heuristic_best_of_n"),
    ("policy_best_of_n", "heuristic"), ("dense_only", "heuristic"), ("policy", "dense_only"),
    ("learned_planner", "policy"), ("learned_planner", "policy_best_of_n"),
    ("heuristic_best_of_n", "heuristic"), ("heuristic", "bar_cut"), ("heuristic", "random"),
)
PPO_ARMS = ("policy", "policy_best_of_n")  # PPO's arms, each set against the learned planner in words


def planner_versus_ppo(final: dict[str, Any]) -> list[str]:
    """One sentence per PPO arm: whether the learned planner beats it on the last cycle (the interval's
    lower end above one half), loses to it (upper end below), or neither."""
    lines = []
    for arm in PPO_ARMS:
        c = final["learned_planner"][arm]
        low, high = c["ci95"]
        verdict = ("the learned planner beats PPO" if low > 0.5 else "PPO beats the learned planner" if high < 0.5
                   else "no difference shown between the learned planner and PPO")
        lines.append(f"learned_planner vs {arm}: {verdict} (win rate {c['win_rate']:.3f} [{low:.2f}, {high:.2f}])")
    return lines


def format_table(summary: dict[str, Any]) -> str:
    """The last cycle as plain text: one row per comparison that carries a claim, the learned planner against
    PPO in words (:func:`planner_versus_ppo`), then the accuracies."""
    final = summary["final"]
    lines = [f"{'arm':<20}{'opponent':<22}{'win rate [95 %]':>22}{'better':>8}{'worse':>7}{'ident.':>8}"
             f"{'mean diff [95 %]':>26}{'n exc/tr':>10}"]
    for arm, opponent in TABLE:
        c = final[arm][opponent]
        lines.append(f"{arm:<20}{opponent:<22}{c['win_rate']:>8.3f} [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]"
                     f"{c['better']:>8.2f}{c['worse']:>7.2f}{c['identical']:>8.2f}"
                     f"{c['mean_diff']:>+10.3f} [{c['mean_diff_ci95'][0]:+.2f}, {c['mean_diff_ci95'][1]:+.2f}]"
                     f"{c['n_excerpts']:>6}/{c['n_tracks']}")
    lines += planner_versus_ppo(final)
    for name in ("reward_model", "seam_model"):
        b = summary[name]
        if b["accuracy"] is None:
            lines.append(f"{name}: no held-out heuristic-vs-challenger pair the listener could tell apart")
            continue
        lines.append(f"{name} accuracy on {b['n_pairs']} held-out heuristic-vs-challenger pairs ({b['n_tracks']} "
                     f"tracks): {b['accuracy']:.3f} [{b['ci95'][0]:.2f}, {b['ci95'][1]:.2f}]; dense score "
                     f"{b['dense_accuracy']:.3f}; heuristic cost {b['heuristic_cost_accuracy']:.3f}")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Three panels (PNG): each learned arm against the heuristic after each cycle, the judgement-efficiency
    curve of the learned planner per selection strategy, and the last cycle's comparisons, all with 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    colours = dict(zip((*LEARNED_ARMS, "heuristic_best_of_n"), ("tab:green", "tab:blue", "tab:purple", "tab:orange",
                                                                "tab:grey")))
    ax = axes[0]
    x = [c["judgements"] for c in summary["cycles"]]
    for arm in LEARNED_ARMS:
        cells = [c["arms"][arm]["heuristic"] for c in summary["cycles"]]
        ax.plot(x, [c["win_rate"] for c in cells], marker="o", label=arm, color=colours[arm])
        ax.fill_between(x, [c["ci95"][0] for c in cells], [c["ci95"][1] for c in cells], alpha=0.15,
                        color=colours[arm])
    ax.set_title("against the heuristic, after each cycle")
    ax.set_xlabel("judgements (mean per seed)")
    ax.set_ylabel("win rate on held-out tracks")
    ax = axes[1]
    styles = {"all": "-", "baseline": ":", "departure": "--", "uncertainty": "-."}
    for selection in sorted({p["selection"] for p in summary["curve"]} - {"cycles"}):
        points = [p for p in summary["curve"] if p["selection"] == selection and p["arm"] == "learned_planner"]
        xs = [p["judgements"] for p in points]
        ax.errorbar(xs, [p["win_rate"] for p in points],
                    yerr=[[p["win_rate"] - p["ci95"][0] for p in points], [p["ci95"][1] - p["win_rate"] for p in points]],
                    ls=styles.get(selection, "-"), marker="o", capsize=3, label=selection)
    ax.set_xscale("log")
    ax.set_title("learned planner against the heuristic")
    ax.set_xlabel("judgements used (first J, by selection)")
    ax = axes[2]
    cells = [(f"{a} vs {o}", summary["final"][a][o]) for a, o in TABLE]
    ys = np.arange(len(cells))[::-1]
    ax.errorbar([c["win_rate"] for _, c in cells], ys,
                xerr=[[c["win_rate"] - c["ci95"][0] for _, c in cells], [c["ci95"][1] - c["win_rate"] for _, c in cells]],
                fmt="o", capsize=3, color="black")
    ax.set_yticks(ys, [name for name, _ in cells], fontsize=7)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_title("last cycle, all seeds")
    ax.set_xlabel("win rate (ties half)")
    for ax in axes[:2]:
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)

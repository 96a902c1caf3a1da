"""Seam-model services: judgements -> seam pairs -> a trained, registered version; the learned planner of a track.

The one place that joins the database and ``rlhf.learning.seam_model``.  The judgements are the
reward model's (``reward_services.training_data_build``: the same selection, gold and
unreliable annotators left out), so both models of a cycle learn from the same evidence.  A
version is written like every model file (``rlhf.artifacts``): a temporary file, verified by
loading, moved into place and registered in one transaction.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from annotations.models import Edit, Track
from annotations.services import track_load_analysis
from editing.audio import TrackAnalysis
from editing.baselines import edit_cost
from editing.dense import dense_context
from editing.edit import Edit as EditValue
from rlhf import artifacts
from rlhf.cycle.reward_services import training_data_build
from rlhf.learning.configs import SEAM_FEATURE_VERSION, SeamTrainingConfig
from rlhf.learning.seam_model import (
    Passage,
    PessimismChoice,
    SeamModel,
    SeamModelError,
    SeamPairs,
    choose_pessimism,
    edit_seam_sum,
    heuristic_plan,
    learned_plan,
    preference_probability,
    track_feature_scale,
    train_seam_model,
)
from rlhf.models import SeamModelVersion
from rlhf.selectors import Proportion, retarget_comparisons
from rlhf.versions import SeamServiceError, seam_model_activate, seam_model_active

ARTIFACT_FOLDER = "seam_models"
# A held-out evaluation needs at least this many tracks on each side of the split.
MIN_TRACKS_FOR_HOLDOUT = 2


@dataclass(frozen=True)
class TrackContext:
    """What the seam model and the planners read of one track: its analysis, dense context and scaled features."""

    analysis: TrackAnalysis
    context: object
    scaled: np.ndarray

    def passage(self, *, start: int, n_beats: int, target_beats: int) -> Passage:
        return Passage(context=self.context, scaled=self.scaled, start=start,
                       bar_positions=self.analysis.bar_positions[start:start + n_beats], target_beats=target_beats)


def track_context(track: Track, analysis: TrackAnalysis | None = None) -> TrackContext:
    analysis = analysis if analysis is not None else track_load_analysis(track)
    return TrackContext(analysis=analysis,
                        context=dense_context(analysis.features, analysis.beat_samples, analysis.bar_positions),
                        scaled=track_feature_scale(analysis.features))


@dataclass(frozen=True)
class SeamData:
    """Seam pairs and where each row came from (``tracks``: the track of each row; ``retarget``: True where
    the row's pair of edits was sent for a user's retarget request, see ``rlhf.selectors.retarget_comparisons``)."""

    pairs: SeamPairs
    tracks: np.ndarray
    retarget: np.ndarray
    edits: tuple[Edit, ...]
    judgement_ids: tuple[int, ...]
    contexts: dict[int, TrackContext]  # track id -> what the planners read of it (loaded once)


def seam_data_build(*, judgement_ids: Sequence[int] | None = None) -> SeamData:
    """The current judgements (the reward model's selection) as seam pairs, one row per pair of edits."""
    data = training_data_build(judgement_ids=judgement_ids, with_baseline=False)
    contexts: dict[int, TrackContext] = {}
    phi, cost = [], []
    for edit in data.edits:
        if edit.track_id not in contexts:
            contexts[edit.track_id] = track_context(edit.track)
        ctx = contexts[edit.track_id]
        value = EditValue.from_json(edit.entries)
        phi.append(edit_seam_sum(ctx.scaled, value.track_beats(), value.seam_beats()))
        cost.append(edit_cost(value, ctx.context))
    ds = data.dataset
    if ds.n_pairs == 0:
        return SeamData(pairs=SeamPairs.empty(), tracks=np.zeros(0, dtype=np.int64), retarget=np.zeros(0, dtype=bool),
                        edits=data.edits, judgement_ids=data.judgement_ids, contexts=contexts)
    phi_arr, cost_arr = np.array(phi), np.array(cost, dtype=np.float64)
    edit_ids = np.array([e.pk for e in data.edits], dtype=np.int64)
    track_of = np.array([e.track_id for e in data.edits], dtype=np.int64)
    requested = {frozenset(pair) for pair in retarget_comparisons().values_list("edit_a_id", "edit_b_id")}
    retarget = np.array([frozenset((int(a), int(b))) in requested
                         for a, b in zip(edit_ids[ds.pair_a], edit_ids[ds.pair_b])], dtype=bool)
    pairs = SeamPairs(phi_arr[ds.pair_a], phi_arr[ds.pair_b], cost_arr[ds.pair_a], cost_arr[ds.pair_b],
                      ds.target.astype(np.float64), ds.weight.astype(np.float64), ds.group.astype(np.int64))
    return SeamData(pairs=pairs, tracks=track_of[ds.pair_a], retarget=retarget, edits=data.edits,
                    judgement_ids=data.judgement_ids, contexts=contexts)


# --------------------------------------------------------------------------- evaluation and training

def _accuracy(p_a: np.ndarray, pairs: SeamPairs) -> tuple[float | None, int]:
    """Weighted share of decided pairs whose side the prediction ``p_a`` picked (a tied prediction counts half)."""
    decided = pairs.target != 0.5
    if not decided.any():
        return None, 0
    picked = np.where(p_a == 0.5, 0.5, ((p_a > 0.5) == (pairs.target > 0.5)).astype(np.float64))
    weight = pairs.weight[decided]
    return float(np.average(picked[decided], weights=weight)), int(decided.sum())


def seam_model_holdout(data: SeamData, config: SeamTrainingConfig) -> dict:
    """Fit on most tracks and score the judgements of the others, beside the heuristic's cost on the same pairs.

    Pairs sent for users' retarget requests are fitted on but never scored: users chose those
    passages, so they are no unbiased sample (the reward model's held-out pairs leave them out too).

    Returns ``{"accuracy", "heuristic_accuracy", "ci95", "n_pairs", "held_out_tracks"}``
    (``n_pairs``: decided held-out pairs), or ``{"n_pairs", "reason"}`` when there are too few
    tracks to hold any out.  Whether ``n_pairs`` is enough to show is the report card's decision
    (``rlhf.selectors.MIN_HELDOUT_PAIRS``).
    """
    tracks = np.unique(data.tracks)
    if tracks.size < 2 * MIN_TRACKS_FOR_HOLDOUT:
        return {"n_pairs": 0, "reason": f"{tracks.size} track(s) judged, {2 * MIN_TRACKS_FOR_HOLDOUT} needed to "
                                        f"hold some out"}
    rng = np.random.default_rng(config.seed)
    held = np.sort(rng.choice(tracks, size=max(MIN_TRACKS_FOR_HOLDOUT, tracks.size // 4), replace=False))
    test = np.isin(data.tracks, held)
    model = train_seam_model(data.pairs.subset(np.flatnonzero(~test)), config)
    held_pairs = data.pairs.subset(np.flatnonzero(test & ~data.retarget))
    accuracy, n = _accuracy(preference_probability(model, held_pairs), held_pairs)
    heuristic = np.where(held_pairs.heuristic_a == held_pairs.heuristic_b, 0.5,
                         (held_pairs.heuristic_a < held_pairs.heuristic_b).astype(np.float64))
    heuristic_accuracy, _ = _accuracy(heuristic, held_pairs)
    share = Proportion.wilson(accuracy, n)
    ci = None if share.low is None else [share.low, share.high]
    return {"accuracy": accuracy, "heuristic_accuracy": heuristic_accuracy, "ci95": ci, "n_pairs": n,
            "held_out_tracks": [int(t) for t in held]}


def _judged_passages(edits: Sequence[Edit], contexts: dict[int, TrackContext]) -> dict[int, list[Passage]]:
    """Track id -> the distinct passages (retarget tasks) its judged edits were made for."""
    tasks = {(e.track_id, e.excerpt_start_beat, e.n_source_beats, e.target_beats) for e in edits if e.target_beats}
    out: dict[int, list[Passage]] = {}
    for track_id, start, n_beats, target in sorted(tasks):
        out.setdefault(track_id, []).append(contexts[track_id].passage(start=start, n_beats=n_beats,
                                                                       target_beats=target))
    return out


def _departures_on(model: SeamModel, edits: Sequence[Edit], contexts: dict[int, TrackContext]) -> dict:
    """On how many distinct judged passages the learned plan departs from the heuristic's."""
    passages = [p for ps in _judged_passages(edits, contexts).values() for p in ps]
    departs = sum(learned_plan(p, model) != heuristic_plan(p) for p in passages)
    return {"passages": len(passages), "departs": int(departs)}


def seam_model_fit(data: SeamData, config: SeamTrainingConfig, *, choose_k: bool = True
                   ) -> tuple[SeamModel, PessimismChoice | None]:
    """Fit the seam model on ``data``; with ``choose_k``, its ``k`` first chosen on those judgements' own tracks
    (``rlhf.learning.seam_model.choose_pessimism``) and stored in the model's config, so every planner
    that loads it plans with that ``k``."""
    choice = None
    if choose_k:
        choice = choose_pessimism(data.pairs, data.tracks, _judged_passages(data.edits, data.contexts), config)
        config = replace(config, pessimism=choice.k)
    return train_seam_model(data.pairs, config), choice


def seam_model_train(*, config: SeamTrainingConfig = SeamTrainingConfig(), activate: bool = True,
                     judgement_ids: Sequence[int] | None = None, choose_k: bool = True) -> SeamModelVersion:
    """Train a seam-model version on the current judgements and register it.

    With ``choose_k`` its ``k`` is chosen on the judged tracks (:func:`seam_model_fit`), otherwise it
    is ``config.pessimism``.  Registered even when the judgements are too few to depart anywhere:
    it then plans the heuristic's edit, and its metrics say so.
    """
    parent = seam_model_active()
    referenced = set(SeamModelVersion.objects.values_list("artifact", flat=True))
    artifacts.artifacts_clean(folder=ARTIFACT_FOLDER, referenced=referenced)
    data = seam_data_build(judgement_ids=judgement_ids)
    model, choice = seam_model_fit(data, config, choose_k=choose_k)
    config = model.config
    departures = _departures_on(model, data.edits, data.contexts)
    metrics = {
        "pessimism": choice.to_json() if choice is not None else {
            "k": config.pessimism, "reason": f"k {config.pessimism:g}: set by the cycle (seam_pessimism_auto off)"},
        "holdout": seam_model_holdout(data, config),
        "departures": departures,
        "is_zero": model.is_zero,
        "note": ("no departure anywhere: it plans the heuristic's edit" if departures["departs"] == 0 else
                 f"departs from the heuristic on {departures['departs']} of {departures['passages']} judged passages"),
        "beta": [float(b) for b in model.members_beta],
    }
    digest = hashlib.sha256(json.dumps(list(data.judgement_ids)).encode()).hexdigest()

    def verify(path: Path) -> None:
        loaded = SeamModel.load(path)
        if not (np.array_equal(loaded.members_w, model.members_w)
                and np.array_equal(loaded.members_beta, model.members_beta)):
            raise artifacts.ArtifactError(f"{path.name}: the reloaded seam model differs from the trained one")

    def register(name: str, sha: str) -> SeamModelVersion:
        version = SeamModelVersion.objects.create(
            artifact=name, artifact_sha256=sha, feature_version=SEAM_FEATURE_VERSION,
            judgement_ids=list(data.judgement_ids), n_judgements=len(data.judgement_ids), n_pairs=data.pairs.n_pairs,
            hyperparameters={**asdict(config), "judgements_sha256": digest}, metrics=metrics, parent=parent,
        )
        if activate:
            seam_model_activate(version=version)
        return version

    with artifacts.staged_file(".json") as staged:
        model.save(staged)
        version = artifacts.artifact_publish(staged=staged, name=f"{ARTIFACT_FOLDER}/{uuid.uuid4().hex}.json",
                                             verify=verify, register=register)
    version.refresh_from_db()
    return version


def seam_model_load(version: SeamModelVersion) -> SeamModel:
    """The version's model; a missing or corrupt file is refused with the version's name."""
    path = artifacts.storage_root() / version.artifact.name
    if not path.is_file():
        raise SeamServiceError(f"{version.label}: its file {version.artifact.name} is missing; "
                               f"use --method heuristic or activate another seam model")
    if artifacts.file_sha256(path) != version.artifact_sha256:
        raise SeamServiceError(f"{version.label}: its file {version.artifact.name} does not match the registered "
                               f"checksum; use --method heuristic or activate another seam model")
    try:
        return SeamModel.load(path)
    except SeamModelError as err:
        raise SeamServiceError(f"{version.label}: {err}") from err

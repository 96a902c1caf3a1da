"""Reward-model services: judgements -> dataset -> trained, registered, active version; predictions.

The one place that joins the database and the reward model (``rlhf.learning``).  The
management command, the Celery task and the cycle call these; this module
imports torch, so the site uses the row-only services of ``rlhf.versions``
(activate, roll back, the active version).

Dataset rules (defaults)
------------------------
* Gold comparisons are left out: they test annotators, and their answers are
  obvious by construction, so they would teach the model little and flatter it.
* Annotators whose gold accuracy is below ``settings.REWARD_MIN_GOLD_ACCURACY``
  (default 0.7; see ``annotations.quality`` for the definition) are left out;
  annotators without gold judgements are kept.
* Judgements are read in id order, so a dataset (and a seeded training run)
  is reproducible from the stored judgement ids.

Reward normalisation uses a fixed reference set: the ``REFERENCE_SET_SIZE``
edits with the lowest ids.  Edits are never renumbered, so every version is
normalised over the same edits once the studio holds that many.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from django.conf import settings

from annotations.models import Edit, Judgement
from annotations.selectors import ExportFilters, judgements_for_export
from annotations.services import track_load_analysis
from editing.dense import dense_rewards
from editing.edit import MODEL_FEATURE_VERSION, N_MODEL_FEATURES, model_input
from editing.edit import Edit as EditValue
from rlhf import artifacts
from rlhf.models import RewardModelVersion
from rlhf.learning.configs import TrainingConfig
from rlhf.learning.learned_reward import EnsembleReward
from rlhf.learning.reward_data import EditInput, PreferenceDataset, dataset_from_judgements
from rlhf.learning.reward_model import RewardEnsemble, load_checkpoint, save_checkpoint, select_device
from rlhf.learning.reward_training import evaluate, train_ensemble
from rlhf.selectors import retarget_comparisons
from rlhf.versions import RewardServiceError, reward_model_activate, reward_model_active

ARTIFACT_FOLDER = "reward_models"
CACHE_FOLDER = "cache/model_input"
REFERENCE_SET_SIZE = 256
DEFAULT_MIN_GOLD_ACCURACY = 0.7
# Fewer tracks than this: the reward model's splits keep excerpts apart instead of tracks.  Four
# disjoint track sets (training, calibration, early-stopping selection, validation) out of four
# to seven tracks would leave one to three tracks, a small share of the pairs, for training.
MIN_TRACKS_FOR_TRACK_SPLIT = 8

Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- features

def _cache_path(edit_id: int) -> Path:
    version_key = hashlib.sha256(MODEL_FEATURE_VERSION.encode()).hexdigest()[:16]
    return artifacts.storage_root() / CACHE_FOLDER / version_key / f"{edit_id}.npz"


def edit_inputs(edits: Sequence[Edit]) -> list[EditInput]:
    """Model inputs of ``edits``, computed once per edit and cached under the storage root.

    Edits are immutable, so the cache is keyed by edit id and feature version;
    each track's analysis is loaded once for all its uncached edits.
    """
    out: dict[int, EditInput] = {}
    missing: dict[int, list[Edit]] = defaultdict(list)
    for edit in edits:
        path = _cache_path(edit.pk)
        if path.exists():
            with np.load(path, allow_pickle=False) as data:
                out[edit.pk] = EditInput(data["features"], data["actions"])
        else:
            missing[edit.track_id].append(edit)
    for track_edits in missing.values():
        analysis = track_load_analysis(track_edits[0].track)
        for edit in track_edits:
            features, actions = model_input(analysis.features, EditValue.from_json(edit.entries))
            out[edit.pk] = EditInput(features, actions)
            path = _cache_path(edit.pk)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{uuid.uuid4().hex}.tmp.npz")
            np.savez(tmp, features=features, actions=actions)
            os.replace(tmp, path)  # readers never see a half-written cache file
    return [out[e.pk] for e in edits]


def dense_combined_scores(edits: Sequence[Edit]) -> np.ndarray:
    """``editing.dense`` combined score per edit, shape (len(edits),), in [0, 1].

    The target length is the edit's ``target_beats``; an edit made without one
    is scored against its own length (duration then costs nothing).
    """
    by_track: dict[int, list[int]] = defaultdict(list)
    for i, edit in enumerate(edits):
        by_track[edit.track_id].append(i)
    scores = np.zeros(len(edits), dtype=np.float32)
    for rows in by_track.values():
        analysis = track_load_analysis(edits[rows[0]].track)
        for i in rows:
            value = EditValue.from_json(edits[i].entries)
            target = edits[i].target_beats or value.n_output_beats
            scores[i] = dense_rewards(
                value, features=analysis.features, beat_samples=analysis.beat_samples,
                bar_positions=analysis.bar_positions, target_beats=target,
            ).combined
    return scores


def dense_scale(edits: Sequence[Edit]) -> dict[str, float]:
    """Mean and spread of the dense combined score over ``edits`` (a reward model's reference edits).

    The policy's learned reward is mapped onto this scale (``rlhf.learning.learned_reward.EnsembleReward``), so
    that ``w * learned + (1 - w) * dense`` weighs two rewards of the same spread.
    """
    scores = dense_combined_scores(edits) if edits else np.zeros(0)
    if scores.size < 2:
        return {"mean": 0.0, "std": 1.0}
    return {"mean": float(scores.mean()), "std": float(max(scores.std(), 1e-3))}


def policy_reward(version: RewardModelVersion, *, pessimism: float = 0.0) -> EnsembleReward:
    """The learned reward a policy trains on: the version's ensemble on the dense scale, ``pessimism`` k.

    Versions trained before the dense scale was recorded keep the plain normalised reward.
    """
    scale = version.metrics.get("reward_scale", {}).get("dense", {"mean": 0.0, "std": 1.0})
    return EnsembleReward(reward_model_load(version), pessimism=pessimism, scale=(scale["mean"], scale["std"]))


# --------------------------------------------------------------------------- dataset

@dataclass(frozen=True)
class TrainingData:
    """A preference dataset and exactly which rows it came from."""

    dataset: PreferenceDataset
    edits: tuple[Edit, ...]
    judgement_ids: tuple[int, ...]
    judgements_sha256: str
    dropped_annotators: tuple[int, ...]
    split_unit: str = "track"  # what ``dataset.group`` holds: "track" or "excerpt"


def training_data_build(*, include_gold: bool = False, min_gold_accuracy: float | None = None,
                        judgement_ids: Sequence[int] | None = None, with_baseline: bool = True) -> TrainingData:
    """The judgements to train on, combined per pair of edits (see the module docstring).

    Parameters
    ----------
    include_gold : keep judgements on gold comparisons
    min_gold_accuracy : drop annotators below this gold accuracy (None: the setting; 0 keeps everyone)
    judgement_ids : only these judgements (retraining a version on its exact data)
    with_baseline : compute the dense combined score per edit for the baseline metric
    """
    threshold = getattr(settings, "REWARD_MIN_GOLD_ACCURACY", DEFAULT_MIN_GOLD_ACCURACY) \
        if min_gold_accuracy is None else min_gold_accuracy
    filters = ExportFilters(
        exclude_gold=not include_gold,
        min_gold_accuracy=threshold if threshold > 0 else None,
        judgement_ids=tuple(judgement_ids or ()),
    )
    if judgement_ids is not None and not judgement_ids:
        qs, dropped = Judgement.objects.none(), ()
    else:
        qs, dropped = judgements_for_export(filters)
        # A hidden reference (one edit against itself) measures an annotator, never what is preferred.
        qs = qs.filter(comparison__is_hidden_reference=False)
    rows = list(qs.values_list(
        "id", "comparison_id", "comparison__track_id", "comparison__edit_a_id", "comparison__edit_b_id",
        "choice", "confidence", "comparison__edit_a__excerpt_start_beat", "comparison__edit_a__n_source_beats",
        "comparison__edit_a__target_beats",
    ))
    # Splits keep whole groups apart: tracks when there are enough of them, else excerpts (a
    # track-wise split of three tracks would leave one for training).
    by_track = len({r[2] for r in rows}) >= MIN_TRACKS_FOR_TRACK_SPLIT
    excerpt_ids: dict[tuple, int] = {}
    groups = [r[2] if by_track else excerpt_ids.setdefault((r[2], r[7], r[8], r[9]), len(excerpt_ids)) for r in rows]
    edit_ids = sorted({r[3] for r in rows} | {r[4] for r in rows})
    edits = tuple(Edit.objects.filter(pk__in=edit_ids).select_related("track").order_by("pk"))
    index = {e.pk: i for i, e in enumerate(edits)}
    judgements = [(group, index[r[3]], index[r[4]], r[5], r[6]) for group, r in zip(groups, rows)]
    digest = hashlib.sha256(json.dumps([[r[0], r[1], r[5], r[6]] for r in rows]).encode()).hexdigest()
    dataset = dataset_from_judgements(
        edit_inputs(edits), judgements,
        baseline_score=dense_combined_scores(edits) if with_baseline and edits else None,
    )
    return TrainingData(
        dataset=dataset, edits=edits, judgement_ids=tuple(r[0] for r in rows), judgements_sha256=digest,
        dropped_annotators=tuple(dropped), split_unit="track" if by_track else "excerpt",
    )


# --------------------------------------------------------------------------- versions

def training_device() -> str | None:
    """``settings.TRAINING_DEVICE``: None (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``."""
    return getattr(settings, "TRAINING_DEVICE", None)


_LOADED: dict[tuple[int, str, str], RewardEnsemble] = {}


def reward_model_load(version: RewardModelVersion) -> RewardEnsemble:
    """The version's ensemble on the training device (cached per process; a version's file never changes)."""
    device = select_device(training_device())
    key = (version.pk, version.artifact_sha256, str(device))
    if key not in _LOADED:
        path = artifacts.storage_root() / version.artifact.name
        if not path.exists():
            raise RewardServiceError(f"{version.label}: artifact {version.artifact.name} is missing")
        _LOADED[key] = load_checkpoint(path, device=device)
    return _LOADED[key]


def _reference_edits() -> list[Edit]:
    return list(Edit.objects.order_by("pk")[:REFERENCE_SET_SIZE])


def reward_model_train(
    *,
    config: TrainingConfig = TrainingConfig(),
    warm_start: bool = False,
    activate: bool = True,
    include_gold: bool = False,
    min_gold_accuracy: float | None = None,
    progress: Progress | None = None,
) -> RewardModelVersion:
    """Train a reward-model version from the current judgements and register it.

    Nothing is written and the active version stays active when the data are
    refused (``reward_model.DatasetRefused``) or training fails.

    Parameters
    ----------
    config : hyperparameters (stored with the version)
    warm_start : start from the active version's weights
    activate : make the new version active
    progress : callable(stage, done, total), called per batch and at each stage
    """
    parent = reward_model_active()
    if warm_start and parent is None:
        raise RewardServiceError("warm start asked for, but no reward model is active")
    referenced = set(RewardModelVersion.objects.values_list("artifact", flat=True))
    artifacts.artifacts_clean(folder=ARTIFACT_FOLDER, referenced=referenced)
    data = training_data_build(include_gold=include_gold, min_gold_accuracy=min_gold_accuracy)
    start_from = reward_model_load(parent) if warm_start else None
    result = train_ensemble(data.dataset, config, warm_start=start_from, progress=progress)

    reference = _reference_edits()
    reference_inputs = edit_inputs(reference)
    result.ensemble.set_normalization(reference_inputs)
    curves = [asdict(c) for c in result.curves]
    metrics = {
        **asdict(result.evaluation),
        "curves": curves,
        "n_train_pairs": int(result.train_rows.size),
        "n_calibration_pairs": int(result.calibration_rows.size),
        "n_validation_pairs": int(result.validation_rows.size),
        "n_selection_pairs": int(result.selection_rows.size),
        "split_unit": data.split_unit,
        "temperature": result.ensemble.temperature,
        "n_tracks": len({e.track_id for e in data.edits}),
        # Every row that shaped the weights (fit, early-stopping selection, calibration), by track.
        "trained_tracks": sorted({int(data.edits[data.dataset.pair_a[r]].track_id) for r in np.concatenate(
            [result.train_rows, result.selection_rows, result.calibration_rows])}),
        "validation_tracks": sorted({int(data.edits[data.dataset.pair_a[r]].track_id) for r in result.validation_rows}),
        "reward_scale": {
            "learned": {"mean": result.ensemble.reward_mean, "std": result.ensemble.reward_std},
            "dense": dense_scale(reference),
        },
        "train_seconds": round(result.seconds, 2),
        "pairs_per_second": round(result.pairs_per_second, 1),
        "reference_edit_ids": [e.pk for e in reference],
        "dropped_annotators": list(data.dropped_annotators),
    }
    if progress is not None:
        progress("saving", 0, 1)
    probe = reference_inputs[:8]
    expected = result.ensemble.member_rewards(probe)

    def verify(path: Path) -> None:
        loaded = load_checkpoint(path, device=result.ensemble.device)  # same device, so the same kernels
        if not np.array_equal(loaded.member_rewards(probe), expected):
            raise artifacts.ArtifactError(f"{path.name}: reloaded checkpoint predicts other rewards than the trained model")

    def register(name: str, sha: str) -> RewardModelVersion:
        if progress is not None:
            progress("registering", 0, 1)
        version = RewardModelVersion.objects.create(
            artifact=name, artifact_sha256=sha, feature_version=MODEL_FEATURE_VERSION, n_features=N_MODEL_FEATURES,
            judgement_ids=list(data.judgement_ids), judgements_sha256=data.judgements_sha256,
            n_judgements=len(data.judgement_ids), n_comparisons=data.dataset.n_pairs,
            hyperparameters={**asdict(config), "warm_start": warm_start, "include_gold": include_gold,
                             "min_gold_accuracy": min_gold_accuracy, "model": asdict(result.ensemble.config)},
            metrics=metrics, reward_mean=result.ensemble.reward_mean, reward_std=result.ensemble.reward_std,
            parent=parent,
        )
        if activate:
            reward_model_activate(version=version)
        return version

    with artifacts.staged_file(".pt") as staged:
        save_checkpoint(result.ensemble, staged)
        name = f"{ARTIFACT_FOLDER}/{uuid.uuid4().hex}.pt"
        version = artifacts.artifact_publish(staged=staged, name=name, verify=verify, register=register)
    version.refresh_from_db()
    return version


# --------------------------------------------------------------------------- predictions

@dataclass(frozen=True)
class EditRewards:
    """Rewards of some edits under one version; arrays of shape (n_edits,)."""

    version: RewardModelVersion
    reward: np.ndarray  # ensemble mean, in [-10, 10]
    uncertainty: np.ndarray  # ensemble standard deviation
    normalized: np.ndarray  # (reward - version mean) / version spread over the reference edits


def edit_rewards_predict(*, edits: Sequence[Edit], version: RewardModelVersion | None = None) -> EditRewards:
    """Score ``edits`` with ``version`` (default: the active version)."""
    version = version or reward_model_active()
    if version is None:
        raise RewardServiceError("no reward model is active: train one first")
    ensemble = reward_model_load(version)
    mean, std = ensemble.predict(edit_inputs(edits))
    return EditRewards(version=version, reward=mean, uncertainty=std, normalized=ensemble.normalize(mean))


# --------------------------------------------------------------------------- before and after

def reward_model_holdout_accuracy(*, version: RewardModelVersion,
                                  previous: RewardModelVersion | None) -> dict[str, Any]:
    """Accuracy of ``version``, of ``previous`` and of the dense reward alone on the same unbiased held-out pairs.

    Held out: judgements ``version`` was trained with, on its validation tracks that no
    judgement it trained on touched.  Only a split by track holds tracks out: a split by
    excerpt (too few tracks, ``MIN_TRACKS_FOR_TRACK_SPLIT``) trained on other excerpts of every
    validation track, so it gets no held-out pairs at all.  Unbiased: only comparisons that
    no reward model picked, i.e. the ones without a ``reward_model_version`` (baselines); a
    comparison picked where a model was unsure would make that model look worse than it is.
    Retarget requests' comparisons are left out too: users chose those passages.  ``previous``
    may have trained on some of these pairs (another split of older data): ``n_trained_on``
    says how many judgements.

    Returns a JSON object for the cycle's metrics: ``split_unit``, ``n_tracks`` (tracks the
    version's judgements cover), ``min_tracks_for_track_split``, ``tracks`` (the held-out ones),
    ``n_pairs`` and ``n_decided`` (pairs whose combined answer is not a tie), ``after`` /
    ``before`` (None without a previous version) / ``dense`` with their ``accuracy`` (None when
    no pair is decided).  Whether that is enough to show is the report card's decision
    (``rlhf.selectors.MIN_HELDOUT_PAIRS``).
    """
    split_unit = version.metrics.get("split_unit")
    trained_tracks = {int(t) for t in version.metrics.get("trained_tracks", [])}
    tracks = [int(t) for t in version.metrics.get("validation_tracks", []) if int(t) not in trained_tracks] \
        if split_unit == "track" else []
    trained = set(version.judgement_ids)
    candidates = Judgement.objects.filter(
        comparison__track_id__in=tracks, comparison__reward_model_version="", comparison__is_gold=False,
        pk__lte=max(trained, default=0),
    ).exclude(comparison__in=retarget_comparisons()).values_list("pk", flat=True)
    ids = sorted(pk for pk in candidates if pk in trained)
    split = {"split_unit": split_unit, "n_tracks": version.metrics.get("n_tracks"),
             "min_tracks_for_track_split": MIN_TRACKS_FOR_TRACK_SPLIT}
    empty = {**split, "tracks": tracks, "n_judgements": len(ids), "n_pairs": 0, "n_decided": 0,
             "after": {"label": version.label, "accuracy": None}, "dense": {"accuracy": None},
             "before": None if previous is None else {"label": previous.label, "accuracy": None, "n_trained_on": 0}}
    if not ids:
        return empty
    # The thresholds the version was trained with, so the pairs are exactly a subset of its data.
    data = training_data_build(judgement_ids=ids, include_gold=False,
                               min_gold_accuracy=version.hyperparameters.get("min_gold_accuracy"))
    if data.dataset.n_pairs == 0:
        return {**empty, "n_judgements": 0}
    after = evaluate(reward_model_load(version), data.dataset)
    result: dict[str, Any] = {
        **split, "tracks": tracks, "n_judgements": len(data.judgement_ids), "n_pairs": after.n_pairs,
        "n_decided": after.n_decided, "after": {"label": version.label, "accuracy": _finite(after.accuracy)},
        "dense": {"accuracy": after.baseline_accuracy}, "before": None,
    }
    if previous is not None:
        before = evaluate(reward_model_load(previous), data.dataset)
        result["before"] = {"label": previous.label, "accuracy": _finite(before.accuracy),
                            "n_trained_on": len(set(data.judgement_ids) & set(previous.judgement_ids))}
    return result


def _finite(value: float) -> float | None:
    return None if value != value else float(value)  # evaluate() gives NaN when no pair is decided

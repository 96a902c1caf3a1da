"""Training the reward model: Bradley-Terry on confidence-shaped targets, calibration, evaluation.

Pure module (torch + numpy, no Django).  Read top to bottom: calibration, training, evaluation.

Calibration
-----------
Preference probabilities are ``lapse / 2 + (1 - lapse) * sigmoid((r_A - r_B) / T)``,
averaged over members, with ``T`` and ``lapse`` fitted on held-out training tracks
(``fit_calibration``): annotators sometimes answer at random, so their agreement with
the better edit has a ceiling below 1 that a temperature alone cannot model.

Training speed
--------------
Pairs share edits, so a batch runs each distinct edit through the network once; batches are
built from pairs of similar length (length bucketing) so little of the work is padding; on
CPUs with bf16 support (and on CUDA) the forward pass runs under bf16 autocast (about 2.5x
faster on the 2-core development machine), weights and
optimiser state stay float32.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from editing.edit import MODEL_FEATURE_VERSION
from rlhf.learning.configs import TrainingConfig
from rlhf.learning.reward_data import (
    CONFIDENCE_LEVELS, EditInput, PreferenceDataset, RewardModelError, check_dataset, split_by_group,
)
from rlhf.learning.reward_model import (
    CheckpointMismatch, RewardEnsemble, RewardModelConfig, RewardNet, bf16_autocast_available, pad_batch, select_device, windowed,
)


def _weighted_bt_loss(p: np.ndarray, ds: PreferenceDataset) -> float:
    eps = 1e-6
    return float(-np.average(ds.target * np.log(p + eps) + (1 - ds.target) * np.log(1 - p + eps), weights=ds.weight))


_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(4.0), 89))
_LAPSES = np.linspace(0.0, 0.5, 51)


@dataclass(frozen=True)
class Calibration:
    """How reward differences become preference probabilities (see ``fit_calibration``)."""

    temperature: float
    lapse: float


def fit_calibration(ensemble: RewardEnsemble, ds: PreferenceDataset) -> Calibration:
    """Temperature and lapse that minimise the weighted BT loss on ``ds`` (grid search).

    ``P(A) = lapse / 2 + (1 - lapse) * sigmoid((r_A - r_B) / temperature)``: the lapse is
    the share of answers that carry no preference (a random answer, a low-confidence
    guess), as in Christiano et al. (2017), who model a 10 % chance that the human answers
    uniformly at random.  Why not temperature alone: annotators who sometimes answer at
    random agree with the better edit at most ``1 - lapse / 2`` of the time however clear
    the difference, and the confidence-shaped targets cap even a unanimous pair at 0.98.
    A logistic curve cannot fit that ceiling and a steep rise below it at once: the
    single temperature that fits the clear pairs leaves the model under-confident on the
    middle ones (measured on simulated judgements with 10 % noise: 0.65 predicted where
    annotators agreed 0.82 of the time), whatever data it is fitted on.

    Fitted on held-out training tracks, never on the validation pairs the metrics are
    computed on.  Temperatures are on a log grid over [0.05, 4], lapses on [0, 0.5].
    """
    rewards = ensemble.member_rewards(ds.edits)
    diff = rewards[:, ds.pair_a] - rewards[:, ds.pair_b]
    best = (math.inf, 1.0, 0.0)
    for t in _TEMPERATURES:
        sig = (1.0 / (1.0 + np.exp(-diff / t))).mean(0)
        for lapse in _LAPSES:
            loss = _weighted_bt_loss(0.5 * lapse + (1.0 - lapse) * sig, ds)
            if loss < best[0]:
                best = (loss, float(t), float(lapse))
    return Calibration(temperature=best[1], lapse=best[2])


def fit_temperature(ensemble: RewardEnsemble, ds: PreferenceDataset) -> float:
    """The temperature of ``fit_calibration`` (kept for callers that predate the lapse)."""
    return fit_calibration(ensemble, ds).temperature


@dataclass(frozen=True)
class MemberCurve:
    train_loss: list[float]
    val_loss: list[float]  # on the selection split, per epoch (empty when there was none)
    best_epoch: int


@dataclass(frozen=True)
class Evaluation:
    """Validation metrics of an ensemble (all fractions in [0, 1]; ``n`` counts decided pairs)."""

    accuracy: float
    loss: float
    ece: float  # against the combined confidence-shaped targets (what the model is trained to predict)
    ece_choices: float  # against the share of answers that chose each side
    accuracy_by_confidence: dict[str, float | None]
    baseline_accuracy: float | None
    n_pairs: int
    n_decided: int
    # The calibration in force when the metrics were computed (``fit_calibration``).
    temperature: float = 1.0
    lapse: float = 0.0


@dataclass(frozen=True)
class TrainingResult:
    ensemble: RewardEnsemble
    evaluation: Evaluation
    curves: list[MemberCurve]
    train_rows: np.ndarray
    calibration_rows: np.ndarray
    validation_rows: np.ndarray
    seconds: float
    pairs_per_second: float
    # Rows early stopping chose epochs on (empty: too few groups to spare, every member ran max_epochs).
    selection_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _feature_stats(edits: Sequence[EditInput], used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.concatenate([edits[i].features for i in used], axis=0).astype(np.float64)
    mean = stacked.mean(0)
    # Constant columns (one-hots absent from the data) would divide by zero.
    std = np.maximum(stacked.std(0), 1e-3)
    return mean.astype(np.float32), std.astype(np.float32)


def _length_batches(ds: PreferenceDataset, rows: np.ndarray, batch_pairs: int, rng: np.random.Generator) -> list[np.ndarray]:
    # Pairs sorted by length (with a random tie-break) then cut into batches: similar
    # lengths share a batch, so padding is small; batch order is shuffled each epoch.
    lengths = np.array([max(ds.edits[ds.pair_a[r]].n_beats, ds.edits[ds.pair_b[r]].n_beats) for r in rows])
    order = rows[np.lexsort((rng.random(rows.size), lengths))]
    batches = [order[i : i + batch_pairs] for i in range(0, order.size, batch_pairs)]
    rng.shuffle(batches)
    return batches


def _batch_loss(
    model: RewardNet, ds: PreferenceDataset, rows: np.ndarray, device: torch.device, use_bf16: bool,
) -> tuple[torch.Tensor, float]:
    a, b = ds.pair_a[rows], ds.pair_b[rows]
    unique, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    windows, owner = windowed([ds.edits[i] for i in unique])
    feats, acts, padding = pad_batch(windows, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        rewards = model(feats, acts, padding)
    if len(windows) != unique.size:  # an edit's reward is the mean of its windows'
        index = torch.from_numpy(owner).to(device)
        total = torch.zeros(unique.size, device=device, dtype=rewards.dtype).index_add(0, index, rewards)
        rewards = total / torch.bincount(index, minlength=unique.size).to(rewards.dtype)
    inv = torch.from_numpy(inverse).to(device)
    logits = rewards[inv[: rows.size]] - rewards[inv[rows.size :]]
    target = torch.from_numpy(ds.target[rows]).to(device)
    weight = torch.from_numpy(ds.weight[rows]).to(device)
    per_pair = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (per_pair * weight).sum() / weight.sum(), float(weight.sum())


@torch.no_grad()
def _validation_loss(model: RewardNet, ds: PreferenceDataset, rows: np.ndarray, device: torch.device, use_bf16: bool) -> float:
    model.eval()
    total, weight = 0.0, 0.0
    for start in range(0, rows.size, 256):
        batch = rows[start : start + 256]
        loss, w = _batch_loss(model, ds, batch, device, use_bf16)
        total += float(loss) * w
        weight += w
    return total / weight


def train_ensemble(
    dataset: PreferenceDataset,
    config: TrainingConfig = TrainingConfig(),
    *,
    model_config: RewardModelConfig = RewardModelConfig(),
    warm_start: RewardEnsemble | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainingResult:
    """Train an ensemble with a group-wise split and early stopping; deterministic from ``config.seed``.

    Four disjoint sets of groups (tracks, or excerpts when tracks are few): training, calibration,
    selection (early stopping) and validation (the reported metrics, never selected on).

    Parameters
    ----------
    dataset : PreferenceDataset
    config : TrainingConfig
    warm_start : RewardEnsemble or None
        Members start from these weights (and keep their feature statistics).
    progress : callable(stage, done, total) or None
        Called after every batch with ``stage`` like ``"member 1/3 epoch 2"``.

    Raises
    ------
    DatasetRefused
        Before any training, when ``check_dataset`` refuses the data.
    CheckpointMismatch
        When ``warm_start`` was trained on another feature version or architecture.
    """
    check_dataset(dataset, min_pairs=config.min_pairs)
    if warm_start is not None:
        if warm_start.feature_version != MODEL_FEATURE_VERSION:
            raise CheckpointMismatch(
                f"warm start was trained on features {warm_start.feature_version!r}, "
                f"this code computes {MODEL_FEATURE_VERSION!r}"
            )
        if warm_start.config != model_config:
            raise CheckpointMismatch(f"warm start architecture {warm_start.config} differs from {model_config}")
    started = time.perf_counter()
    torch.set_num_threads(config.n_threads)
    torch.manual_seed(config.seed)
    device = select_device(config.device)
    use_bf16 = bf16_autocast_available(device)
    rng = np.random.default_rng(config.seed)

    train_rows, val_rows = split_by_group(dataset.group, validation_fraction=config.validation_fraction, seed=config.seed)
    # Temperature calibration needs pairs the members never trained on and the metrics never see:
    # a slice of the training tracks (none when training covers a single track).
    calibration_rows = np.zeros(0, dtype=np.int64)
    if config.calibration_fraction > 0 and np.unique(dataset.group[train_rows]).size >= 2:
        fit, calib = split_by_group(dataset.group[train_rows], validation_fraction=config.calibration_fraction,
                                    seed=config.seed + 1)
        train_rows, calibration_rows = train_rows[fit], train_rows[calib]
    selection_rows = np.zeros(0, dtype=np.int64)
    if config.selection_fraction > 0 and np.unique(dataset.group[train_rows]).size >= 2:
        fit, select = split_by_group(dataset.group[train_rows], validation_fraction=config.selection_fraction,
                                     seed=config.seed + 2)
        train_rows, selection_rows = train_rows[fit], train_rows[select]
    if warm_start is not None:
        mean, std = (warm_start.members[0].feature_mean.cpu().numpy(), warm_start.members[0].feature_std.cpu().numpy())
    else:
        used = np.unique(np.concatenate([dataset.pair_a[train_rows], dataset.pair_b[train_rows]]))
        mean, std = _feature_stats(dataset.edits, used)

    members: list[RewardNet] = []
    curves: list[MemberCurve] = []
    pairs_seen = 0
    for k in range(config.n_members):
        torch.manual_seed(config.seed * 1000 + k)
        model = RewardNet(model_config, mean, std)
        if warm_start is not None:
            model.load_state_dict(warm_start.members[k % len(warm_start.members)].state_dict())
        model.to(device)
        member_rows = rng.choice(train_rows, size=train_rows.size, replace=True) if config.bootstrap else train_rows
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        best_loss, best_state, best_epoch, stale = math.inf, copy.deepcopy(model.state_dict()), -1, 0
        train_curve: list[float] = []
        val_curve: list[float] = []
        for epoch in range(config.max_epochs):
            model.train()
            batches = _length_batches(dataset, member_rows, config.batch_pairs, rng)
            total, weight = 0.0, 0.0
            for i, batch in enumerate(batches):
                loss, w = _batch_loss(model, dataset, batch, device, use_bf16)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                total += float(loss.detach()) * w
                weight += w
                pairs_seen += batch.size
                if progress is not None:
                    progress(f"member {k + 1}/{config.n_members} epoch {epoch + 1}", i + 1, len(batches))
            train_curve.append(total / weight)
            if not selection_rows.size:  # nothing to select on: the last epoch stands
                best_state, best_epoch = copy.deepcopy(model.state_dict()), epoch
                continue
            val_loss = _validation_loss(model, dataset, selection_rows, device, use_bf16)
            val_curve.append(val_loss)
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, best_epoch, stale = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
        members.append(model)
        curves.append(MemberCurve(train_loss=train_curve, val_loss=val_curve, best_epoch=best_epoch))

    ensemble = RewardEnsemble(members=members, config=model_config, use_bf16=use_bf16, device=device)
    if calibration_rows.size:
        calibration = fit_calibration(ensemble, dataset.subset(calibration_rows))
        ensemble.temperature, ensemble.lapse = calibration.temperature, calibration.lapse
    evaluation = evaluate(ensemble, dataset.subset(val_rows))
    seconds = time.perf_counter() - started
    return TrainingResult(
        ensemble=ensemble, evaluation=evaluation, curves=curves, train_rows=train_rows, calibration_rows=calibration_rows,
        validation_rows=val_rows, selection_rows=selection_rows,
        seconds=seconds, pairs_per_second=pairs_seen / seconds,
    )


# --------------------------------------------------------------------------- evaluation

def expected_calibration_error(p_a: np.ndarray, share_a: np.ndarray, weight: np.ndarray, *, n_bins: int = 5) -> float:
    """ECE of the predicted winner's probability against how often annotators agreed with it.

    The usual confidence ECE (Guo et al. 2017) for a two-way choice: each pair's
    confidence is ``q = max(p, 1 - p)``, its observed agreement the share of its
    judgements that chose the predicted winner (ties count one half); pairs
    are put in ``n_bins`` equal-width bins over q in [0.5, 1].

    Parameters
    ----------
    p_a : np.ndarray [shape=(n,)]
        Predicted P(A preferred).
    share_a : np.ndarray [shape=(n,)]
        Observed P(A): the share of judgements that chose A, or the combined target.
    weight : np.ndarray [shape=(n,)]
        Judgements per pair (a pair with more judgements counts more).

    Returns
    -------
    float
        ``sum_bins (weight in bin / total weight) * |mean q - mean agreement|``.
    """
    q = np.maximum(p_a, 1.0 - p_a)
    agree = np.where(p_a >= 0.5, share_a, 1.0 - share_a)
    bins = np.minimum(((q - 0.5) * 2 * n_bins).astype(int), n_bins - 1)
    total = weight.sum()
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        w = weight[in_bin].sum()
        if w == 0:
            continue
        gap = abs(np.average(q[in_bin], weights=weight[in_bin]) - np.average(agree[in_bin], weights=weight[in_bin]))
        ece += w / total * gap
    return float(ece)


def evaluate(ensemble: RewardEnsemble, ds: PreferenceDataset) -> Evaluation:
    """Accuracy, loss, ECE and per-confidence accuracy of ``ensemble`` on the pairs of ``ds``.

    Accuracy counts decided pairs (combined target != 0.5): the model is right
    when it puts the side the combined target favours above 0.5.

    ``ece`` compares the predicted P(A) with the combined confidence-shaped
    target, the probability the model is trained to output.  ``ece_choices``
    compares it with the raw share of A answers; it is larger by design when
    annotators are themselves inconsistent: a pair answered "A, confidence 3"
    by 80 % of annotators has a mean target of 0.8 * 0.79 + 0.2 * 0.21 = 0.67,
    not 0.8, since the confidence already discounts each answer.
    """
    if ds.n_pairs == 0:
        raise RewardModelError("cannot evaluate on an empty validation set")
    p = ensemble.preference_probability(ds.edits, ds.pair_a, ds.pair_b)
    decided = ds.target != 0.5
    label = ds.target > 0.5
    correct = (p > 0.5) == label
    loss = _weighted_bt_loss(p, ds)
    by_conf: dict[str, float | None] = {}
    for level in CONFIDENCE_LEVELS:
        rows = decided & (ds.confidence == level)
        by_conf[str(level)] = float(correct[rows].mean()) if rows.any() else None
    baseline = None
    if ds.baseline_score is not None and decided.any():
        sa, sb = ds.baseline_score[ds.pair_a], ds.baseline_score[ds.pair_b]
        # Equal dense scores give no preference: count half right, as a coin flip would.
        base_correct = np.where(sa == sb, 0.5, ((sa > sb) == label).astype(float))
        baseline = float(base_correct[decided].mean())
    return Evaluation(
        accuracy=float(correct[decided].mean()) if decided.any() else float("nan"),
        loss=float(loss),
        ece=expected_calibration_error(p, ds.target, ds.weight),
        ece_choices=expected_calibration_error(p, ds.share_a, ds.weight),
        accuracy_by_confidence=by_conf,
        baseline_accuracy=baseline,
        n_pairs=ds.n_pairs,
        n_decided=int(decided.sum()),
        temperature=ensemble.temperature,
        lapse=ensemble.lapse,
    )



"""Preference data for the reward model: the targets judgements become and the pairs they form.

Pure module (numpy, no Django, no torch).

Targets (Bradley-Terry with confidence-shaped labels)
------------------------------------------------------
The model gives each edit a reward ``r`` in [-10, 10]; the probability that A is
preferred over B is ``sigmoid(r_A - r_B)``.  A judgement becomes a soft target
``P(A preferred)``:

==========  =====  =====  =====  =====  =====
confidence    1      2      3      4      5
P(chosen)   0.600  0.695  0.790  0.885  0.980
==========  =====  =====  =====  =====  =====

(linear from 0.6 to 0.98: a confidence-1 answer is barely better than a coin
flip, a confidence-5 answer is near-certain but never 1.0, so one mistaken
answer cannot drive a reward difference to infinity).  A tie is 0.5 whatever
its confidence.  Several judgements of one comparison are combined into one
pair whose target is the mean of their targets and whose loss weight is their
count.

"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from editing.edit import N_MODEL_FEATURES

CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)
_TARGET_LOW, _TARGET_HIGH = 0.6, 0.98


class RewardModelError(ValueError):
    """Base class: a reward-model operation refused, with the reason in the message."""


class DatasetRefused(RewardModelError):
    """The preference dataset cannot train a meaningful model (empty, too small, one-sided)."""


# --------------------------------------------------------------------------- targets

def confidence_target(choice: str, confidence: int) -> float:
    """P(A preferred) that one judgement stands for (see the module table).

    Parameters
    ----------
    choice : {"a", "b", "tie"}
    confidence : int in 1..5
    """
    if confidence not in CONFIDENCE_LEVELS:
        raise RewardModelError(f"confidence {confidence!r} is outside 1..5")
    if choice == "tie":
        return 0.5
    p_chosen = _TARGET_LOW + (confidence - 1) * (_TARGET_HIGH - _TARGET_LOW) / 4
    if choice == "a":
        return p_chosen
    if choice == "b":
        return 1.0 - p_chosen
    raise RewardModelError(f"choice {choice!r} is not one of 'a', 'b', 'tie'")


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class EditInput:
    """One edit as the model reads it.

    Attributes
    ----------
    features : np.ndarray [shape=(n_output_beats, 127)], float32
        ``editing.edit.model_input`` features.
    actions : np.ndarray [shape=(n_output_beats,)], int64
        Action id that produced each output beat.
    """

    features: np.ndarray
    actions: np.ndarray

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[1] != N_MODEL_FEATURES:
            raise RewardModelError(
                f"edit features have shape {self.features.shape}, expected (n_output_beats, {N_MODEL_FEATURES})"
            )
        if self.actions.shape != (self.features.shape[0],):
            raise RewardModelError(
                f"edit actions have shape {self.actions.shape}, expected ({self.features.shape[0]},)"
            )
        if self.features.shape[0] == 0:
            raise RewardModelError("an edit with no output beats cannot be scored")

    @property
    def n_beats(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class PreferenceDataset:
    """Comparisons as index pairs into a list of edits, one row per pair of edits.

    Attributes
    ----------
    edits : tuple of EditInput
    pair_a, pair_b : np.ndarray [shape=(n_pairs,)], int64
        Indices into ``edits``; ``pair_a < pair_b`` after combining.
    target : np.ndarray [shape=(n_pairs,)], float32
        Combined P(A preferred): the mean of the judgements' targets.
    share_a : np.ndarray [shape=(n_pairs,)], float32
        Share of the judgements that chose A (a tie counts one half): what ECE is measured against.
    weight : np.ndarray [shape=(n_pairs,)], float32
        Number of judgements combined in the row (the loss weight).
    group : np.ndarray [shape=(n_pairs,)], int64
        Track of the pair; train/validation never share a group.
    confidence : np.ndarray [shape=(n_pairs,)], int64
        Rounded mean confidence, for accuracy per confidence level.
    n_chose_first, n_chose_second : int
        Decided judgements that chose edit A / edit B *as their comparison presented
        them* (before combining), for the one-sided check.
    baseline_score : np.ndarray [shape=(n_edits,)], float32, or None
        A learning-free score per edit (the dense combined score) to compare against.
    """

    edits: tuple[EditInput, ...]
    pair_a: np.ndarray
    pair_b: np.ndarray
    target: np.ndarray
    share_a: np.ndarray
    weight: np.ndarray
    group: np.ndarray
    confidence: np.ndarray
    n_chose_first: int = 0
    n_chose_second: int = 0
    baseline_score: np.ndarray | None = None

    @property
    def n_pairs(self) -> int:
        return int(self.pair_a.shape[0])

    def subset(self, rows: np.ndarray) -> "PreferenceDataset":
        """The rows ``rows`` (the side counts describe the whole dataset and are kept)."""
        return replace(
            self, pair_a=self.pair_a[rows], pair_b=self.pair_b[rows], target=self.target[rows],
            share_a=self.share_a[rows], weight=self.weight[rows], group=self.group[rows],
            confidence=self.confidence[rows],
        )


def dataset_from_judgements(
    edits: Sequence[EditInput],
    judgements: Sequence[tuple[int, int, int, str, int]],
    *,
    baseline_score: np.ndarray | None = None,
) -> PreferenceDataset:
    """Combine judgements into one row per unordered pair of edits.

    A comparison and its sides-swapped repeat land in the same row (the repeat's
    target is flipped), so the row weight counts every judgement of the pair.

    Parameters
    ----------
    edits : sequence of EditInput
    judgements : sequence of (group, index of edit A, index of edit B, choice, confidence)
        ``choice`` is ``"a"``, ``"b"`` or ``"tie"`` relative to the comparison's A and B.
    baseline_score : np.ndarray [shape=(len(edits),)] or None
    """
    rows: dict[tuple[int, int], list] = {}
    n_first = n_second = 0
    for group, a, b, choice, confidence in judgements:
        target = confidence_target(choice, int(confidence))
        chose_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[choice]
        n_first += choice == "a"
        n_second += choice == "b"
        a, b = int(a), int(b)
        if a > b:
            a, b, target, chose_a = b, a, 1.0 - target, 1.0 - chose_a
        entry = rows.setdefault((a, b), [int(group), [], [], []])
        entry[1].append(target)
        entry[2].append(chose_a)
        entry[3].append(int(confidence))
    keys = sorted(rows)
    return PreferenceDataset(
        edits=tuple(edits),
        pair_a=np.array([k[0] for k in keys], dtype=np.int64),
        pair_b=np.array([k[1] for k in keys], dtype=np.int64),
        target=np.array([np.mean(rows[k][1]) for k in keys], dtype=np.float32),
        share_a=np.array([np.mean(rows[k][2]) for k in keys], dtype=np.float32),
        weight=np.array([len(rows[k][1]) for k in keys], dtype=np.float32),
        group=np.array([rows[k][0] for k in keys], dtype=np.int64),
        confidence=np.array([int(round(np.mean(rows[k][3]))) for k in keys], dtype=np.int64),
        n_chose_first=n_first,
        n_chose_second=n_second,
        baseline_score=None if baseline_score is None else np.asarray(baseline_score, dtype=np.float32),
    )


def check_dataset(dataset: PreferenceDataset, *, min_pairs: int) -> None:
    """Refuse datasets that cannot teach a preference.

    One-sided means: no judgement chose a side (all ties), or every decided
    judgement chose the same *position* of its comparison (every answer "A",
    or every answer "B").  Judges who always pick one position tell nothing
    about the edits, and a model trained on that would learn the order of the
    pair instead of what sounds better.

    Raises
    ------
    DatasetRefused
    """
    if dataset.n_pairs == 0:
        raise DatasetRefused("the preference dataset is empty: no usable judgements")
    if dataset.n_pairs < min_pairs:
        raise DatasetRefused(
            f"the preference dataset has {dataset.n_pairs} compared pairs of edits, at least {min_pairs} needed"
        )
    decided = dataset.n_chose_first + dataset.n_chose_second
    if decided == 0:
        raise DatasetRefused("the preference dataset is one-sided: every judgement is a tie")
    if dataset.n_chose_first == 0 or dataset.n_chose_second == 0:
        side = "A" if dataset.n_chose_first else "B"
        raise DatasetRefused(
            f"the preference dataset is one-sided: all {decided} decided judgements chose edit {side}"
        )
    if np.unique(dataset.group).size < 2:
        raise DatasetRefused("the preference dataset covers one track: a track-wise validation split needs two")


def split_by_group(groups: np.ndarray, *, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation) with no group (track) on both sides.

    Whole groups are drawn in a seeded random order until the validation side
    holds at least ``validation_fraction`` of the rows; at least one group goes
    to each side.
    """
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(unique)
    counts = {g: int(np.sum(groups == g)) for g in unique}
    wanted = validation_fraction * groups.size
    val_groups: list = []
    taken = 0
    for g in order[:-1]:
        if taken >= wanted and val_groups:
            break
        val_groups.append(g)
        taken += counts[g]
    is_val = np.isin(groups, val_groups)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)



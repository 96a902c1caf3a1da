"""Synthetic edits and judgements for the pure reward-model tests and the benchmark.

Each edit is a random feature sequence; its hidden quality is the mean of a few
feature columns, so a model that reads the sequence can learn the preference.
"""
from __future__ import annotations

import numpy as np

from editing.edit import N_ACTIONS, N_MODEL_FEATURES
from rlhf.learning.reward_data import EditInput, PreferenceDataset, dataset_from_judgements

QUALITY_COLUMNS = (3, 40, 100)


def synthetic_edits(rng: np.random.Generator, n_edits: int, *, min_beats: int = 24, max_beats: int = 40) -> tuple[list[EditInput], np.ndarray]:
    """``n_edits`` random edits and their hidden quality (shape (n_edits,))."""
    edits, quality = [], np.zeros(n_edits)
    for i in range(n_edits):
        n = int(rng.integers(min_beats, max_beats + 1))
        feats = rng.normal(size=(n, N_MODEL_FEATURES)).astype(np.float32)
        shift = rng.normal()
        feats[:, QUALITY_COLUMNS] += shift
        actions = rng.integers(0, N_ACTIONS, size=n).astype(np.int64)
        edits.append(EditInput(feats, actions))
        quality[i] = feats[:, QUALITY_COLUMNS].mean()
    return edits, quality


def synthetic_dataset(seed: int, *, n_judgements: int, n_tracks: int = 10, per_comparison: int = 1,
                      noise: float = 0.1, n_edits: int | None = None) -> PreferenceDataset:
    """Judgements over random pairs, ``per_comparison`` judgements each, ``noise`` share answered at random."""
    rng = np.random.default_rng(seed)
    n_comparisons = max(1, n_judgements // per_comparison)
    edits, quality = synthetic_edits(rng, n_edits or 2 * n_comparisons)
    rows = []
    for c in range(n_comparisons):
        a, b = rng.choice(len(edits), size=2, replace=False)
        for _ in range(per_comparison):
            if rng.random() < noise:
                choice = "a" if rng.random() < 0.5 else "b"
                confidence = int(rng.integers(1, 6))
            else:
                margin = quality[a] - quality[b]
                choice = "a" if margin > 0 else "b"
                confidence = int(np.clip(1 + abs(margin) // 0.3, 1, 5))
            rows.append((c % n_tracks, int(a), int(b), choice, confidence))
    return dataset_from_judgements(edits, rows, baseline_score=rng.normal(size=len(edits)))

"""Statistics that match the evaluation's design: excerpts nested in tracks, arms paired on the same excerpt.

Pure numpy (no Django, no torch), so benches and tools can read the evaluation's figures the
same way ``manage.py evaluate_loop`` computes them.

Excerpts of one track are not independent (same instruments, same tempo, same seams to
choose from), so every interval is a **two-level bootstrap**: each replicate draws tracks with
replacement, then excerpts with replacement within each drawn track.  With one excerpt per
track this is the ordinary bootstrap; with one track it is the bootstrap over excerpts.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


def nested_bootstrap_ci(groups: Sequence[Sequence[float]], *, n_boot: int = N_BOOT, level: float = LEVEL,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of all values, resampling groups (tracks), then values within each.

    Parameters
    ----------
    groups : sequence of sequences of float
        The values of each track (empty tracks are ignored).

    Raises
    ------
    ValueError
        When there is no value at all.
    """
    arrays = [np.asarray(g, dtype=np.float64).reshape(-1) for g in groups]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        raise ValueError("an interval needs at least one value")
    sizes = np.array([a.size for a in arrays])
    padded = np.zeros((len(arrays), int(sizes.max())))
    for i, a in enumerate(arrays):
        padded[i, : a.size] = a
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(arrays), size=(n_boot, len(arrays)))          # tracks drawn
    within = np.floor(rng.random((n_boot, len(arrays), int(sizes.max()))) * sizes[picked][:, :, None]).astype(np.int64)
    mask = np.arange(int(sizes.max()))[None, None, :] < sizes[picked][:, :, None]
    drawn = padded[picked[:, :, None], within] * mask
    means = drawn.sum(axis=(1, 2)) / mask.sum(axis=(1, 2))
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def by_group(values: Sequence[float], groups: Sequence[str]) -> list[np.ndarray]:
    """``values`` split by ``groups`` (in order of first appearance)."""
    out: dict[str, list[float]] = {}
    for v, g in zip(values, groups):
        out.setdefault(str(g), []).append(float(v))
    return [np.array(v) for v in out.values()]


def mean_with_ci(values: Sequence[float], groups: Sequence[str], *, digits: int = 4) -> dict[str, Any]:
    """``{"mean", "ci95", "n", "n_tracks"}`` of ``values`` nested in ``groups``; the mean is None without values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"mean": None, "ci95": None, "n": 0, "n_tracks": 0}
    split = by_group(values, groups)
    lo, hi = nested_bootstrap_ci(split)
    return {"mean": round(float(values.mean()), digits), "ci95": [round(lo, digits), round(hi, digits)],
            "n": int(values.size), "n_tracks": len(split)}


def paired_comparison(mine: Sequence[float], theirs: Sequence[float], *, same_edit: Sequence[bool],
                      tracks: Sequence[str], win_probability, tie_margin: float) -> dict[str, Any]:
    """One arm against one opponent on the same excerpts.

    Parameters
    ----------
    mine, theirs : listener scores of the two arms' edits of each excerpt.
    same_edit : whether the two edits of an excerpt are the same edit (they sound the same).
    tracks : the track of each excerpt (the bootstrap's first level).
    win_probability : callable margin -> expected share of judgements preferring ``mine`` (ties half).
    tie_margin : a listener score difference below which annotators cannot tell the edits apart.

    Returns
    -------
    dict
        ``win_rate`` and ``ci95``; ``better`` / ``worse`` (shares of excerpts where the edits differ
        and the listener prefers one by more than the tie margin), ``level`` (edits differ, the
        listener cannot tell) and ``identical`` (the same edit); ``mean_diff`` (listener score,
        mine minus theirs) with ``mean_diff_ci95``; ``n_excerpts`` and ``n_tracks``.
    """
    mine = np.asarray(mine, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    same = np.asarray(same_edit, dtype=bool)
    if not (mine.shape == theirs.shape == same.shape == (len(tracks),)) or mine.size == 0:
        raise ValueError(f"paired scores disagree in length or are empty: {mine.shape}, {theirs.shape}, "
                         f"{same.shape}, {len(tracks)} tracks")
    diff = np.where(same, 0.0, mine - theirs)
    p_win = np.asarray(win_probability(diff), dtype=np.float64)
    split_win = by_group(p_win, tracks)
    split_diff = by_group(diff, tracks)
    lo, hi = nested_bootstrap_ci(split_win)
    d_lo, d_hi = nested_bootstrap_ci(split_diff)
    differs = ~same
    return {
        "win_rate": round(float(p_win.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)],
        "better": round(float(np.mean(differs & (diff >= tie_margin))), 4),
        "worse": round(float(np.mean(differs & (diff <= -tie_margin))), 4),
        "level": round(float(np.mean(differs & (np.abs(diff) < tie_margin))), 4),
        "identical": round(float(np.mean(same)), 4),
        "mean_diff": round(float(diff.mean()), 4), "mean_diff_ci95": [round(d_lo, 4), round(d_hi, 4)],
        "n_excerpts": int(mine.size), "n_tracks": len(split_win),
    }


def agreement(predicted: Sequence[float], label: Sequence[float]) -> np.ndarray:
    """Per pair: 1 when ``predicted`` has the sign of ``label``, 0 when opposite, 0.5 when ``predicted`` is 0."""
    predicted = np.sign(np.asarray(predicted, dtype=np.float64))
    label = np.sign(np.asarray(label, dtype=np.float64))
    return np.where(predicted == 0, 0.5, (predicted == label).astype(np.float64))

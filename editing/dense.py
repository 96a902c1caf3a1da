"""Dense rewards: what can be said about an edit's quality from the beat grid and features alone.

Five scores, each in [0, 1] (1 = best).  Notation: the edit plays track beats
``t_0 .. t_{m-1}`` (m output beats); a *seam* is an output beat ``k`` whose
transition is CUT or CROSSFADE, joining outgoing beat ``a = t_{k-1}`` to
incoming beat ``b = t_k``.  A seam's change in a feature, ``dist(f_a, f_b)``,
is judged against the *typical step* ``T[q]`` of the track: the median
``dist(f_i, f_{i+1})`` over neighbouring beats whose second beat has the same
bar position ``q`` as ``b`` (music changes more into a downbeat than inside a
bar; the median over all neighbours stands in for a bar position that never
follows a neighbour).  A score over seams is 1 for an edit without seams.

tempo_consistency
    Regularity of the output's inter-beat intervals ``I_k`` (beat durations):
    ``mean_k max(0, 1 - |ln(I_k / I_{k-1})| / ln(4/3))``; a tempo change of a
    third or more between neighbouring output beats scores 0 there.
energy_flow
    Loudness continuity across seams, on the per-beat mean RMS level ``L``
    (dBFS): ``mean_seams exp(-max(0, |L_b - L_a| - T_L[q_b]) / 6 dB)``: level
    jumps beyond what the track does from beat to beat cost 1/e per 6 dB.
phrase_completeness
    Cuts and jumps on bar and 4-bar phrase boundaries:
    ``mean_seams 0.8 (bar_in + bar_out) / 2 + 0.2 (phrase_in + phrase_out) / 2``
    where ``bar_in`` = b is a downbeat, ``bar_out`` = a ends a bar (a + 1 is a
    downbeat or the end of the track), and ``phrase_in`` / ``phrase_out`` the
    same for 4-bar phrases counted from the track's first downbeat.
seam_smoothness
    Timbre and harmony continuity across seams relative to the track's own
    neighbour distances: ``mean_seams (s_mfcc + s_chroma) / 2`` with
    ``s = exp(-max(0, dist(f_a, f_b) / T[q_b] - 1))``; MFCC means are z-scored
    over the track and compared by Euclidean distance, chroma by cosine
    distance.
duration_accuracy
    ``max(0, 1 - |m - target_beats| / target_beats)``.
combined
    Weighted mean with :data:`DENSE_WEIGHTS` (phrase 0.3, duration 0.25,
    seam 0.2, energy 0.15, tempo 0.1; they sum to 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from editing.audio import BEATS_PER_BAR, FEATURE_GROUPS, N_AUDIO_FEATURES
from editing.edit import Edit, Transition, validate_edit

__all__ = ["DENSE_WEIGHTS", "DenseRewardError", "DenseScores", "dense_rewards"]

# Phrase first (off-bar seams are what listeners notice most), duration next so that
# stopping early does not pay; tempo is low because beat-aligned seams rarely break it.
DENSE_WEIGHTS: dict[str, float] = {
    "tempo_consistency": 0.1,
    "energy_flow": 0.15,
    "phrase_completeness": 0.3,
    "seam_smoothness": 0.2,
    "duration_accuracy": 0.25,
}
# A tempo ratio of 4/3 between neighbouring beats (e.g. 90 -> 120 BPM) is a plainly broken groove.
_TEMPO_TOLERANCE = np.log(4.0 / 3.0)
_ENERGY_SCALE_DB = 6.0
_BAR_WEIGHT = 0.8
_BARS_PER_PHRASE = 4
_EPS = 1e-9


class DenseRewardError(ValueError):
    """The track arrays or the target do not fit together; the message names which and why."""


@dataclass(frozen=True)
class DenseScores:
    """Dense reward components of one edit, each in [0, 1] (formulas in the module docstring)."""

    tempo_consistency: float
    energy_flow: float
    phrase_completeness: float
    seam_smoothness: float
    duration_accuracy: float
    combined: float


def _mean_or_one(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 1.0


def _typical_steps(step: np.ndarray, bar_positions: np.ndarray) -> np.ndarray:
    """Median neighbour step into each bar position 0..3, float (4,); the overall median where a position has none.

    ``step[i]`` is the distance from beat i to beat i + 1.
    """
    overall = float(np.median(step)) if step.size else 0.0
    into = bar_positions[1:]
    return np.array(
        [float(np.median(step[into == q])) if np.any(into == q) else overall for q in range(BEATS_PER_BAR)]
    )


def dense_rewards(
    edit: Edit,
    *,
    features: np.ndarray,
    beat_samples: np.ndarray,
    bar_positions: np.ndarray,
    target_beats: int,
) -> DenseScores:
    """Score an edit of a track.

    Parameters
    ----------
    edit : Edit
    features : np.ndarray [shape=(n_track_beats, 121)], float
        The track's per-beat audio features.
    beat_samples : np.ndarray [shape=(n_track_beats + 1,)], int
        The track's beat boundaries, samples.
    bar_positions : np.ndarray [shape=(n_track_beats,)], int
        The track's bar position of each beat, 0 = downbeat.
    target_beats : int
        Wanted output length, beats (>= 1).

    Returns
    -------
    DenseScores

    Raises
    ------
    DenseRewardError
        If the arrays disagree on the number of beats or the target is not positive.
    editing.edit.EditError
        If the edit does not fit the track.
    """
    features = np.asarray(features, dtype=np.float64)
    beat_samples = np.asarray(beat_samples, dtype=np.int64)
    bar_positions = np.asarray(bar_positions)
    if features.ndim != 2 or features.shape[1] != N_AUDIO_FEATURES:
        raise DenseRewardError(f"features have shape {features.shape}: expected (n_track_beats, {N_AUDIO_FEATURES})")
    n = features.shape[0]
    if beat_samples.shape != (n + 1,):
        raise DenseRewardError(f"beat_samples has shape {beat_samples.shape}: expected ({n + 1},) for {n} beats")
    if bar_positions.shape != (n,):
        raise DenseRewardError(f"bar_positions has shape {bar_positions.shape}: expected ({n},) for {n} beats")
    if target_beats < 1:
        raise DenseRewardError(f"target of {target_beats} beats: must be at least 1")
    validate_edit(edit, n_track_beats=n)

    beats = edit.track_beats()
    transitions = edit.transitions()
    seam = np.flatnonzero(np.isin(transitions, [Transition.CUT, Transition.CROSSFADE]))
    a, b = beats[seam - 1], beats[seam]

    intervals = (beat_samples[beats + 1] - beat_samples[beats]).astype(np.float64)
    tempo_change = np.abs(np.diff(np.log(intervals)))
    tempo = _mean_or_one(np.maximum(0.0, 1.0 - tempo_change / _TEMPO_TOLERANCE))

    incoming_position = bar_positions[b].astype(np.int64) % BEATS_PER_BAR
    level = features[:, FEATURE_GROUPS["loudness"].start]
    typical_level_step = _typical_steps(np.abs(np.diff(level)), bar_positions)[incoming_position]
    level_jump = np.abs(level[b] - level[a])
    energy = _mean_or_one(np.exp(-np.maximum(0.0, level_jump - typical_level_step) / _ENERGY_SCALE_DB))

    downbeats = np.flatnonzero(bar_positions == 0)
    phrase_start = np.zeros(n + 1, dtype=bool)
    phrase_start[downbeats[::_BARS_PER_PHRASE]] = True
    bar_start = np.append(bar_positions == 0, True)  # the track's end closes a bar and a phrase
    phrase_start[n] = True
    bar_part = (bar_start[b].astype(float) + bar_start[a + 1]) / 2.0
    phrase_part = (phrase_start[b].astype(float) + phrase_start[a + 1]) / 2.0
    phrase = _mean_or_one(_BAR_WEIGHT * bar_part + (1.0 - _BAR_WEIGHT) * phrase_part)

    mfcc = features[:, FEATURE_GROUPS["mfcc"]]
    mfcc = (mfcc - mfcc.mean(axis=0)) / (mfcc.std(axis=0) + _EPS)
    chroma = features[:, FEATURE_GROUPS["chroma"]]
    chroma = chroma / (np.linalg.norm(chroma, axis=1, keepdims=True) + _EPS)

    def timbre_dist(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.linalg.norm(mfcc[i] - mfcc[j], axis=-1)

    def chroma_dist(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return 1.0 - np.sum(chroma[i] * chroma[j], axis=-1)

    neighbours = np.arange(n - 1)
    smooth_parts = []
    for dist in (timbre_dist, chroma_dist):
        typical = _typical_steps(dist(neighbours, neighbours + 1), bar_positions)[incoming_position]
        ratio = dist(a, b) / (typical + _EPS)
        smooth_parts.append(np.exp(-np.maximum(0.0, ratio - 1.0)))
    smoothness = _mean_or_one(0.5 * (smooth_parts[0] + smooth_parts[1]))

    duration = max(0.0, 1.0 - abs(edit.n_output_beats - target_beats) / target_beats)

    scores = {
        "tempo_consistency": tempo,
        "energy_flow": energy,
        "phrase_completeness": phrase,
        "seam_smoothness": smoothness,
        "duration_accuracy": duration,
    }
    combined = sum(DENSE_WEIGHTS[name] * value for name, value in scores.items())
    return DenseScores(**scores, combined=float(combined))

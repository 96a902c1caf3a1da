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
    How close the rendered length is to the target duration, in seconds:
    ``max(0, 1 - |sum_k I_k - target_beats * mean I| / (4 * mean I))`` where ``mean I`` is the
    passage's mean beat duration: exact scores 1, a bar off scores 0.
frame_intact
    The retarget keeps its passage's opening and final bars as written
    (``editing.edit.passage_frame``): the mean of "the output starts with the opening bar" and
    "the output ends with the final bar".  1 for every edit the builder makes; it tells the
    learned side what the task is and scores edits made by hand.
combined
    Weighted mean with :data:`DENSE_WEIGHTS` (phrase 0.3, seam 0.2, energy 0.15, duration 0.15,
    tempo 0.1, frame 0.1; they sum to 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from editing.audio import BEATS_PER_BAR, FEATURE_GROUPS, N_AUDIO_FEATURES
from editing.edit import Edit, Transition, passage_frame, validate_edit

__all__ = ["DENSE_WEIGHTS", "DenseContext", "DenseRewardError", "DenseScores", "dense_context", "dense_rewards"]

# Phrase first (off-bar seams are what listeners notice most); duration and the intact opening
# and ending define the retarget task; tempo is low because beat-aligned seams rarely break it.
DENSE_WEIGHTS: dict[str, float] = {
    "tempo_consistency": 0.1,
    "energy_flow": 0.15,
    "phrase_completeness": 0.3,
    "seam_smoothness": 0.2,
    "duration_accuracy": 0.15,
    "frame_intact": 0.1,
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
    frame_intact: float
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


@dataclass(frozen=True, eq=False)
class DenseContext:
    """Everything :func:`dense_rewards` derives from a track alone, computed once per track.

    Build it with :func:`dense_context`; scoring with it gives exactly the
    scores that scoring with the track arrays gives.

    Attributes
    ----------
    n_beats : int
        Track beats.
    log_intervals : np.ndarray [shape=(n_beats,)], float64
        Natural log of each beat's duration in samples.
    incoming_position : np.ndarray [shape=(n_beats,)], int64
        Bar position 0..3 of each beat.
    level : np.ndarray [shape=(n_beats,)], float64
        Per-beat mean RMS level, dBFS.
    typical_level_step, typical_timbre_step, typical_chroma_step : np.ndarray [shape=(4,)], float64
        The track's median neighbour step into each bar position (dB, z-scored MFCC
        Euclidean distance, chroma cosine distance).
    bar_start, phrase_start : np.ndarray [shape=(n_beats + 1,)], float64
        1.0 where a bar / 4-bar phrase starts (index n_beats: the track's end), else 0.0.
    mfcc : np.ndarray [shape=(n_beats, 20)], float64
        MFCC means z-scored over the track.
    chroma : np.ndarray [shape=(n_beats, 12)], float64
        Chroma scaled to unit length.
    """

    n_beats: int
    log_intervals: np.ndarray
    incoming_position: np.ndarray
    level: np.ndarray
    typical_level_step: np.ndarray
    typical_timbre_step: np.ndarray
    typical_chroma_step: np.ndarray
    bar_start: np.ndarray
    phrase_start: np.ndarray
    mfcc: np.ndarray
    chroma: np.ndarray


def _timbre_dist(mfcc: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.linalg.norm(mfcc[i] - mfcc[j], axis=-1)


def _chroma_dist(chroma: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return 1.0 - np.sum(chroma[i] * chroma[j], axis=-1)


def dense_context(features: np.ndarray, beat_samples: np.ndarray, bar_positions: np.ndarray) -> DenseContext:
    """The per-track part of the dense rewards, to pass to :func:`dense_rewards` as ``context=``.

    Parameters
    ----------
    features : np.ndarray [shape=(n_track_beats, 121)], float
        The track's per-beat audio features.
    beat_samples : np.ndarray [shape=(n_track_beats + 1,)], int
        The track's beat boundaries, samples.
    bar_positions : np.ndarray [shape=(n_track_beats,)], int
        The track's bar position of each beat, 0 = downbeat.

    Returns
    -------
    DenseContext

    Raises
    ------
    DenseRewardError
        If the arrays disagree on the number of beats.
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

    level = features[:, FEATURE_GROUPS["loudness"].start].copy()

    downbeats = np.flatnonzero(bar_positions == 0)
    phrase_start = np.zeros(n + 1, dtype=bool)
    phrase_start[downbeats[::_BARS_PER_PHRASE]] = True
    bar_start = np.append(bar_positions == 0, True)  # the track's end closes a bar and a phrase
    phrase_start[n] = True

    mfcc = features[:, FEATURE_GROUPS["mfcc"]]
    mfcc = (mfcc - mfcc.mean(axis=0)) / (mfcc.std(axis=0) + _EPS)
    chroma = features[:, FEATURE_GROUPS["chroma"]]
    chroma = chroma / (np.linalg.norm(chroma, axis=1, keepdims=True) + _EPS)
    neighbours = np.arange(n - 1)

    context = DenseContext(
        n_beats=n,
        log_intervals=np.log(np.diff(beat_samples).astype(np.float64)),
        incoming_position=bar_positions.astype(np.int64) % BEATS_PER_BAR,
        level=level,
        typical_level_step=_typical_steps(np.abs(np.diff(level)), bar_positions),
        typical_timbre_step=_typical_steps(_timbre_dist(mfcc, neighbours, neighbours + 1), bar_positions),
        typical_chroma_step=_typical_steps(_chroma_dist(chroma, neighbours, neighbours + 1), bar_positions),
        bar_start=bar_start.astype(np.float64),
        phrase_start=phrase_start.astype(np.float64),
        mfcc=mfcc,
        chroma=chroma,
    )
    # The env shares one context across many episodes: nothing may change it in place.
    for name in ("log_intervals", "incoming_position", "level", "typical_level_step", "typical_timbre_step",
                 "typical_chroma_step", "bar_start", "phrase_start", "mfcc", "chroma"):
        getattr(context, name).setflags(write=False)
    return context


def dense_rewards(
    edit: Edit,
    *,
    features: np.ndarray | None = None,
    beat_samples: np.ndarray | None = None,
    bar_positions: np.ndarray | None = None,
    target_beats: int,
    context: DenseContext | None = None,
) -> DenseScores:
    """Score an edit of a track.

    Give either the three track arrays or ``context`` (the same arrays digested
    once by :func:`dense_context`, for scoring many edits of one track); the
    scores are identical.

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
    context : DenseContext, optional
        Instead of the three arrays.

    Returns
    -------
    DenseScores

    Raises
    ------
    DenseRewardError
        If the arrays disagree on the number of beats, the target is not positive,
        or not exactly one of (the three arrays, ``context``) is given.
    editing.edit.EditError
        If the edit does not fit the track.
    """
    arrays = (features, beat_samples, bar_positions)
    if context is None:
        if any(a is None for a in arrays):
            raise DenseRewardError("dense_rewards needs features, beat_samples and bar_positions, or a context")
        context = dense_context(features, beat_samples, bar_positions)
    elif any(a is not None for a in arrays):
        raise DenseRewardError("dense_rewards takes either the track arrays or a context, not both")
    if target_beats < 1:
        raise DenseRewardError(f"target of {target_beats} beats: must be at least 1")
    validate_edit(edit, n_track_beats=context.n_beats)

    beats = edit.track_beats()
    transitions = edit.transitions()
    seam = np.flatnonzero((transitions == Transition.CUT) | (transitions == Transition.CROSSFADE))
    a, b = beats[seam - 1], beats[seam]

    tempo_change = np.abs(np.diff(context.log_intervals[beats]))
    tempo = _mean_or_one(np.maximum(0.0, 1.0 - tempo_change / _TEMPO_TOLERANCE))

    incoming_position = context.incoming_position[b]
    level = context.level
    level_jump = np.abs(level[b] - level[a])
    typical_level_step = context.typical_level_step[incoming_position]
    energy = _mean_or_one(np.exp(-np.maximum(0.0, level_jump - typical_level_step) / _ENERGY_SCALE_DB))

    bar_part = (context.bar_start[b] + context.bar_start[a + 1]) / 2.0
    phrase_part = (context.phrase_start[b] + context.phrase_start[a + 1]) / 2.0
    phrase = _mean_or_one(_BAR_WEIGHT * bar_part + (1.0 - _BAR_WEIGHT) * phrase_part)

    smooth_parts = []
    for seam_dist, typical_steps in (
        (_timbre_dist(context.mfcc, a, b), context.typical_timbre_step),
        (_chroma_dist(context.chroma, a, b), context.typical_chroma_step),
    ):
        ratio = seam_dist / (typical_steps[incoming_position] + _EPS)
        smooth_parts.append(np.exp(-np.maximum(0.0, ratio - 1.0)))
    smoothness = _mean_or_one(0.5 * (smooth_parts[0] + smooth_parts[1]))

    passage = np.arange(edit.excerpt_start, edit.excerpt_start + edit.n_source_beats)
    beat_seconds = np.exp(context.log_intervals)  # in samples; only ratios matter below
    mean_beat = float(beat_seconds[passage].mean())
    error = abs(float(beat_seconds[beats].sum()) - target_beats * mean_beat)
    # Rounded: beat durations come back through exp(log(.)), and an exact edit should read 1.0.
    duration = round(max(0.0, 1.0 - error / (BEATS_PER_BAR * mean_beat)), 9)

    head_end, tail_start = passage_frame(context.incoming_position[passage])
    sources = edit.source_beats()
    n_head, n_tail = head_end, edit.n_source_beats - tail_start
    opening = sources.size >= n_head and np.array_equal(sources[:n_head], np.arange(n_head))
    ending = sources.size >= n_tail and np.array_equal(sources[sources.size - n_tail:], np.arange(tail_start, edit.n_source_beats))
    frame = (float(opening) + float(ending)) / 2.0

    scores = {
        "tempo_consistency": tempo,
        "energy_flow": energy,
        "phrase_completeness": phrase,
        "seam_smoothness": smoothness,
        "duration_accuracy": duration,
        "frame_intact": frame,
    }
    combined = sum(DENSE_WEIGHTS[name] * value for name, value in scores.items())
    return DenseScores(**scores, combined=float(combined))

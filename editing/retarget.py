"""Retarget a track or a passage to a duration: the request, checked, as a passage and a target in beats.

Pure: arrays in, a :class:`RetargetPlan` out.  Who makes the edit (the policy, best of N by the
reward model, or the heuristic) is the caller's choice; every method makes the same task of the
plan, so their results can be compared and paired for annotators.

Rules (each refusal names the thing and the reason):

- the duration is a positive number of seconds, given as ``150``, ``150.5``, ``2:30`` or
  ``1:02:30``;
- the passage is beats ``[from_beat, to_beat)`` of the track (default: all of it), at least two
  bars (8 beats);
- the duration lies within 0.5x..2x of the passage's own, as the task allows, rounded inward to
  0.1 s (:func:`duration_bounds`, the one home of the range: the page's slider, the bounds API and
  the refusals all read it, so a figure the page offers is one the check accepts);
- the target in beats is the reachable length nearest ``duration / mean beat duration``, so the
  rendered edit lands within about a beat of the duration;
- a passage that starts at the track's start opens with the track's lead-in (its sound before the
  first beat), one that ends at the track's end closes with its ring-out (the sound after the last
  beat): both are heard as in the source and count towards the duration, so the beats make up the
  rest; the range check applies to the beats (half to twice the passage's beats, plus these).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from editing.edit import MAX_PASSAGE_BEATS, MAX_STRETCH, MIN_PASSAGE_BEATS, MIN_STRETCH, reachable_target, target_range

__all__ = ["RetargetError", "RetargetPlan", "DurationBounds", "parse_duration", "format_duration", "duration_bounds",
           "plan_retarget"]

_DURATION = re.compile(r"^\s*(-?)(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)\s*s?\s*$")
# A duration past a day is a typo, not a request (and keeps every later figure finite).
_MAX_SECONDS = 24 * 3600.0
# The allowed range is given in tenths of a second (the page's slider step, the messages' precision);
# k / 10 is the double nearest to the decimal figure, as parsing "20.3" is (k * 0.1 may not be).
_BOUNDS_STEPS_PER_SECOND = 10
# A bound typed back as m:ss is summed in floating point (60 + 20.3), which may land an ulp off the
# bound's own figure (80.3): that is still the bound.
_BOUNDS_SLACK_SECONDS = 1e-9


class RetargetError(ValueError):
    """A retarget request that cannot be met; the message says what and why."""


@dataclass(frozen=True)
class RetargetPlan:
    """A checked retarget request.

    Attributes
    ----------
    start_beat : int
        Track beat of the passage's first beat.
    n_beats : int
        Passage length, beats.
    target_beats : int
        Exact output length, beats.
    target_seconds : float
        The duration asked for.
    passage_seconds : float
        The passage's own duration.
    expected_seconds : float
        ``target_beats`` times the passage's mean beat duration, plus the lead-in and ring-out it
        plays: what the edit will last, give or take the tempo's variation.
    lead_in_seconds, ring_out_seconds : float
        The track's sound before the passage's first beat and after its last that the output plays
        (0 for a passage that starts or ends inside the track).
    """

    start_beat: int
    n_beats: int
    target_beats: int
    target_seconds: float
    passage_seconds: float
    expected_seconds: float
    lead_in_seconds: float = 0.0
    ring_out_seconds: float = 0.0


@dataclass(frozen=True)
class DurationBounds:
    """The durations a passage may be retargeted to.

    Attributes
    ----------
    start_beat, stop_beat : int
        The passage, track beats ``[start_beat, stop_beat)``.
    lowest_seconds, highest_seconds : float
        The allowed durations, ends included: the shortest and longest outputs the passage's bars
        allow (``editing.edit.target_range``: at most half and twice its beats; a short passage,
        whose first and last bars are kept, allows less), plus the lead-in and ring-out it plays,
        rounded inward to 0.1 s (so each is a figure one can type).  A duration inside them is
        delivered within a beat; none outside is offered or accepted.
    passage_seconds : float
        The passage's own duration (its beats, lead-in and ring-out).
    beats_seconds : float
        Its beats' duration alone.
    lead_in_seconds, ring_out_seconds : float
        The track's sound before the passage's first beat and after its last that the output plays
        (0 for a passage that starts or ends inside the track).
    """

    start_beat: int
    stop_beat: int
    lowest_seconds: float
    highest_seconds: float
    passage_seconds: float
    beats_seconds: float
    lead_in_seconds: float
    ring_out_seconds: float

    @property
    def n_beats(self) -> int:
        return self.stop_beat - self.start_beat

    def allows(self, target_seconds: float) -> bool:
        """Whether ``target_seconds`` lies within the bounds, ends included."""
        slack = _BOUNDS_SLACK_SECONDS
        return self.lowest_seconds - slack <= target_seconds <= self.highest_seconds + slack

    def describe(self) -> str:
        """``0:18.0..1:12.0, half to twice the passage's 0:36.0``: the range in the words of every refusal."""
        return (f"{format_duration(self.lowest_seconds)}..{format_duration(self.highest_seconds)}, "
                f"half to twice the passage's {format_duration(self.passage_seconds)} as far as its bars allow")


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``150``, ``150.5``, ``2:30``, ``1:02:30`` (or a number); refuses zero, negatives and junk."""
    if isinstance(text, bool):
        raise RetargetError(f"duration {text!r}: give seconds or m:ss")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if match is None:
            raise RetargetError(f"duration {text!r}: give seconds (150) or minutes and seconds (2:30)")
        sign, first, second, last = match.groups()
        if second is not None:  # h:mm:ss
            seconds = int(first) * 3600 + int(second) * 60 + float(last)
        elif first is not None:  # m:ss
            seconds = int(first) * 60 + float(last)
        else:
            seconds = float(last)
        seconds = -seconds if sign else seconds
    if not math.isfinite(seconds) or seconds <= 0:
        raise RetargetError(f"duration {text!r}: must be more than zero seconds")
    if seconds > _MAX_SECONDS:
        raise RetargetError(f"duration {text!r}: at most {format_duration(_MAX_SECONDS)}")
    return seconds


def format_duration(seconds: float) -> str:
    """``m:ss.s`` (``h:mm:ss`` past an hour)."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _round_up(seconds: float) -> float:
    # round() first: a product that is a whole step (18.0000000001) must not move a whole step for float noise.
    return math.ceil(round(seconds * _BOUNDS_STEPS_PER_SECOND, 6)) / _BOUNDS_STEPS_PER_SECOND


def _round_down(seconds: float) -> float:
    return math.floor(round(seconds * _BOUNDS_STEPS_PER_SECOND, 6)) / _BOUNDS_STEPS_PER_SECOND


def duration_bounds(*, beat_samples: np.ndarray, bar_positions: np.ndarray, sample_rate: int,
                    from_beat: int | None = None,
                    to_beat: int | None = None, name: str = "track", lead_in_seconds: float = 0.0,
                    ring_out_seconds: float = 0.0) -> DurationBounds:
    """The durations a passage of a track may be retargeted to; the one home of the range.

    Parameters
    ----------
    beat_samples : np.ndarray [shape=(n_beats + 1,)], int
        The track's beat boundaries, samples.
    bar_positions : np.ndarray [shape=(n_beats,)], int
        The track's bar position of each beat (which output lengths the passage can reach).
    sample_rate : int
        Hz.
    from_beat, to_beat : int, optional
        The passage, beats ``[from_beat, to_beat)``; default the whole track.
    name : str
        Names the track in messages.
    lead_in_seconds, ring_out_seconds : float
        The track's sound before its first beat and after its last (``editing.audio.sound_edges``),
        seconds: played, and counted, when the passage starts at beat 0 / ends at the track's end.
        They are not stretched: the range is the reachable beats, plus these.

    Raises
    ------
    RetargetError
        If the passage is not a range of the track's beats, is under two bars or over
        ``MAX_PASSAGE_BEATS``, or an edge is negative.
    """
    beat_samples = np.asarray(beat_samples)
    n_track = int(beat_samples.size) - 1
    start = 0 if from_beat is None else int(from_beat)
    stop = n_track if to_beat is None else int(to_beat)
    if not 0 <= start < stop <= n_track:
        raise RetargetError(f"{name}: beats {start}..{stop} are not a range of its {n_track} beats (0..{n_track})")
    n = stop - start
    if n < MIN_PASSAGE_BEATS:
        raise RetargetError(f"{name}: a range of {n} beats is shorter than two bars ({MIN_PASSAGE_BEATS} beats)")
    if n > MAX_PASSAGE_BEATS:
        raise RetargetError(f"{name}: a range of {n} beats is longer than {MAX_PASSAGE_BEATS} beats")
    if not (math.isfinite(lead_in_seconds) and lead_in_seconds >= 0 and math.isfinite(ring_out_seconds)
            and ring_out_seconds >= 0):
        raise RetargetError(f"{name}: lead-in {lead_in_seconds} s and ring-out {ring_out_seconds} s must be >= 0")
    lead_in = float(lead_in_seconds) if start == 0 else 0.0
    ring_out = float(ring_out_seconds) if stop == n_track else 0.0
    beats_seconds = float(beat_samples[stop] - beat_samples[start]) / sample_rate
    # Output lengths in beats of the passage's mean beat (as plan_retarget converts a duration).
    lowest_beats, highest_beats = target_range(np.asarray(bar_positions)[start:stop])
    mean_beat = beats_seconds / n
    return DurationBounds(
        start_beat=start, stop_beat=stop,
        lowest_seconds=_round_up(lead_in + max(MIN_STRETCH * beats_seconds, lowest_beats * mean_beat) + ring_out),
        highest_seconds=_round_down(lead_in + min(MAX_STRETCH * beats_seconds, highest_beats * mean_beat) + ring_out),
        passage_seconds=lead_in + beats_seconds + ring_out, beats_seconds=beats_seconds,
        lead_in_seconds=lead_in, ring_out_seconds=ring_out,
    )


def plan_retarget(*, beat_samples: np.ndarray, bar_positions: np.ndarray, sample_rate: int, target_seconds: float,
                  from_beat: int | None = None, to_beat: int | None = None, name: str = "track",
                  lead_in_seconds: float = 0.0, ring_out_seconds: float = 0.0) -> RetargetPlan:
    """Check a retarget request against a track's beat grid and turn it into beats.

    Parameters
    ----------
    beat_samples : np.ndarray [shape=(n_beats + 1,)], int
        The track's beat boundaries, samples.
    bar_positions : np.ndarray [shape=(n_beats,)], int
        The track's bar position of each beat.
    sample_rate : int
        Hz.
    target_seconds : float
        The duration asked for (see :func:`parse_duration`); it must lie within
        :func:`duration_bounds`, ends included.
    from_beat, to_beat : int, optional
        The passage, beats ``[from_beat, to_beat)``; default the whole track.
    name : str
        Names the track in messages.
    lead_in_seconds, ring_out_seconds : float
        The track's sound before its first beat and after its last (``editing.audio.sound_edges``),
        seconds: played, and counted, when the passage starts at beat 0 / ends at the track's end.

    Raises
    ------
    RetargetError
    """
    bar_positions = np.asarray(bar_positions)
    bounds = duration_bounds(beat_samples=beat_samples, bar_positions=bar_positions, sample_rate=sample_rate,
                             from_beat=from_beat, to_beat=to_beat, name=name, lead_in_seconds=lead_in_seconds,
                             ring_out_seconds=ring_out_seconds)
    if not math.isfinite(target_seconds) or target_seconds <= 0:
        raise RetargetError(f"duration of {target_seconds} s: must be more than zero seconds")
    if not bounds.allows(target_seconds):
        raise RetargetError(f"{name}: {format_duration(target_seconds)} is outside {bounds.describe()}")
    start, stop = bounds.start_beat, bounds.stop_beat
    lead_in, ring_out = bounds.lead_in_seconds, bounds.ring_out_seconds
    mean_beat = bounds.beats_seconds / bounds.n_beats
    target_beats = reachable_target(bar_positions[start:stop], round((target_seconds - lead_in - ring_out) / mean_beat))
    return RetargetPlan(start_beat=start, n_beats=bounds.n_beats, target_beats=target_beats,
                        target_seconds=float(target_seconds), passage_seconds=bounds.passage_seconds,
                        expected_seconds=lead_in + target_beats * mean_beat + ring_out,
                        lead_in_seconds=lead_in, ring_out_seconds=ring_out)

"""Map a playhead between two edits of one track at the same musical moment.

Pure (numpy only); ``static/js/annotate.js`` holds its twin ``mapPlayhead``
for the page, and ``tests/annotations/test_playhead.py`` keeps the two
honest on real rendered edits.

Edits of one track differ in length, so switching A<->B at the same number
of seconds lands somewhere musically unrelated.  Instead the playhead goes
through each edit's beat list: output seconds -> (output beat, fraction) ->
source (track) beat -> the other edit's output beat that plays that source
beat -> seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class BeatMap:
    """The beat list of one rendered edit.

    Attributes
    ----------
    beat_starts_seconds : np.ndarray [shape=(n_output_beats + 1,), float64]
        Boundaries of the output beats in the rendered audio, seconds; the last
        entry is the end of the last beat.
    track_beats : np.ndarray [shape=(n_output_beats,), int64]
        The track beat index each output beat plays.
    """

    beat_starts_seconds: np.ndarray
    track_beats: np.ndarray

    def __post_init__(self) -> None:
        starts = np.asarray(self.beat_starts_seconds, dtype=np.float64)
        beats = np.asarray(self.track_beats, dtype=np.int64)
        if beats.ndim != 1 or beats.size == 0:
            raise ValueError(f"beat map: track_beats must be a non-empty 1-d list, got shape {beats.shape}")
        if starts.shape != (beats.size + 1,):
            raise ValueError(
                f"beat map: {starts.size} beat boundaries for {beats.size} output beats, expected {beats.size + 1}"
            )
        if np.any(np.diff(starts) < 0):
            raise ValueError("beat map: beat boundaries must not decrease")
        object.__setattr__(self, "beat_starts_seconds", starts)
        object.__setattr__(self, "track_beats", beats)

    @classmethod
    def from_render(cls, render: Mapping) -> "BeatMap":
        """Build from ``Edit.render`` (keys ``beat_starts_seconds`` and ``track_beats``)."""
        return cls(np.asarray(render["beat_starts_seconds"]), np.asarray(render["track_beats"]))

    @property
    def n_output_beats(self) -> int:
        return int(self.track_beats.size)

    @property
    def duration_seconds(self) -> float:
        return float(self.beat_starts_seconds[-1])


@dataclass(frozen=True)
class BeatPosition:
    """Where a playhead is: output beat index, track beat it plays, fraction of the beat elapsed in [0, 1)."""

    output_beat: int
    track_beat: int
    fraction: float


def locate(beat_map: BeatMap, seconds: float) -> BeatPosition:
    """The output beat playing at ``seconds`` (clamped to the edit), its track beat and the fraction elapsed."""
    starts = beat_map.beat_starts_seconds
    n = beat_map.n_output_beats
    i = int(np.searchsorted(starts, seconds, side="right")) - 1
    i = min(max(i, 0), n - 1)
    length = starts[i + 1] - starts[i]
    fraction = 0.0 if length <= 0 else float(np.clip((seconds - starts[i]) / length, 0.0, 1.0))
    # A playhead at the very end still belongs to the last beat, just before its end.
    fraction = min(fraction, 0.999)
    return BeatPosition(output_beat=i, track_beat=int(beat_map.track_beats[i]), fraction=fraction)


def target_beat(target: BeatMap, position: BeatPosition) -> tuple[int, bool]:
    """The output beat of ``target`` to land on, and whether it plays the same track beat.

    The same track beat when ``target`` plays it (the occurrence nearest in
    output position when it plays it several times); otherwise the kept beat
    nearest in the track (ties: nearest in output position, then the earlier).
    """
    beats = target.track_beats
    outputs = np.arange(beats.size)
    same = np.flatnonzero(beats == position.track_beat)
    if same.size:
        return int(same[np.argmin(np.abs(same - position.output_beat))]), True
    # lexsort: last key is primary -> track distance, then output distance, then index.
    order = np.lexsort((outputs, np.abs(outputs - position.output_beat), np.abs(beats - position.track_beat)))
    return int(order[0]), False


def map_playhead(source: BeatMap, target: BeatMap, seconds: float) -> float:
    """Seconds in ``target`` that play the same musical moment as ``seconds`` in ``source``.

    Parameters
    ----------
    source, target : the beat maps of the edit now playing and of the edit switched to
    seconds : playhead in ``source``, seconds

    Returns
    -------
    float : playhead in ``target``, seconds.  Within the same track beat the
        fraction of the beat is kept; when ``target`` cut that beat, playback
        starts at the beginning of the nearest kept beat.
    """
    position = locate(source, seconds)
    j, same = target_beat(target, position)
    start, end = target.beat_starts_seconds[j], target.beat_starts_seconds[j + 1]
    fraction = position.fraction if same else 0.0
    return float(start + fraction * (end - start))


@dataclass(frozen=True)
class DifferenceRegion:
    """Where two edits differ, in each edit's own seconds: ``(start, end)`` for A and for B."""

    a_seconds: tuple[float, float]
    b_seconds: tuple[float, float]


def difference_region(a: BeatMap, b: BeatMap, *, context_beats: int = 1) -> DifferenceRegion | None:
    """Where the two edits first part ways, with ``context_beats`` either side, in each edit's seconds.

    The common prefix of the two track-beat lists is the same music; the first
    output beat after it is where a listener can first hear them differ.  The
    region spans ``context_beats`` before and after that beat in each edit
    (clamped to the edit), so the way into the change and its first moments
    are heard.  It deliberately ignores everything after: two edits that part
    early and never meet again would otherwise loop almost whole, which tells
    the listener nothing.  None when both edits play the same beats.
    """
    x, y = a.track_beats, b.track_beats
    limit = min(x.size, y.size)
    prefix = 0
    while prefix < limit and x[prefix] == y[prefix]:
        prefix += 1
    if prefix == x.size == y.size:
        return None

    def span(m: BeatMap) -> tuple[float, float]:
        first = min(max(prefix - context_beats, 0), m.n_output_beats - 1)
        last = max(min(prefix + context_beats, m.n_output_beats), first + 1)
        return float(m.beat_starts_seconds[first]), float(m.beat_starts_seconds[last])

    return DifferenceRegion(a_seconds=span(a), b_seconds=span(b))

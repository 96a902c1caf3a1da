"""Simulated listeners: what a clip is, how a listener is plugged in, and the default listener.

A *listener* is any callable ``score(clip) -> float`` (higher is better) over a :class:`Clip`:
the rendered edit as annotators hear it, with the source track, its beat grid as the pipeline
found it and, where the corpus has one, the ground-truth grid.  Simulated annotators
(``rlhf.evidence.simulate``) and the evaluation (``rlhf.evidence.evaluation``) take one through
``--listener PATH.py:NAME`` or ``--listener module:NAME`` (:func:`load_listener`); the default
is :data:`DEFAULT_LISTENER`, ``rlhf.evidence.listeners:default_listener``.

This module is pure (numpy only): it never sees the reward model's features.

The default listener (:class:`DefaultListener`)
------------------------------------------------
It listens to the waveform and counts musical time on the TRUE grid (the corpus's ground
truth; the pipeline's grid only where there is none).  A seam is an output beat whose source
beat does not follow the previous one; at a seam from track beat ``a`` to track beat ``b``
the music "should" have continued with ``a + 1``, so each term compares what is heard with
that natural continuation:

* ``seam_cost`` (0.3) per seam: every splice is a small risk;
* **harmonic clash** (``clash_cost`` 4.0 per unit): the cosine distance between the chroma of
  the ``window_ms`` (250 ms) of output audio before the seam and the 250 ms after it, minus the
  same distance across the natural boundary ``a -> a + 1`` in the track, beyond a tolerance of
  0.05.  Measured on the rendered waveform with its own FFT chroma: the reward model is never
  given it (it sees per-beat features, not the audio across a crossfade);
* **metre break** (``metre_cost`` 1.0): ``b`` does not sit at the beat-in-bar position that
  ``a + 1`` has on the true grid;
* **phrase break** (``phrase_cost`` 0.6): ``b`` does not sit at the bar-in-phrase position
  (bar index modulo 4, counted from the track's first true downbeat) that ``a + 1`` has: the
  seam breaks a four-bar phrase.  Neither the model nor the heuristic is told phrase positions;
* **loudness jump** (``jump_cost_per_6db`` 0.5): RMS level change across the seam in excess of
  the natural one, per 6 dB;
* ``repeat_cost`` (0.05) per output beat that replays a source beat already heard;
* ``length_cost_per_second`` (0.5) per second that the clip misses ``target_seconds`` by more
  than ``length_tolerance_seconds`` (0.25 s): edits hit the target in beats, not in seconds.

Lengths are exact by construction, so shortening needs cuts and lengthening needs loops: the
best edit places few seams where harmony, metre and phrase continue, which depends on the
track.  "Keep everything" is never available and the empty edit does not exist.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "Clip",
    "Listener",
    "ListenerError",
    "DefaultListener",
    "default_listener",
    "TextureListener",
    "texture_listener",
    "DEFAULT_LISTENER",
    "load_listener",
    "listener_score",
    "clip_build",
    "truth_grid",
]

DEFAULT_LISTENER = "rlhf.evidence.listeners:default_listener"


class ListenerError(ValueError):
    """A listener cannot be loaded or gave an unusable score; the message names it and says why."""


@dataclass(frozen=True, eq=False)
class Clip:
    """One rendered edit as a simulated listener hears it (all times in seconds).

    Attributes
    ----------
    audio : np.ndarray [shape=(n,)], float32
        The rendered edit, mono, as annotators hear it.
    sample_rate : int
        Hz, of ``audio`` and ``track_audio``.
    seam_seconds : tuple[float, ...]
        Output time of each seam.
    output_beat_seconds : np.ndarray [shape=(n_output_beats + 1,)], float64
        Start of each output beat in ``audio``, plus its end.
    source_beats : np.ndarray [shape=(n_output_beats,)], int64
        Track beat index of each output beat (on the pipeline's grid).
    track_audio : np.ndarray [shape=(m,)], float32
        The whole source track, mono, at ``sample_rate``.
    track_beat_seconds : np.ndarray [shape=(n_track_beats + 1,)], float64
        Beat boundaries of the track as the pipeline found them (starts, plus the last end).
    track_downbeat_seconds : np.ndarray [shape=(n_downbeats,)], float64
        Downbeats as the pipeline found them.
    true_beat_seconds, true_downbeat_seconds : np.ndarray or None
        Ground truth where the corpus has it (the demo corpus does), else None.
    source_start_seconds, source_end_seconds : float
        The source passage in the track.
    target_seconds : float
        The duration the edit was asked for.
    """

    audio: np.ndarray
    sample_rate: int
    seam_seconds: tuple[float, ...]
    output_beat_seconds: np.ndarray
    source_beats: np.ndarray
    track_audio: np.ndarray
    track_beat_seconds: np.ndarray
    track_downbeat_seconds: np.ndarray
    true_beat_seconds: np.ndarray | None
    true_downbeat_seconds: np.ndarray | None
    source_start_seconds: float
    source_end_seconds: float
    target_seconds: float


Listener = Callable[[Clip], float]


def clip_build(*, audio: np.ndarray, sample_rate: int, output_beat_seconds: np.ndarray, source_beats: np.ndarray,
               seam_seconds: tuple[float, ...] | list[float], track_audio: np.ndarray, beat_samples: np.ndarray,
               bar_positions: np.ndarray, truth: tuple[np.ndarray, np.ndarray] | None, excerpt_start: int,
               n_source_beats: int, target_beats: int) -> Clip:
    """A :class:`Clip` from a rendering and the track's grid.

    Parameters
    ----------
    beat_samples : np.ndarray [shape=(n_track_beats + 1,)], int
        The pipeline's beat boundaries, samples at ``sample_rate``.
    bar_positions : np.ndarray [shape=(n_track_beats,)], int
        The pipeline's bar positions (0 = downbeat).
    truth : (beat seconds, bar positions) or None
        Ground truth as ``editing.demo.read_beats`` returns it.
    excerpt_start, n_source_beats, target_beats : int
        The passage (track beats) and the target (output beats); ``target_seconds`` is the
        target in beats times the passage's mean beat length.
    """
    track_beat_seconds = np.asarray(beat_samples, dtype=np.float64) / sample_rate
    bar_positions = np.asarray(bar_positions)
    start = track_beat_seconds[excerpt_start]
    end = track_beat_seconds[min(excerpt_start + n_source_beats, track_beat_seconds.size - 1)]
    true_beats = true_downbeats = None
    if truth is not None:
        times, positions = truth
        true_beats = np.asarray(times, dtype=np.float64)
        true_downbeats = true_beats[np.asarray(positions) == 0]
    return Clip(
        audio=np.asarray(audio, dtype=np.float32), sample_rate=int(sample_rate),
        seam_seconds=tuple(float(t) for t in seam_seconds),
        output_beat_seconds=np.asarray(output_beat_seconds, dtype=np.float64),
        source_beats=np.asarray(source_beats, dtype=np.int64), track_audio=np.asarray(track_audio, dtype=np.float32),
        track_beat_seconds=track_beat_seconds,
        track_downbeat_seconds=track_beat_seconds[:-1][bar_positions[: track_beat_seconds.size - 1] == 0],
        true_beat_seconds=true_beats, true_downbeat_seconds=true_downbeats,
        source_start_seconds=float(start), source_end_seconds=float(end),
        target_seconds=float(target_beats * (end - start) / n_source_beats),
    )


# --------------------------------------------------------------------------- loading

def load_listener(spec: str) -> Listener:
    """The listener named by ``spec``: ``PATH.py:NAME`` or ``module:NAME`` (a callable ``score(clip)``).

    Raises
    ------
    ListenerError
        When the spec is malformed, the file or module cannot be imported, or NAME is missing
        or not callable.
    """
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ListenerError(f"listener {spec!r}: expected PATH.py:NAME or module:NAME")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ListenerError(f"listener {spec!r}: file {path} does not exist")
        module_name = f"_listener_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ListenerError(f"listener {spec!r}: {path} cannot be imported as Python")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - any failure of the user's file is reported with its reason
            sys.modules.pop(module_name, None)
            raise ListenerError(f"listener {spec!r}: importing {path} failed: {type(err).__name__}: {err}") from err
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise ListenerError(f"listener {spec!r}: module {where!r} cannot be imported: {err}") from err
    listener = getattr(module, name, None)
    if listener is None:
        raise ListenerError(f"listener {spec!r}: {where} has no {name!r}")
    if not callable(listener):
        raise ListenerError(f"listener {spec!r}: {name!r} is a {type(listener).__name__}, not a callable score(clip)")
    return listener


def listener_score(listener: Listener, clip: Clip) -> float:
    """``listener(clip)`` as a float; refuses a score that is not a finite number."""
    value = listener(clip)
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise ListenerError(f"listener {_name(listener)} returned {value!r}, not a number") from None
    if not math.isfinite(score):
        raise ListenerError(f"listener {_name(listener)} returned {score}, not a finite score")
    return score


def _name(listener: Listener) -> str:
    return getattr(listener, "__qualname__", None) or type(listener).__name__


# --------------------------------------------------------------------------- the default listener

# Pitch classes from 55 Hz to 2 kHz: below, kick drums smear the chroma; above, hi-hats.
_CHROMA_LOW_HZ = 55.0
_CHROMA_HIGH_HZ = 2000.0
_EPS = 1e-9


def truth_grid(clip: Clip) -> tuple[np.ndarray, np.ndarray]:
    """The grid the default listener counts on: (beat seconds, downbeat seconds); the truth where known."""
    if clip.true_beat_seconds is not None and clip.true_downbeat_seconds is not None:
        return clip.true_beat_seconds, clip.true_downbeat_seconds
    return clip.track_beat_seconds[:-1], clip.track_downbeat_seconds


def _grid_positions(beats: np.ndarray, downbeats: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(beat in bar, bar in phrase) of the grid beat nearest each time; -1 before the first downbeat."""
    j = np.argmin(np.abs(beats[None, :] - np.asarray(times)[:, None]), axis=1)
    bar = np.searchsorted(downbeats, beats[j] + 1e-3, side="right") - 1
    if not downbeats.size:
        return np.full(j.shape, -1), np.full(j.shape, -1)
    bar_start = np.argmin(np.abs(beats[None, :] - downbeats[np.maximum(bar, 0)][:, None]), axis=1)
    in_bar = np.where(bar >= 0, j - bar_start, -1)
    in_phrase = np.where(bar >= 0, bar % 4, -1)
    return in_bar, in_phrase


def _chroma(x: np.ndarray, sr: int) -> np.ndarray:
    """12-bin chroma of a short window (Hann, one FFT), unit length; zeros for silence."""
    if x.size < 64:
        return np.zeros(12)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / sr)
    keep = (freqs >= _CHROMA_LOW_HZ) & (freqs <= _CHROMA_HIGH_HZ)
    pitch_class = np.round(12 * np.log2(freqs[keep] / 440.0)).astype(np.int64) % 12
    chroma = np.bincount(pitch_class, weights=spectrum[keep], minlength=12)
    norm = np.linalg.norm(chroma)
    return chroma / norm if norm > _EPS else chroma


def _rms_db(x: np.ndarray) -> float:
    # -100 dBFS floor: digital silence would otherwise be -inf.
    return float(20 * np.log10(max(np.sqrt(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0, 1e-5)))


def _length_cost(clip: Clip, cost_per_second: float, tolerance_seconds: float) -> float:
    """The listeners' length term: seconds the clip misses its target by, beyond a tolerance."""
    miss = abs(clip.audio.size / clip.sample_rate - clip.target_seconds) - tolerance_seconds
    return cost_per_second * max(0.0, miss)


@dataclass(frozen=True)
class DefaultListener:
    """The default simulated listener (see the module docstring); costs are in score units."""

    seam_cost: float = 0.3
    clash_cost: float = 4.0
    clash_tolerance: float = 0.05
    metre_cost: float = 1.0
    phrase_cost: float = 0.6
    jump_cost_per_6db: float = 0.5
    repeat_cost: float = 0.05
    length_cost_per_second: float = 0.5
    length_tolerance_seconds: float = 0.25
    window_ms: float = 250.0
    guard_ms: float = 80.0

    def _across(self, y: np.ndarray, sr: int, t: float) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(chroma before, chroma after, dB before, dB after) of ``y`` around time ``t`` (s)."""
        window = max(64, int(self.window_ms / 1000 * sr))
        guard = int(self.guard_ms / 1000 * sr)
        centre = int(round(t * sr))
        before = y[max(0, centre - guard - window): max(0, centre - guard)]
        after = y[centre + guard: centre + guard + window]
        return _chroma(before, sr), _chroma(after, sr), _rms_db(before), _rms_db(after)

    def terms(self, clip: Clip) -> dict[str, float]:
        """Each cost term of ``clip`` (positive numbers; the score is minus their sum)."""
        sources = clip.source_beats
        n_track = clip.track_beat_seconds.size - 1
        seams = np.flatnonzero(np.diff(sources) != 1) + 1  # output beats that start after a seam
        costs = {"seams": 0.0, "clash": 0.0, "metre": 0.0, "phrase": 0.0, "loudness": 0.0}
        if seams.size:
            a = sources[seams - 1]
            b = sources[seams]
            natural = np.minimum(a + 1, n_track - 1)
            beats, downbeats = truth_grid(clip)
            # Grid times of the beats: the track beat's start (a beat of the pipeline maps to the
            # nearest true beat; the pipeline is within a few tens of ms on the demo corpus).
            in_bar_b, phrase_b = _grid_positions(beats, downbeats, clip.track_beat_seconds[b])
            in_bar_n, phrase_n = _grid_positions(beats, downbeats, clip.track_beat_seconds[natural])
            costs["seams"] = self.seam_cost * seams.size
            costs["metre"] = self.metre_cost * float(np.sum(in_bar_b != in_bar_n))
            costs["phrase"] = self.phrase_cost * float(np.sum(phrase_b != phrase_n))
            sr = clip.sample_rate
            for k, i in enumerate(seams):
                t_out = clip.output_beat_seconds[i]
                c0, c1, l0, l1 = self._across(clip.audio, sr, t_out)
                n0, n1, m0, m1 = self._across(clip.track_audio, sr, clip.track_beat_seconds[natural[k]])
                heard = 1.0 - float(c0 @ c1)
                written = 1.0 - float(n0 @ n1)
                costs["clash"] += self.clash_cost * max(0.0, heard - written - self.clash_tolerance)
                costs["loudness"] += self.jump_cost_per_6db * max(0.0, abs(l1 - l0) - abs(m1 - m0)) / 6.0
        _, first_seen = np.unique(sources, return_index=True)
        costs["repeats"] = self.repeat_cost * float(sources.size - first_seen.size)
        costs["length"] = _length_cost(clip, self.length_cost_per_second, self.length_tolerance_seconds)
        return costs

    def __call__(self, clip: Clip) -> float:
        return -float(sum(self.terms(clip).values()))


default_listener = DefaultListener()


def _centroid_octaves(x: np.ndarray, sr: int) -> float:
    """Spectral centroid of a short window (Hann, one FFT), in octaves above 55 Hz; 0 for silence."""
    if x.size < 64:
        return 0.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1.0 / sr)
    total = float(spectrum.sum())
    if total <= _EPS:
        return 0.0
    return float(np.log2(max(float(spectrum @ freqs) / total, 55.0) / 55.0))


def _onset_density(x: np.ndarray, sr: int) -> float:
    """Onsets per second of a window: peaks of its half-wave rectified spectral flux (23 ms frames)."""
    frame = max(64, int(0.023 * sr))
    n = x.size // frame
    if n < 3:
        return 0.0
    frames = np.abs(np.fft.rfft(x[: n * frame].reshape(n, frame) * np.hanning(frame), axis=1))
    flux = np.maximum(np.diff(np.log1p(frames), axis=0), 0.0).sum(1)
    threshold = flux.mean() + flux.std()
    peaks = (flux[1:-1] > threshold) & (flux[1:-1] >= flux[:-2]) & (flux[1:-1] >= flux[2:])
    return float(peaks.sum()) / (x.size / sr)


@dataclass(frozen=True)
class TextureListener:
    """A second simulated listener that reads none of the heuristic's seam measures.

    The heuristic prices a seam by timbre (MFCC), harmony (chroma) and loudness continuity
    between neighbour beats, and by the bar position it lands on.  This listener hears the
    rendered waveform with its own FFT and counts on the true grid:

    * ``brightness_cost`` per octave that the spectral centroid jumps across the seam (the
      ``window_ms`` before against after) beyond the jump across the natural boundary ``a -> a + 1``;
    * ``busyness_cost`` per onset per second that the onset density changes across the seam (one
      ``busy_window_ms`` either side) beyond the natural boundary's change: a groove that suddenly
      thins or thickens;
    * ``entry_cost`` per seam whose landing beat is not the first beat of a four-bar phrase on the
      true grid (music is re-entered at phrase starts); and ``seam_cost`` per seam and the length
      term as the default listener's.
    """

    seam_cost: float = 0.2
    brightness_cost: float = 1.5
    busyness_cost: float = 0.25
    entry_cost: float = 0.8
    length_cost_per_second: float = 0.5
    length_tolerance_seconds: float = 0.25
    window_ms: float = 150.0
    busy_window_ms: float = 1000.0
    guard_ms: float = 40.0

    def _around(self, y: np.ndarray, sr: int, t: float, window_ms: float) -> tuple[np.ndarray, np.ndarray]:
        window = max(64, int(window_ms / 1000 * sr))
        guard = int(self.guard_ms / 1000 * sr)
        centre = int(round(t * sr))
        return y[max(0, centre - guard - window): max(0, centre - guard)], y[centre + guard: centre + guard + window]

    def terms(self, clip: Clip) -> dict[str, float]:
        """Each cost term of ``clip`` (positive numbers; the score is minus their sum)."""
        sources = clip.source_beats
        n_track = clip.track_beat_seconds.size - 1
        seams = np.flatnonzero(np.diff(sources) != 1) + 1
        costs = {"seams": 0.0, "brightness": 0.0, "busyness": 0.0, "entry": 0.0}
        if seams.size:
            sr = clip.sample_rate
            a, b = sources[seams - 1], sources[seams]
            natural = np.minimum(a + 1, n_track - 1)
            beats, downbeats = truth_grid(clip)
            in_bar_b, phrase_b = _grid_positions(beats, downbeats, clip.track_beat_seconds[b])
            costs["seams"] = self.seam_cost * seams.size
            costs["entry"] = self.entry_cost * float(np.sum((in_bar_b != 0) | (phrase_b != 0)))
            for k, i in enumerate(seams):
                t_out, t_nat = clip.output_beat_seconds[i], clip.track_beat_seconds[natural[k]]
                h0, h1 = self._around(clip.audio, sr, t_out, self.window_ms)
                w0, w1 = self._around(clip.track_audio, sr, t_nat, self.window_ms)
                heard = abs(_centroid_octaves(h1, sr) - _centroid_octaves(h0, sr))
                written = abs(_centroid_octaves(w1, sr) - _centroid_octaves(w0, sr))
                costs["brightness"] += self.brightness_cost * max(0.0, heard - written)
                h0, h1 = self._around(clip.audio, sr, t_out, self.busy_window_ms)
                w0, w1 = self._around(clip.track_audio, sr, t_nat, self.busy_window_ms)
                heard = abs(_onset_density(h1, sr) - _onset_density(h0, sr))
                written = abs(_onset_density(w1, sr) - _onset_density(w0, sr))
                costs["busyness"] += self.busyness_cost * max(0.0, heard - written)
        costs["length"] = _length_cost(clip, self.length_cost_per_second, self.length_tolerance_seconds)
        return costs

    def __call__(self, clip: Clip) -> float:
        return -float(sum(self.terms(clip).values()))


texture_listener = TextureListener()

"""Edit -> waveform: beat-aligned equal-power crossfades, loudness normalisation, atomic writes.

Contiguous output beats (transition CONTINUE) are copied from the source as
one segment, sample for sample, with no seam.  At every seam (CUT or
CROSSFADE transition) the incoming segment starts at its beat boundary and
fades in over the crossfade while the outgoing segment keeps playing past its
own end into the source audio that followed it and fades out.  The curves are
equal-power, ``sin(pi/2 x)`` in and ``cos(pi/2 x)`` out, so the loudness of
two unrelated signals stays level through the seam.  Because the overlap lies
inside the incoming segment, the output lasts exactly as long as its beats
and every output beat starts where the beat grid says.  Crossfades are short
(30 ms) for CUT seams and long (150 ms) for CROSSFADE seams, never longer
than the incoming segment.  The first and last 5 ms get a fade in / out so
the excerpt does not start or stop with a click.

Mono and stereo render alike: seams are crossfaded per channel, loudness is measured over both
channels, and one limiter gain moves both.  :func:`render_native` renders at a source's own rate
and channels from the analysis's beat grid, and lets the output open and close as the source
does: an edit that opens with the track's first beat is preceded by its lead-in (the pickup before
the first detected beat), one that closes with its last beat is followed by its ring-out (the final
hit's decay, a fade-out), both as in the source and without edge fades.

With ``normalize=True`` the output is gained to ``TARGET_LUFS`` integrated
loudness (ITU-R BS.1770-4: pyloudnorm's K-weighting filters, with the
400 ms / 75 % overlap block gating done in vectorised numpy because
pyloudnorm's per-block Python loop alone would cost more than the whole
render) and then passed through a look-ahead peak limiter with a ceiling of
-1 dBFS, so it never clips.
"""
from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import sosfilt

from editing.audio import native_beat_grid, sound_edges
from editing.edit import Edit, Transition, validate_edit

__all__ = [
    "DEFAULT_CROSSFADE_MS",
    "LONG_CROSSFADE_MS",
    "TARGET_LUFS",
    "PEAK_CEILING_DBFS",
    "EDGE_FADE_MS",
    "RenderError",
    "RenderResult",
    "render_edit",
    "render_native",
    "integrated_loudness",
    "loudness_normalize",
    "write_audio",
]

DEFAULT_CROSSFADE_MS = 30.0
LONG_CROSSFADE_MS = 150.0
TARGET_LUFS = -20.0
PEAK_CEILING_DBFS = -1.0
EDGE_FADE_MS = 5.0
# Look-ahead of the limiter: long enough that the gain moves smoothly (no
# distortion from sample-wise gain changes), short enough to be inaudible.
_LIMITER_LOOKAHEAD_MS = 5.0
# BS.1770-4 gating: 400 ms blocks every 100 ms, absolute gate -70 LUFS, relative gate -10 LU.
_LOUDNESS_BLOCK_SECONDS = 0.4
_LOUDNESS_STEP = 0.25
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0


class RenderError(ValueError):
    """The audio, beat grid or settings cannot be rendered; the message says which and why."""


@dataclass(frozen=True)
class RenderResult:
    """A rendered edit and the timeline a player needs to map between edits and mark seams.

    Attributes
    ----------
    audio : np.ndarray [shape=(n,) or (n, channels)], float32
        Waveform at ``sample_rate``, with the source's shape (mono, or 1 or 2 channels).
    sample_rate : int
        Hz.
    beat_starts_seconds : np.ndarray [shape=(n_output_beats + 1,)], float64
        Start of each output beat in the output, seconds; the last value is the end of the last
        beat.  A lead-in before the first beat and a ring-out after the last lie outside them.
    track_beats : np.ndarray [shape=(n_output_beats,)], int64
        Track beat index played at each output beat.
    seam_seconds : tuple[float, ...]
        Output times (s) of every seam, i.e. the start of each incoming segment.
    """

    audio: np.ndarray
    sample_rate: int
    beat_starts_seconds: np.ndarray
    track_beats: np.ndarray
    seam_seconds: tuple[float, ...]

    @property
    def duration_seconds(self) -> float:
        return self.audio.shape[0] / self.sample_rate

    def timeline(self) -> dict[str, Any]:
        """JSON-ready timeline (what ``annotations.Edit.render`` stores)."""
        return {
            "duration_seconds": float(self.duration_seconds),
            "beat_starts_seconds": [float(t) for t in self.beat_starts_seconds],
            "track_beats": [int(b) for b in self.track_beats],
            "seam_seconds": [float(t) for t in self.seam_seconds],
        }


def _equal_power_fades(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fade in, fade out) at fractional positions x in (0, 1)."""
    angle = 0.5 * np.pi * x
    return np.sin(angle), np.cos(angle)


def _samples_or_silence(y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """y[at], with silence past the end of the track; (*at.shape) or (*at.shape, channels)."""
    if at.size == 0 or at.max() < y.shape[0]:
        return y[at]
    inside = at < y.shape[0]
    picked = y[np.minimum(at, y.shape[0] - 1)]
    return np.where(inside.reshape(inside.shape + (1,) * (y.ndim - 1)), picked, 0.0)


def _per_sample(gain: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """``gain`` shaped to multiply ``audio`` sample by sample, every channel alike."""
    return gain.reshape(gain.shape + (1,) * (audio.ndim - gain.ndim))


def render_edit(
    y: np.ndarray,
    sr: int,
    beat_samples: np.ndarray,
    edit: Edit,
    *,
    crossfade_ms: float = DEFAULT_CROSSFADE_MS,
    long_crossfade_ms: float = LONG_CROSSFADE_MS,
    normalize: bool = True,
    lead_in_samples: int | None = None,
    ring_out_samples: int | None = None,
) -> RenderResult:
    """Render an edit of a track.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (n_samples, channels)], float
        The whole track, mono or stereo (1 or 2 channels), at ``sr``; seams are crossfaded per channel.
    sr : int
        Sample rate of ``y`` and ``beat_samples``, Hz.
    beat_samples : np.ndarray [shape=(n_track_beats + 1,)], int
        Beat boundaries in samples; track beat i is ``[beat_samples[i], beat_samples[i+1])``.
    edit : Edit
    crossfade_ms : float
        Crossfade at CUT seams, milliseconds.
    long_crossfade_ms : float
        Crossfade at CROSSFADE seams, milliseconds.
    normalize : bool
        Gain to ``TARGET_LUFS`` and peak-limit to ``PEAK_CEILING_DBFS``; False keeps source levels.
    lead_in_samples : int, optional
        Sound before the first beat (``<= beat_samples[0]``): an edit that opens with track beat 0
        is preceded by the ``lead_in_samples`` before it, as in the source and with no fade in.
        None: every edit opens on its first beat (with a 5 ms fade in).
    ring_out_samples : int, optional
        Sound after the last beat: an edit that closes with the track's last beat is followed by
        the ``ring_out_samples`` after it, as in the source and with no fade out.  None: every edit
        stops at the end of its last beat (with a 5 ms fade out).

    Returns
    -------
    RenderResult
        Its beat starts count from the start of the audio, so they begin after a lead-in.

    Raises
    ------
    RenderError
        If the audio, beat grid, lead-in or ring-out is malformed or a crossfade length is negative.
    editing.edit.EditError
        If the edit does not fit the track.
    """
    y = np.asarray(y)
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] not in (1, 2)) or not np.issubdtype(y.dtype, np.floating):
        raise RenderError(
            f"audio has shape {y.shape} and dtype {y.dtype}: expected mono float samples (n,) or (n, 1 or 2 channels)"
        )
    if sr <= 0:
        raise RenderError(f"sample rate {sr}: must be positive")
    if crossfade_ms < 0 or long_crossfade_ms < 0:
        raise RenderError(f"crossfades of {crossfade_ms} / {long_crossfade_ms} ms: must be >= 0")
    beat_samples = np.asarray(beat_samples, dtype=np.int64)
    if beat_samples.ndim != 1 or beat_samples.size < 2:
        raise RenderError(f"beat grid has shape {beat_samples.shape}: expected (n_track_beats + 1,)")
    if np.any(np.diff(beat_samples) <= 0) or beat_samples[0] < 0 or beat_samples[-1] > y.shape[0]:
        raise RenderError(
            f"beat grid must increase strictly within the audio's {y.shape[0]} samples "
            f"(got {beat_samples[0]}..{beat_samples[-1]})"
        )
    if lead_in_samples is not None and not 0 <= lead_in_samples <= beat_samples[0]:
        raise RenderError(f"lead-in of {lead_in_samples} samples: the first beat starts at sample {beat_samples[0]}")
    if ring_out_samples is not None and not 0 <= ring_out_samples <= y.shape[0] - beat_samples[-1]:
        raise RenderError(
            f"ring-out of {ring_out_samples} samples: the audio ends {y.shape[0] - beat_samples[-1]} samples after the last beat"
        )
    validate_edit(edit, n_track_beats=beat_samples.size - 1)

    track_beats = edit.track_beats()
    transitions = edit.transitions()
    opens_track = lead_in_samples is not None and track_beats[0] == 0
    closes_track = ring_out_samples is not None and track_beats[-1] == beat_samples.size - 2
    lead = int(lead_in_samples) if opens_track else 0
    ring = int(ring_out_samples) if closes_track else 0
    beat_lengths = beat_samples[track_beats + 1] - beat_samples[track_beats]
    out_beat_starts = lead + np.concatenate([[0], np.cumsum(beat_lengths)])
    n_out = int(out_beat_starts[-1]) + ring

    # Segments: maximal runs of contiguous source beats; each starts at START or at a seam.
    first = np.flatnonzero(transitions != Transition.CONTINUE)
    last = np.concatenate([first[1:] - 1, [track_beats.size - 1]])
    seg_src_start = beat_samples[track_beats[first]]
    seg_src_end = beat_samples[track_beats[last] + 1]
    seg_out_start = out_beat_starts[first]
    seg_len = seg_src_end - seg_src_start

    # The lead-in and ring-out play on from the first and last segments, as in the source.
    play_start, play_end = seg_src_start.copy(), seg_src_end.copy()
    play_start[0] -= lead
    play_end[-1] += ring
    audio = np.concatenate([y[start:end] for start, end in zip(play_start, play_end)]).astype(np.float32, copy=False)

    long_samples = int(round(long_crossfade_ms * sr / 1000.0))
    short_samples = int(round(crossfade_ms * sr / 1000.0))
    seam_rows = np.arange(1, first.size)  # segment index of each seam's incoming side
    if seam_rows.size:
        is_long = transitions[first[seam_rows]] == Transition.CROSSFADE
        fade_len = np.minimum(np.where(is_long, long_samples, short_samples), seg_len[seam_rows])
        # Every seam's fade samples in one flat run: seam index and offset k of each.
        seam = np.repeat(np.arange(seam_rows.size), fade_len)
        k = np.arange(seam.size) - np.repeat(np.cumsum(fade_len) - fade_len, fade_len)
        if seam.size:
            fade_in, fade_out = _equal_power_fades((k + 0.5) / fade_len[seam])
            incoming = _samples_or_silence(y, seg_src_start[seam_rows][seam] + k)
            # The outgoing side reads past its own end, into what followed it in the source.
            outgoing = _samples_or_silence(y, seg_src_end[seam_rows - 1][seam] + k)
            mixed = incoming * _per_sample(fade_in, incoming) + outgoing * _per_sample(fade_out, outgoing)
            audio[seg_out_start[seam_rows][seam] + k] = mixed

    edge = min(int(round(EDGE_FADE_MS * sr / 1000.0)), n_out // 2)
    if edge > 0:
        fade_in, fade_out = _equal_power_fades((np.arange(edge) + 0.5) / edge)
        # Squared: a plain amplitude ramp from 0 to 1 (sin^2 + cos^2 = 1 is for crossfades, not edges).
        # None where the output starts or stops where the source's sound does.
        if not opens_track:
            audio[:edge] *= _per_sample((fade_in**2).astype(np.float32), audio)
        if not closes_track:
            audio[n_out - edge :] *= _per_sample((fade_out**2).astype(np.float32), audio)

    if normalize:
        audio = loudness_normalize(audio, sr)

    seam_starts = out_beat_starts[:-1][np.isin(transitions, [Transition.CUT, Transition.CROSSFADE])]
    return RenderResult(
        audio=audio,
        sample_rate=int(sr),
        beat_starts_seconds=out_beat_starts.astype(np.float64) / sr,
        track_beats=track_beats,
        seam_seconds=tuple(float(s) / sr for s in seam_starts),
    )


def render_native(
    audio: np.ndarray,
    sample_rate: int,
    beat_samples: np.ndarray,
    analysis_sr: int,
    edit: Edit,
    *,
    crossfade_ms: float = DEFAULT_CROSSFADE_MS,
    long_crossfade_ms: float = LONG_CROSSFADE_MS,
    normalize: bool = True,
) -> RenderResult:
    """Render an edit at the source's own rate and channels, opening and closing as the source does.

    The beat grid of the analysis (at ``analysis_sr``) is mapped to ``sample_rate``; an edit that
    opens with the track's first beat is preceded by the source's lead-in, and one that closes with
    its last beat is followed by its ring-out (:func:`editing.audio.sound_edges`).

    Parameters
    ----------
    audio : np.ndarray [shape=(n_samples, channels)], float
        The whole source, 1 or 2 channels, at ``sample_rate`` (``editing.audio.load_native``).
    sample_rate : int
        Hz.
    beat_samples : np.ndarray [shape=(n_track_beats + 1,)], int
        The analysis's beat boundaries, samples at ``analysis_sr``.
    analysis_sr : int
        Hz.
    edit : Edit
    crossfade_ms, long_crossfade_ms, normalize
        As for :func:`render_edit`.

    Returns
    -------
    RenderResult
        At ``sample_rate``, with as many channels as ``audio``.
    """
    try:
        grid = native_beat_grid(beat_samples, analysis_sr, sample_rate, audio.shape[0])
    except ValueError as err:
        raise RenderError(str(err)) from err
    edges = sound_edges(audio[: grid[0]], audio[grid[-1] :], sample_rate)
    return render_edit(audio, sample_rate, grid, edit, crossfade_ms=crossfade_ms, long_crossfade_ms=long_crossfade_ms,
                       normalize=normalize, lead_in_samples=edges.lead_in_samples,
                       ring_out_samples=edges.ring_out_samples)


def loudness_normalize(
    audio: np.ndarray, sr: int, *, target_lufs: float = TARGET_LUFS, ceiling_dbfs: float = PEAK_CEILING_DBFS
) -> np.ndarray:
    """Gain to an integrated loudness, then peak-limit so no sample exceeds the ceiling.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,) or (n, channels)], float32
    sr : int
        Hz.
    target_lufs : float
        ITU-R BS.1770 integrated loudness to reach, LUFS.
    ceiling_dbfs : float
        Largest allowed absolute sample value, dBFS.

    Returns
    -------
    np.ndarray, float32
        Shaped as ``audio``; every channel gets the same gain, so the stereo image stays.

    Notes
    -----
    Audio shorter than one 400 ms BS.1770 block is measured looped to one
    block (a short clip repeating is as loud as the clip).  Audio below the
    standard's -70 LUFS absolute gate has no measurable loudness and is only
    limited, not gained.
    """
    block = int(np.ceil(_LOUDNESS_BLOCK_SECONDS * sr)) + 1
    measured = audio if audio.shape[0] >= block else np.take(audio, np.arange(block) % audio.shape[0], axis=0)
    loudness = integrated_loudness(measured, sr)
    if np.isfinite(loudness):
        audio = audio * np.float32(10.0 ** ((target_lufs - loudness) / 20.0))
    return _limit_peaks(audio.astype(np.float32, copy=False), sr, 10.0 ** (ceiling_dbfs / 20.0))


@functools.lru_cache(maxsize=8)
def _k_weighting(sr: int) -> np.ndarray:
    """pyloudnorm's two BS.1770 K-weighting stages (high shelf, high pass) as second-order sections, (2, 6).

    pyloudnorm derives the coefficients for any sample rate but only exposes
    them on the meter's filter objects (the version is pinned in requirements.txt).
    """
    stages = pyloudnorm.Meter(sr, filter_class="K-weighting")._filters.values()
    return np.array(
        [np.concatenate([stage.passband_gain * np.asarray(stage.b, float), np.asarray(stage.a, float)]) for stage in stages]
    )


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """ITU-R BS.1770-4 integrated loudness of mono or stereo audio, LUFS (-inf when every block is gated out).

    Same filters, blocks and gates as ``pyloudnorm.Meter(sr).integrated_loudness``
    (and the same value to within float rounding), without its per-block Python loop.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,) or (n, channels)], float
        At least one 400 ms block long; the channels are summed with weight 1 (the standard's
        weight for left, right and centre).
    sr : int
        Hz.
    """
    n = audio.shape[0]
    block_seconds = _LOUDNESS_BLOCK_SECONDS
    if n < block_seconds * sr:
        raise RenderError(f"{n} samples at {sr} Hz: loudness needs at least one {block_seconds * 1000:.0f} ms block")
    # Channel-major and contiguous: sosfilt along a strided axis is several times slower.
    weighted = sosfilt(_k_weighting(sr), np.ascontiguousarray(np.asarray(audio).T, dtype=np.float64))
    n_blocks = int(np.round((n / sr - block_seconds) / (block_seconds * _LOUDNESS_STEP))) + 1
    j = np.arange(n_blocks)
    # Bounds computed exactly as pyloudnorm does (truncating float products), so the blocks match.
    lower = (block_seconds * (j * _LOUDNESS_STEP) * sr).astype(np.int64)
    upper = np.minimum((block_seconds * (j * _LOUDNESS_STEP + 1) * sr).astype(np.int64), n)
    # Overlapping blocks share 100 ms chunks: sum the chunks once, then each block from running chunk totals.
    edges = np.unique(np.concatenate([lower, upper]))
    squared = np.square(weighted[..., : edges[-1]], out=weighted[..., : edges[-1]])
    # Per channel, then summed: BS.1770's channel sum (every weight 1 for mono and stereo).
    chunks = np.add.reduceat(squared, edges[:-1], axis=-1)
    energy = np.concatenate([[0.0], np.cumsum(chunks if chunks.ndim == 1 else chunks.sum(axis=0))])
    mean_square = (energy[np.searchsorted(edges, upper)] - energy[np.searchsorted(edges, lower)]) / (block_seconds * sr)
    with np.errstate(divide="ignore"):
        block_loudness = -0.691 + 10.0 * np.log10(mean_square)
    above_absolute = block_loudness >= _ABSOLUTE_GATE_LUFS
    if not above_absolute.any():
        return float("-inf")
    relative_gate = -0.691 + 10.0 * np.log10(mean_square[above_absolute].mean()) + _RELATIVE_GATE_LU
    gated = (block_loudness > relative_gate) & (block_loudness > _ABSOLUTE_GATE_LUFS)
    if not gated.any():
        return float("-inf")
    return float(-0.691 + 10.0 * np.log10(mean_square[gated].mean()))


def _loudest_channel(audio: np.ndarray) -> np.ndarray:
    """``|audio|`` of the loudest channel at each sample, (n,); column by column (numpy's reduction over a
    short last axis is an order of magnitude slower)."""
    return functools.reduce(np.maximum, np.abs(audio).T)


def _limit_peaks(audio: np.ndarray, sr: int, ceiling: float) -> np.ndarray:
    """Look-ahead limiter: a smooth gain that is, at every sample, at most what that sample needs.

    The needed gain ``min(1, ceiling / |x|)`` is min-filtered over +-W samples
    and then box-averaged over +-W; each averaged value is a mean of minima
    whose windows all contain the centre sample, so it never exceeds the gain
    that sample needs.
    """
    # One gain for every channel (the loudest one's need), so the stereo image does not move.
    magnitude = np.abs(audio) if audio.ndim == 1 else _loudest_channel(audio)
    if magnitude.size == 0 or magnitude.max() <= ceiling:
        return audio
    needed = np.minimum(1.0, ceiling / np.maximum(magnitude, 1e-12))
    width = 2 * max(1, int(round(_LIMITER_LOOKAHEAD_MS * sr / 1000.0))) + 1
    gain = uniform_filter1d(minimum_filter1d(needed, width), width)
    # The clip only absorbs float rounding of the averaged gain (a few ulps).
    return np.clip(audio * _per_sample(gain, audio), -ceiling, ceiling).astype(np.float32)


def write_audio(path: str | os.PathLike[str], audio: np.ndarray, sr: int, *, subtype: str | None = None) -> None:
    """Write audio atomically: to a temporary file in the same folder, then ``os.replace``.

    Parameters
    ----------
    path : path-like
        Destination; the format follows the extension (``.wav``, ``.flac``, ``.ogg``, ``.mp3``).
    audio : np.ndarray [shape=(n,) or (n, channels)], float
    sr : int
        Hz.
    subtype : str, optional
        libsndfile sample format (``PCM_16``, ``PCM_24``, ``FLOAT``, ...); default the format's own.

    Raises
    ------
    RenderError
        If the audio is empty or not finite, or soundfile cannot write the format.
    """
    path = Path(path)
    audio = np.asarray(audio)
    if audio.size == 0 or not np.all(np.isfinite(audio)):
        raise RenderError(f"{path.name}: audio is empty or has non-finite samples")
    if not path.suffix:
        raise RenderError(f"{path.name}: no file extension to choose the audio format from")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        try:
            sf.write(tmp_name, audio, sr, subtype=subtype)
        except (sf.LibsndfileError, TypeError, ValueError) as err:
            raise RenderError(f"{path.name}: cannot write audio: {err}") from err
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise

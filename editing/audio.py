"""Load audio, track its beats and describe every beat with 121 features.

The job of this module is to turn an audio file into a :class:`TrackAnalysis`:
a beat grid (sample boundaries of every beat), the position of each beat in
its bar, a tempo, and one feature vector per beat that the reward model and
the policy read.  All spectral features come from ONE magnitude STFT
(``N_FFT`` = 2048, ``HOP_LENGTH`` = 512 at ``ANALYSIS_SR`` = 22050 Hz, i.e.
93 ms windows every 23 ms); frame features are reduced to beats in one
vectorised segment reduction.  The layout below is versioned by
``FEATURE_VERSION``: change any row and the version must change too.

Per-beat features (``FEATURE_GROUPS`` gives the slices)
--------------------------------------------------------
=====  ==============  ====  =============================================================
index  group           size  meaning (mean over the beat's STFT frames unless stated)
=====  ==============  ====  =============================================================
0      logmel          40    log power of 40 mel bands (0-11025 Hz), dB re 1.0 (floor -100 dB)
40     mfcc            20    MFCC 0..19 (orthonormal DCT-II of the 40 log-mel bands)
60     mfcc_std        13    standard deviation of MFCC 0..12 within the beat
73     chroma          12    chroma C, C#, ..., B from the same STFT (tuning fixed at A440), 0..1
85     contrast        7     spectral contrast of 6 octave bands from 200 Hz + the top band, dB
92     tonnetz         6     tonal centroid (fifths x/y, minor thirds x/y, major thirds x/y) of the chroma
98     onset           2     onset strength (log-mel flux, as for beat tracking): mean, max
100    loudness        3     frame RMS in dBFS: mean, max, change of the mean from the previous beat (0 for beat 0)
103    shape           5     spectral centroid kHz, bandwidth kHz, 85 % rolloff kHz, flatness 0..1,
                             flux (half the L1 change of the sum-normalised mel magnitudes, 0..1)
108    zcr             1     zero-crossing rate per sample (time domain, same frames)
109    band_energy     3     share of the beat's power below 250 Hz, 250-4000 Hz, above 4000 Hz (sums to 1)
112    timing          2     beat duration in seconds; ratio to the track's median beat duration
114    bar_position    4     one-hot position in the bar (0 = downbeat)
118    position        3     beat start / track duration (0..1); position in a 16-beat phrase counted
                             from the first downbeat (0..1); beat RMS / mean beat RMS of the track
=====  ==============  ====  =============================================================

Beat tracking uses librosa's dynamic-programming tracker on the onset envelope
derived from the shared STFT.  Tempo octave errors are resolved without any
prior knowledge of the track: of the candidate tempi an octave apart inside
60-200 BPM, the faster is rejected when every other one of its beats is much
weaker (then those beats are a subdivision, such as off-beat hi-hats).  The
downbeat is the phase modulo 4 whose beats carry the most low-frequency onset
strength and harmonic (chroma) change, since bass notes, kicks and chord
changes fall on beat 1 in most music.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import librosa
import numpy as np
import soundfile as sf

from editing import jit_cache

__all__ = [
    "ANALYSIS_SR", "N_FFT", "HOP_LENGTH", "BEATS_PER_BAR", "MIN_BEATS", "MAX_TRACK_SECONDS", "FEATURE_VERSION",
    "N_AUDIO_FEATURES", "FEATURE_NAMES", "FEATURE_GROUPS", "SUPPORTED_EXTENSIONS",
    "AudioError", "UnsupportedAudio", "CorruptAudio", "EmptyAudio", "SilentAudio", "TooFewBeats",
    "TooLongAudio", "UnsupportedFidelity", "AnalysisVersionError", "TrackAnalysis", "NativeAudio",
    "NATIVE_CHANNELS", "SoundEdges", "native_format", "load_native", "native_beat_grid", "sound_edges",
    "file_sound_edges", "delivery_subtype", "load_audio", "analyze", "analyze_file", "file_sha256", "compile_kernels", "warm_up",
]

ANALYSIS_SR = 22050
N_FFT = 2048
HOP_LENGTH = 512
BEATS_PER_BAR = 4
MIN_BEATS = 16
# The longest recording analysed by default: a 20-minute live set or DJ mix (settings.MAX_TRACK_SECONDS
# bounds uploads, with the same default).
MAX_TRACK_SECONDS = 20 * 60.0
FEATURE_VERSION: str = "beat-features-v1"

SUPPORTED_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3"})
SILENCE_PEAK_DBFS = -60.0
# Channel counts rendered as they are: with three or more, BS.1770 weights each channel by its
# speaker position, which a file does not state reliably, and downmixing would be a downgrade.
NATIVE_CHANNELS = (1, 2)
# 8-bit sources: written back as 8-bit they would be mangled by the loudness gain, written deeper
# they would not be "as the source"; refused with that reason instead.
_EIGHT_BIT_SUBTYPES = frozenset({"PCM_S8", "PCM_U8"})
# Sound before the first beat and after the last is kept from this far before the first sample
# above SILENCE_PEAK_DBFS to this far after the last one: a soft attack or the end of a decay
# below the threshold is not clipped off, and leading or trailing digital silence is.
SOUND_EDGE_MARGIN_MS = 10.0
# The delivered file's sample format, by the source's: PCM depths and float as they are (FLAC holds
# at most 24 bits, and no float); decoded lossy or companded sources (Vorbis, MP3, u-law, ...) as 16-bit.
_DELIVERY_SUBTYPES = {
    "WAV": {"PCM_16": "PCM_16", "PCM_24": "PCM_24", "PCM_32": "PCM_32", "FLOAT": "FLOAT", "DOUBLE": "DOUBLE"},
    "FLAC": {"PCM_16": "PCM_16", "PCM_24": "PCM_24", "PCM_32": "PCM_24", "FLOAT": "PCM_24", "DOUBLE": "PCM_24"},
}
MIN_BPM = 60.0
MAX_BPM = 200.0
N_MELS = 40
# The mel bands below this index (up to ~ 280 Hz) hold the kick and the bass: the downbeat cue.
_LOW_MEL_BANDS = 3
# A faster tempo whose alternate beats carry less than this share of the
# others' onset magnitude is a subdivision of the slower one.  Measured on the
# demo corpus: off-beat hi-hats score about 0.2, kick/snare back-beats about 0.8.
_SUBDIVISION_RATIO = 0.5
_AMIN = 1e-10

_GROUP_SIZES: tuple[tuple[str, int], ...] = (
    ("logmel", 40), ("mfcc", 20), ("mfcc_std", 13), ("chroma", 12), ("contrast", 7), ("tonnetz", 6),
    ("onset", 2), ("loudness", 3), ("shape", 5), ("zcr", 1), ("band_energy", 3), ("timing", 2),
    ("bar_position", 4), ("position", 3),
)


def _group_slices() -> dict[str, slice]:
    slices, start = {}, 0
    for name, size in _GROUP_SIZES:
        slices[name] = slice(start, start + size)
        start += size
    return slices


FEATURE_GROUPS: dict[str, slice] = _group_slices()
N_AUDIO_FEATURES = 121
_PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"logmel_{k:02d}" for k in range(40))
    + tuple(f"mfcc_{k:02d}" for k in range(20))
    + tuple(f"mfcc_std_{k:02d}" for k in range(13))
    + tuple(f"chroma_{p}" for p in _PITCH_CLASSES)
    + tuple(f"contrast_{k}" for k in range(7))
    + ("tonnetz_fifth_x", "tonnetz_fifth_y", "tonnetz_minor_x", "tonnetz_minor_y", "tonnetz_major_x", "tonnetz_major_y")
    + ("onset_mean", "onset_max")
    + ("rms_db_mean", "rms_db_max", "rms_db_delta")
    + ("centroid_khz", "bandwidth_khz", "rolloff_khz", "flatness", "flux")
    + ("zcr",)
    + ("band_low", "band_mid", "band_high")
    + ("beat_seconds", "beat_ratio")
    + tuple(f"bar_position_{k}" for k in range(4))
    + ("track_position", "phrase_position", "energy_ratio")
)
assert len(FEATURE_NAMES) == N_AUDIO_FEATURES == FEATURE_GROUPS["position"].stop


class AudioError(ValueError):
    """An audio file or signal that cannot be analysed; the message names it and says why."""


class UnsupportedAudio(AudioError):
    """The file type is not one this studio reads."""


class CorruptAudio(AudioError):
    """The file claims to be audio but cannot be decoded."""


class EmptyAudio(AudioError):
    """The file holds no samples."""


class SilentAudio(AudioError):
    """The audio is too quiet to analyse."""


class TooFewBeats(AudioError):
    """Fewer than ``MIN_BEATS`` beats were found."""


class TooLongAudio(AudioError):
    """The audio is longer than the allowed maximum."""


class UnsupportedFidelity(AudioError):
    """A source the retarget output cannot keep at its own fidelity (more than two channels, 8-bit samples)."""


class AnalysisVersionError(ValueError):
    """A stored analysis was computed with another feature version."""


@dataclass(frozen=True, eq=False)
class TrackAnalysis:
    """The beat grid and per-beat features of one track.

    Attributes
    ----------
    beat_samples : np.ndarray [shape=(n_beats + 1,)], int64
        Beat boundaries in samples at ``sample_rate``; beat ``i`` is
        ``[beat_samples[i], beat_samples[i + 1])``.
    bar_positions : np.ndarray [shape=(n_beats,)], int8
        0 for a downbeat, then 1 .. ``BEATS_PER_BAR - 1``.
    features : np.ndarray [shape=(n_beats, N_AUDIO_FEATURES)], float32
        See the table in this module's docstring.
    tempo_bpm : float
        Beats per minute.
    duration_seconds : float
        Length of the whole analysed signal, seconds.
    sample_rate : int
        Hz, the rate ``beat_samples`` count at (``ANALYSIS_SR``).
    feature_version : str
    """

    beat_samples: np.ndarray
    bar_positions: np.ndarray
    features: np.ndarray
    tempo_bpm: float
    duration_seconds: float
    sample_rate: int
    feature_version: str

    def __post_init__(self) -> None:
        n = self.bar_positions.shape[0]
        if self.beat_samples.shape != (n + 1,) or self.features.shape != (n, N_AUDIO_FEATURES):
            raise ValueError(
                f"inconsistent analysis shapes: beat_samples {self.beat_samples.shape}, "
                f"bar_positions {self.bar_positions.shape}, features {self.features.shape}; "
                f"expected ({n + 1},), ({n},), ({n}, {N_AUDIO_FEATURES})"
            )
        if np.any(np.diff(self.beat_samples) <= 0):
            raise ValueError("beat_samples must be strictly increasing")

    @property
    def n_beats(self) -> int:
        return int(self.bar_positions.shape[0])

    def save(self, path: str | Path) -> None:
        """Write as ``.npz`` atomically: a temporary file in the same folder, then a rename."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    beat_samples=self.beat_samples.astype(np.int64),
                    bar_positions=self.bar_positions.astype(np.int8),
                    features=self.features.astype(np.float32),
                    tempo_bpm=np.float64(self.tempo_bpm),
                    duration_seconds=np.float64(self.duration_seconds),
                    sample_rate=np.int64(self.sample_rate),
                    feature_version=np.str_(self.feature_version),
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> TrackAnalysis:
        """Read an analysis written by :meth:`save`.

        Raises
        ------
        AnalysisVersionError
            If it was computed with a feature version other than ``FEATURE_VERSION``.
        """
        name = Path(getattr(path, "name", path) or "analysis").name
        with np.load(path, allow_pickle=False) as data:
            version = str(data["feature_version"])
            if version != FEATURE_VERSION:
                raise AnalysisVersionError(
                    f"{name}: analysed with feature version '{version}', but this code computes "
                    f"'{FEATURE_VERSION}'; analyse the track again"
                )
            return cls(
                beat_samples=data["beat_samples"].astype(np.int64),
                bar_positions=data["bar_positions"].astype(np.int8),
                features=data["features"].astype(np.float32),
                tempo_bpm=float(data["tempo_bpm"]),
                duration_seconds=float(data["duration_seconds"]),
                sample_rate=int(data["sample_rate"]),
                feature_version=version,
            )


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_level(y: np.ndarray, name: str) -> None:
    if y.size == 0:
        raise EmptyAudio(f"{name}: no audio samples")
    peak = float(np.max(np.abs(y)))
    if not np.isfinite(peak):
        raise CorruptAudio(f"{name}: the audio contains non-finite samples")
    peak_db = 20.0 * np.log10(max(peak, 1e-12))
    if peak_db < SILENCE_PEAK_DBFS:
        raise SilentAudio(f"{name}: silent (peak {peak_db:.1f} dBFS, below {SILENCE_PEAK_DBFS:.0f} dBFS)")


def load_audio(path: str | Path, *, sr: int = ANALYSIS_SR, max_seconds: float = MAX_TRACK_SECONDS) -> tuple[np.ndarray, int]:
    """Decode a WAV, FLAC, OGG or MP3 file to mono at ``sr``.

    The duration is checked from the header before decoding, so an over-long
    upload costs no decoding time.

    Parameters
    ----------
    path : str or Path
    sr : int > 0
        Target sample rate, Hz.
    max_seconds : float > 0
        Longest accepted duration, seconds.

    Returns
    -------
    y : np.ndarray [shape=(n,)], float32
        Mono (mean of the channels) at ``sr``.
    source_sr : int
        The file's own sample rate, Hz.

    Raises
    ------
    UnsupportedAudio, EmptyAudio, CorruptAudio, TooLongAudio, SilentAudio
    """
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise UnsupportedAudio(
            f"{name}: unsupported file type '{suffix or '(no extension)'}'; "
            f"supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))}"
        )
    if path.stat().st_size == 0:
        raise EmptyAudio(f"{name}: the file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise CorruptAudio(f"{name}: cannot be decoded as audio ({err})") from err
    if info.frames == 0:
        raise EmptyAudio(f"{name}: the file holds no audio samples")
    header_seconds = info.frames / info.samplerate
    if header_seconds > max_seconds:
        raise TooLongAudio(f"{name}: {header_seconds:.1f} s long, at most {max_seconds:.1f} s allowed")
    try:
        data, source_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise CorruptAudio(f"{name}: cannot be decoded as audio ({err})") from err
    if data.shape[0] == 0:
        raise EmptyAudio(f"{name}: the file holds no audio samples")
    seconds = data.shape[0] / source_sr
    if seconds > max_seconds:  # a header can understate the length (e.g. VBR MP3)
        raise TooLongAudio(f"{name}: {seconds:.1f} s long, at most {max_seconds:.1f} s allowed")
    y = data.mean(axis=1)
    _check_level(y, name)
    if source_sr != sr:
        y = librosa.resample(y, orig_sr=source_sr, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32), int(source_sr)


@dataclass(frozen=True, eq=False)
class NativeAudio:
    """Samples of a source file at its own rate and channels.

    Attributes
    ----------
    samples : np.ndarray [shape=(n, channels)], float32
        ``channels`` is 1 or 2.
    sample_rate : int
        Hz, the file's own.
    subtype : str
        libsndfile's name of the file's sample format (``PCM_16``, ``PCM_24``, ``FLOAT``, ``VORBIS``, ...).
    frames : int
        Length of the whole file, samples per channel (``samples`` may hold only a part of it).
    """

    samples: np.ndarray
    sample_rate: int
    subtype: str
    frames: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])


def native_format(path: str | Path, *, name: str | None = None) -> sf._SoundFileInfo:
    """The file's header (rate, channels, subtype, frames), refused when its fidelity cannot be kept.

    ``name`` names the file in messages (default: the path's file name).

    Raises
    ------
    CorruptAudio
        If the file cannot be opened as audio.
    UnsupportedFidelity
        On more than two channels, or 8-bit samples.
    """
    name = name or Path(path).name
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise CorruptAudio(f"{name}: cannot be decoded as audio ({err})") from err
    if info.channels not in NATIVE_CHANNELS:
        raise UnsupportedFidelity(
            f"{name}: {info.channels} channels; retargeting keeps mono or stereo as it is and will not downmix"
        )
    if info.subtype in _EIGHT_BIT_SUBTYPES:
        raise UnsupportedFidelity(f"{name}: 8-bit samples; retargeting renders 16-bit, 24-bit, 32-bit, float or compressed sources")
    return info


def load_native(path: str | Path, *, start: int = 0, stop: int | None = None, name: str | None = None) -> NativeAudio:
    """Decode a file (or samples ``[start, stop)`` of it) at its own rate and channels.

    Parameters
    ----------
    path : str or Path
    start, stop : int
        The part to read, samples per channel; default the whole file.
    name : str, optional
        Names the file in messages (default: the path's file name).

    Returns
    -------
    NativeAudio

    Raises
    ------
    CorruptAudio, UnsupportedFidelity
    """
    info = native_format(path, name=name)
    try:
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise CorruptAudio(f"{name or Path(path).name}: cannot be decoded as audio ({err})") from err
    return NativeAudio(samples=data, sample_rate=int(sr), subtype=info.subtype, frames=int(info.frames))


def native_beat_grid(beat_samples: np.ndarray, analysis_sr: int, sample_rate: int, n_samples: int) -> np.ndarray:
    """The beat grid of an analysis mapped to a source's own sample rate.

    The analysis decodes the source resampled without delay (soxr), so sample ``k`` at
    ``analysis_sr`` is time ``k / analysis_sr`` in the source too.

    Parameters
    ----------
    beat_samples : np.ndarray [shape=(n_beats + 1,)], int
        Beat boundaries at ``analysis_sr``, samples.
    analysis_sr, sample_rate : int
        Hz, of the grid and of the source.
    n_samples : int
        The source's length, samples at ``sample_rate`` (the grid is clipped to it).

    Returns
    -------
    np.ndarray [shape=(n_beats + 1,)], int64
        Boundaries at ``sample_rate``, samples, rounded to the nearest.
    """
    beat_samples = np.asarray(beat_samples, dtype=np.int64)
    grid = np.minimum((beat_samples * sample_rate + analysis_sr // 2) // analysis_sr, n_samples)
    if np.any(np.diff(grid) <= 0):
        raise ValueError(f"beat grid at {analysis_sr} Hz does not map to {sample_rate} Hz: beats collapse")
    return grid


@dataclass(frozen=True)
class SoundEdges:
    """How much sound a source holds before its first beat (the lead-in) and after its last (the ring-out).

    Attributes
    ----------
    lead_in_samples, ring_out_samples : int
        Samples at ``sample_rate``.
    sample_rate : int
        Hz.
    """

    lead_in_samples: int
    ring_out_samples: int
    sample_rate: int

    @property
    def lead_in_seconds(self) -> float:
        return self.lead_in_samples / self.sample_rate

    @property
    def ring_out_seconds(self) -> float:
        return self.ring_out_samples / self.sample_rate


def sound_edges(before_first_beat: np.ndarray, after_last_beat: np.ndarray, sample_rate: int) -> SoundEdges:
    """The lead-in and ring-out of a source: its sound before the first beat and after the last, silence trimmed.

    Parameters
    ----------
    before_first_beat : np.ndarray [shape=(n,) or (n, channels)], float
        The source up to its first beat.
    after_last_beat : np.ndarray [shape=(m,) or (m, channels)], float
        The source from the end of its last beat to its end.
    sample_rate : int
        Hz.

    Returns
    -------
    SoundEdges
        The lead-in starts ``SOUND_EDGE_MARGIN_MS`` before the first sample above
        ``SILENCE_PEAK_DBFS`` (or at the file's start); the ring-out ends that long after the last
        one (or at the file's end).  Either is 0 where that part is silent.
    """
    threshold = 10.0 ** (SILENCE_PEAK_DBFS / 20.0)
    margin = int(round(SOUND_EDGE_MARGIN_MS * sample_rate / 1000.0))

    def audible(part: np.ndarray) -> np.ndarray:
        part = np.abs(np.asarray(part))
        return np.flatnonzero((part if part.ndim == 1 else part.max(axis=1)) > threshold)

    before, after = audible(before_first_beat), audible(after_last_beat)
    n_before = len(before_first_beat)
    lead_in = n_before - max(0, int(before[0]) - margin) if before.size else 0
    ring_out = min(len(after_last_beat), int(after[-1]) + 1 + margin) if after.size else 0
    return SoundEdges(lead_in_samples=lead_in, ring_out_samples=ring_out, sample_rate=int(sample_rate))


def file_sound_edges(path: str | Path, beat_samples: np.ndarray, analysis_sr: int, *,
                     name: str | None = None) -> SoundEdges:
    """:func:`sound_edges` of a file, at its own rate, reading only the parts before the first beat and after the last.

    ``name`` names the file in messages (default: the path's file name).

    Raises
    ------
    CorruptAudio, UnsupportedFidelity
    """
    info = native_format(path, name=name)
    grid = native_beat_grid(beat_samples, analysis_sr, info.samplerate, info.frames)
    before = load_native(path, stop=int(grid[0]), name=name).samples
    after = load_native(path, start=int(grid[-1]), name=name).samples
    return sound_edges(before, after, info.samplerate)


def delivery_subtype(source_subtype: str, container: str) -> str:
    """The sample format of a delivered ``container`` ("WAV" or "FLAC") for a source of ``source_subtype``.

    As the source where the container holds it (16/24/32-bit PCM, float); 24-bit in FLAC for deeper
    or float sources; 16-bit for decoded lossy or companded sources.
    """
    return _DELIVERY_SUBTYPES[container].get(source_subtype, "PCM_16")


@functools.lru_cache(maxsize=4)
def _filters(sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mel basis (40, n_bins), bin frequencies Hz (n_bins,), band indicators (3, n_bins)), float32.

    The bands are below 250 Hz, 250-4000 Hz and above 4000 Hz.
    """
    mel = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    band = np.digitize(freqs, [250.0, 4000.0])
    indicators = (band[None, :] == np.arange(3)[:, None]).astype(np.float32)
    return mel, freqs.astype(np.float32), indicators


def _frame_features(y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Every frame-level quantity, all from one magnitude STFT. Arrays are (d, n_frames)."""
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH, center=True))
    P = S * S
    mel_basis, freqs, band_weights = _filters(sr)
    mel_power = mel_basis @ P
    logmel = 10.0 * np.log10(np.maximum(mel_power, _AMIN))
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=20)
    # Tuning fixed at A440: estimating it costs more than the rest of the
    # chroma, and beat-level features only need stable pitch classes.
    chroma = librosa.feature.chroma_stft(S=P, sr=sr, n_fft=N_FFT, tuning=0.0)
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr, n_fft=N_FFT)
    tonnetz = librosa.feature.tonnetz(chroma=chroma)
    # Onset strength as librosa computes it for its beat tracker, per band
    # group: low bands (kick, bass) also feed the downbeat estimate.
    onset_bands = librosa.onset.onset_strength_multi(
        S=logmel, sr=sr, hop_length=HOP_LENGTH, n_fft=N_FFT, channels=[0, _LOW_MEL_BANDS, N_MELS],
    )
    onset = (onset_bands[0] * _LOW_MEL_BANDS + onset_bands[1] * (N_MELS - _LOW_MEL_BANDS)) / N_MELS
    # Flux of mel magnitudes (not dB), for the tempo octave choice: in dB any
    # quiet hi-hat after silence looks as strong as a kick; in magnitude it
    # weighs what it sounds like.  Delayed as librosa delays ``onset``.
    mel_magnitude = np.sqrt(mel_power)
    magnitude_flux = np.maximum(np.diff(mel_magnitude, axis=1), 0.0).sum(axis=0)
    onset_magnitude = np.pad(magnitude_flux, (1 + N_FFT // (2 * HOP_LENGTH), 0))[: logmel.shape[1]]
    rms = librosa.feature.rms(S=S, frame_length=N_FFT)[0]
    rms_db = 20.0 * np.log10(np.maximum(rms, 1e-5))

    # Spectral shape from moments (matrix-vector products), not per-bin temporaries.
    magnitude_sum = S.sum(axis=0) + _AMIN
    centroid = (freqs @ S) / magnitude_sum
    second_moment = (freqs**2 @ S) / magnitude_sum
    bandwidth = np.sqrt(np.maximum(second_moment - centroid**2, 0.0))
    cumulative = np.cumsum(S, axis=0)
    rolloff = freqs[np.argmax(cumulative >= 0.85 * cumulative[-1], axis=0)]
    flatness = np.exp(np.log(P + _AMIN).mean(axis=0)) / (P.mean(axis=0) + _AMIN)
    # Timbre change independent of loudness, on the 40 mel magnitudes.
    normalised = mel_magnitude / (mel_magnitude.sum(axis=0) + _AMIN)
    flux = np.concatenate([[0.0], 0.5 * np.abs(np.diff(normalised, axis=1)).sum(axis=0)])
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP_LENGTH, center=True)[0]
    band_power = band_weights @ P
    return {
        "logmel": logmel, "mfcc": mfcc, "chroma": chroma, "contrast": contrast, "tonnetz": tonnetz,
        "onset": onset, "onset_low": onset_bands[0],
        "onset_magnitude": onset_magnitude, "rms": rms, "rms_db": rms_db,
        "shape": np.stack([centroid / 1000.0, bandwidth / 1000.0, rolloff / 1000.0, flatness, flux]),
        "zcr": zcr, "band_power": band_power,
    }


def _beat_strength(onset: np.ndarray, beat_frames: np.ndarray) -> np.ndarray:
    """Peak onset strength within one frame of each beat, (n_beats,)."""
    padded = np.pad(onset, 1)
    return np.max(np.stack([padded[beat_frames], padded[beat_frames + 1], padded[beat_frames + 2]]), axis=0)


def _track(onset: np.ndarray, sr: int, bpm: float, *, trim: bool) -> np.ndarray:
    _, beats = librosa.beat.beat_track(
        onset_envelope=onset, sr=sr, hop_length=HOP_LENGTH, bpm=bpm, units="frames", trim=trim
    )
    return np.asarray(beats, dtype=np.int64)


def _track_beats(onset: np.ndarray, onset_magnitude: np.ndarray, sr: int) -> np.ndarray:
    """Beat frames at a tempo in MIN_BPM..MAX_BPM, the octave chosen from the beats' strengths.

    ``onset`` (librosa's log-mel flux) drives the tracker; ``onset_magnitude``
    (flux of mel magnitudes) measures how strong each tracked beat sounds.
    """
    tempo = float(librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=HOP_LENGTH)[0])
    if not np.isfinite(tempo) or tempo <= 0:  # no periodicity at all: no beats
        return np.zeros(0, dtype=np.int64)
    # MIN_BPM..MAX_BPM spans less than two octaves: one or two candidates.
    candidates = sorted(tempo * 2.0**k for k in range(-3, 4) if MIN_BPM <= tempo * 2.0**k <= MAX_BPM)
    if len(candidates) == 1:
        return _track(onset, sr, candidates[0], trim=True)
    slow, fast = candidates[0], candidates[1]
    beats = _track(onset, sr, fast, trim=True)
    strength = _beat_strength(onset_magnitude, beats)
    if strength.size < 8:
        return beats
    even, odd = strength[0::2].mean(), strength[1::2].mean()
    if min(even, odd) < _SUBDIVISION_RATIO * max(even, odd):
        return _track(onset, sr, slow, trim=True)
    return beats


def _downbeat_phase(frames: dict[str, np.ndarray], beat_frames: np.ndarray, beat_chroma: np.ndarray) -> int:
    """Index (0..3) of the first downbeat: the phase with the most low onset and chord change."""
    low = _beat_strength(frames["onset_low"], beat_frames)
    change = np.zeros(beat_frames.size)
    norm = np.linalg.norm(beat_chroma, axis=1) + _AMIN
    change[1:] = 1.0 - np.sum(beat_chroma[1:] * beat_chroma[:-1], axis=1) / (norm[1:] * norm[:-1])

    def standardise(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() + _AMIN)

    cue = standardise(low) + standardise(change)
    scores = [cue[p::BEATS_PER_BAR].mean() for p in range(BEATS_PER_BAR)]
    return int(np.argmax(scores))


def analyze(y: np.ndarray, sr: int, *, name: str = "audio") -> TrackAnalysis:
    """Track beats and compute the per-beat features of a mono signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float
        Mono audio at ``sr``.
    sr : int
        Must be ``ANALYSIS_SR`` Hz (use :func:`load_audio`).
    name : str
        Names the audio in error messages.

    Returns
    -------
    TrackAnalysis

    Raises
    ------
    EmptyAudio, SilentAudio, TooFewBeats
    """
    if sr != ANALYSIS_SR:
        raise ValueError(f"{name}: analysis needs {ANALYSIS_SR} Hz audio, got {sr} Hz; decode it with load_audio")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected mono audio of shape (n,), got shape {y.shape}")
    _check_level(y, name)
    frames = _frame_features(y, sr)
    onset = frames["onset"]
    n_frames = onset.shape[0]
    if onset.max() <= 0:
        raise TooFewBeats(f"{name}: 0 beats found, at least {MIN_BEATS} needed")
    beat_frames = _track_beats(onset, frames["onset_magnitude"], sr)
    # A beat needs at least one frame of its own before the signal ends.
    beat_frames = beat_frames[beat_frames < n_frames - 1]
    n_beats = int(beat_frames.size)
    if n_beats < MIN_BEATS:
        raise TooFewBeats(f"{name}: {n_beats} beats found, at least {MIN_BEATS} needed")
    # The last beat lasts a median beat, or up to the end of the signal.
    median_frames = int(round(float(np.median(np.diff(beat_frames)))))
    end_frame = min(int(beat_frames[-1]) + median_frames, n_frames - 1)

    bounds = np.append(beat_frames, end_frame)
    beat_samples = np.minimum(bounds * HOP_LENGTH, y.shape[0]).astype(np.int64)
    counts = np.diff(bounds).astype(np.float64)

    # One segment reduction over every frame quantity at once.
    mean_rows = np.concatenate([
        frames["logmel"], frames["mfcc"], frames["mfcc"][:13] ** 2, frames["chroma"], frames["contrast"],
        frames["tonnetz"], frames["onset"][None], frames["rms_db"][None], frames["rms"][None],
        frames["shape"], frames["zcr"][None], frames["band_power"],
    ]).astype(np.float64)[:, : bounds[-1]]
    max_rows = np.stack([frames["onset"], frames["rms_db"]]).astype(np.float64)[:, : bounds[-1]]
    means = (np.add.reduceat(mean_rows, beat_frames, axis=1) / counts).T
    maxima = np.maximum.reduceat(max_rows, beat_frames, axis=1).T

    cols = np.cumsum([0, 40, 20, 13, 12, 7, 6, 1, 1, 1, 5, 1, 3])
    logmel, mfcc, mfcc_sq, chroma, contrast, tonnetz, onset_mean, rms_db, rms, shape, zcr, band_power = (
        means[:, a:b] for a, b in zip(cols[:-1], cols[1:])
    )
    mfcc_std = np.sqrt(np.maximum(mfcc_sq - mfcc[:, :13] ** 2, 0.0))
    rms_db_delta = np.diff(rms_db[:, 0], prepend=rms_db[0, 0])[:, None]
    band_share = band_power / (band_power.sum(axis=1, keepdims=True) + _AMIN)

    phase = _downbeat_phase(frames, beat_frames, chroma)
    index = np.arange(n_beats)
    bar_positions = ((index - phase) % BEATS_PER_BAR).astype(np.int8)
    beat_seconds = np.diff(beat_samples) / sr
    timing = np.stack([beat_seconds, beat_seconds / np.median(beat_seconds)], axis=1)
    position = np.stack([
        beat_samples[:-1] / y.shape[0],
        ((index - phase) % 16) / 15.0,
        rms[:, 0] / (rms[:, 0].mean() + _AMIN),
    ], axis=1)
    features = np.concatenate([
        logmel, mfcc, mfcc_std, chroma, contrast, tonnetz, onset_mean, maxima[:, :1],
        rms_db, maxima[:, 1:], rms_db_delta, shape, zcr, band_share, timing,
        np.eye(BEATS_PER_BAR)[bar_positions], position,
    ], axis=1).astype(np.float32)
    if not np.all(np.isfinite(features)):
        raise AssertionError(f"{name}: non-finite features (a bug in feature extraction)")

    return TrackAnalysis(
        beat_samples=beat_samples,
        bar_positions=bar_positions,
        features=features,
        tempo_bpm=_refined_tempo(beat_samples[:-1], sr),
        duration_seconds=y.shape[0] / sr,
        sample_rate=sr,
        feature_version=FEATURE_VERSION,
    )


def _refined_tempo(beat_starts: np.ndarray, sr: int) -> float:
    """Tempo from the median span of 8 consecutive beats.

    Spanning 8 beats divides the 23 ms frame quantisation of each beat time
    by 8, and the median ignores the odd misplaced beat.
    """
    span = min(8, beat_starts.size - 1)
    seconds = (beat_starts[span:] - beat_starts[:-span]) / sr / span
    return float(60.0 / np.median(seconds))


def analyze_file(path: str | Path, *, max_seconds: float = MAX_TRACK_SECONDS) -> tuple[TrackAnalysis, np.ndarray, int]:
    """Load and analyse a file.

    Returns
    -------
    analysis : TrackAnalysis
    y : np.ndarray [shape=(n,)], float32
        The mono signal at ``ANALYSIS_SR``.
    source_sr : int
        The file's own sample rate, Hz.
    """
    y, source_sr = load_audio(path, sr=ANALYSIS_SR, max_seconds=max_seconds)
    return analyze(y, ANALYSIS_SR, name=Path(path).name), y, source_sr


def compile_kernels() -> TrackAnalysis:
    """Analyse 10 s of synthetic clicks at 120 BPM, so numba loads (or compiles) every kernel the analysis uses.

    Returns the clicks' analysis.
    """
    sr = ANALYSIS_SR
    y = np.zeros(10 * sr, dtype=np.float32)
    click = (np.exp(-np.arange(800) / 80.0) * np.sin(np.arange(800) * 0.3)).astype(np.float32)
    for start in range(0, y.size - click.size, sr // 2):  # 120 BPM
        y[start : start + click.size] += click
    return analyze(y, sr, name="warm-up clicks")


def warm_up() -> None:
    """Compile librosa's numba kernels now, once per worker process, before the first real analysis.

    One process at a time compiles into the shared cache, and a cache that
    crashes a probe analysis in a child process is rebuilt first
    (:mod:`editing.jit_cache`).
    """
    jit_cache.warm_up_under_lock(compile_kernels)

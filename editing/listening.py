"""Encode a rendered waveform for listening in a browser: Opus in Ogg (48 kHz) or FLAC (the source's rate).

Pure (numpy, librosa, soundfile).  libsndfile's Opus encoder takes 8, 12, 16, 24 or 48 kHz input only,
so an Opus copy of a 44.1 kHz render is resampled to 48 kHz first (soxr, no delay: the beat timeline
in seconds is unchanged); the channels stay the source's.  FLAC is lossless at the render's own rate
and channels.  Both sides of a comparison go through the same encoder, so their codec delay is the
same (Opus's pre-skip is written in the stream header and removed by every decoder, libsndfile and
the browsers alike).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import librosa
import numpy as np
import soundfile as sf

OPUS_SAMPLE_RATE = 48_000
# libsndfile sets the Opus bitrate from its compression level, (1 - level) x 256 kbit/s per channel;
# 80 kbit/s per channel is 160 kbit/s for a stereo source, inside the 128-192 kbit/s asked for.
OPUS_KBPS_PER_CHANNEL = 80
_OPUS_MAX_KBPS_PER_CHANNEL = 256


class ListeningEncodeError(ValueError):
    """The waveform cannot be encoded for listening (unknown format, no samples, too many channels)."""


@dataclass(frozen=True)
class ListeningFormat:
    """One way of encoding the listening copy: libsndfile's container and subtype, the file suffix,
    and the Content-Type the browser gets."""

    name: str
    container: str
    suffix: str
    content_type: str


MP3 = ListeningFormat(name="mp3", container="MP3", suffix=".mp3", content_type="audio/mpeg")
MP3_COMPRESSION_LEVEL = 0.3  # libsndfile's 0 (best quality, largest) .. 1 (smallest): about 60 kbit/s mono
OPUS = ListeningFormat(name="opus", container="OGG", suffix=".opus", content_type="audio/ogg; codecs=opus")
FLAC = ListeningFormat(name="flac", container="FLAC", suffix=".flac", content_type="audio/flac")
# The copies of the native render; MP3 is the legacy copy of the analysis-rate mono rendering.
FORMATS: dict[str, ListeningFormat] = {f.name: f for f in (OPUS, FLAC)}


@dataclass(frozen=True)
class EncodedListening:
    """What was written: the file's sample rate (Hz), channels and duration (s)."""

    sample_rate: int
    channels: int
    duration_seconds: float


def opus_compression_level(channels: int, kbps_per_channel: float = OPUS_KBPS_PER_CHANNEL) -> float:
    """libsndfile's compression level (0 .. 1) that asks its Opus encoder for ``kbps_per_channel`` kbit/s."""
    return float(np.clip(1.0 - kbps_per_channel / _OPUS_MAX_KBPS_PER_CHANNEL, 0.0, 1.0))


def encode_listening(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int, fmt: str, *,
                     flac_subtype: str = "PCM_24") -> EncodedListening:
    """Write ``audio`` to ``path`` as the listening format ``fmt`` ("opus" or "flac").

    Parameters
    ----------
    audio : np.ndarray [shape=(n_samples,) or (n_samples, channels)], float
        1 or 2 channels at ``sample_rate``.
    sample_rate : int
        Hz.
    fmt : str
        A key of :data:`FORMATS`.
    flac_subtype : str
        libsndfile's sample format for FLAC (``PCM_16`` or ``PCM_24``), as the source's.

    Returns
    -------
    EncodedListening
        48 kHz for Opus, ``sample_rate`` for FLAC; the channels of ``audio``.
    """
    if fmt not in FORMATS:
        raise ListeningEncodeError(f"listening format {fmt!r}: expected one of {sorted(FORMATS)}")
    frames = np.asarray(audio, dtype=np.float32)
    if frames.ndim == 1:
        frames = frames[:, None]
    if frames.ndim != 2 or frames.shape[0] == 0 or frames.shape[1] not in (1, 2):
        raise ListeningEncodeError(f"listening copy: expected 1 or 2 channels of samples, got shape {frames.shape}")
    channels = frames.shape[1]
    if fmt == "flac":
        sf.write(path, frames, sample_rate, format=FLAC.container, subtype=flac_subtype)
        return EncodedListening(sample_rate=sample_rate, channels=channels,
                                duration_seconds=frames.shape[0] / sample_rate)
    if sample_rate != OPUS_SAMPLE_RATE:
        # librosa resamples the last axis: channels first, then back.
        frames = librosa.resample(frames.T, orig_sr=sample_rate, target_sr=OPUS_SAMPLE_RATE, res_type="soxr_hq").T
        # The encoder clips; resampling can overshoot a peak-limited render by a hair.
        frames = np.clip(frames, -1.0, 1.0)
    sf.write(path, np.ascontiguousarray(frames), OPUS_SAMPLE_RATE, format=OPUS.container, subtype="OPUS",
             compression_level=opus_compression_level(channels))
    return EncodedListening(sample_rate=OPUS_SAMPLE_RATE, channels=channels,
                            duration_seconds=frames.shape[0] / OPUS_SAMPLE_RATE)


def write_legacy_mp3(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int) -> None:
    """Write ``audio`` (float, shape (n_samples,) or (n_samples, channels)) at ``sample_rate`` Hz as MP3.

    The legacy listening copy (``ANNOTATION_AUDIO_FORMAT = "mp3"``): libsndfile writes MP3 at any
    rate the analysis renders at; at about 60 kbit/s it hides the seam artefacts annotators judge.
    """
    sf.write(path, audio, sample_rate, format=MP3.container, subtype="MPEG_LAYER_III",
             compression_level=MP3_COMPRESSION_LEVEL)

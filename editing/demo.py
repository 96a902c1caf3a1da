"""A small synthetic corpus with known beats, for a first run and for tests.

Each demo track is drums (kick, snare, hi-hats), bass and chords, laid out in
sections (intro, verse, chorus) whose energy differs clearly, at a tempo
between 70 and 170 BPM and 30 to 90 seconds long.  Beat 1 of every bar is
accented (a louder kick and the bass on the chord root) and the chord changes
on it, so a downbeat estimate has something honest to find.  The ground truth
(beat times and bar positions) is written next to the audio as
``NAME.beats.txt``, one ``time_seconds bar_position`` line per beat.

Synthesis is vectorised numpy: drum hits are impulse trains convolved with
one-shot samples, and pitched parts are phase accumulators over per-sample
frequency and envelope arrays.  Everything is deterministic given the seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from editing.audio import ANALYSIS_SR, BEATS_PER_BAR

__all__ = ["DemoTrackSpec", "DEMO_SPECS", "read_beats", "synthesize_track", "write_demo_corpus"]

# Section energy in dB relative to the chorus: clearly different to the ear
# and to the per-beat loudness features.
_SECTION_GAIN_DB = {"intro": -14.0, "verse": -7.0, "chorus": 0.0}
# Chord qualities as semitone offsets from the chord root.
_MAJOR = (0, 4, 7)
_MINOR = (0, 3, 7)
_TAIL_SECONDS = 0.5  # let the last notes ring out after the last beat


@dataclass(frozen=True)
class DemoTrackSpec:
    """What one demo track is made of.

    Attributes
    ----------
    name : str
        File stem, e.g. ``"demo-070-ballad"``.
    tempo_bpm : float
        Constant tempo, beats per minute.
    key_midi : int
        MIDI note number of the key's tonic (the bass plays an octave or two below).
    progression : tuple[tuple[int, bool], ...]
        One chord per bar, cycled: (semitones above the tonic, is_minor).
    sections : tuple[tuple[str, int], ...]
        (section name, number of bars) in playing order; names are keys of the
        section energy table (``intro``, ``verse``, ``chorus``).
    """

    name: str
    tempo_bpm: float
    key_midi: int
    progression: tuple[tuple[int, bool], ...]
    sections: tuple[tuple[str, int], ...]

    @property
    def n_bars(self) -> int:
        return sum(bars for _, bars in self.sections)

    @property
    def n_beats(self) -> int:
        return self.n_bars * BEATS_PER_BAR

    @property
    def duration_seconds(self) -> float:
        """Length of the rendered track, seconds (all bars plus a short tail)."""
        return self.n_beats * 60.0 / self.tempo_bpm + _TAIL_SECONDS


_POP = ((0, False), (7, False), (9, True), (5, False))  # I V vi IV
_MINOR_LOOP = ((0, True), (8, False), (3, False), (10, False))  # i VI III VII
_BLUES = ((0, False), (5, False), (0, False), (7, False))

DEMO_SPECS: tuple[DemoTrackSpec, ...] = (
    DemoTrackSpec("demo-070-ballad", 70.0, 57, _POP,
                  (("intro", 4), ("verse", 8), ("chorus", 8), ("verse", 4))),
    DemoTrackSpec("demo-092-groove", 92.0, 52, _MINOR_LOOP,
                  (("intro", 2), ("verse", 4), ("chorus", 4), ("verse", 2))),
    DemoTrackSpec("demo-110-shuffle", 110.0, 55, _BLUES,
                  (("intro", 4), ("verse", 4), ("chorus", 4), ("verse", 4))),
    DemoTrackSpec("demo-128-house", 128.0, 53, _MINOR_LOOP,
                  (("intro", 4), ("verse", 8), ("chorus", 8))),
    DemoTrackSpec("demo-145-rock", 145.0, 52, _POP,
                  (("intro", 4), ("verse", 8), ("chorus", 8))),
    DemoTrackSpec("demo-170-dnb", 170.0, 50, _MINOR_LOOP,
                  (("intro", 4), ("verse", 8), ("chorus", 8), ("verse", 4))),
)


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def _drum_samples(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    """One-shot kick, snare and hi-hat samples, float64 (n,) each."""
    t = np.arange(int(0.35 * sr)) / sr
    # Kick: a sine whose pitch falls from 150 Hz to 45 Hz, with a fast decay.
    kick_hz = 45.0 + 105.0 * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(kick_hz) / sr) * np.exp(-t / 0.12)
    ts = t[: int(0.2 * sr)]
    # Snare: a 190 Hz body plus bright noise (a first difference tilts it upwards).
    noise = rng.standard_normal(ts.size + 1)
    snare = 0.5 * np.sin(2 * np.pi * 190.0 * ts) * np.exp(-ts / 0.04) + 0.6 * np.diff(noise) * np.exp(-ts / 0.06)
    th = t[: int(0.06 * sr)]
    # Hi-hat: noise differenced twice, so almost all of it lies above 5 kHz.
    hat_noise = rng.standard_normal(th.size + 2)
    hat = 0.25 * np.diff(hat_noise, n=2) * np.exp(-th / 0.012)
    return {"kick": kick, "snare": snare, "hat": hat}


def _place(sample: np.ndarray, onsets: np.ndarray, gains: np.ndarray, n: int) -> np.ndarray:
    """Sum copies of ``sample`` starting at ``onsets`` (samples) scaled by ``gains``."""
    train = np.zeros(n)
    np.add.at(train, onsets, gains)
    return fftconvolve(train, sample)[:n]


def _note_track(
    starts: np.ndarray, lengths: np.ndarray, notes: np.ndarray, gains: np.ndarray,
    n: int, sr: int, *, decay_s: float, harmonics: tuple[float, ...],
) -> np.ndarray:
    """A monophonic voice: note k sounds from ``starts[k]`` for ``lengths[k]`` samples.

    Parameters
    ----------
    starts, lengths : np.ndarray [shape=(n_notes,)], int
        Note onsets and lengths in samples; notes are contiguous and in order.
    notes : np.ndarray [shape=(n_notes,)]
        MIDI note numbers.
    gains : np.ndarray [shape=(n_notes,)]
        Linear amplitude per note.
    """
    index = np.repeat(np.arange(starts.size), lengths)
    out = np.zeros(n)
    end = min(n, index.size + int(starts[0]))
    index = index[: end - int(starts[0])]
    since = (np.arange(index.size) + int(starts[0]) - starts[index]) / sr
    freq = _midi_hz(notes)[index]
    phase = 2 * np.pi * np.cumsum(freq) / sr
    wave = sum(np.sin(h * phase) / h for h in harmonics)
    # A 4 ms attack avoids clicks; the exponential decay makes each note an onset.
    envelope = np.minimum(since / 0.004, 1.0) * np.exp(-since / decay_s)
    out[int(starts[0]) : end] = wave * envelope * gains[index]
    return out


def synthesize_track(spec: DemoTrackSpec, *, sr: int = ANALYSIS_SR, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one demo track.

    Parameters
    ----------
    spec : DemoTrackSpec
    sr : int > 0
        Sample rate, Hz.
    seed : int
        Seeds the noise of the drum samples; the same seed gives the same samples.

    Returns
    -------
    y : np.ndarray [shape=(n,)], float32
        Mono audio in [-1, 1].
    beat_times : np.ndarray [shape=(spec.n_beats,)], float64
        Ground-truth beat times, seconds.
    bar_positions : np.ndarray [shape=(spec.n_beats,)], int8
        0 for a downbeat, then 1, 2, 3.
    """
    rng = np.random.default_rng(seed)
    seconds_per_beat = 60.0 / spec.tempo_bpm
    n_beats = spec.n_beats
    n = int(round(spec.duration_seconds * sr))
    beat_times = np.arange(n_beats) * seconds_per_beat
    beat_starts = np.round(beat_times * sr).astype(np.int64)
    bar_positions = (np.arange(n_beats) % BEATS_PER_BAR).astype(np.int8)
    bar_index = np.arange(n_beats) // BEATS_PER_BAR

    section_names = [name for name, bars in spec.sections for _ in range(bars * BEATS_PER_BAR)]
    beat_gain = 10.0 ** (np.array([_SECTION_GAIN_DB[s] for s in section_names]) / 20.0)
    is_intro = np.array([s == "intro" for s in section_names])
    is_chorus = np.array([s == "chorus" for s in section_names])

    drums = _drum_samples(rng, sr)
    # Kick on 1 and 3, beat 1 louder; snare on 2 and 4 (not in the intro).
    kick_gain = np.where(bar_positions == 0, 1.0, np.where(bar_positions == 2, 0.55, 0.0)) * beat_gain
    snare_gain = np.where(bar_positions % 2 == 1, 0.6, 0.0) * beat_gain * ~is_intro
    # Hats on every beat, and on the off-beats too at slow tempi; off-beat hats
    # are quieter, as a drummer plays them, so the quarter note stays the beat.
    hat_onsets = [beat_starts]
    hat_gains = [np.full(n_beats, 0.8) * beat_gain]
    if spec.tempo_bpm < 100.0:
        hat_onsets.append(beat_starts + int(round(seconds_per_beat * sr / 2)))
        hat_gains.append(np.full(n_beats, 0.45) * beat_gain)
    y = _place(drums["kick"], beat_starts, kick_gain, n)
    y += _place(drums["snare"], beat_starts, snare_gain, n)
    y += _place(drums["hat"], np.concatenate(hat_onsets), np.concatenate(hat_gains), n)

    chord_offset = np.array([spec.progression[b % len(spec.progression)][0] for b in bar_index])
    chord_minor = np.array([spec.progression[b % len(spec.progression)][1] for b in bar_index])
    lengths = np.diff(np.append(beat_starts, n))

    # Bass: the chord root on every beat, the downbeat louder, longer and an
    # octave lower, so beat 1 carries the most low-frequency energy.
    bass_note = spec.key_midi - 24 + chord_offset - np.where(bar_positions == 0, 12, 0)
    bass_note = np.where(bass_note < 28, bass_note + 12, bass_note)
    bass_gain = np.where(bar_positions == 0, 0.5, 0.25) * beat_gain * np.where(is_intro & (bar_positions != 0), 0.0, 1.0)
    y += _note_track(beat_starts, lengths, bass_note, bass_gain, n, sr, decay_s=0.25 * seconds_per_beat * 4, harmonics=(1.0, 2.0, 3.0))

    # Chords: three voices restruck on each downbeat, held through the bar.
    bar_starts = beat_starts[::BEATS_PER_BAR]
    bar_lengths = np.diff(np.append(bar_starts, n))
    bar_gain = beat_gain[::BEATS_PER_BAR] * np.where(is_chorus[::BEATS_PER_BAR], 0.16, 0.11)
    for voice in range(3):
        third = np.where(chord_minor[::BEATS_PER_BAR], _MINOR[voice], _MAJOR[voice])
        notes = spec.key_midi + chord_offset[::BEATS_PER_BAR] + third
        y += _note_track(bar_starts, bar_lengths, notes, bar_gain, n, sr, decay_s=1.5 * seconds_per_beat * 4, harmonics=(1.0, 2.0, 3.0, 4.0))

    y *= 0.89 / np.max(np.abs(y))  # peak at about -1 dBFS
    return y.astype(np.float32), beat_times, bar_positions


def write_demo_corpus(out_dir: str | Path, *, seed: int = 0, n_tracks: int = 6) -> list[Path]:
    """Write the first ``n_tracks`` demo tracks as ``NAME.wav`` + ``NAME.beats.txt``.

    Parameters
    ----------
    out_dir : str or Path
        Created if missing.
    seed : int
        Track ``k`` is synthesised with seed ``seed + k``; the corpus is
        byte-identical for the same seed.
    n_tracks : int, 1 <= n_tracks <= len(DEMO_SPECS)

    Returns
    -------
    list[Path]
        The written ``.wav`` files (PCM 16-bit, ``ANALYSIS_SR`` Hz, mono), in spec order.
    """
    if not 1 <= n_tracks <= len(DEMO_SPECS):
        raise ValueError(f"n_tracks={n_tracks}: the demo corpus has 1 to {len(DEMO_SPECS)} tracks")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k, spec in enumerate(DEMO_SPECS[:n_tracks]):
        y, beat_times, bar_positions = synthesize_track(spec, sr=ANALYSIS_SR, seed=seed + k)
        wav = out / f"{spec.name}.wav"
        sf.write(wav, y, ANALYSIS_SR, subtype="PCM_16")
        lines = [f"{t:.6f} {int(p)}\n" for t, p in zip(beat_times, bar_positions)]
        (out / f"{spec.name}.beats.txt").write_text("".join(lines))
        written.append(wav)
    return written


def read_beats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``NAME.beats.txt`` ground truth: (beat times in seconds float64, bar positions int8)."""
    data = np.loadtxt(path, ndmin=2)
    return data[:, 0].astype(np.float64), data[:, 1].astype(np.int8)

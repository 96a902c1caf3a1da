"""editing/demo.py: the synthetic corpus is deterministic, varied, and its ground truth is right."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from editing.audio import ANALYSIS_SR
from editing.demo import DEMO_SPECS, read_beats, synthesize_track, write_demo_corpus


def test_specs_span_the_promised_range():
    tempos = [spec.tempo_bpm for spec in DEMO_SPECS]
    durations = [spec.duration_seconds for spec in DEMO_SPECS]
    assert len(DEMO_SPECS) == 6
    assert min(tempos) == 70 and max(tempos) == 170
    assert all(30 <= d <= 90 for d in durations)
    assert 180 <= sum(durations) <= 300  # a modest corpus: tests stay fast
    for spec in DEMO_SPECS:
        assert {name for name, _ in spec.sections} == {"intro", "verse", "chorus"}


def test_corpus_files_and_ground_truth(demo_corpus_dir):
    for spec in DEMO_SPECS:
        info = sf.info(demo_corpus_dir / f"{spec.name}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (ANALYSIS_SR, 1, "PCM_16")
        assert info.duration == pytest.approx(spec.duration_seconds, abs=1e-3)
        times, bars = read_beats(demo_corpus_dir / f"{spec.name}.beats.txt")
        assert times.size == bars.size == spec.n_beats
        np.testing.assert_allclose(np.diff(times), 60.0 / spec.tempo_bpm, atol=1e-5)
        np.testing.assert_array_equal(bars, np.arange(spec.n_beats) % 4)


def test_corpus_is_deterministic_for_a_seed(tmp_path, demo_corpus_dir):
    same = write_demo_corpus(tmp_path / "same", seed=0, n_tracks=1)  # the fixture's corpus has seed 0
    other = write_demo_corpus(tmp_path / "other", seed=1, n_tracks=1)
    name = DEMO_SPECS[0].name
    assert [p.name for p in same] == [f"{name}.wav"]
    assert same[0].read_bytes() == (demo_corpus_dir / f"{name}.wav").read_bytes()
    assert other[0].read_bytes() != same[0].read_bytes()
    assert (same[0].parent / f"{name}.beats.txt").read_text() == (demo_corpus_dir / f"{name}.beats.txt").read_text()


def test_sections_have_clearly_different_energy():
    spec = DEMO_SPECS[2]
    y, times, _ = synthesize_track(spec, seed=0)
    assert y.dtype == np.float32 and np.max(np.abs(y)) <= 1.0
    starts = np.round(times * ANALYSIS_SR).astype(int)
    energy_db = {}
    beat = 0
    for name, bars in spec.sections:
        segment = y[starts[beat] : starts[beat + bars * 4 - 1]]
        energy_db.setdefault(name, 20 * np.log10(np.sqrt(np.mean(segment**2))))
        beat += bars * 4
    assert energy_db["intro"] + 3 < energy_db["verse"] and energy_db["verse"] + 3 < energy_db["chorus"]


def test_downbeats_carry_the_most_low_frequency_energy():
    spec = DEMO_SPECS[1]
    y, times, bars = synthesize_track(spec, seed=0)
    starts = np.round(times * ANALYSIS_SR).astype(int)
    window = int(0.1 * ANALYSIS_SR)
    from scipy.signal import butter, sosfilt

    low = sosfilt(butter(4, 150, fs=ANALYSIS_SR, output="sos"), y)
    energy = np.array([np.sum(low[s : s + window] ** 2) for s in starts])
    per_position = [energy[bars == p].mean() for p in range(4)]
    assert int(np.argmax(per_position)) == 0


def test_n_tracks_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="n_tracks=7"):
        write_demo_corpus(tmp_path, n_tracks=7)

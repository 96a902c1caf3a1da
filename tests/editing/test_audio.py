"""editing/audio.py: decoding, refusals, beat tracking, tempo, downbeats and per-beat features."""
from __future__ import annotations

import hashlib

import mir_eval
import numpy as np
import pytest
import soundfile as sf

from editing import audio
from editing.audio import (
    ANALYSIS_SR, FEATURE_GROUPS, FEATURE_NAMES, FEATURE_VERSION, MIN_BEATS, N_AUDIO_FEATURES,
    AnalysisVersionError, CorruptAudio, EmptyAudio, SilentAudio, TooFewBeats, TooLongAudio,
    TrackAnalysis, UnsupportedAudio, analyze, analyze_file, compile_kernels, file_sha256, load_audio, warm_up,
)
from editing.demo import DEMO_SPECS, read_beats

DEMO_NAMES = [spec.name for spec in DEMO_SPECS]
SPEC_BY_NAME = {spec.name: spec for spec in DEMO_SPECS}
SHORT_TRACK = "demo-092-groove"  # the shortest demo track, for the per-format tests


def beat_f_measure(truth_times: np.ndarray, analysis: TrackAnalysis) -> float:
    estimated = analysis.beat_samples[:-1] / analysis.sample_rate
    return mir_eval.beat.f_measure(
        mir_eval.beat.trim_beats(truth_times), mir_eval.beat.trim_beats(estimated), f_measure_threshold=0.07
    )


def clicks(seconds: float, bpm: float = 120.0, sr: int = ANALYSIS_SR) -> np.ndarray:
    y = np.zeros(int(seconds * sr), dtype=np.float32)
    click = (0.8 * np.exp(-np.arange(600) / 60.0) * np.sin(np.arange(600) * 0.4)).astype(np.float32)
    for start in np.arange(0, y.size - click.size, int(sr * 60 / bpm)):
        y[start : start + click.size] += click
    return y


# --- the feature layout ------------------------------------------------------------------------

def test_feature_layout_matches_the_contract():
    sizes = {name: s.stop - s.start for name, s in FEATURE_GROUPS.items()}
    assert list(sizes.items()) == [
        ("logmel", 40), ("mfcc", 20), ("mfcc_std", 13), ("chroma", 12), ("contrast", 7), ("tonnetz", 6),
        ("onset", 2), ("loudness", 3), ("shape", 5), ("zcr", 1), ("band_energy", 3), ("timing", 2),
        ("bar_position", 4), ("position", 3),
    ]
    assert N_AUDIO_FEATURES == 121 == len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    for name in FEATURE_NAMES:  # every feature is documented in the module's table
        group = next(g for g, s in FEATURE_GROUPS.items() if FEATURE_NAMES.index(name) in range(s.start, s.stop))
        assert group in audio.__doc__


# --- beat tracking, tempo and downbeats on the demo corpus -------------------------------------

@pytest.mark.parametrize("name", DEMO_NAMES)
def test_beats_found_within_70_ms_on_every_demo_track(demo_analyses, name):
    analysis, _, truth = demo_analyses[name]
    assert beat_f_measure(truth, analysis) >= 0.9


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_tempo_within_2_percent_without_octave_error(demo_analyses, name):
    analysis, _, _ = demo_analyses[name]
    true_bpm = SPEC_BY_NAME[name].tempo_bpm
    assert abs(analysis.tempo_bpm - true_bpm) / true_bpm <= 0.02


def downbeat_agreement(analysis: TrackAnalysis, truth_times: np.ndarray, truth_bars: np.ndarray) -> float:
    """Share of estimated beats within 70 ms of a true beat whose bar position is the true one."""
    estimated = analysis.beat_samples[:-1] / analysis.sample_rate
    nearest = np.abs(estimated[:, None] - truth_times[None, :]).argmin(axis=1)
    matched = np.abs(estimated - truth_times[nearest]) <= 0.07
    return float(np.mean(analysis.bar_positions[matched] == truth_bars[nearest[matched]]))


def test_downbeats_match_the_true_bar_positions_on_most_tracks(demo_analyses, demo_corpus_dir):
    agreements = {}
    for name, (analysis, _, _) in demo_analyses.items():
        truth_times, truth_bars = read_beats(demo_corpus_dir / f"{name}.beats.txt")
        agreements[name] = downbeat_agreement(analysis, truth_times, truth_bars)
    assert sum(a >= 0.9 for a in agreements.values()) >= 5, agreements


def test_beat_grid_is_contiguous_and_inside_the_signal(demo_analyses):
    for analysis, y, _ in demo_analyses.values():
        assert analysis.beat_samples.dtype == np.int64
        assert analysis.beat_samples.shape == (analysis.n_beats + 1,)
        assert np.all(np.diff(analysis.beat_samples) > 0)
        assert 0 <= analysis.beat_samples[0] and analysis.beat_samples[-1] <= y.size
        assert analysis.bar_positions.dtype == np.int8
        assert set(np.unique(analysis.bar_positions)) == {0, 1, 2, 3}
        # bar positions count up through each bar
        assert np.all(np.diff(analysis.bar_positions.astype(int)) % 4 == 1)
        assert analysis.duration_seconds == pytest.approx(y.size / ANALYSIS_SR)


# --- features ----------------------------------------------------------------------------------

def test_features_are_finite_float32_versioned_and_deterministic(demo_analyses):
    analysis, y, _ = demo_analyses[SHORT_TRACK]
    assert analysis.features.shape == (analysis.n_beats, N_AUDIO_FEATURES)
    assert analysis.features.dtype == np.float32
    assert np.all(np.isfinite(analysis.features))
    assert analysis.feature_version == FEATURE_VERSION
    again = analyze(y, ANALYSIS_SR, name=SHORT_TRACK)
    np.testing.assert_array_equal(again.features, analysis.features)
    np.testing.assert_array_equal(again.beat_samples, analysis.beat_samples)
    np.testing.assert_array_equal(again.bar_positions, analysis.bar_positions)


def test_features_say_what_a_listener_hears(demo_analyses):
    analysis, _, _ = demo_analyses[SHORT_TRACK]
    f = analysis.features
    bar = f[:, FEATURE_GROUPS["bar_position"]]
    np.testing.assert_array_equal(bar.argmax(axis=1), analysis.bar_positions)
    np.testing.assert_allclose(f[:, FEATURE_GROUPS["band_energy"]].sum(axis=1), 1.0, atol=1e-4)
    timing = f[:, FEATURE_GROUPS["timing"]]
    assert np.median(timing[:, 0]) == pytest.approx(60.0 / SPEC_BY_NAME[SHORT_TRACK].tempo_bpm, rel=0.03)
    position = f[:, FEATURE_GROUPS["position"]]
    assert np.all(np.diff(position[:, 0]) > 0) and 0 <= position[0, 0] and position[-1, 0] < 1
    assert position[:, 1].min() >= 0 and position[:, 1].max() <= 1
    # The chorus is louder than the intro: the loudness features see it.
    rms_db = f[:, FEATURE_GROUPS["loudness"]][:, 0]
    n = analysis.n_beats
    assert rms_db[n // 2 : 3 * n // 4].mean() > rms_db[: n // 8].mean() + 6.0


def test_warm_up_runs_the_whole_analysis_on_its_clicks():
    # The warm-up must go through the beat tracker and the features, or a worker's first real
    # upload would still pay the compilation: it finds the clicks' 120 BPM grid.
    warm_up()
    analysis = compile_kernels()
    assert analysis.tempo_bpm == pytest.approx(120, rel=0.03)
    spacing_seconds = np.diff(analysis.beat_samples[1:-1]) / analysis.sample_rate
    assert np.median(spacing_seconds) == pytest.approx(0.5, abs=0.02)
    assert analysis.features.shape == (analysis.n_beats, N_AUDIO_FEATURES)


# --- decoding ----------------------------------------------------------------------------------

def write_track(tmp_path, demo_corpus_dir, suffix: str, *, sr: int = ANALYSIS_SR, channels: int = 1, **kwargs):
    y, _ = sf.read(demo_corpus_dir / f"{SHORT_TRACK}.wav", dtype="float32")
    if sr != ANALYSIS_SR:
        import librosa

        y = librosa.resample(y, orig_sr=ANALYSIS_SR, target_sr=sr)
    data = np.stack([y] * channels, axis=1) if channels > 1 else y
    path = tmp_path / f"{SHORT_TRACK}{suffix}"
    sf.write(path, data, sr, **kwargs)
    return path


@pytest.mark.parametrize(
    ("suffix", "kwargs"),
    [(".flac", {}), (".ogg", {"format": "OGG", "subtype": "VORBIS"}), (".mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"})],
)
def test_flac_ogg_and_mp3_load_and_analyse(tmp_path, demo_corpus_dir, suffix, kwargs):
    path = write_track(tmp_path, demo_corpus_dir, suffix, sr=44100, **kwargs)
    analysis, y, source_sr = analyze_file(path)
    assert source_sr == 44100
    assert y.dtype == np.float32 and y.ndim == 1
    truth, _ = read_beats(demo_corpus_dir / f"{SHORT_TRACK}.beats.txt")
    assert beat_f_measure(truth, analysis) >= 0.9
    assert analysis.tempo_bpm == pytest.approx(SPEC_BY_NAME[SHORT_TRACK].tempo_bpm, rel=0.02)


def test_stereo_is_downmixed_and_resampled(tmp_path, demo_corpus_dir):
    path = write_track(tmp_path, demo_corpus_dir, ".wav", sr=44100, channels=2, subtype="FLOAT")
    y, source_sr = load_audio(path)
    assert source_sr == 44100
    assert y.ndim == 1 and y.dtype == np.float32
    assert y.size == pytest.approx(SPEC_BY_NAME[SHORT_TRACK].duration_seconds * ANALYSIS_SR, abs=2)


# --- refusals ----------------------------------------------------------------------------------

def test_unsupported_extension_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not audio")
    with pytest.raises(UnsupportedAudio, match="notes.txt: unsupported file type '.txt'"):
        load_audio(path)


def test_corrupt_bytes_are_refused(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(CorruptAudio, match="broken.wav: cannot be decoded"):
        analyze_file(path)


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "nothing.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudio, match="nothing.wav: the file is empty"):
        analyze_file(path)


def test_wav_without_samples_is_refused(tmp_path):
    path = tmp_path / "no-samples.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), ANALYSIS_SR)
    with pytest.raises(EmptyAudio, match="no-samples.wav: the file holds no audio samples"):
        analyze_file(path)


def test_silent_file_is_refused(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.full(10 * ANALYSIS_SR, 1e-4, dtype=np.float32), ANALYSIS_SR, subtype="FLOAT")
    with pytest.raises(SilentAudio, match=r"quiet.wav: silent \(peak -80.0 dBFS"):
        analyze_file(path)


def test_too_few_beats_is_refused(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, clicks(5.0), ANALYSIS_SR)
    with pytest.raises(TooFewBeats, match=rf"short.wav: \d+ beats found, at least {MIN_BEATS} needed"):
        analyze_file(path)


def test_too_long_is_refused_from_the_header_before_decoding(tmp_path, demo_corpus_dir, monkeypatch):
    path = demo_corpus_dir / f"{SHORT_TRACK}.wav"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a file that the header already shows is too long")

    monkeypatch.setattr(audio.sf, "read", no_decoding)
    with pytest.raises(TooLongAudio, match=rf"{SHORT_TRACK}.wav: 31.8 s long, at most 10.0 s allowed"):
        analyze_file(path, max_seconds=10.0)


def test_analyze_needs_the_analysis_sample_rate():
    with pytest.raises(ValueError, match="needs 22050 Hz audio, got 44100 Hz"):
        analyze(clicks(20.0), 44100, name="clicks")


# --- storage -----------------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path, demo_analyses):
    analysis, _, _ = demo_analyses[SHORT_TRACK]
    path = tmp_path / "analysis.npz"
    analysis.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["analysis.npz"]  # no temporary file left behind
    loaded = TrackAnalysis.load(path)
    np.testing.assert_array_equal(loaded.beat_samples, analysis.beat_samples)
    np.testing.assert_array_equal(loaded.bar_positions, analysis.bar_positions)
    np.testing.assert_array_equal(loaded.features, analysis.features)
    assert loaded.beat_samples.dtype == np.int64 and loaded.bar_positions.dtype == np.int8
    assert loaded.features.dtype == np.float32
    assert (loaded.tempo_bpm, loaded.duration_seconds, loaded.sample_rate, loaded.feature_version) == (
        analysis.tempo_bpm, analysis.duration_seconds, analysis.sample_rate, analysis.feature_version,
    )
    with open(path, "rb") as f:  # a file object, as storage backends hand out, loads too
        assert TrackAnalysis.load(f).n_beats == analysis.n_beats


def test_load_refuses_another_feature_version(tmp_path, demo_analyses):
    analysis, _, _ = demo_analyses[SHORT_TRACK]
    path = tmp_path / "old.npz"
    TrackAnalysis(
        beat_samples=analysis.beat_samples, bar_positions=analysis.bar_positions, features=analysis.features,
        tempo_bpm=analysis.tempo_bpm, duration_seconds=analysis.duration_seconds,
        sample_rate=analysis.sample_rate, feature_version="beat-features-v0",
    ).save(path)
    with pytest.raises(AnalysisVersionError, match=f"old.npz: .*'beat-features-v0'.*'{FEATURE_VERSION}'"):
        TrackAnalysis.load(path)


def test_inconsistent_shapes_are_refused(demo_analyses):
    analysis, _, _ = demo_analyses[SHORT_TRACK]
    with pytest.raises(ValueError, match="inconsistent analysis shapes"):
        TrackAnalysis(
            beat_samples=analysis.beat_samples[:-1], bar_positions=analysis.bar_positions,
            features=analysis.features, tempo_bpm=1.0, duration_seconds=1.0, sample_rate=ANALYSIS_SR,
            feature_version=FEATURE_VERSION,
        )


def test_file_sha256(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc" * 1_000_000)
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1_000_000).hexdigest()


# --- the source at its own fidelity (what a retarget delivers) ---------------------------------

@pytest.mark.parametrize("sr, channels, subtype", [(44100, 2, "PCM_16"), (48000, 1, "PCM_24"), (96000, 2, "FLOAT")])
def test_load_native_keeps_the_files_rate_channels_and_sample_format(tmp_path, sr, channels, subtype):
    rng = np.random.default_rng(0)
    data = (0.2 * np.clip(rng.standard_normal((sr // 2, channels)), -4, 4)).astype(np.float32)
    path = tmp_path / "source.wav"
    sf.write(path, data, sr, subtype=subtype)
    native = audio.load_native(path)
    assert (native.sample_rate, native.channels, native.subtype, native.frames) == (sr, channels, subtype, sr // 2)
    np.testing.assert_allclose(native.samples, data, atol=1e-4)
    part = audio.load_native(path, start=100, stop=300)
    np.testing.assert_array_equal(part.samples, native.samples[100:300])


@pytest.mark.parametrize("channels, subtype, reason", [
    (3, "PCM_16", "3 channels; retargeting keeps mono or stereo as it is and will not downmix"),
    (1, "PCM_U8", "8-bit samples"),
])
def test_a_source_whose_fidelity_cannot_be_kept_is_refused_in_one_line(tmp_path, channels, subtype, reason):
    path = tmp_path / "odd.wav"
    sf.write(path, np.zeros((1000, channels), np.float32), 44100, subtype=subtype)
    with pytest.raises(audio.UnsupportedFidelity, match=reason) as refused:
        audio.load_native(path)
    assert "\n" not in str(refused.value) and str(refused.value).startswith("odd.wav: ")


@pytest.mark.parametrize("source, wav, flac", [
    ("PCM_16", "PCM_16", "PCM_16"), ("PCM_24", "PCM_24", "PCM_24"), ("PCM_32", "PCM_32", "PCM_24"),
    ("FLOAT", "FLOAT", "PCM_24"), ("VORBIS", "PCM_16", "PCM_16"), ("MPEG_LAYER_III", "PCM_16", "PCM_16"),
])
def test_the_delivered_sample_format_follows_the_source(source, wav, flac):
    assert audio.delivery_subtype(source, "WAV") == wav
    assert audio.delivery_subtype(source, "FLAC") == flac


def test_the_beat_grid_maps_to_the_sources_rate_at_the_same_moments():
    grid = np.array([512, 1024, 22050, 44100])
    np.testing.assert_array_equal(audio.native_beat_grid(grid, ANALYSIS_SR, 44100, 10**6), 2 * grid)
    np.testing.assert_array_equal(audio.native_beat_grid(grid, ANALYSIS_SR, 48000, 10**6), [1115, 2229, 48000, 96000])
    np.testing.assert_array_equal(audio.native_beat_grid(grid, ANALYSIS_SR, 48000, 90000)[-1], 90000)


def test_file_sound_edges_reads_only_the_edges_and_agrees_with_the_whole(tmp_path):
    sr = 48000
    rng = np.random.default_rng(1)
    data = np.zeros((3 * sr, 2), np.float32)
    data[sr // 10 :] = 0.2 * rng.standard_normal((3 * sr - sr // 10, 2))  # 100 ms of silence, then sound
    data[-sr // 5 :] = 0.0  # 200 ms of trailing silence
    path = tmp_path / "edges.wav"
    sf.write(path, data, sr, subtype="PCM_24")
    beat_samples = np.array([11025, 22050, 44100])  # at the analysis rate: 0.5 s .. 2 s
    edges = audio.file_sound_edges(path, beat_samples, ANALYSIS_SR)
    whole = audio.sound_edges(data[: sr // 2], data[2 * sr :], sr)
    assert edges == whole
    assert edges.lead_in_seconds == pytest.approx(0.4 + audio.SOUND_EDGE_MARGIN_MS / 1000, abs=1e-3)
    assert edges.ring_out_seconds == pytest.approx(0.8 + audio.SOUND_EDGE_MARGIN_MS / 1000, abs=1e-3)

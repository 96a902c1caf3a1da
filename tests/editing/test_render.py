"""editing/render.py: what a listener would notice (length, seams, clicks, loudness) and atomic writes."""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from editing.audio import SoundEdges, sound_edges
from editing.baselines import bar_aligned_cut
from editing.edit import Action, EditBuilder, EditError, apply_actions
from editing.render import (
    DEFAULT_CROSSFADE_MS,
    EDGE_FADE_MS,
    LONG_CROSSFADE_MS,
    PEAK_CEILING_DBFS,
    TARGET_LUFS,
    RenderError,
    integrated_loudness,
    render_edit,
    render_native,
    write_audio,
)
from tests.editing.factories import masked_rollout, random_target

SR = 22050
SAMPLES_PER_BEAT = SR // 2  # 120 BPM
N_BEATS = 64
EDGE = int(round(EDGE_FADE_MS * SR / 1000))


def bars(n: int) -> np.ndarray:
    return (np.arange(n) % 4).astype(np.int8)


@pytest.fixture(scope="module")
def click_track() -> tuple[np.ndarray, np.ndarray]:
    """(audio, beat_samples): a decaying click on every beat over a tone that changes pitch every bar, 1 s tail."""
    beat_samples = np.arange(N_BEATS + 1, dtype=np.int64) * SAMPLES_PER_BEAT
    n = beat_samples[-1] + SR
    t = np.arange(n) / SR
    bar = np.minimum(np.arange(n) // (4 * SAMPLES_PER_BEAT), N_BEATS // 4 - 1)
    freq = 220.0 * 2.0 ** ((bar % 5) / 12.0)
    phase = 2 * np.pi * np.cumsum(freq) / SR
    tone = 0.25 * np.sin(phase)
    since_beat = (np.arange(n) % SAMPLES_PER_BEAT) / SR
    click = 0.5 * np.exp(-since_beat / 0.01) * np.sin(2 * np.pi * 1500 * since_beat)
    return (tone + click).astype(np.float32), beat_samples


def random_edit(rng: np.random.Generator, n_track_beats: int, bar_positions: np.ndarray, n: int = 32):
    """A masked random retarget of a random ``n``-beat passage to a random reachable target."""
    start = int(rng.integers(0, n_track_beats - n + 1))
    passage = bar_positions[start : start + n]
    builder = EditBuilder(n, passage, excerpt_start=start, target_beats=random_target(rng, passage))
    masked_rollout(rng, builder)
    return builder.build()


def keep_all(n: int) -> list[int]:
    """The actions of an edit that changes nothing: KEEP every middle beat of regular bars."""
    return [Action.KEEP] * (n - 8)


def test_keep_only_renders_back_to_the_source(click_track):
    y, beat_samples = click_track
    edit = apply_actions(keep_all(32), excerpt_start=8, bar_positions=bars(32), target_beats=32)
    result = render_edit(y, SR, beat_samples, edit, normalize=False)
    source = y[beat_samples[8] : beat_samples[40]]
    assert result.audio.shape == source.shape
    np.testing.assert_array_equal(result.audio[EDGE:-EDGE], source[EDGE:-EDGE])
    assert result.seam_seconds == ()
    # Normalised, it is the same audio up to one gain (the limiter has nothing to do at -20 LUFS here).
    loud = render_edit(y, SR, beat_samples, edit).audio
    gain = np.dot(loud, result.audio) / np.dot(result.audio, result.audio)
    np.testing.assert_allclose(loud[EDGE:-EDGE], gain * source[EDGE:-EDGE], atol=1e-5)


def test_cut_edit_lasts_as_long_as_its_kept_beats(click_track):
    y, beat_samples = click_track
    # Bars 0, 2 and 4 of an 8-bar passage, then its final bar (STOP jumps there).
    actions = [Action.CUT] * 4 + [Action.KEEP] * 4 + [Action.CUT] * 4 + [Action.KEEP] * 4 + [Action.STOP]
    edit = apply_actions(actions, excerpt_start=0, bar_positions=bars(32), target_beats=16)
    result = render_edit(y, SR, beat_samples, edit)
    assert result.audio.shape[0] == 16 * SAMPLES_PER_BEAT
    assert result.duration_seconds == pytest.approx(8.0)
    np.testing.assert_allclose(result.beat_starts_seconds, np.arange(17) * 0.5)
    assert result.track_beats.tolist() == [b for bar in (0, 8, 16, 28) for b in range(bar, bar + 4)]
    assert result.seam_seconds == (2.0, 4.0, 6.0)
    timeline = result.timeline()
    assert timeline["seam_seconds"] == [2.0, 4.0, 6.0] and len(timeline["beat_starts_seconds"]) == 17


def test_seams_do_not_click_on_a_tone(click_track):
    """A hard cut from a tone's peak to its trough clicks; the crossfade does not."""
    _, beat_samples = click_track
    # 200.125 Hz peaks at 2.0 s (end of beat 3, the opening bar's last) and dips at 6.0 s (start of beat 12,
    # the final bar's first): the worst place for the one seam of the shortest retarget.
    tone = (0.5 * np.sin(2 * np.pi * 200.125 * np.arange(beat_samples[-1] + SR) / SR)).astype(np.float32)
    edit = apply_actions([Action.STOP], excerpt_start=0, bar_positions=bars(16), target_beats=8)
    source_jump = np.abs(np.diff(tone)).max()
    hard = render_edit(tone, SR, beat_samples, edit, crossfade_ms=0, normalize=False).audio
    smooth = render_edit(tone, SR, beat_samples, edit, normalize=False).audio
    assert np.abs(np.diff(hard)).max() > 10 * source_jump  # the measure sees a click
    assert np.abs(np.diff(smooth)).max() <= 1.02 * source_jump


def test_crossfade_action_gives_a_long_crossfade():
    """The outgoing tone is still heard 100 ms after a CROSSFADE seam, but not after a CUT seam."""
    beat_samples = np.arange(17, dtype=np.int64) * SAMPLES_PER_BEAT
    y = np.zeros(beat_samples[-1] + SR, dtype=np.float32)
    # A tone in beats 3 and 4 only: after the seam from beat 3 (the opening bar's last) to the silent beat 5,
    # whatever is heard is the fade-out.
    y[3 * SAMPLES_PER_BEAT : 5 * SAMPLES_PER_BEAT] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * SAMPLES_PER_BEAT) / SR)
    at_100ms = slice(4 * SAMPLES_PER_BEAT + int(0.095 * SR), 4 * SAMPLES_PER_BEAT + int(0.105 * SR))
    assert 100 < LONG_CROSSFADE_MS
    cut = apply_actions([Action.CUT] + [Action.KEEP] * 7, excerpt_start=0, bar_positions=bars(16), target_beats=15)
    crossfade = apply_actions([Action.CROSSFADE] + [Action.KEEP] * 7, excerpt_start=0, bar_positions=bars(16),
                              target_beats=15)
    cut_audio = render_edit(y, SR, beat_samples, cut, normalize=False).audio
    long_audio = render_edit(y, SR, beat_samples, crossfade, normalize=False).audio
    assert np.abs(cut_audio[at_100ms]).max() == 0.0
    assert np.abs(long_audio[at_100ms]).max() > 0.1


def test_normalised_output_hits_the_target_and_never_clips():
    """A quiet track with loud spikes: gaining it to -20 LUFS pushes the spikes over full scale; the limiter holds them."""
    rng = np.random.default_rng(0)
    beat_samples = np.arange(33, dtype=np.int64) * SAMPLES_PER_BEAT
    y = (0.02 * rng.standard_normal(beat_samples[-1] + SR)).astype(np.float32)
    y[beat_samples[:-1] + 100] = 0.99
    edit = apply_actions(keep_all(32), excerpt_start=0, bar_positions=bars(32), target_beats=32)
    audio = render_edit(y, SR, beat_samples, edit).audio
    assert np.abs(audio).max() <= 10 ** (PEAK_CEILING_DBFS / 20)
    loudness = pyloudnorm.Meter(SR).integrated_loudness(audio.astype(np.float64))
    assert loudness == pytest.approx(TARGET_LUFS, abs=1.0)


def test_loudness_is_pyloudnorms_bs1770_value(demo_analyses):
    rng = np.random.default_rng(0)
    for sr in (22050, 44100):
        ramp = rng.standard_normal(3 * sr + 17) * np.linspace(0.001, 0.5, 3 * sr + 17)
        assert integrated_loudness(ramp, sr) == pytest.approx(pyloudnorm.Meter(sr).integrated_loudness(ramp), abs=1e-9)
    for analysis, y, _ in demo_analyses.values():
        ours = integrated_loudness(y, analysis.sample_rate)
        assert ours == pytest.approx(pyloudnorm.Meter(analysis.sample_rate).integrated_loudness(y.astype(np.float64)), abs=1e-6)
    assert integrated_loudness(np.zeros(SR), SR) == float("-inf")
    with pytest.raises(RenderError, match="at least one 400 ms block"):
        integrated_loudness(np.zeros(100), SR)


def test_a_silent_excerpt_renders_silent():
    beat_samples = np.arange(17, dtype=np.int64) * SAMPLES_PER_BEAT
    edit = apply_actions(keep_all(16), excerpt_start=0, bar_positions=bars(16), target_beats=16)
    audio = render_edit(np.zeros(beat_samples[-1], dtype=np.float32), SR, beat_samples, edit).audio
    assert audio.shape == (16 * SAMPLES_PER_BEAT,) and not audio.any()


def test_the_shortest_passage_renders_as_written(click_track):
    y, beat_samples = click_track
    edit = apply_actions([], excerpt_start=4, bar_positions=bars(8), target_beats=8)  # two bars, nothing to edit
    result = render_edit(y, SR, beat_samples, edit, normalize=False)
    assert result.audio.shape == (8 * SAMPLES_PER_BEAT,) and result.seam_seconds == ()
    np.testing.assert_array_equal(result.audio[EDGE:-EDGE], y[beat_samples[4] + EDGE : beat_samples[12] - EDGE])


@pytest.mark.parametrize("target", [16, 24, 27, 40, 64])
def test_a_retarget_lasts_its_target_and_starts_and_ends_like_the_source(click_track, target):
    # What a user asked for: the duration they typed (to the beat), the passage's opening and ending as written.
    y, beat_samples = click_track
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=target), excerpt_start=16,
                         bar_positions=bars(32), target_beats=target)
    result = render_edit(y, SR, beat_samples, edit, normalize=False)
    assert result.duration_seconds == pytest.approx(target * 0.5)
    assert result.audio.shape == (target * SAMPLES_PER_BEAT,)
    bar = 4 * SAMPLES_PER_BEAT
    np.testing.assert_array_equal(result.audio[EDGE:bar], y[beat_samples[16] + EDGE : beat_samples[16] + bar])
    # The final bar is joined by a seam whose crossfade lies inside its first beat; the rest is the source's.
    fade = int(round(DEFAULT_CROSSFADE_MS * SR / 1000))
    np.testing.assert_array_equal(result.audio[-bar + fade : -EDGE], y[beat_samples[48] - bar + fade : beat_samples[48] - EDGE])


def test_render_rejects_bad_inputs(click_track):
    y, beat_samples = click_track
    edit = apply_actions(keep_all(16), excerpt_start=50, bar_positions=bars(16), target_beats=16)
    with pytest.raises(EditError, match="run past the track"):
        render_edit(y, SR, beat_samples, edit)
    ok = apply_actions(keep_all(16), excerpt_start=0, bar_positions=bars(16), target_beats=16)
    with pytest.raises(RenderError, match="increase strictly"):
        render_edit(y, SR, beat_samples[::-1], ok)
    with pytest.raises(RenderError, match="mono float"):
        render_edit(np.stack([y, y]), SR, beat_samples, ok)
    with pytest.raises(RenderError, match="must be >= 0"):
        render_edit(y, SR, beat_samples, ok, crossfade_ms=-1)


def test_write_audio_is_atomic(tmp_path, click_track):
    y, _ = click_track
    path = tmp_path / "edits" / "a.wav"
    write_audio(path, y[:SR], SR)
    back, sr = sf.read(path, dtype="float32")
    assert sr == SR and back.shape == (SR,)
    np.testing.assert_allclose(back, y[:SR], atol=1e-4)
    with pytest.raises(RenderError, match="b.xyz: cannot write audio"):
        write_audio(tmp_path / "edits" / "b.xyz", y[:SR], SR)
    with pytest.raises(RenderError, match="non-finite"):
        write_audio(tmp_path / "edits" / "c.wav", np.array([np.nan], dtype=np.float32), SR)
    assert sorted(p.name for p in (tmp_path / "edits").iterdir()) == ["a.wav"]  # no temp files left


def test_no_clicks_at_any_seam_of_random_edits_on_demo_audio(demo_analyses):
    rng = np.random.default_rng(1)
    fade = int(round(DEFAULT_CROSSFADE_MS * SR / 1000))
    n_seams = 0
    for name, (analysis, y, _) in demo_analyses.items():
        source_jump = np.abs(np.diff(y)).max()
        for _ in range(15):
            edit = random_edit(rng, analysis.n_beats, analysis.bar_positions)
            result = render_edit(y, analysis.sample_rate, analysis.beat_samples, edit, normalize=False)
            for seam in result.seam_seconds:
                at = int(round(seam * analysis.sample_rate))
                window = result.audio[max(0, at - 2) : at + 5 * fade]
                jump = np.abs(np.diff(window)).max()
                assert jump <= source_jump, f"{name}: click of {jump:.3f} at {seam:.2f} s (source max {source_jump:.3f})"
                n_seams += 1
    assert n_seams > 200


def test_seams_stay_within_the_local_jumps_of_the_joined_audio(demo_analyses):
    """Stricter than the whole-track bound: across each seam the waveform moves no faster than the two joined
    stretches of source do (times sqrt(2), the most an equal-power sum can add); hard cuts break this."""
    rng = np.random.default_rng(2)
    fade = int(round(DEFAULT_CROSSFADE_MS * SR / 1000))
    worst = {0.0: 0.0, DEFAULT_CROSSFADE_MS: 0.0}
    for analysis, y, _ in demo_analyses.values():
        beat_samples = analysis.beat_samples
        for _ in range(8):
            edit = random_edit(rng, analysis.n_beats, analysis.bar_positions)
            beats, transitions = edit.track_beats(), edit.transitions()
            for crossfade_ms in worst:
                result = render_edit(y, SR, beat_samples, edit, crossfade_ms=crossfade_ms, normalize=False)
                for k in np.flatnonzero(transitions >= 2):
                    at = int(round(result.beat_starts_seconds[k] * SR))
                    outgoing_end, incoming_start = beat_samples[beats[k - 1] + 1], beat_samples[beats[k]]
                    local = max(
                        np.abs(np.diff(y[outgoing_end - 1 : outgoing_end + fade])).max(),
                        np.abs(np.diff(y[incoming_start - 1 : incoming_start + fade])).max(),
                    )
                    jump = np.abs(np.diff(result.audio[at - 1 : at + fade])).max()
                    worst[crossfade_ms] = max(worst[crossfade_ms], jump / local)
    assert worst[DEFAULT_CROSSFADE_MS] <= np.sqrt(2)
    assert worst[0.0] > 2.0  # without crossfades the same edits click


# --------------------------------------------------------------------------- stereo, native rate, lead-in and ring-out

def _stereo(y: np.ndarray) -> np.ndarray:
    """Two different channels: the mono signal left, a delayed and quieter copy of it right."""
    return np.stack([y, 0.6 * np.roll(y, 37)], axis=1).astype(np.float32)


def test_stereo_renders_each_channel_as_its_own_mono_render(click_track):
    """Seams are crossfaded per channel: each output channel is that channel rendered alone."""
    y, beat_samples = click_track
    stereo = _stereo(y)
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=20), excerpt_start=8,
                         bar_positions=bars(32), target_beats=20)
    both = render_edit(stereo, SR, beat_samples, edit, normalize=False)
    assert both.audio.shape == (20 * SAMPLES_PER_BEAT, 2) and both.seam_seconds
    for channel in range(2):
        alone = render_edit(np.ascontiguousarray(stereo[:, channel]), SR, beat_samples, edit, normalize=False)
        np.testing.assert_allclose(both.audio[:, channel], alone.audio, atol=1e-6)


def test_stereo_loudness_is_pyloudnorms_and_one_gain_keeps_the_image(click_track):
    y, beat_samples = click_track
    stereo = _stereo(y)
    assert integrated_loudness(stereo, SR) == pytest.approx(
        pyloudnorm.Meter(SR).integrated_loudness(stereo.astype(np.float64)), abs=1e-6)
    edit = apply_actions(keep_all(32), excerpt_start=0, bar_positions=bars(32), target_beats=32)
    loud = render_edit(stereo, SR, beat_samples, edit).audio
    raw = render_edit(stereo, SR, beat_samples, edit, normalize=False).audio
    assert pyloudnorm.Meter(SR).integrated_loudness(loud.astype(np.float64)) == pytest.approx(TARGET_LUFS, abs=0.5)
    assert np.abs(loud).max() <= 10 ** (PEAK_CEILING_DBFS / 20)
    # The right channel stays 0.6 of the left (delayed) wherever the limiter left the gain alone.
    ratio = np.linalg.norm(loud[:, 1]) / np.linalg.norm(loud[:, 0])
    assert ratio == pytest.approx(np.linalg.norm(raw[:, 1]) / np.linalg.norm(raw[:, 0]), rel=1e-3)


@pytest.fixture(scope="module")
def song() -> tuple[np.ndarray, np.ndarray, int, int]:
    """(audio, beat_samples, lead_in, ring_out): silence, a lead-in before the first beat, 32 beats, a decaying final hit."""
    silence, lead_in, ring_out = SR // 4, SR // 3, 2 * SR
    rng = np.random.default_rng(3)
    beat_samples = silence + lead_in + np.arange(33, dtype=np.int64) * SAMPLES_PER_BEAT
    n = int(beat_samples[-1]) + ring_out + SR // 2  # then half a second of digital silence
    y = np.zeros(n, dtype=np.float32)
    y[silence : silence + lead_in] = 0.2 * np.sin(2 * np.pi * 330 * np.arange(lead_in) / SR)  # the pickup
    for b in beat_samples[:-1]:
        y[b : b + SAMPLES_PER_BEAT] += 0.3 * np.exp(-np.arange(SAMPLES_PER_BEAT) / (0.05 * SR)) * rng.standard_normal(SAMPLES_PER_BEAT)
    decay = np.arange(ring_out)
    y[beat_samples[-1] : beat_samples[-1] + ring_out] = 0.5 * np.exp(-decay / (0.3 * SR)) * np.sin(2 * np.pi * 110 * decay / SR)
    return y, beat_samples, lead_in, ring_out


def _audible_span(y: np.ndarray) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(y) > 1e-3)
    return int(loud[0]), int(loud[-1]) + 1


def test_a_whole_track_retarget_opens_with_the_lead_in_and_ends_with_the_decay(song):
    y, beat_samples, lead_in, ring_out = song
    edges = sound_edges(y[: beat_samples[0]], y[beat_samples[-1]:], SR)
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=20), excerpt_start=0,
                         bar_positions=bars(32), target_beats=20)
    result = render_edit(y, SR, beat_samples, edit, normalize=False, lead_in_samples=edges.lead_in_samples,
                         ring_out_samples=edges.ring_out_samples)
    start, end = _audible_span(y)
    # The pickup plays from its first sound (the leading silence is trimmed) into beat 0, as in the source.
    head = int(beat_samples[0]) - start
    np.testing.assert_array_equal(result.audio[: edges.lead_in_samples], y[beat_samples[0] - edges.lead_in_samples : beat_samples[0]])
    assert head <= edges.lead_in_samples <= head + SR // 50
    assert result.beat_starts_seconds[0] == pytest.approx(edges.lead_in_samples / SR)
    # The final hit rings out to its end, sample for sample; the trailing digital silence is left out.
    tail = end - int(beat_samples[-1])
    assert tail <= edges.ring_out_samples <= tail + SR // 50
    np.testing.assert_array_equal(result.audio[-edges.ring_out_samples :],
                                  y[beat_samples[-1] : beat_samples[-1] + edges.ring_out_samples])
    assert result.duration_seconds == pytest.approx((edges.lead_in_samples + 20 * SAMPLES_PER_BEAT + edges.ring_out_samples) / SR)
    # Beat starts and seams count in the output's seconds, after the lead-in.
    without = render_edit(y, SR, beat_samples, edit, normalize=False)
    np.testing.assert_allclose(result.beat_starts_seconds, without.beat_starts_seconds + edges.lead_in_samples / SR)
    np.testing.assert_allclose(result.seam_seconds, np.add(without.seam_seconds, edges.lead_in_samples / SR))


def test_a_passage_inside_the_track_ends_at_its_own_last_beat(song):
    y, beat_samples, _, _ = song
    edges = sound_edges(y[: beat_samples[0]], y[beat_samples[-1]:], SR)
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(16), target_beats=12), excerpt_start=8,
                         bar_positions=bars(16), target_beats=12)
    result = render_edit(y, SR, beat_samples, edit, normalize=False, lead_in_samples=edges.lead_in_samples,
                         ring_out_samples=edges.ring_out_samples)
    assert result.audio.shape == (12 * SAMPLES_PER_BEAT,)
    assert result.beat_starts_seconds[0] == 0.0
    np.testing.assert_array_equal(result.audio[-SAMPLES_PER_BEAT : -EDGE], y[beat_samples[23] : beat_samples[24] - EDGE])


def test_a_source_that_starts_on_its_first_beat_has_no_lead_in_and_silence_has_no_ring_out(song):
    y, beat_samples, _, _ = song
    assert sound_edges(np.zeros(500, np.float32), np.zeros((700, 2), np.float32), SR) == SoundEdges(0, 0, SR)
    edges = sound_edges(y[:0], y[beat_samples[-1]:], SR)
    assert edges.lead_in_samples == 0 and edges.ring_out_samples > 0


@pytest.mark.parametrize("sample_rate, channels", [(44100, 2), (48000, 1), (96000, 2)])
def test_render_native_keeps_the_sources_rate_and_channels(song, sample_rate, channels):
    """The analysis grid (22,050 Hz) lands on the same moments of a source at its own rate."""
    y, beat_samples, _, _ = song
    from scipy.signal import resample_poly

    native = resample_poly(y, sample_rate, SR).astype(np.float32)
    native = native[:, None] if channels == 1 else _stereo(native)
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=48), excerpt_start=0,
                         bar_positions=bars(32), target_beats=48)
    result = render_native(native, sample_rate, beat_samples, SR, edit, normalize=False)
    edges = sound_edges(y[: beat_samples[0]], y[beat_samples[-1]:], SR)
    analysis_rate = render_edit(y, SR, beat_samples, edit, normalize=False, lead_in_samples=edges.lead_in_samples,
                                ring_out_samples=edges.ring_out_samples)
    assert result.sample_rate == sample_rate and result.audio.shape[1] == channels
    # The same lead-in, beats, seams and ring-out, to a few samples (the resampler's ringing moves the
    # edges of the sound by a sample or two).
    assert result.duration_seconds == pytest.approx(analysis_rate.duration_seconds, abs=0.001)
    np.testing.assert_allclose(result.beat_starts_seconds, analysis_rate.beat_starts_seconds, atol=2e-4)
    np.testing.assert_allclose(result.seam_seconds, analysis_rate.seam_seconds, atol=2e-4)
    # Heard the same from the first beat on: the native render brought back to 22,050 Hz is the analysis-rate render.
    back = resample_poly(result.audio[:, 0], SR, sample_rate)[int(round(result.beat_starts_seconds[0] * SR)):]
    ours = analysis_rate.audio[edges.lead_in_samples:]
    n = min(back.size, ours.size)
    assert np.corrcoef(back[:n], ours[:n])[0, 1] > 0.95  # white-noise hits: the hardest content to match


def test_render_refuses_more_than_two_channels_and_impossible_edges(click_track):
    y, beat_samples = click_track
    ok = apply_actions(keep_all(16), excerpt_start=0, bar_positions=bars(16), target_beats=16)
    with pytest.raises(RenderError, match="mono float samples"):
        render_edit(np.stack([y, y, y], axis=1), SR, beat_samples, ok)
    with pytest.raises(RenderError, match="lead-in of 5 samples"):
        render_edit(y, SR, beat_samples, ok, lead_in_samples=5)  # the first beat starts at sample 0
    with pytest.raises(RenderError, match="ring-out"):
        render_edit(y, SR, beat_samples, ok, ring_out_samples=10 * SR)


def test_write_audio_keeps_the_sample_format_asked(tmp_path, click_track):
    y, _ = click_track
    for subtype in ("PCM_16", "PCM_24", "FLOAT"):
        write_audio(tmp_path / f"{subtype}.wav", _stereo(y[:SR]), 48000, subtype=subtype)
        info = sf.info(tmp_path / f"{subtype}.wav")
        assert (info.subtype, info.samplerate, info.channels) == (subtype, 48000, 2)

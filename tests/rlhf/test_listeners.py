"""Simulated listeners: the Clip interface, loading by --listener, the default listener's terms, ties."""
from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from rlhf.evidence.listeners import (
    Clip,
    DefaultListener,
    ListenerError,
    clip_build,
    default_listener,
    listener_score,
    load_listener,
)
from rlhf.evidence.simulate import AnnotatorModel

SR = 8000
SECONDS_PER_BEAT = 0.5
# Eight bars of four beats, two four-bar phrases; each bar holds one chord (MIDI notes).
CHORDS = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (57, 60, 64)] * 2


def _track() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(audio, beat_samples, bar_positions) of the eight-bar chord track."""
    n = int(SECONDS_PER_BEAT * SR)
    t = np.arange(4 * n) / SR
    bars = [sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in chord) / 3 for chord in CHORDS]
    audio = (0.3 * np.concatenate(bars)).astype(np.float32)
    beat_samples = np.arange(len(CHORDS) * 4 + 1, dtype=np.int64) * n
    return audio, beat_samples, np.tile(np.arange(4, dtype=np.int8), len(CHORDS))


def _clip(source_beats: list[int], *, truth: bool = True, slip_from: int | None = None,
          target_beats: int | None = None) -> Clip:
    """The clip that plays ``source_beats`` of the chord track (no crossfade).

    ``slip_from``: the pipeline's bar positions slip by one beat from that beat on (a missed beat).
    """
    audio, beat_samples, bars = _track()
    pipeline = bars.copy()
    if slip_from is not None:
        pipeline[slip_from:] = (pipeline[slip_from:] + 1) % 4
    out = np.concatenate([audio[beat_samples[b]: beat_samples[b + 1]] for b in source_beats])
    starts = np.arange(len(source_beats) + 1) * SECONDS_PER_BEAT
    seams = [float(starts[i]) for i in range(1, len(source_beats)) if source_beats[i] != source_beats[i - 1] + 1]
    true_times = beat_samples[:-1] / SR
    return clip_build(audio=out, sample_rate=SR, output_beat_seconds=starts, source_beats=np.array(source_beats),
                      seam_seconds=seams, track_audio=audio, beat_samples=beat_samples,
                      bar_positions=pipeline,
                      truth=(true_times, bars) if truth else None, excerpt_start=0, n_source_beats=32,
                      target_beats=target_beats or len(source_beats))


def _jump(a: int, b: int, *, before: int = 4, after: int = 4) -> list[int]:
    """A seam from track beat ``a`` to ``b``, with ``before`` beats up to ``a`` and ``after`` from ``b``."""
    return list(range(a - before + 1, a + 1)) + list(range(b, b + after))


def test_clip_carries_exactly_the_documented_fields_and_is_frozen():
    names = {f.name for f in dataclasses.fields(Clip)}
    assert names == {
        "audio", "sample_rate", "seam_seconds", "output_beat_seconds", "source_beats", "track_audio",
        "track_beat_seconds", "track_downbeat_seconds", "true_beat_seconds", "true_downbeat_seconds",
        "source_start_seconds", "source_end_seconds", "target_seconds",
    }
    clip = _clip(list(range(8)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        clip.sample_rate = 1
    assert clip.audio.dtype == np.float32 and clip.track_audio.dtype == np.float32
    assert clip.output_beat_seconds.shape == (9,) and clip.seam_seconds == ()
    np.testing.assert_allclose(clip.true_downbeat_seconds, np.arange(8) * 4 * SECONDS_PER_BEAT)
    assert clip.target_seconds == pytest.approx(8 * SECONDS_PER_BEAT)
    assert _clip(list(range(8)), truth=False).true_beat_seconds is None


def test_a_seam_that_keeps_harmony_metre_and_phrase_costs_only_the_seam():
    listener = DefaultListener()
    # Beat 7 ends bar 1 (F); the natural next bar is bar 2 (G).  Bar 6 is G at the same phrase place.
    clean = listener.terms(_clip(_jump(7, 24)))
    assert clean["seams"] == pytest.approx(listener.seam_cost)
    assert clean["clash"] == pytest.approx(0.0, abs=0.05) and clean["metre"] == 0 and clean["phrase"] == 0
    assert listener(_clip(list(range(8)))) == 0.0  # no seam, on target: nothing to fault


def test_phrase_metre_and_harmony_breaks_each_cost():
    listener = DefaultListener()
    phrase = listener.terms(_clip(_jump(7, 16)))   # into bar 4 (C, first of a phrase) instead of bar 2
    metre = listener.terms(_clip(_jump(7, 26)))    # into the third beat of a bar
    clash = listener.terms(_clip(_jump(4, 21)))    # F -> F: no clash; F -> C at 16 would be one
    clashing = listener.terms(_clip(_jump(5, 2)))  # inside bar 1 (F) back into bar 0 (C): harmony jumps
    assert phrase["phrase"] == listener.phrase_cost and phrase["metre"] == 0
    assert metre["metre"] == listener.metre_cost
    assert clash["clash"] == pytest.approx(0.0, abs=0.05)
    assert clashing["clash"] > 1.0


def test_the_default_listener_counts_on_the_true_grid_not_the_pipelines():
    # The pipeline slipped a beat at beat 20: the seam below breaks the metre on its grid, not on the truth.
    edit = _jump(7, 24)
    assert default_listener(_clip(edit, slip_from=20)) == pytest.approx(default_listener(_clip(edit)))
    assert default_listener(_clip(edit, truth=False, slip_from=20)) < default_listener(_clip(edit))


def test_missing_the_target_duration_costs():
    on_target = default_listener(_clip(list(range(8))))
    long_asked = default_listener(_clip(list(range(8)), target_beats=12))  # 2 s short of what was asked
    assert on_target - long_asked == pytest.approx(DefaultListener.length_cost_per_second * (2.0 - 0.25))


def test_listeners_load_from_a_file_or_a_module(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("def score(clip):\n    return -len(clip.seam_seconds)\nNOT_CALLABLE = 3\n")
    mine = load_listener(f"{path}:score")
    assert listener_score(mine, _clip(_jump(7, 16))) == -1.0
    assert load_listener("rlhf.evidence.listeners:default_listener") is default_listener
    for spec, reason in [
        ("no-colon", "expected PATH.py:NAME or module:NAME"),
        (f"{tmp_path}/missing.py:score", "does not exist"),
        (f"{path}:absent", "has no 'absent'"),
        (f"{path}:NOT_CALLABLE", "not a callable"),
        ("rlhf.no_such_module:score", "cannot be imported"),
    ]:
        with pytest.raises(ListenerError, match=reason):
            load_listener(spec)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no audio device')\n")
    with pytest.raises(ListenerError, match="importing .* failed: RuntimeError: no audio device"):
        load_listener(f"{broken}:score")


def test_a_listener_must_return_a_finite_number():
    with pytest.raises(ListenerError, match="not a finite score"):
        listener_score(lambda clip: float("nan"), _clip(list(range(8))))
    with pytest.raises(ListenerError, match="not a number"):
        listener_score(lambda clip: "loud", _clip(list(range(8))))


def test_annotators_answer_tie_below_the_margin_and_grow_surer_with_it():
    rng = random.Random(0)
    model = AnnotatorModel(noise=0.0, tie_margin=0.1)
    assert {model.answer(m, rng)[:2] for m in (0.0, 0.05, -0.09)} == {("tie", 1)}
    assert all(model.answer(0.11, rng)[0] != "tie" for _ in range(200))
    confidences = [model.answer(m, rng)[1] for m in (0.2, 0.3, 0.7, 1.5, 3.0)]
    assert confidences == [1, 2, 3, 4, 5]
    assert model.win_probability(0.05) == 0.5
    assert model.win_probability(-0.05) == 0.5
    noisy = AnnotatorModel(noise=0.1)
    assert noisy.win_probability(50.0) == pytest.approx(0.95)
    clear = [noisy.answer(5.0, rng) for _ in range(4000)]
    assert np.mean([c == "a" for c, _, _ in clear]) == pytest.approx(0.95, abs=0.015)
    assert np.mean([r for _, _, r in clear]) == pytest.approx(0.1, abs=0.015)


def test_the_texture_listener_hears_phrase_entries_and_brightness_but_no_heuristic_measure():
    from rlhf.evidence.listeners import TextureListener, texture_listener

    # Into the first beat of the second four-bar phrase (beat 16) from the end of bar 2: an entry.
    entry = texture_listener.terms(_clip(_jump(7, 16)))
    # The same cut landing mid-phrase, on a downbeat (beat 12: bar 4 of phrase 1).
    inside = texture_listener.terms(_clip(_jump(7, 12)))
    assert entry["entry"] == 0.0 and inside["entry"] == TextureListener.entry_cost
    assert texture_listener(_clip(_jump(7, 16))) > texture_listener(_clip(_jump(7, 12)))
    # No seam, no seam costs; the same chords an octave higher after a seam cost brightness.
    whole = texture_listener.terms(_clip(list(range(0, 16))))
    assert whole["seams"] == whole["brightness"] == whole["entry"] == 0.0
    clip = _clip(_jump(7, 16))
    bright = dataclasses.replace(clip, audio=np.concatenate([
        clip.audio[: clip.audio.size // 2],
        np.sin(2 * np.pi * 3520 * np.arange(clip.audio.size - clip.audio.size // 2) / SR).astype(np.float32) * 0.3]))
    assert texture_listener.terms(bright)["brightness"] > entry["brightness"] + 1.0
    assert listener_score(load_listener("rlhf.evidence.listeners:texture_listener"), clip) == texture_listener(clip)

"""Simulated annotators: the hidden rule hears glitches; answers go through the annotation services."""
from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from annotations.models import Assignment, Judgement
from rlhf import simulate
from rlhf.simulate import AnnotatorModel, PreferenceRule, annotators_simulate
from tests.annotations.factories import make_comparison, make_edit, make_track

SR = 8000


def _tone(seconds: float, level: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_rule_penalises_loud_jumps_off_bar_seams_and_repeats():
    rule = PreferenceRule()
    bars = np.tile(np.arange(4), 8)
    smooth = np.concatenate([_tone(1.0, 0.3), _tone(1.0, 0.3)])
    jumpy = np.concatenate([_tone(1.0, 0.3), _tone(1.0, 0.03)])  # 20 dB drop at the seam
    beats = np.arange(8)
    on_bar = rule.score(smooth, SR, seam_seconds=[1.0], track_beats=beats, seam_output_beats=[4], bar_positions=bars)
    loud_jump = rule.score(jumpy, SR, seam_seconds=[1.0], track_beats=beats, seam_output_beats=[4], bar_positions=bars)
    off_bar = rule.score(smooth, SR, seam_seconds=[1.0], track_beats=np.array([0, 1, 2, 3, 5, 6, 7, 8]),
                         seam_output_beats=[4], bar_positions=bars)
    repeated = rule.score(smooth, SR, seam_seconds=[], track_beats=np.array([0, 1, 2, 3, 0, 1, 2, 3]),
                          seam_output_beats=[], bar_positions=bars)
    no_seam = rule.score(smooth, SR, seam_seconds=[], track_beats=beats, seam_output_beats=[], bar_positions=bars)
    assert no_seam == 0.0
    assert on_bar == pytest.approx(-0.5, abs=0.05)
    assert loud_jump == pytest.approx(-0.5 - 20 / 6, abs=0.2)
    assert off_bar == pytest.approx(-1.5, abs=0.05)
    assert repeated == pytest.approx(-4 * 0.15)


def test_rule_penalises_edits_far_from_their_target_length():
    # Without a length term the shortest edit (no seams at all) would always win.
    rule = PreferenceRule()
    bars = np.tile(np.arange(4), 8)
    audio = _tone(2.0, 0.3)
    two_beats = rule.score(audio, SR, seam_seconds=[], track_beats=np.arange(2), seam_output_beats=[],
                           bar_positions=bars, target_beats=24)
    on_target = rule.score(audio, SR, seam_seconds=[], track_beats=np.arange(24), seam_output_beats=[],
                           bar_positions=bars, target_beats=24)
    assert on_target == 0.0
    assert two_beats == pytest.approx(-22 * rule.length_cost)
    assert rule.score(audio, SR, seam_seconds=[], track_beats=np.arange(2), seam_output_beats=[],
                      bar_positions=bars) == 0.0  # no target given: no length term


def test_answers_follow_the_margin_with_the_configured_noise():
    rng = random.Random(0)
    model = AnnotatorModel(noise=0.1)
    clear = [model.answer(5.0, rng) for _ in range(4000)]
    assert np.mean([c == "a" for c, _, _ in clear]) == pytest.approx(0.95, abs=0.015)
    assert np.mean([r for _, _, r in clear]) == pytest.approx(0.1, abs=0.015)
    assert np.mean([conf == 5 for c, conf, r in clear if not r]) == 1.0
    close = [model.answer(0.1, rng) for _ in range(2000)]
    assert np.mean([conf for _, conf, r in close if not r]) == 1
    assert 0.45 < np.mean([c == "a" for c, _, _ in close]) < 0.65


@pytest.mark.django_db
def test_simulated_annotators_judge_through_the_assignment_service(storage_root, monkeypatch, settings):
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0
    monkeypatch.setattr(simulate, "track_load_analysis",
                        lambda track: SimpleNamespace(bar_positions=np.tile(np.arange(4), 16)))
    track = make_track()
    clean = make_edit(track, range(16))
    glitchy = make_edit(track, [0, 1, 2, 5, 6, 9, 10, 11, 13, 14, 15, 3])
    comparisons = [make_comparison(edit_a=clean, edit_b=glitchy, required_judgements=3),
                   make_comparison(edit_a=glitchy, edit_b=clean, required_judgements=3)]
    report = annotators_simulate(n_annotators=3, model=AnnotatorModel(noise=0.0), seed=1)
    assert report.n_judgements == 6 and report.n_random == 0
    assert Assignment.objects.filter(completed_at__isnull=False).count() == 6
    for c in comparisons:
        preferred = {j.comparison.edit_a_id if j.choice == "a" else j.comparison.edit_b_id
                     for j in Judgement.objects.filter(comparison=c)}
        assert preferred == {clean.pk}
    assert annotators_simulate(n_annotators=3, seed=2).n_judgements == 0  # nothing left open

"""Simulated annotators: the listener hears the stored renderings and the true grid; answers go through the annotation services."""
from __future__ import annotations

import numpy as np
import pytest

from annotations.models import Assignment, Judgement
from annotations.services import comparison_create, edit_create, track_load_analysis, track_load_truth
from editing.baselines import BASELINE_EDIT_SOURCES, BROKEN, HEURISTIC, baseline_actions
from editing.dense import dense_context
from editing.env import reachable_target
from rlhf.evidence.simulate import AnnotatorModel, annotators_simulate
from tests.rlhf.demo_data import demo_tracks


def _preferred(comparison) -> set[int]:
    return {j.comparison.edit_a_id if j.choice == "a" else j.comparison.edit_b_id
            for j in Judgement.objects.filter(comparison=comparison)}


@pytest.mark.django_db
def test_simulated_annotators_judge_through_the_assignment_service(storage_root, settings):
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0
    (track,) = demo_tracks(storage_root / "demo", n_tracks=1)
    truth = track_load_truth(track)
    assert truth is not None and truth[0].size > 16  # the demo corpus's ground truth came in with the audio
    analysis = track_load_analysis(track)
    start = int(np.flatnonzero(analysis.bar_positions == 0)[2])
    bars = analysis.bar_positions[start: start + 32]
    target = reachable_target(bars, 20)
    context = dense_context(analysis.features, analysis.beat_samples, analysis.bar_positions)
    common = dict(track=track, excerpt_start=start, n_source_beats=32, target_beats=target)
    clean = edit_create(actions=baseline_actions(HEURISTIC, rng=np.random.default_rng(0), context=context,
                                                 excerpt_start=start, bar_positions=bars, target_beats=target),
                        source=BASELINE_EDIT_SOURCES[HEURISTIC], **common)
    glitchy = edit_create(actions=baseline_actions(BROKEN, rng=np.random.default_rng(0), context=context,
                                                   excerpt_start=start, bar_positions=bars, target_beats=target),
                          source=BASELINE_EDIT_SOURCES[BROKEN], **common)
    comparisons = [comparison_create(edit_a=clean, edit_b=glitchy, required_judgements=3, proposed_by="test"),
                   comparison_create(edit_a=glitchy, edit_b=clean, required_judgements=3, proposed_by="test")]
    report = annotators_simulate(n_annotators=3, model=AnnotatorModel(noise=0.0), seed=1)
    assert report.n_judgements == 6 and report.n_random == 0
    assert Assignment.objects.filter(completed_at__isnull=False).count() == 6
    # They went through the server's listening rule: both files served whole, the minimum listen waited.
    for j in Judgement.objects.select_related("comparison__edit_a", "comparison__edit_b"):
        assert j.served_seconds_a == pytest.approx(j.comparison.edit_a.duration_seconds)
        assert j.served_seconds_b == pytest.approx(j.comparison.edit_b.duration_seconds)
        assert j.wall_seconds >= 1.0
    for c in comparisons:
        assert _preferred(c) == {clean.pk}
    assert annotators_simulate(n_annotators=3, seed=2).n_judgements == 0  # nothing left open

    # Another listener, another answer: one that likes seams prefers the broken edit.
    again = comparison_create(edit_a=clean, edit_b=glitchy, required_judgements=3, proposed_by="second listener")
    annotators_simulate(n_annotators=3, model=AnnotatorModel(noise=0.0), seed=3,
                        listener=lambda clip: float(len(clip.seam_seconds)))
    assert _preferred(again) == {glitchy.pk}

"""Hidden references: one edit against itself, mixed in at ANNOTATION_HIDDEN_REFERENCE_RATE, judged through the
page's API like any comparison (one fetch of the edit is both sides heard), and kept out of training as gold."""
from __future__ import annotations

import random

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from annotations.assignment import assignment_next
from annotations.models import Comparison, Judgement
from annotations.services import ComparisonError, comparison_create, hidden_reference_create

from .factories import assignment_age, make_comparison, make_edit, make_track, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]
NEXT = "/api/comparisons/next/"


def test_only_a_hidden_reference_may_show_one_edit_twice_and_it_is_gold_without_an_answer():
    edit = make_edit(make_track(), range(16))
    with pytest.raises(ComparisonError, match="hidden_reference_create"):
        comparison_create(edit_a=edit, edit_b=edit, proposed_by="test")
    reference = hidden_reference_create(edit=edit, proposed_by="test")
    assert reference.is_gold and reference.is_hidden_reference and reference.gold_answer == ""
    for wrong in ({"is_hidden_reference": False}, {"gold_answer": "a"}, {"is_gold": False}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Comparison.objects.filter(pk=reference.pk).update(**wrong)


def test_the_rate_draws_hidden_references_and_the_other_kinds_never_hand_them_out(settings):
    track = make_track()
    regular = make_comparison(track=track)
    reference = hidden_reference_create(edit=regular.edit_a, proposed_by="test")
    settings.ANNOTATION_HIDDEN_REFERENCE_RATE = 1.0
    assert assignment_next(annotator=make_user(), rng=random.Random(0)).comparison_id == reference.pk
    settings.ANNOTATION_HIDDEN_REFERENCE_RATE = 0.0
    assert assignment_next(annotator=make_user(), rng=random.Random(0)).comparison_id == regular.pk
    settings.ANNOTATION_GOLD_RATE = 1.0  # gold drawn: none with an answer is left, so regular work comes
    assert assignment_next(annotator=make_user(), rng=random.Random(0)).comparison_id == regular.pk
    settings.ANNOTATION_GOLD_RATE, settings.ANNOTATION_HIDDEN_REFERENCE_RATE = 0.5, 0.6
    with pytest.raises(ValueError, match="sum to <= 1"):
        assignment_next(annotator=make_user(), rng=random.Random(0))


def test_an_annotator_judges_a_hidden_reference_through_the_api(settings):
    settings.ANNOTATION_HIDDEN_REFERENCE_RATE = 1.0
    edit = make_edit(make_track(), range(16))
    reference = hidden_reference_create(edit=edit, proposed_by="test")
    annotator = make_user("ears")
    client = APIClient()
    client.force_login(annotator)
    shown = client.get(NEXT).json()["comparison"]
    assert shown["id"] == reference.pk
    assert shown["left"]["edit_id"] == shown["right"]["edit_id"] == edit.pk
    assert shown["left"]["audio_url"] == shown["right"]["audio_url"]
    assert shown["difference_left"] is None and shown["loop_useful"] is False
    response = client.get(shown["left"]["audio_url"])
    b"".join(response.streaming_content)  # one fetch of the edit: both sides' audio served
    assignment_age(reference.assignments.get(), 60.0)

    judged = client.post("/api/judgements/", {
        "comparison": reference.pk, "choice": "tie", "confidence": 2, "left_edit": edit.pk,
        "seconds_a": 4.0, "seconds_b": 4.0}, format="json")

    assert judged.status_code == 201, judged.json()
    assert judged.json()["served_seconds_a"] == judged.json()["served_seconds_b"] > 0
    assert Judgement.objects.filter(comparison__is_gold=False).count() == 0  # what training reads


def test_hidden_references_never_reach_the_reward_model_even_when_gold_is_included():
    from rlhf.cycle.reward_services import training_data_build

    from annotations.services import baseline_comparisons_create

    from .factories import make_judgement, make_track_with_audio

    track = make_track_with_audio(n_beats=32)
    regular = baseline_comparisons_create(track=track, n_excerpts=1, seed=0, excerpt_beats=16, with_gold=False)[0]
    reference = hidden_reference_create(edit=regular.edit_a, proposed_by="test")
    annotator = make_user("ears")
    make_judgement(annotator, regular, choice="a")
    make_judgement(annotator, reference, choice="tie")
    data = training_data_build(include_gold=True, min_gold_accuracy=0, with_baseline=False)
    assert len(data.judgement_ids) == 1 and data.dataset.n_pairs == 1

"""The assignment queue's stored judgement count: a fast hint that never changes who gets what."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotations.assignment import assignment_next, queue_length
from annotations.judgements import judgement_submit
from annotations.models import Comparison

from .factories import (
    listen_through_service,
    make_comparison,
    make_edit,
    make_judgement,
    make_track,
    make_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _plain_rates(settings):
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0


def submit(user, assignment):
    c = assignment.comparison
    left = c.edit_a_id if assignment.left_is_a else c.edit_b_id
    listen_through_service(user, assignment)
    return judgement_submit(annotator=user, comparison_id=c.pk, choice="a", confidence=4, left_edit_id=left,
                            seconds_a=3.0, seconds_b=3.0, switches=1, decision_seconds=9.0)


def test_submitting_keeps_the_count_and_a_full_comparison_leaves_everyones_queue():
    comparison = make_comparison(required_judgements=2)
    first, second, third = make_user(), make_user(), make_user()
    submit(first, assignment_next(annotator=first))
    comparison.refresh_from_db()
    assert comparison.n_judgements == 1
    assert queue_length(annotator=third) == 1
    submit(second, assignment_next(annotator=second))
    comparison.refresh_from_db()
    assert comparison.n_judgements == 2
    assert queue_length(annotator=third) == 0
    assert assignment_next(annotator=third) is None


def test_a_judgement_stored_behind_the_services_back_still_fills_the_quota():
    comparison = make_comparison(required_judgements=1)
    make_judgement(make_user(), comparison)  # a plain row insert: the stored count is now behind
    assert Comparison.objects.get(pk=comparison.pk).n_judgements == 0
    assert assignment_next(annotator=make_user()) is None
    assert Comparison.objects.get(pk=comparison.pk).n_judgements == 1  # corrected under the lock


def test_deleting_a_judgement_offers_the_comparison_again():
    comparison = make_comparison(required_judgements=1)
    judge = make_user()
    judgement, _ = submit(judge, assignment_next(annotator=judge))
    other = make_user()
    assert assignment_next(annotator=other) is None
    judgement.delete()
    assert Comparison.objects.get(pk=comparison.pk).n_judgements == 0
    assert assignment_next(annotator=other).comparison_id == comparison.pk


@pytest.mark.parametrize("judged_before", [False, True], ids=["first comparison", "after one on another track"])
def test_next_costs_the_same_number_of_queries_however_long_the_queue(judged_before):
    track = make_track()
    edits = [make_edit(track, range(i, i + 8)) for i in range(6)]
    earlier = make_comparison(track=make_track(), required_judgements=1000, priority=100.0)  # first for everyone

    def queries_for_next() -> int:
        user = make_user()
        if judged_before:  # the queue then puts the track last given after the others
            submit(user, assignment_next(annotator=user))
        with CaptureQueriesContext(connection) as captured:
            assignment = assignment_next(annotator=user)
            comparison = assignment.comparison
            assert comparison.edit_a.render is not None and comparison.edit_b.render is not None  # loaded with it
        assert (comparison.pk == earlier.pk) is not judged_before
        return len(captured)

    for i in range(3):
        make_comparison(edit_a=edits[i], edit_b=edits[i + 1], required_judgements=50)
    few = queries_for_next()
    for i in range(60):
        make_comparison(edit_a=edits[i % 5], edit_b=edits[i % 5 + 1], required_judgements=50, priority=float(i % 4))
    assert queries_for_next() == few

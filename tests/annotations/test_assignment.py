"""Assignment: quota, no repeats per person, priority, gold/repeat mixing, expiry, and (PostgreSQL) concurrency."""
from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotations.assignment import assignment_ahead, assignment_next, queue_length
from annotations.judgements import assignment_skip, judgement_submit, progress_get
from annotations.models import Assignment, Comparison, Judgement

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
    # Deterministic queues unless a test asks for gold or repeats.
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0


def submit(user, assignment, choice="a", confidence=4):
    c = assignment.comparison
    left = c.edit_a_id if assignment.left_is_a else c.edit_b_id
    listen_through_service(user, assignment)
    return judgement_submit(annotator=user, comparison_id=c.pk, choice=choice, confidence=confidence,
                            left_edit_id=left, seconds_a=3.0, seconds_b=3.0, switches=1, decision_seconds=9.0)


def test_open_assignment_is_returned_again_until_judged():
    make_comparison()
    user = make_user()
    first = assignment_next(annotator=user)
    assert assignment_next(annotator=user).pk == first.pk
    submit(user, first)
    assert assignment_next(annotator=user) is None


def test_quota_is_met_by_different_annotators_and_nobody_sees_a_comparison_twice():
    comparison = make_comparison(required_judgements=2)
    users = [make_user() for _ in range(3)]
    got = [assignment_next(annotator=u) for u in users]
    assert [a is not None for a in got] == [True, True, False]
    for user, assignment in zip(users, got[:2]):
        submit(user, assignment)
        assert assignment_next(annotator=user) is None
    assert comparison.judgements.count() == 2


def test_higher_priority_first():
    low = make_comparison(priority=0.1)
    high = make_comparison(priority=5.0)
    user = make_user()
    first = assignment_next(annotator=user)
    assert first.comparison_id == high.pk
    submit(user, first)
    assert assignment_next(annotator=user).comparison_id == low.pk


def test_consecutive_comparisons_come_from_different_tracks_while_another_track_has_work():
    # Made track by track, as a cycle proposes them: in plain queue order that is A A A B B C.
    tracks = [make_track(title=name) for name in ("A", "B", "C")]
    for track, n in zip(tracks, (3, 2, 1)):
        for _ in range(n):
            make_comparison(track=track)
    user = make_user()
    heard = []
    while (assignment := assignment_next(annotator=user)) is not None:
        heard.append(assignment.comparison.track.title)
        submit(user, assignment)
    assert heard == ["A", "B", "A", "B", "A", "C"]


def test_the_comparison_fetched_ahead_is_of_another_track_than_the_one_being_judged():
    tracks = [make_track(title=name) for name in ("A", "B", "C")]
    for track, n in zip(tracks, (3, 2, 1)):
        for _ in range(n):
            make_comparison(track=track)
    user = make_user()
    current = assignment_next(annotator=user)
    heard = [current.comparison.track.title]
    for _ in range(5):
        ahead = assignment_ahead(annotator=user, current=current)
        assert ahead.comparison.track_id != current.comparison.track_id
        submit(user, current)
        current = assignment_next(annotator=user)
        assert current.pk == ahead.pk  # the page plays what it fetched
        heard.append(current.comparison.track.title)
    assert heard == ["A", "B", "A", "B", "A", "C"]


def test_the_last_track_waits_one_place_and_priority_orders_the_rest():
    a, b, c = (make_track(title=name) for name in ("A", "B", "C"))
    make_comparison(track=a, priority=5.0)
    make_comparison(track=a, priority=4.0)
    make_comparison(track=b, priority=1.0)
    make_comparison(track=c, priority=0.0)
    user = make_user()
    heard = []
    while (assignment := assignment_next(annotator=user)) is not None:
        heard.append((assignment.comparison.track.title, assignment.comparison.priority))
        submit(user, assignment)
    assert heard == [("A", 5.0), ("B", 1.0), ("A", 4.0), ("C", 0.0)]


def test_one_track_left_is_still_served_back_to_back():
    track = make_track()
    for _ in range(3):
        make_comparison(track=track)
    user = make_user()
    judged = 0
    while (assignment := assignment_next(annotator=user)) is not None:
        submit(user, assignment)
        judged += 1
    assert judged == 3


def test_expired_assignment_frees_its_slot_and_is_not_served_again_to_the_same_person():
    make_comparison(required_judgements=1)
    slow, other = make_user(), make_user()
    held = assignment_next(annotator=slow)
    assert assignment_next(annotator=other) is None
    Assignment.objects.filter(pk=held.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert assignment_next(annotator=other) is not None
    assert assignment_next(annotator=slow) is None


def test_skip_frees_the_slot_for_someone_else():
    make_comparison(required_judgements=1)
    a, b = make_user(), make_user()
    held = assignment_next(annotator=a)
    assignment_skip(annotator=a, comparison_id=held.comparison_id, reason="cannot hear the difference")
    assert assignment_next(annotator=b).comparison_id == held.comparison_id
    assert assignment_next(annotator=a) is None


def test_left_side_is_random_per_annotator_and_recorded():
    make_comparison(required_judgements=40)
    rng = random.Random(3)
    sides = {assignment_next(annotator=make_user(), rng=rng).left_is_a for _ in range(20)}
    assert sides == {True, False}


def test_gold_is_mixed_in_at_the_configured_rate(settings):
    settings.ANNOTATION_GOLD_RATE = 0.3
    track = make_track()
    for _ in range(60):
        make_comparison(track=track, required_judgements=1)
        make_comparison(track=track, required_judgements=1, is_gold=True, gold_answer="a")
    user = make_user()
    rng = random.Random(0)
    gold = 0
    for _ in range(50):
        a = assignment_next(annotator=user, rng=rng)
        gold += a.comparison.is_gold
        submit(user, a)
    assert 8 <= gold <= 25  # 30 % of 50 = 15, with binomial slack


def test_repeat_swaps_edits_and_sides_for_the_same_annotator(settings):
    settings.ANNOTATION_REPEAT_RATE = 1.0
    user = make_user()
    original = make_comparison()
    judged = make_judgement(user, original, choice="a", left_is_a=True)
    repeat = assignment_next(annotator=user)
    c = repeat.comparison
    assert c.repeat_of_id == original.pk
    assert (c.edit_a_id, c.edit_b_id) == (original.edit_b_id, original.edit_a_id)
    shown_left = c.edit_a_id if repeat.left_is_a else c.edit_b_id
    assert shown_left != judged.left_edit_id  # heard on the right this time
    # Another annotator never gets a repeat of something they did not judge.
    assert Comparison.objects.filter(repeat_of__isnull=False).count() == 1
    assert assignment_next(annotator=make_user()) is not None
    assert Comparison.objects.filter(repeat_of__isnull=False).count() == 1


def test_progress_counts_today_total_and_queue():
    user = make_user()
    old = make_comparison()
    make_judgement(user, old, created_at=timezone.now() - timedelta(days=2))
    make_comparison()
    make_comparison()
    first = assignment_next(annotator=user)
    submit(user, first)
    p = progress_get(annotator=user)
    assert (p.done_today, p.done_total, p.left_in_queue) == (1, 2, 1)
    assert queue_length(annotator=user) == 1


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_annotators_never_exceed_quota_nor_lose_a_judgement():
    track = make_track()
    edits = [make_edit(track, range(i, i + 8)) for i in range(6)]
    comparisons = [make_comparison(edit_a=edits[i], edit_b=edits[(i + 1) % 6], required_judgements=3,
                                   priority=float(i % 3)) for i in range(6)]
    users = [make_user() for _ in range(20)]
    stored: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(users))

    def work(user):
        try:
            barrier.wait()
            rng = random.Random(user.pk)
            while True:
                assignment = assignment_next(annotator=user, rng=rng)
                if assignment is None:
                    return
                judgement, created = submit(user, assignment, choice=rng.choice("ab"))
                assert created
                with lock:
                    stored.append(judgement.pk)
        except BaseException as err:  # surfaced below: a thread's failure must fail the test
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(stored) == sorted(Judgement.objects.values_list("pk", flat=True))
    per_comparison = {c.pk: c.judgements.count() for c in comparisons}
    assert per_comparison == {c.pk: 3 for c in comparisons}, per_comparison
    assert Judgement.objects.values("annotator", "comparison").distinct().count() == len(stored) == 18


class _PausedLockingStatement:
    """Delays the statement that locks the next comparison, in this thread, between its snapshot and its lock.

    Under READ COMMITTED a statement reads the snapshot taken when it starts;
    the row lock comes at its end.  A one-time ``pg_sleep`` filter holds the
    statement there, so a test can commit another claim inside that window,
    as a busy two-core server sometimes does by itself.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()

    def __call__(self, execute, sql, params, many, context):
        if "SKIP LOCKED" in sql and 'FROM "annotations_comparison"' in sql:
            head, where, tail = sql.partition(" WHERE ")  # the outer query's: subqueries come inside it
            sql = f"{head}{where}(SELECT true FROM pg_sleep({self.seconds:g})) AND {tail}"
            self.started.set()
        return execute(sql, params, many, context)


def _claim_in_thread(user, wrapper, out: dict) -> threading.Thread:
    """``assignment_next`` for ``user`` in a thread of its own, its SQL passed through ``wrapper``."""

    def work():
        try:
            with connection.execute_wrapper(wrapper):
                out["assignment"] = assignment_next(annotator=user, rng=random.Random(1))
        except BaseException as err:  # surfaced by the test
            out["error"] = err
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_claim_committed_after_another_claims_snapshot_still_counts_against_the_quota():
    # The last slot: one annotator's claim is held between its snapshot and its lock while another
    # takes the slot and commits.  Counts read by the locking statement itself would miss that
    # assignment and give the slot twice (the saturated bench once stored 4 judgements for 3 slots).
    comparison = make_comparison(required_judgements=1)
    first, second = make_user(), make_user()
    paused, out = _PausedLockingStatement(1.5), {}
    thread = _claim_in_thread(first, paused, out)
    assert paused.started.wait(10)
    time.sleep(0.3)  # the paused statement has its snapshot now
    taken = assignment_next(annotator=second)
    assert taken is not None and taken.comparison_id == comparison.pk
    thread.join(30)
    assert "error" not in out, out.get("error")
    assert out["assignment"] is None
    assert Assignment.objects.filter(comparison=comparison).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_tabs_of_one_annotator_asking_at_once_get_one_comparison_each_without_an_error():
    # The same race for one person: the second tab claims and commits inside the first tab's
    # window; the first must see that assignment and move on rather than break the unique constraint.
    comparisons = [make_comparison(priority=1.0), make_comparison(priority=0.0)]
    user = make_user()
    paused, out = _PausedLockingStatement(1.5), {}
    thread = _claim_in_thread(user, paused, out)
    assert paused.started.wait(10)
    time.sleep(0.3)
    other_tab = assignment_next(annotator=user)
    assert other_tab.comparison_id == comparisons[0].pk
    thread.join(30)
    assert "error" not in out, out.get("error")
    assert out["assignment"].comparison_id == comparisons[1].pk
    assert Assignment.objects.filter(annotator=user).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_judges_asking_for_a_repeat_at_once_share_one_repeat(settings):
    settings.ANNOTATION_REPEAT_RATE = 1.0
    original = make_comparison()
    first, second = make_user(), make_user()
    make_judgement(first, original)
    make_judgement(second, original)
    found, go_on, out = threading.Event(), threading.Event(), {}

    def hold_after_finding_the_original(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if '"n_repeats"' in sql:
            found.set()  # the original was found without a repeat; wait while the other judge makes one
            go_on.wait(10)
        return result

    thread = _claim_in_thread(first, hold_after_finding_the_original, out)
    assert found.wait(10)
    theirs = assignment_next(annotator=second)
    go_on.set()
    thread.join(30)
    assert "error" not in out, out.get("error")
    repeats = list(Comparison.objects.filter(repeat_of=original))
    assert len(repeats) == 1
    assert theirs.comparison_id == out["assignment"].comparison_id == repeats[0].pk

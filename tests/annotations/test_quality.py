"""Quality control: figures on hand-made judgements equal the values worked out by hand; the researcher page."""
from __future__ import annotations

import math
import re

import krippendorff
import numpy as np
import pytest

from annotations import quality
from annotations.quality import JudgementRow


def row(annotator, comparison, a, b, choice, *, left=None, track=1, sa="s", sb="s", seconds=10.0,
        gold="", repeat_of=None) -> JudgementRow:
    return JudgementRow(
        annotator_id=annotator, comparison_id=comparison, track_id=track, edit_a_id=a, edit_b_id=b,
        source_a=sa, source_b=sb, choice=choice, left_edit_id=a if left is None else left,
        decision_seconds=seconds, is_gold=bool(gold), gold_answer=gold, repeat_of_id=repeat_of,
    )


def by_id(report_rows):
    return {q.annotator_id: q for q in report_rows}


def test_gold_accuracy_counts_ties_as_wrong():
    rows = [
        row(1, 100, 1, 2, "a", gold="a"),
        row(1, 101, 3, 4, "b", gold="b"),
        row(1, 102, 5, 6, "tie", gold="a"),
        row(1, 103, 7, 8, "a"),  # not gold: does not count
        row(2, 100, 1, 2, "b", gold="a"),
    ]
    q = by_id(quality.annotator_quality(rows))
    assert q[1].gold_accuracy == pytest.approx(2 / 3) and q[1].n_gold == 3
    assert q[2].gold_accuracy == 0.0


def test_left_share_counts_the_edit_shown_left_and_ignores_ties():
    rows = [
        row(1, 1, 1, 2, "a", left=1),  # chose left
        row(1, 2, 3, 4, "b", left=4),  # chose left (B was on the left)
        row(1, 3, 5, 6, "b", left=6),  # chose left
        row(1, 4, 7, 8, "a", left=8),  # chose right
        row(1, 5, 9, 10, "tie", left=9),
    ]
    q = quality.annotator_quality(rows)[0]
    assert q.n_sided == 4
    assert q.left_share == pytest.approx(0.75)
    assert q.left_bias == pytest.approx(0.25)


def test_self_consistency_follows_the_edit_across_swapped_sides():
    rows = [
        row(1, 10, 1, 2, "a"),  # prefers edit 1
        row(1, 11, 2, 1, "b", repeat_of=10),  # sides swapped, prefers edit 1 again: consistent
        row(1, 20, 3, 4, "a"),  # prefers edit 3
        row(1, 21, 4, 3, "a", repeat_of=20),  # same letter, but edit 4: inconsistent
        row(1, 30, 5, 6, "tie"),
        row(1, 31, 6, 5, "tie", repeat_of=30),  # two ties: consistent
        row(2, 11, 2, 1, "a", repeat_of=10),  # annotator 2 never saw the original: no pair
    ]
    q = by_id(quality.annotator_quality(rows))
    assert q[1].n_repeat_pairs == 3
    assert q[1].self_consistency == pytest.approx(2 / 3)
    assert q[2].self_consistency is None


def test_median_decision_seconds():
    rows = [row(1, i, 1, 2, "a", seconds=s) for i, s in enumerate([4.0, 30.0, 7.0, 9.0])]
    assert quality.annotator_quality(rows)[0].median_decision_seconds == pytest.approx(8.0)


def test_alpha_by_hand_on_three_comparisons():
    # U1: A,A  U2: B,B  U3: A,tie.  Ordinal metric over A < tie < B, worked by hand:
    # n = 6 (A 3, tie 1, B 2); delta(A,tie) = 4, delta(tie,B) = 2.25, delta(A,B) = 12.25;
    # D_o = 2 * 4 / 6 = 4/3; D_e = 2 * (3*1*4 + 1*2*2.25 + 3*2*12.25) / (6*5) = 6; alpha = 1 - (4/3)/6 = 7/9.
    rows = [row(1, 1, 1, 2, "a"), row(2, 1, 1, 2, "a"), row(1, 2, 1, 2, "b"), row(2, 2, 1, 2, "b"),
            row(1, 3, 1, 2, "a"), row(2, 3, 1, 2, "tie")]
    report = quality.quality_report(rows)
    assert report.alpha == pytest.approx(7 / 9)
    assert report.n_units_pairable == 3 and report.alpha_level == "ordinal"


def test_alpha_equals_krippendorff_on_the_same_matrix():
    rng = np.random.default_rng(0)
    n_annotators, n_comparisons = 4, 30
    truth = rng.integers(0, 3, size=n_comparisons)
    matrix = np.full((n_annotators, n_comparisons), np.nan)
    rows = []
    for a in range(n_annotators):
        for c in range(n_comparisons):
            if rng.random() < 0.25:
                continue  # missing: this annotator never judged it
            code = truth[c] if rng.random() < 0.7 else rng.integers(0, 3)
            matrix[a, c] = code
            rows.append(row(a + 1, c + 1, 1, 2, quality.ALPHA_VALUES[code]))
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal", value_domain=[0, 1, 2])
    assert quality.quality_report(rows).alpha == pytest.approx(expected)


def test_value_counts_and_alpha_match_a_plain_count_and_krippendorff_on_unsorted_ids():
    rng = np.random.default_rng(1)
    ids = rng.choice(np.arange(10**9, 10**9 + 500, 7), size=2000)  # sparse, large, unsorted, repeated
    codes = rng.integers(0, 3, size=ids.size)
    counts = quality.choice_value_counts(ids, codes)
    units = np.unique(ids)
    plain = np.array([[np.count_nonzero((ids == u) & (codes == v)) for v in range(3)] for u in units])
    assert np.array_equal(counts, plain)
    alpha, n_pairable = quality.agreement_alpha(counts)
    assert n_pairable == int((plain.sum(axis=1) >= 2).sum())
    expected = krippendorff.alpha(value_counts=plain[plain.sum(axis=1) >= 2], level_of_measurement="ordinal")
    assert alpha == pytest.approx(expected, rel=1e-9)


def test_alpha_is_undefined_without_overlap():
    assert quality.quality_report([row(1, 1, 1, 2, "a"), row(2, 2, 1, 2, "b")]).alpha is None


def test_a_known_cycle_is_counted_once_and_transitive_tracks_add_nothing():
    rows = [
        # track 1: 1 > 2, 2 > 3, 3 > 1 (by majority), a cycle
        row(1, 1, 1, 2, "a", track=1), row(2, 1, 1, 2, "a", track=1), row(3, 1, 1, 2, "b", track=1),
        row(1, 2, 2, 3, "a", track=1),
        row(1, 3, 1, 3, "b", track=1),
        # the same pair shown the other way round adds to the same majority
        row(2, 4, 3, 1, "a", track=1),
        # track 2: 4 > 5 > 6 and 4 > 6: transitive
        row(1, 5, 4, 5, "a", track=2), row(1, 6, 5, 6, "a", track=2), row(1, 7, 4, 6, "a", track=2),
        # track 3: 7 > 8, 8 > 9, and 7 vs 9 split evenly: no direction, no cycle
        row(1, 8, 7, 8, "a", track=3), row(1, 9, 8, 9, "a", track=3),
        row(1, 10, 7, 9, "a", track=3), row(2, 10, 7, 9, "b", track=3),
    ]
    assert quality.count_preference_cycles(rows) == 1


def test_bradley_terry_two_sources_matches_the_closed_form():
    # 3 wins to 1: the maximum-likelihood difference is log(3) (the ridge prior is tiny).
    rows = [row(1, i, 1, 2, "a", sa="good", sb="bad") for i in range(3)] + [row(1, 9, 1, 2, "b", sa="good", sb="bad")]
    good, bad = quality.source_scores(rows, ridge=1e-6)
    assert good.source == "good"
    assert good.score - bad.score == pytest.approx(math.log(3), rel=1e-4)
    # Fisher information of the difference is n p (1 - p) = 4 * 3/4 * 1/4; each centred score is half of it.
    assert good.ci_high - good.score == pytest.approx(quality.Z_95 * 0.5 * math.sqrt(1 / (4 * 0.75 * 0.25)), rel=1e-3)


def test_bradley_terry_orders_sources_with_a_clear_winner():
    rows, n = [], 0

    def games(winner, loser, wins, losses):
        nonlocal n
        for i in range(wins + losses):
            n += 1
            rows.append(row(1, n, 1, 2, "a" if i < wins else "b", sa=winner, sb=loser))

    games("policy:v2", "policy:v1", 16, 4)
    games("policy:v1", "baseline:random", 16, 4)
    games("policy:v2", "baseline:random", 20, 0)
    rows.append(row(1, n + 1, 1, 2, "tie", sa="policy:v1", sb="policy:v2"))
    scores = quality.source_scores(rows)
    assert [s.source for s in scores] == ["policy:v2", "policy:v1", "baseline:random"]
    assert scores[0].ci_low > scores[2].ci_high  # the winner is clearly above the random baseline
    assert sum(s.score for s in scores) == pytest.approx(0.0, abs=1e-9)
    assert scores[1].wins == pytest.approx(16 + 4 + 0.5)


# --- the researcher page -------------------------------------------------------------------------------------


@pytest.fixture
def judged(storage_root):
    from tests.annotations.factories import make_comparison, make_edit, make_judgement, make_track, make_user

    track = make_track()
    good = make_edit(track, range(16), source="policy:v1")
    bad = make_edit(track, [*range(4), *range(8, 16)], source="baseline:random")
    comparison = make_comparison(edit_a=good, edit_b=bad)
    gold = make_comparison(edit_a=bad, edit_b=good, is_gold=True, gold_answer="b")
    alice, bob = make_user("alice"), make_user("bob")
    make_judgement(alice, comparison, choice="a")
    make_judgement(bob, comparison, choice="a", left_is_a=False)
    make_judgement(alice, gold, choice="b")
    make_judgement(bob, gold, choice="a")
    return alice, bob


@pytest.mark.django_db
def test_researcher_sees_tables_and_plots(client, judged):
    from tests.annotations.factories import PASSWORD, make_user

    make_user("rita", role="researcher")
    client.login(username="rita", password=PASSWORD)
    page = client.get("/annotate/quality/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "alice" in text and "bob" in text
    assert "1.00 (1)" in text and "0.00 (1)" in text  # gold accuracy of alice and bob
    assert "policy:v1" in text and "baseline:random" in text
    # bob failed his gold item: flagged in his row and above the table; alice is not
    assert "1 annotator below the gold threshold of 0.70" in text
    rows = {name: row for row in text.split("<tr") for name in ("alice", "bob") if f"<td>{name}</td>" in row}
    assert "below 0.70: left out of training" in rows["bob"] and "below-threshold" in rows["bob"]
    assert "left out of training" not in rows["alice"]
    assert 'href="/research/"' in text and 'style="' not in text
    assert 'href="/annotate/quality/"' in client.get("/research/").content.decode()
    for plot in ("sources", "annotators"):
        image = client.get(f"/annotate/quality/{plot}.png")
        assert image.status_code == 200 and image["Content-Type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")


@pytest.mark.django_db
def test_annotators_and_anonymous_cannot_see_quality(client, judged):
    from tests.annotations.factories import PASSWORD

    assert client.get("/annotate/quality/").status_code == 302  # to the login page
    client.login(username="alice", password=PASSWORD)
    assert client.get("/annotate/quality/").status_code == 403
    assert client.get("/annotate/quality/sources.png").status_code == 403


@pytest.mark.django_db
def test_quality_page_counts_skips_per_preset_reason(client):
    from annotations.judgements import assignment_skip
    from tests.annotations.factories import PASSWORD, make_assignment, make_comparison, make_user

    ann = make_user("skipper")
    for choice, words in (("broken_audio", ""), ("broken_audio", ""), ("identical", ""), ("other", "phone rang")):
        comparison = make_comparison()
        make_assignment(ann, comparison)
        assignment_skip(annotator=ann, comparison_id=comparison.pk, reason_choice=choice, reason=words)
    make_assignment(ann, make_comparison(), skipped_reason="typed before presets")
    make_user("rita", role="researcher")
    client.login(username="rita", password=PASSWORD)
    text = client.get("/annotate/quality/").content.decode()
    counts = dict(re.findall(r'<td>([^<]+)</td><td data-skip-reason="\w*">(\d+)</td>', text))
    assert counts == {"Broken audio": "2", "They sound identical": "1", "Cannot decide": "0", "Other": "1",
                      "Free text (before presets)": "1"}


def test_hidden_references_count_a_tie_or_a_low_confidence_as_heard_and_nothing_else():
    def reference(annotator, comparison, choice, confidence):
        return JudgementRow(annotator_id=annotator, comparison_id=comparison, track_id=1, edit_a_id=9, edit_b_id=9,
                            source_a="s", source_b="s", choice=choice, left_edit_id=9, decision_seconds=10.0,
                            is_gold=True, is_hidden_reference=True, confidence=confidence)

    rows = [
        reference(1, 200, "tie", 5),  # heard as the same
        reference(1, 201, "a", 2),  # a guess: fine
        reference(1, 202, "b", 4),  # a confident difference that is not there
        row(1, 100, 1, 2, "a", gold="a"),
        row(1, 101, 3, 4, "a", left=3),
        reference(2, 200, "a", 5),
        row(2, 100, 1, 2, "a", gold="a"),
    ]
    q = by_id(quality.annotator_quality(rows))
    assert (q[1].hidden_reference_reliability, q[1].n_hidden_references) == (pytest.approx(2 / 3), 3)
    assert (q[2].hidden_reference_reliability, q[2].n_hidden_references) == (0.0, 1)
    # Gold without an A/B answer: not in gold accuracy, nor in the left share (no side was preferred).
    assert (q[1].gold_accuracy, q[1].n_gold) == (1.0, 1)
    assert (q[1].left_share, q[1].n_sided) == (1.0, 2)
    # Nor in agreement: comparison 200 alone is judged twice, and it is a hidden reference.
    report = quality.quality_report(rows)
    assert report.n_units_pairable == 1 and report.n_cycles == 0
    with pytest.raises(quality.QualityError, match="confidence"):
        quality.annotator_quality([reference(1, 200, "tie", None)])


@pytest.mark.django_db
def test_the_quality_page_shows_each_annotators_hidden_reference_reliability(client, judged):
    from annotations.services import hidden_reference_create
    from tests.annotations.factories import PASSWORD, make_judgement, make_user

    alice, bob = judged
    edit = alice.judgements.first().comparison.edit_a
    same = hidden_reference_create(edit=edit, proposed_by="test")
    make_judgement(alice, same, choice="tie", confidence=4)
    make_judgement(bob, same, choice="a", confidence=5)
    make_user("rita", role="researcher")
    client.login(username="rita", password=PASSWORD)
    text = client.get("/annotate/quality/").content.decode()
    rows = {name: row for row in text.split("<tr") for name in ("alice", "bob") if f"<td>{name}</td>" in row}
    assert 'data-figure="hidden-reference">1.00 (1)' in rows["alice"]
    assert 'data-figure="hidden-reference">0.00 (1)' in rows["bob"]
    assert "1.00 (1)" in rows["alice"]  # gold accuracy unchanged by the hidden reference

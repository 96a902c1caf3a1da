"""The server decides what was heard: the audio view records what it served, the submit checks it."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotations.models import Assignment, Judgement, ListeningRecord

from .factories import assignment_age, listen_through_audio_view, make_comparison, make_edit, make_track, make_user

pytestmark = pytest.mark.django_db

NEXT = "/api/comparisons/next/"
JUDGEMENTS = "/api/judgements/"


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 2.0


@pytest.fixture
def annotator():
    return make_user("ann")


@pytest.fixture
def client(annotator):
    c = APIClient()
    c.force_login(annotator)
    return c


def body_for(shown: dict, **extra) -> dict:
    return {"comparison": shown["id"], "choice": shown["left"]["choice"], "confidence": 4,
            "left_edit": shown["left"]["edit_id"], "seconds_a": 5.0, "seconds_b": 5.0, "switches": 2,
            "decision_seconds": 12.5, **extra}


def fetch(client, url: str, **headers) -> bytes:
    response = client.get(url, **headers)
    assert response.status_code in (200, 206)
    # No cache may keep it: the server must see every listen, also of an edit heard in an earlier comparison.
    assert "no-store" in response["Cache-Control"]
    body = b"".join(response.streaming_content)  # the test client closes it at the end
    return body


def assignment_of(annotator, shown) -> Assignment:
    return Assignment.objects.get(annotator=annotator, comparison_id=shown["id"])


def test_a_judgement_whose_audio_was_never_fetched_is_refused_whatever_the_client_reports(client, annotator):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    assignment_age(assignment_of(annotator, shown), 60)
    r = client.post(JUDGEMENTS, body_for(shown, seconds_a=30.0, seconds_b=30.0), format="json")
    assert r.status_code == 409
    assert r.json()["code"] == "not_listened_enough"
    assert "edit A" in r.json()["detail"] and "0.0 s" in r.json()["detail"]
    assert Judgement.objects.count() == 0


def test_one_side_fetched_is_not_enough_and_the_reason_names_the_other(client, annotator):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    fetch(client, shown["left"]["audio_url"])
    assignment_age(assignment_of(annotator, shown), 60)
    missing = "B" if shown["left"]["choice"] == "a" else "A"
    r = client.post(JUDGEMENTS, body_for(shown), format="json")
    assert r.status_code == 409 and f"edit {missing}" in r.json()["detail"]
    fetch(client, shown["right"]["audio_url"])
    assert client.post(JUDGEMENTS, body_for(shown), format="json").status_code == 201


def test_both_sides_fetched_but_too_soon_is_refused_until_the_minimum_time_passed(client, annotator):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    fetch(client, shown["left"]["audio_url"])
    fetch(client, shown["right"]["audio_url"])
    early = client.post(JUDGEMENTS, body_for(shown), format="json")
    assert early.status_code == 409 and "shown" in early.json()["detail"]
    assignment_age(assignment_of(annotator, shown), 2.5)
    assert client.post(JUDGEMENTS, body_for(shown), format="json").status_code == 201


def test_the_audio_view_records_ranges_and_the_same_bytes_twice_count_once(client, annotator, settings):
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 3.0  # of 4 s clips on both sides
    track = make_track()
    make_comparison(edit_a=make_edit(track, range(16)), edit_b=make_edit(track, [*range(8), *range(8)]))
    shown = client.get(NEXT).json()["comparison"]
    assignment = assignment_of(annotator, shown)
    assignment_age(assignment, 60)
    fetch(client, shown["right"]["audio_url"])
    left = shown["left"]["audio_url"]
    size = len(fetch(client, left, HTTP_RANGE="bytes=0-0"))  # one byte
    whole = ListeningRecord.objects.filter(assignment=assignment).order_by("pk").last().file_bytes
    half = whole // 2
    fetch(client, left, HTTP_RANGE=f"bytes=0-{half - 1}")
    fetch(client, left, HTTP_RANGE=f"bytes=0-{half - 1}")  # the same half again: still half
    assert size == 1
    records = ListeningRecord.objects.filter(assignment=assignment, side=shown["left"]["choice"]).order_by("pk")
    assert [(r.first_byte, r.n_bytes) for r in records] == [(0, 1), (0, half), (0, half)]
    assert all(r.finished_at >= r.started_at for r in records)
    r = client.post(JUDGEMENTS, body_for(shown), format="json")
    assert r.status_code == 409 and "2.0 s" in r.json()["detail"]
    fetch(client, left, HTTP_RANGE=f"bytes={half}-")
    assert client.post(JUDGEMENTS, body_for(shown), format="json").status_code == 201


def test_a_clip_shorter_than_the_minimum_needs_to_be_heard_once_in_full(client, annotator, settings):
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 100.0
    make_comparison()  # 4 s edits
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown, aged_seconds=4.5)
    r = client.post(JUDGEMENTS, body_for(shown), format="json")
    assert r.status_code == 201, r.json()


def test_reported_seconds_are_capped_by_the_wall_time_and_stored_next_to_what_was_served(client, annotator):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown, aged_seconds=60)
    r = client.post(JUDGEMENTS, body_for(shown, seconds_a=5000.0, seconds_b=3.0, decision_seconds=9000.0),
                    format="json")
    assert r.status_code == 201
    j = Judgement.objects.get()
    assert 60 <= j.wall_seconds < 70
    assert j.seconds_a == j.wall_seconds and j.decision_seconds == j.wall_seconds and j.seconds_b == 3.0
    assert j.served_seconds_a == pytest.approx(4.0) and j.served_seconds_b == pytest.approx(3.0)  # B is cut


@pytest.mark.parametrize("field, value", [
    ("seconds_a", 1e308), ("seconds_b", 86_401), ("decision_seconds", -1), ("switches", 9223372036854775808),
    ("switches", 100_001), ("switches", -1),
])
def test_insane_reported_figures_are_refused(client, annotator, field, value):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    r = client.post(JUDGEMENTS, body_for(shown, **{field: value}), format="json")
    assert r.status_code == 400 and field in r.json()
    assert Judgement.objects.count() == 0


def test_a_researcher_listening_records_nothing_and_a_skipped_assignment_takes_no_more_records(client, annotator):
    comparison = make_comparison()
    researcher = APIClient()
    researcher.force_login(make_user("rita", role="researcher"))
    shown = client.get(NEXT).json()["comparison"]
    fetch(researcher, shown["left"]["audio_url"])
    assert ListeningRecord.objects.count() == 0
    client.post(f"/api/comparisons/{comparison.pk}/skip/", {"reason": "noise"}, format="json")
    assert ListeningRecord.objects.count() == 0


def test_exports_carry_the_reported_and_the_measured_figures(client, annotator, storage_root):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown, aged_seconds=30)
    assert client.post(JUDGEMENTS, body_for(shown, seconds_a=7.5), format="json").status_code == 201
    admin = APIClient()
    admin.force_login(make_user("ada", role="admin"))
    response = admin.get("/api/exports/stream/?format=jsonl")
    (row,) = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert row["seconds_a"] == 7.5 and row["served_seconds_a"] == pytest.approx(4.0)
    assert row["served_seconds_b"] == pytest.approx(3.0) and 30 <= row["wall_seconds"] < 40


def test_listening_is_recorded_only_for_the_annotator_who_fetched(client, annotator):
    track = make_track()
    shared = make_edit(track, range(16))
    make_comparison(edit_a=shared, edit_b=make_edit(track, [*range(8), *range(12, 16)]))
    shown = client.get(NEXT).json()["comparison"]
    other = make_user("bo")
    other_client = APIClient()
    other_client.force_login(other)
    assert other_client.get(NEXT).json()["comparison"]["id"] == shown["id"]
    fetch(other_client, shown["left"]["audio_url"])
    assert set(ListeningRecord.objects.values_list("assignment__annotator", flat=True)) == {other.pk}


def _prefetched_pair(client, annotator) -> tuple[dict, dict]:
    """Show one pair with ``?ahead=1``, fetch the upcoming pair's audio in full (as the page does), and let a
    minute pass since that upcoming pair was assigned; returns (shown, upcoming)."""
    make_comparison()
    make_comparison()
    data = client.get(NEXT + "?ahead=1").json()
    shown, upcoming = data["comparison"], data["upcoming"]
    for side in ("left", "right"):
        fetch(client, upcoming[side]["audio_url"])
    Assignment.objects.filter(pk=assignment_of(annotator, upcoming).pk).update(
        created_at=timezone.now() - timedelta(seconds=60))
    return shown, upcoming


def test_a_prefetched_pair_judged_as_soon_as_it_is_shown_is_refused_in_one_line(client, annotator):
    shown, upcoming = _prefetched_pair(client, annotator)
    listen_through_audio_view(client, annotator, shown)
    assert client.post(JUDGEMENTS, body_for(shown), format="json").status_code == 201
    assert client.get(NEXT + "?ahead=1").json()["comparison"]["id"] == upcoming["id"]
    r = client.post(JUDGEMENTS, body_for(upcoming), format="json")
    assert r.status_code == 409 and r.json()["code"] == "not_listened_enough"
    detail = r.json()["detail"]
    assert "\n" not in detail and f"comparison {upcoming['id']} was shown" in detail, detail
    # Its prefetched bytes still count as served: once the minimum listen has passed since it was shown, it is taken.
    assignment_age(assignment_of(annotator, upcoming), 2.5)
    r = client.post(JUDGEMENTS, body_for(upcoming), format="json")
    assert r.status_code == 201, r.json()
    assert 2.5 <= Judgement.objects.get(comparison_id=upcoming["id"]).wall_seconds < 10


def test_a_prefetched_pair_cannot_be_judged_before_it_is_shown(client, annotator):
    _shown, upcoming = _prefetched_pair(client, annotator)
    r = client.post(JUDGEMENTS, body_for(upcoming), format="json")
    assert r.status_code == 409 and r.json()["code"] == "not_listened_enough"
    assert "\n" not in r.json()["detail"] and "not been shown" in r.json()["detail"], r.json()["detail"]
    assert Judgement.objects.count() == 0

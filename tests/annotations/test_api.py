"""The REST API as the page uses it: next, submit (idempotent), skip, list, progress, schema, bad input."""
from __future__ import annotations

import pytest
from django.urls import reverse
from django.conf import settings
from rest_framework.test import APIClient

from annotations.models import Assignment, Judgement

from .factories import PASSWORD, assignment_age, listen_through_audio_view, make_comparison, make_edit, make_judgement, make_track, make_user

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
    c.force_login(annotator)  # a session, so the audio view (a plain Django view) knows who listens
    return c


def body_for(shown: dict, *, side: str = "left", confidence=4, seconds=3.0, **extra) -> dict:
    return {"comparison": shown["id"], "choice": shown[side]["choice"], "confidence": confidence,
            "left_edit": shown["left"]["edit_id"], "seconds_a": seconds, "seconds_b": seconds,
            "switches": 2, "decision_seconds": 12.5, "comment": "", **extra}


def test_next_gives_both_sides_with_beat_maps_audio_and_progress(client, annotator):
    comparison = make_comparison()
    r = client.get(NEXT)
    assert r.status_code == 200
    shown = r.json()["comparison"]
    assert shown["id"] == comparison.pk
    assert {shown["left"]["edit_id"], shown["right"]["edit_id"]} == {comparison.edit_a_id, comparison.edit_b_id}
    assert {shown["left"]["choice"], shown["right"]["choice"]} == {"a", "b"}
    left = shown["left"]
    assert left["audio_format"] == settings.ANNOTATION_AUDIO_FORMAT == "opus"
    assert left["audio_url"] == reverse("annotations:audio", args=[left["edit_id"]]) + "?format=opus"
    assert left["wav_url"] == reverse("annotations:audio", args=[left["edit_id"]])
    assert len(left["beat_starts_seconds"]) == len(left["track_beats"]) + 1
    assert shown["min_listen_seconds"] == 2.0
    assert shown["left"]["min_listen_seconds"] == shown["right"]["min_listen_seconds"] == 2.0
    assert r.json()["upcoming"] is None
    # B cut beats 4-7: the differing stretch is found and padded by one beat.
    assert shown["difference_left"] is not None
    assert r.json()["progress"] == {"done_today": 0, "done_total": 0, "left_in_queue": 0}
    assignment = Assignment.objects.get(annotator=annotator)
    assert (left["edit_id"] == comparison.edit_a_id) == assignment.left_is_a


def test_submit_stores_the_judgement_and_the_next_call_moves_on(client, annotator):
    first, second = make_comparison(priority=2), make_comparison(priority=1)
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    r = client.post(JUDGEMENTS, body_for(shown, side="right", confidence=5), format="json")
    assert r.status_code == 201, r.json()
    j = Judgement.objects.get()
    assert (j.annotator, j.comparison_id, j.confidence) == (annotator, first.pk, 5)
    assert j.choice == shown["right"]["choice"]
    assert j.left_edit_id == shown["left"]["edit_id"]
    assert Assignment.objects.get(comparison=first).completed_at is not None
    after = client.get(NEXT).json()
    assert after["comparison"]["id"] == second.pk
    assert after["progress"]["done_today"] == 1


def test_same_submit_twice_returns_the_stored_judgement_and_a_different_answer_conflicts(client, annotator):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    body = body_for(shown)
    first = client.post(JUDGEMENTS, body, format="json")
    again = client.post(JUDGEMENTS, body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    changed = client.post(JUDGEMENTS, {**body, "choice": "tie"}, format="json")
    assert changed.status_code == 409
    assert changed.json()["code"] == "judgement_conflict"
    assert Judgement.objects.count() == 1
    assert Judgement.objects.get().choice == body["choice"]


@pytest.mark.parametrize("confidence", [0, 6, "x", None, 2.5])
def test_confidence_out_of_range_or_not_a_number_is_refused(client, confidence):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    r = client.post(JUDGEMENTS, body_for(shown, confidence=confidence), format="json")
    assert r.status_code == 400
    assert "confidence" in r.json()
    assert Judgement.objects.count() == 0


def test_bad_choice_is_refused(client):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    r = client.post(JUDGEMENTS, {**body_for(shown), "choice": "left"}, format="json")
    assert r.status_code == 400 and "choice" in r.json()


def test_unknown_comparison_is_404(client):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    r = client.post(JUDGEMENTS, {**body_for(shown), "comparison": 999999}, format="json")
    assert r.status_code == 404
    assert r.json()["code"] == "comparison_not_found"


def test_unassigned_comparison_is_403(client):
    make_comparison()
    other = make_comparison(priority=-1)
    shown = client.get(NEXT).json()["comparison"]
    body = {**body_for(shown), "comparison": other.pk, "left_edit": other.edit_a_id}
    r = client.post(JUDGEMENTS, body, format="json")
    assert r.status_code == 403
    assert r.json()["code"] == "not_assigned"
    assert Judgement.objects.count() == 0


def test_left_edit_must_be_the_side_shown_left(client, annotator):
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    r = client.post(JUDGEMENTS, {**body_for(shown), "left_edit": shown["right"]["edit_id"]}, format="json")
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_judgement"


def test_a_short_edit_needs_one_full_listen_not_the_site_minimum(client, annotator, settings):
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 5.0
    track = make_track()
    short = make_edit(track, [0, 1, 2, 3, 8, 9, 10], seconds_per_beat=0.25)  # 1.75 s
    long = make_edit(track, range(32), seconds_per_beat=0.25)  # 8 s
    make_comparison(edit_a=short, edit_b=long)
    shown = client.get(NEXT).json()["comparison"]
    need = {shown[s]["edit_id"]: shown[s]["min_listen_seconds"] for s in ("left", "right")}
    assert need == {short.pk: pytest.approx(1.65), long.pk: 5.0}
    # The server counts what it served: all of the short edit once, half of the long one.
    side = {shown[s]["edit_id"]: shown[s] for s in ("left", "right")}
    b"".join(client.get(side[short.pk]["audio_url"]).streaming_content)
    first = client.get(side[long.pk]["audio_url"], HTTP_RANGE="bytes=0-99")
    b"".join(first.streaming_content)
    size = int(first["Content-Range"].rsplit("/", 1)[1])
    b"".join(client.get(side[long.pk]["audio_url"], HTTP_RANGE=f"bytes=0-{size // 2}").streaming_content)
    assignment_age(Assignment.objects.get(annotator=annotator, comparison_id=shown["id"]), 60)
    refused = client.post(JUDGEMENTS, body_for(shown, seconds_a=1.7, seconds_b=5.0), format="json")
    assert refused.status_code == 409 and "B" in refused.json()["detail"]
    b"".join(client.get(side[long.pk]["audio_url"]).streaming_content)
    r = client.post(JUDGEMENTS, body_for(shown, seconds_a=1.7, seconds_b=5.0), format="json")
    assert r.status_code == 201, r.json()


def test_ahead_assigns_the_next_comparison_which_next_then_hands_out(client, annotator):
    first, second, third = (make_comparison(priority=p) for p in (3, 2, 1))
    r = client.get(NEXT, {"ahead": "1"}).json()
    assert (r["comparison"]["id"], r["upcoming"]["id"]) == (first.pk, second.pk)
    assert r["progress"]["left_in_queue"] == 2  # the one reserved ahead still counts as work left
    # Asking again (a reload) reserves nothing more.
    again = client.get(NEXT, {"ahead": "1"}).json()
    assert (again["comparison"]["id"], again["upcoming"]["id"]) == (first.pk, second.pk)
    assert Assignment.objects.filter(annotator=annotator).count() == 2
    # The upcoming side's audio may be fetched before the current one is judged.
    web = APIClient()
    web.login(username=annotator.username, password=PASSWORD)
    assert web.get(r["upcoming"]["left"]["audio_url"]).status_code == 200
    listen_through_audio_view(client, annotator, r["comparison"])
    assert client.post(JUDGEMENTS, body_for(r["comparison"]), format="json").status_code == 201
    after = client.get(NEXT, {"ahead": "1"}).json()
    assert (after["comparison"]["id"], after["upcoming"]["id"]) == (second.pk, third.pk)
    assert after["comparison"]["left"]["edit_id"] == r["upcoming"]["left"]["edit_id"]


def test_loop_is_offered_only_when_the_difference_is_a_part_of_the_edits(client, annotator):
    track = make_track()
    long_a, long_b = make_edit(track, range(48)), make_edit(track, [*range(24), *range(32, 48)])
    make_comparison(edit_a=long_a, edit_b=long_b, priority=2)
    tiny_a, tiny_b = make_edit(track, range(6)), make_edit(track, [0, 1, 4, 5])
    make_comparison(edit_a=tiny_a, edit_b=tiny_b, priority=1)
    shown = client.get(NEXT).json()["comparison"]
    # They part at output beat 24: one bar (4 beats, 0.25 s each) either side.
    assert shown["difference_left"] == pytest.approx([5.0, 7.0])
    assert shown["loop_useful"] is True
    listen_through_audio_view(client, annotator, shown)
    assert client.post(JUDGEMENTS, body_for(shown), format="json").status_code == 201
    tiny = client.get(NEXT).json()["comparison"]
    assert tiny["difference_left"] is not None and tiny["loop_useful"] is False


def test_skip_presets_are_stored_as_a_choice(client, annotator):
    first, second, third = (make_comparison(priority=p) for p in (3, 2, 1))
    shown = client.get(NEXT).json()["comparison"]
    url = f"/api/comparisons/{shown['id']}/skip/"
    assert client.post(url, {"reason_choice": "louder"}, format="json").status_code == 400
    other = client.post(url, {"reason_choice": "other"}, format="json")
    assert other.status_code == 400 and "in words" in other.json()["detail"]
    r = client.post(url, {"reason_choice": "broken_audio"}, format="json")
    assert r.status_code == 200 and r.json()["skip_reason_choice"] == "broken_audio"
    stored = Assignment.objects.get(comparison=first)
    assert (stored.skip_reason_choice, stored.skipped_reason) == ("broken_audio", "Broken audio")
    shown = client.get(NEXT).json()["comparison"]
    client.post(f"/api/comparisons/{shown['id']}/skip/", {"reason_choice": "other", "reason": "a dog barked"},
                format="json")
    stored = Assignment.objects.get(comparison=second)
    assert (stored.skip_reason_choice, stored.skipped_reason) == ("other", "a dog barked")


def test_skip_needs_a_reason_and_hands_out_the_next_comparison(client, annotator):
    first, second = make_comparison(priority=2), make_comparison(priority=1)
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    assert client.post(f"/api/comparisons/{shown['id']}/skip/", {"reason": ""}, format="json").status_code == 400
    r = client.post(f"/api/comparisons/{shown['id']}/skip/", {"reason": "audio glitch"}, format="json")
    assert r.status_code == 200
    assert Assignment.objects.get(comparison=first).skipped_reason == "audio glitch"
    assert client.get(NEXT).json()["comparison"]["id"] == second.pk
    late = client.post(JUDGEMENTS, body_for(shown), format="json")
    assert late.status_code == 409


def test_empty_queue_says_so(client):
    r = client.get(NEXT)
    assert r.status_code == 200
    assert r.json()["comparison"] is None


def test_researcher_lists_and_filters_all_judgements():
    a, b = make_user(), make_user()
    c1, c2 = make_comparison(), make_comparison()
    make_judgement(a, c1)
    make_judgement(b, c1)
    make_judgement(a, c2)
    researcher = make_user(role="researcher")
    client = APIClient()
    client.force_authenticate(researcher)
    assert client.get(JUDGEMENTS).json()["count"] == 3
    assert client.get(JUDGEMENTS, {"annotator": a.pk}).json()["count"] == 2
    assert client.get(JUDGEMENTS, {"comparison": c1.pk}).json()["count"] == 2
    assert client.get(JUDGEMENTS, {"annotator": a.pk, "comparison": c2.pk}).json()["count"] == 1
    from django.utils import timezone
    today = timezone.localdate().isoformat()
    assert client.get(JUDGEMENTS, {"date": today}).json()["count"] == 3
    assert client.get(JUDGEMENTS, {"date": "2001-01-01"}).json()["count"] == 0
    assert client.get(JUDGEMENTS, {"date": "yesterday"}).status_code == 400


def test_progress_endpoint(client, annotator):
    make_judgement(annotator, make_comparison())
    make_comparison()
    assert client.get("/api/progress/").json() == {"done_today": 1, "done_total": 1, "left_in_queue": 1}


def test_openapi_schema_generates_without_errors_or_warnings(capsys):
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    complaints = capsys.readouterr().err
    assert "Error" not in complaints and "Warning" not in complaints, complaints
    for path in ("/api/comparisons/next/", "/api/judgements/", "/api/comparisons/{comparison_id}/skip/",
                 "/api/progress/"):
        assert path in schema["paths"]


def test_schema_is_served(client):
    user = make_user(role="researcher")
    c = APIClient()
    c.login(username=user.username, password=PASSWORD)
    r = c.get("/api/schema/")
    assert r.status_code == 200
    assert b"judgements_submit" in r.content


def test_audio_is_served_with_range_support(annotator):
    from django.test import Client

    comparison = make_comparison()
    client = Client()
    client.login(username=annotator.username, password=PASSWORD)
    from annotations.assignment import assignment_next

    assignment_next(annotator=annotator)
    url = reverse("annotations:audio", args=[comparison.edit_a_id])
    whole = client.get(url)
    body = b"".join(whole.streaming_content)
    size = len(body)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes" and whole["Content-Type"] == "audio/wav"
    assert body[:4] == b"RIFF" and int(whole["Content-Length"]) == size
    part = client.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 10-19/{size}"
    assert b"".join(part.streaming_content) == body[10:20]
    tail = client.get(url, HTTP_RANGE="bytes=-8")
    assert b"".join(tail.streaming_content) == body[-8:]
    open_ended = client.get(url, HTTP_RANGE=f"bytes={size - 5}-")
    assert b"".join(open_ended.streaming_content) == body[-5:]
    # The page's compressed copy, made on first request for an edit stored without one, ranges included.
    comparison.edit_a.refresh_from_db()
    assert not comparison.edit_a.listening_audio
    mp3 = client.get(url, {"format": "mp3"})
    mp3_body = b"".join(mp3.streaming_content)
    assert mp3.status_code == 200 and mp3["Content-Type"] == "audio/mpeg" and len(mp3_body) < size
    import io
    import soundfile as sf
    assert sf.info(io.BytesIO(mp3_body)).duration == pytest.approx(comparison.edit_a.duration_seconds, abs=0.05)
    comparison.edit_a.refresh_from_db()
    assert comparison.edit_a.listening_audio
    mp3_part = client.get(url, {"format": "mp3"}, HTTP_RANGE="bytes=0-99")
    assert mp3_part.status_code == 206 and b"".join(mp3_part.streaming_content) == mp3_body[:100]
    for unsatisfiable in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        refused = client.get(url, HTTP_RANGE=unsatisfiable)
        assert refused.status_code == 416, unsatisfiable
        assert refused["Content-Range"] == f"bytes */{size}"
    # RFC 9110: an invalid Range header is ignored, and the whole body is sent.
    for invalid in ("bytes=20-10", "bytes=abc", "items=0-5", "bytes=0-1,4-5", "bytes=-"):
        ignored = client.get(url, HTTP_RANGE=invalid)
        assert ignored.status_code == 200 and "Content-Range" not in ignored, invalid
        assert b"".join(ignored.streaming_content) == body, invalid

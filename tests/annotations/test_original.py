"""The original passage: the unedited source both edits were cut from, for the annotator of the comparison only,
rendered once at the edits' loudness, and recorded with the judgement by the server (never required)."""
from __future__ import annotations

import pytest
import soundfile as sf
from rest_framework.test import APIClient

from annotations.models import Passage
from editing.render import TARGET_LUFS, integrated_loudness

from .factories import (
    listen_through_audio_view,
    make_comparison,
    make_edit,
    make_track_with_audio,
    make_user,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]

NEXT = "/api/comparisons/next/"
JUDGEMENTS = "/api/judgements/"


@pytest.fixture
def comparison():
    """Two edits of beats 8..23 of a 32-beat track with real audio: the whole passage, and one with a bar cut."""
    track = make_track_with_audio(n_beats=32)
    whole = make_edit(track, range(8, 24), excerpt_start=8)
    cut = make_edit(track, [*range(8, 12), *range(16, 24)], excerpt_start=8)
    return make_comparison(edit_a=whole, edit_b=cut)


def client_of(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def original_url(comparison) -> str:
    return f"/api/comparisons/{comparison.pk}/original/"


def read(response) -> bytes:
    assert response.status_code in (200, 206), response
    return b"".join(response.streaming_content)  # to the end: the view records what it streamed


def judge(client, shown: dict):
    return client.post(JUDGEMENTS, {"comparison": shown["id"], "choice": "tie", "confidence": 3,
                                    "left_edit": shown["left"]["edit_id"], "seconds_a": 2.0, "seconds_b": 2.0},
                       format="json")


def test_the_assigned_annotator_gets_the_passage_with_its_beat_map_at_the_edits_loudness(comparison, storage_root,
                                                                                       tmp_path):
    annotator = make_user("ears")
    client = client_of(annotator)
    assert client.get(NEXT).json()["comparison"]["id"] == comparison.pk

    original = client.get(original_url(comparison))

    assert original.status_code == 200
    body = original.json()
    assert body["comparison"] == comparison.pk
    assert body["track_beats"] == list(range(8, 24))  # the passage both edits were cut from, in order
    starts = body["beat_starts_seconds"]
    assert len(starts) == 17 and starts[0] == 0.0 and starts[-1] == pytest.approx(4.0, abs=0.01)
    assert body["duration_seconds"] == pytest.approx(starts[-1], abs=1e-3)
    audio = client.get(body["audio_url"])
    assert body["audio_format"] == "opus"
    assert audio["Content-Type"] == "audio/ogg; codecs=opus" and "no-store" in audio["Cache-Control"]
    served = tmp_path / "original.opus"  # libsndfile reads Ogg Opus from a file, not from memory
    served.write_bytes(read(audio))
    samples, rate = sf.read(served, dtype="float32")
    assert rate == 48_000 and samples.ndim == 1  # the source's channels (mono), resampled for Opus
    assert abs(len(samples) / rate - body["duration_seconds"]) < 0.1
    # Through the edits' render: normalised as their listening copies are (the tones are far quieter raw).
    assert integrated_loudness(samples, rate) == pytest.approx(TARGET_LUFS, abs=1.5)
    # Rendered once, kept as a derived file, served again from storage.
    read(client.get(body["audio_url"], HTTP_RANGE="bytes=0-99"))
    assert Passage.objects.count() == 1
    assert [p.name for p in (storage_root / "passages").rglob("*.opus")] == ["8-16-native.opus"]


def test_nobody_else_gets_it_and_ids_reveal_nothing(comparison):
    annotator = make_user("ears")
    client_of(annotator).get(NEXT)
    other = client_of(make_user("other"))  # an annotator, never given this comparison
    audio_url = f"/annotate/original/{comparison.pk}/"

    assert other.get(original_url(comparison)).status_code == 404
    assert other.get(audio_url).status_code == 404
    assert other.get("/api/comparisons/987654/original/").status_code == 404
    assert client_of(None).get(original_url(comparison)).status_code == 403
    assert client_of(None).get(audio_url).status_code == 404
    assert client_of(make_user("nobody", role=None)).get(audio_url).status_code == 404
    # Researchers hear every edit, and so every original, as on the A/B audio.
    assert client_of(make_user("curie", role="researcher")).get(original_url(comparison)).status_code == 200
    # Refusals render nothing: only the researcher's request made the passage.
    assert Passage.objects.count() == 1


def test_a_passage_of_another_comparison_of_the_same_track_is_its_own(comparison):
    track = comparison.track
    later = make_comparison(edit_a=make_edit(track, range(16, 32), excerpt_start=16),
                            edit_b=make_edit(track, [*range(16, 20), *range(24, 32)], excerpt_start=16))
    researcher = client_of(make_user("curie", role="researcher"))
    assert researcher.get(original_url(later)).json()["track_beats"] == list(range(16, 32))
    assert researcher.get(original_url(comparison)).json()["track_beats"] == list(range(8, 24))


def test_the_judgement_says_whether_the_server_served_the_original(comparison):
    annotator = make_user("ears")
    client = client_of(annotator)
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    client.get(original_url(comparison))  # the beat map alone is not the audio

    plain = judge(client, shown)

    assert plain.status_code == 201 and plain.json()["original_heard"] is False

    second = make_comparison(track=comparison.track)  # beats 0..15 of the same track: a passage of its own
    shown = client.get(NEXT).json()["comparison"]
    assert shown["id"] == second.pk
    listen_through_audio_view(client, annotator, shown)
    read(client.get(client.get(original_url(second)).json()["audio_url"], HTTP_RANGE="bytes=0-999"))

    heard = judge(client, shown)

    assert heard.status_code == 201 and heard.json()["original_heard"] is True
    listed = {j["comparison"]: j["original_heard"] for j in client.get(JUDGEMENTS).json()["results"]}
    assert listed == {comparison.pk: False, second.pk: True}


def test_the_original_served_after_the_judgement_changes_nothing(comparison):
    annotator = make_user("ears")
    client = client_of(annotator)
    shown = client.get(NEXT).json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    assert judge(client, shown).status_code == 201

    # A completed comparison may be replayed, original included; its judgement stays as stored.
    read(client.get(f"/annotate/original/{comparison.pk}/"))

    assert client.get(JUDGEMENTS).json()["results"][0]["original_heard"] is False

"""What annotators hear: the native render (the source's rate and channels, lead-in included) as Opus or FLAC,
its beat map served with it, the two sides aligned sample for sample, and the listening rule counting that file."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from annotations import services
from annotations.models import ListeningCopy
from annotations.services import baseline_comparisons_create, edit_listening_copy_ensure

from .factories import listen_through_audio_view, make_track_with_audio, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]

NEXT = "/api/comparisons/next/"
JUDGEMENTS = "/api/judgements/"
SOURCE_RATE, LEAD_IN_SECONDS = 44_100, 0.3


@pytest.fixture
def comparison():
    """Baseline edits of the first 16 beats of a stereo 44.1 kHz track that opens with 0.3 s before its first beat."""
    track = make_track_with_audio(n_beats=32, source_sample_rate=SOURCE_RATE, channels=2,
                                  lead_in_seconds=LEAD_IN_SECONDS)
    return baseline_comparisons_create(track=track, n_excerpts=1, seed=0, excerpt_beats=16, with_gold=False)[0]


def fetch(client, url: str, path) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response
    path.write_bytes(b"".join(response.streaming_content))  # libsndfile reads Ogg Opus from files only
    return {"content_type": response["Content-Type"], "info": sf.info(path)}


def shown_for(annotator) -> tuple[APIClient, dict]:
    client = APIClient()
    client.force_login(annotator)
    return client, client.get(NEXT).json()["comparison"]


def test_flac_is_the_source_rate_and_channels_with_the_native_beat_map(comparison, settings, tmp_path):
    settings.ANNOTATION_AUDIO_FORMAT = "flac"
    client, shown = shown_for(make_user("ears"))

    for key in ("left", "right"):
        side = shown[key]
        served = fetch(client, side["audio_url"], tmp_path / f"{key}.flac")
        assert side["audio_format"] == "flac" and served["content_type"] == "audio/flac"
        assert (served["info"].samplerate, served["info"].channels) == (SOURCE_RATE, 2)  # the source's
        edit = (comparison.edit_a if side["choice"] == "a" else comparison.edit_b)
        edit.refresh_from_db()
        native = edit.render["native"]
        # The beat map is the file's: the native one, which opens after the track's lead-in, not the
        # analysis render's (which starts on the first beat).
        assert side["beat_starts_seconds"] == pytest.approx(native["beat_starts_seconds"])
        assert side["beat_starts_seconds"][0] == pytest.approx(LEAD_IN_SECONDS, abs=0.01)
        assert edit.render["beat_starts_seconds"][0] == 0.0
        assert side["duration_seconds"] == pytest.approx(served["info"].duration, abs=1e-3)
        # Lossless: the same samples as the native render.
        flac, _ = sf.read(tmp_path / f"{key}.flac", dtype="float32")
        with default_storage.open(native["audio"], "rb") as fh:
            wav, _ = sf.read(fh, dtype="float32")
        np.testing.assert_allclose(flac, wav, atol=1e-4)


def test_opus_keeps_the_source_channels_at_48_khz_aligned_with_the_native_render(comparison, tmp_path):
    annotator = make_user("ears")
    client, shown = shown_for(annotator)

    for key in ("left", "right"):
        side = shown[key]
        served = fetch(client, side["audio_url"], tmp_path / f"{key}.opus")
        assert side["audio_format"] == "opus" and served["content_type"] == "audio/ogg; codecs=opus"
        assert (served["info"].samplerate, served["info"].channels) == (48_000, 2)
        assert side["duration_seconds"] == pytest.approx(served["info"].duration, abs=1e-3)
        # The codec delay (pre-skip) is removed on decoding: the decoded file lines up with the native
        # render sample for sample, so A and B (encoded alike) switch without a shift.
        opus, _ = sf.read(tmp_path / f"{key}.opus", dtype="float32")
        copy = ListeningCopy.objects.get(edit_id=side["edit_id"], format="opus")
        assert copy.source_sample_rate == SOURCE_RATE and copy.channels == 2
        edit = copy.edit
        with default_storage.open(edit.render["native"]["audio"], "rb") as fh:
            wav, rate = sf.read(fh, dtype="float32")
        assert opus.shape[0] == pytest.approx(wav.shape[0] * 48_000 / rate, abs=2)
        reference = np.interp(np.arange(opus.shape[0]) * rate / 48_000, np.arange(wav.shape[0]), wav[:, 0])
        window = slice(48_000 // 2, 48_000 * 2)
        lags = range(-200, 201)
        scores = [float(np.dot(opus[window, 0], np.roll(reference, lag)[window])) for lag in lags]
        assert abs(lags[int(np.argmax(scores))]) <= 1
    # The server's listening rule counts seconds of the file it served.
    listen_through_audio_view(client, annotator, shown)
    judged = client.post(JUDGEMENTS, {"comparison": shown["id"], "choice": "tie", "confidence": 3,
                                      "left_edit": shown["left"]["edit_id"], "seconds_a": 2.0, "seconds_b": 2.0},
                         format="json")
    assert judged.status_code == 201, judged.json()
    assert judged.json()["served_seconds_a"] == pytest.approx(shown["left" if shown["left"]["choice"] == "a"
                                                                    else "right"]["duration_seconds"], abs=0.01)


def test_two_requests_racing_for_a_copy_leave_one_row_and_one_file(comparison, monkeypatch, storage_root):
    edit = comparison.edit_a
    first = edit_listening_copy_ensure(edit=edit, fmt="flac")
    # The other request looked before the first recorded its copy: it encodes too, and loses.
    real_filter = ListeningCopy.objects.filter
    monkeypatch.setattr(ListeningCopy.objects, "filter",
                        lambda *a, **k: real_filter(pk=-1) if k.get("edit") == edit else real_filter(*a, **k))
    second = edit_listening_copy_ensure(edit=edit, fmt="flac")
    monkeypatch.undo()

    assert second.pk == first.pk and ListeningCopy.objects.filter(edit=edit).count() == 1
    assert [p.name for p in storage_root.rglob("*-listening*.flac")
            if p.name.startswith(services.Path(edit.audio.name).stem)] == [services.Path(first.audio.name).name]


def test_the_legacy_mp3_setting_serves_the_analysis_rate_copy_with_its_own_beat_map(comparison, settings, tmp_path):
    settings.ANNOTATION_AUDIO_FORMAT = "mp3"
    client, shown = shown_for(make_user("ears"))
    side = shown["left"]
    served = fetch(client, side["audio_url"], tmp_path / "left.mp3")
    edit = comparison.edit_a if side["choice"] == "a" else comparison.edit_b
    assert side["audio_format"] == "mp3" and served["content_type"] == "audio/mpeg"
    assert (served["info"].samplerate, served["info"].channels) == (22_050, 1)
    assert side["beat_starts_seconds"] == pytest.approx(edit.render["beat_starts_seconds"])
    assert not ListeningCopy.objects.exists()


def test_a_source_the_native_renderer_refuses_is_judged_from_the_legacy_copy_not_a_500(settings, tmp_path):
    """Three channels: no native render (one-line reason in the log); both sides and the original are the MP3 copy."""
    settings.ANNOTATION_AUDIO_FORMAT = "opus"
    track = make_track_with_audio(n_beats=32, source_sample_rate=SOURCE_RATE, channels=3)
    comparison = baseline_comparisons_create(track=track, n_excerpts=1, seed=0, excerpt_beats=16, with_gold=False)[0]
    client, shown = shown_for(make_user("surround"))
    assert shown["id"] == comparison.pk
    for key in ("left", "right"):
        assert shown[key]["audio_format"] == "mp3"
        served = fetch(client, shown[key]["audio_url"], tmp_path / f"{key}.mp3")
        assert served["content_type"] == "audio/mpeg" and served["info"].channels == 1
    original = client.get(f"/api/comparisons/{comparison.pk}/original/")
    assert original.status_code == 200 and original.json()["audio_format"] == "mp3"

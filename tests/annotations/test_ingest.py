"""Ingest: real audio in, a track with its analysis out; bad files refused with nothing half-stored."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.core.management import CommandError, call_command

from annotations.models import Comparison, Edit, Track, TrackUpload
from annotations.services import (
    baseline_comparisons_create,
    edit_create,
    track_ingest,
    track_load_analysis,
)
from editing.audio import AudioError
from editing.demo import write_demo_corpus
from editing.edit import Action, passage_frame

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def demo_track_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    return write_demo_corpus(out, seed=0, n_tracks=1)[0]


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_ingest_stores_track_with_its_analysis(storage_root, demo_track_path):
    track, created = track_ingest(path=demo_track_path)

    assert created
    assert track.title == demo_track_path.stem
    assert track.n_beats >= 16 and 60 <= track.tempo_bpm <= 180
    analysis = track_load_analysis(track)
    assert analysis.features.shape == (track.n_beats, 121)
    assert len(analysis.beat_samples) == track.n_beats + 1
    assert (storage_root / track.audio.name).read_bytes() == demo_track_path.read_bytes()


def test_same_content_twice_is_a_no_op(storage_root, demo_track_path, tmp_path):
    first, _ = track_ingest(path=demo_track_path)
    files_before = stored_files(storage_root)
    renamed = tmp_path / "same-song-other-name.wav"
    renamed.write_bytes(demo_track_path.read_bytes())

    again, created = track_ingest(path=renamed)

    assert not created and again.pk == first.pk
    assert Track.objects.count() == 1
    assert stored_files(storage_root) == files_before


def _write(path: Path, y: np.ndarray, sr: int = 22050) -> Path:
    sf.write(path, y.astype(np.float32), sr)
    return path


def _clicks(seconds: float, sr: int = 22050, bpm: float = 120.0) -> np.ndarray:
    y = np.zeros(int(seconds * sr), dtype=np.float32)
    step = int(sr * 60 / bpm)
    for start in range(0, len(y) - 200, step):
        y[start:start + 200] = np.hanning(200) * 0.8
    return y


@pytest.mark.parametrize(
    "name,make,reason",
    [
        ("corrupt.wav", lambda p: p.write_bytes(b"RIFF\x00\x00garbage" * 50), "corrupt"),
        ("empty.wav", lambda p: p.write_bytes(b""), "empty"),
        ("silent.wav", lambda p: _write(p, np.zeros(22050 * 20)), "silent"),
        ("short.wav", lambda p: _write(p, _clicks(5.0)), "beats"),
        ("notes.txt", lambda p: p.write_text("not audio"), "unsupported"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(storage_root, tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)

    with pytest.raises(AudioError) as err:
        track_ingest(path=path)

    message = str(err.value)
    assert name in message
    assert reason in message.lower()
    assert Track.objects.count() == 0
    assert stored_files(storage_root) == []


def test_too_long_is_refused_with_the_limit_named(storage_root, demo_track_path):
    with pytest.raises(AudioError) as err:
        track_ingest(path=demo_track_path, max_seconds=10.0)
    assert demo_track_path.name in str(err.value) and "long" in str(err.value).lower()
    assert Track.objects.count() == 0 and stored_files(storage_root) == []


def test_ingest_command_reports_each_file(storage_root, demo_track_path, tmp_path, capsys):
    folder = tmp_path / "music" / "nested"
    folder.mkdir(parents=True)
    (folder / demo_track_path.name).write_bytes(demo_track_path.read_bytes())
    (folder / "broken.flac").write_bytes(b"fLaC" + b"\x00" * 100)

    call_command("ingest_audio", str(tmp_path / "music"))

    out, err = capsys.readouterr()
    assert "2 files: 1 ingested, 0 already present, 1 refused" in out
    assert "broken.flac" in err
    assert Track.objects.count() == 1


def test_ingest_command_fails_when_nothing_can_be_ingested(storage_root, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with pytest.raises(CommandError):
        call_command("ingest_audio", str(tmp_path / "bad.wav"))
    with pytest.raises(CommandError, match="no such file"):
        call_command("ingest_audio", str(tmp_path / "missing.wav"))


def test_admin_upload_is_analysed_by_a_task_and_refuses_with_the_reason_and_no_server_path(
        storage_root, demo_track_path, admin_client, tmp_path, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued, open(demo_track_path, "rb") as good:
        response = admin_client.post("/admin/annotations/track/upload/", {"files": [good]})
    # The request stored the file and queued its analysis; it analysed nothing itself.
    assert response.status_code == 302 and response["Location"] == "/admin/annotations/trackupload/"
    upload = TrackUpload.objects.get()
    assert upload.status == TrackUpload.Status.QUEUED and upload.progress == 0 and Track.objects.count() == 0
    assert len(queued) == 1
    queued[0]()  # the committed request's task runs
    upload.refresh_from_db()
    assert upload.status == TrackUpload.Status.DONE and upload.progress == 1.0 and upload.track == Track.objects.get()
    assert not upload.file  # the track keeps its own copy
    listing = admin_client.get("/admin/annotations/trackupload/").content.decode()
    assert f"{upload.track.n_beats} beats at" in listing and "100%" in listing

    bad = tmp_path / "garbage.mp3"
    bad.write_bytes(b"\x00" * 1000)
    files_before = stored_files(storage_root)
    with django_capture_on_commit_callbacks(execute=True), open(bad, "rb") as fh:
        admin_client.post("/admin/annotations/track/upload/", {"files": [fh]})
    refused = TrackUpload.objects.get(original_name="garbage.mp3")
    assert refused.status == TrackUpload.Status.REFUSED and refused.message.startswith("garbage.mp3: ")
    assert "/tmp" not in refused.message and str(storage_root) not in refused.message, refused.message
    assert Track.objects.count() == 1
    assert stored_files(storage_root) == files_before


def test_an_upload_over_the_size_limit_is_refused_before_it_is_stored(settings, storage_root, admin_client, tmp_path):
    settings.MAX_UPLOAD_BYTES = 1_000_000
    big = tmp_path / "long.wav"
    big.write_bytes(b"\x00" * 1_500_000)
    with open(big, "rb") as fh:
        response = admin_client.post("/admin/annotations/track/upload/", {"files": [fh]})
    assert response.status_code == 413
    assert "the upload is 1.5 MB, at most 1.0 MB can be uploaded at once" in response.content.decode()
    assert not TrackUpload.objects.exists() and stored_files(storage_root) == []


def test_edit_is_rendered_stored_and_reused(storage_root, demo_track_path):
    track, _ = track_ingest(path=demo_track_path)
    head_end, tail_start = passage_frame(track_load_analysis(track).bar_positions[:32])
    # Keep the opening bar (written by the builder), two beats, cut four, keep the rest of the middle.
    actions = [Action.KEEP] * 2 + [Action.CUT] * 4 + [Action.KEEP] * (tail_start - head_end - 6)

    edit = edit_create(track=track, actions=actions, excerpt_start=0, n_source_beats=32, target_beats=28, source="test")
    again = edit_create(track=track, actions=actions, excerpt_start=0, n_source_beats=32, target_beats=28, source="test")

    assert again.pk == edit.pk and Edit.objects.count() == 1
    info = sf.info(storage_root / edit.audio.name)
    assert abs(info.duration - edit.duration_seconds) < 1e-3
    # The page's compressed copy is made with it: the same length, a fraction of the bytes.
    listening = sf.info(storage_root / edit.listening_audio.name)
    assert listening.format == "MP3" and abs(listening.duration - edit.duration_seconds) < 0.05
    assert edit.listening_audio.size < edit.audio.size / 4
    assert len(edit.render["track_beats"]) == 28
    assert len(edit.render["seam_seconds"]) == 1


def test_baseline_comparisons_pair_edits_of_one_track(storage_root, demo_track_path):
    track, _ = track_ingest(path=demo_track_path)

    comparisons = baseline_comparisons_create(track=track, n_excerpts=2, seed=1)

    assert comparisons
    gold = [c for c in comparisons if c.is_gold]
    assert gold and all(c.gold_answer == "b" and c.edit_b.source == "baseline:heuristic" for c in gold)
    for comparison in Comparison.objects.all():
        a, b = comparison.edit_a, comparison.edit_b
        assert a.track_id == b.track_id == track.pk
        assert a.pk != b.pk
        # Both edits retarget the same passage to the same length, shortening or lengthening.
        assert (a.excerpt_start_beat, a.n_source_beats, a.target_beats) == (b.excerpt_start_beat, b.n_source_beats, b.target_beats)
        assert len(a.render["track_beats"]) == a.target_beats
    targets = {c.edit_a.target_beats / c.edit_a.n_source_beats for c in comparisons}
    assert min(targets) < 1 < max(targets)

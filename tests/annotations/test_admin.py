"""The admin as an operator meets it: refusals without server paths, durations as m:ss,
judgements that can be looked at but not made or changed, a compact export job page."""
from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from annotations.admin import minutes_seconds
from annotations.export import export_job_create
from annotations.models import ExportJob, Judgement, Track
from annotations.selectors import ExportFilters
from tests.annotations.factories import make_comparison, make_edit, make_judgement, make_track, make_user, tone_wav

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user_client() -> Client:
    client = Client()
    client.force_login(make_user("root", role="admin", is_staff=True, is_superuser=True))
    return client


def _messages(page: str) -> list[str]:
    return re.findall(r'<li class="[^"]*">(.*?)</li>', page, flags=re.S)


def test_durations_read_as_minutes_and_seconds(admin_user_client, storage_root):
    assert (minutes_seconds(82.78571428571429), minutes_seconds(1.7, tenths=True), minutes_seconds(600)) == \
        ("1:23", "0:01.7", "10:00")
    track = make_track(n_beats=166, tempo_bpm=120.0)  # 83.0 s
    edit = make_edit(track, range(7), seconds_per_beat=0.25)  # 1.75 s
    tracks = admin_user_client.get("/admin/annotations/track/").content.decode()
    assert ">1:23<" in tracks and "83.0<" not in tracks
    assert ">1:23<" in admin_user_client.get(f"/admin/annotations/track/{track.pk}/change/").content.decode()
    assert ">0:01.8<" in admin_user_client.get("/admin/annotations/edit/").content.decode()
    assert edit.duration_seconds == 1.75


def test_durations_cannot_be_typed_over(admin_user_client, storage_root):
    track = make_track(n_beats=166, tempo_bpm=120.0)
    edit = make_edit(track, range(7), seconds_per_beat=0.25)
    for url in (f"/admin/annotations/track/{track.pk}/change/", f"/admin/annotations/edit/{edit.pk}/change/"):
        page = admin_user_client.get(url).content.decode()
        assert 'name="duration_seconds"' not in page, url
    assert ">0:01.8<" in admin_user_client.get(f"/admin/annotations/edit/{edit.pk}/change/").content.decode()
    assert admin_user_client.get("/admin/annotations/edit/add/").status_code == 403  # only rendering makes edits


def test_tempos_read_to_a_tenth_of_a_beat_per_minute(admin_user_client):
    track = make_track(tempo_bpm=117.453829)
    listing = admin_user_client.get("/admin/annotations/track/").content.decode()
    page = admin_user_client.get(f"/admin/annotations/track/{track.pk}/change/").content.decode()
    for html in (listing, page):
        assert ">117.5 BPM<" in html and "117.45" not in html


def test_the_track_page_links_to_its_audio_and_the_link_plays_it(admin_user_client, storage_root):
    track = make_track()
    wav = tone_wav(range(4), seconds_per_beat=0.25)
    Track.objects.filter(pk=track.pk).update(audio=default_storage.save("tracks/audio/song.wav", ContentFile(wav)),
                                             original_name="Song take 2.wav")
    page = admin_user_client.get(f"/admin/annotations/track/{track.pk}/change/").content.decode()
    link = re.search(r'<a href="([^"]+)">Song take 2.wav</a>', page).group(1)
    assert not link.startswith("/media/")  # stored media is never served directly
    audio = admin_user_client.get(link)
    assert audio.status_code == 200 and b"".join(audio.streaming_content) == wav
    assert audio["Content-Type"].startswith("audio/") and "Song take 2.wav" in audio["Content-Disposition"]
    stranger = Client()
    stranger.force_login(make_user(role="annotator"))
    assert stranger.get(link).status_code == 302  # to the admin's login


def test_judgements_can_be_viewed_but_not_added_changed_or_deleted(admin_user_client, storage_root):
    judgement = make_judgement(make_user(), make_comparison(), choice="a")
    listing = admin_user_client.get("/admin/annotations/judgement/").content.decode()
    assert "/admin/annotations/judgement/add/" not in listing and "delete_selected" not in listing
    assert "export_jsonl" in listing  # exporting stays possible
    assert admin_user_client.get("/admin/annotations/judgement/add/").status_code == 403
    view = admin_user_client.get(f"/admin/annotations/judgement/{judgement.pk}/change/")
    assert view.status_code == 200 and 'name="choice"' not in view.content.decode()
    changed = admin_user_client.post(f"/admin/annotations/judgement/{judgement.pk}/change/",
                                     {"choice": "b", "confidence": 5})
    assert changed.status_code == 403
    assert admin_user_client.post(f"/admin/annotations/judgement/{judgement.pk}/delete/", {"post": "yes"}).status_code == 403
    judgement.refresh_from_db()
    assert (judgement.choice, judgement.confidence) == ("a", 3) and Judgement.objects.count() == 1


def test_the_export_job_page_lists_the_selected_ids_once_as_a_count_and_range(admin_user_client):
    ids = tuple(range(1001, 1041))
    job = export_job_create(requested_by=make_user(role="admin"), fmt="jsonl",
                            filters=ExportFilters(judgement_ids=ids))
    ExportJob.objects.filter(pk=job.pk).update(card={"counts": {"rows": 40}, "filters": job.filters})
    page = admin_user_client.get(f"/admin/annotations/exportjob/{job.pk}/change/").content.decode()
    assert "40 selected (ids 1001 to 1040)" in page
    assert "1017" not in page  # no id in the middle of the range is printed, in the filters or the card
    assert "&quot;rows&quot;: 40" in page

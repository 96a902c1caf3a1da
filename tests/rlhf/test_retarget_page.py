"""The retarget page (``/retarget/``): who may open it, what it offers with and without a policy, and
its beat-mapped A/B switching (``static/js/beatmap.js``) against the Python rule it twins."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from annotations.playhead import BeatMap, map_playhead
from annotations.roles import ADMIN, ANNOTATOR, RESEARCHER
from editing.spaces import spaces_spec
from rlhf.models import PolicyVersion
from tests.annotations.factories import make_track, make_user

BEATMAP_JS = Path(__file__).resolve().parents[2] / "static" / "js" / "beatmap.js"
RETARGET_JS = BEATMAP_JS.with_name("retarget.js")


def _client(role) -> Client:
    client = Client()
    client.force_login(make_user(role=role))
    return client


@pytest.mark.django_db
def test_annotators_and_people_without_a_role_get_403_and_visitors_go_to_the_login():
    url = reverse("retarget-page")
    assert _client(ANNOTATOR).get(url).status_code == 403
    assert _client(None).get(url).status_code == 403
    response = Client().get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("role", [RESEARCHER, ADMIN])
def test_researchers_and_admins_get_the_page_with_every_track_to_choose(role):
    make_track(title="Harbour song", n_beats=96, tempo_bpm=120.0)
    response = _client(role).get(reverse("retarget-page"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Harbour song (48 s, 96 beats)" in page
    assert 'data-seconds="48.0"' in page and 'data-beats="96"' in page
    assert "static/js/retarget.js" in page and "static/js/beatmap.js" in page


@pytest.mark.django_db
def test_without_an_active_policy_the_page_says_so_and_asks_only_the_heuristic():
    page = _client(RESEARCHER).get(reverse("retarget-page")).content.decode()
    assert "No active policy yet" in page
    assert 'data-methods="heuristic"' in page


@pytest.mark.django_db
def test_with_an_active_policy_the_page_asks_the_policy_and_the_heuristic():
    PolicyVersion.objects.create(artifact="policies/x.zip", artifact_sha256="0" * 64, spaces_spec=spaces_spec(),
                                 num_timesteps=512, is_active=True)
    page = _client(RESEARCHER).get(reverse("retarget-page")).content.decode()
    assert "No active policy yet" not in page
    assert 'data-methods="policy heuristic"' in page


@pytest.mark.django_db
def test_a_policy_of_an_older_studio_is_named_and_only_the_heuristic_is_asked():
    spec = spaces_spec()
    spec["observation"] = {**spec["observation"], "version": "editing-obs-v2"}
    old = PolicyVersion.objects.create(artifact="policies/x.zip", artifact_sha256="0" * 64, spaces_spec=spec,
                                       num_timesteps=512, is_active=True)
    page = _client(RESEARCHER).get(reverse("retarget-page")).content.decode()
    assert f"policy {old.label}: spaces differ" in page and "a cycle trains a first policy" in page
    assert 'data-methods="heuristic"' in page
    # The API refuses a policy method with the same reason (409) and nothing is queued.
    from rlhf.models import RetargetJob

    track = make_track(title="Harbour song", n_beats=96, tempo_bpm=120.0)
    response = _client(RESEARCHER).post(reverse("rlhf-retarget-list"), {"track": track.pk, "duration": "40",
                                                                        "methods": ["best-of-8"]},
                                        content_type="application/json")
    assert response.status_code == 409 and "spaces differ" in response.json()["detail"]
    assert "heuristic" in response.json()["detail"] and not RetargetJob.objects.exists()


@pytest.mark.django_db
def test_the_page_has_no_inline_script_or_style_for_a_strict_content_security_policy():
    make_track(title="Harbour song")
    page = _client(RESEARCHER).get(reverse("retarget-page")).content.decode()
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert all("src=" in tag for tag in page.split("<script")[1:])


@pytest.mark.django_db
def test_the_page_asks_the_server_for_its_duration_bounds_and_keeps_no_rule_of_its_own():
    page = _client(RESEARCHER).get(reverse("retarget-page")).content.decode()
    assert f'data-bounds-url="{reverse("rlhf-retarget-bounds")}"' in page
    script = RETARGET_JS.read_text()
    assert "STRETCH" not in script  # no copy of editing.edit's range
    assert "dataset.boundsUrl" in script


@pytest.mark.django_db
def test_research_and_home_pages_link_to_it_for_researchers_only():
    url = reverse("retarget-page")
    researcher = _client(RESEARCHER)
    assert url in researcher.get(reverse("home")).content.decode()
    assert url in researcher.get(reverse("rlhf:home")).content.decode()
    assert url not in _client(ANNOTATOR).get(reverse("home")).content.decode()


def _maps() -> dict[str, BeatMap]:
    """Three edits of one track at uneven tempo: whole, with a cut (beats 12..15), with a repeated bar."""
    rng = np.random.default_rng(3)

    def beat_map(track_beats):
        lengths = 0.4 + 0.2 * rng.random(len(track_beats))
        return BeatMap(np.concatenate([[0.0], np.cumsum(lengths)]), np.asarray(track_beats))

    return {"full": beat_map(list(range(4, 28))),
            "cut": beat_map(list(range(4, 12)) + list(range(16, 28))),
            "loop": beat_map(list(range(4, 20)) + list(range(16, 28)))}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's JavaScript twin")
def test_beatmap_js_lands_where_the_python_rule_does():
    maps = _maps()
    cases = []
    for src, dst in [("full", "cut"), ("cut", "full"), ("full", "loop"), ("loop", "cut"), ("cut", "loop")]:
        for t in np.linspace(-0.2, maps[src].duration_seconds + 0.5, 89):
            cases.append({"src": src, "dst": dst, "t": float(t), "expected": map_playhead(maps[src], maps[dst], float(t))})
    payload = {"maps": {name: {"beat_starts_seconds": m.beat_starts_seconds.tolist(),
                               "track_beats": m.track_beats.tolist()} for name, m in maps.items()},
               "cases": cases}
    script = (
        f"const BeatMap = require({json.dumps(str(BEATMAP_JS))});"
        "let data = ''; process.stdin.on('data', d => data += d); process.stdin.on('end', () => {"
        "  const { maps, cases } = JSON.parse(data);"
        "  console.log(JSON.stringify(cases.map(c => BeatMap.mapPlayhead(maps[c.src], maps[c.dst], c.t))));"
        "});"
    )
    out = subprocess.run(["node", "-e", script], input=json.dumps(payload), capture_output=True, text=True,
                         timeout=30, check=True)
    assert json.loads(out.stdout) == pytest.approx([c["expected"] for c in cases], abs=1e-9)

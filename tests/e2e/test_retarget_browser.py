"""The retarget page in real Chromium (Debian's package, driven by Playwright).

A researcher retargets a real recording (tests/data/caribbean-excerpt.ogg, ingested) with an
active policy (a small, untrained one: what matters here is the page, not its taste): the duration
slider offers the server's range for the track and beat range (``retarget_bounds``), and its ends
are accepted; bad requests are refused next to the form with the API's reason; a good one shows the
policy's and the heuristic's results, which play over one transport and switch at the same musical
moment; a result downloads; the pair goes to the annotators as a comparison, once.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from annotations.models import Comparison, Edit
from annotations.playhead import BeatMap, map_playhead
from annotations.roles import RESEARCHER
from annotations.services import track_ingest
from rlhf.models import PolicyVersion, RetargetJob
from rlhf.learning.configs import PolicyConfig
from rlhf.learning.policy import TrainingRun, build_policy
from rlhf.cycle.policy_services import policy_register, track_arrays
from rlhf.retarget.run import retarget_job_run
from rlhf.retarget.services import retarget_bounds
from tests.annotations.factories import PASSWORD, make_user
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, wait_until

CLIP = Path(__file__).resolve().parents[1] / "data" / "caribbean-excerpt.ogg"
ROOT = "document.getElementById('retarget')"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                       "(apt-get install -y chromium)"),
]


def _active_small_policy(track):
    """A policy version built (not trained) for the track's spaces, registered and activated."""
    model = build_policy(track_arrays([track]), config=PolicyConfig(n_envs=1, n_steps=64, batch_size=64,
                                                                    net_arch=(32, 32), seed=0))
    run = TrainingRun(model=model, updates=(), start_timesteps=0, seconds=0.0, n_learned_calls=0)
    return policy_register(run=run, reward_model=None, parent=None, hyperparameters={}, activate=True)


def _slider_shows(page, track, query: str):
    """Wait for the slider to offer the server's range for ``query``; check it against ``retarget_bounds``."""
    wait_until(page, f"{ROOT}.dataset.bounds === '{query}'")
    passage = dict(part.split("=") for part in query.split("&"))
    bounds = retarget_bounds(track=track, from_beat=int(passage.get("from_beat", 0)),
                             to_beat=int(passage["to_beat"]) if "to_beat" in passage else None)
    slider = page.locator("#duration-slider")
    assert slider.is_enabled()
    assert float(slider.get_attribute("min")) == bounds.lowest_seconds
    assert float(slider.get_attribute("max")) == bounds.highest_seconds
    return bounds


def _beat_map(result: dict) -> BeatMap:
    return BeatMap.from_render(Edit.objects.get(pk=result["edit_id"]).render)


@pytest.mark.django_db(transaction=True)
def test_retarget_a_recording_hear_both_results_download_and_send(live_server, storage_root, browser_page, tmp_path):
    researcher = make_user("editor", role=RESEARCHER)
    track, _ = track_ingest(path=CLIP, title="Caribbean excerpt")
    _active_small_policy(track)
    page = browser_page

    page.goto(f"{live_server.url}/accounts/login/?next=/retarget/")
    page.fill("#id_username", researcher.username)
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url("**/retarget/")
    assert page.locator("#no-policy").count() == 0
    page.select_option("#track", str(track.pk))

    # Dragging the slider types the duration; typing moves the slider (bounds: the server's, for the track).
    slider = page.locator("#duration-slider")
    bounds = _slider_shows(page, track, f"track={track.pk}")
    assert bounds.lead_in_seconds + bounds.ring_out_seconds > 0  # so the bounds are not half to twice the file
    assert page.inner_text("#duration-bounds").startswith("0:")
    slider.fill("25")
    assert page.input_value("#duration") == "0:25"
    page.fill("#duration", "0:40")
    assert float(slider.input_value()) == pytest.approx(40.0)

    # Refusals are shown next to the form, in the API's words, and start nothing.
    page.fill("#duration", "5")
    page.click("#start")
    error = page.locator("#form-error-text")
    error.wait_for()
    assert "outside" in error.inner_text() and "half to twice" in error.inner_text()
    page.fill("#from-beat", "0")
    page.fill("#to-beat", "4")
    # The server refuses the range for the slider too: no duration is offered for it, and the hint says why.
    wait_until(page, "document.getElementById('duration-bounds').textContent.includes('shorter than two bars')")
    assert slider.is_disabled()
    page.fill("#duration", "3")
    page.click("#start")
    wait_until(page, f"({ROOT}.dataset.error || '').includes('shorter than two bars')")
    page.fill("#from-beat", "")
    page.fill("#to-beat", "")
    _slider_shows(page, track, f"track={track.pk}")
    notes = tmp_path / "notes.txt"
    notes.write_text("not music")
    page.set_input_files("#file", str(notes))
    assert page.input_value("#track") == ""  # an upload replaces the chosen track
    page.fill("#duration", "20")
    page.click("#start")
    wait_until(page, f"({ROOT}.dataset.error || '').includes('not an audio file')")
    assert not RetargetJob.objects.exists()

    # A good request: the policy's edit and the heuristic's, side by side.
    page.select_option("#track", str(track.pk))
    assert page.evaluate("document.getElementById('file').files.length") == 0
    page.fill("#duration", "0:40")
    page.click("#start")
    wait_until(page, f"{ROOT}.dataset.results === '2'", timeout=120_000)
    assert page.locator("#form-error").is_hidden()
    job = RetargetJob.objects.get()
    assert job.status == RetargetJob.Status.DONE and job.methods == ["policy", "heuristic"]
    titles = page.locator(".side-title").all_inner_texts()
    assert titles[0].startswith("A · Policy") and titles[1].startswith("B · Heuristic")
    assert page.locator("canvas.wave[role=img]").count() == 2
    first_label = page.locator("canvas.wave").first.get_attribute("aria-label")
    assert f"{len(job.results[0]['seam_seconds'])} seam" in first_label
    for result in job.results:
        assert result["duration_seconds"] == pytest.approx(40.0, abs=1.0)

    # One transport: play A, pause, switch to B at the same musical moment, play B.
    page.click("#play")
    wait_until(page, f"Number({ROOT}.dataset.position) > 1.5", timeout=15_000)
    page.click("#play")
    wait_until(page, f"{ROOT}.dataset.playing === 'false'")
    at_a = float(page.evaluate(f"{ROOT}.dataset.position"))
    page.click("#switch")
    assert page.evaluate(f"{ROOT}.dataset.current") == "1"
    at_b = float(page.evaluate(f"{ROOT}.dataset.position"))
    assert at_b == pytest.approx(map_playhead(_beat_map(job.results[0]), _beat_map(job.results[1]), at_a), abs=0.01)
    page.click("#play")
    wait_until(page, f"Number({ROOT}.dataset.position) > {at_b + 1.0}", timeout=15_000)
    page.click("#switch")  # back to A while playing
    assert page.evaluate(f"{ROOT}.dataset.current") == "0"
    assert page.evaluate(f"{ROOT}.dataset.playing") == "true"
    page.click("#play")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "retarget.png"), full_page=True)

    # Each result downloads; the heuristic's as FLAC here.
    with page.expect_download() as download:
        page.locator(".side").nth(1).locator("a.flac").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.suffix == ".flac" and "heuristic" in saved.name
    info = sf.info(str(saved))
    assert info.format == "FLAC" and info.duration == pytest.approx(job.results[1]["duration_seconds"], abs=0.05)

    # One button sends the pair to the annotators, once.
    page.click("#send")
    wait_until(page, f"{ROOT}.dataset.comparison !== undefined")
    comparison = Comparison.objects.get()
    assert page.evaluate(f"{ROOT}.dataset.comparison") == str(comparison.pk)
    assert {comparison.edit_a_id, comparison.edit_b_id} == {r["edit_id"] for r in job.results}
    assert "Sent" in page.inner_text("#send-status") and page.locator("#send").is_disabled()
    page.reload()
    page.click(f".open-job[data-url='/api/retarget/{job.pk}/']")
    wait_until(page, f"{ROOT}.dataset.results === '2'")
    assert page.locator("#send").is_disabled() and f"comparison {comparison.pk}" in page.inner_text("#send-status")
    assert Comparison.objects.count() == 1

    # The policy is withdrawn after the page was loaded: the refusal offers the heuristic alone.
    PolicyVersion.objects.update(is_active=False)
    page.select_option("#track", str(track.pk))
    page.fill("#duration", "0:20")
    page.click("#start")
    wait_until(page, f"({ROOT}.dataset.error || '').includes('no active policy')")
    page.click("#heuristic-only")
    wait_until(page, f"{ROOT}.dataset.results === '1'", timeout=60_000)
    assert RetargetJob.objects.latest("pk").methods == ["heuristic"]
    assert page.locator(".side-title").all_inner_texts() == ["A · Heuristic: the retargeting dynamic program"]

    # The refusals above answered on purpose: three bad requests (400), "no active policy" (409, a valid
    # request the studio cannot serve now) and the bounds of the two-beat-short range (400, asked once
    # or, if the page asked between the two fields, twice); nothing else may fail.
    bad = [m for m in page.messages if m == f"error: 400 {live_server.url}/api/retarget/"]
    conflict = [m for m in page.messages if m == f"error: 409 {live_server.url}/api/retarget/"]
    short_range = [m for m in page.messages if m.startswith(f"error: 400 {live_server.url}/api/retarget/bounds/")
                   and m.endswith("to_beat=4")]
    assert (len(bad), len(conflict)) == (3, 1) and len(short_range) in (1, 2)
    refusals = bad + conflict + short_range
    assert not [m for m in page.messages if m.startswith(("error", "pageerror")) and m not in refusals], page.messages


@pytest.mark.django_db(transaction=True)
def test_without_a_policy_the_page_offers_the_heuristic_and_follows_a_queued_job(live_server, storage_root,
                                                                                  browser_page):
    researcher = make_user("editor", role=RESEARCHER)
    track, _ = track_ingest(path=CLIP, title="Caribbean excerpt")
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/?next=/retarget/")
    page.fill("#id_username", researcher.username)
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url("**/retarget/")
    assert "No active policy yet" in page.inner_text("#no-policy")
    assert page.inner_text("#methods-info") == "Methods: heuristic"

    # The slider's shortest duration for the whole track (its lead-in and ring-out unstretched) is accepted.
    page.select_option("#track", str(track.pk))
    slider = page.locator("#duration-slider")
    whole = _slider_shows(page, track, f"track={track.pk}")
    slider.fill(slider.get_attribute("min"))
    page.click("#start")
    wait_until(page, f"{ROOT}.dataset.results === '1'", timeout=60_000)
    first = RetargetJob.objects.get()
    assert first.methods == ["heuristic"] and first.target_seconds == whole.lowest_seconds
    assert page.locator("#switch").is_disabled() and page.locator("#send").is_disabled()
    assert "needs two results" in page.inner_text("#send-status")

    # A beat range gets its own bounds from the server (the opening's lead-in counts, unstretched); the
    # slider's longest duration for it is accepted too, and the edit lasts it.  (Eight bars: a passage
    # of four bars cannot reach all of half to twice its beats here, and the plan clips the beats it gets.)
    page.fill("#from-beat", "0")
    page.fill("#to-beat", "32")
    opening = _slider_shows(page, track, f"track={track.pk}&from_beat=0&to_beat=32")
    assert opening.highest_seconds < whole.highest_seconds
    slider.fill(slider.get_attribute("max"))
    page.click("#start")
    wait_until(page, f"{ROOT}.dataset.results === '1' && {ROOT}.dataset.job !== '{first.pk}'", timeout=60_000)
    longest = RetargetJob.objects.latest("pk")
    assert (longest.start_beat, longest.n_beats) == (0, 32)
    assert longest.target_seconds == pytest.approx(opening.highest_seconds, abs=1e-9)
    assert longest.results[0]["duration_seconds"] == pytest.approx(opening.highest_seconds, abs=1.0)
    page.fill("#from-beat", "")
    page.fill("#to-beat", "")

    # An uploaded file: not analysed yet, so the page offers no duration to drag, only one to type; the
    # job ingests it.
    page.set_input_files("#file", str(CLIP))
    assert slider.is_disabled()
    assert "known once the file is analysed" in page.inner_text("#duration-bounds")
    page.fill("#duration", "0:45")
    page.click("#start")
    # The last job's id was read before this start: by now the page may already have made the next.
    wait_until(page, f"{ROOT}.dataset.results === '1' && {ROOT}.dataset.job !== '{longest.pk}'",
                           timeout=60_000)
    uploaded = RetargetJob.objects.latest("pk")
    assert uploaded.upload_name == CLIP.name and uploaded.track == track  # the same content: the same track
    assert uploaded.results[0]["duration_seconds"] == pytest.approx(45.0, abs=1.0)

    # A job the page did not start (queued by the API, made by a worker) is followed by polling.
    queued = RetargetJob.objects.create(requested_by=researcher, track=track, target_seconds=45.0,
                                        methods=["heuristic"])
    page.reload()
    page.click(f".open-job[data-url='/api/retarget/{queued.pk}/']")
    wait_until(page, f"{ROOT}.dataset.jobStatus === 'queued'")
    assert page.locator("#results").is_hidden()
    assert "Queued" in page.inner_text("#job-message")
    retarget_job_run(job_id=queued.pk)
    wait_until(page, f"{ROOT}.dataset.results === '1'", timeout=30_000)
    assert page.inner_text("#job-message") == "Done."
    queued.refresh_from_db()
    assert page.inner_text(".side-figures").startswith(f"{queued.results[0]['duration_seconds']:.1f} s")
    assert not [m for m in page.messages if m.startswith(("error", "pageerror"))], page.messages

"""The annotation page in real Chromium (Debian's package, driven by Playwright).

Each test plays real audio (small generated edits, served as the page's
listening copies: Opus by default) and checks what an annotator notices: what the keys do on
focused controls, when Submit is accepted, how the waveforms are drawn, how
fast the next comparison is there on a slow line, the first-visit rubric and
practice, the optional Original (the unedited passage) and the page on a phone.
"""
from __future__ import annotations

import re

import pytest

from annotations.models import Assignment, Judgement
from tests.annotations.factories import (
    PASSWORD,
    make_comparison,
    make_edit,
    make_track,
    make_track_with_audio,
    make_user,
)
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, wait_until, watched

ROOT = "document.getElementById('annotate')"
# The target for the next comparison to be playable after a submit, on a 10 Mbit/s line.
NEXT_PAIR_TARGET_MS = 300
TEN_MBIT_BYTES_PER_SECOND = 10_000_000 / 8

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                       "(apt-get install -y chromium)"),
]


@pytest.fixture(autouse=True)
def _settings(settings, storage_root):
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0


def open_page(browser, *, onboarded: str | None = None, **context_options):
    """A fresh page that records console errors and failed requests; ``onboarded`` marks that user's rubric as seen."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
    if onboarded:
        context.add_init_script(f"localStorage.setItem('annotate-onboarded:{onboarded}', '1')")
    return watched(context.new_page())


def log_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url("**/annotate/")


def wait_shown(page, comparison) -> None:
    # The first pair's listening copies are encoded on first request: generous on a loaded 2-core box.
    wait_until(page, f"{ROOT}.dataset.comparison === '{comparison.pk}' && {ROOT}.dataset.ready === 'true'",
               timeout=90_000)


def wait_heard(page, side: str, seconds: float) -> None:
    wait_until(page, f"Number({ROOT}.dataset.heard{side}) >= {seconds}", timeout=20_000)


def no_errors(page) -> None:
    assert not [m for m in page.messages if m.startswith(("error", "pageerror"))], page.messages


def tab_to(page, selector: str, *, limit: int = 40) -> None:
    """Press Tab until ``selector`` has focus (keyboard only), failing after ``limit`` presses."""
    for _ in range(limit):
        if page.evaluate(f"document.activeElement === document.querySelector({selector!r})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


@pytest.mark.django_db(transaction=True)
def test_keyboard_only_judging_with_tab_space_and_enter_on_focused_controls(live_server, browser):
    annotator = make_user("listener")
    track = make_track()
    first = make_comparison(track=track, priority=2.0)
    second = make_comparison(track=track, priority=1.0)
    page = open_page(browser, onboarded=annotator.username)
    log_in(page, live_server, annotator)
    wait_shown(page, first)
    root = page.locator("#annotate")

    tab_to(page, "#play-left")
    page.keyboard.press("Space")  # the focused button's own key: plays A
    assert root.get_attribute("data-playing") == "true" and root.get_attribute("data-current") == "left"
    wait_heard(page, "Left", 1.2)
    page.keyboard.press("Tab")  # to Play B
    page.keyboard.press("Enter")  # activates the focused button; it does not submit
    assert root.get_attribute("data-current") == "right"
    assert root.get_attribute("data-switches") == "1"
    wait_heard(page, "Right", 1.2)
    page.keyboard.press("Space")  # still on Play B: pressing the side that plays pauses it
    assert root.get_attribute("data-playing") == "false"
    assert Judgement.objects.count() == 0

    position = root.get_attribute("data-position")
    tab_to(page, "#judge input[name=choice][value=left]")
    page.keyboard.press("Space")  # checks A
    page.keyboard.press("ArrowRight")  # the platform moves the choice to B; the page does not seek
    assert page.locator("#judge input[name=choice][value=right]").is_checked()
    assert root.get_attribute("data-position") == position
    page.keyboard.press("ArrowLeft")  # and back to A
    page.keyboard.press("Tab")  # into the confidence group
    page.keyboard.press("Space")  # 1
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # 2, 3, 4
    assert page.locator("#judge input[name=confidence][value='4']").is_checked()
    page.keyboard.press("Tab")  # the comment's summary: Enter opens it, as the platform says
    page.keyboard.press("Enter")
    assert page.locator("#comment-box").get_attribute("open") is not None
    page.keyboard.press("Tab")
    page.keyboard.type("a bit abrupt")  # letters type; they do not choose
    assert page.locator("#judge input[name=choice][value=left]").is_checked()
    assert Judgement.objects.count() == 0
    tab_to(page, "#submit")
    assert page.locator("#submit").get_attribute("aria-disabled") == "false"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "annotate.png"))
    shown_left = int(root.get_attribute("data-left-edit"))
    page.keyboard.press("Enter")

    wait_shown(page, second)
    judgement = Judgement.objects.get()
    assignment = Assignment.objects.get(annotator=annotator, comparison=first)
    assert judgement.comparison == first and judgement.confidence == 4
    assert judgement.left_edit_id == shown_left == (first.edit_a_id if assignment.left_is_a else first.edit_b_id)
    assert judgement.choice == ("a" if shown_left == first.edit_a_id else "b")
    assert judgement.switches == 1 and judgement.comment == "a bit abrupt"
    assert min(judgement.seconds_a, judgement.seconds_b) >= 1.0
    assert page.locator("#done-today").inner_text() == "1"
    # Accessible names carry no key text; the keys are declared instead.
    assert page.get_by_role("button", name="Play A", exact=True).get_attribute("aria-keyshortcuts") == "1"
    assert page.get_by_role("radio", name="A", exact=True).get_attribute("aria-keyshortcuts") == "A"
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_after_a_click_on_an_answer_or_a_play_button_the_keys_are_the_pages(live_server, browser):
    annotator = make_user("clicker")
    comparison = make_comparison()  # 4 s edits
    page = open_page(browser, onboarded=annotator.username)
    log_in(page, live_server, annotator)
    wait_shown(page, comparison)
    root = page.locator("#annotate")
    answer_a = page.get_by_role("radio", name="A", exact=True)

    answer_a.click()
    assert root.get_attribute("data-position") == "0.00"
    page.keyboard.press("ArrowRight")  # forward 2 s; the answer stays A
    assert answer_a.is_checked()
    assert root.get_attribute("data-position") == "2.00"
    assert page.locator("#clock").inner_text().startswith("2.0 /")
    page.locator("#judge label:has(input[value=tie])").click()  # a click on the label's text, too
    page.keyboard.press("ArrowLeft")  # back 2 s; the answer stays Tie
    assert page.get_by_role("radio", name="Tie").is_checked()
    assert root.get_attribute("data-position") == "0.00"
    page.get_by_role("radio", name="3", exact=True).click()
    page.keyboard.press("ArrowUp")
    assert page.get_by_role("radio", name="3", exact=True).is_checked()

    page.get_by_role("button", name="Play A", exact=True).click()
    assert root.get_attribute("data-playing") == "true" and root.get_attribute("data-current") == "left"
    page.keyboard.press("2")  # B plays
    assert root.get_attribute("data-playing") == "true" and root.get_attribute("data-current") == "right"
    assert page.locator("#now-playing").inner_text() == "Playing B"
    page.keyboard.press("Space")  # the page's pause, not a second press of Play A
    assert root.get_attribute("data-playing") == "false" and root.get_attribute("data-current") == "right"
    assert page.get_by_role("radio", name="Tie").is_checked()
    assert Judgement.objects.count() == 0
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_shortcuts_act_beside_a_control_reached_with_tab_and_question_mark_shows_them(live_server, browser):
    annotator = make_user("tabber")
    comparison = make_comparison()
    page = open_page(browser, onboarded=annotator.username)
    log_in(page, live_server, annotator)
    wait_shown(page, comparison)
    root = page.locator("#annotate")
    sheet = page.locator("#keys")
    assert not sheet.locator("dl").is_visible()

    tab_to(page, "#judge input[name=choice][value=left]")
    page.keyboard.press("Space")  # checks A: the radio's own key
    page.keyboard.press("2")  # not a radio key: the page plays B, focus stays on the answer
    assert root.get_attribute("data-current") == "right" and root.get_attribute("data-playing") == "true"
    assert page.evaluate("document.activeElement.value") == "left"
    page.keyboard.press("Escape")
    page.keyboard.press("Space")  # nothing focused: the page's pause
    assert root.get_attribute("data-playing") == "false"
    assert page.get_by_role("radio", name="A", exact=True).is_checked()

    page.keyboard.press("k")  # the skip form: focus on its first reason, and its keys are its own
    page.keyboard.press("t")
    page.keyboard.press("1")
    assert root.get_attribute("data-playing") == "false"
    assert page.get_by_role("radio", name="A", exact=True).is_checked()
    page.keyboard.press("Escape")  # closes the skip form

    page.keyboard.press("?")
    assert sheet.locator("dl").is_visible()
    assert "show these keys" in sheet.inner_text() and "seek 2 s back / forward" in sheet.inner_text()
    page.keyboard.press("Escape")  # closes the sheet again
    assert not sheet.locator("dl").is_visible()
    page.get_by_role("link", name="Keyboard shortcuts").click()  # the same sheet, linked by the progress bar
    assert sheet.locator("dl").is_visible()
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_a_short_clip_can_be_submitted_after_one_full_listen(live_server, browser, settings):
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 5.0
    annotator = make_user("quick")
    track = make_track()
    short = make_edit(track, [0, 1, 2, 3, 8, 9, 10], seconds_per_beat=0.25)  # 1.75 s, shorter than 5 s
    longer = make_edit(track, [*range(4), *range(10, 20)], seconds_per_beat=0.25)  # 3.5 s
    comparison = make_comparison(edit_a=short, edit_b=longer)
    page = open_page(browser, onboarded=annotator.username)
    log_in(page, live_server, annotator)
    wait_shown(page, comparison)
    root = page.locator("#annotate")
    short_side = "Left" if int(root.get_attribute("data-left-edit")) == short.pk else "Right"
    key = "1" if short_side == "Left" else "2"
    short_label = "A" if short_side == "Left" else "B"
    long_label = "B" if short_label == "A" else "A"

    page.keyboard.press(key)  # the short one plays, and loops by itself
    page.keyboard.press("a")
    page.keyboard.press("Shift+3")
    page.keyboard.press("Enter")  # too early: the refusal sits by Submit and names the short side(s)
    hint = page.locator("#submit-hint")
    assert hint.is_visible() and "Not yet" in hint.inner_text() and long_label in hint.inner_text()
    wait_heard(page, short_side, 1.66)
    assert "heard" in page.locator(f"#to-hear-{short_side.lower()}").inner_text()
    page.keyboard.press("2" if key == "1" else "1")
    other = "Right" if short_side == "Left" else "Left"
    wait_heard(page, other, 3.41)
    page.keyboard.press("Space")
    assert page.locator("#submit").get_attribute("aria-disabled") == "false"
    page.keyboard.press("Enter")
    wait_until(page, f"{ROOT}.dataset.comparison === ''")
    judgement = Judgement.objects.get()
    heard_short = judgement.seconds_a  # the short edit is A of the comparison
    assert 1.6 <= heard_short < 5.0  # one listen, not the site's 5 s
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_the_original_plays_at_the_same_musical_moment_by_button_and_key_and_the_judgement_records_it(
        live_server, browser):
    annotator = make_user("reference")
    track = make_track_with_audio(n_beats=32)  # 0.25 s beats
    whole = make_edit(track, range(8, 24), excerpt_start=8)  # 4 s, the passage as it is
    cut = make_edit(track, [*range(8, 12), *range(16, 24)], excerpt_start=8)  # 3 s: beats 12-15 cut at 1 s
    comparison = make_comparison(edit_a=whole, edit_b=cut)
    page = open_page(browser, onboarded=annotator.username)
    original_audio = f"/annotate/original/{comparison.pk}/"
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    log_in(page, live_server, annotator)
    wait_shown(page, comparison)
    root = page.locator("#annotate")
    cut_side = "left" if int(root.get_attribute("data-left-edit")) == cut.pk else "right"
    cut_key, whole_key = ("1", "2") if cut_side == "left" else ("2", "1")

    page.keyboard.press("1")
    wait_heard(page, "Left", 1.2)
    page.keyboard.press("2")
    wait_heard(page, "Right", 1.2)
    page.keyboard.press("Space")
    assert not [url for url in fetched if "/original/" in url]  # optional: nothing fetched until asked for
    # Paused 2 s into the cut edit, which is track beat 20 there; the original plays it 3 s in.
    wave = page.locator(f"#wave-{cut_side}")
    box = wave.bounding_box()
    wave.click(position={"x": box["width"] * 2 / 3, "y": box["height"] / 2})
    assert float(root.get_attribute("data-position")) == pytest.approx(2.0, abs=0.02)

    page.get_by_role("button", name="Original", exact=True).click()
    wait_until(page, f"{ROOT}.dataset.current === 'original' && {ROOT}.dataset.playing === 'true'")
    page.keyboard.press("Space")
    at_original = float(root.get_attribute("data-position"))
    assert 2.95 <= at_original < 3.4, at_original
    assert page.locator("#now-playing").inner_text() == "Paused on Original"
    page.keyboard.press(cut_key)  # back to the cut edit: the same beat, 1 s earlier there
    page.keyboard.press("Space")
    assert float(root.get_attribute("data-position")) == pytest.approx(at_original - 1.0, abs=0.3)
    page.keyboard.press("o")  # the key: the original again, already loaded
    wait_until(page, f"{ROOT}.dataset.current === 'original' && {ROOT}.dataset.playing === 'true'")
    wait_heard(page, "Original", 0.3)
    page.keyboard.press(whole_key)  # the unedited edit plays the passage on the original's clock
    page.keyboard.press("Space")
    assert 3.0 <= float(root.get_attribute("data-position")) < 4.0
    # A <-> B switches only (2, the click on the left's waveform, the whole after the cut); none to the original.
    assert root.get_attribute("data-switches") == ("3" if cut_side == "left" else "2")

    page.keyboard.press("?")
    assert "play the original" in page.locator("#keys").inner_text()
    page.keyboard.press("Escape")
    page.keyboard.press("t")
    page.keyboard.press("Shift+4")
    page.keyboard.press("Enter")
    wait_until(page, f"{ROOT}.dataset.comparison === ''")
    assert [url for url in fetched if url.endswith(original_audio)] == [live_server.url + original_audio]
    judgement = Judgement.objects.get()
    assert judgement.original_heard and judgement.choice == "tie" and judgement.confidence == 4
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_skip_with_a_preset_reason_from_the_keyboard(live_server, browser):
    annotator = make_user("skipper")
    track = make_track()
    first, second = make_comparison(track=track, priority=2.0), make_comparison(track=track, priority=1.0)
    page = open_page(browser, onboarded=annotator.username)
    log_in(page, live_server, annotator)
    wait_shown(page, first)
    page.keyboard.press("k")  # focus moves to the first preset
    assert page.evaluate("document.activeElement.value") == "broken_audio"
    page.keyboard.press("ArrowDown")  # the platform's radio keys: "They sound identical"
    page.keyboard.press("Enter")
    wait_shown(page, second)
    skipped = Assignment.objects.get(annotator=annotator, comparison=first)
    assert (skipped.skip_reason_choice, skipped.skipped_reason) == ("identical", "They sound identical")
    page.keyboard.press("k")
    page.keyboard.press("ArrowUp")  # wraps round to the last preset, "Other", which wants words
    page.keyboard.press("Enter")
    assert "in a few words" in page.locator("#skip-hint").inner_text()
    page.keyboard.type("a dog barked")
    page.keyboard.press("Enter")
    wait_until(page, f"{ROOT}.dataset.comparison === ''")
    skipped = Assignment.objects.get(annotator=annotator, comparison=second)
    assert (skipped.skip_reason_choice, skipped.skipped_reason) == ("other", "a dog barked")
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_waveforms_share_one_time_axis_with_widths_in_proportion(live_server, browser):
    annotator = make_user("looker")
    track = make_track()
    long = make_edit(track, range(64), seconds_per_beat=0.25)  # 16 s
    short = make_edit(track, [*range(8), *range(40, 48)], seconds_per_beat=0.25)  # 4 s, one seam at 2 s
    comparison = make_comparison(edit_a=long, edit_b=short)
    page = open_page(browser, onboarded=annotator.username)
    log_in(page, live_server, annotator)
    wait_shown(page, comparison)
    boxes = {side: page.locator(f"#wave-{side}").bounding_box() for side in ("left", "right")}
    widths = {side: box["width"] for side, box in boxes.items()}
    left_is_long = int(page.locator("#annotate").get_attribute("data-left-edit")) == long.pk
    long_side, short_side = ("left", "right") if left_is_long else ("right", "left")
    assert widths[short_side] / widths[long_side] == pytest.approx(4 / 16, abs=0.01)
    axis = page.locator("#axis").bounding_box()
    # All three start at 0 s on the same x and the longer edit spans the whole axis.
    assert boxes["left"]["x"] == pytest.approx(boxes["right"]["x"], abs=1) == pytest.approx(axis["x"], abs=1)
    assert widths[long_side] == pytest.approx(axis["width"], abs=1)
    label = page.locator(f"#wave-{short_side}").get_attribute("aria-label")
    assert page.locator(f"#wave-{short_side}").get_attribute("role") == "img"
    assert "4.0 s long" in label and "1 seam at 2.0 s" in label
    # They part 2 s in: looping one bar either side is a small part of both, so Loop is offered.
    assert page.locator("#loop").is_visible()
    no_errors(page)


@pytest.mark.parametrize("audio_format, content_type, sample_rate", [
    ("opus", "audio/ogg; codecs=opus", 48_000),  # libsndfile's Opus encoder takes 48 kHz: resampled
    ("flac", "audio/flac", 44_100),  # lossless at the source's rate
])
@pytest.mark.django_db(transaction=True)
def test_the_network_log_shows_the_audio_as_opus_or_flac_with_the_sources_channels(
        live_server, browser, settings, tmp_path, audio_format, content_type, sample_rate):
    import soundfile as sf

    from annotations.services import baseline_comparisons_create

    settings.ANNOTATION_AUDIO_FORMAT = audio_format
    annotator = make_user("critical")
    track = make_track_with_audio(n_beats=32, source_sample_rate=44_100, channels=2, lead_in_seconds=0.3)
    comparison = baseline_comparisons_create(track=track, n_excerpts=1, seed=0, excerpt_beats=16, with_gold=False)[0]
    page = open_page(browser, onboarded=annotator.username)
    audio = []
    page.on("response", lambda response: audio.append(response) if "/annotate/audio/" in response.url else None)
    log_in(page, live_server, annotator)
    wait_shown(page, comparison)
    page.keyboard.press("1")
    wait_heard(page, "Left", 1.05)
    page.keyboard.press("2")
    wait_heard(page, "Right", 1.05)
    page.keyboard.press("Space")

    assert sorted(int(r.url.split("/annotate/audio/")[1].split("/")[0]) for r in audio) == sorted(
        [comparison.edit_a_id, comparison.edit_b_id])
    for k, response in enumerate(audio):
        assert response.url.endswith(f"?format={audio_format}") and response.status == 200
        assert response.headers["content-type"] == content_type
        served = tmp_path / f"{k}.{audio_format}"
        served.write_bytes(response.body())
        info = sf.info(served)
        assert (info.samplerate, info.channels) == (sample_rate, 2), info  # the source is 44.1 kHz stereo
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_next_comparison_is_playable_soon_after_submit_on_a_10_mbit_line(live_server, browser, capsys):
    annotator = make_user("remote")
    track = make_track()
    # 20 s edits at the factory's 8 kHz: 320 kB of WAV each, about 20 kB as the page's MP3.
    pairs = [make_comparison(edit_a=make_edit(track, range(80), seconds_per_beat=0.25),
                             edit_b=make_edit(track, [*range(24), *range(40, 96)], seconds_per_beat=0.25),
                             priority=3 - i) for i in range(3)]
    page = open_page(browser, onboarded=annotator.username)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20,
        "downloadThroughput": TEN_MBIT_BYTES_PER_SECOND, "uploadThroughput": TEN_MBIT_BYTES_PER_SECOND,
    })
    log_in(page, live_server, annotator)
    root = page.locator("#annotate")
    figures = []
    for current, following in zip(pairs, pairs[1:]):
        wait_shown(page, current)
        # The next pair is assigned and decoding while this one is judged.
        page.wait_for_timeout(1500)
        page.keyboard.press("1")
        wait_heard(page, "Left", 1.05)
        page.keyboard.press("2")
        wait_heard(page, "Right", 1.05)
        page.keyboard.press("Space")
        page.keyboard.press("t")
        page.keyboard.press("Shift+2")
        wait_until(page, "document.getElementById('submit').getAttribute('aria-disabled') === 'false'")
        page.keyboard.press("Enter")
        wait_shown(page, following)
        figures.append((int(root.get_attribute("data-playable-ms")), int(root.get_attribute("data-save-ms"))))
    assert page.locator("#toast").inner_text() == "Saved"
    # What the same line costs without fetching ahead: the shown pair fetched and decoded now, as WAV and as MP3.
    last = pairs[-1]
    cold = page.evaluate("""async (ids) => {
        const c = new OfflineAudioContext(1, 1, 8000), out = {};
        for (const [name, query] of [["wav", ""], ["mp3", "?format=mp3"], ["opus", "?format=opus"]]) {
          const t0 = performance.now();
          await Promise.all(ids.map(async (id) => c.decodeAudioData(
            await (await fetch(`/annotate/audio/${id}/${query}`, {cache: "no-store"})).arrayBuffer())));
          out[name] = Math.round(performance.now() - t0);
        }
        return out;
    }""", [last.edit_a_id, last.edit_b_id])
    with capsys.disabled():
        print(f"\nnext comparison playable after submit, 10 Mbit/s + 20 ms latency (CDP throttling): "
              f"{', '.join(f'{ms} ms (saving took {save} ms)' for ms, save in figures)} "
              f"(target <= {NEXT_PAIR_TARGET_MS} ms); without fetching ahead, fetching and decoding a 2 x 20 s "
              f"pair alone takes {cold['wav']} ms as WAV (8 kHz), {cold['mp3']} ms as MP3, "
              f"{cold['opus']} ms as Opus (48 kHz)")
    assert max(ms for ms, _ in figures) < 5 * NEXT_PAIR_TARGET_MS  # a sanity bound, not the target: shared CI cores are noisy
    assert Judgement.objects.count() == 2
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_first_visit_shows_the_rubric_and_practice_with_explained_answers(live_server, browser):
    annotator = make_user("newcomer")
    comparison = make_comparison()
    page = open_page(browser)
    log_in(page, live_server, annotator)
    onboarding = page.locator("#onboarding")
    onboarding.wait_for(state="visible")
    text = onboarding.inner_text()
    for word in ("Seams", "Groove", "Phrasing", "Length"):
        assert word in text
    assert page.locator("#work").is_hidden()
    assert page.locator("#practice-number").inner_text() == "1"
    page.click("#practice-play-a")
    wait_until(page, f"{ROOT}.dataset.practicePlaying === 'a'")
    page.click("#practice [data-answer=b]")  # the wrong answer is explained, not just marked
    feedback = page.locator("#practice-feedback").inner_text()
    assert feedback.startswith("Not quite") and "expected answer is A" in feedback and "seam" in feedback
    page.click("#practice-next")
    assert page.locator("#practice-number").inner_text() == "2"
    page.click("#practice [data-answer=b]")
    assert page.locator("#practice-feedback").inner_text().startswith("Yes")
    assert page.locator("#practice-next").inner_text() == "Start judging"
    page.click("#practice-next")
    wait_shown(page, comparison)
    assert page.locator("#work").is_visible() and onboarding.is_hidden()
    assert not re.search(r"Comparison \d|comparison \d", page.locator("main").inner_text())
    page.reload()
    wait_shown(page, comparison)
    assert onboarding.is_hidden()  # once per annotator; "How to judge" brings it back
    page.click("#show-rubric")
    assert onboarding.is_visible()
    no_errors(page)


@pytest.mark.django_db(transaction=True)
def test_on_a_390x844_phone_submit_is_visible_and_targets_are_44px(live_server, browser):
    annotator = make_user("thumb")
    comparison = make_comparison()
    page = open_page(browser, onboarded=annotator.username, viewport={"width": 390, "height": 844},
                     is_mobile=True, has_touch=True, device_scale_factor=2)
    log_in(page, live_server, annotator)
    wait_shown(page, comparison)
    box = page.locator("#submit").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 844, box
    assert page.evaluate("document.scrollingElement.scrollTop") == 0
    targets = ["#play-left", "#play-right", "#play-original", "#play", "#submit", "#skip",
               "#judge label:has(input[value=left])", "#judge label:has(input[value='3'])"]
    for selector in targets:
        b = page.locator(selector).bounding_box()
        assert b["height"] >= 44 and b["width"] >= 44, (selector, b)
    assert not [k for k in page.locator("#annotate kbd").all() if k.is_visible()]  # no key hints on touch
    page.locator("#play-left").tap()
    assert page.locator("#now-playing").inner_text() == "Playing A"
    assert page.locator("#now-playing").get_attribute("aria-live") == "polite"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "annotate-phone.png"))
    no_errors(page)

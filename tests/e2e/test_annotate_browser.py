"""The annotation page in real Chromium (Debian's package, driven by Playwright), keyboard only.

Log in, hear both sides (real playback of tiny WAVs), switch, choose, give
confidence, submit, get the next comparison; the stored judgement must match
what was chosen, including the side shown on the left.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from annotations.models import Assignment, Judgement
from tests.annotations.factories import PASSWORD, make_comparison, make_track, make_user

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(django_settings.BASE_DIR) / "test-artifacts"
MIN_LISTEN_SECONDS = 1.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                       "(apt-get install -y chromium)"),
]


@pytest.fixture
def browser_page():
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--autoplay-policy=no-user-gesture-required"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        messages: list[str] = []
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type == "error"
                and "Failed to load resource" not in m.text else None)
        page.on("response", lambda r: messages.append(f"error: {r.status} {r.url}")
                if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        page.messages = messages
        try:
            yield page
        finally:
            browser.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.mark.django_db(transaction=True)
def test_judge_a_comparison_with_the_keyboard_alone(live_server, settings, browser_page):
    settings.ANNOTATION_MIN_LISTEN_SECONDS = MIN_LISTEN_SECONDS
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    annotator = make_user("listener")
    track = make_track()
    first = make_comparison(track=track, priority=2.0)
    second = make_comparison(track=track, priority=1.0)
    page = browser_page

    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/")
    page.focus("#id_username")
    page.keyboard.type(annotator.username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/annotate/")
    root = page.locator("#annotate")
    page.wait_for_function(f"document.getElementById('annotate').dataset.comparison === '{first.pk}'")

    heard = "(side) => Number(document.getElementById('annotate').dataset[side])"
    page.keyboard.press("Space")  # play A
    page.wait_for_function(f"Number(document.getElementById('annotate').dataset.heardLeft) >= {MIN_LISTEN_SECONDS + 0.2}",
                           timeout=15_000)
    page.keyboard.press("s")  # switch to B, still playing
    assert root.get_attribute("data-current") == "right"
    page.wait_for_function(f"Number(document.getElementById('annotate').dataset.heardRight) >= {MIN_LISTEN_SECONDS + 0.2}",
                           timeout=15_000)
    page.keyboard.press("Space")  # pause
    assert page.locator("#submit").is_disabled()  # heard enough, but nothing chosen yet
    page.keyboard.press("a")  # A = the side shown on the left
    page.keyboard.press("4")
    assert page.locator("#submit").is_enabled()
    shown_left = int(root.get_attribute("data-left-edit"))
    heard_left = page.evaluate(heard, "heardLeft")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "annotate.png"), full_page=True)
    page.keyboard.press("Enter")

    page.wait_for_function(f"document.getElementById('annotate').dataset.comparison === '{second.pk}'")
    assert page.locator("#done-today").inner_text() == "1"
    judgement = Judgement.objects.get()
    assignment = Assignment.objects.get(annotator=annotator, comparison=first)
    assert judgement.annotator == annotator and judgement.comparison == first
    assert judgement.confidence == 4
    assert judgement.left_edit_id == shown_left
    assert shown_left == (first.edit_a_id if assignment.left_is_a else first.edit_b_id)
    assert judgement.choice == ("a" if shown_left == first.edit_a_id else "b")
    assert judgement.switches >= 1
    seconds_left = judgement.seconds_a if assignment.left_is_a else judgement.seconds_b
    assert seconds_left == pytest.approx(heard_left, abs=0.3)
    assert min(judgement.seconds_a, judgement.seconds_b) >= MIN_LISTEN_SECONDS
    assert not [m for m in page.messages if m.startswith(("error", "pageerror"))], page.messages

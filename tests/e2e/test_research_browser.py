"""The researcher's cycle pages in real Chromium (Debian's package, driven by Playwright).

Every page is served here under ``Content-Security-Policy: script-src 'self'; style-src 'self'``
(added to each response by the test), so an inline script or style attribute would show up
as a console violation and fail the test.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from annotations.roles import RESEARCHER
from rlhf.models import Cycle
from tests.annotations.factories import PASSWORD, make_user
from tests.rlhf.cycle_data import finished_cycles, judged_pairs
from tests.e2e.conftest import CHROMIUM, wait_until

# docs/cycle_report.png in the README is a copy of this file.
SCREENSHOT = Path(django_settings.BASE_DIR) / "test-artifacts" / "cycle_report.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                       "(apt-get install -y chromium)"),
]


def _log_in(page, base_url: str, next_url: str) -> None:
    researcher = make_user("rita", role=RESEARCHER)
    page.goto(f"{base_url}/accounts/login/?next={next_url}")
    page.fill("#id_username", researcher.username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation(url=f"{base_url}{next_url}"):
        page.keyboard.press("Enter")


@pytest.mark.django_db(transaction=True)
def test_starting_a_cycle_short_of_data_is_refused_up_front(live_server, settings, browser_page):
    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 20, 20
    judged_pairs(n_pairs=5)
    page = browser_page
    _log_in(page, live_server.url, "/research/")

    preflight = page.locator("#preflight")
    assert preflight.locator('[data-figure="judgements"]').inner_text() == "5"
    assert preflight.locator('[data-figure="pairs"]').inner_text() == "5"
    assert preflight.locator('[data-figure="tracks"]').inner_text() == "2"
    verdict = page.locator("#preflight-verdict").inner_text()
    assert "A cycle would be refused now" in verdict and "5 judged pairs of edits, at least 20 needed" in verdict

    page.get_by_role("button", name="Start a cycle").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == ("Refused: not enough data for a cycle: 5 judged pairs of edits, at least 20 needed; "
                                  "5 new judgements in all, at least 20 needed")
    assert page.get_by_role("button", name="Start a cycle").is_visible()  # the refusal sits next to it
    assert not Cycle.objects.exists()  # nothing was queued
    assert [m for m in page.messages if m.startswith(("error", "pageerror"))] == ["error: 409 " + page.url], page.messages


@pytest.mark.django_db(transaction=True)
def test_a_finished_cycle_shows_its_report_card_with_before_and_after(live_server, browser_page):
    data = finished_cycles()
    second = data["second"]
    # The page is open while the cycle still runs; it shows the card once the cycle is done.
    metrics = second.metrics
    Cycle.objects.filter(pk=second.pk).update(status=Cycle.Status.PROPOSING, is_running=True, progress=0.9,
                                              metrics={})
    page = browser_page
    _log_in(page, live_server.url, f"/research/cycles/{second.pk}/")
    wait_until(page, "document.getElementById('cycle-percent').textContent === '90 %'")  # cycle.js ran
    assert page.locator("#report-card").count() == 0
    Cycle.objects.filter(pk=second.pk).update(status=Cycle.Status.DONE, is_running=False, progress=1.0,
                                              metrics=metrics)
    card = page.locator("#report-card")
    card.wait_for(timeout=15_000)

    reward = card.locator("#report-reward-model tbody tr")
    assert [row.locator("th").inner_text() for row in reward.all()] == [
        f"{data['rm1'].label} (before)", f"{data['rm2'].label} (after)", "dense reward only"]
    figures = [row.locator("td").nth(0).inner_text() for row in reward.all()]
    intervals = [row.locator("td").nth(1).inner_text() for row in reward.all()]
    assert figures == ["0.611", "0.806", "0.667"]
    assert intervals[1] == "0.650 – 0.902"
    policy_rows = card.locator("#report-policy tbody tr").all()
    assert [r.locator("td").nth(0).inner_text() for r in policy_rows] == ["-0.210", "0.370"]
    wins = {r.locator("th").inner_text(): r.locator("td").nth(0).inner_text()
            for r in card.locator("#report-win-rates tbody tr").all()}
    assert wins == {"baseline:bar_cut": "0.833", data["v1"].source: "0.667"}
    assert page.locator("#cycle-status").inner_text() == "done" and page.locator("#cycle-percent").inner_text() == "100 %"

    raw = page.locator("#cycle-metrics")
    assert not raw.is_visible()  # behind its disclosure
    page.get_by_text("Raw metrics").click()
    assert raw.is_visible() and '"n_decided": 36' in raw.inner_text()

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.get_by_text("Raw metrics").click()
    page.locator("main").screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size < 200_000

    card.locator("#report-comparisons").click()
    page.wait_for_url(f"**/research/cycles/{second.pk}/comparisons/")
    assert page.locator("#cycle-comparisons tbody tr").count() == 6
    assert not [m for m in page.messages if m.startswith(("error", "pageerror"))], page.messages

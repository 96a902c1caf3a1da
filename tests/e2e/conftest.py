"""Shared fixtures and helpers of the browser tests (Debian's Chromium driven by Playwright)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(django_settings.BASE_DIR) / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
def browser():
    """A headless Chromium; the test's own ORM calls stay synchronous beside Playwright's event loop."""
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def browser_page(browser):
    """A desktop-sized page that collects console errors (CSP violations included), failed requests
    and page errors in ``page.messages``, for the test to assert empty."""
    return watched(browser.new_page(viewport={"width": 1280, "height": 900}))


def watched(page):
    """``page`` with ``page.messages``: its console errors, failed requests (4xx/5xx) and page errors."""
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type == "error"
            and "Failed to load resource" not in m.text else None)
    page.on("response", lambda r: messages.append(f"error: {r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    page.messages = messages
    return page


def wait_until(page, expression: str, *, timeout: float = 30_000) -> None:
    """Poll the JavaScript ``expression`` in the page until it is true (``timeout`` in ms).

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the page,
    which the site's Content-Security-Policy (no 'unsafe-eval') refuses; ``page.evaluate``
    goes through the DevTools protocol, which the CSP does not govern.
    """
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout / 1000
    last_error = None
    while True:
        try:
            if page.evaluate(expression):
                return
        except Error as err:  # mid-navigation, or the element is not there yet: ask again
            last_error = err
        assert time.monotonic() < deadline, f"timed out waiting for {expression} (last error: {last_error})"
        time.sleep(0.05)

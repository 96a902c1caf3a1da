"""Login throttling with django-axes: per account and per client address, answered 429 with ``Retry-After``.

Settings (``AXES_*`` in ``feedback_site.settings``) name these functions; no app imports this module.
"""
from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' lockout check for every login made through a web request.

    ``authenticate()`` without a request comes from code on the server
    (management commands, the shell, the test client's ``login``), never from
    a client: there is no address to throttle, so the check is left to the
    next backend's password check instead of failing with an error.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str:
    """The client's address: ``REMOTE_ADDR``, or, behind ``TRUSTED_PROXY_COUNT`` proxies, the address the
    outermost trusted proxy saw (counted from the right of ``X-Forwarded-For``, which clients can prepend to)."""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def client_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The username a login attempt is counted under: as typed, cut to the length axes can record.

    Axes records the username of every failed login in a 255-character column:
    a longer one (no account has one: usernames stop at 150) used to fail that
    write, a 500 instead of a failed login.  Over-long names sharing their first
    255 characters count as one account; the address is counted as well.
    """
    from axes.models import AccessAttempt  # models load after settings name this module

    column_chars = AccessAttempt._meta.get_field("username").max_length
    if credentials:
        username = credentials.get(settings.AXES_USERNAME_FORM_FIELD)
    else:
        username = getattr(request, "data", request.POST).get(settings.AXES_USERNAME_FORM_FIELD)
    if username is None:
        return None
    return str(username)[:column_chars]


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """429 with ``Retry-After`` (seconds of the cool-off) and a plain message."""
    cool_off = get_cool_off(request)
    seconds = max(1, math.ceil(cool_off.total_seconds())) if cool_off else 3600
    response = HttpResponse(
        f"Too many failed logins for this account or from this address; try again in {seconds} seconds.\n",
        status=429, content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(seconds)
    return response

"""Login is throttled per account and per client address (django-axes): 429 with Retry-After."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.annotations.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def attempt(username: str, password: str, *, address: str = "10.0.0.1", forwarded: str | None = None):
    extra = {"REMOTE_ADDR": address}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return Client().post(LOGIN, {"username": username, "password": password}, **extra)


def test_the_sixth_wrong_password_within_a_minute_is_refused_with_retry_after(settings):
    user = make_user("ann")
    answers = [attempt(user.username, f"wrong-{i}").status_code for i in range(4)]
    assert answers == [200] * 4  # the form again, saying the password is wrong
    fifth, sixth = attempt(user.username, "wrong-5"), attempt(user.username, "wrong-6")
    assert (fifth.status_code, sixth.status_code) == (429, 429)
    assert int(sixth["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert "try again" in sixth.content.decode()
    # Locked means locked: the right password does not get in either, from any address.
    assert attempt(user.username, PASSWORD, address="10.9.9.9").status_code == 429


def test_one_address_guessing_many_accounts_is_locked_out_too():
    users = [make_user(f"u{i}") for i in range(6)]
    answers = [attempt(u.username, "guess", address="10.0.0.7").status_code for u in users]
    assert answers == [200, 200, 200, 200, 429, 429]
    other = make_user("elsewhere")
    assert attempt(other.username, PASSWORD, address="10.0.0.7").status_code == 429
    assert attempt(other.username, PASSWORD, address="10.0.0.8").status_code == 302  # another address logs in


def test_a_successful_login_is_not_counted_and_clears_earlier_failures():
    user = make_user("ann")
    for _ in range(4):
        attempt(user.username, "wrong")
    assert attempt(user.username, PASSWORD).status_code == 302
    assert [attempt(user.username, "wrong").status_code for _ in range(4)] == [200] * 4


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    user = make_user("ann")
    for i in range(5):
        # Each client behind the proxy guesses a different account: only the address is shared.
        attempt(f"nobody{i}", "guess", address="127.0.0.1", forwarded=f"spoofed, 203.0.113.{i}")
    assert attempt(user.username, PASSWORD, address="127.0.0.1", forwarded="203.0.113.50").status_code == 302

"""Crafted input is refused at the edge (400, JSON naming the field), never a 500; every error under /api/ is JSON.

Each reproducer here once answered 500 (or an HTML error page under /api/).
"""
from __future__ import annotations

import pytest
from django.test import Client

from annotations.models import Assignment, Judgement
from tests.annotations.factories import PASSWORD, listen_through_audio_view, make_comparison, make_user

pytestmark = pytest.mark.django_db

JUDGEMENTS = "/api/judgements/"
NEXT = "/api/comparisons/next/"
STREAM = "/api/exports/stream/"
LONE_SURROGATE_JSON = '"\\ud800"'  # JSON text of a string holding one lone surrogate (no UTF-8 exists for it)
NUL_JSON = '"a\\u0000b"'


def logged_in(user) -> Client:
    client = Client(raise_request_exception=False)  # a server error is an answer here, not a test crash
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0


@pytest.fixture
def admin() -> Client:
    return logged_in(make_user("root", role="admin", is_staff=True, is_superuser=True))


def assert_refused_naming(response, field: str) -> dict:
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["field"] == field and field in body["detail"] and body["code"] == "invalid_text"
    return body


def _assigned(annotator) -> tuple[Client, dict]:
    client = logged_in(annotator)
    make_comparison()
    shown = client.get(NEXT).json()["comparison"]
    return client, shown


@pytest.mark.parametrize("crafted", [LONE_SURROGATE_JSON, NUL_JSON])
@pytest.mark.parametrize("field", ["choice", "comment"])
def test_a_judgement_with_crafted_text_is_refused_and_nothing_is_stored(field, crafted):
    annotator = make_user()
    client, shown = _assigned(annotator)
    listen_through_audio_view(client, annotator, shown)
    values = {"choice": '"a"', "comment": '""', field: crafted}
    body = (f'{{"comparison": {shown["id"]}, "choice": {values["choice"]}, "confidence": 3, '
            f'"left_edit": {shown["left"]["edit_id"]}, "seconds_a": 2, "seconds_b": 2, "comment": {values["comment"]}}}')
    assert_refused_naming(client.post(JUDGEMENTS, body, content_type="application/json"), field)
    assert not Judgement.objects.exists()


@pytest.mark.parametrize("crafted", [LONE_SURROGATE_JSON, NUL_JSON])
def test_a_skip_reason_with_crafted_text_is_refused_and_the_assignment_stays_open(crafted):
    annotator = make_user()
    client, shown = _assigned(annotator)
    r = client.post(f"/api/comparisons/{shown['id']}/skip/", f'{{"reason_choice": "other", "reason": {crafted}}}',
                    content_type="application/json")
    assert_refused_naming(r, "reason")
    assignment = Assignment.objects.get(comparison_id=shown["id"])
    assert (assignment.skipped_reason, assignment.completed_at) == ("", None)
    assert client.get(NEXT).json()["comparison"]["id"] == shown["id"]  # still this annotator's to judge


def test_a_nested_export_filter_is_named_by_its_path(admin):
    r = admin.post("/api/exports/", f'{{"format": "jsonl", "filters": {{"proposed_by": ["ok", {LONE_SURROGATE_JSON}]}}}}',
                   content_type="application/json")
    assert_refused_naming(r, "filters.proposed_by[1]")


def test_a_crafted_key_is_refused_too(admin):
    r = admin.post("/api/exports/", f'{{"format": "jsonl", "filters": {{{LONE_SURROGATE_JSON}: "x"}}}}',
                   content_type="application/json")
    assert r.status_code == 400 and r.json()["code"] == "invalid_text" and r.json()["field"].startswith("filters.")


@pytest.mark.parametrize("query", ["proposed_by=%00", "proposed_by=a%00b", "proposed_by=%ED%A0%80",
                                   "edit_sources=%FF", "proposed_by%00=x"])
def test_export_stream_filters_with_crafted_text_are_400(admin, query):
    name = query.split("=")[0].replace("%00", "\x00")
    body = admin.get(f"{STREAM}?{query}").json()
    assert body["code"] == "invalid_text"
    if "%00" not in query.split("=")[0]:
        assert body["field"] == name


def test_judgement_list_filters_with_crafted_text_are_400():
    client = logged_in(make_user("rita", role="researcher"))
    assert_refused_naming(client.get(f"{JUDGEMENTS}?since=2024-01-01%00"), "since")


@pytest.mark.parametrize("query", ["date_to=9999-12-31", "date_from=0001-01-01", "date_to=9999-12-31T23:59:59-12:00",
                                   "date_from=3000-01-01"])
def test_export_dates_outside_the_supported_range_are_400(admin, query):
    r = admin.get(f"{STREAM}card/?{query}")
    assert r.status_code == 400 and r["Content-Type"] == "application/json"
    assert query.split("=")[0] in r.json()["detail"] and "1900" in r.json()["detail"]


def test_the_latest_supported_export_date_is_answered(admin):
    r = admin.get(f"{STREAM}card/?date_to=2999-12-31")
    assert r.status_code == 200 and r.json()["filters"]["date_to"].startswith("3000-01-01")


@pytest.mark.parametrize("query", ["date=9999-12-31", "until=9999-12-31T23:59:59-12:00", "since=0001-01-01T00:00:00%2B14:00"])
def test_judgement_list_dates_outside_the_supported_range_are_400(query):
    client = logged_in(make_user("rita", role="researcher"))
    r = client.get(f"{JUDGEMENTS}?{query}")
    assert r.status_code == 400 and query.split("=")[0] in r.json()


def test_a_form_post_with_a_nul_byte_is_refused_before_any_view():
    r = Client(raise_request_exception=False).post("/accounts/login/", {"username": "ann\x00", "password": "x"})
    assert r.status_code == 400 and "username" in r.content.decode()


def test_a_login_username_longer_than_any_account_is_a_failed_login_not_a_500():
    make_user("ann")
    client = Client(raise_request_exception=False)
    r = client.post("/accounts/login/", {"username": "u" * 300, "password": "x" * 10})
    assert r.status_code == 200 and "username" in r.content.decode().lower()
    assert client.post("/accounts/login/", {"username": "ann", "password": PASSWORD}).status_code == 302


@pytest.mark.parametrize("path", ["/api/no-such-thing/", "/api/exports/999/", "/api/rlhf/nothing-here/"])
def test_not_found_under_the_api_is_json(admin, path):
    r = admin.get(path)
    assert r.status_code == 404 and r["Content-Type"] == "application/json" and r.json()["code"] == "not_found"


def test_not_found_outside_the_api_stays_a_page(admin):
    r = admin.get("/no-such-page/")
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html")


def test_a_method_not_allowed_under_the_api_is_json(admin):
    r = admin.delete(JUDGEMENTS)
    assert r.status_code == 405 and r["Content-Type"] == "application/json" and "DELETE" in r.json()["detail"]


def test_an_upload_too_large_under_the_api_is_json(admin, settings):
    settings.MAX_UPLOAD_BYTES = 10
    r = admin.post("/api/exports/", {"format": "jsonl", "f": ("x" * 100)}, CONTENT_LENGTH="1000")
    assert r.status_code == 413 and r["Content-Type"] == "application/json"


def test_a_body_over_django_s_memory_limit_under_the_api_is_json_413(admin, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    r = admin.post("/api/exports/", '{"format": "jsonl", "filters": {"proposed_by": "' + "x" * 200 + '"}}',
                   content_type="application/json")
    assert r.status_code == 413 and r["Content-Type"] == "application/json" and r.json()["code"] == "too_large"


def test_a_too_long_url_under_the_api_is_json_414(admin, settings):
    r = admin.get(f"{STREAM}card/?proposed_by=" + "x" * settings.MAX_URL_CHARS)
    assert r.status_code == 414 and r["Content-Type"] == "application/json" and r.json()["code"] == "uri_too_long"


def test_a_url_just_within_the_limit_is_answered(admin, settings):
    path = f"{STREAM}card/?proposed_by="
    r = admin.get(path + "x" * (settings.MAX_URL_CHARS - len(path)))
    assert r.status_code == 200

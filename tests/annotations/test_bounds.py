"""Numbers a client sends are bounded like the columns they reach: each reproducer once answered 500."""
from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from annotations.models import Judgement

from .factories import listen_through_audio_view, make_comparison, make_judgement, make_user

pytestmark = pytest.mark.django_db

JUDGEMENTS = "/api/judgements/"
HUGE = 9223372036854775808  # 2**63: one past the 64-bit id columns


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0


def logged_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def researcher():
    return logged_in(make_user("rita", role="researcher"))


def test_a_huge_limit_is_capped_at_the_largest_page(researcher, settings):
    settings.API_MAX_PAGE_SIZE = 2
    for _ in range(3):
        make_judgement(make_user(), make_comparison())
    r = researcher.get(JUDGEMENTS, {"limit": str(HUGE)})
    assert r.status_code == 200
    assert r.json()["count"] == 3 and len(r.json()["results"]) == 2
    assert researcher.get(JUDGEMENTS, {"limit": "2", "offset": str(HUGE)}).json()["results"] == []


@pytest.mark.parametrize("name", ["annotator", "comparison"])
@pytest.mark.parametrize("value", ["99999999999999999999999", str(HUGE), "-1", "0"])
def test_id_filters_out_of_the_column_range_are_400(researcher, name, value):
    r = researcher.get(JUDGEMENTS, {name: value})
    assert r.status_code == 400 and name in r.json()


def test_the_largest_ids_that_fit_are_answered_with_nothing(researcher):
    assert researcher.get(JUDGEMENTS, {"annotator": 2**31 - 1, "comparison": 2**63 - 1}).json()["count"] == 0


@pytest.mark.parametrize("field, value", [("comparison", HUGE), ("comparison", -5), ("left_edit", HUGE),
                                          ("switches", HUGE), ("switches", 2**31)])
def test_submit_numbers_beyond_their_columns_are_400(field, value):
    annotator = make_user()
    client = logged_in(annotator)
    make_comparison()
    shown = client.get("/api/comparisons/next/").json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    body = {"comparison": shown["id"], "choice": "a", "confidence": 3, "left_edit": shown["left"]["edit_id"],
            "seconds_a": 2, "seconds_b": 2, field: value}
    r = client.post(JUDGEMENTS, body, format="json")
    assert r.status_code == 400 and field in r.json()
    assert not Judgement.objects.exists()


def test_ids_in_urls_beyond_the_column_are_404():
    annotator = make_user()
    client = logged_in(annotator)
    make_comparison()
    client.get("/api/comparisons/next/")
    assert client.get(f"/annotate/audio/{HUGE}/").status_code == 404
    assert client.get("/annotate/audio/99999999999999999999999/").status_code == 404
    assert client.post(f"/api/comparisons/{HUGE}/skip/", {"reason": "x"}, format="json").status_code == 404
    assert client.get(f"/annotate/audio/{2**63 - 1}/").status_code == 404  # fits: looked up, not found


def test_a_json_body_nested_1100_levels_is_400():
    annotator = make_user()
    client = logged_in(annotator)
    body = "[" * 1100 + "]" * 1100
    r = client.post(JUDGEMENTS, body, content_type="application/json")
    assert r.status_code == 400 and "nests deeper" in r.json()["detail"]
    deep_object = '{"comparison": ' + '{"a": ' * 1100 + "1" + "}" * 1100 + "}"
    assert client.post(JUDGEMENTS, deep_object, content_type="application/json").status_code == 400


def test_brackets_inside_strings_do_not_count_as_nesting():
    annotator = make_user()
    client = logged_in(annotator)
    make_comparison()
    shown = client.get("/api/comparisons/next/").json()["comparison"]
    listen_through_audio_view(client, annotator, shown)
    body = {"comparison": shown["id"], "choice": "a", "confidence": 3, "left_edit": shown["left"]["edit_id"],
            "seconds_a": 2, "seconds_b": 2, "comment": '[[[[{{{{"\\' * 200}
    r = client.post(JUDGEMENTS, json.dumps(body), content_type="application/json")
    assert r.status_code == 201, r.json()


@pytest.mark.parametrize("body", ["[]", "[1, 2]", '"text"', "7", "null", "true"])
def test_a_judgement_body_that_is_not_an_object_is_400(body):
    client = logged_in(make_user())
    r = client.post(JUDGEMENTS, body, content_type="application/json")
    assert r.status_code == 400


@pytest.mark.parametrize("body", ["[]", '"jsonl"'])
def test_an_export_or_skip_body_that_is_not_an_object_is_400(body):
    admin = logged_in(make_user("ada", role="admin"))
    assert admin.post("/api/exports/", body, content_type="application/json").status_code == 400
    annotator = make_user()
    client = logged_in(annotator)
    comparison = make_comparison()
    client.get("/api/comparisons/next/")
    assert client.post(f"/api/comparisons/{comparison.pk}/skip/", body,
                       content_type="application/json").status_code == 400


@pytest.mark.parametrize("query", [f"annotators={HUGE}", "annotators=-3", f"judgement_ids={HUGE}",
                                   "annotators=99999999999"])
def test_export_id_filters_beyond_their_columns_are_400(query, storage_root):
    admin = logged_in(make_user("ada", role="admin"))
    make_judgement(make_user(), make_comparison())
    r = admin.get(f"/api/exports/stream/?format=jsonl&{query}")
    assert r.status_code == 400 and "outside" in r.json()["detail"]
    job = admin.post("/api/exports/", {"format": "jsonl", "filters": {query.split("=")[0]: query.split("=")[1]}},
                     format="json")
    assert job.status_code == 400


def test_judgement_submits_are_throttled_with_retry_after(throttle_rates):
    throttle_rates(judgements="3/min")
    client = logged_in(make_user())
    answers = [client.post(JUDGEMENTS, {}, format="json").status_code for _ in range(3)]
    assert answers == [400, 400, 400]
    refused = client.post(JUDGEMENTS, {}, format="json")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60


def test_export_creation_is_throttled_with_retry_after(throttle_rates, storage_root):
    throttle_rates(export_create="2/hour")
    admin = logged_in(make_user("ada", role="admin"))
    assert [admin.post("/api/exports/", {"format": "jsonl"}, format="json").status_code
            for _ in range(2)] == [201, 201]
    refused = admin.post("/api/exports/", {"format": "jsonl"}, format="json")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 3600

"""Who may do what: annotators see only their own work, anonymous users get nothing, CSRF is enforced."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.models import Judgement

from .factories import (
    PASSWORD,
    listen_through_service,
    make_assignment,
    make_comparison,
    make_judgement,
    make_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 1.0


def api_as(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def audio_url(edit) -> str:
    return reverse("annotations:audio", args=[edit.pk])


def test_annotator_reads_only_their_own_judgements():
    me, other = make_user(), make_user()
    mine = make_judgement(me, make_comparison())
    make_judgement(other, make_comparison())
    r = api_as(me).get("/api/judgements/")
    assert [row["id"] for row in r.json()["results"]] == [mine.pk]
    # Asking for someone else's explicitly still returns nothing of theirs.
    assert api_as(me).get("/api/judgements/", {"annotator": other.pk}).json()["count"] == 0


def test_a_user_field_in_the_body_cannot_submit_for_someone_else():
    me, victim = make_user(), make_user()
    comparison = make_comparison()
    listen_through_service(me, make_assignment(me, comparison, left_is_a=True))
    listen_through_service(victim, make_assignment(victim, comparison, left_is_a=True))
    body = {"comparison": comparison.pk, "choice": "a", "confidence": 3, "left_edit": comparison.edit_a_id,
            "seconds_a": 2, "seconds_b": 2, "annotator": victim.pk, "user": victim.pk}
    assert api_as(me).post("/api/judgements/", body, format="json").status_code == 201
    assert list(Judgement.objects.values_list("annotator", flat=True)) == [me.pk]


def test_annotator_cannot_export():
    me = make_user()
    assert api_as(me).get("/api/exports/").status_code == 403
    assert api_as(me).post("/api/exports/", {"format": "jsonl"}, format="json").status_code == 403


def test_researcher_without_annotator_role_cannot_take_assignments():
    researcher = make_user(role="researcher")
    make_comparison()
    assert api_as(researcher).get("/api/comparisons/next/").status_code == 403


def test_user_without_role_gets_nothing():
    nobody = make_user(role=None)
    make_comparison()
    c = api_as(nobody)
    assert c.get("/api/comparisons/next/").status_code == 403
    assert c.get("/api/judgements/").status_code == 403
    web = Client()
    web.login(username=nobody.username, password=PASSWORD)
    assert web.get("/annotate/").status_code == 403


def test_audio_only_for_edits_of_my_assignments_and_404_otherwise():
    me = make_user()
    mine, theirs = make_comparison(), make_comparison()
    make_assignment(me, mine)
    make_assignment(make_user(), theirs)
    web = Client()
    web.login(username=me.username, password=PASSWORD)
    assert web.get(audio_url(mine.edit_a)).status_code == 200
    assert web.get(audio_url(mine.edit_b)).status_code == 200
    assert web.get(audio_url(theirs.edit_a)).status_code == 404
    assert web.get(reverse("annotations:audio", args=[987654])).status_code == 404


def test_audio_stays_available_after_judging_but_not_after_expiry_or_skip():
    from datetime import timedelta

    me = make_user()
    judged, expired, skipped = make_comparison(), make_comparison(), make_comparison()
    make_judgement(me, judged)
    make_assignment(me, expired, expires_in=timedelta(minutes=-1))
    make_assignment(me, skipped, skipped_reason="noise")
    web = Client()
    web.login(username=me.username, password=PASSWORD)
    assert web.get(audio_url(judged.edit_a)).status_code == 200
    assert web.get(audio_url(expired.edit_a)).status_code == 404
    assert web.get(audio_url(skipped.edit_a)).status_code == 404


def test_researcher_hears_any_edit():
    comparison = make_comparison()
    web = Client()
    web.login(username=make_user(role="researcher").username, password=PASSWORD)
    assert web.get(audio_url(comparison.edit_a)).status_code == 200


def test_anonymous_gets_nothing():
    comparison = make_comparison()
    api = APIClient()
    for url in ("/api/comparisons/next/", "/api/judgements/", "/api/progress/"):
        assert api.get(url).status_code == 403, url
    assert api.post("/api/judgements/", {}, format="json").status_code == 403
    assert api.post(f"/api/comparisons/{comparison.pk}/skip/", {"reason": "x"}, format="json").status_code == 403
    page = Client().get("/annotate/")
    assert page.status_code == 302 and "/accounts/login/" in page["Location"]
    assert Client().get(audio_url(comparison.edit_a)).status_code == 404


def test_csrf_is_enforced_for_logged_in_api_calls():
    me = make_user()
    comparison = make_comparison()
    listen_through_service(me, make_assignment(me, comparison, left_is_a=True))
    body = {"comparison": comparison.pk, "choice": "b", "confidence": 2, "left_edit": comparison.edit_a_id,
            "seconds_a": 2, "seconds_b": 2}
    api = APIClient(enforce_csrf_checks=True)
    assert api.login(username=me.username, password=PASSWORD)
    refused = api.post("/api/judgements/", body, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert Judgement.objects.count() == 0
    # With the token the page gets from its cookie, the same call goes through.
    api.get("/annotate/")
    token = api.cookies["csrftoken"].value
    accepted = api.post("/api/judgements/", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201


def test_invite_annotator_command_creates_an_annotator_once_and_prints_the_password_once():
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotations.roles import is_annotator

    out = StringIO()
    call_command("invite_annotator", "newcomer", stdout=out)
    password = out.getvalue().split("(shown once): ")[1].strip()
    user = get_user_model().objects.get(username="newcomer")
    assert is_annotator(user) and user.check_password(password)
    again = StringIO()
    call_command("invite_annotator", "newcomer", stdout=again)
    assert "shown once" not in again.getvalue()
    user.refresh_from_db()
    assert user.check_password(password)
    assert get_user_model().objects.filter(username="newcomer").count() == 1


def test_admin_invite_action_makes_existing_users_annotators():
    from django.contrib.auth import get_user_model

    from annotations.roles import is_annotator

    admin_user = get_user_model().objects.create_superuser("boss", password=PASSWORD)
    someone = make_user("someone", role=None)
    web = Client()
    web.login(username=admin_user.username, password=PASSWORD)
    r = web.post("/admin/auth/user/", {"action": "invite_as_annotator", "_selected_action": [someone.pk]},
                 follow=True)
    assert r.status_code == 200
    assert is_annotator(someone)
    assert b"shown once" in r.content

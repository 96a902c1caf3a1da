"""Researcher pages and API of the cycle: researchers only, CSRF-protected starts, live status, (de)activation."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from annotations.roles import RESEARCHER
from editing.env import spaces_spec
from rlhf.models import Cycle, PolicyVersion
from tests.annotations.factories import make_user

pytestmark = pytest.mark.django_db


def _policy(parent=None, active=False) -> PolicyVersion:
    return PolicyVersion.objects.create(artifact="policies/x.zip", artifact_sha256="0" * 64, spaces_spec=spaces_spec(),
                                        parent=parent, num_timesteps=512, is_active=active,
                                        metrics={"mean_learned_reward": 0.1, "mean_dense_reward": 0.5})


def _client(role, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(make_user(role=role))
    return client


def _csrf(client: Client) -> str:
    client.get(reverse("rlhf:home"))
    return client.cookies["csrftoken"].value


def test_annotators_get_403_on_every_research_page_and_endpoint():
    cycle = Cycle.objects.create(parameters={})
    policy = _policy()
    client = _client(role="annotator")
    gets = [reverse("rlhf:home"), reverse("rlhf:cycle-detail", args=[cycle.pk]),
            reverse("rlhf:cycle-status", args=[cycle.pk]), reverse("rlhf:cycle-plot", args=["policy-reward"]),
            "/api/rlhf/cycles/", f"/api/rlhf/cycles/{cycle.pk}/"]
    posts = [reverse("rlhf:cycle-start"), reverse("rlhf:policy-activate", args=[policy.pk]),
             reverse("rlhf:policy-rollback"), reverse("rlhf:reward-model-rollback"), "/api/rlhf/cycles/"]
    for url in gets:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url).status_code == 403, url
    assert Cycle.objects.count() == 1 and not PolicyVersion.objects.get().is_active


def test_a_researcher_starts_a_cycle_by_post_with_csrf_and_watches_its_status():
    client = _client(RESEARCHER, csrf=True)
    assert client.post(reverse("rlhf:cycle-start"), {"ppo_timesteps": "256"}).status_code == 403  # no token
    response = client.post(reverse("rlhf:cycle-start"), {"ppo_timesteps": "256", "n_pairs": ""},
                           HTTP_X_CSRFTOKEN=_csrf(client))
    cycle = Cycle.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("rlhf:cycle-detail", args=[cycle.pk])
    assert cycle.parameters["ppo_timesteps"] == 256 and cycle.status == Cycle.Status.QUEUED
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"cycle-progress" in page.content
    status = client.get(reverse("rlhf:cycle-status", args=[cycle.pk])).json()
    assert status["status"] == "queued" and status["progress"] == 0 and "queued (manual)" in status["log"]

    again = client.post(reverse("rlhf:cycle-start"), {}, HTTP_X_CSRFTOKEN=_csrf(client))
    assert again.status_code == 409 and b"still running" in again.content
    bad = client.post("/api/rlhf/cycles/", {"ppo_timesteps": 0}, content_type="application/json",
                      HTTP_X_CSRFTOKEN=_csrf(client))
    assert bad.status_code == 400


def test_the_api_refuses_bad_parameters_and_lists_cycles():
    client = _client(RESEARCHER)
    bad = client.post("/api/rlhf/cycles/", {"learned_weight": 2}, content_type="application/json")
    assert bad.status_code == 400 and "learned_weight" in bad.json()["detail"]
    created = client.post("/api/rlhf/cycles/", {"ppo_timesteps": 128}, content_type="application/json")
    assert created.status_code == 201 and created.json()["parameters"]["ppo_timesteps"] == 128
    assert client.post("/api/rlhf/cycles/", {}, content_type="application/json").status_code == 409
    assert [c["id"] for c in client.get("/api/rlhf/cycles/").json()] == [created.json()["id"]]


def test_activate_and_roll_back_a_policy_version():
    client = _client(RESEARCHER)
    first = _policy(active=True)
    second = _policy(parent=first)
    assert client.post(reverse("rlhf:policy-activate", args=[second.pk])).status_code == 302
    first.refresh_from_db(), second.refresh_from_db()
    assert second.is_active and not first.is_active
    assert client.post(reverse("rlhf:policy-rollback")).status_code == 302
    first.refresh_from_db(), second.refresh_from_db()
    assert first.is_active and not second.is_active
    refused = client.post(reverse("rlhf:policy-rollback"))
    assert refused.status_code == 409 and b"has no parent version" in refused.content
    page = client.get(reverse("rlhf:home"))
    assert page.status_code == 200 and first.label.encode() in page.content


@pytest.mark.parametrize("name", ["reward-model-accuracy", "policy-reward", "human-score"])
def test_plots_across_cycles_are_pngs(name):
    _policy(active=True)
    response = _client(RESEARCHER).get(reverse("rlhf:cycle-plot", args=[name]))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"

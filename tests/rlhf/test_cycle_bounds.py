"""Cycle parameters have upper bounds the machine can bear, and starting a cycle is throttled."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from annotations.roles import RESEARCHER
from rlhf.cycle.errors import CycleError
from rlhf.cycle.parameters import CycleParameters
from rlhf.models import Cycle
from tests.annotations.factories import make_user

pytestmark = pytest.mark.django_db

CYCLES = "/api/rlhf/cycles/"


@pytest.fixture
def researcher() -> Client:
    client = Client()
    client.force_login(make_user(role=RESEARCHER))
    return client


@pytest.mark.parametrize("name, value", [
    ("ppo_timesteps", 10**15), ("rm_members", 1_000_000), ("rm_members", 9), ("seed", 2**70), ("seed", -1), ("n_pairs", 513),
    ("ppo_n_envs", 33), ("required_judgements", 21), ("learned_weight", "nan"), ("rm_max_epochs", 0),
    ("ppo_timesteps", True), ("n_excerpts", [1]),
])
def test_out_of_bounds_parameters_are_refused_by_the_api_and_no_cycle_starts(researcher, name, value):
    r = researcher.post(CYCLES, {name: value}, content_type="application/json")
    assert r.status_code == 400, r.content
    assert name in r.json()["detail"]
    assert not Cycle.objects.exists()


def test_the_largest_allowed_values_are_accepted():
    largest = {name: high for name, (low, high) in CycleParameters.BOUNDS.items()}
    assert CycleParameters.from_json(largest).to_json().items() >= largest.items()
    with pytest.raises(CycleError, match="ppo_timesteps must lie in 1..1000000"):
        CycleParameters.from_json({"ppo_timesteps": 1_000_001})


def test_every_integer_and_float_parameter_has_bounds():
    numeric = {name for name, value in CycleParameters().to_json().items() if not isinstance(value, bool)}
    assert numeric == set(CycleParameters.BOUNDS)


@pytest.mark.parametrize("body", ["[1, 2]", '"ppo_timesteps"', "3", "null"])
def test_a_body_that_is_not_a_json_object_is_refused(researcher, body):
    r = researcher.post(CYCLES, body, content_type="application/json")
    assert r.status_code == 400
    assert not Cycle.objects.exists()


def test_the_page_form_refuses_an_oversized_parameter(researcher):
    r = researcher.post(reverse("rlhf:cycle-start"), {"rm_members": "1000000"})
    assert r.status_code == 400 and b"rm_members" in r.content
    assert not Cycle.objects.exists()


def test_cycle_starts_are_throttled_with_retry_after(researcher, throttle_rates, settings):
    from tests.rlhf.cycle_data import judged_pairs

    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 6, 6
    judged_pairs(n_pairs=6)  # enough data that the first start is not refused up front
    throttle_rates(cycle_start="2/hour")
    first = researcher.post(CYCLES, {"ppo_timesteps": 128}, content_type="application/json")
    busy = researcher.post(CYCLES, {}, content_type="application/json")
    assert (first.status_code, busy.status_code) == (201, 409)
    api = researcher.post(CYCLES, {}, content_type="application/json")
    assert api.status_code == 429 and 0 < int(api["Retry-After"]) <= 3600
    page = researcher.post(reverse("rlhf:cycle-start"), {})
    assert page.status_code == 429 and 0 < int(page["Retry-After"]) <= 3600
    assert researcher.get(CYCLES).status_code == 200  # watching is not throttled
    assert Cycle.objects.count() == 1


def test_a_cycle_with_default_parameters_trains_the_policy_with_the_policy_defaults():
    """``CycleParameters`` repeats ``PolicyConfig``'s defaults (the site must not import torch to read
    them); a default cycle must still train exactly as a default ``PolicyConfig`` would."""
    from rlhf.learning.configs import PolicyConfig

    assert CycleParameters().policy_config(seed=PolicyConfig.seed, device=PolicyConfig.device) == PolicyConfig()

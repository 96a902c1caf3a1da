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


def test_every_integer_and_float_parameter_has_bounds_and_every_text_one_its_choices():
    values = CycleParameters().to_json().items()
    assert {name for name, value in values if isinstance(value, (int, float)) and not isinstance(value, bool)} == set(
        CycleParameters.BOUNDS)
    assert {name for name, value in values if isinstance(value, str)} == set(CycleParameters.CHOICES)


@pytest.mark.parametrize("value", ["loudest", 3, ["random"], ""])
def test_a_pair_selection_outside_its_choices_is_refused_by_the_api_and_the_page(researcher, value):
    r = researcher.post(CYCLES, {"pair_selection": value}, content_type="application/json")
    assert r.status_code == 400 and "pair_selection" in r.json()["detail"], r.content
    if isinstance(value, str) and value:
        page = researcher.post(reverse("rlhf:cycle-start"), {"pair_selection": value})
        assert page.status_code == 400 and b"pair_selection must be one of random, disagreement, departures" in page.content
    assert not Cycle.objects.exists()


def test_each_pair_selection_is_accepted_and_the_page_offers_exactly_those(researcher):
    for choice in ("random", "disagreement", "departures"):
        assert CycleParameters.from_json({"pair_selection": choice}).pair_selection == choice
    assert CycleParameters().pair_selection == "disagreement"
    page = researcher.get(reverse("rlhf:home")).content.decode()
    select = page[page.index('<select id="p-pair_selection"'):]
    select = select[:select.index("</select>")]
    assert select.count("<option") == 4 and "default (disagreement)" in select
    assert all(f'value="{choice}"' in select for choice in ("random", "disagreement", "departures"))


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


def test_run_cycle_takes_the_text_and_on_off_parameters_from_its_command_line():
    from rlhf.management.commands.run_cycle import Command, parameters_from_options

    parser = Command().create_parser("manage.py", "run_cycle")
    p = parameters_from_options(vars(parser.parse_args(["--pair-selection", "random", "--no-seam-pessimism-auto"])))
    assert (p.pair_selection, p.seam_pessimism_auto) == ("random", False)
    assert parameters_from_options(vars(parser.parse_args([]))).seam_pessimism_auto is True
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="invalid choice: 'loudest'"):
        parser.parse_args(["--pair-selection", "loudest"])


def test_a_seam_pessimism_given_is_used_and_stored_cycles_keep_theirs():
    assert CycleParameters.from_json({}).seam_pessimism_auto is True
    given = CycleParameters.from_json({"seam_pessimism": 3.0})
    assert (given.seam_pessimism, given.seam_pessimism_auto) == (3.0, False)
    both = CycleParameters.from_json({"seam_pessimism": 3.0, "seam_pessimism_auto": True})
    assert both.seam_pessimism_auto is True
    stored_before = {k: v for k, v in CycleParameters().to_json().items() if k not in ("seam_pessimism_auto", "pair_selection")}
    again = CycleParameters.from_json(stored_before, base=CycleParameters())
    assert again.seam_pessimism_auto is False and again.seam_pessimism == 2.0

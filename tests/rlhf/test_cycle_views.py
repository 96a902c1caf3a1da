"""Researcher pages and API of the cycle: researchers only, CSRF-protected starts, live status, (de)activation."""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from annotations.models import Comparison, Judgement
from annotations.roles import RESEARCHER
from annotations.services import comparison_create
from editing.spaces import spaces_spec
from rlhf.cycle import reward_services
from rlhf.cycle.reward_services import reward_model_holdout_accuracy, reward_model_train
from rlhf.cycle.seam_services import seam_data_build
from rlhf.learning.configs import SEAM_FEATURE_VERSION, TrainingConfig
from rlhf.models import Cycle, PolicyVersion, SeamModelVersion
from rlhf.selectors import MIN_HELDOUT_PAIRS, Proportion, retarget_comparisons, retarget_comparisons_label
from tests.annotations.factories import make_judgement, make_user
from tests.rlhf.cycle_data import finished_cycles, judged_pairs, small_studio

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


def test_a_researcher_starts_a_cycle_by_post_with_csrf_and_watches_its_status(settings):
    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 4, 4
    judged_pairs(n_pairs=4)
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
    assert again.status_code == 409 and b"still running" in again.content and b'id="start-refusal"' in again.content
    bad = client.post("/api/rlhf/cycles/", {"ppo_timesteps": 0}, content_type="application/json",
                      HTTP_X_CSRFTOKEN=_csrf(client))
    assert bad.status_code == 400


def test_the_api_refuses_bad_parameters_and_lists_cycles(settings):
    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 4, 4
    judged_pairs(n_pairs=4)
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


def test_the_start_form_shows_what_a_cycle_would_use_and_a_start_short_of_data_is_refused_before_queueing(settings):
    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 6, 6
    judged_pairs(n_pairs=5)
    client = _client(RESEARCHER)
    page = client.get(reverse("rlhf:home")).content.decode()
    assert 'data-figure="judgements">5<' in page and 'data-figure="pairs">5<' in page
    assert 'data-figure="tracks">2<' in page and 'data-figure="new-judgements">5<' in page
    assert "5 judged pairs of edits, at least 6 needed" in page and "5 new judgements in all, at least 6 needed" in page

    refused = client.post(reverse("rlhf:cycle-start"), {})
    assert refused.status_code == 409 and Cycle.objects.count() == 0
    assert "Refused: not enough data for a cycle: 5 judged pairs of edits, at least 6 needed" in refused.content.decode()
    api = client.post("/api/rlhf/cycles/", {}, content_type="application/json")
    assert api.status_code == 409 and api.json()["code"] == "not_enough_data" and Cycle.objects.count() == 0
    preflight = client.get("/api/rlhf/cycles/preflight/").json()
    assert preflight["ready"] is False and preflight["n_pairs"] == 5 and preflight["min_pairs"] == 6
    assert preflight["refusals"] == ["5 judged pairs of edits, at least 6 needed",
                                     "5 new judgements in all, at least 6 needed"]
    assert _client("annotator").get("/api/rlhf/cycles/preflight/").status_code == 403

    judged_pairs(n_pairs=1)
    bad = client.post(reverse("rlhf:cycle-start"), {"learned_weight": "2"})
    assert bad.status_code == 400 and "Refused: cycle parameter learned_weight must lie in 0.0..1.0" in bad.content.decode()
    assert client.post(reverse("rlhf:cycle-start"), {}).status_code == 302
    assert Cycle.objects.get().status == Cycle.Status.QUEUED


def test_new_judgements_count_from_the_last_finished_cycle(settings):
    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 4, 3
    judged_pairs(n_pairs=4)
    Cycle.objects.create(parameters={}, status=Cycle.Status.DONE, is_running=False,
                         judgements_seen=Judgement.objects.order_by("-pk").first().pk)
    judged_pairs(n_pairs=2)
    from rlhf.selectors import cycle_preflight

    check = cycle_preflight()
    assert (check.n_judgements, check.n_new_judgements, check.n_pairs, check.n_tracks) == (6, 2, 6, 4)
    assert not check.ready and check.refusals == (f"2 new judgements since cycle {check.last_cycle_id}, at least 3 needed",)


def test_one_sided_or_single_track_data_is_refused_with_the_reason(settings):
    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 2, 2
    judged_pairs(n_pairs=3, n_tracks=1, choices="a")
    from rlhf.selectors import cycle_preflight

    reasons = cycle_preflight().refusals
    assert "the judged pairs cover 1 track, a held-out track needs at least 2" in reasons
    assert any(r.startswith("every decided judgement chose edit A") for r in reasons)


def test_the_run_cycle_command_refuses_short_data_with_the_same_reasons(settings):
    from django.core.management import CommandError, call_command

    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 3, 3
    with pytest.raises(CommandError, match="no tracks are ingested; 0 judged pairs of edits, at least 3 needed"):
        call_command("run_cycle", verbosity=0)
    assert Cycle.objects.count() == 0


def test_plots_without_data_are_sentences_not_empty_axes():
    page = _client(RESEARCHER).get(reverse("rlhf:home")).content.decode()
    assert "No reward model yet: finish a cycle." in page and "No policy version yet: finish a cycle." in page
    assert "No judgement compares a policy version" in page
    assert reverse("rlhf:cycle-plot", args=["reward-model-accuracy"]) not in page
    _policy(active=True)
    page = _client(RESEARCHER).get(reverse("rlhf:home")).content.decode()
    assert reverse("rlhf:cycle-plot", args=["policy-reward"]) in page and "No policy version yet" not in page


def test_wilson_intervals_match_the_textbook_values():
    from rlhf.selectors import Proportion

    eight_of_ten = Proportion.wilson(0.8, 10)
    assert (round(eight_of_ten.low, 3), round(eight_of_ten.high, 3)) == (0.49, 0.943)
    all_of_five = Proportion.wilson(1.0, 5)
    assert all_of_five.high == 1.0 and round(all_of_five.low, 3) == 0.566
    assert Proportion.wilson(None, 0).low is None


def test_a_finished_cycle_shows_its_report_card_and_links_to_its_comparisons(storage_root):
    data = finished_cycles()
    client = _client(RESEARCHER)
    page = client.get(reverse("rlhf:cycle-detail", args=[data["second"].pk])).content.decode()
    card = page[page.index('id="report-card"'):page.index("</section>", page.index('id="report-card"'))]
    rows = {r.split("</th>")[0].split(">")[-1]: r for r in card.split("<tr>")[1:]}
    assert f"{data['rm1'].label} (before)" in rows and "0.611" in rows[f"{data['rm1'].label} (before)"]
    assert "0.806" in rows[f"{data['rm2'].label} (after)"] and "0.667" in rows["dense reward only"]
    assert "0.650 – 0.902" in rows[f"{data['rm2'].label} (after)"]  # Wilson, 29 of 36
    assert "40 pairs of edits on held-out tracks 7, 9" in card
    assert "-0.210" in rows[f"{data['v1'].label} (start)"] and "0.370" in rows[f"{data['v2'].label} (end)"]
    assert "0.833" in rows["baseline:bar_cut"] and "0.667" in rows[data["v1"].source]
    assert f'href="{reverse("rlhf:cycle-comparisons", args=[data["second"].pk])}"' in card and "6 comparisons" in card
    assert "<details>" in page and 'id="cycle-metrics"' in page.split("<details>", 2)[2]  # raw metrics disclosed
    assert "<script>" not in page and 'style="' not in page

    listing = client.get(reverse("rlhf:cycle-comparisons", args=[data["second"].pk])).content.decode()
    assert listing.count("<tr><td>") == 6 and "2 of 3" in listing and "2 / 0 / 0" in listing
    assert "report card" not in client.get(reverse("rlhf:cycle-detail", args=[data["first"].pk])).content.decode()


def test_the_report_card_shows_the_seam_model_with_its_n_or_says_there_was_nothing_to_hold_out(storage_root):
    data = finished_cycles()
    client = _client(RESEARCHER)
    measured = SeamModelVersion.objects.create(
        artifact="seam_models/a.json", artifact_sha256="0" * 64, feature_version=SEAM_FEATURE_VERSION,
        n_judgements=120, n_pairs=80, metrics={
            "holdout": {"accuracy": 0.75, "heuristic_accuracy": 0.6, "n_pairs": 40, "held_out_tracks": [7, 9]},
            "departures": {"passages": 12, "departs": 5}})
    Cycle.objects.filter(pk=data["second"].pk).update(seam_model_version=measured)
    page = client.get(reverse("rlhf:cycle-detail", args=[data["second"].pk])).content.decode()
    card = page[page.index('id="report-seam-model"'):page.index("</section>", page.index('id="report-card"'))]
    assert "0.750" in card and "0.600" in card and "40 judged pairs" in card
    assert f"{Proportion.wilson(0.75, 40).low:.3f} – {Proportion.wilson(0.75, 40).high:.3f}" in card
    assert "departs from the heuristic's edit on 5 of 12 judged passages" in card
    assert "No judgement compares its edits with the heuristic" in card

    unmeasured = SeamModelVersion.objects.create(
        artifact="seam_models/b.json", artifact_sha256="0" * 64, feature_version=SEAM_FEATURE_VERSION, metrics={
            "holdout": {"n_pairs": 0, "reason": "1 track(s) judged, 4 needed to hold some out"},
            "departures": {"passages": 3, "departs": 0}})
    Cycle.objects.filter(pk=data["second"].pk).update(seam_model_version=unmeasured)
    page = client.get(reverse("rlhf:cycle-detail", args=[data["second"].pk])).content.decode()
    card = page[page.index('id="report-seam-model"'):page.index("</section>", page.index('id="report-card"'))]
    assert "not enough held-out judgements (0)" in card and "until judgements agree it plans" in card
    assert "0.750" not in card


def _reward_model_card(client: Client, cycle: Cycle) -> str:
    """The report card's reward-model section of ``cycle``'s page, as a user reads it."""
    page = client.get(reverse("rlhf:cycle-detail", args=[cycle.pk])).content.decode()
    start = page.index("Reward model: accuracy on unbiased held-out pairs")
    return page[start:page.index("<h3>Policy</h3>", start)]


def _accuracies(card: str) -> list[str]:
    return re.findall(r"\b[01]\.\d{3}\b", card)


def test_a_reward_model_split_by_excerpt_gets_no_held_out_accuracy(storage_root):
    data = finished_cycles()
    comparisons = judged_pairs(n_pairs=40, n_tracks=2, proposed_by="baselines")  # unbiased, 20 a track
    tracks = sorted({c.track_id for c in comparisons})
    rm2 = data["rm2"]
    # Two tracks: the version kept excerpts apart, so its validation tracks are also training tracks.
    rm2.metrics = {"split_unit": "excerpt", "n_tracks": 2, "validation_tracks": tracks, "trained_tracks": tracks}
    rm2.judgement_ids = list(Judgement.objects.values_list("pk", flat=True))
    rm2.save()
    holdout = reward_model_holdout_accuracy(version=rm2, previous=data["rm1"])
    assert (holdout["tracks"], holdout["n_pairs"], holdout["after"]["accuracy"]) == ([], 0, None)
    cycle = data["second"]
    cycle.metrics = {**cycle.metrics, "reward_model": {"label": rm2.label, "split_unit": "excerpt", "holdout": holdout}}
    cycle.save()

    card = _reward_model_card(_client(RESEARCHER), cycle)
    assert ("not enough held-out judgements (0): the judgements cover 2 tracks, too few for a held-out track "
            "(8 needed)") in card
    assert 'id="report-reward-model"' not in card and not _accuracies(card)


def test_a_cycle_recorded_with_an_excerpt_split_no_longer_shows_its_held_out_accuracy(storage_root):
    data = finished_cycles()
    cycle = data["second"]
    summary = cycle.metrics["reward_model"]
    holdout = {k: v for k, v in summary["holdout"].items() if k not in ("split_unit", "n_tracks")}
    cycle.metrics = {**cycle.metrics, "reward_model": {**summary, "split_unit": "excerpt", "holdout": holdout}}
    cycle.save()
    card = _reward_model_card(_client(RESEARCHER), cycle)
    assert "not enough held-out judgements (0): the judgements cover too few tracks for a held-out track" in card
    assert not _accuracies(card)


@pytest.mark.parametrize("n_decided, shown", [(MIN_HELDOUT_PAIRS - 1, False), (MIN_HELDOUT_PAIRS, True)])
def test_held_out_accuracies_need_enough_decided_pairs(storage_root, n_decided, shown):
    data = finished_cycles()
    cycle = data["second"]
    summary = cycle.metrics["reward_model"]
    after = round(0.75 * n_decided) / n_decided
    holdout = {**summary["holdout"], "n_pairs": n_decided + 2, "n_decided": n_decided,
               "after": {"label": data["rm2"].label, "accuracy": after}}
    cycle.metrics = {**cycle.metrics, "reward_model": {**summary, "holdout": holdout}}
    cycle.save()
    seam = SeamModelVersion.objects.create(
        artifact="seam_models/a.json", artifact_sha256="0" * 64, feature_version=SEAM_FEATURE_VERSION, metrics={
            "holdout": {"accuracy": 0.75, "heuristic_accuracy": 0.6, "n_pairs": n_decided, "held_out_tracks": [7, 9]},
            "departures": {"passages": 12, "departs": 5}})
    Cycle.objects.filter(pk=cycle.pk).update(seam_model_version=seam)
    client = _client(RESEARCHER)

    card = _reward_model_card(client, cycle)
    page = client.get(reverse("rlhf:cycle-detail", args=[cycle.pk])).content.decode()
    seam_card = page[page.index('id="report-seam-model"'):page.index("</section>", page.index('id="report-card"'))]
    wilson = Proportion.wilson(after, n_decided)
    if shown:
        assert f"{after:.3f}" in card and f"{wilson.low:.3f} – {wilson.high:.3f}" in card
        assert "not enough" not in card and "0.750" in seam_card and "not enough" not in seam_card
    else:
        note = f"not enough held-out judgements ({n_decided}): {n_decided} decided pairs, at least {MIN_HELDOUT_PAIRS} needed"
        assert note in card and not _accuracies(card)
        assert note in seam_card and "0.750" not in seam_card


@pytest.mark.slow
def test_retarget_requests_on_a_held_out_track_change_neither_n_nor_the_accuracy(storage_root, monkeypatch):
    # Three demo tracks split by track (a studio needs eight for that by default): one is held out.
    monkeypatch.setattr(reward_services, "MIN_TRACKS_FOR_TRACK_SPLIT", 3)
    small_studio(storage_root / "demo", n_tracks=3, baseline_excerpts=12)
    # Per passage, a user's retarget request compares the two edits the heuristic was compared with;
    # the user always picks the one the annotators liked less.
    requester = make_user("requester")
    by_heuristic: dict[int, list[Comparison]] = {}
    for c in Comparison.objects.filter(is_gold=False).order_by("pk"):
        by_heuristic.setdefault(c.edit_a_id, []).append(c)
    for job, (first, second) in enumerate(p for p in by_heuristic.values() if len(p) == 2):
        liked_less = "a" if first.judgements.filter(choice="b").count() > second.judgements.filter(choice="b").count() \
            else "b"
        request = comparison_create(edit_a=first.edit_b, edit_b=second.edit_b,
                                    proposed_by=retarget_comparisons_label(job + 1))
        make_judgement(requester, request, choice=liked_less)
    requests = retarget_comparisons()
    assert requests.count() >= 12

    version = reward_model_train(config=TrainingConfig(n_members=1, max_epochs=2, device="cpu"), activate=False)
    held_out = version.metrics["validation_tracks"]
    assert version.metrics["split_unit"] == "track" and not set(held_out) & set(version.metrics["trained_tracks"])
    trained_on_requests = Judgement.objects.filter(comparison__in=requests, comparison__track_id__in=held_out,
                                                   pk__in=version.judgement_ids)
    assert trained_on_requests.exists()  # the version trained with requests on its held-out track
    assert seam_data_build().retarget.sum() == requests.count()  # the seam model's held-out scoring skips them

    # The version stands in for its own "before" too: a previous model that trained on every held-out pair.
    with_requests = reward_model_holdout_accuracy(version=version, previous=version)
    Judgement.objects.filter(comparison__in=requests).delete()  # as if no user had asked
    assert reward_model_holdout_accuracy(version=version, previous=version) == with_requests
    assert with_requests["before"]["n_trained_on"] == with_requests["n_judgements"]

    cycle = Cycle.objects.create(status=Cycle.Status.DONE, is_running=False, progress=1.0, parameters={},
                                 reward_model_version=version,
                                 metrics={"reward_model": {"label": version.label, "split_unit": "track",
                                                           "holdout": with_requests}})
    card = _reward_model_card(_client(RESEARCHER), cycle)
    n, after = with_requests["n_decided"], with_requests["after"]["accuracy"]
    assert n >= MIN_HELDOUT_PAIRS and "not enough" not in card
    wilson = Proportion.wilson(after, n)
    assert f"{after:.3f}" in card and f"{wilson.low:.3f} – {wilson.high:.3f}" in card
    assert f"{with_requests['n_pairs']} pairs of edits on held-out track" in card
    assert f"had trained on {with_requests['n_judgements']} of these judgements" in card


def _typed(page: str, name: str) -> str:
    """The value the start form's field ``name`` holds in ``page``."""
    return re.search(rf'<input id="p-{name}" name="{name}" placeholder="[^"]*" value="([^"]*)"', page).group(1)


def test_a_refused_start_keeps_what_was_typed_in_the_form(settings):
    settings.REWARD_MIN_PAIRS, settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 6, 6
    judged_pairs(n_pairs=6)
    client = _client(RESEARCHER)
    fresh = client.get(reverse("rlhf:home")).content.decode()
    assert _typed(fresh, "learned_weight") == "" and "<details>" in fresh

    refused = client.post(reverse("rlhf:cycle-start"), {"learned_weight": "2", "ppo_timesteps": "4096", "n_pairs": ""})
    assert refused.status_code == 400 and Cycle.objects.count() == 0
    page = refused.content.decode()
    assert "Refused: cycle parameter learned_weight must lie in 0.0..1.0" in page
    assert (_typed(page, "learned_weight"), _typed(page, "ppo_timesteps"), _typed(page, "n_pairs")) == ("2", "4096", "")
    assert "<details open>" in page  # the typed values are in sight, next to the refusal


def test_the_report_card_says_plainly_what_a_first_policy_started_from(storage_root):
    data = finished_cycles()
    client = _client(RESEARCHER)

    def start_row() -> str:
        page = client.get(reverse("rlhf:cycle-detail", args=[data["first"].pk])).content.decode()
        table = page[page.index('id="report-policy"'):]
        return table.split("<tr>")[2].split("</th>")[0].split(">")[-1]

    assert start_row() == "a new policy with random weights (start)"
    data["v1"].metrics["imitation"] = {"n_episodes": 16, "n_steps": 900, "epochs": 4, "agreement": 0.8, "seconds": 2.0}
    data["v1"].save()
    assert start_row() == "a new policy taught to copy the heuristic (start)"
    data["v1"].metrics["imitation"] = {**data["v1"].metrics["imitation"], "teacher": "learned_planner",
                                       "n_learned_episodes": 5}
    data["v1"].save()
    assert start_row() == "a new policy taught to copy the learned planner where it departs, else the heuristic (start)"

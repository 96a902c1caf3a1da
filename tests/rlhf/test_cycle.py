"""The retrain cycle in-process on SQLite: versions, lineage, proposals, failures, one cycle at a time."""
from __future__ import annotations

import json

import pytest
import torch
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from annotations.models import Comparison, Edit
from rlhf.cycle import state as cycle_state
from rlhf.cycle.errors import CycleBusy, CycleError
from rlhf.cycle.parameters import CycleParameters
from rlhf.cycle.state import STEP_SPAN, cycle_create, cycle_recover, cycle_should_start
from rlhf.cycle.steps import cycle_run, cycle_step_run
from rlhf.evidence.evaluation import simulated_loop
from rlhf.models import Cycle, PolicyVersion, RewardModelVersion
from rlhf.evidence.simulate import annotators_simulate
from rlhf.cycle.seam_services import seam_model_load
from rlhf.learning.seam_model import PESSIMISM_GRID
from rlhf.versions import seam_model_active
from tests.rlhf.cycle_data import TINY, artifact_files, partial_files, small_studio

pytestmark = pytest.mark.django_db


def _active():
    return RewardModelVersion.objects.get(is_active=True), PolicyVersion.objects.get(is_active=True)


@pytest.mark.slow
def test_cycles_chain_versions_propose_comparisons_and_a_failed_cycle_changes_nothing(storage_root, monkeypatch):
    small_studio(storage_root / "demo")

    seen: list[tuple[float, str]] = []
    first = cycle_run(cycle=cycle_create(parameters=TINY), echo=lambda fraction, message: seen.append((fraction, message)))
    assert first.status == Cycle.Status.DONE, first.error
    # The bar moves through every reward-model epoch instead of jumping to the step's end.
    reward_step = [f for f, _ in seen if f < STEP_SPAN["train_policy"][0]]
    assert reward_step == sorted(reward_step) and len(set(reward_step)) >= TINY.rm_members * 2
    assert first.progress == 1.0 and not first.is_running and first.finished_at is not None
    rm1, policy1 = _active()
    assert (first.reward_model_version, first.policy_version) == (rm1, policy1)
    assert policy1.parent is None and policy1.reward_model == rm1 and policy1.num_timesteps >= TINY.ppo_timesteps
    assert set(first.metrics) == {"reward_model", "policy", "proposal"}
    seam1 = first.seam_model_version
    assert seam1 is not None and seam1.is_active and seam1.n_judgements == rm1.n_judgements
    # Its k was chosen on the judged tracks (seam_pessimism_auto, the default) and the version plans with it.
    assert seam1.metrics["pessimism"]["k"] in PESSIMISM_GRID and seam1.metrics["pessimism"]["reason"].startswith("k ")
    assert seam_model_load(seam1).config.pessimism == seam1.metrics["pessimism"]["k"] == seam1.hyperparameters["pessimism"]
    assert first.metrics["reward_model"]["accuracy"] is not None
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"  # TRAINING_DEVICE unset: CUDA when present
    assert first.metrics["reward_model"]["device"].split(":")[0] == expected_device
    assert first.metrics["policy"]["device"].split(":")[0] == expected_device
    # The first policy imitated the cycle's learned planner where it departs (the heuristic elsewhere), and says so.
    imitation = first.metrics["policy"]["imitation"]
    assert imitation["teacher"] == ("learned_planner" if imitation["n_learned_episodes"] else "heuristic")
    assert policy1.hyperparameters["teacher_seam_model"] == seam1.label
    assert policy1.hyperparameters["policy"]["learned_reward_baseline"] == "heuristic"
    proposed = list(Comparison.objects.filter(proposed_by=f"cycle {first.pk}").select_related("edit_a", "edit_b"))
    assert len(proposed) == first.metrics["proposal"]["n_comparisons"] > 0
    assert any(c.priority > 0 for c in proposed) and all(0.0 <= c.priority <= 1.0 for c in proposed)
    assert all(0.0 <= c.predicted_preference <= 1.0 and c.reward_model_version == rm1.label for c in proposed)
    sources = {e.source for c in proposed for e in (c.edit_a, c.edit_b)}
    # Rendered at the source's fidelity by the worker, so the annotation page never waits for it.
    assert all("native" in e.render for c in proposed for e in (c.edit_a, c.edit_b))
    assert policy1.source in sources and sources <= {policy1.source, "baseline:random", "baseline:bar_cut",
                                                     "baseline:heuristic", seam1.source, f"{seam1.source}:departure"}
    # Seam questions (the default pair_selection): two of the heuristic's plan, the learned plan and their
    # single departures, at least one of them made by the seam model, on one excerpt.
    assert first.metrics["proposal"]["pair_selection"] == TINY.pair_selection == "disagreement"
    assert 0 < first.metrics["proposal"]["n_seam_questions"] <= TINY.departure_pairs
    questions = [c for c in proposed if {c.edit_a.source, c.edit_b.source} & {seam1.source, f"{seam1.source}:departure"}]
    assert len(questions) == first.metrics["proposal"]["n_seam_questions"]
    assert all(c.edit_a.excerpt_start_beat == c.edit_b.excerpt_start_beat for c in questions)

    # A redelivered step of a finished cycle does nothing.
    assert cycle_step_run(cycle_id=first.pk, step="train_policy") is False
    assert PolicyVersion.objects.count() == 1

    # A failure injected in the policy step: the cycle is failed with the reason, nothing else changes.
    annotators_simulate(n_annotators=3, seed=1)

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr("rlhf.cycle.steps.train_policy", broken)
    failed = cycle_run(cycle=cycle_create(parameters=TINY))
    assert failed.status == Cycle.Status.FAILED and not failed.is_running
    assert "train_policy" in failed.error and "injected failure" in failed.error
    assert _active() == (rm1, policy1)
    assert failed.reward_model_version is not None and not failed.reward_model_version.is_active
    assert failed.seam_model_version is not None and not failed.seam_model_version.is_active
    assert seam_model_active() == seam1
    assert failed.policy_version is None and PolicyVersion.objects.count() == 1
    assert not Comparison.objects.filter(proposed_by=f"cycle {failed.pk}").exists()
    assert artifact_files(storage_root, "policies") == {policy1.artifact.name}
    assert not partial_files(storage_root)
    monkeypatch.undo()

    # The next cycle fine-tunes the active policy and proposes against it.
    second = cycle_run(cycle=cycle_create(parameters=TINY))
    assert second.status == Cycle.Status.DONE, second.error
    rm3, policy2 = _active()
    assert second.policy_version == policy2 and policy2.parent == policy1 and policy2.reward_model == rm3
    assert policy2.num_timesteps == policy1.num_timesteps + policy2.metrics["timesteps_this_run"]
    assert rm3.parent == rm1  # the failed cycle's version never became active
    # Three tracks are too few to hold one out: rm3 kept excerpts apart, so its validation tracks are
    # training tracks too and no held-out accuracy is measured (the report card says why).
    holdout = second.metrics["reward_model"]["holdout"]
    assert holdout["split_unit"] == "excerpt" and holdout["n_tracks"] == 3
    assert holdout["tracks"] == [] and holdout["n_pairs"] == 0 and rm3.metrics["validation_tracks"]
    assert holdout["before"]["label"] == rm1.label and holdout["after"] == {"label": rm3.label, "accuracy": None}
    assert first.metrics["reward_model"]["holdout"]["before"] is None  # the first reward model has no "before"
    sources = set(Edit.objects.filter(source__startswith="policy:").values_list("source", flat=True))
    assert {policy1.source, policy2.source} <= sources
    assert artifact_files(storage_root, "policies") == {policy1.artifact.name, policy2.artifact.name}
    assert set(artifact_files(storage_root, "reward_models")) == set(
        RewardModelVersion.objects.values_list("artifact", flat=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_cycle_forced_onto_cuda_without_a_gpu_fails_with_the_reason_and_registers_nothing(storage_root, settings):
    small_studio(storage_root / "demo", n_tracks=1, baseline_excerpts=2)
    settings.TRAINING_DEVICE = "cuda"
    failed = cycle_run(cycle=cycle_create(parameters=TINY))
    assert failed.status == Cycle.Status.FAILED and not failed.is_running
    assert "train_reward_model" in failed.error and "no CUDA GPU" in failed.error
    assert not RewardModelVersion.objects.exists() and not PolicyVersion.objects.exists()
    assert not artifact_files(storage_root, "reward_models") and not partial_files(storage_root)


def test_only_one_cycle_runs_at_a_time():
    running = cycle_create(parameters=TINY)
    with pytest.raises(CycleBusy, match=f"cycle {running.pk} is still running"):
        cycle_create(parameters=TINY)
    cycle_state.cycle_fail(cycle_id=running.pk, reason="stopped by the test")
    assert cycle_create(parameters=TINY).pk != running.pk


def test_parameters_refuse_unknown_names_bad_types_and_ranges():
    with pytest.raises(CycleError, match="'ppo_stepz' is unknown"):
        CycleParameters.from_json({"ppo_stepz": 10})
    with pytest.raises(CycleError, match="ppo_timesteps: 'many' is not a valid int"):
        CycleParameters.from_json({"ppo_timesteps": "many"})
    with pytest.raises(CycleError, match="learned_weight must lie in"):
        CycleParameters.from_json({"learned_weight": "1.5"})
    p = CycleParameters.from_json({"ppo_timesteps": "2048", "rm_warm_start": "on"})
    assert p.ppo_timesteps == 2048 and p.rm_warm_start is True


def test_a_step_of_a_failed_cycle_or_an_unknown_step_does_nothing():
    cycle = cycle_create(parameters=TINY)
    with pytest.raises(CycleError, match="'fly' is unknown"):
        cycle_step_run(cycle_id=cycle.pk, step="fly")
    cycle_state.cycle_fail(cycle_id=cycle.pk, reason="stopped")
    assert cycle_step_run(cycle_id=cycle.pk, step="train_reward_model") is False


def test_recover_redispatches_only_silent_cycles(monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("rlhf.cycle.state.cycle_dispatch", lambda pk, steps: sent.append((pk, steps[0])))
    cycle = cycle_create(parameters=TINY)
    Cycle.objects.filter(pk=cycle.pk).update(celery_task_id="lost-worker-task")
    with django_capture_on_commit_callbacks(execute=True):
        assert cycle_recover(stale_after_seconds=3600) == []
    with django_capture_on_commit_callbacks(execute=True):
        assert [c.pk for c in cycle_recover(stale_after_seconds=0)] == [cycle.pk]
    assert sent == [(cycle.pk, "train_reward_model")]
    cycle.refresh_from_db()
    assert cycle.celery_task_id == "" and "re-dispatching train_reward_model" in cycle.log


def test_schedule_starts_a_cycle_only_with_enough_new_judgements():
    start, reason = cycle_should_start(min_new_judgements=1)
    assert not start and "0 new judgements" in reason
    from rlhf.tasks import maybe_start_cycle

    assert maybe_start_cycle(min_new_judgements=5).startswith("no cycle started: 0 new judgements")
    assert not Cycle.objects.exists()


def test_schedule_cycles_creates_an_editable_periodic_task():
    call_command("schedule_cycles", "--every-hours", "2", "--min-new-judgements", "50", verbosity=0)
    call_command("schedule_cycles", "--every-hours", "3", "--min-new-judgements", "60", verbosity=0)
    task = PeriodicTask.objects.get(task="rlhf.tasks.maybe_start_cycle")
    assert task.interval.every == 180 and task.enabled
    assert json.loads(task.kwargs) == {"min_new_judgements": 60}


@pytest.mark.slow
def test_three_simulated_cycles_keep_the_policy_level_with_the_heuristic_and_far_above_random_edits(storage_root):
    small_studio(storage_root / "demo")
    # Default cycle sizes: the first policy imitates the heuristic (about a minute here), later
    # cycles fine-tune it under the KL guard; the README's evaluation measures the same on held-out tracks.
    rows = simulated_loop(n_cycles=3, parameters=CycleParameters(), eval_excerpts=24)
    print("\n".join(str(r) for r in rows))
    for row in rows:
        assert row.win_vs_random > 0.85
        assert row.win_vs_heuristic > 0.35


def _older_spaces() -> dict:
    """The spaces spec of a policy trained before the heuristic block (observation v2, 427 dims)."""
    from editing.spaces import spaces_spec

    spec = spaces_spec()
    spec["observation"] = {**spec["observation"], "version": "editing-obs-v2", "shape": [427],
                           "layout": [part for part in spec["observation"]["layout"] if part[0] != "heuristic"]}
    return spec


def test_a_policy_of_older_spaces_is_refused_by_its_label_not_by_a_path():
    from rlhf.cycle.policy_services import policy_load
    from rlhf.versions import PolicyServiceError, policy_activate

    old = PolicyVersion.objects.create(artifact="policies/old.zip", artifact_sha256="0" * 64, spaces_spec=_older_spaces(),
                                       num_timesteps=512)
    for call in (policy_load, lambda version: policy_activate(version=version)):
        with pytest.raises(PolicyServiceError) as refused:
            call(old)
        message = str(refused.value)
        assert message.startswith(f"policy {old.label}: spaces differ") and "editing-obs-v2" in message
        assert "/" not in message
        assert "a cycle trains a first policy" in message


@pytest.mark.slow
def test_a_cycle_over_a_policy_of_older_spaces_trains_a_first_policy_and_says_why(storage_root):
    small_studio(storage_root / "demo", n_tracks=2)
    first = cycle_run(cycle=cycle_create(parameters=TINY))
    assert first.status == Cycle.Status.DONE, first.error
    PolicyVersion.objects.filter(pk=first.policy_version.pk).update(spaces_spec=_older_spaces())
    annotators_simulate(n_annotators=3, seed=1)
    second = cycle_run(cycle=cycle_create(parameters=TINY))
    assert second.status == Cycle.Status.DONE, second.error
    assert second.policy_version.parent is None and second.policy_version.is_active
    assert f"policy {first.policy_version.label}: spaces differ" in second.log
    assert second.metrics["policy"]["imitation"]["n_episodes"] == TINY.ppo_imitation_episodes

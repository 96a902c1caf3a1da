"""The retrain cycle: train a reward model -> fine-tune the policy -> propose comparisons.

The one place that joins the database and the pure learning modules for a cycle's work.
Cycles are started and watched through ``rlhf.cycle.state`` (torch-free); Celery tasks
(``rlhf.tasks``) call :func:`cycle_step_run`, and ``manage.py run_cycle`` and the evidence
harness (``rlhf.evidence``) call :func:`cycle_run`.

Steps and their guarantees
--------------------------
``train_reward_model``
    Trains a reward-model version on the current judgements and registers it
    *inactive*, linked to the cycle in the registering transaction.
``train_policy``
    Fine-tunes the active policy (or trains a first one) against the cycle's
    reward model and registers it *inactive*, linked to the cycle in the
    registering transaction.  A first policy imitates the cycle's seam model's
    learned planner where it departs from the heuristic (the heuristic elsewhere);
    the version's metrics say which teacher it had.
``propose``
    Renders candidate edits from the cycle's policy, its parent and the
    baselines; then ONE transaction creates the comparisons, activates both of
    the cycle's versions and marks the cycle done.

So a failure at any step (or a worker killed mid-step) leaves the previous
versions active and no comparisons of the cycle.  Every step is idempotent: a
step whose output is already linked to the cycle is skipped, so a redelivered
or re-dispatched step simply resumes the cycle.

Claiming a step, its heartbeat and recovery live in ``rlhf.cycle.state``.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import asdict, replace
from typing import Callable, Iterator

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.utils import timezone

from annotations.jobs import job_heartbeat
from annotations.models import Track
from editing.env import EnvConfig
from rlhf.cycle.errors import CycleError
from rlhf.cycle.parameters import CycleParameters
from rlhf.cycle.policy_services import policy_artifact_path, policy_load, policy_register, track_arrays
from rlhf.cycle.proposal_services import proposal_comparisons_create, proposal_edits_create
from rlhf.cycle.reward_services import (
    policy_reward, reward_model_holdout_accuracy, reward_model_load, reward_model_train, training_device,
)
from rlhf.cycle.seam_services import seam_model_load, seam_model_train
from rlhf.cycle.state import RUNNING, STEPS, Reporter, Status, claim_step, cycle_fail, pending_step, stamp
from rlhf.learning.configs import SeamTrainingConfig, TrainingConfig
from rlhf.learning.learned_reward import EnsembleReward
from rlhf.learning.policy import train_policy
from rlhf.learning.proposal import ProposalConfig, choose_excerpts, propose, seam_question_pairs
from rlhf.learning.reward_model import select_device
from rlhf.models import Cycle, PolicyVersion, RewardModelVersion
from rlhf.selectors import cycle_comparisons_label
from rlhf.versions import (
    policy_activate, policy_active, policy_spaces_problem, reward_model_activate, reward_model_active,
    seam_model_activate,
)


def cycle_step_run(*, cycle_id: int, step: str, executor: str | None = None,
                   echo: Callable[[float, str], None] | None = None) -> bool:
    """Run ``step`` of the cycle if it still needs running; True when it ran to completion.

    An exception inside the step marks the cycle failed with the reason and
    is not re-raised: the cycle row is the record, and later steps see it ended.
    """
    if step not in STEPS:
        raise CycleError(f"cycle step {step!r} is unknown (steps: {', '.join(STEPS)})")
    executor = executor or f"local-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cycle = claim_step(cycle_id, step, executor)
    if cycle is None:
        return False
    report = Reporter(cycle_id, step, echo)
    try:
        # Progress reports beat too; the thread covers long stretches without one (annotations.jobs).
        with job_heartbeat(Cycle, cycle_id, running=RUNNING):
            _STEP_FUNCTIONS[step](cycle, CycleParameters.from_json(cycle.parameters, base=CycleParameters()), report)
    except Exception as err:  # noqa: BLE001 - any failure ends the cycle, with its reason recorded
        cycle_fail(cycle_id=cycle_id, reason=f"{step}: {type(err).__name__}: {err}")
        return False
    return True


def cycle_run(*, cycle: Cycle, echo: Callable[[float, str], None] | None = None) -> Cycle:
    """Run every pending step of ``cycle`` in this process (management commands, tests)."""
    while True:
        cycle.refresh_from_db()
        step = pending_step(cycle)
        if step is None or not cycle_step_run(cycle_id=cycle.pk, step=step, echo=echo):
            break
    cycle.refresh_from_db()
    return cycle


def _seed(cycle: Cycle, parameters: CycleParameters) -> int:
    return parameters.seed + cycle.pk


@contextlib.contextmanager
def _link_reward_model_on_register(cycle_id: int) -> Iterator[None]:
    """Link the reward-model version to the cycle inside the transaction that registers it.

    ``reward_model_train`` creates the row in its own transaction; a post_save
    receiver connected only for this call joins that transaction, so the
    version never exists unlinked, even if the process dies right after.
    """
    pid = os.getpid()

    def link(sender, instance: RewardModelVersion, created: bool, **kwargs) -> None:
        if created and os.getpid() == pid:
            Cycle.objects.filter(pk=cycle_id).update(reward_model_version=instance)

    uid = f"cycle-{cycle_id}-link-rm-{uuid.uuid4().hex}"
    post_save.connect(link, sender=RewardModelVersion, weak=False, dispatch_uid=uid)
    try:
        yield
    finally:
        post_save.disconnect(sender=RewardModelVersion, dispatch_uid=uid)


def _step_train_reward_model(cycle: Cycle, p: CycleParameters, report: Reporter) -> None:

    device = select_device(training_device())  # a forced device that is not there fails here, before any work
    config = TrainingConfig(seed=_seed(cycle, p), n_members=p.rm_members, max_epochs=p.rm_max_epochs,
                            device=device.type, min_pairs=settings.REWARD_MIN_PAIRS)
    warm = p.rm_warm_start and reward_model_active() is not None
    report(0.0, f"training the reward model ({p.rm_members} members, up to {p.rm_max_epochs} epochs"
                f"{', warm start' if warm else ''})")
    # Training reports per batch within each member's epoch; the bar moves through all epochs
    # of all members (early stopping skips ahead), leaving the last 5 % for the held-out check.
    stage = {"name": "", "index": 0}
    n_epochs = p.rm_members * p.rm_max_epochs

    def progress(name: str, done: int, total: int) -> None:
        message = ""
        if name != stage["name"]:
            stage["name"], stage["index"] = name, stage["index"] + 1
            message = f"reward model: {name}"
        within = done / total if total else 0.0
        report(0.95 * min(stage["index"] - 1 + within, n_epochs) / n_epochs, message)

    if cycle.seam_model_version_id is None:  # a re-run step keeps the seam model it registered
        report(0.0, "training the seam model (the learned planner's residual seam cost)")
        seam = seam_model_train(config=SeamTrainingConfig(seed=_seed(cycle, p), pessimism=p.seam_pessimism),
                                activate=False, choose_k=p.seam_pessimism_auto)
        Cycle.objects.filter(pk=cycle.pk).update(seam_model_version=seam)
        cycle.seam_model_version = seam
        holdout = seam.metrics.get("holdout", {})
        report(0.0, f"seam model {seam.label}: {seam.metrics.get('note')}; "
                    f"{seam.metrics.get('pessimism', {}).get('reason', '')}; held-out accuracy "
                    f"{_fmt(holdout.get('accuracy'))} (heuristic cost {_fmt(holdout.get('heuristic_accuracy'))}, "
                    f"{holdout.get('n_pairs', 0)} pairs)", force=True)
    with _link_reward_model_on_register(cycle.pk):
        version = reward_model_train(config=config, warm_start=warm, activate=False, progress=progress)
    report(0.95, f"reward model {version.label}: accuracy before and after on unbiased held-out pairs", force=True)
    holdout = reward_model_holdout_accuracy(version=version, previous=version.parent)
    m = version.metrics
    summary = {"label": version.label, "accuracy": m.get("accuracy"), "baseline_accuracy": m.get("baseline_accuracy"),
               "ece": m.get("ece"), "loss": m.get("loss"), "n_judgements": version.n_judgements,
               "n_train_pairs": m.get("n_train_pairs"), "n_selection_pairs": m.get("n_selection_pairs"),
               "n_validation_pairs": m.get("n_validation_pairs"), "split_unit": m.get("split_unit"),
               "device": str(device), "holdout": holdout}
    with transaction.atomic():
        row = Cycle.objects.select_for_update().get(pk=cycle.pk)
        row.metrics = {**row.metrics, "reward_model": summary}
        row.celery_task_id = ""
        row.save(update_fields=["metrics", "celery_task_id"])
    report(1.0, f"reward model {version.label}: validation accuracy {_fmt(summary['accuracy'])} "
                f"(dense-only {_fmt(summary['baseline_accuracy'])}), ECE {_fmt(summary['ece'])}", force=True)


def _tracks() -> list[Track]:
    tracks = list(Track.objects.order_by("pk"))
    if not tracks:
        raise CycleError("no tracks are ingested: nothing to edit")
    return tracks


def _step_train_policy(cycle: Cycle, p: CycleParameters, report: Reporter) -> None:

    reward_model = cycle.reward_model_version
    arrays = track_arrays(_tracks())
    parent = policy_active()
    problem = policy_spaces_problem(parent) if parent else None
    if problem:
        # A policy of an older studio (other observations) cannot be fine-tuned: start a first one, and say so.
        report(0.0, problem)
        parent = None
    env_config = EnvConfig(learned_weight=p.learned_weight)
    config = p.policy_config(seed=_seed(cycle, p), device=training_device())
    # The seam model trained in this cycle's first step: a first policy starts from its learned planner.
    seam = cycle.seam_model_version
    report(0.0, f"training the policy for {p.ppo_timesteps} steps "
                f"({'fine-tuning ' + parent.label if parent else 'from scratch'}, reward model {reward_model.label})")
    run = train_policy(
        arrays, total_timesteps=p.ppo_timesteps, learned_reward=policy_reward(reward_model, pessimism=p.rm_pessimism),
        env_config=env_config, config=config, parent=policy_artifact_path(parent) if parent else None,
        progress=lambda fraction, message: report(fraction, message),
        seam_model=seam_model_load(seam) if seam is not None and parent is None else None,
    )
    summary = {**run.summary(), "device": str(run.model.device)}

    def link(version: PolicyVersion) -> None:
        row = Cycle.objects.select_for_update().get(pk=cycle.pk)
        row.policy_version = version
        row.metrics = {**row.metrics, "policy": {"label": version.label, **summary}}
        row.celery_task_id = ""
        row.save(update_fields=["policy_version", "metrics", "celery_task_id"])

    version = policy_register(
        run=run, reward_model=reward_model, parent=parent, on_register=link,
        hyperparameters={"policy": asdict(config), "env": asdict(env_config), "timesteps_this_run": p.ppo_timesteps,
                         "reward_pessimism": p.rm_pessimism,
                         "teacher_seam_model": seam.label if seam is not None and parent is None else None,
                         "reward_scale": reward_model.metrics.get("reward_scale")},
    )
    imitation = summary["imitation"]
    started = "" if imitation is None else (f"; started by imitating the {imitation['teacher'].replace('_', ' ')} "
                                            f"({imitation['n_learned_episodes']} of {imitation['n_episodes']} "
                                            f"passages the learned planner's)")
    relative = " relative to the heuristic's edits" if config.learned_reward_baseline == "heuristic" else ""
    report(1.0, f"policy {version.label}: {version.num_timesteps} steps in total, mean learned reward{relative} "
                f"{_fmt(summary['mean_learned_reward'])}, dense {_fmt(summary['mean_dense_reward'])}{started}",
           force=True)


def _step_propose(cycle: Cycle, p: CycleParameters, report: Reporter) -> None:

    policy, reward_model = cycle.policy_version, cycle.reward_model_version
    previous = policy.parent
    tracks = _tracks()
    arrays = track_arrays(tracks)
    config = ProposalConfig(
        n_excerpts=p.n_excerpts, policy_samples=p.policy_samples, previous_policy_samples=1 if previous else 0,
        random_samples=1, n_pairs=p.n_pairs, random_share=p.random_share, seed=_seed(cycle, p),
    )
    report(0.0, f"proposing {p.n_pairs} pairs from {p.n_excerpts} excerpts")
    reward = EnsembleReward(reward_model_load(reward_model))
    proposal = propose(arrays, reward=reward, policy=policy_load(policy),
                       previous_policy=policy_load(previous) if previous else None, config=config,
                       env_config=EnvConfig(learned_weight=p.learned_weight))
    seam = cycle.seam_model_version
    if seam is not None and p.departure_pairs > 0:
        rng = np.random.default_rng(_seed(cycle, p) + 1)
        excerpts = choose_excerpts(arrays, p.departure_pairs, rng, env_config=EnvConfig(learned_weight=p.learned_weight))
        report(0.2, f"choosing {p.departure_pairs} seam questions by {p.pair_selection}")
        extra = seam_question_pairs(arrays, excerpts, model=seam_model_load(seam), reward=reward,
                                    selection=p.pair_selection, rng=rng)
        proposal = replace(proposal, pairs=proposal.pairs + tuple(extra),
                           candidates=proposal.candidates + tuple(c for pair in extra for c in (pair.a, pair.b)))
    report(0.3, f"{len(proposal.candidates)} distinct candidates ({proposal.n_duplicates_dropped} duplicates dropped), "
                f"{len(proposal.pairs)} pairs chosen; rendering")
    rendered = proposal_edits_create(proposal=proposal, tracks=tracks, policy=policy, previous=previous,
                                     seam_model=seam)
    with transaction.atomic():
        row = Cycle.objects.select_for_update().get(pk=cycle.pk)
        if not row.is_running:
            return  # ended meanwhile (failed by an operator): create nothing
        comparisons = proposal_comparisons_create(rendered=rendered, proposed_by=cycle_comparisons_label(cycle),
                                                  reward_model=reward_model,
                                                  required_judgements=p.required_judgements)
        reward_model_activate(version=reward_model)
        policy_activate(version=policy)
        if row.seam_model_version_id is not None:
            seam_model_activate(version=row.seam_model_version)
        by = {"disagreement": 0, "random": 0, "anchor": 0, "seam_question": 0}
        for r in rendered:
            by[r.pair.chosen_by] += 1
        row.metrics = {**row.metrics, "proposal": {
            "n_candidates": len(proposal.candidates), "n_duplicates_dropped": proposal.n_duplicates_dropped,
            "n_comparisons": len(comparisons), "n_by_disagreement": by["disagreement"], "n_random": by["random"],
            "n_anchor": by["anchor"], "n_seam_questions": by["seam_question"], "pair_selection": p.pair_selection,
        }}
        row.status = Status.DONE
        row.is_running = False
        row.progress = 1.0
        row.finished_at = timezone.now()
        row.celery_task_id = ""
        seam_label = f", {row.seam_model_version.label}" if row.seam_model_version_id else ""
        row.log += (f"{stamp()} {len(comparisons)} comparisons created; "
                    f"{reward_model.label}{seam_label} and policy {policy.label} are active; done\n")
        row.save(update_fields=["metrics", "status", "is_running", "progress", "finished_at", "celery_task_id", "log"])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_STEP_FUNCTIONS: dict[str, Callable[[Cycle, CycleParameters, Reporter], None]] = {
    "train_reward_model": _step_train_reward_model,
    "train_policy": _step_train_policy,
    "propose": _step_propose,
}



"""The cycle through a real Celery worker over Redis on PostgreSQL, including a worker killed mid-training."""
from __future__ import annotations

import os
import signal
import time

import pytest

from rlhf.cycle.state import cycle_create, cycle_recover, cycle_start
from rlhf.cycle.steps import cycle_run
from rlhf.models import Cycle, PolicyVersion, RewardModelVersion
from tests.rlhf.cycle_data import TINY, artifact_files, partial_files, small_studio

pytestmark = [pytest.mark.slow, pytest.mark.celery, pytest.mark.postgres]


@pytest.fixture
def worker(celery_worker_process):
    return celery_worker_process


def _wait(cycle_id: int, predicate, *, timeout: float, what: str) -> Cycle:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cycle = Cycle.objects.select_related("reward_model_version", "policy_version").get(pk=cycle_id)
        if predicate(cycle):
            return cycle
        time.sleep(0.2)
    raise AssertionError(f"cycle {cycle_id}: {what} not reached in {timeout} s; status {cycle.status}, log:\n{cycle.log}")


def test_a_cycle_runs_through_a_worker(storage_root, worker):
    small_studio(storage_root / "demo")
    worker()
    cycle = cycle_start(parameters=TINY)
    cycle = _wait(cycle.pk, lambda c: not c.is_running, timeout=240, what="the end")
    assert cycle.status == Cycle.Status.DONE, cycle.error
    assert cycle.reward_model_version.is_active and cycle.policy_version.is_active
    assert cycle.metrics["proposal"]["n_comparisons"] > 0


def test_a_worker_killed_during_policy_training_leaves_the_previous_versions_and_the_cycle_resumes(
        storage_root, worker, settings):
    small_studio(storage_root / "demo")
    first = cycle_run(cycle=cycle_create(parameters=TINY))  # in this process: the previous versions
    assert first.status == Cycle.Status.DONE, first.error
    previous = (first.reward_model_version, first.policy_version)
    settings.CYCLE_START_MIN_NEW_JUDGEMENTS = 0  # the same judgements again: this test is about the worker

    proc = worker()
    # Long enough that the kill lands inside policy training.
    cycle = cycle_start(parameters=TINY.__class__(**{**TINY.to_json(), "ppo_timesteps": 20480}))
    _wait(cycle.pk, lambda c: c.status == Cycle.Status.TRAINING_POLICY and "policy update 1:" in c.log,
          timeout=240, what="policy training")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    assert (RewardModelVersion.objects.get(is_active=True), PolicyVersion.objects.get(is_active=True)) == previous
    assert PolicyVersion.objects.count() == 1
    assert artifact_files(storage_root, "policies") == {first.policy_version.artifact.name}

    # The lost step is re-dispatched (what recovery does after JOB_STALE_AFTER_SECONDS) to a new worker.
    assert [c.pk for c in cycle_recover(stale_after_seconds=0)] == [cycle.pk]
    worker()
    cycle = _wait(cycle.pk, lambda c: not c.is_running, timeout=400, what="the end")
    assert cycle.status == Cycle.Status.DONE, cycle.error
    assert "re-dispatching train_policy" in cycle.log
    assert cycle.policy_version.is_active and cycle.policy_version.parent == first.policy_version
    assert cycle.reward_model_version.is_active and cycle.reward_model_version.parent == first.reward_model_version
    # No orphan: every version belongs to a cycle, every artifact to a version.
    assert PolicyVersion.objects.count() == 2 and RewardModelVersion.objects.count() == 2
    assert artifact_files(storage_root, "policies") == set(PolicyVersion.objects.values_list("artifact", flat=True))
    assert not partial_files(storage_root)


# The new worker presumes a step dead after 10 s of silence (the default is 5 min) and looks every 2 s.
FAST_RECOVERY = {"JOB_HEARTBEAT_SECONDS": "2", "JOB_STALE_AFTER_SECONDS": "10", "JOB_RECOVER_EVERY_SECONDS": "2"}


def test_a_cycle_of_a_killed_worker_ends_within_two_minutes_of_a_new_worker_with_no_partial_files(
        storage_root, worker, settings):
    """Nobody calls recovery here: the new worker's own (at start and every 2 s) must find the silent step."""
    settings.ANNOTATION_MIN_LISTEN_SECONDS = 0.0  # the simulated judgements are the setting, not the subject
    small_studio(storage_root / "demo")
    proc = worker(env=FAST_RECOVERY)
    # Enough PPO updates that the kill lands inside policy training, few enough to rerun in seconds.
    cycle = cycle_start(parameters=TINY.__class__(**{**TINY.to_json(), "ppo_timesteps": 2048}))
    _wait(cycle.pk, lambda c: c.status == Cycle.Status.TRAINING_POLICY and "policy update 1:" in c.log,
          timeout=180, what="policy training")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert Cycle.objects.get(pk=cycle.pk).is_running

    worker(env=FAST_RECOVERY)
    started = time.monotonic()
    cycle = _wait(cycle.pk, lambda c: not c.is_running, timeout=120, what="the end after the new worker started")
    assert time.monotonic() - started < 120
    assert cycle.status == Cycle.Status.DONE, cycle.error
    assert "the worker running it stopped (heartbeat " in cycle.log and "re-dispatching train_policy" in cycle.log
    # No partial file: every artifact belongs to a registered version, no staged file or scratch folder is left.
    assert artifact_files(storage_root, "policies") == set(PolicyVersion.objects.values_list("artifact", flat=True))
    assert artifact_files(storage_root, "reward_models") == set(
        RewardModelVersion.objects.values_list("artifact", flat=True))
    assert not partial_files(storage_root)
    assert artifact_files(storage_root, "tmp/jobs") == set()

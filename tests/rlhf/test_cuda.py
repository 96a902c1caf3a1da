"""The CUDA path of training: runs where torch sees a GPU (a GPU training worker), skipped elsewhere.

What a GPU worker must get right: the reward model and the policy train on the GPU, their
checkpoints are read back by CPU-only processes (the site, a CPU worker) with the same numbers,
and fine-tuning a version continues on the GPU from a file written anywhere.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from editing.env import EnvConfig, sample_excerpt
from rlhf.learning import reward_model as rm
from rlhf.learning import configs, reward_training
from rlhf.cycle.state import cycle_create
from rlhf.cycle.steps import cycle_run
from rlhf.models import Cycle, PolicyVersion, RewardModelVersion
from rlhf.learning.learned_reward import EnsembleReward
from rlhf.learning.policy import load_policy, sample_actions, save_policy, train_policy
from tests.editing.test_env import synthetic_tracks
from tests.rlhf.cycle_data import TINY as TINY_CYCLE
from tests.rlhf.cycle_data import small_studio
from tests.rlhf.synthetic import synthetic_dataset
from tests.rlhf.test_policy import SMALL, CountingReward, _parameters
from tests.rlhf.test_reward_model import TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_reward_model_learns_on_cuda_and_its_checkpoint_scores_the_same_on_cpu(tmp_path):
    ds = synthetic_dataset(0, n_judgements=900, per_comparison=1, noise=0.1)
    result = reward_training.train_ensemble(ds, configs.TrainingConfig(n_members=2, max_epochs=6, patience=2), model_config=TINY)
    ens = result.ensemble
    assert ens.device.type == "cuda"  # no device named: CUDA when present
    assert all(p.is_cuda for m in ens.members for p in m.parameters())
    assert result.evaluation.accuracy >= 0.8

    ens.set_normalization(list(ds.edits[:50]))
    rm.save_checkpoint(ens, tmp_path / "rm.pt")
    on_cpu = rm.load_checkpoint(tmp_path / "rm.pt", device=torch.device("cpu"))
    assert on_cpu.device.type == "cpu" and not any(p.is_cuda for m in on_cpu.members for p in m.parameters())
    edits = list(ds.edits[:64])
    gpu_scores, cpu_scores = ens.member_rewards(edits), on_cpu.member_rewards(edits)
    np.testing.assert_allclose(cpu_scores, gpu_scores, atol=5e-2)  # bf16 on both sides, different kernels
    assert np.corrcoef(cpu_scores.ravel(), gpu_scores.ravel())[0, 1] > 0.999


def test_policy_trains_and_fine_tunes_on_cuda_and_samples_valid_edits_on_cpu(tmp_path):
    tracks = synthetic_tracks(seed=0, n_tracks=3, n_beats=80)
    config = replace(SMALL, device=None)  # CUDA when present
    members = [rm.RewardNet(TINY, np.zeros(rm.N_MODEL_FEATURES), np.ones(rm.N_MODEL_FEATURES)) for _ in range(2)]
    learned = EnsembleReward(rm.RewardEnsemble(members=members, config=TINY).to(torch.device("cuda")))

    first = train_policy(tracks, total_timesteps=256, learned_reward=learned, config=config)
    assert first.model.device.type == "cuda" and first.n_learned_calls > 0
    assert all(u.mean_learned_reward is not None for u in first.updates)
    path = save_policy(first.model, tmp_path / "v1.zip")

    resumed = train_policy(tracks, total_timesteps=128, learned_reward=CountingReward(), config=config, parent=path)
    assert resumed.model.device.type == "cuda"
    assert resumed.start_timesteps == 256 and resumed.num_timesteps == 384

    on_cpu = load_policy(path, device="cpu")
    assert on_cpu.device.type == "cpu"
    for name, tensor in _parameters(on_cpu).items():
        assert torch.equal(tensor, _parameters(first.model)[name]), name
    rng = np.random.default_rng(3)
    excerpts = [sample_excerpt(rng, tracks, EnvConfig()) for _ in range(4)]
    assert sample_actions(on_cpu, tracks, excerpts, deterministic=True, rng=np.random.default_rng(0)) == \
        sample_actions(first.model, tracks, excerpts, deterministic=True, rng=np.random.default_rng(0))


@pytest.mark.django_db
@pytest.mark.parametrize("device", [None, "cpu"])
def test_a_cycle_on_a_gpu_machine_trains_where_training_device_says(storage_root, settings, device):
    small_studio(storage_root / "demo", n_tracks=2)
    settings.TRAINING_DEVICE = device  # None: CUDA when present; "cpu" keeps a GPU machine's worker on its CPU
    cycle = cycle_run(cycle=cycle_create(parameters=TINY_CYCLE))
    assert cycle.status == Cycle.Status.DONE, cycle.error
    expected = device or "cuda"
    assert cycle.metrics["reward_model"]["device"].split(":")[0] == expected
    assert cycle.metrics["policy"]["device"].split(":")[0] == expected
    assert RewardModelVersion.objects.get(is_active=True) == cycle.reward_model_version
    assert PolicyVersion.objects.get(is_active=True) == cycle.policy_version

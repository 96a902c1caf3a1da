"""The PPO policy: batched learned reward, metrics, resuming a saved version, atomic checkpoints, sampling."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from editing.edit import apply_actions
from editing.env import EditingEnv, EnvConfig, SpacesSpecMismatch, sample_excerpt
from rlhf import policy as policy_module
from rlhf.policy import (
    EnsembleReward,
    PolicyCheckpointError,
    PolicyConfig,
    PolicyError,
    build_policy,
    load_policy,
    read_spaces_spec,
    sample_actions,
    save_policy,
    train_policy,
)
from rlhf.reward_model import RewardEnsemble, RewardModelConfig, RewardNet
from tests.editing.test_env import synthetic_tracks

SMALL = PolicyConfig(n_envs=2, n_steps=64, batch_size=64, n_epochs=2, net_arch=(32, 32), seed=0)


@pytest.fixture
def tracks():
    return synthetic_tracks(seed=0, n_tracks=3, n_beats=80)


class CountingReward:
    """A learned reward that records every call; rewards an edit by its output length."""

    def __init__(self, value: float | None = None):
        self.calls: list[int] = []
        self.value = value

    def __call__(self, episodes):
        self.calls.append(len(episodes))
        if self.value is not None:
            return np.full(len(episodes), self.value)
        return np.array([ep.edit.n_output_beats / ep.excerpt.target_beats for ep in episodes])


def _parameters(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items()}


def test_learned_reward_is_called_once_per_rollout_with_every_finished_episode(tracks):
    reward = CountingReward()
    run = train_policy(tracks, total_timesteps=4 * 128, learned_reward=reward, config=SMALL)
    assert len(reward.calls) == run.n_learned_calls == 4  # 4 rollouts of 64 steps x 2 envs
    assert sum(reward.calls) == sum(u.n_episodes for u in run.updates)
    assert all(n > 1 for n in reward.calls)  # batches, not one episode at a time


def test_background_chunks_are_batched_and_give_the_same_rewards_and_returns_as_one_call(tracks):
    def run_with(chunk):
        reward = CountingReward()
        config = PolicyConfig(n_envs=2, n_steps=64, batch_size=64, n_epochs=1, net_arch=(32, 32), seed=0, reward_chunk=chunk)
        run = train_policy(tracks, total_timesteps=128, learned_reward=reward, config=config)
        return reward, run

    whole, run_whole = run_with(0)
    chunked, run_chunked = run_with(3)
    assert len(whole.calls) == 1 and len(chunked.calls) > 1 and run_chunked.n_learned_calls == len(chunked.calls)
    assert sum(chunked.calls) == sum(whole.calls) == run_chunked.updates[-1].n_episodes
    # Each call scores a batch of at least reward_chunk edits, but for the rollout's last (the rest).
    assert all(n >= 3 for n in chunked.calls[:-1]) and 1 <= chunked.calls[-1]
    assert len(chunked.calls) <= sum(chunked.calls) // 3 + 1
    a, b = run_whole.model.rollout_buffer, run_chunked.model.rollout_buffer
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.advantages, b.advantages)
    assert run_whole.updates == run_chunked.updates


def test_a_failing_learned_reward_chunk_fails_training_in_the_training_thread(tracks):
    def broken(episodes):
        raise RuntimeError("reward model exploded")

    config = PolicyConfig(n_envs=2, n_steps=64, batch_size=64, n_epochs=1, net_arch=(32, 32), seed=0, reward_chunk=2)
    with pytest.raises(RuntimeError, match="reward model exploded"):
        train_policy(tracks, total_timesteps=128, learned_reward=broken, config=config)


def test_learned_reward_reaches_the_rollout_buffer_mixed_with_dense(tracks):
    run = train_policy(
        tracks, total_timesteps=128, learned_reward=CountingReward(value=3.0),
        env_config=EnvConfig(learned_weight=0.5), config=SMALL,
    )
    buffer = run.model.rollout_buffer
    terminal = buffer.rewards != 0
    assert terminal.sum() == run.updates[-1].n_episodes
    # 0.5 * 3 + 0.5 * dense, dense in [0, 1]
    assert np.all((buffer.rewards[terminal] >= 1.5) & (buffer.rewards[terminal] <= 2.0))
    # Returns were recomputed after the learned part was added: a terminal step's return is its reward.
    # (After training the buffer holds returns flattened env by env.)
    returns = buffer.returns.reshape(SMALL.n_envs, SMALL.n_steps).T
    np.testing.assert_allclose(returns[terminal], buffer.rewards[terminal], rtol=1e-5)
    assert run.updates[-1].mean_learned_reward == pytest.approx(3.0)


def test_each_update_logs_rewards_entropy_kl_and_reports_progress(tracks):
    progress = []
    run = train_policy(
        tracks, total_timesteps=3 * 128, learned_reward=CountingReward(), config=SMALL,
        progress=lambda fraction, message: progress.append((fraction, message)),
    )
    assert [u.update for u in run.updates] == [1, 2, 3]
    for u in run.updates:
        assert u.mean_learned_reward is not None and 0 <= u.mean_dense_reward <= 1
        assert 0 < u.entropy <= np.log(9) + 1e-6 and u.approx_kl is not None and u.approx_kl >= 0
    assert [round(f, 3) for f, _ in progress] == [0.333, 0.667, 1.0]
    assert "entropy" in progress[-1][1]
    summary = run.summary()
    assert json.loads(json.dumps(summary)) == summary and summary["num_timesteps"] == 384


def test_a_learned_weight_without_a_learned_reward_is_refused(tracks):
    with pytest.raises(PolicyError, match="no learned reward"):
        train_policy(tracks, total_timesteps=128, learned_reward=None, config=SMALL)


def test_fine_tuning_resumes_weights_optimiser_and_timesteps_from_a_saved_version(tracks, tmp_path):
    first = train_policy(tracks, total_timesteps=256, learned_reward=CountingReward(), config=SMALL)
    path = save_policy(first.model, tmp_path / "v1.zip")
    saved = _parameters(first.model)

    loaded = load_policy(path)
    assert loaded.num_timesteps == 256
    for name, tensor in _parameters(loaded).items():
        assert torch.equal(tensor, saved[name]), name
    adam_state = loaded.policy.optimizer.state_dict()["state"]
    assert adam_state and all(float(s["step"]) > 0 for s in adam_state.values())

    resumed = train_policy(tracks, total_timesteps=128, learned_reward=CountingReward(), config=SMALL, parent=path)
    assert resumed.start_timesteps == 256 and resumed.num_timesteps == 384
    assert resumed.updates[0].num_timesteps == 384
    changed = _parameters(resumed.model)
    assert any(not torch.equal(changed[k], saved[k]) for k in saved)
    # The optimiser kept counting from the parent's steps instead of starting over.
    steps_after = [float(s["step"]) for s in resumed.model.policy.optimizer.state_dict()["state"].values()]
    steps_before = [float(s["step"]) for s in adam_state.values()]
    assert all(a > b for a, b in zip(steps_after, steps_before))


def test_a_first_policy_starts_from_zero_timesteps(tracks):
    run = train_policy(tracks, total_timesteps=128, learned_reward=CountingReward(), config=SMALL)
    assert run.start_timesteps == 0 and run.num_timesteps == 128


def test_checkpoint_records_the_spaces_and_a_different_spec_is_refused(tracks, tmp_path):
    model = build_policy(tracks, config=SMALL)
    path = save_policy(model, tmp_path / "p.zip")
    assert read_spaces_spec(path)["observation"]["shape"] == [model.observation_space.shape[0]]

    spec = read_spaces_spec(path)
    spec["observation"]["layout"][0] = ["current_beat", 889]
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(other, "w") as dst:
        for name in src.namelist():
            data = json.dumps(spec) if name == policy_module.SPEC_MEMBER else src.read(name)
            dst.writestr(name, data)
    with pytest.raises(SpacesSpecMismatch, match="observation.layout"):
        load_policy(other)


def test_a_checkpoint_without_a_spec_is_refused(tracks, tmp_path):
    model = build_policy(tracks, config=SMALL)
    model.save(tmp_path / "plain.zip")
    with pytest.raises(PolicyCheckpointError, match="no spaces_spec.json"):
        load_policy(tmp_path / "plain.zip")


def test_a_failed_verification_leaves_nothing_behind(tracks, tmp_path, monkeypatch):
    model = build_policy(tracks, config=SMALL)

    def broken(model, tmp):
        raise PolicyCheckpointError(f"{tmp}: parameter x differs after reading back")

    monkeypatch.setattr(policy_module, "_verify", broken)
    with pytest.raises(PolicyCheckpointError, match="differs"):
        save_policy(model, tmp_path / "v2.zip")
    assert list(tmp_path.iterdir()) == []


def test_sampled_action_lists_are_valid_edits_and_reproducible(tracks):
    model = build_policy(tracks, config=SMALL)
    rng = np.random.default_rng(5)
    excerpts = [sample_excerpt(rng, tracks, EnvConfig()) for _ in range(6)]
    stochastic = sample_actions(model, tracks, excerpts, deterministic=False, rng=np.random.default_rng(1))
    assert stochastic == sample_actions(model, tracks, excerpts, deterministic=False, rng=np.random.default_rng(1))
    assert stochastic != sample_actions(model, tracks, excerpts, deterministic=False, rng=np.random.default_rng(2))
    deterministic = sample_actions(model, tracks, excerpts, deterministic=True, rng=np.random.default_rng(1))
    assert deterministic == sample_actions(model, tracks, excerpts, deterministic=True, rng=np.random.default_rng(9))
    for excerpt, actions in zip(excerpts, stochastic + deterministic):
        bars = tracks[excerpt.track_index].bar_positions[excerpt.start : excerpt.start + excerpt.n_beats]
        apply_actions(actions, excerpt_start=excerpt.start, bar_positions=bars)


def test_ensemble_reward_scores_finished_episodes_with_the_real_reward_model(tracks):
    config = RewardModelConfig(d_model=32, n_heads=2, n_layers=1, ff_dim=64)
    torch.manual_seed(0)
    members = [RewardNet(config, np.zeros(125), np.ones(125)) for _ in range(3)]
    ensemble = RewardEnsemble(members=members, config=config, reward_mean=0.5, reward_std=2.0)
    reward = EnsembleReward(ensemble)
    env = EditingEnv(tracks)
    episodes = []
    for seed in range(4):
        env.reset(seed=seed)
        terminated = False
        while not terminated:
            _, _, terminated, _, info = env.step(int(np.flatnonzero(env.action_masks())[0]))
        episodes.append(info["finished_episode"])
    learned = reward(episodes)
    members_out = reward.member_rewards([(ep.track, ep.edit) for ep in episodes])
    assert members_out.shape == (3, 4) and learned.shape == (4,)
    np.testing.assert_allclose(learned, (members_out.mean(0) - 0.5) / 2.0, rtol=1e-5)


def test_ensemble_reward_scores_on_its_own_threads_and_gives_ppo_its_one_thread_back(tracks, monkeypatch):
    config = RewardModelConfig(d_model=32, n_heads=2, n_layers=1, ff_dim=64)
    ensemble = RewardEnsemble(members=[RewardNet(config, np.zeros(125), np.ones(125))], config=config)
    threads_while_scoring = []
    score = ensemble.member_rewards
    monkeypatch.setattr(ensemble, "member_rewards",
                        lambda inputs, **kw: threads_while_scoring.append(torch.get_num_threads()) or score(inputs, **kw))
    env = EditingEnv(tracks)
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(int(np.flatnonzero(env.action_masks())[0]))
    reward = EnsembleReward(ensemble, n_threads=2)
    with policy_module._torch_threads(1):  # as during PPO's learn
        reward([info["finished_episode"]])
        assert torch.get_num_threads() == 1
    assert threads_while_scoring == [2]


@pytest.mark.slow
def test_a_short_ppo_run_learns_a_synthetic_learned_reward(tracks):
    """Rewarding closeness to the target length through the batched learned path: PPO gets measurably closer."""
    # No minimum length: the policy itself must learn the length from the learned reward.
    env_config = EnvConfig(learned_weight=1.0, min_output_fraction=0.0)
    rng = np.random.default_rng(123)
    excerpts = [sample_excerpt(rng, tracks, env_config) for _ in range(64)]

    def length_reward(episodes):
        return np.array([-abs(ep.edit.n_output_beats - ep.excerpt.target_beats) / ep.excerpt.target_beats for ep in episodes])

    def mean_length_error(model):
        errors = []
        for ex, actions in zip(excerpts, sample_actions(model, tracks, excerpts, deterministic=False, rng=np.random.default_rng(0),
                                                       env_config=env_config)):
            bars = tracks[ex.track_index].bar_positions[ex.start : ex.start + ex.n_beats]
            edit = apply_actions(actions, excerpt_start=ex.start, bar_positions=bars)
            errors.append(abs(edit.n_output_beats - ex.target_beats) / ex.target_beats)
        return float(np.mean(errors))

    config = PolicyConfig(n_envs=8, n_steps=64, batch_size=128, learning_rate=1e-3, seed=1)
    untrained_error = mean_length_error(build_policy(tracks, env_config=env_config, config=config))
    run = train_policy(tracks, total_timesteps=4096, learned_reward=length_reward, env_config=env_config, config=config)
    trained_error = mean_length_error(run.model)
    assert trained_error < 0.8 * untrained_error, (untrained_error, trained_error)
    assert run.updates[-1].mean_learned_reward > run.updates[0].mean_learned_reward

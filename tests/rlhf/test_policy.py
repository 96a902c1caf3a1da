"""The PPO policy: batched learned reward, metrics, resuming a saved version, atomic checkpoints, sampling."""
from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from editing.edit import N_ACTIONS, N_MODEL_FEATURES, apply_actions
from editing.env import EditingEnv, EnvConfig, sample_excerpt
from editing.spaces import SpacesSpecMismatch
from rlhf.learning import learned_reward, policy as policy_module
from rlhf.learning.configs import PolicyConfig, PolicyError
from rlhf.learning.learned_reward import EnsembleReward
from rlhf.learning.policy import PolicyCheckpointError, build_policy, load_policy, read_spaces_spec, sample_actions, save_policy, train_policy
from rlhf.learning.reward_model import RewardEnsemble, RewardModelConfig, RewardNet
from tests.editing.test_env import synthetic_tracks

# PPO alone: the tests of imitation and of the KL guard turn them on themselves.
SMALL = PolicyConfig(n_envs=2, n_steps=64, batch_size=64, n_epochs=2, net_arch=(32, 32), seed=0,
                     imitation_episodes=0, heuristic_kl=0.0)


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
        config = replace(SMALL, n_steps=128, n_epochs=1, reward_chunk=chunk)
        run = train_policy(tracks, total_timesteps=256, learned_reward=reward, config=config)
        return reward, run

    whole, run_whole = run_with(0)
    chunked, run_chunked = run_with(2)
    assert len(whole.calls) == 1 and len(chunked.calls) > 1 and run_chunked.n_learned_calls == len(chunked.calls)
    assert sum(chunked.calls) == sum(whole.calls) == run_chunked.updates[-1].n_episodes
    # Each call scores a batch of at least reward_chunk edits, but for the rollout's last (the rest).
    assert all(n >= 2 for n in chunked.calls[:-1]) and 1 <= chunked.calls[-1]
    assert len(chunked.calls) <= sum(chunked.calls) // 2 + 1
    a, b = run_whole.model.rollout_buffer, run_chunked.model.rollout_buffer
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.advantages, b.advantages)
    assert run_whole.updates == run_chunked.updates


def test_a_failing_learned_reward_chunk_fails_training_in_the_training_thread(tracks):
    def broken(episodes):
        raise RuntimeError("reward model exploded")

    config = replace(SMALL, n_epochs=1, reward_chunk=2)
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
        apply_actions(actions, excerpt_start=excerpt.start, bar_positions=bars, target_beats=excerpt.target_beats)


def test_ensemble_reward_scores_finished_episodes_with_the_real_reward_model(tracks):
    config = RewardModelConfig(d_model=32, n_heads=2, n_layers=1, ff_dim=64)
    torch.manual_seed(0)
    members = [RewardNet(config, np.zeros(N_MODEL_FEATURES), np.ones(N_MODEL_FEATURES)) for _ in range(3)]
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
    ensemble = RewardEnsemble(members=[RewardNet(config, np.zeros(N_MODEL_FEATURES), np.ones(N_MODEL_FEATURES))], config=config)
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
    with learned_reward.torch_threads(1):  # as during PPO's learn
        reward([info["finished_episode"]])
        assert torch.get_num_threads() == 1
    assert threads_while_scoring == [2]


@pytest.mark.slow
def test_a_short_ppo_run_learns_a_synthetic_learned_reward(tracks):
    """Rewarding fewer seams through the batched learned path: PPO's edits get measurably cleaner.

    Every retarget hits its length by construction, so the synthetic reward is about where (and
    how often) the edit cuts: an untrained policy splices almost every step.
    """
    env_config = EnvConfig(learned_weight=1.0)
    rng = np.random.default_rng(123)
    excerpts = [sample_excerpt(rng, tracks, env_config) for _ in range(64)]

    def seam_reward(episodes):
        return np.array([-ep.edit.seam_beats().size / 4.0 for ep in episodes])

    def mean_seams(model):
        seams = []
        for ex, actions in zip(excerpts, sample_actions(model, tracks, excerpts, deterministic=False, rng=np.random.default_rng(0),
                                                       env_config=env_config)):
            bars = tracks[ex.track_index].bar_positions[ex.start : ex.start + ex.n_beats]
            edit = apply_actions(actions, excerpt_start=ex.start, bar_positions=bars, target_beats=ex.target_beats)
            seams.append(edit.seam_beats().size)
        return float(np.mean(seams))

    config = PolicyConfig(n_envs=8, n_steps=64, batch_size=128, learning_rate=1e-3, seed=1, imitation_episodes=0,
                          heuristic_kl=0.0)
    untrained = mean_seams(build_policy(tracks, env_config=env_config, config=config))
    run = train_policy(tracks, total_timesteps=12288, learned_reward=seam_reward, env_config=env_config, config=config)
    trained = mean_seams(run.model)
    assert trained < 0.95 * untrained, (untrained, trained)  # measured: 19.1 -> 17.2 seams per edit
    # Per update the mean reward is over about 22 episodes, so one update is noisy (with ten actions the first
    # one happened to be the fourth best of 24); the last quarter of training beats the first.
    quarter = len(run.updates) // 4
    first, last = ([u.mean_learned_reward for u in part] for part in (run.updates[:quarter], run.updates[-quarter:]))
    assert np.mean(last) > np.mean(first), (first, last)


# --------------------------------------------------------------------------- starting from the heuristic, and staying near it

def _edit_costs(tracks, excerpts, actions) -> np.ndarray:
    """The heuristic's own cost (``editing.baselines.edit_cost``) of each excerpt's edit."""
    from editing.baselines import edit_cost

    return np.array([
        edit_cost(apply_actions(a, excerpt_start=ex.start, target_beats=ex.target_beats,
                                bar_positions=tracks[ex.track_index].bar_positions[ex.start : ex.start + ex.n_beats]),
                  tracks[ex.track_index].dense)
        for ex, a in zip(excerpts, actions)])


def test_a_first_policy_starts_by_imitating_the_heuristic(tracks):
    """Behaviour cloning on the heuristic's moves: afterwards the policy's own edits cost about what the heuristic's do."""
    from editing.baselines import retarget_heuristic

    config = replace(SMALL, net_arch=(64, 64), imitation_episodes=256, imitation_epochs=12)
    rng = np.random.default_rng(7)
    excerpts = [sample_excerpt(rng, tracks, EnvConfig()) for _ in range(24)]
    optimum = _edit_costs(tracks, excerpts, [
        retarget_heuristic(context=tracks[ex.track_index].dense, excerpt_start=ex.start, target_beats=ex.target_beats,
                           bar_positions=tracks[ex.track_index].bar_positions[ex.start : ex.start + ex.n_beats])
        for ex in excerpts])

    def cost(model) -> float:
        actions = sample_actions(model, tracks, excerpts, deterministic=True, rng=np.random.default_rng(0))
        return float(_edit_costs(tracks, excerpts, actions).sum() / optimum.sum())

    imitated = policy_module.build_policy(tracks, config=config)
    imitation = policy_module.imitate_heuristic(imitated, tracks, EnvConfig(), config)
    assert imitation.n_steps > 1000 and imitation.agreement >= 0.95
    untrained = cost(policy_module.build_policy(tracks, config=config))
    assert cost(imitated) <= 1.25 < 2.0 <= untrained, (cost(imitated), untrained)

    # train_policy imitates first for a first policy and records it.
    run = train_policy(tracks, total_timesteps=128, learned_reward=None, env_config=EnvConfig(learned_weight=0.0),
                       config=config)
    assert run.imitation is not None and run.summary()["imitation"]["agreement"] >= 0.95


def test_the_kl_guard_charges_each_step_its_log_ratio_to_the_heuristics_soft_choice(tracks):
    from editing.env import heuristic_policy

    config = replace(SMALL, heuristic_kl=0.5)
    run = train_policy(tracks, total_timesteps=SMALL.n_steps * SMALL.n_envs, learned_reward=None, env_config=EnvConfig(learned_weight=0.0),
                       config=config)
    plain = train_policy(tracks, total_timesteps=SMALL.n_steps * SMALL.n_envs, learned_reward=None, env_config=EnvConfig(learned_weight=0.0),
                         config=SMALL)
    a, b = run.model.rollout_buffer, plain.model.rollout_buffer
    # One rollout of the same seed: the guarded rewards are the plain ones minus 0.5 * (log pi - log ref).
    # (After training, the buffer holds observations, actions and log-probs flattened env by env.)
    np.testing.assert_array_equal(a.observations, b.observations)
    reference = heuristic_policy(a.observations, config.heuristic_kl_temperature).reshape(-1, N_ACTIONS)
    taken = a.actions.reshape(-1).astype(int)
    log_ratio = a.log_probs.reshape(-1) - np.log(reference[np.arange(taken.size), taken])
    by_env = lambda rewards: rewards.T.reshape(-1)  # noqa: E731 - (n_steps, n_envs) in the same order
    np.testing.assert_allclose(by_env(a.rewards), by_env(b.rewards) - 0.5 * log_ratio, rtol=1e-5, atol=1e-6)
    # Returns and advantages were recomputed from the charged rewards: GAE is linear in the rewards (the
    # values are the same in both runs), so they fell by the charges' (gamma lambda)-discounted sums to each
    # episode's end.
    charge = (0.5 * log_ratio).reshape(SMALL.n_envs, SMALL.n_steps)
    starts = a.episode_starts.T  # (n_envs, n_steps)
    fall = np.zeros_like(charge)
    for t in range(SMALL.n_steps - 1, -1, -1):
        later = fall[:, t + 1] * (1.0 - starts[:, t + 1]) if t + 1 < SMALL.n_steps else 0.0
        fall[:, t] = charge[:, t] + SMALL.gamma * SMALL.gae_lambda * later
    np.testing.assert_allclose(a.returns.reshape(-1), b.returns.reshape(-1) - fall.reshape(-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.advantages.reshape(-1), b.advantages.reshape(-1) - fall.reshape(-1), rtol=1e-4,
                               atol=1e-5)
    assert run.updates[-1].kl_to_heuristic == pytest.approx(float(log_ratio.mean()), rel=1e-5)
    assert plain.updates[-1].kl_to_heuristic is None
    # An untrained policy is far from the heuristic's sharp choice.
    assert run.updates[-1].kl_to_heuristic > 0.5

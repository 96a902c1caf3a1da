"""Benchmark: editing-env speed and the cost of the learned reward inside PPO.

Prints, all measured in this one run on this machine:

- raw env steps/s (random valid actions, dense reward at each episode end);
- PPO steps/s on a trivial env with the SAME spaces (constant observation, every action
  valid, the same mean episode length, zero reward): PPO's own cost;
- PPO steps/s on the editing env, dense reward only;
- PPO steps/s on the editing env with the learned reward of a real ``rlhf.learning.reward_model``
  ensemble (default architecture and member count, untrained weights: the cost does not
  depend on them), scored as the cycle scores it (``PolicyConfig()`` defaults: one call per
  rollout at its end; ``--reward-chunk`` tries background chunks), and the overhead against
  the trivial env (target: at most 30 %);
- where the learned run's time per env step goes: PPO itself (the trivial run), the env
  and SB3's handling of it (dense-only minus trivial), the learned reward (features and
  ensemble), and the reward model's arithmetic (multiply-adds of its linear layers, what
  no implementation of the same ensemble avoids) against the rate it reached.

The configuration is the cycle's (``rlhf.cycle.steps``: ``EnvConfig(learned_weight=0.8)``,
``PolicyConfig`` with n_envs 8 x n_steps 128, a 3-member ensemble of the default
``RewardModelConfig``, ``EnsembleReward`` with its default threads).

Each PPO figure is the best of ``--rounds`` interleaved runs: on the shared development
machine single runs swing by 2x with other people's load.

Usage: ``python bench/bench_policy.py [--steps 8192] [--rounds 3] [--members 3] [--device cpu|cuda]``
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editing.audio import FEATURE_GROUPS, N_AUDIO_FEATURES  # noqa: E402
from editing.edit import N_ACTIONS  # noqa: E402
from editing.env import EditingEnv, EnvConfig, TrackArrays, action_space, observation_space  # noqa: E402
from rlhf.learning.configs import PolicyConfig
from rlhf.learning.learned_reward import EnsembleReward
from rlhf.learning.policy import train_policy
from rlhf.learning.reward_model import RewardEnsemble, RewardModelConfig, RewardNet, count_parameters, select_device


def synthetic_tracks(n_tracks: int, n_beats: int, seed: int = 0) -> list[TrackArrays]:
    """Random-feature tracks at 120 BPM, 4/4: env speed does not depend on feature values."""
    rng = np.random.default_rng(seed)
    tracks = []
    for i in range(n_tracks):
        features = rng.normal(size=(n_beats, N_AUDIO_FEATURES)).astype(np.float32)
        bars = (np.arange(n_beats) % 4).astype(np.int8)
        features[:, FEATURE_GROUPS["bar_position"]] = np.eye(4, dtype=np.float32)[bars]
        tracks.append(TrackArrays(f"bench-{i}", features, (np.arange(n_beats + 1) * 11025).astype(np.int64), bars))
    return tracks


class TrivialEnv(gym.Env):
    """The editing env's spaces with none of its work: fixed-length episodes, zero observation and reward."""

    def __init__(self, episode_steps: int) -> None:
        self.observation_space = observation_space()
        self.action_space = action_space()
        self.episode_steps = episode_steps
        self._obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs, {}

    def step(self, action):
        self._t += 1
        return self._obs, 0.0, self._t >= self.episode_steps, False, {}

    def action_masks(self) -> np.ndarray:
        return np.ones(N_ACTIONS, dtype=bool)


def raw_env_speed(tracks: list[TrackArrays], n_steps: int) -> tuple[float, float]:
    """(steps/s, mean episode length in steps) under random valid actions."""
    env = EditingEnv(tracks, EnvConfig(learned_weight=0.0))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    episodes, began = 0, time.perf_counter()
    for _ in range(n_steps):
        _, _, terminated, _, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        if terminated:
            episodes += 1
            env.reset()
    return n_steps / (time.perf_counter() - began), n_steps / max(episodes, 1)


class TimedReward:
    """Wraps a learned reward to measure its calls, batch sizes, scored beats and time."""

    def __init__(self, reward: EnsembleReward) -> None:
        self.reward = reward
        self.seconds = 0.0
        self.batches: list[int] = []
        self.beats = 0

    def __call__(self, episodes):
        began = time.perf_counter()
        out = self.reward(episodes)
        self.seconds += time.perf_counter() - began
        self.batches.append(len(episodes))
        self.beats += sum(ep.edit.n_output_beats for ep in episodes)
        return out


def linear_flops_per_beat(config: RewardModelConfig) -> int:
    """Floating-point operations (2 per multiply-add) of one member's linear layers for one output beat.

    Input projection, per encoder layer the q/k/v and output projections and the feed-forward
    pair, and the head; attention scores, softmax and norms come on top (they grow with the
    edit's length but are small next to these at the default size).
    """
    d, ff = config.d_model, config.ff_dim
    per_layer = 4 * d * d + 2 * d * ff
    return 2 * (config.n_features * d + config.n_layers * per_layer + d * d + d)


def matmul_gflops(config: RewardModelConfig, device: torch.device, bf16: bool) -> float:
    """Best rate of one large feed-forward matmul (2048 beats x d_model -> ff_dim) in the scoring dtype, GFLOP/s."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    x = torch.randn(2048, config.d_model, dtype=dtype, device=device)
    w = torch.randn(config.ff_dim, config.d_model, dtype=dtype, device=device)
    best = math.inf
    with torch.inference_mode():
        for _ in range(20):
            began = time.perf_counter()
            torch.nn.functional.linear(x, w)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - began)
    return 2 * x.shape[0] * config.d_model * config.ff_dim / best / 1e9


def ppo_trivial_speed(episode_steps: int, config: PolicyConfig, total: int) -> float:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlhf.learning.learned_reward import torch_threads
    from rlhf.learning.policy import policy_device

    venv = DummyVecEnv([lambda: TrivialEnv(episode_steps) for _ in range(config.n_envs)])
    model = MaskablePPO(
        "MlpPolicy", venv, n_steps=config.n_steps, batch_size=config.batch_size, n_epochs=config.n_epochs,
        learning_rate=config.learning_rate, gamma=config.gamma, gae_lambda=config.gae_lambda,
        ent_coef=config.ent_coef, policy_kwargs={"net_arch": list(config.net_arch)}, seed=config.seed,
        device=policy_device(config), verbose=0,
    )
    with torch_threads(config.n_threads):
        began = time.perf_counter()
        model.learn(total_timesteps=total)
        return total / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8192, help="PPO steps per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure trivial / dense / learned this many times, interleaved, and keep each one's best "
                             "(the development machine is shared: single runs swing by 2x)")
    parser.add_argument("--raw-steps", type=int, default=20000)
    parser.add_argument("--members", type=int, default=3, help="reward-model ensemble members")
    parser.add_argument("--tracks", type=int, default=6)
    parser.add_argument("--beats", type=int, default=240, help="beats per synthetic track")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--reward-chunk", type=int, default=PolicyConfig.reward_chunk,
                        help="edits per background learned-reward call during a rollout (0: one call at rollout end)")
    args = parser.parse_args()

    tracks = synthetic_tracks(args.tracks, args.beats)
    # PPO's own speed: no imitation before it (it has its own time in a cycle's metrics).
    config = PolicyConfig(device=args.device, reward_chunk=args.reward_chunk, imitation_episodes=0)
    device = select_device(args.device)
    print(f"device {device}, torch threads for PPO {config.n_threads} (reward model: {torch.get_num_threads()}), "
          f"PPO n_envs {config.n_envs} x n_steps {config.n_steps}, best of {args.rounds} interleaved rounds")

    raw, episode_steps = raw_env_speed(tracks, args.raw_steps)
    print(f"raw env:                      {raw:9.0f} steps/s   (mean episode {episode_steps:.1f} steps)")

    rm_config = RewardModelConfig()
    torch.manual_seed(0)
    members = [RewardNet(rm_config, np.zeros(rm_config.n_features), np.ones(rm_config.n_features)) for _ in range(args.members)]
    ensemble = RewardEnsemble(members=members, config=rm_config).to(device)
    trivial = dense_speed = learned_speed = 0.0
    reward_ms_per_edit, reward_share, batches, reward_us_per_step, beats_per_edit = math.inf, 0.0, [], math.inf, 0.0
    for _ in range(args.rounds):
        trivial = max(trivial, ppo_trivial_speed(round(episode_steps), config, args.steps))
        dense_only = train_policy(tracks, total_timesteps=args.steps, learned_reward=None,
                                  env_config=EnvConfig(learned_weight=0.0), config=config)
        dense_speed = max(dense_speed, args.steps / dense_only.seconds)
        reward = TimedReward(EnsembleReward(ensemble))
        learned = train_policy(tracks, total_timesteps=args.steps, learned_reward=reward, env_config=EnvConfig(), config=config)
        if args.steps / learned.seconds > learned_speed:
            learned_speed = args.steps / learned.seconds
            reward_share, batches = reward.seconds / learned.seconds, reward.batches
        reward_ms_per_edit = min(reward_ms_per_edit, 1000 * reward.seconds / sum(reward.batches))
        reward_us_per_step = min(reward_us_per_step, 1e6 * reward.seconds / args.steps)
        beats_per_edit = reward.beats / sum(reward.batches)
    print(f"PPO, trivial env:             {trivial:9.0f} steps/s")
    print(f"PPO, editing env, dense only: {dense_speed:9.0f} steps/s   overhead {trivial / dense_speed - 1:+.0%}")
    print(f"PPO, editing env, learned:    {learned_speed:9.0f} steps/s   overhead {trivial / learned_speed - 1:+.0%} "
          f"(target <= +30%)")
    n_rollouts = math.ceil(args.steps / (config.n_envs * config.n_steps))
    print(f"  learned reward: {len(batches)} calls over {n_rollouts} rollouts (background chunks of {config.reward_chunk}), "
          f"mean batch {np.mean(batches):.1f} edits, "
          f"{reward_ms_per_edit:.2f} ms per edit (features + ensemble), scorer busy {reward_share:.0%} of training time "
          f"({'overlapped with the rollout' if config.reward_chunk else 'at rollout ends, PPO waiting'}); "
          f"ensemble {args.members} x {count_parameters(rm_config) / 1e6:.1f} M parameters, bf16 {ensemble.use_bf16}")
    ppo_us, env_us, learned_us = 1e6 / trivial, 1e6 / dense_speed - 1e6 / trivial, 1e6 / learned_speed
    print(f"  per env step: PPO {ppo_us:.0f} us + env and SB3 {env_us:.0f} us + learned reward {reward_us_per_step:.0f} us "
          f"+ rest {learned_us - ppo_us - env_us - reward_us_per_step:.0f} us = {learned_us:.0f} us; "
          f"a +30 % budget leaves {0.3 * ppo_us:.0f} us for env and reward together")
    gflop_per_edit = args.members * beats_per_edit * linear_flops_per_beat(rm_config) / 1e9
    peak = matmul_gflops(rm_config, device, ensemble.use_bf16)
    edits_per_step = sum(batches) / args.steps
    print(f"  reward model arithmetic: {beats_per_edit:.1f} output beats per edit x {args.members} members = "
          f"{gflop_per_edit:.2f} GFLOP per edit in its linear layers, scored at {gflop_per_edit / (reward_ms_per_edit / 1000):.0f} GFLOP/s; "
          f"a large feed-forward matmul runs at {peak:.0f} GFLOP/s here, so the linear layers alone need "
          f"{1e6 * gflop_per_edit * edits_per_step / peak:.0f} us per env step ({edits_per_step * 1000:.0f} edits per 1000 steps)")


if __name__ == "__main__":
    main()

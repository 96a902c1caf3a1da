"""The editing policy: MaskablePPO (sb3-contrib) on the editing env, rewarded by ``w * learned + (1 - w) * dense``.

Pure module (torch + stable-baselines3 + sb3-contrib, no Django); one concept over 600 lines, the
policy and the parts of its training. Its config is
``rlhf.learning.configs.PolicyConfig`` and the learned reward it is paid comes through
``rlhf.learning.learned_reward``. Read top to bottom: the callback that pays the
learned reward in one batch per rollout, charges the KL guard and logs every update,
imitating a planner, training (a first policy imitates, then PPO; or continuing a saved
version), checkpoints, and sampling edits (best-of-N included).

A fair chance against the learned planner
-----------------------------------------
PPO on the reward model is the mission's fine-tuner, reported as its own arm beside the learned
planner (``rlhf.learning.seam_model``: the heuristic's dynamic program plus a learned seam
residual).  Four things make the comparison fair:

* the learned reward is paid relative to the heuristic's edit of the same passage
  (``PolicyConfig.learned_reward_baseline``, ``rlhf.learning.learned_reward.RelativeToHeuristic``),
  so a unit means the same on every track;
* the KL guard is charged per episode, not per step (below), so a unit means the same on short
  and long passages;
* a first policy imitates the learned planner when the cycle has a seam model that departs from
  the heuristic (below), so PPO starts where the learned planner already is;
* best-of-N chooses among the policy's edits, the heuristic's, and the learned planner's plan and
  its cheapest single departures (:func:`best_of_n_actions`), and says where the winner came from.

Starting from a planner, and the KL guard
-----------------------------------------
A first policy is fitted to a planner's moves before PPO (:func:`imitate_planner`: cross-entropy on
its actions in ``imitation_episodes`` drawn passages, its critic on their dense returns), as an
RLHF policy starts from a supervised one.  The teacher is the learned planner
(``seam_model.learned_plan``) when ``train_policy`` is given a seam model, on the passages where
its plan departs from the heuristic's, and the heuristic's step-by-step move
(``EditingEnv.heuristic_action``) everywhere else; with no seam model, or one that departs nowhere,
the demonstrations are exactly the heuristic's.  :class:`Imitation` records which teacher it was.

During PPO every step is charged ``heuristic_kl * (log pi(a|s) - log ref(a|s)) / L``, where ref is
the heuristic's soft choice among its own moves (``editing.env.heuristic_policy``, read from the
observation) and ``L`` the number of steps of the step's episode (:func:`episode_kl_charge`): an
episode pays ``heuristic_kl`` times its mean per-step log ratio, whatever its length.  A policy
that copies the heuristic pays almost nothing, one that departs from it pays per nat, so a reward
model's blind spots cannot pull it far off.  An episode still running at the end of a rollout is
charged when it ends: the log ratios of its earlier steps are carried over and charged, divided
by its length, at its first step in the rollout where it ends.  The charge is added to the rollout
buffer's rewards at rollout end, with the learned reward, and returns and advantages are
recomputed once.

The reference stays the heuristic's, even when the policy imitates the learned planner: it is read
from the observation's heuristic block (the heuristic planner's costs to go, part of the declared
observation space that checkpoints record), so charging it costs nothing per step.  A learned
reference would need the learned planner's costs to go at every visited state: a learned plan per
PPO episode (4 to 10 times a heuristic plan, README "The learned planner") and a second planner in
every env.  The learned planner departs on a minority of passages, and there the guard charges the
imitated departure as a departure from the heuristic: the guard keeps PPO near the editor it must
beat, and the learned reward must pay for going further.

Batched learned reward
----------------------
The env pays the dense part itself and defers the learned part (``editing.env``). During a
rollout, :class:`RewardMixCallback` notes where each episode finished (rollout step, env
index) and hands the finished episodes to the learned reward in chunks of
``PolicyConfig.reward_chunk`` edits, scored on a background thread while the rollout goes on
(torch releases the GIL in its kernels, so the reward model uses the core PPO's one thread
leaves free); the remainder is scored when the rollout is complete. It then waits for every
chunk, adds ``w * learned`` to the terminal rewards in the rollout buffer and recomputes
returns and advantages, as if all had been scored at the end: identical for a reward whose
value of an edit does not depend on the other edits in its call; the reward-model ensemble
groups a call's edits by length into batches, so its float rounding can differ by ~1e-7
(fp32; more under bf16) from one whole-rollout call, far below its spread. Chunks are cut by
count in finishing order, never by timing, so a seeded run is reproducible. A reward-model
call scores a batch: at least ``reward_chunk`` edits (more when several envs finish on the
same step), except the rollout's last call, which scores the rest, so that few edits wait
for scoring after the rollout: about ``edits per rollout / reward_chunk + 1`` calls per
rollout, never one per step or per episode;
``reward_chunk = 0`` scores a whole rollout in one call at its end.

Checkpoints
-----------
``model.save`` zips (weights, optimiser state, ``num_timesteps``, hyperparameters) plus
``spaces_spec.json`` (``editing.spaces.spaces_spec()``). :func:`save_policy` writes to a temporary
file next to the target, verifies it by loading it back, then ``os.replace``-s it into place;
:func:`load_policy` refuses a checkpoint whose spaces differ from the current env's.
"""
from __future__ import annotations

import json
import os
import time
import uuid
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv

from editing.edit import N_ACTIONS, apply_actions
from editing.env import EditingEnv, EnvConfig, Excerpt, FinishedEpisode, TrackArrays, excerpt_planner, heuristic_policy, mix_reward
from editing.spaces import check_spaces_spec, spaces_spec
from rlhf.learning.configs import PolicyConfig, PolicyError
from rlhf.learning.learned_reward import EnsembleReward, LearnedReward, RelativeToHeuristic, torch_threads
from rlhf.learning.reward_model import select_device
from rlhf.learning.seam_model import (
    POOL_DEPARTURES, POOL_MAX_EXTRA_COST, Passage, SeamModel, cheapest_departures, heuristic_plan, learned_plan,
    track_feature_scale,
)

SPEC_MEMBER = "spaces_spec.json"

Progress = Callable[[float, str], None]


class PolicyCheckpointError(PolicyError):
    """A policy checkpoint is missing, unreadable, or failed verification."""


def policy_device(config: PolicyConfig) -> torch.device:
    """Where the policy runs: the reward model's one device rule."""
    return select_device(config.device)


# --------------------------------------------------------------------------- callback

@dataclass(frozen=True)
class UpdateMetrics:
    """What one PPO update did; reward means are over the episodes that finished in its rollout.

    ``None`` where nothing was measured (no finished episode; no learned reward).
    Entropy is in nats (the policy's mean entropy), approx_kl is SB3's estimate.
    """

    update: int
    num_timesteps: int
    n_episodes: int
    mean_learned_reward: float | None
    mean_dense_reward: float | None
    mean_reward: float | None
    entropy: float | None
    approx_kl: float | None
    kl_to_heuristic: float | None = None  # mean per step of log pi(a|s) - log ref(a|s) in the rollout

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


class RewardMixCallback(BaseCallback):
    """Pays the learned reward once per rollout (batched) and records :class:`UpdateMetrics`.

    Parameters
    ----------
    learned_reward : LearnedReward or None
        None only when ``learned_weight`` is 0.
    learned_weight : float
        ``w`` of the mix (the env's ``EnvConfig.learned_weight``).
    total_timesteps : int
        Steps of this ``learn`` call, for progress fractions.
    progress : callable(fraction, message) or None
    reward_chunk : int
        Finished episodes per background learned-reward call (``PolicyConfig.reward_chunk``);
        0 scores each rollout in one call at its end.
    heuristic_kl, heuristic_kl_temperature : float
        Weight of the per-episode KL penalty toward the heuristic's soft choice (each step charged
        its log ratio over its episode's length, :func:`episode_kl_charge`), and the choice's
        temperature (``PolicyConfig``).
    """

    def __init__(
        self,
        learned_reward: LearnedReward | None,
        learned_weight: float,
        total_timesteps: int,
        progress: Progress | None = None,
        reward_chunk: int = 0,
        heuristic_kl: float = 0.0,
        heuristic_kl_temperature: float = 0.25,
    ) -> None:
        super().__init__()
        if learned_reward is None and learned_weight > 0:
            raise PolicyError(f"learned_weight is {learned_weight} but no learned reward was given")
        self.learned_reward = learned_reward
        self.learned_weight = learned_weight
        self.total_timesteps = total_timesteps
        self.progress = progress
        self.updates: list[UpdateMetrics] = []
        self.n_learned_calls = 0
        self.reward_chunk = reward_chunk
        self.heuristic_kl = heuristic_kl
        self.heuristic_kl_temperature = heuristic_kl_temperature
        self._finished: list[tuple[int, int, FinishedEpisode]] = []
        self._dones: list[np.ndarray] = []  # per rollout step, which envs' episodes ended there
        # Per env: log ratios and steps of the running episode from earlier rollouts, not charged yet.
        self._kl_carried = np.zeros(0)
        self._steps_carried = np.zeros(0, dtype=np.int64)
        self._n_submitted = 0
        self._chunks: list[Future[np.ndarray]] = []
        self._scorer: ThreadPoolExecutor | None = None
        self._step_in_rollout = 0
        self._pending: dict[str, Any] | None = None
        self._start_timesteps = 0

    def _on_training_start(self) -> None:
        self._start_timesteps = self.model.num_timesteps
        n_envs = self.training_env.num_envs
        self._kl_carried = np.zeros(n_envs)
        self._steps_carried = np.zeros(n_envs, dtype=np.int64)
        if self.learned_reward is not None and self.reward_chunk > 0:
            # One worker: chunks are scored one at a time, in order, never racing each other.
            self._scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learned-reward")

    def _on_rollout_start(self) -> None:
        self._emit_pending()
        self._finished = []
        self._dones = []
        self._n_submitted = 0
        self._chunks = []
        self._step_in_rollout = 0

    def _on_step(self) -> bool:
        for env_index, info in enumerate(self.locals["infos"]):
            episode = info.get("finished_episode")
            if episode is not None:
                self._finished.append((self._step_in_rollout, env_index, episode))
        self._dones.append(np.array(self.locals["dones"], dtype=bool))
        self._step_in_rollout += 1
        if self._scorer is not None and len(self._finished) - self._n_submitted >= self.reward_chunk:
            self._submit(len(self._finished))
        return True

    def _submit(self, stop: int) -> None:
        """Score finished episodes [submitted so far, stop) (on the background thread if there is one)."""
        episodes = [ep for _, _, ep in self._finished[self._n_submitted : stop]]
        self._n_submitted = stop
        if self._scorer is None:
            done: Future[np.ndarray] = Future()
            done.set_result(self._score(episodes))
            self._chunks.append(done)
        else:
            self._chunks.append(self._scorer.submit(self._score, episodes))

    def _on_rollout_end(self) -> None:
        dense = np.array([ep.dense.combined for _, _, ep in self._finished], dtype=np.float64)
        learned: np.ndarray | None = None
        if self.learned_reward is not None and self._finished:
            if self._n_submitted < len(self._finished):
                self._submit(len(self._finished))
            # .result() re-raises a chunk's error here, in the training thread.
            learned = np.concatenate([chunk.result() for chunk in self._chunks])
            if self.learned_weight > 0:
                self._add_learned(learned)
        kl = self._charge_kl() if self.heuristic_kl > 0 else None
        if (learned is not None and self.learned_weight > 0) or kl is not None:
            self._recompute_returns()
        self._pending = {
            "kl": kl,
            "num_timesteps": self.model.num_timesteps,
            "n_episodes": len(self._finished),
            "learned": None if learned is None else _mean(learned),
            "dense": _mean(dense),
            "total": _mean(mix_reward(learned if learned is not None else 0.0, dense, self.learned_weight))
            if len(dense)
            else None,
        }

    def _on_training_end(self) -> None:
        self._emit_pending()
        self.close()

    def close(self) -> None:
        """Stop the background scorer (idempotent; also called when training fails)."""
        if self._scorer is not None:
            self._scorer.shutdown(wait=True, cancel_futures=True)
            self._scorer = None

    def _score(self, episodes: list[FinishedEpisode]) -> np.ndarray:
        assert self.learned_reward is not None
        learned = np.asarray(self.learned_reward(episodes), dtype=np.float64)
        self.n_learned_calls += 1
        if learned.shape != (len(episodes),):
            raise PolicyError(f"learned reward returned shape {learned.shape} for {len(episodes)} episodes")
        if not np.all(np.isfinite(learned)):
            raise PolicyError("learned reward returned NaN or infinite values")
        return learned

    def _add_learned(self, learned: np.ndarray) -> None:
        buffer = self.model.rollout_buffer
        for (step, env_index, _), value in zip(self._finished, learned):
            buffer.rewards[step, env_index] += self.learned_weight * value

    def _charge_kl(self) -> float:
        """Charge each episode ``heuristic_kl`` times its mean ``log pi(a|s) - log ref(a|s)``, step by step
        (:func:`episode_kl_charge`); returns the rollout's mean per-step log ratio."""
        buffer = self.model.rollout_buffer
        reference = heuristic_policy(buffer.observations, self.heuristic_kl_temperature)  # (n_steps, n_envs, N_ACTIONS)
        taken = buffer.actions.reshape(buffer.log_probs.shape).astype(np.int64)
        log_ref = np.log(np.take_along_axis(reference, taken[..., None], axis=-1)[..., 0])
        kl = buffer.log_probs - log_ref
        charge, self._kl_carried, self._steps_carried = episode_kl_charge(
            kl, np.stack(self._dones), self._kl_carried, self._steps_carried)
        buffer.rewards -= (self.heuristic_kl * charge).astype(buffer.rewards.dtype)
        return float(kl.mean())

    def _recompute_returns(self) -> None:
        buffer = self.model.rollout_buffer
        # Same bootstrap the algorithm used: the value of the observation after the last step.
        with torch.no_grad():
            last_values = self.model.policy.predict_values(obs_as_tensor(self.model._last_obs, self.model.device))
        buffer.compute_returns_and_advantage(last_values=last_values, dones=self.model._last_episode_starts)

    def _emit_pending(self) -> None:
        """Join the last rollout's rewards with the training statistics of the update that followed it."""
        if self._pending is None:
            return
        logged = self.model.logger.name_to_value
        entropy_loss = logged.get("train/entropy_loss")
        approx_kl = logged.get("train/approx_kl")
        metrics = UpdateMetrics(
            update=len(self.updates) + 1,
            num_timesteps=self._pending["num_timesteps"],
            n_episodes=self._pending["n_episodes"],
            mean_learned_reward=self._pending["learned"],
            mean_dense_reward=self._pending["dense"],
            mean_reward=self._pending["total"],
            # SB3 logs entropy_loss = -mean entropy.
            entropy=None if entropy_loss is None else -float(entropy_loss),
            approx_kl=None if approx_kl is None else float(approx_kl),
            kl_to_heuristic=self._pending["kl"],
        )
        self._pending = None
        self.updates.append(metrics)
        if self.progress is not None:
            done = (metrics.num_timesteps - self._start_timesteps) / max(self.total_timesteps, 1)
            self.progress(
                min(done, 1.0),
                f"policy update {metrics.update}: {metrics.num_timesteps} steps, "
                f"learned {_fmt(metrics.mean_learned_reward)}, dense {_fmt(metrics.mean_dense_reward)}, "
                f"entropy {_fmt(metrics.entropy)}, kl {_fmt(metrics.approx_kl)}",
            )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def episode_kl_charge(kl: np.ndarray, terminal: np.ndarray, carried_kl: np.ndarray, carried_steps: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step charges of a rollout under which every episode pays its mean per-step log ratio.

    A step of an episode that ends in this rollout is charged its log ratio divided by the
    episode's length in steps; the log ratios the episode ran up in earlier rollouts
    (``carried_kl``, over ``carried_steps`` steps) are charged, divided by the same length, at its
    first step here.  An episode still running at the rollout's end is charged nothing yet: its
    log ratios and steps are carried to the next rollout.

    Parameters
    ----------
    kl : np.ndarray [shape=(n_steps, n_envs)]
        ``log pi(a|s) - log ref(a|s)`` of each step, nats.
    terminal : np.ndarray [shape=(n_steps, n_envs)], bool
        True at the step that ended an episode.
    carried_kl : np.ndarray [shape=(n_envs,)]
        Sum of the log ratios of each env's running episode in earlier rollouts, nats.
    carried_steps : np.ndarray [shape=(n_envs,)], int
        Its steps in earlier rollouts.

    Returns
    -------
    charge : np.ndarray [shape=(n_steps, n_envs)], float64, nats (times ``heuristic_kl`` the reward taken)
    carried_kl, carried_steps : np.ndarray [shape=(n_envs,)]
        The same for the episodes still running after this rollout.
    """
    n_steps, n_envs = kl.shape
    charge = np.zeros((n_steps, n_envs))
    carried_kl = np.array(carried_kl, dtype=np.float64)
    carried_steps = np.array(carried_steps, dtype=np.int64)
    for env in range(n_envs):
        first = 0  # the episode's first step in this rollout
        for last in np.flatnonzero(terminal[:, env]):
            length = carried_steps[env] + last + 1 - first
            charge[first : last + 1, env] = kl[first : last + 1, env] / length
            charge[first, env] += carried_kl[env] / length
            carried_kl[env], carried_steps[env] = 0.0, 0
            first = last + 1
        carried_kl[env] += float(kl[first:, env].sum())
        carried_steps[env] += n_steps - first
    return charge, carried_kl, carried_steps


# --------------------------------------------------------------------------- training

def make_vec_env(tracks: Sequence[TrackArrays], env_config: EnvConfig, *, n_envs: int, seed: int) -> DummyVecEnv:
    """``n_envs`` editing envs in one process (the policy and env are small: processes would cost more than they save)."""
    venv = DummyVecEnv([lambda: EditingEnv(tracks, env_config) for _ in range(n_envs)])
    venv.seed(seed)
    return venv


def build_policy(tracks: Sequence[TrackArrays], *, env_config: EnvConfig = EnvConfig(), config: PolicyConfig = PolicyConfig()) -> MaskablePPO:
    """A first policy, from scratch."""
    return MaskablePPO(
        "MlpPolicy",
        make_vec_env(tracks, env_config, n_envs=config.n_envs, seed=config.seed),
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        policy_kwargs={"net_arch": list(config.net_arch)},
        seed=config.seed,
        device=policy_device(config),
        verbose=0,
    )


TEACHERS = ("heuristic", "learned_planner")


@dataclass(frozen=True)
class Imitation:
    """What imitating a planner did: demonstrations seen, the teacher, and how often the policy then agrees.

    ``teacher`` is ``"learned_planner"`` when the learned planner's plan was demonstrated on at least
    one passage (``n_learned_episodes`` of them; the heuristic's moves on the others), else ``"heuristic"``.
    """

    n_episodes: int
    n_steps: int
    epochs: int
    agreement: float  # share of demonstrated steps whose most probable action is the demonstrated one
    seconds: float
    teacher: str = "heuristic"
    n_learned_episodes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Demonstrations:
    """A teacher's moves, step by step.

    Attributes
    ----------
    obs : np.ndarray [shape=(n_steps, OBS_DIM)], float32
    masks : np.ndarray [shape=(n_steps, N_ACTIONS)], bool
    actions : np.ndarray [shape=(n_steps,)], int64
    returns : np.ndarray [shape=(n_steps,)], float32
        The dense score each step led to, discounted by ``gamma`` (the value a first critic starts from).
    n_learned_episodes : int
        Passages on which the learned planner's plan (departing from the heuristic's) was demonstrated.
    """

    obs: np.ndarray
    masks: np.ndarray
    actions: np.ndarray
    returns: np.ndarray
    n_learned_episodes: int


def excerpt_passage(track: TrackArrays, excerpt: Excerpt, scaled: np.ndarray | None = None) -> Passage:
    """An excerpt as the planners take it (``scaled``: the track's :func:`track_feature_scale`, when the caller has it)."""
    return Passage(context=track.dense, scaled=track_feature_scale(track.features) if scaled is None else scaled,
                   start=excerpt.start, bar_positions=track.bar_positions[excerpt.start : excerpt.start + excerpt.n_beats],
                   target_beats=excerpt.target_beats)


def planner_demonstrations(tracks: Sequence[TrackArrays], env_config: EnvConfig, *, n_episodes: int, seed: int,
                           gamma: float, seam_model: SeamModel | None = None) -> Demonstrations:
    """A planner's moves on ``n_episodes`` passages drawn as training draws them.

    The heuristic's move at each step (``EditingEnv.heuristic_action``), except on the passages
    where ``seam_model``'s learned plan (``rlhf.learning.seam_model.learned_plan``) departs from the
    heuristic's plan: there, the learned plan's moves.  With no seam model, or an untrained one,
    these are exactly the heuristic's demonstrations.
    """
    learned = seam_model is not None and not seam_model.is_zero
    scaled: dict[int, np.ndarray] = {}
    env = EditingEnv(tracks, replace(env_config, learned_weight=0.0))
    obs_rows, mask_rows, action_rows, returns = [], [], [], []
    n_learned = 0
    obs, info = env.reset(seed=seed)
    for _ in range(n_episodes):
        first = len(action_rows)
        plan: list[int] | None = None
        if learned:
            excerpt = info["excerpt"]
            if excerpt.track_index not in scaled:
                scaled[excerpt.track_index] = track_feature_scale(tracks[excerpt.track_index].features)
            passage = excerpt_passage(tracks[excerpt.track_index], excerpt, scaled[excerpt.track_index])
            base = heuristic_plan(passage)
            plan = learned_plan(passage, seam_model, heuristic_actions=base)
            if plan == base:
                plan = None
            else:
                n_learned += 1
        terminated = False
        while not terminated:
            step = len(action_rows) - first
            action = env.heuristic_action() if plan is None else plan[step]
            obs_rows.append(obs)
            mask_rows.append(env.action_masks())
            action_rows.append(action)
            obs, reward, terminated, _, step_info = env.step(action)
            if "invalid_action" in step_info:
                raise PolicyError(f"the learned plan's move {action} at step {step} of {info['excerpt']} is masked")
        steps = len(action_rows) - first
        returns.extend(reward * gamma ** np.arange(steps - 1, -1, -1))
        obs, info = env.reset()
    return Demonstrations(np.asarray(obs_rows, dtype=np.float32), np.asarray(mask_rows, dtype=bool),
                          np.asarray(action_rows, dtype=np.int64), np.asarray(returns, dtype=np.float32), n_learned)


def imitate_planner(model: MaskablePPO, tracks: Sequence[TrackArrays], env_config: EnvConfig, config: PolicyConfig,
                    *, seam_model: SeamModel | None = None) -> Imitation:
    """Behaviour cloning: fit the policy's masked action distribution to a planner's moves
    (:func:`planner_demonstrations`: the learned planner's where it departs, else the heuristic's),
    and its critic to their returns.

    Cross-entropy on the demonstrated actions plus half the squared error of the value, with the
    policy's own optimiser in minibatches of ``config.batch_size``.
    """
    began = time.perf_counter()
    shown = planner_demonstrations(tracks, env_config, n_episodes=config.imitation_episodes, seed=config.seed,
                                   gamma=config.gamma, seam_model=seam_model)
    obs, masks, actions, returns = shown.obs, shown.masks, shown.actions, shown.returns
    policy = model.policy
    device = policy.device
    generator = torch.Generator().manual_seed(config.seed)
    n = len(actions)
    obs_t, masks_t = torch.as_tensor(obs, device=device), torch.as_tensor(masks, device=device)
    actions_t, returns_t = torch.as_tensor(actions, device=device), torch.as_tensor(returns, device=device)
    policy.set_training_mode(True)
    for _ in range(config.imitation_epochs):
        for rows in torch.randperm(n, generator=generator).split(config.batch_size):
            rows = rows.to(device)
            values, log_prob, _ = policy.evaluate_actions(obs_t[rows], actions_t[rows], action_masks=masks_t[rows])
            loss = -log_prob.mean() + 0.5 * torch.nn.functional.mse_loss(values.flatten(), returns_t[rows])
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
            policy.optimizer.step()
    policy.set_training_mode(False)
    with torch.no_grad():
        probs = policy.get_distribution(obs_t, action_masks=masks).distribution.probs.cpu().numpy()
    agreement = float(np.mean(np.argmax(np.where(masks, probs, -1.0), axis=1) == actions)) if n else float("nan")
    return Imitation(n_episodes=config.imitation_episodes, n_steps=n, epochs=config.imitation_epochs,
                     agreement=agreement, seconds=time.perf_counter() - began,
                     teacher=TEACHERS[1] if shown.n_learned_episodes else TEACHERS[0],
                     n_learned_episodes=shown.n_learned_episodes)


@dataclass(frozen=True)
class TrainingRun:
    """A trained policy and what each of its updates did in this run."""

    model: MaskablePPO
    updates: tuple[UpdateMetrics, ...]
    start_timesteps: int
    seconds: float
    n_learned_calls: int
    imitation: Imitation | None = None

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    def summary(self, *, last: int = 5) -> dict[str, Any]:
        """Means over the last ``last`` updates, for a version's metrics."""
        tail = self.updates[-last:]

        def mean_of(name: str) -> float | None:
            values = [getattr(u, name) for u in tail if getattr(u, name) is not None]
            return float(np.mean(values)) if values else None

        return {
            "num_timesteps": self.num_timesteps,
            "timesteps_this_run": self.num_timesteps - self.start_timesteps,
            "updates": len(self.updates),
            "seconds": self.seconds,
            "mean_learned_reward": mean_of("mean_learned_reward"),
            "mean_dense_reward": mean_of("mean_dense_reward"),
            "mean_reward": mean_of("mean_reward"),
            "entropy": mean_of("entropy"),
            "approx_kl": mean_of("approx_kl"),
            "kl_to_heuristic": mean_of("kl_to_heuristic"),
            "imitation": None if self.imitation is None else self.imitation.to_json(),
        }



def train_policy(
    tracks: Sequence[TrackArrays],
    *,
    total_timesteps: int,
    learned_reward: LearnedReward | None,
    env_config: EnvConfig = EnvConfig(),
    config: PolicyConfig = PolicyConfig(),
    parent: str | Path | None = None,
    progress: Progress | None = None,
    seam_model: SeamModel | None = None,
) -> TrainingRun:
    """Train a first policy (``parent`` None) or continue the saved version at ``parent``.

    Continuing keeps the parent's weights, optimiser state, hyperparameters and
    ``num_timesteps`` (``learn(reset_num_timesteps=False)``); ``total_timesteps`` more steps
    are taken either way.  A first policy imitates a planner first (:func:`imitate_planner`): the
    learned planner of ``seam_model`` where it departs from the heuristic, else the heuristic.
    The learned reward is paid as ``config.learned_reward_baseline`` says (relative to the
    heuristic's edit of the same passage by default).

    Raises
    ------
    PolicyError
        If ``learned_weight > 0`` and no learned reward is given.
    SpacesSpecMismatch, PolicyCheckpointError
        If ``parent`` was saved for other spaces or cannot be read.
    """
    if total_timesteps <= 0:
        raise PolicyError(f"total_timesteps must be positive, got {total_timesteps}")
    if learned_reward is not None and config.learned_reward_baseline == "heuristic":
        learned_reward = RelativeToHeuristic(learned_reward)
    callback = RewardMixCallback(learned_reward, env_config.learned_weight, total_timesteps, progress, config.reward_chunk,
                                 config.heuristic_kl, config.heuristic_kl_temperature)
    imitation = None
    if parent is None:
        model = build_policy(tracks, env_config=env_config, config=config)
        if config.imitation_episodes and config.imitation_epochs:
            if progress is not None:
                teacher = ("heuristic" if seam_model is None or seam_model.is_zero
                           else "learned planner (the heuristic where it does not depart)")
                progress(0.0, f"imitating the {teacher} on {config.imitation_episodes} passages")
            with torch_threads(config.n_threads):
                imitation = imitate_planner(model, tracks, env_config, config, seam_model=seam_model)
    else:
        venv = make_vec_env(tracks, env_config, n_envs=config.n_envs, seed=config.seed)
        model = load_policy(parent, env=venv, device=config.device)
    start = int(model.num_timesteps)
    began = time.perf_counter()  # PPO's own time; the imitation records its own
    try:
        with torch_threads(config.n_threads):
            model.learn(total_timesteps=total_timesteps, callback=callback, reset_num_timesteps=parent is None)
    finally:
        callback.close()
    return TrainingRun(
        model=model,
        updates=tuple(callback.updates),
        start_timesteps=start,
        seconds=time.perf_counter() - began,
        n_learned_calls=callback.n_learned_calls,
        imitation=imitation,
    )


# --------------------------------------------------------------------------- checkpoints

def read_spaces_spec(path: str | Path) -> dict[str, Any]:
    """The spaces spec stored in a policy checkpoint."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if SPEC_MEMBER not in archive.namelist():
                raise PolicyCheckpointError(f"{path}: no {SPEC_MEMBER} (not saved by save_policy)")
            return json.loads(archive.read(SPEC_MEMBER))
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise PolicyCheckpointError(f"{path}: cannot read the checkpoint ({err})") from err


def load_policy(path: str | Path, *, env: DummyVecEnv | None = None, device: str | None = None) -> MaskablePPO:
    """Load a checkpoint written by :func:`save_policy`.

    Raises
    ------
    SpacesSpecMismatch
        If it was saved for other observation or action spaces than this env's.
    PolicyCheckpointError
        If it is missing or unreadable.
    """
    path = Path(path)
    check_spaces_spec(read_spaces_spec(path), what=f"policy checkpoint {path}")
    return MaskablePPO.load(path, env=env, device=select_device(device))


def save_policy(model: MaskablePPO, path: str | Path) -> Path:
    """Write ``model`` with the spaces spec to ``path`` (a .zip) atomically.

    Written to a temporary file in the same folder, loaded back and compared (spec,
    weights, ``num_timesteps``), then moved into place with ``os.replace``; a failure
    leaves nothing at ``path``.

    Raises
    ------
    PolicyCheckpointError
        If the written file does not load back identical.
    """
    path = Path(path)
    if path.suffix != ".zip":
        raise PolicyCheckpointError(f"{path}: a policy checkpoint must end in .zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp.zip")
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(SPEC_MEMBER, json.dumps(spaces_spec(), sort_keys=True))
        _verify(model, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _verify(model: MaskablePPO, tmp: Path) -> None:
    loaded = load_policy(tmp, device="cpu")
    if loaded.num_timesteps != model.num_timesteps:
        raise PolicyCheckpointError(f"{tmp}: num_timesteps {loaded.num_timesteps} read back, {model.num_timesteps} written")
    written = model.policy.state_dict()
    for name, tensor in loaded.policy.state_dict().items():
        if not torch.equal(tensor.cpu(), written[name].detach().cpu()):
            raise PolicyCheckpointError(f"{tmp}: parameter {name} differs after reading back")


# --------------------------------------------------------------------------- sampling

def sample_actions(
    model: MaskablePPO,
    tracks: Sequence[TrackArrays],
    excerpts: Sequence[Excerpt],
    *,
    deterministic: bool,
    rng: np.random.Generator,
    n_threads: int = 1,
    env_config: EnvConfig | None = None,
) -> list[list[int]]:
    """Edit each excerpt with the policy: one action list per excerpt.

    All excerpts advance in lock step, so the policy runs once per step on a batch.
    Stochastic sampling draws from the masked action distribution with ``rng`` (so it is
    reproducible without touching torch's global seed); deterministic takes the most
    probable valid action.

    Parameters
    ----------
    tracks : sequence of TrackArrays
        ``Excerpt.track_index`` indexes it.
    excerpts : sequence of Excerpt
    n_threads : int
        Torch threads while sampling (see ``PolicyConfig.n_threads``).
    env_config : EnvConfig, optional
        The env to sample in; default ``EnvConfig()``, as the cycle trains with (the masks
        themselves are the builder's and do not depend on it).

    Returns
    -------
    list of list of int
        Action ids; ``editing.edit.apply_actions`` turns each into an Edit.
    """
    if not excerpts:
        return []
    # Rewards are not used here: a dense-only env avoids needing a learned reward.
    sampling = replace(env_config or EnvConfig(), learned_weight=0.0)
    envs = [EditingEnv(tracks, sampling) for _ in excerpts]
    # One plan per distinct excerpt, shared by the envs that edit it (best-of-N edits one excerpt N times).
    planners: dict[Excerpt, Any] = {}
    for ex in excerpts:
        if ex not in planners:
            planners[ex] = excerpt_planner(tracks[ex.track_index], ex)
    obs = np.stack([env.reset(options={"excerpt": ex, "planner": planners[ex]})[0] for env, ex in zip(envs, excerpts)])
    actions: list[list[int]] = [[] for _ in excerpts]
    active = list(range(len(excerpts)))
    with torch_threads(n_threads):
        while active:
            active = _sample_step(model, envs, excerpts, obs, actions, active, deterministic, rng)
    return actions


# Where a best-of-N winner came from, in the order of credit: an edit made by several is the first's.
BEST_OF_N_SOURCES = ("heuristic", "learned", "departure", "policy")


@dataclass(frozen=True)
class BestOfN:
    """The edit best-of-N chose for one excerpt, and where it came from.

    ``source`` is one of :data:`BEST_OF_N_SOURCES`: the heuristic's plan, the learned planner's plan,
    one of that plan's cheapest single departures, or a policy edit (its most probable or a
    sample); an edit several of them made is credited in that order, so ``"policy"`` means an
    edit only the policy made.  ``n_candidates``: the
    candidates the reward model chose among (duplicates included), what a compute-matched
    opponent is given.
    """

    actions: list[int]
    source: str
    n_candidates: int


def best_of_n_actions(
    model: MaskablePPO,
    reward: EnsembleReward,
    tracks: Sequence[TrackArrays],
    excerpts: Sequence[Excerpt],
    *,
    n: int,
    rng: np.random.Generator,
    seam_model: SeamModel | None = None,
) -> list[BestOfN]:
    """Best of a pool for each excerpt, the reward-model ensemble's mean choosing (the retarget command's
    and page's ``best-of-N``).

    The pool: the policy's most probable edit and ``n - 1`` sampled ones; the heuristic's plan; and
    with ``seam_model``, the learned planner's plan and its
    :data:`rlhf.learning.seam_model.POOL_DEPARTURES` cheapest single departures (its near-optimal
    alternatives by its own cost).

    Returns
    -------
    list of BestOfN
        Each excerpt's chosen actions and their source (ties go to the first listed: the most probable edit).
    """
    if n < 1:
        raise PolicyError(f"best of {n}: n must be at least 1")
    most_probable = sample_actions(model, tracks, excerpts, deterministic=True, rng=rng)
    # All samples of all excerpts in one lock step: one policy forward per step for the whole batch.
    sampled = sample_actions(model, tracks, [ex for ex in excerpts for _ in range(n - 1)], deterministic=False, rng=rng)
    scaled: dict[int, np.ndarray] = {}
    pools: list[list[tuple[list[int], str]]] = []
    for i, ex in enumerate(excerpts):
        pool = [(most_probable[i], "policy"), *((a, "policy") for a in sampled[i * (n - 1) : (i + 1) * (n - 1)])]
        if ex.track_index not in scaled:
            scaled[ex.track_index] = track_feature_scale(tracks[ex.track_index].features)
        passage = excerpt_passage(tracks[ex.track_index], ex, scaled[ex.track_index])
        base = heuristic_plan(passage)
        pool.append((base, "heuristic"))
        if seam_model is not None:
            plan = learned_plan(passage, seam_model, heuristic_actions=base)
            pool.append((plan, "learned"))
            pool += [(d.actions, "departure") for d in cheapest_departures(
                passage, seam_model, plan, k=POOL_DEPARTURES, max_extra_cost=POOL_MAX_EXTRA_COST)]
        pools.append(pool)
    items, distinct = [], []
    for ex, pool in zip(excerpts, pools):
        track = tracks[ex.track_index]
        bars = track.bar_positions[ex.start : ex.start + ex.n_beats]
        # An edit listed twice is scored once, in its first place (ties go to the first listed), and
        # credited to the first of its sources in BEST_OF_N_SOURCES.
        edits: dict[str, tuple[list[int], str]] = {}
        for actions, source in pool:
            edit = apply_actions(actions, excerpt_start=ex.start, bar_positions=bars, target_beats=ex.target_beats)
            if edit.key() not in edits:
                items.append((track, edit))
                edits[edit.key()] = (actions, source)
            elif BEST_OF_N_SOURCES.index(source) < BEST_OF_N_SOURCES.index(edits[edit.key()][1]):
                edits[edit.key()] = (edits[edit.key()][0], source)
        distinct.append(list(edits.values()))
    # Every candidate of every excerpt in one reward-model call (it batches by length).
    rewards = reward.member_rewards(items).mean(0)
    chosen, first = [], 0
    for pool, options in zip(pools, distinct):
        actions, source = options[int(np.argmax(rewards[first : first + len(options)]))]
        chosen.append(BestOfN(actions=list(actions), source=source, n_candidates=len(pool)))
        first += len(options)
    return chosen


def _sample_step(
    model: MaskablePPO,
    envs: list[EditingEnv],
    excerpts: Sequence[Excerpt],
    obs: np.ndarray,
    actions: list[list[int]],
    active: list[int],
    deterministic: bool,
    rng: np.random.Generator,
) -> list[int]:
    """One lock step of :func:`sample_actions` over the ``active`` excerpts; returns those still unfinished."""
    masks = np.stack([envs[i].action_masks() for i in active])
    with torch.no_grad():
        obs_tensor = obs_as_tensor(obs[active], model.device)
        probs = model.policy.get_distribution(obs_tensor, action_masks=masks).distribution.probs.cpu().numpy()
    probs = np.where(masks, probs.astype(np.float64), 0.0)
    still: list[int] = []
    for row, i in enumerate(active):
        p = probs[row] / probs[row].sum()
        action = int(np.argmax(p)) if deterministic else int(rng.choice(N_ACTIONS, p=p))
        actions[i].append(action)
        next_obs, _, terminated, _, info = envs[i].step(action)
        if "invalid_action" in info:
            raise PolicyError(f"policy chose masked action {action} on excerpt {excerpts[i]}")
        obs[i] = next_obs
        if not terminated:
            still.append(i)
    return still

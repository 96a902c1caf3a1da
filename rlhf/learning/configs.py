"""The learning room's configurations: typed, torch-free, and the one home of their defaults.

The site process reads these (the cycle form, the API schema, ``CycleParameters``) without
loading torch; the torch modules (``reward_training``, ``policy``) take them as arguments.
"""
from __future__ import annotations

from dataclasses import dataclass


# The seam model's input (``rlhf.learning.seam_model.seam_features``); a version records it.
SEAM_FEATURE_VERSION = "seam-features-v1"

# Candidates the policy samples per passage when it edits by best-of-N (the most probable edit and
# N - 1 sampled ones; the heuristic's plan, and the learned planner's plan and its cheapest single
# departures where there is a seam model, join them; the reward model chooses): the retarget default
# and the evidence arm.
BEST_OF_N = 8

# What PPO's learned reward of an edit is measured from (``PolicyConfig.learned_reward_baseline``):
# ``heuristic``, the learned reward of the heuristic's edit of the same passage (0 means "as good as the
# heuristic" on every track); ``none``, the learned reward as the reward model gives it.
LEARNED_REWARD_BASELINES = ("heuristic", "none")


class PolicyError(ValueError):
    """A policy operation refused, with the reason in the message."""


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of one reward-model retrain (``rlhf.learning.reward_training``); stored with the version."""

    seed: int = 0
    n_members: int = 3
    bootstrap: bool = True
    max_epochs: int = 5
    patience: int = 2
    batch_pairs: int = 64
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    validation_fraction: float = 0.2
    calibration_fraction: float = 0.15
    # Early stopping picks each member's epoch on a split of its own (carved from the training
    # groups), so the reported validation accuracy comes from pairs nothing was selected on.
    selection_fraction: float = 0.15
    min_pairs: int = 20
    n_threads: int = 2
    device: str | None = None



@dataclass(frozen=True)
class PolicyConfig:
    """PPO hyperparameters of a first policy (a fine-tune keeps the saved version's own).

    One update collects ``n_steps * n_envs`` env steps (1024 by default: about 25 edits of
    40 beats), then runs ``n_epochs`` passes of minibatches of ``batch_size``.
    ``device`` None means CUDA when present, else CPU (``rlhf.learning.reward_model.select_device``).
    """

    n_envs: int = 8
    n_steps: int = 128
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 3e-4
    # Only the terminal step is rewarded and episodes last <= 64 steps: discount very little.
    gamma: float = 0.995
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    net_arch: tuple[int, ...] = (256, 256)
    seed: int = 0
    device: str | None = None
    # The networks are small MLPs: on a shared CPU, extra torch threads cost more in
    # synchronisation than they save (8x slower measured on 2 busy cores).
    n_threads: int = 1
    # Finished edits per background learned-reward call during a rollout (0: one call per
    # rollout, at its end, with every core).  On a 2-core CPU the background thread competes
    # with PPO for the cores and scores smaller batches: bench/bench_policy.py measured +64 %
    # overhead with 0 against +105 % with 32, so 0 is the default; try 32 or more where the
    # reward model has cores (or a GPU) of its own.  Re-measured with the scorer on one torch
    # thread during the rollout and a 0.2 ms GIL switch interval: still slower than 0 (the
    # rollout is Python-bound, and the scorer takes the GIL back after each of its kernels).
    reward_chunk: int = 0
    # A first policy starts by imitating the retargeting heuristic (behaviour cloning on its moves in
    # ``imitation_episodes`` drawn passages, ``imitation_epochs`` passes), as an RLHF policy starts
    # from a supervised one: PPO then learns where to depart from it.  0 episodes: from scratch.
    imitation_episodes: int = 1024
    imitation_epochs: int = 16
    # Over-optimisation guard: an episode pays ``heuristic_kl`` times its mean per-step
    # ``log pi(a|s) - log ref(a|s)``, where ref is the heuristic's soft choice
    # (``editing.env.heuristic_policy``): the KL penalty of RLHF, toward the editor the policy must beat,
    # so that a reward model's blind spots cannot pull it far away.  Each step is charged its own log
    # ratio divided by its episode's length, so a unit means the same on a 16-beat passage and a
    # 256-beat one.  8 charges the mean episode (about 40 steps: 42.5 measured with the default
    # EnvConfig) what the former 0.2 per step did.
    heuristic_kl: float = 8.0
    # The reference's temperature, in seam-cost units: a move dearer than the heuristic's by this
    # much keeps e^-1 of its weight.
    heuristic_kl_temperature: float = 0.25
    # PPO is paid ``learned(edit) - learned(the heuristic's edit of the same passage)`` (``heuristic``; each
    # passage's heuristic edit scored once, in the same reward-model calls as the episodes') or the raw
    # learned reward (``none``): one of :data:`LEARNED_REWARD_BASELINES`.  Training passages are drawn
    # afresh, so nearly every episode brings one more edit to score: PPO with a learned reward ran at
    # 988 against 1,444 steps/s (-32 %) on 2 busy CPU cores (default PPO and a 3-member default-size
    # ensemble, 4,096 steps, best of 2 interleaved).
    learned_reward_baseline: str = "heuristic"

    def __post_init__(self) -> None:
        if self.learned_reward_baseline not in LEARNED_REWARD_BASELINES:
            raise PolicyError(f"PolicyConfig: learned_reward_baseline {self.learned_reward_baseline!r} is unknown "
                              f"(known: {', '.join(LEARNED_REWARD_BASELINES)})")
        if self.reward_chunk < 0:
            raise PolicyError(f"PolicyConfig: reward_chunk {self.reward_chunk} must be >= 0")
        if self.heuristic_kl < 0 or self.heuristic_kl_temperature <= 0:
            raise PolicyError(f"PolicyConfig: heuristic_kl {self.heuristic_kl} must be >= 0 and its temperature "
                             f"{self.heuristic_kl_temperature} > 0")
        if self.imitation_episodes < 0 or self.imitation_epochs < 0:
            raise PolicyError(f"PolicyConfig: imitation_episodes {self.imitation_episodes} and imitation_epochs "
                             f"{self.imitation_epochs} must be >= 0")


@dataclass(frozen=True)
class SeamTrainingConfig:
    """Hyperparameters of one seam-model fit (``rlhf.learning.seam_model``); stored with the version."""

    n_members: int = 8
    l2: float = 1.0           # prior strength on w (toward 0) and on beta (toward 1), in judgements
    pessimism: float = 2.0    # k of mean + k * spread on seams the heuristic does not use (bench_learned_planner: 1.0 departed wrongly)
    min_beta: float = 0.25    # the heuristic's cost always counts: residual = w . phi / beta stays bounded
    max_lapse: float = 0.4    # share of answers given without listening (fitted; see rlhf.learning.seam_model)
    seed: int = 0


# How the cycle chooses seam questions (``rlhf.learning.seam_model.seam_questions``; the cycle parameter
# ``pair_selection``).  The default is the selection that reached the heuristic-beating threshold with
# the fewest judgements in ``bench/bench_learned_planner.py --curve`` on the real corpus (texture
# listener: 0.618 [0.56, 0.68] after 200 judgements; departures 0.55 and random 0.58 after 800; every
# selection level on the default listener): the README's "Which questions teach fastest".
QUESTION_SELECTIONS = ("random", "disagreement", "departures")
DEFAULT_QUESTION_SELECTION = "disagreement"

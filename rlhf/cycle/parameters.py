"""What one cycle does: ``CycleParameters``, the one home of every cycle default and bound.

Torch-free, so the cycle form, the API, its schema, the command line and the worker all read
the same defaults.  PPO defaults come from ``rlhf.learning.configs.PolicyConfig`` (itself
torch-free), so the cycle and a plain ``PolicyConfig()`` can never disagree.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from django.conf import settings

from rlhf.cycle.errors import CycleError
from rlhf.learning.configs import DEFAULT_QUESTION_SELECTION, QUESTION_SELECTIONS, PolicyConfig, SeamTrainingConfig

_PPO = PolicyConfig()
_SEAM = SeamTrainingConfig()


@dataclass(frozen=True)
class CycleParameters:
    """What one cycle does: the dataclass defaults, which :meth:`defaults` overrides from ``CYCLE_*`` environment variables.

    Attributes
    ----------
    ppo_timesteps : PPO env steps of policy training in this cycle
    learned_weight : ``w`` of the reward ``w * learned + (1 - w) * dense``
    n_excerpts, n_pairs, random_share, policy_samples : proposal sizes (``rlhf.learning.proposal.ProposalConfig``)
    rm_max_epochs, rm_members, rm_warm_start : reward-model training (``rlhf.learning.configs.TrainingConfig``)
    rm_pessimism : over-optimisation guard: the policy is paid the ensemble mean minus this many
        member spreads (0: the plain mean)
    seam_pessimism : the learned planner prices seams the heuristic does not use at the seam
        model's mean plus this many member spreads, so it departs only where judgements agree
        (used as set when ``seam_pessimism_auto`` is off)
    seam_pessimism_auto : choose that ``k`` each cycle by cross-validation over the judged tracks
        (``rlhf.learning.seam_model.choose_pessimism``), never on held-out ones; off when
        ``seam_pessimism`` is given without it (:meth:`from_json`)
    departure_pairs : seam questions, on that many more excerpts (on top of ``n_pairs``): one each,
        chosen by ``pair_selection``
    pair_selection : how the seam questions are chosen (``rlhf.learning.seam_model.seam_questions``):
        ``disagreement`` (the pair of the heuristic's plan, the learned plan and their cheapest single
        departures whose cost difference the seam ensemble disagrees on most), ``departures`` (the
        learned plan against its most disputed single departure) or ``random`` (two of that pool)
    ppo_n_envs, ppo_n_steps, ppo_batch_size : PPO rollout sizes of a first policy (a fine-tune keeps its parent's)
    ppo_imitation_episodes : passages on which a first policy imitates a planner before PPO (the learned planner
        where the cycle's seam model departs from the heuristic, else the heuristic; 0: from scratch)
    ppo_heuristic_kl : over-optimisation guard: weight of the KL penalty toward the heuristic's soft
        choice, per nat of an episode's mean per-step log ratio, whatever its length (0: none;
        ``rlhf.learning.configs.PolicyConfig.heuristic_kl``)
    required_judgements : judgements each new comparison asks for
    seed : base seed; each cycle adds its id so cycles draw different excerpts

    Every value must lie within ``BOUNDS`` (inclusive).  The upper bounds are
    what a 2-core CPU box bears: without a broker a cycle runs inside the web
    process, so one request must not be able to occupy it for days or exhaust
    its memory.
    """

    ppo_timesteps: int = 20480
    learned_weight: float = 0.8
    n_excerpts: int = 16
    n_pairs: int = 32
    random_share: float = 0.2
    policy_samples: int = 3
    rm_max_epochs: int = 8
    rm_members: int = 3
    rm_warm_start: bool = False
    rm_pessimism: float = 0.5
    seam_pessimism: float = _SEAM.pessimism
    seam_pessimism_auto: bool = True
    departure_pairs: int = 16
    pair_selection: str = DEFAULT_QUESTION_SELECTION
    ppo_n_envs: int = _PPO.n_envs
    ppo_n_steps: int = _PPO.n_steps
    ppo_batch_size: int = _PPO.batch_size
    ppo_imitation_episodes: int = _PPO.imitation_episodes
    ppo_heuristic_kl: float = _PPO.heuristic_kl
    required_judgements: int = 3
    seed: int = 0

    # (lowest, highest) allowed, inclusive; the README's table repeats them with the defaults.
    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {
        "ppo_timesteps": (1, 1_000_000),   # about 4 minutes of PPO at the measured 231 us a step (2 cores)
        "learned_weight": (0.0, 1.0),
        "n_excerpts": (1, 256),            # excerpts rendered and scored per cycle
        "n_pairs": (1, 512),               # new comparisons per cycle
        "random_share": (0.0, 1.0),
        "policy_samples": (1, 16),         # policy rollouts per excerpt
        "rm_max_epochs": (1, 50),
        "rm_members": (1, 8),              # ensemble members, each trained in full
        "rm_pessimism": (0.0, 5.0),        # k of the learned reward mean - k * spread
        "seam_pessimism": (0.0, 10.0),     # k of the learned seam cost mean + k * spread off the heuristic's seams
        "departure_pairs": (0, 256),       # seam questions (pair_selection), one each on that many excerpts
        "ppo_n_envs": (1, 32),
        "ppo_n_steps": (1, 4096),          # steps per env per rollout
        "ppo_batch_size": (1, 8192),
        "ppo_imitation_episodes": (0, 4096),  # about 90 s and 500 MB of demonstrations at the top
        "ppo_heuristic_kl": (0.0, 40.0),
        "required_judgements": (1, 20),    # annotators per comparison
        "seed": (0, 2**31 - 1),            # numpy seeds must stay < 2**32 once the cycle id is added
    }
    # The allowed values of the text parameters.
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "pair_selection": QUESTION_SELECTIONS,
    }

    def __post_init__(self) -> None:
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:  # NaN fails too
                raise CycleError(f"cycle parameter {name} must lie in {low}..{high}, got {value}")
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise CycleError(f"cycle parameter {name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")

    @classmethod
    def defaults(cls) -> "CycleParameters":
        """The dataclass defaults with the environment's overrides (``settings.CYCLE_PARAMETER_OVERRIDES``)."""
        return cls.from_json(settings.CYCLE_PARAMETER_OVERRIDES, base=cls())

    @classmethod
    def from_json(cls, data: dict[str, Any], *, base: "CycleParameters | None" = None) -> "CycleParameters":
        """Parameters from a JSON object (form or API input): unknown names and wrong types are refused."""
        base = base or cls.defaults()
        known = {f.name: f for f in fields(cls)}
        values = asdict(base)
        for name, raw in data.items():
            if name not in known:
                raise CycleError(f"cycle parameter {name!r} is unknown (known: {', '.join(known)})")
            kind = type(values[name])
            try:
                if isinstance(raw, (dict, list)) or (kind is not bool and isinstance(raw, bool)):
                    raise TypeError(raw)
                if kind is bool:
                    if isinstance(raw, str):
                        if raw.strip().lower() not in {"1", "0", "true", "false", "on", "off", "yes", "no"}:
                            raise ValueError(raw)
                        raw = raw.strip().lower() in {"1", "true", "on", "yes"}
                    values[name] = bool(raw)
                elif kind is str:
                    if not isinstance(raw, str):
                        raise TypeError(raw)
                    values[name] = raw.strip()
                elif kind is int:
                    if isinstance(raw, float) and not raw.is_integer():
                        raise ValueError(raw)
                    values[name] = int(raw)
                else:
                    values[name] = float(raw)
            except (TypeError, ValueError):
                raise CycleError(f"cycle parameter {name}: {raw!r} is not a valid {kind.__name__}") from None
        if "seam_pessimism" in data and "seam_pessimism_auto" not in data:
            # A k given is a k meant (and cycles stored before k was chosen on the judged tracks keep theirs).
            values["seam_pessimism_auto"] = False
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def policy_config(self, *, seed: int, device: str | None) -> PolicyConfig:
        """The ``PolicyConfig`` of this cycle's PPO run."""
        return PolicyConfig(n_envs=self.ppo_n_envs, n_steps=self.ppo_n_steps, batch_size=self.ppo_batch_size,
                            imitation_episodes=self.ppo_imitation_episodes, heuristic_kl=self.ppo_heuristic_kl,
                            seed=seed, device=device)

"""The retrain cycle: train a reward model -> fine-tune the policy -> propose comparisons.

The one place that joins the database and the pure learning modules for a cycle.
The researcher page, the API, ``manage.py run_cycle``, the periodic schedule and
``rlhf.evaluation`` (``simulate_loop``, ``evaluate_loop``) all start cycles here; Celery tasks (``rlhf.tasks``) only call
:func:`cycle_step_run`.

Steps and their guarantees
--------------------------
``train_reward_model``
    Trains a reward-model version on the current judgements and registers it
    *inactive*, linked to the cycle in the registering transaction.
``train_policy``
    Fine-tunes the active policy (or trains a first one) against the cycle's
    reward model and registers it *inactive*, linked to the cycle in the
    registering transaction.
``propose``
    Renders candidate edits from the cycle's policy, its parent and the
    baselines; then ONE transaction creates the comparisons, activates both of
    the cycle's versions and marks the cycle done.

So a failure at any step (or a worker killed mid-step) leaves the previous
versions active and no comparisons of the cycle.  Every step is idempotent: a
step whose output is already linked to the cycle is skipped, so a redelivered
or re-dispatched step simply resumes the cycle.

Only one cycle runs at a time: ``Cycle.is_running`` is True from creation until
the cycle ends, and a partial unique constraint allows one such row.
A step being executed records its executor (the Celery task id) and refreshes
``heartbeat_at`` with every progress report; a second delivery of the same
step by another executor stays away while the heartbeat is fresh, and
:func:`cycle_recover` re-dispatches steps whose heartbeat went stale.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Value
from django.db.models.functions import Concat
from django.db.models.signals import post_save
from django.utils import timezone

from annotations.errors import DomainError
from annotations.models import Judgement, Track
from rlhf.models import Cycle, PolicyVersion, RewardModelVersion
from rlhf.proposal_services import proposal_comparisons_create, proposal_edits_create
from rlhf.selectors import cycle_comparisons_label, cycle_preflight
from rlhf.versions import (
    policy_activate,
    policy_active,
    policy_spaces_problem,
    reward_model_activate,
    reward_model_active,
)

if TYPE_CHECKING:
    from rlhf.policy import PolicyConfig

# The research pages import this module to start and watch cycles, so it loads no torch,
# stable-baselines3 or gymnasium: each step imports the learning modules it runs.

Status = Cycle.Status
STEPS = ("train_reward_model", "train_policy", "propose")
STEP_STATUS = {
    "train_reward_model": Status.TRAINING_REWARD_MODEL,
    "train_policy": Status.TRAINING_POLICY,
    "propose": Status.PROPOSING,
}
# Share of the cycle's progress bar each step covers (policy training dominates the wall time).
STEP_SPAN = {"train_reward_model": (0.0, 0.3), "train_policy": (0.3, 0.85), "propose": (0.85, 1.0)}
RUNNING = (Status.QUEUED, Status.TRAINING_REWARD_MODEL, Status.TRAINING_POLICY, Status.PROPOSING)


class CycleError(DomainError, ValueError):
    """A cycle cannot be started or run as asked; the message says why."""

    code = "invalid_parameters"


class CycleBusy(CycleError):
    """Another cycle is running."""

    status_code = 409
    code = "cycle_running"


class CycleRefused(CycleError):
    """The studio holds too little data for a cycle (``rlhf.selectors.cycle_preflight`` says what is short)."""

    status_code = 409
    code = "not_enough_data"


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class CycleParameters:
    """What one cycle does; defaults come from the ``CYCLE_*`` settings.

    Attributes
    ----------
    ppo_timesteps : PPO env steps of policy training in this cycle
    learned_weight : ``w`` of the reward ``w * learned + (1 - w) * dense``
    n_excerpts, n_pairs, random_share, policy_samples : proposal sizes (``rlhf.proposal.ProposalConfig``)
    rm_max_epochs, rm_members, rm_warm_start : reward-model training (``rlhf.reward_model.TrainingConfig``)
    rm_pessimism : over-optimisation guard: the policy is paid the ensemble mean minus this many
        member spreads (0: the plain mean)
    ppo_n_envs, ppo_n_steps, ppo_batch_size : PPO rollout sizes of a first policy (a fine-tune keeps its parent's)
    ppo_imitation_episodes : passages on which a first policy imitates the heuristic before PPO (0: from scratch)
    ppo_heuristic_kl : over-optimisation guard: weight of the per-step KL penalty toward the heuristic's
        soft choice (0: none; ``rlhf.policy.PolicyConfig.heuristic_kl``)
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
    ppo_n_envs: int = 8
    ppo_n_steps: int = 128
    ppo_batch_size: int = 256
    ppo_imitation_episodes: int = 1024
    ppo_heuristic_kl: float = 0.2
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
        "ppo_n_envs": (1, 32),
        "ppo_n_steps": (1, 4096),          # steps per env per rollout
        "ppo_batch_size": (1, 8192),
        "ppo_imitation_episodes": (0, 4096),  # about 90 s and 500 MB of demonstrations at the top
        "ppo_heuristic_kl": (0.0, 10.0),
        "required_judgements": (1, 20),    # annotators per comparison
        "seed": (0, 2**31 - 1),            # numpy seeds must stay < 2**32 once the cycle id is added
    }

    def __post_init__(self) -> None:
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:  # NaN fails too
                raise CycleError(f"cycle parameter {name} must lie in {low}..{high}, got {value}")

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
                elif kind is int:
                    if isinstance(raw, float) and not raw.is_integer():
                        raise ValueError(raw)
                    values[name] = int(raw)
                else:
                    values[name] = float(raw)
            except (TypeError, ValueError):
                raise CycleError(f"cycle parameter {name}: {raw!r} is not a valid {kind.__name__}") from None
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def policy_config(self, *, seed: int, device: str | None) -> "PolicyConfig":
        """The ``rlhf.policy.PolicyConfig`` of this cycle's PPO run (imported here: the site never imports torch)."""
        from rlhf.policy import PolicyConfig

        return PolicyConfig(n_envs=self.ppo_n_envs, n_steps=self.ppo_n_steps, batch_size=self.ppo_batch_size,
                            imitation_episodes=self.ppo_imitation_episodes, heuristic_kl=self.ppo_heuristic_kl,
                            seed=seed, device=device)


# --------------------------------------------------------------------------- start, fail, recover

def _judgement_high_water() -> int:
    return Judgement.objects.aggregate(m=Max("id"))["m"] or 0


def cycle_create(*, parameters: CycleParameters, requested_by=None, trigger: str = "manual") -> Cycle:
    """A queued cycle; raises :class:`CycleBusy` while another cycle runs."""
    try:
        with transaction.atomic():
            return Cycle.objects.create(
                parameters=parameters.to_json(), requested_by=requested_by, trigger=trigger,
                judgements_seen=_judgement_high_water(),
                log=f"{_stamp()} queued ({trigger})\n",
            )
    except IntegrityError:
        running = Cycle.objects.filter(is_running=True).first()
        raise CycleBusy(f"cycle {running.pk if running else '?'} is still running; one cycle runs at a time") from None


def cycle_require_data() -> None:
    """Raise :class:`CycleRefused` with every reason when ``rlhf.selectors.cycle_preflight`` finds too little data."""
    preflight = cycle_preflight()
    if not preflight.ready:
        raise CycleRefused(f"not enough data for a cycle: {preflight.reason}")


def cycle_start(*, parameters: CycleParameters, requested_by=None, trigger: str = "manual") -> Cycle:
    """Create a cycle and send its steps to the training queue once the row is committed.

    Refused up front (:class:`CycleRefused`) when the preflight finds too little data, so a
    researcher learns it now rather than from a failed reward-model step.
    """
    from rlhf.tasks import cycle_dispatch  # tasks import this module

    cycle_require_data()
    cycle = cycle_create(parameters=parameters, requested_by=requested_by, trigger=trigger)
    transaction.on_commit(lambda: cycle_dispatch(cycle.pk, STEPS[0]))
    return cycle


def cycle_fail(*, cycle_id: int, reason: str) -> None:
    """Mark a running cycle failed with ``reason``; versions it registered stay inactive."""
    Cycle.objects.filter(pk=cycle_id, is_running=True).update(
        status=Status.FAILED, is_running=False, error=reason, finished_at=timezone.now(), celery_task_id="",
        log=Concat(F("log"), Value(f"{_stamp()} failed: {reason}\n")),
    )


def pending_step(cycle: Cycle) -> str | None:
    """The first step whose output the cycle lacks (None once it has ended)."""
    if not cycle.is_running:
        return None
    if cycle.reward_model_version_id is None:
        return STEPS[0]
    if cycle.policy_version_id is None:
        return STEPS[1]
    return STEPS[2]


def cycle_recover(*, stale_after_seconds: float | None = None) -> list[Cycle]:
    """Re-dispatch the pending step of a running cycle whose step went silent (its worker was lost).

    Silent means no heartbeat for ``stale_after_seconds`` (default
    ``CYCLE_STALE_MINUTES``); a queued cycle never picked up counts from its creation.
    """
    from rlhf.tasks import cycle_dispatch

    stale = settings.CYCLE_STALE_MINUTES * 60 if stale_after_seconds is None else stale_after_seconds
    cutoff = timezone.now() - timedelta(seconds=stale)
    recovered = []
    with transaction.atomic():
        for cycle in Cycle.objects.select_for_update().filter(is_running=True):
            last = cycle.heartbeat_at or cycle.created_at
            if last > cutoff:
                continue
            step = pending_step(cycle)
            # Forget the lost executor so the re-dispatched step may claim the cycle.
            Cycle.objects.filter(pk=cycle.pk).update(
                celery_task_id="", heartbeat_at=timezone.now(),
                log=Concat(F("log"), Value(f"{_stamp()} no sign of life since {last:%H:%M:%S}: re-dispatching {step}\n")),
            )
            transaction.on_commit(lambda pk=cycle.pk, s=step: cycle_dispatch(pk, s))
            recovered.append(cycle)
    return recovered


def cycle_should_start(*, min_new_judgements: int) -> tuple[bool, str]:
    """Whether the schedule should start a cycle now, and why (or why not)."""
    if Cycle.objects.filter(is_running=True).exists():
        return False, "a cycle is running"
    last = Cycle.objects.order_by("-pk").first()
    since = last.judgements_seen if last is not None else 0
    new = Judgement.objects.filter(pk__gt=since).count()
    if new < min_new_judgements:
        return False, f"{new} new judgements since the last cycle, {min_new_judgements} needed"
    return True, f"{new} new judgements since the last cycle"


# --------------------------------------------------------------------------- running steps

def _stamp() -> str:
    return timezone.now().strftime("%Y-%m-%d %H:%M:%S")


class _Reporter:
    """Writes a step's progress and log lines to the cycle row (the heartbeat), throttled."""

    def __init__(self, cycle_id: int, step: str, echo: Callable[[float, str], None] | None) -> None:
        self.cycle_id = cycle_id
        self.lo, self.hi = STEP_SPAN[step]
        self.echo = echo
        self._last_write = 0.0

    def __call__(self, fraction: float, message: str = "", *, force: bool = False) -> None:
        overall = self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0)
        if self.echo is not None:
            self.echo(overall, message)
        now = timezone.now().timestamp()
        if not (force or message) and now - self._last_write < 2.0:
            return
        self._last_write = now
        changes: dict[str, Any] = {"progress": overall, "heartbeat_at": timezone.now()}
        if message:
            changes["log"] = Concat(F("log"), Value(f"{_stamp()} {message}\n"))
        Cycle.objects.filter(pk=self.cycle_id, is_running=True).update(**changes)


def _claim(cycle_id: int, step: str, executor: str) -> Cycle | None:
    """Lock the cycle and take ``step`` if it still needs running and no live executor holds it."""
    with transaction.atomic():
        cycle = Cycle.objects.select_for_update().get(pk=cycle_id)
        if pending_step(cycle) != step:
            return None  # ended, or this step is done (a redelivered message), or an earlier one is not
        stale = timezone.now() - timedelta(minutes=settings.CYCLE_STALE_MINUTES)
        if cycle.celery_task_id and cycle.celery_task_id != executor and cycle.heartbeat_at and cycle.heartbeat_at > stale:
            return None  # another delivery of this step is running it right now
        now = timezone.now()
        cycle.status = STEP_STATUS[step]
        cycle.celery_task_id = executor
        cycle.heartbeat_at = now
        cycle.started_at = cycle.started_at or now
        cycle.log += f"{_stamp()} {step}: started\n"
        cycle.save(update_fields=["status", "celery_task_id", "heartbeat_at", "started_at", "log"])
        return cycle


def cycle_step_run(*, cycle_id: int, step: str, executor: str | None = None,
                   echo: Callable[[float, str], None] | None = None) -> bool:
    """Run ``step`` of the cycle if it still needs running; True when it ran to completion.

    An exception inside the step marks the cycle failed with the reason and
    is not re-raised: the cycle row is the record, and later steps see it ended.
    """
    if step not in STEPS:
        raise CycleError(f"cycle step {step!r} is unknown (steps: {', '.join(STEPS)})")
    executor = executor or f"local-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cycle = _claim(cycle_id, step, executor)
    if cycle is None:
        return False
    report = _Reporter(cycle_id, step, echo)
    try:
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


def _step_train_reward_model(cycle: Cycle, p: CycleParameters, report: _Reporter) -> None:
    from rlhf.reward_model import TrainingConfig, select_device
    from rlhf.reward_services import reward_model_holdout_accuracy, reward_model_train, training_device

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


def _step_train_policy(cycle: Cycle, p: CycleParameters, report: _Reporter) -> None:
    from editing.env import EnvConfig
    from rlhf.policy import train_policy
    from rlhf.policy_services import policy_artifact_path, policy_register, track_arrays
    from rlhf.reward_services import policy_reward, training_device

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
    report(0.0, f"training the policy for {p.ppo_timesteps} steps "
                f"({'fine-tuning ' + parent.label if parent else 'from scratch'}, reward model {reward_model.label})")
    run = train_policy(
        arrays, total_timesteps=p.ppo_timesteps, learned_reward=policy_reward(reward_model, pessimism=p.rm_pessimism),
        env_config=env_config, config=config, parent=policy_artifact_path(parent) if parent else None,
        progress=lambda fraction, message: report(fraction, message),
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
                         "reward_scale": reward_model.metrics.get("reward_scale")},
    )
    report(1.0, f"policy {version.label}: {version.num_timesteps} steps in total, mean learned reward "
                f"{_fmt(summary['mean_learned_reward'])}, dense {_fmt(summary['mean_dense_reward'])}", force=True)


def _step_propose(cycle: Cycle, p: CycleParameters, report: _Reporter) -> None:
    from editing.env import EnvConfig
    from rlhf.policy import EnsembleReward
    from rlhf.policy_services import policy_load, track_arrays
    from rlhf.proposal import ProposalConfig, propose
    from rlhf.reward_services import reward_model_load

    policy, reward_model = cycle.policy_version, cycle.reward_model_version
    previous = policy.parent
    tracks = _tracks()
    arrays = track_arrays(tracks)
    config = ProposalConfig(
        n_excerpts=p.n_excerpts, policy_samples=p.policy_samples, previous_policy_samples=1 if previous else 0,
        random_samples=1, n_pairs=p.n_pairs, random_share=p.random_share, seed=_seed(cycle, p),
    )
    report(0.0, f"proposing {p.n_pairs} pairs from {p.n_excerpts} excerpts")
    proposal = propose(arrays, reward=EnsembleReward(reward_model_load(reward_model)), policy=policy_load(policy),
                       previous_policy=policy_load(previous) if previous else None, config=config,
                       env_config=EnvConfig(learned_weight=p.learned_weight))
    report(0.3, f"{len(proposal.candidates)} distinct candidates ({proposal.n_duplicates_dropped} duplicates dropped), "
                f"{len(proposal.pairs)} pairs chosen; rendering")
    rendered = proposal_edits_create(proposal=proposal, tracks=tracks, policy=policy, previous=previous)
    with transaction.atomic():
        row = Cycle.objects.select_for_update().get(pk=cycle.pk)
        if not row.is_running:
            return  # ended meanwhile (failed by an operator): create nothing
        comparisons = proposal_comparisons_create(rendered=rendered, proposed_by=cycle_comparisons_label(cycle),
                                                  reward_model=reward_model,
                                                  required_judgements=p.required_judgements)
        reward_model_activate(version=reward_model)
        policy_activate(version=policy)
        by = {"disagreement": 0, "random": 0, "anchor": 0}
        for r in rendered:
            by[r.pair.chosen_by] += 1
        row.metrics = {**row.metrics, "proposal": {
            "n_candidates": len(proposal.candidates), "n_duplicates_dropped": proposal.n_duplicates_dropped,
            "n_comparisons": len(comparisons), "n_by_disagreement": by["disagreement"], "n_random": by["random"],
            "n_anchor": by["anchor"],
        }}
        row.status = Status.DONE
        row.is_running = False
        row.progress = 1.0
        row.finished_at = timezone.now()
        row.celery_task_id = ""
        row.log += (f"{_stamp()} {len(comparisons)} comparisons created; "
                    f"{reward_model.label} and policy {policy.label} are active; done\n")
        row.save(update_fields=["metrics", "status", "is_running", "progress", "finished_at", "celery_task_id", "log"])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_STEP_FUNCTIONS: dict[str, Callable[[Cycle, CycleParameters, _Reporter], None]] = {
    "train_reward_model": _step_train_reward_model,
    "train_policy": _step_train_policy,
    "propose": _step_propose,
}


# --------------------------------------------------------------------------- reading

def cycle_status(cycle: Cycle) -> dict[str, Any]:
    """What the live page and the API show of a cycle."""
    return {
        "id": cycle.pk,
        "status": cycle.status,
        "status_display": cycle.get_status_display(),
        "is_running": cycle.is_running,
        "progress": round(cycle.progress, 4),
        "log": cycle.log,
        "error": cycle.error,
        "parameters": cycle.parameters,
        "metrics": cycle.metrics,
        "trigger": cycle.trigger,
        "reward_model_version": cycle.reward_model_version.label if cycle.reward_model_version_id else None,
        "policy_version": cycle.policy_version.label if cycle.policy_version_id else None,
        "created_at": cycle.created_at.isoformat(),
        "started_at": cycle.started_at.isoformat() if cycle.started_at else None,
        "finished_at": cycle.finished_at.isoformat() if cycle.finished_at else None,
    }

"""A cycle's life outside its steps: create, start, fail, recover, claim a step, report progress, read status.

Torch-free: the research pages and the API start and watch cycles through this module;
the steps themselves (``rlhf.cycle.steps``) run in a worker.

Only one cycle runs at a time: ``Cycle.is_running`` is True from creation until
the cycle ends, and a partial unique constraint allows one such row.
A step being executed records its executor (the Celery task id) and refreshes
``heartbeat_at`` with every progress report; a second delivery of the same
step by another executor stays away while the heartbeat is fresh, and
:func:`cycle_recover` re-dispatches steps whose heartbeat went stale (``annotations.jobs``:
the steps also beat from a thread while they run, see ``rlhf.cycle.steps``).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from annotations.jobs import JobKind, jobs_recover
from annotations.models import Judgement
from rlhf.cycle.errors import CycleBusy, CycleRefused
from rlhf.cycle.parameters import CycleParameters
from rlhf.dispatch import cycle_dispatch
from rlhf.models import Cycle
from rlhf.selectors import cycle_preflight

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


# --------------------------------------------------------------------------- start, fail, recover

def _judgement_high_water() -> int:
    return Judgement.objects.aggregate(m=Max("id"))["m"] or 0


def cycle_create(*, parameters: CycleParameters, requested_by=None, trigger: str = "manual") -> Cycle:
    """A queued cycle; raises :class:`CycleBusy` while another cycle runs.

    Before refusing, a running cycle whose worker stopped is recovered (:func:`cycle_recover`): one
    that has used up its re-dispatches fails, and the new cycle takes its place.
    """
    cycle = _cycle_insert(parameters=parameters, requested_by=requested_by, trigger=trigger)
    if cycle is None and cycle_recover():
        cycle = _cycle_insert(parameters=parameters, requested_by=requested_by, trigger=trigger)
    if cycle is None:
        running = Cycle.objects.filter(is_running=True).first()
        raise CycleBusy(f"cycle {running.pk if running else '?'} is still running; one cycle runs at a time")
    return cycle


def _cycle_insert(*, parameters: CycleParameters, requested_by, trigger: str) -> Cycle | None:
    """The new queued cycle, or None when another one runs (the one-running-cycle constraint)."""
    try:
        with transaction.atomic():
            return Cycle.objects.create(
                parameters=parameters.to_json(), requested_by=requested_by, trigger=trigger,
                judgements_seen=_judgement_high_water(),
                log=f"{stamp()} queued ({trigger})\n",
            )
    except IntegrityError:
        return None


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
    cycle_require_data()
    cycle = cycle_create(parameters=parameters, requested_by=requested_by, trigger=trigger)
    transaction.on_commit(lambda: cycle_dispatch(cycle.pk, STEPS))
    return cycle


def cycle_fail(*, cycle_id: int, reason: str) -> None:
    """Mark a running cycle failed with ``reason``; versions it registered stay inactive."""
    Cycle.objects.filter(pk=cycle_id, is_running=True).update(
        status=Status.FAILED, is_running=False, error=reason, finished_at=timezone.now(), celery_task_id="",
        log=Concat(F("log"), Value(f"{stamp()} failed: {reason}\n")),
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
    """Recover running cycles that went silent; returns them.

    A step a worker took whose heartbeat is older than ``stale_after_seconds`` (default
    ``JOB_STALE_AFTER_SECONDS``) lost its worker: it is re-dispatched, or the cycle fails once it
    was re-dispatched ``CYCLE_MAX_REDISPATCHES`` times (through :func:`annotations.jobs.jobs_recover`,
    like every long job).  A queued cycle that no worker took within ``CYCLE_STALE_MINUTES``
    (or ``stale_after_seconds``) lost its message and is dispatched again.
    """
    recovered = [r.pk for r in jobs_recover(stale_after_seconds=stale_after_seconds, kinds=[CYCLE_JOB.name])]
    queued_stale = settings.CYCLE_STALE_MINUTES * 60 if stale_after_seconds is None else stale_after_seconds
    cutoff = timezone.now() - timedelta(seconds=queued_stale)
    with transaction.atomic():
        for cycle in Cycle.objects.select_for_update().filter(
                is_running=True, status=Status.QUEUED, celery_task_id="", created_at__lte=cutoff).exclude(
                heartbeat_at__gt=cutoff).exclude(pk__in=recovered):
            _cycle_redispatch(cycle, f"not taken by a worker since {cycle.heartbeat_at or cycle.created_at:%H:%M:%S}")
            recovered.append(cycle.pk)
    return list(Cycle.objects.filter(pk__in=recovered).order_by("pk"))


def _cycle_redispatch(cycle: Cycle, why: str) -> None:
    step = pending_step(cycle)
    # Forget the lost executor so the re-dispatched step may claim the cycle.
    Cycle.objects.filter(pk=cycle.pk).update(
        celery_task_id="", heartbeat_at=timezone.now(),
        log=Concat(F("log"), Value(f"{stamp()} {why}: re-dispatching {step}\n")),
    )
    transaction.on_commit(lambda pk=cycle.pk, s=step: cycle_dispatch(pk, STEPS[STEPS.index(s):]))


def _cycle_end_stale(cycle: Cycle, reason: str) -> None:
    """A taken step went silent: re-dispatch it, or fail the cycle when its steps keep losing their worker."""
    if cycle.log.count(REDISPATCH_MARK) >= settings.CYCLE_MAX_REDISPATCHES:
        cycle_fail(cycle_id=cycle.pk, reason=f"{pending_step(cycle)}: {reason} after "
                                             f"{settings.CYCLE_MAX_REDISPATCHES} re-dispatches; start a new cycle")
        return
    _cycle_redispatch(cycle, f"{reason}, {REDISPATCH_MARK}")


REDISPATCH_MARK = "its step is sent again"
CYCLE_JOB = JobKind(name="cycle", model=Cycle, running=RUNNING, end=_cycle_end_stale,
                    taken=~Q(celery_task_id=""))


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

def stamp() -> str:
    return timezone.now().strftime("%Y-%m-%d %H:%M:%S")


class Reporter:
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
            changes["log"] = Concat(F("log"), Value(f"{stamp()} {message}\n"))
        Cycle.objects.filter(pk=self.cycle_id, is_running=True).update(**changes)


def claim_step(cycle_id: int, step: str, executor: str) -> Cycle | None:
    """Lock the cycle and take ``step`` if it still needs running and no live executor holds it."""
    with transaction.atomic():
        cycle = Cycle.objects.select_for_update().get(pk=cycle_id)
        if pending_step(cycle) != step:
            return None  # ended, or this step is done (a redelivered message), or an earlier one is not
        stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)
        if cycle.celery_task_id and cycle.celery_task_id != executor and cycle.heartbeat_at and cycle.heartbeat_at > stale:
            return None  # another delivery of this step is running it right now
        now = timezone.now()
        cycle.status = STEP_STATUS[step]
        cycle.celery_task_id = executor
        cycle.heartbeat_at = now
        cycle.started_at = cycle.started_at or now
        cycle.log += f"{stamp()} {step}: started\n"
        cycle.save(update_fields=["status", "celery_task_id", "heartbeat_at", "started_at", "log"])
        return cycle



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

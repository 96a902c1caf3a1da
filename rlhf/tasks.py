"""Celery tasks of the learning side: thin wrappers over the services (routed to the "training" queue)."""
from __future__ import annotations

from celery import chain, shared_task


@shared_task(name="rlhf.tasks.train_reward_model_task")
def train_reward_model_task(*, seed: int = 0, warm_start: bool = False, activate: bool = True,
                            include_gold: bool = False, min_gold_accuracy: float | None = None,
                            config: dict | None = None) -> int:
    """Train and register a reward-model version; returns its id.  ``config`` overrides TrainingConfig fields."""
    # torch is imported here, in the worker, not when Django loads the task modules.
    from rlhf.reward_model import TrainingConfig
    from rlhf.reward_services import reward_model_train

    training = TrainingConfig(**{"seed": seed, **(config or {})})
    version = reward_model_train(config=training, warm_start=warm_start, activate=activate,
                                 include_gold=include_gold, min_gold_accuracy=min_gold_accuracy)
    return version.pk


# --------------------------------------------------------------------------- the retrain cycle

@shared_task(name="rlhf.tasks.run_cycle_step", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_cycle_step(self, cycle_id: int, step: str) -> bool:
    """One step of a cycle (``rlhf.cycle.STEPS``); a no-op when the step is done or the cycle has ended."""
    from rlhf.cycle import cycle_step_run

    return cycle_step_run(cycle_id=cycle_id, step=step, executor=self.request.id or None)


def cycle_dispatch(cycle_id: int, from_step: str) -> None:
    """Send the cycle's steps from ``from_step`` on, each after the previous one succeeded.

    The first step is sent with the rest linked to it: sending goes through the
    task class (``apply_async``), which is where the Celery app's configuration
    decides on a worker, a thread of the site or an inline run.  A ``chain``'s
    own eager path would bypass that choice and run the whole cycle inside the
    request.
    """
    from rlhf.cycle import STEPS

    first, *rest = (run_cycle_step.si(cycle_id, step) for step in STEPS[STEPS.index(from_step):])
    if rest:
        first.link(chain(*rest) if len(rest) > 1 else rest[0])
    first.delay()


@shared_task(name="rlhf.tasks.maybe_start_cycle")
def maybe_start_cycle(min_new_judgements: int | None = None) -> str:
    """Periodic (django-celery-beat): recover a lost cycle, else start one when enough judgements are new."""
    from django.conf import settings

    from rlhf.cycle import CycleBusy, CycleParameters, CycleRefused, cycle_recover, cycle_should_start, cycle_start

    recovered = cycle_recover()
    if recovered:
        return f"re-dispatched cycle {', '.join(str(c.pk) for c in recovered)}"
    threshold = settings.CYCLE_MIN_NEW_JUDGEMENTS if min_new_judgements is None else min_new_judgements
    start, reason = cycle_should_start(min_new_judgements=threshold)
    if not start:
        return f"no cycle started: {reason}"
    try:
        cycle = cycle_start(parameters=CycleParameters.defaults(), trigger="schedule")
    except (CycleBusy, CycleRefused) as err:
        return f"no cycle started: {err}"
    return f"started cycle {cycle.pk}: {reason}"


# --------------------------------------------------------------------------- retargeting

@shared_task(name="rlhf.tasks.retarget_job_task")
def retarget_job_task(job_id: int) -> str:
    """Make the edits of a retarget job (``rlhf.retarget_services.retarget_job_run``); returns its status."""
    from rlhf.retarget_services import retarget_job_run

    return retarget_job_run(job_id=job_id).status

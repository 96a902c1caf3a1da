"""Celery tasks of the learning side: thin wrappers over the services, queued by name (``rlhf.dispatch``).

Training tasks go to the "training" queue (``CELERY_TASK_ROUTES``); this module imports the
steps it runs, and so torch: it is loaded by workers and by the site only where the site
runs its own tasks (no broker; see ``feedback_site.celery``), never by a page.
"""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from rlhf.cycle.errors import CycleBusy, CycleRefused
from rlhf.cycle.parameters import CycleParameters
from rlhf.cycle.reward_services import reward_model_train
from rlhf.cycle.state import cycle_recover, cycle_should_start, cycle_start
from rlhf.cycle.steps import cycle_step_run
from rlhf.dispatch import CYCLE_STEP_TASK, RETARGET_JOB_TASK
from rlhf.learning.configs import TrainingConfig
from rlhf.retarget.run import retarget_job_run


@shared_task(name="rlhf.tasks.train_reward_model_task")
def train_reward_model_task(*, seed: int = 0, warm_start: bool = False, activate: bool = True,
                            include_gold: bool = False, min_gold_accuracy: float | None = None,
                            config: dict | None = None) -> int:
    """Train and register a reward-model version; returns its id.  ``config`` overrides TrainingConfig fields."""
    training = TrainingConfig(**{"seed": seed, **(config or {})})
    version = reward_model_train(config=training, warm_start=warm_start, activate=activate,
                                 include_gold=include_gold, min_gold_accuracy=min_gold_accuracy)
    return version.pk


@shared_task(name=CYCLE_STEP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_cycle_step(self, cycle_id: int, step: str) -> bool:
    """One step of a cycle (``rlhf.cycle.state.STEPS``); a no-op when the step is done or the cycle has ended."""
    return cycle_step_run(cycle_id=cycle_id, step=step, executor=self.request.id or None)


@shared_task(name="rlhf.tasks.maybe_start_cycle")
def maybe_start_cycle(min_new_judgements: int | None = None) -> str:
    """Periodic (django-celery-beat): recover a lost cycle, else start one when enough judgements are new."""
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


@shared_task(name=RETARGET_JOB_TASK)
def retarget_job_task(job_id: int) -> str:
    """Make the edits of a retarget job (``rlhf.retarget.run.retarget_job_run``); returns its status."""
    return retarget_job_run(job_id=job_id).status

"""Retarget a track to a duration: the trained policy in use, the one service behind the command, the page and the API.

A *method* makes the edit of a checked plan (``editing.retarget.plan_retarget``):

- ``heuristic``: the retargeting dynamic program (``editing.baselines.retarget_heuristic``);
- ``policy``: the active policy's most probable edit;
- ``best-of-N`` (2 <= N <= 64): the policy's most probable edit and N - 1 sampled ones, scored
  by the active reward-model ensemble; the highest mean reward wins.

Every method stores its edit through ``annotations.services.edit_create`` (rendered, reused when
identical), so its result can be played, downloaded and sent to the annotators as a
comparison: both edits of a job share the passage and the target by construction.

The site's processes call only :func:`retarget_job_start` and :func:`retarget_job_send`;
the work (``retarget_job_run``) runs in a task, where torch is loaded.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotations.errors import DomainError
from annotations.models import Comparison, Edit, Track
from annotations.services import comparison_create, edit_create, track_ingest, track_load_analysis
from editing.retarget import RetargetError, RetargetPlan, parse_duration, plan_retarget
from rlhf.models import RetargetJob
from rlhf.versions import policy_active, policy_spaces_problem, reward_model_active

DEFAULT_METHODS = ("best-of-8", "heuristic")
MAX_BEST_OF = 64
_METHOD = re.compile(r"^(policy|heuristic|best-of-(\d+))$")


class RetargetServiceError(DomainError, ValueError):
    """A retarget request that cannot be met as asked (a bad duration, range or method); the message says why."""

    code = "retarget_refused"


class RetargetConflict(RetargetServiceError):
    """A valid request the studio cannot serve now: no active policy yet, or a job not ready to send."""

    status_code = 409
    code = "retarget_conflict"


@dataclass(frozen=True)
class Method:
    """``name`` is "policy", "heuristic" or "best-of"; ``n`` is N for best-of (else 1)."""

    name: str
    n: int = 1

    @property
    def label(self) -> str:
        return f"best-of-{self.n}" if self.name == "best-of" else self.name

    @property
    def uses_policy(self) -> bool:
        return self.name != "heuristic"


@dataclass(frozen=True)
class RetargetOutcome:
    """What one method made: the stored edit, its seams, and the reward model's score (None without one)."""

    method: str
    edit: Edit
    reward: float | None
    reward_model: str | None
    seam_seconds: tuple[float, ...]
    duration_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "edit_id": self.edit.pk,
            "source": self.edit.source,
            "reward": self.reward,
            "reward_model": self.reward_model,
            "seam_seconds": list(self.seam_seconds),
            "duration_seconds": self.duration_seconds,
        }


def method_parse(text: str) -> Method:
    """``"policy"``, ``"heuristic"`` or ``"best-of-N"``; raises :class:`RetargetServiceError` otherwise."""
    match = _METHOD.match(str(text).strip().lower())
    if match is None:
        raise RetargetServiceError(f"method {text!r}: expected policy, heuristic or best-of-N (for example best-of-8)")
    if match.group(2) is None:
        return Method(match.group(1))
    n = int(match.group(2))
    if not 2 <= n <= MAX_BEST_OF:
        raise RetargetServiceError(f"method {text!r}: N must be 2..{MAX_BEST_OF}")
    return Method("best-of", n)


def retarget_policy_problem() -> str | None:
    """Why no policy can retarget now (none is active, or the active one was trained for other spaces), or None."""
    active = policy_active()
    if active is None:
        return "no active policy yet: run a retrain cycle first (Research page or manage.py run_cycle)"
    return policy_spaces_problem(active)


def retarget_methods_check(methods: Sequence[str]) -> list[Method]:
    """Parse methods and check that what they need exists now.

    Raises
    ------
    RetargetServiceError
        On an unknown method, or a policy method with no usable policy (none is active yet, or the
        active one was trained for other spaces; the message offers the heuristic), or best-of-N
        without an active reward model.
    """
    if not methods:
        raise RetargetServiceError("no method given: use policy, heuristic or best-of-N")
    parsed = [method_parse(m) for m in methods]
    if any(m.uses_policy for m in parsed):
        problem = retarget_policy_problem()
        if problem:
            raise RetargetConflict(f"{problem}: use the heuristic (--method heuristic)")
    if any(m.name == "best-of" for m in parsed) and reward_model_active() is None:
        raise RetargetConflict("best-of-N needs an active reward model to choose with: use policy or heuristic")
    return parsed


def retarget_plan(*, track: Track, duration: str | float, from_beat: int | None = None,
                  to_beat: int | None = None) -> RetargetPlan:
    """The checked plan for ``track``; raises :class:`RetargetServiceError` with the reason."""
    analysis = track_load_analysis(track)
    try:
        return plan_retarget(beat_samples=analysis.beat_samples, bar_positions=analysis.bar_positions,
                             sample_rate=analysis.sample_rate, target_seconds=parse_duration(duration),
                             from_beat=from_beat, to_beat=to_beat, name=track.title)
    except RetargetError as err:
        raise RetargetServiceError(str(err)) from err


def retarget_run(*, track: Track, plan: RetargetPlan, method: Method, seed: int = 0) -> RetargetOutcome:
    """Make, render and store the edit of ``plan`` by ``method``."""
    # Imported here: torch and stable-baselines3 load in the worker or command, never in the site.
    from editing.baselines import BASELINE_EDIT_SOURCES, HEURISTIC, baseline_actions
    from editing.edit import EditBuilder, apply_actions
    from editing.env import TrackArrays

    analysis = track_load_analysis(track)  # once: the env's arrays, the bars and the render all read it
    arrays = TrackArrays(name=track.title, features=analysis.features, beat_samples=analysis.beat_samples,
                         bar_positions=analysis.bar_positions)
    bars = analysis.bar_positions[plan.start_beat: plan.start_beat + plan.n_beats]
    rng = np.random.default_rng(seed)
    if not method.uses_policy:
        actions = baseline_actions(HEURISTIC, rng=rng, context=arrays.dense, excerpt_start=plan.start_beat,
                                   bar_positions=bars, target_beats=plan.target_beats)
        source = BASELINE_EDIT_SOURCES[HEURISTIC]
    else:
        version = policy_active()
        if version is None:
            raise RetargetConflict("no active policy yet: use the heuristic")
        source = version.source
        if EditBuilder(plan.n_beats, bars, plan.start_beat, target_beats=plan.target_beats).done:
            actions = []  # nothing between the opening and final bars to decide
        else:
            actions = _policy_actions(version, arrays, plan, method, rng)
    apply_actions(actions, excerpt_start=plan.start_beat, bar_positions=bars, target_beats=plan.target_beats)
    edit = edit_create(track=track, actions=actions, excerpt_start=plan.start_beat, n_source_beats=plan.n_beats,
                       target_beats=plan.target_beats, source=source, analysis=analysis)
    reward, label = _reward_of(edit)
    return RetargetOutcome(method=method.label, edit=edit, reward=reward, reward_model=label,
                           seam_seconds=tuple(float(s) for s in edit.render.get("seam_seconds", [])),
                           duration_seconds=float(edit.duration_seconds))


def _policy_actions(version, arrays, plan: RetargetPlan, method: Method, rng: np.random.Generator) -> list[int]:
    from editing.env import Excerpt
    from rlhf.policy import EnsembleReward, best_of_n_actions, sample_actions
    from rlhf.policy_services import policy_load
    from rlhf.reward_services import reward_model_load

    model = policy_load(version)
    excerpt = Excerpt(track_index=0, start=plan.start_beat, n_beats=plan.n_beats, target_beats=plan.target_beats)
    if method.name != "best-of":
        return sample_actions(model, [arrays], [excerpt], deterministic=True, rng=rng)[0]
    reward = EnsembleReward(reward_model_load(reward_model_active()))
    return best_of_n_actions(model, reward, [arrays], [excerpt], n=method.n, rng=rng)[0]


def _reward_of(edit: Edit) -> tuple[float | None, str | None]:
    """The active reward model's normalised score of a stored edit, or (None, None) without one."""
    from rlhf.reward_services import edit_rewards_predict

    version = reward_model_active()
    if version is None:
        return None, None
    rewards = edit_rewards_predict(edits=[edit], version=version)
    return float(rewards.normalized[0]), version.label


# --------------------------------------------------------------------------- jobs (page and API)

def retarget_job_start(*, requested_by, duration: str | float, methods: Sequence[str] = DEFAULT_METHODS,
                       track: Track | None = None, upload=None, from_beat: int | None = None,
                       to_beat: int | None = None) -> RetargetJob:
    """Check a request and queue its job (once the transaction commits).

    Give ``track``, or ``upload`` (an uploaded audio file, ingested by the job: analysis never
    runs inside the request).  What can be checked now is checked now: the duration, the
    methods (a policy method with no active policy is refused, offering the heuristic) and,
    for a known track, the passage and the duration against it.

    Raises
    ------
    RetargetServiceError
    """
    from rlhf.tasks import retarget_job_task

    if (track is None) == (upload is None):
        raise RetargetServiceError("give a track or an audio file, not both and not neither")
    try:
        seconds = parse_duration(duration)
    except RetargetError as err:
        raise RetargetServiceError(str(err)) from err
    parsed = retarget_methods_check(methods)
    plan = retarget_plan(track=track, duration=seconds, from_beat=from_beat, to_beat=to_beat) if track else None
    with transaction.atomic():
        job = RetargetJob(requested_by=requested_by, track=track, target_seconds=seconds, from_beat=from_beat,
                          to_beat=to_beat, methods=[m.label for m in parsed])
        if plan is not None:
            job.start_beat, job.n_beats, job.target_beats = plan.start_beat, plan.n_beats, plan.target_beats
        if upload is not None:
            job.upload_name = Path(getattr(upload, "name", "upload")).name[:255]
            job.upload.save(job.upload_name, upload, save=False)
        job.save()
        transaction.on_commit(lambda: retarget_job_task.delay(job.pk))
    return job


def _job_update(job: RetargetJob, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(job, name, value)
    RetargetJob.objects.filter(pk=job.pk).update(**fields)


def retarget_job_run(*, job_id: int, echo: Callable[[str], None] | None = None) -> RetargetJob:
    """Run a queued job: ingest an upload, plan, make each method's edit.  Idempotent: a job not queued is left alone."""
    claimed = RetargetJob.objects.filter(pk=job_id, status=RetargetJob.Status.QUEUED).update(
        status=RetargetJob.Status.RUNNING, message="starting")
    job = RetargetJob.objects.get(pk=job_id)
    if not claimed:
        return job
    try:
        if job.track is None:
            _job_update(job, message=f"analysing {job.upload_name}", progress=0.05)
            _ingest_upload(job)
        plan = retarget_plan(track=job.track, duration=job.target_seconds, from_beat=job.from_beat, to_beat=job.to_beat)
        _job_update(job, start_beat=plan.start_beat, n_beats=plan.n_beats, target_beats=plan.target_beats)
        methods = retarget_methods_check(job.methods)
        results = []
        for i, method in enumerate(methods):
            _job_update(job, message=f"{method.label}: editing", progress=0.1 + 0.9 * i / len(methods))
            outcome = retarget_run(track=job.track, plan=plan, method=method, seed=job.pk)
            results.append(outcome.to_json())
            if echo is not None:
                echo(f"{method.label}: {outcome.edit.source}, {outcome.duration_seconds:.1f} s")
        _job_update(job, results=results, status=RetargetJob.Status.DONE, progress=1.0, message="done",
                    finished_at=timezone.now())
    except ValueError as err:  # every refusal on the way (audio, plan, method) is one, with its reason
        _job_update(job, status=RetargetJob.Status.FAILED, error=str(err), message="failed", finished_at=timezone.now())
    return job


def _ingest_upload(job: RetargetJob) -> None:
    """Ingest the job's uploaded file (a known file is reused by content) and drop the upload."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(job.upload_name).name
        with default_storage.open(job.upload.name, "rb") as src, open(local, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        try:
            track, _ = track_ingest(path=local, title=Path(job.upload_name).stem)
        except ValueError as err:
            # The decoder names the file by its temporary path: people see the name they uploaded.
            raise RetargetServiceError(str(err).replace(f"{tmp}/", "").replace(tmp, "")) from err
        finally:
            default_storage.delete(job.upload.name)
    _job_update(job, track=track, upload="")


def retarget_job_send(*, job: RetargetJob) -> Comparison:
    """Send a finished job's two edits to the annotators as a comparison (once: a second call returns it)."""
    with transaction.atomic():
        job = RetargetJob.objects.select_for_update().get(pk=job.pk)
        if job.comparison_id is not None:
            return job.comparison
        if job.status != RetargetJob.Status.DONE or len(job.results) < 2:
            raise RetargetConflict(f"retarget {job.pk}: needs two finished results to compare")
        edit_a = Edit.objects.get(pk=job.results[0]["edit_id"])
        edit_b = Edit.objects.get(pk=job.results[1]["edit_id"])
        if edit_a.actions_key == edit_b.actions_key:
            raise RetargetConflict(f"retarget {job.pk}: both methods made the same edit; there is nothing to compare")
        comparison = comparison_create(edit_a=edit_a, edit_b=edit_b, proposed_by=f"retarget:{job.pk}")
        job.comparison = comparison
        job.save(update_fields=["comparison"])
    return comparison

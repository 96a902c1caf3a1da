"""Retarget a track to a duration: the requests side (methods, plans, jobs), torch-free.

A *method* makes the edit of a checked plan (``editing.retarget.plan_retarget``):

- ``heuristic``: the retargeting dynamic program (``editing.baselines.retarget_heuristic``);
- ``learned``: the same dynamic program priced by the active seam model (the heuristic's seam
  cost plus the residual learned from judgements, pessimistic where they disagree:
  ``rlhf.learning.seam_model.learned_plan``);
- ``policy``: the active policy's most probable edit;
- ``best-of-N`` (2 <= N <= 64): the policy's most probable edit and N - 1 sampled ones, the
  heuristic's edit and, with an active seam model, the learned planner's plan and its cheapest
  single departures, scored by the active reward-model ensemble; the highest mean reward wins,
  and the result says which candidate it was (``chosen_from``).

The page, the API and ``manage.py retarget`` check requests here; the edits are made by
``rlhf.retarget.run`` (in a task for the page and the API, where torch is loaded).  An
uploaded file goes through the annotation side's upload path (``annotations.uploads``): one
size limit, one path scrub, one analysis.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from django.db import transaction
from django.utils import timezone

from annotations.errors import DomainError
from annotations.jobs import JobKind, job_stored_names
from annotations.models import Comparison, Edit, Track
from annotations.services import (
    comparison_create, edit_files_unreferenced_remove, track_load_analysis, track_sound_edges,
)
from annotations.uploads import track_upload_store
from editing.audio import AudioError, TrackAnalysis
from editing.retarget import DurationBounds, RetargetError, RetargetPlan, duration_bounds, parse_duration, plan_retarget
from rlhf.dispatch import retarget_job_enqueue
from rlhf.learning.configs import BEST_OF_N
from rlhf.models import RetargetJob
from rlhf.selectors import retarget_comparisons_label, seam_model_record
from rlhf.versions import policy_active, policy_spaces_problem, reward_model_active, seam_model_active

DEFAULT_METHODS = (f"best-of-{BEST_OF_N}", "heuristic")
MAX_BEST_OF = 64
_METHOD = re.compile(r"^(policy|heuristic|learned|best-of-(\d+))$")
_METHOD_NAMES = "policy, heuristic, learned or best-of-N"


class RetargetServiceError(DomainError, ValueError):
    """A retarget request that cannot be met as asked (a bad duration, range or method); the message says why."""

    code = "retarget_refused"


class RetargetConflict(RetargetServiceError):
    """A valid request the studio cannot serve now: no active policy yet, or a job not ready to send."""

    status_code = 409
    code = "retarget_conflict"


@dataclass(frozen=True)
class Method:
    """``name`` is "policy", "heuristic", "learned" or "best-of"; ``n`` is N for best-of (else 1)."""

    name: str
    n: int = 1

    @property
    def label(self) -> str:
        return f"best-of-{self.n}" if self.name == "best-of" else self.name

    @property
    def uses_policy(self) -> bool:
        return self.name in ("policy", "best-of")


def method_parse(text: str) -> Method:
    """``"policy"``, ``"heuristic"``, ``"learned"`` or ``"best-of-N"``; raises :class:`RetargetServiceError` otherwise."""
    match = _METHOD.match(str(text).strip().lower())
    if match is None:
        raise RetargetServiceError(f"method {text!r}: expected {_METHOD_NAMES} (for example best-of-{BEST_OF_N})")
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
        active one was trained for other spaces; the message offers the heuristic), best-of-N
        without an active reward model, or learned without an active seam model.
    """
    if not methods:
        raise RetargetServiceError(f"no method given: use {_METHOD_NAMES}")
    parsed = [method_parse(m) for m in methods]
    if any(m.uses_policy for m in parsed):
        problem = retarget_policy_problem()
        if problem:
            raise RetargetConflict(f"{problem}: use the heuristic (--method heuristic)")
    if any(m.name == "best-of" for m in parsed) and reward_model_active() is None:
        raise RetargetConflict("best-of-N needs an active reward model to choose with: use policy or heuristic")
    if any(m.name == "learned" for m in parsed) and seam_model_active() is None:
        raise RetargetConflict("no active seam model yet: run a retrain cycle first, or use the heuristic "
                               "(--method heuristic)")
    return parsed


def _track_analysis(track: Track) -> TrackAnalysis:
    """The track's stored analysis; a row without one (never ingested) is refused, not a server error."""
    if not track.analysis:
        raise RetargetConflict(f"{track.title}: no analysis is stored for it; ingest its audio again")
    return track_load_analysis(track)


def retarget_plan(*, track: Track, duration: str | float, from_beat: int | None = None,
                  to_beat: int | None = None, analysis: TrackAnalysis | None = None) -> RetargetPlan:
    """The checked plan for ``track``; raises :class:`RetargetServiceError` with the reason.

    The track's lead-in and ring-out count towards the duration (read from the source's first and
    last seconds); a source whose fidelity the output cannot keep (more than two channels, 8-bit)
    is refused here, before any work.

    ``analysis``: the track's analysis when the caller has it already (it is read once per request).
    """
    analysis = analysis if analysis is not None else _track_analysis(track)
    try:
        edges = track_sound_edges(track, analysis)
        return plan_retarget(beat_samples=analysis.beat_samples, bar_positions=analysis.bar_positions,
                             sample_rate=analysis.sample_rate, target_seconds=parse_duration(duration),
                             from_beat=from_beat, to_beat=to_beat, name=track.title,
                             lead_in_seconds=edges.lead_in_seconds, ring_out_seconds=edges.ring_out_seconds)
    except (RetargetError, AudioError) as err:
        raise RetargetServiceError(str(err)) from err


def retarget_bounds(*, track: Track, from_beat: int | None = None, to_beat: int | None = None,
                    analysis: TrackAnalysis | None = None) -> DurationBounds:
    """The durations ``track`` (or beats ``[from_beat, to_beat)`` of it) may be retargeted to: what
    :func:`retarget_plan` accepts, ends included, as the page's slider and the bounds API offer them.

    Raises
    ------
    RetargetServiceError
        With :func:`retarget_plan`'s reason for a passage it would refuse.
    """
    analysis = analysis if analysis is not None else _track_analysis(track)
    try:
        edges = track_sound_edges(track, analysis)
        return duration_bounds(beat_samples=analysis.beat_samples, bar_positions=analysis.bar_positions,
                               sample_rate=analysis.sample_rate,
                               from_beat=from_beat, to_beat=to_beat, name=track.title,
                               lead_in_seconds=edges.lead_in_seconds, ring_out_seconds=edges.ring_out_seconds)
    except (RetargetError, AudioError) as err:
        raise RetargetServiceError(str(err)) from err


@dataclass(frozen=True)
class DefaultMethods:
    """What a request that names no method gets, and why, in one line the page and the command show."""

    methods: tuple[str, ...]
    reason: str


def retarget_default_methods() -> DefaultMethods:
    """The learned planner once its record against the heuristic is sure (lower 95 % bound above 0.5), else
    best-of-N as far as the active versions allow; the heuristic always beside it."""
    seam = seam_model_active()
    record = seam_model_record(seam) if seam is not None else None
    if record is not None and record.share.low is not None and record.share.low > 0.5:
        return DefaultMethods(("learned", "heuristic"), (
            f"learned: {seam.label} beats the heuristic {record.share.value:.2f} "
            f"[{record.share.low:.2f}, {record.share.high:.2f}] over {record.n_judgements:g} judgements"))
    why_not = ("no seam model is active yet" if seam is None else
               f"{seam.label} has no judged pairs against the heuristic yet" if record is None else
               f"{seam.label} wins {record.share.value:.2f} [{record.share.low:.2f}, {record.share.high:.2f}] "
               f"against the heuristic, not surely above 0.5")
    policy = policy_active()
    if policy is None or policy_spaces_problem(policy):
        return DefaultMethods(("heuristic",), f"heuristic: {why_not}, and no usable policy")
    if reward_model_active() is None:
        return DefaultMethods(("policy", "heuristic"), f"policy beside the heuristic: {why_not}")
    return DefaultMethods(DEFAULT_METHODS, f"{DEFAULT_METHODS[0]} beside the heuristic: {why_not}")


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
            job.track_upload = track_upload_store(uploaded_by=requested_by, upload=upload)
            job.upload_name = job.track_upload.original_name
        job.save()
        transaction.on_commit(lambda: retarget_job_enqueue(job.pk))
    return job


RETARGET_RUNNING = (RetargetJob.Status.RUNNING,)


def job_update(job: RetargetJob, **fields: Any) -> None:
    """Record progress of a running job (a job recovery ended meanwhile is not touched)."""
    for name, value in fields.items():
        setattr(job, name, value)
    RetargetJob.objects.filter(pk=job.pk, status__in=RETARGET_RUNNING).update(**fields)


def job_finish(job: RetargetJob, **fields: Any) -> None:
    """Record the end of a running job; if recovery ended it while this process was silent, that ending stands."""
    job_update(job, **fields, finished_at=timezone.now())


def _retarget_end_stale(job: RetargetJob, reason: str) -> None:
    job.status, job.message, job.finished_at = RetargetJob.Status.FAILED, "failed", timezone.now()
    job.error = f"{reason}; start the retarget again"
    job.save(update_fields=["status", "message", "error", "finished_at"])


def _retarget_files_drop(job: RetargetJob) -> None:
    """Remove the files a killed job stored for an edit whose row it never committed (noted in its scratch)."""
    edit_files_unreferenced_remove(job_stored_names("retarget", job.pk))


# Its upload (if any) is a job of its own kind, recovered beside it; its finished edits are whole rows,
# and the files of the edit it was storing when it died are removed.
RETARGET_JOB = JobKind(name="retarget", model=RetargetJob, running=RETARGET_RUNNING, end=_retarget_end_stale,
                       cleanup=_retarget_files_drop)


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
        comparison = comparison_create(edit_a=edit_a, edit_b=edit_b, proposed_by=retarget_comparisons_label(job.pk))
        job.comparison = comparison
        job.save(update_fields=["comparison"])
    return comparison

"""Make the edits of a retarget request: the heuristic, the learned planner, the active policy, or best-of-N.

Best-of-N chooses among the active policy's edits, the heuristic's, and the active learned planner's
plan and its cheapest single departures (``rlhf.learning.policy.best_of_n_actions``); the stored
edit's source names what made the winner (the policy version, the heuristic or the seam model), and
the outcome's ``chosen_from`` says which candidate it was.

Loads torch (the policy and the reward model): it runs in a task for the page and the API,
and in ``manage.py retarget``.  Requests are checked by ``rlhf.retarget.services``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from annotations.jobs import job_run, job_scratch
from annotations.models import Edit, Track
from annotations.services import edit_create, edit_native_ensure, track_load_analysis
from annotations.uploads import track_upload_run
from editing.baselines import BASELINE_EDIT_SOURCES, HEURISTIC, baseline_actions
from editing.audio import TrackAnalysis
from editing.edit import EditBuilder
from editing.env import Excerpt, TrackArrays
from editing.retarget import RetargetPlan
from rlhf.cycle.policy_services import policy_load
from rlhf.cycle.reward_services import edit_rewards_predict, reward_model_load
from rlhf.cycle.seam_services import seam_model_load
from rlhf.learning.learned_reward import EnsembleReward
from rlhf.learning.policy import best_of_n_actions, sample_actions
from rlhf.learning.seam_model import Passage, learned_plan, track_feature_scale
from rlhf.models import PolicyVersion, RetargetJob, SeamModelVersion
from rlhf.retarget.services import (
    RETARGET_JOB, RETARGET_RUNNING, Method, RetargetConflict, RetargetServiceError, job_finish, job_update, retarget_methods_check,
    retarget_plan,
)
from rlhf.versions import SeamServiceError, policy_active, reward_model_active, seam_model_active


@dataclass(frozen=True)
class RetargetOutcome:
    """What one method made: the stored edit, its seams, and the reward model's score (None without one).

    Seams and duration are the delivered file's: the native rendering, with its lead-in and ring-out.
    """

    method: str
    edit: Edit
    reward: float | None
    reward_model: str | None
    seam_seconds: tuple[float, ...]
    duration_seconds: float
    # best-of-N: which candidate won ("policy", "learned", "departure" or "heuristic"; rlhf.learning.policy.BestOfN)
    chosen_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "edit_id": self.edit.pk,
            "source": self.edit.source,
            "reward": self.reward,
            "reward_model": self.reward_model,
            "seam_seconds": list(self.seam_seconds),
            "duration_seconds": self.duration_seconds,
            "chosen_from": self.chosen_from,
        }


def retarget_run(*, track: Track, plan: RetargetPlan, method: Method, seed: int = 0,
                 analysis: TrackAnalysis | None = None, scratch: Path | None = None) -> RetargetOutcome:
    """Make, render and store the edit of ``plan`` by ``method``.

    ``analysis``: the track's analysis when the caller has it (the env's arrays, the bars and
    the render all read it); loaded here otherwise.  ``scratch``: the job's scratch folder, where
    the render's local files go and its stored files are noted (``annotations.services.edit_create``).
    """
    analysis = analysis if analysis is not None else track_load_analysis(track)
    arrays = TrackArrays(name=track.title, features=analysis.features, beat_samples=analysis.beat_samples,
                         bar_positions=analysis.bar_positions)
    bars = analysis.bar_positions[plan.start_beat: plan.start_beat + plan.n_beats]
    rng = np.random.default_rng(seed)
    chosen_from = None
    if method.name == "heuristic":
        actions = baseline_actions(HEURISTIC, rng=rng, context=arrays.dense, excerpt_start=plan.start_beat,
                                   bar_positions=bars, target_beats=plan.target_beats)
        source = BASELINE_EDIT_SOURCES[HEURISTIC]
    elif method.name == "learned":
        seam_version = seam_model_active()
        if seam_version is None:
            raise RetargetConflict("no active seam model yet: use the heuristic")
        passage = Passage(context=arrays.dense, scaled=track_feature_scale(analysis.features), start=plan.start_beat,
                          bar_positions=bars, target_beats=plan.target_beats)
        actions = learned_plan(passage, _seam_model(seam_version))
        source = seam_version.source
    else:
        version = policy_active()
        if version is None:
            raise RetargetConflict("no active policy yet: use the heuristic")
        source = version.source
        if EditBuilder(plan.n_beats, bars, plan.start_beat, target_beats=plan.target_beats).done:
            actions = []  # nothing between the opening and final bars to decide
        elif method.name != "best-of":
            excerpt = Excerpt(track_index=0, start=plan.start_beat, n_beats=plan.n_beats, target_beats=plan.target_beats)
            actions = sample_actions(policy_load(version), [arrays], [excerpt], deterministic=True, rng=rng)[0]
        else:
            actions, source, chosen_from = _best_of_n(version, arrays, plan, method.n, rng)
    edit = edit_create(track=track, actions=actions, excerpt_start=plan.start_beat, n_source_beats=plan.n_beats,
                       target_beats=plan.target_beats, source=source, analysis=analysis, scratch=scratch)
    native = edit_native_ensure(edit=edit, analysis=analysis, scratch=scratch)
    reward, label = _reward_of(edit)
    return RetargetOutcome(method=method.label, edit=edit, reward=reward, reward_model=label,
                           seam_seconds=tuple(float(s) for s in native["seam_seconds"]),
                           duration_seconds=float(native["duration_seconds"]), chosen_from=chosen_from)


def _seam_model(version: SeamModelVersion):
    try:
        return seam_model_load(version)
    except SeamServiceError as err:
        raise RetargetConflict(str(err)) from err


def _best_of_n(version: PolicyVersion, arrays: TrackArrays, plan: RetargetPlan, n: int, rng: np.random.Generator
               ) -> tuple[list[int], str, str]:
    """Best of the policy's ``n`` edits, the heuristic's, and the active learned planner's plan and its cheapest
    departures: (actions, the winner's ``Edit.source``, where it came from)."""
    excerpt = Excerpt(track_index=0, start=plan.start_beat, n_beats=plan.n_beats, target_beats=plan.target_beats)
    reward = EnsembleReward(reward_model_load(reward_model_active()))
    seam_version = seam_model_active()
    seam = _seam_model(seam_version) if seam_version is not None else None
    best = best_of_n_actions(policy_load(version), reward, [arrays], [excerpt], n=n, rng=rng, seam_model=seam)[0]
    if best.source == "policy":
        return best.actions, version.source, best.source
    if best.source == "heuristic":
        return best.actions, BASELINE_EDIT_SOURCES[HEURISTIC], best.source
    return best.actions, seam_version.source, best.source  # the learned plan or a departure: a seam model made it


def _reward_of(edit: Edit) -> tuple[float | None, str | None]:
    """The active reward model's normalised score of a stored edit, or (None, None) without one."""
    version = reward_model_active()
    if version is None:
        return None, None
    rewards = edit_rewards_predict(edits=[edit], version=version)
    return float(rewards.normalized[0]), version.label


def retarget_job_run(*, job_id: int, echo: Callable[[str], None] | None = None) -> RetargetJob:
    """Run a queued job: ingest an upload, plan, make each method's edit.  Idempotent: a job not queued is left alone."""
    def work(job: RetargetJob) -> RetargetJob:
        _retarget_job_make(job, echo)
        job.refresh_from_db()
        return job

    return job_run(RetargetJob, job_id, queued=RetargetJob.Status.QUEUED, started=RetargetJob.Status.RUNNING,
                   running=RETARGET_RUNNING, work=work, message="starting")


def _retarget_job_make(job: RetargetJob, echo: Callable[[str], None] | None) -> None:
    try:
        if job.track is None:
            job_update(job, message=f"analysing {job.upload_name}", progress=0.05)
            job_update(job, track=_track_of_upload(job))
        analysis = track_load_analysis(job.track)  # read once for the plan and every method
        plan = retarget_plan(track=job.track, duration=job.target_seconds, from_beat=job.from_beat,
                             to_beat=job.to_beat, analysis=analysis)
        job_update(job, start_beat=plan.start_beat, n_beats=plan.n_beats, target_beats=plan.target_beats)
        methods = retarget_methods_check(job.methods)
        results = []
        with job_scratch(RETARGET_JOB.name, job.pk) as scratch:
            for i, method in enumerate(methods):
                job_update(job, message=f"{method.label}: editing", progress=0.1 + 0.9 * i / len(methods))
                outcome = retarget_run(track=job.track, plan=plan, method=method, seed=job.pk, analysis=analysis,
                                       scratch=scratch)
                results.append(outcome.to_json())
                if echo is not None:
                    echo(f"{method.label}: {outcome.edit.source}, {outcome.duration_seconds:.1f} s")
        job_finish(job, results=results, status=RetargetJob.Status.DONE, progress=1.0, message="done")
    except ValueError as err:  # every refusal on the way (audio, plan, method) is one, with its reason
        job_finish(job, status=RetargetJob.Status.FAILED, error=str(err), message="failed")


def _track_of_upload(job: RetargetJob) -> Track:
    """The track of the job's upload, analysed by the annotation side's one upload path (a known file is reused)."""
    upload = job.track_upload
    if upload is None:
        raise RetargetServiceError(f"retarget {job.pk}: neither a track nor an uploaded file")
    if upload.status == upload.Status.QUEUED:
        upload = track_upload_run(upload_id=upload.pk)
    if upload.track_id is None:
        raise RetargetServiceError(upload.message or f"{upload.original_name}: the analysis did not finish")
    return upload.track

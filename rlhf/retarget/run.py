"""Make the edits of a retarget request: the heuristic, the learned planner, the active policy, or best-of-N.

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
from rlhf.models import RetargetJob
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
        try:
            model = seam_model_load(seam_version)
        except SeamServiceError as err:
            raise RetargetConflict(str(err)) from err
        actions = learned_plan(passage, model)
        source = seam_version.source
    else:
        version = policy_active()
        if version is None:
            raise RetargetConflict("no active policy yet: use the heuristic")
        source = version.source
        if EditBuilder(plan.n_beats, bars, plan.start_beat, target_beats=plan.target_beats).done:
            actions = []  # nothing between the opening and final bars to decide
        else:
            actions = _policy_actions(version, arrays, plan, method, rng)
    edit = edit_create(track=track, actions=actions, excerpt_start=plan.start_beat, n_source_beats=plan.n_beats,
                       target_beats=plan.target_beats, source=source, analysis=analysis, scratch=scratch)
    native = edit_native_ensure(edit=edit, analysis=analysis, scratch=scratch)
    reward, label = _reward_of(edit)
    return RetargetOutcome(method=method.label, edit=edit, reward=reward, reward_model=label,
                           seam_seconds=tuple(float(s) for s in native["seam_seconds"]),
                           duration_seconds=float(native["duration_seconds"]))


def _policy_actions(version, arrays, plan: RetargetPlan, method: Method, rng: np.random.Generator) -> list[int]:
    model = policy_load(version)
    excerpt = Excerpt(track_index=0, start=plan.start_beat, n_beats=plan.n_beats, target_beats=plan.target_beats)
    if method.name != "best-of":
        return sample_actions(model, [arrays], [excerpt], deterministic=True, rng=rng)[0]
    reward = EnsembleReward(reward_model_load(reward_model_active()))
    return best_of_n_actions(model, reward, [arrays], [excerpt], n=method.n, rng=rng)[0]


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

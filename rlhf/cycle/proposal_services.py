"""Proposal services: turn an ``rlhf.learning.proposal.Proposal`` into stored Edit and Comparison rows.

Rendering (slow, files) and creating comparisons (fast, rows) are separate so a
cycle can render outside any transaction and create every comparison in the one
transaction that finishes it: a cycle that fails leaves no comparisons behind,
and edits rendered before the failure are simply reused (``edit_create``
deduplicates by content).

Edit sources name what made each edit, as ``annotations.quality`` scores them:
``policy:v<N>`` (this cycle's policy), ``policy:v<M>`` (the previous policy),
and the baselines' ``editing.baselines.BASELINE_EDIT_SOURCES`` (``baseline:random``,
``baseline:bar_cut``, ``baseline:heuristic``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from annotations.errors import DomainError
from annotations.models import Comparison, Edit, Track
from editing.baselines import BASELINE_EDIT_SOURCES
from annotations.services import (
    comparison_create,
    edit_create,
    edit_native_ensure,
    track_load_analysis,
    track_load_audio,
)
from editing.audio import AudioError
from rlhf.models import PolicyVersion, RewardModelVersion, SeamModelVersion

from rlhf.learning.proposal import Candidate, Proposal, ProposedPair


class ProposalServiceError(DomainError, ValueError):
    """A proposal cannot be stored; the message says why."""

    status_code = 409
    code = "proposal_refused"


@dataclass(frozen=True)
class RenderedPair:
    pair: ProposedPair
    edit_a: Edit
    edit_b: Edit


def edit_source(candidate: Candidate, *, policy: PolicyVersion, previous: PolicyVersion | None,
                seam_model: SeamModelVersion | None = None) -> str:
    """The ``Edit.source`` of a candidate from ``rlhf.learning.proposal.SOURCES``."""
    if candidate.source in ("learned", "departure"):
        if seam_model is None:
            raise ProposalServiceError(f"a {candidate.source} candidate needs the seam model that planned it")
        return seam_model.source if candidate.source == "learned" else f"{seam_model.source}:departure"
    if candidate.source == "policy":
        return policy.source
    if candidate.source == "previous_policy":
        if previous is None:
            raise ProposalServiceError("a candidate comes from the previous policy, but there is none")
        return previous.source
    if candidate.source in BASELINE_EDIT_SOURCES:
        return BASELINE_EDIT_SOURCES[candidate.source]
    raise ProposalServiceError(f"candidate source {candidate.source!r} is unknown")


def proposal_edits_create(*, proposal: Proposal, tracks: Sequence[Track], policy: PolicyVersion,
                          previous: PolicyVersion | None,
                          seam_model: SeamModelVersion | None = None) -> list[RenderedPair]:
    """Render and store the edits of every chosen pair (only those: unpaired candidates are never heard).

    ``tracks`` are the rows behind the ``TrackArrays`` the proposal was made on, in the same order.
    """
    cache: dict[int, tuple] = {}
    stored: dict[str, Edit] = {}

    def store(candidate: Candidate) -> Edit:
        if candidate.key not in stored:
            index = candidate.excerpt.track_index
            if index not in cache:
                cache[index] = (track_load_analysis(tracks[index]), track_load_audio(tracks[index]))
            analysis, y = cache[index]
            stored[candidate.key] = edit = edit_create(
                track=tracks[index], actions=list(candidate.actions), excerpt_start=candidate.excerpt.start,
                n_source_beats=candidate.excerpt.n_beats, target_beats=candidate.excerpt.target_beats,
                source=edit_source(candidate, policy=policy, previous=previous, seam_model=seam_model),
                analysis=analysis, y=y,
            )
            # The native render annotators hear, made here in the worker so that the page's next pair
            # never waits for it (a source it cannot be made of is served from the legacy copy instead).
            try:
                edit_native_ensure(edit=edit, analysis=analysis)
            except AudioError:
                pass
        return stored[candidate.key]

    return [RenderedPair(pair=p, edit_a=store(p.a), edit_b=store(p.b)) for p in proposal.pairs]


def proposal_comparisons_create(*, rendered: Sequence[RenderedPair], proposed_by: str,
                                reward_model: RewardModelVersion,
                                required_judgements: int | None = None) -> list[Comparison]:
    """One comparison per rendered pair: priority = ensemble disagreement, the ensemble's predicted preference.

    Call inside a transaction to create all or none.
    """
    return [
        comparison_create(
            edit_a=r.edit_a, edit_b=r.edit_b, proposed_by=proposed_by, priority=r.pair.priority,
            predicted_preference=r.pair.predicted_preference, reward_model_version=reward_model.label,
            required_judgements=required_judgements,
        )
        for r in rendered
        # Two candidates can render to one stored edit only if they were the same edit; never compare it with itself.
        if r.edit_a.pk != r.edit_b.pk
    ]

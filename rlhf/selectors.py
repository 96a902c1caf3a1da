"""Reading the learning side for people: what a cycle would use, and what a finished cycle changed.

Selectors only read rows; they import no torch, so the research pages use them.
:func:`cycle_preflight` is the one check every way of starting a cycle goes through
(``rlhf.cycle.state.cycle_start``, used by the page, the API, ``run_cycle`` and the schedule);
:func:`cycle_report` is the report card of a finished cycle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, QuerySet

from annotations.models import Comparison, Judgement, Track
from annotations.quality import source_games
from annotations.selectors import ExportFilters, judgement_rows_for_quality, judgements_for_export
from editing.baselines import BASELINE_EDIT_SOURCES, HEURISTIC
from rlhf.models import Cycle, PolicyVersion, SeamModelVersion

BASELINE_PREFIX = "baseline:"
RETARGET_PREFIX = "retarget:"
# Fewer decided held-out pairs than this and the report card gives no accuracy: at 20 pairs a
# Wilson interval is already about 0.4 wide.
MIN_HELDOUT_PAIRS = 20


# --------------------------------------------------------------------------- before a cycle

@dataclass(frozen=True)
class CyclePreflight:
    """What a cycle started now would train on, and why it may not start (``refusals``).

    Judgements count as the reward model counts them: gold comparisons and annotators below
    ``REWARD_MIN_GOLD_ACCURACY`` are left out.  "New" means arrived since the last cycle that
    finished (a failed cycle activated nothing, so its data are still new to the active model).
    """

    n_judgements: int
    n_new_judgements: int
    n_pairs: int  # distinct unordered pairs of edits judged: the reward model's training rows
    n_tracks: int  # tracks those pairs cover (a track-wise validation split needs two)
    n_tracks_ingested: int
    n_dropped_annotators: int
    last_cycle_id: int | None
    min_pairs: int
    min_new_judgements: int
    refusals: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.refusals

    @property
    def reason(self) -> str:
        return "; ".join(self.refusals)


def cycle_preflight(*, min_new_judgements: int | None = None, min_pairs: int | None = None) -> CyclePreflight:
    """Count what a cycle would use now and list what is short of the minimums (settings by default)."""
    min_new = settings.CYCLE_START_MIN_NEW_JUDGEMENTS if min_new_judgements is None else min_new_judgements
    min_pairs = settings.REWARD_MIN_PAIRS if min_pairs is None else min_pairs
    threshold = settings.REWARD_MIN_GOLD_ACCURACY
    qs, dropped = judgements_for_export(ExportFilters(exclude_gold=True,
                                                      min_gold_accuracy=threshold if threshold > 0 else None))
    last = Cycle.objects.filter(status=Cycle.Status.DONE).order_by("-pk").first()
    since = last.judgements_seen if last is not None else 0
    pairs: set[tuple[int, int]] = set()
    tracks: set[int] = set()
    chose = {"a": 0, "b": 0, "tie": 0}
    n_judgements = n_new = 0
    for pk, track, a, b, choice in qs.values_list("pk", "comparison__track_id", "comparison__edit_a_id",
                                                  "comparison__edit_b_id", "choice").iterator(chunk_size=5000):
        n_judgements += 1
        n_new += pk > since
        pairs.add((min(a, b), max(a, b)))
        tracks.add(track)
        chose[choice] += 1
    n_tracks_ingested = Track.objects.count()

    refusals: list[str] = []
    if n_tracks_ingested == 0:
        refusals.append("no tracks are ingested")
    if len(pairs) < min_pairs:
        refusals.append(f"{len(pairs)} judged pairs of edits, at least {min_pairs} needed")
    if pairs and len(tracks) < 2:
        refusals.append(f"the judged pairs cover {len(tracks)} track, a held-out track needs at least 2")
    if n_judgements and chose["a"] + chose["b"] == 0:
        refusals.append("every judgement is a tie")
    elif n_judgements and (chose["a"] == 0 or chose["b"] == 0):
        side = "A" if chose["a"] else "B"
        refusals.append(f"every decided judgement chose edit {side}: the data teach the order of the pair")
    if n_new < min_new:
        where = f"since cycle {last.pk}" if last is not None else "in all"
        refusals.append(f"{n_new} new judgements {where}, at least {min_new} needed")
    return CyclePreflight(
        n_judgements=n_judgements, n_new_judgements=n_new, n_pairs=len(pairs), n_tracks=len(tracks),
        n_tracks_ingested=n_tracks_ingested, n_dropped_annotators=len(dropped),
        last_cycle_id=last.pk if last is not None else None, min_pairs=min_pairs, min_new_judgements=min_new,
        refusals=tuple(refusals),
    )


# --------------------------------------------------------------------------- after a cycle

@dataclass(frozen=True)
class Proportion:
    """A share with its 95 % Wilson score interval; ``value`` is None when nothing was measured."""

    value: float | None
    n: float
    low: float | None
    high: float | None

    @classmethod
    def wilson(cls, share: float | None, n: float, *, z: float = 1.96) -> "Proportion":
        """Wilson (1927) interval: stays inside [0, 1] and is honest for small n and shares near 0 or 1."""
        if share is None or n <= 0:
            return cls(value=None, n=n, low=None, high=None)
        denominator = 1 + z * z / n
        centre = (share + z * z / (2 * n)) / denominator
        half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
        return cls(value=share, n=n, low=max(0.0, centre - half), high=min(1.0, centre + half))


@dataclass(frozen=True)
class RewardModelFigure:
    name: str  # what was scored, e.g. "rm-4 (before)"
    accuracy: Proportion
    note: str = ""


@dataclass(frozen=True)
class WinRate:
    opponent: str  # an edit source, e.g. "baseline:bar_cut"
    share: Proportion  # ties count half a win
    n_judgements: float


@dataclass(frozen=True)
class PolicyRewards:
    """Learned (normalised by one reward model) and dense reward at the start and end of the policy training.

    The first PPO update's rollout is played by the starting weights (the parent's, or a fresh
    network), the last updates' by the new version; both are scored by the cycle's reward
    model, so the two rows compare on one scale.
    """

    reward_model: str
    start_label: str
    start_learned: float | None
    start_dense: float | None
    end_label: str
    end_learned: float | None
    end_dense: float | None


@dataclass(frozen=True)
class SeamModelFigures:
    """What the report card says of a cycle's seam model (the learned planner's residual seam cost)."""

    label: str
    accuracy: Proportion          # on held-out tracks' judged pairs (tracks this version's held-out fit never saw)
    heuristic_accuracy: Proportion  # the heuristic's cost on the same pairs
    holdout_note: str             # "not enough held-out judgements (n): why" instead of the accuracies; "" to show them
    departs: int                  # judged passages where the learned plan differs from the heuristic's
    passages: int
    record: WinRate | None        # learned-planner edits against the heuristic's in the judgements so far
    pessimism: str = ""           # the k it plans with, and how it was chosen (on the judged tracks, or set)


@dataclass(frozen=True)
class CycleReport:
    cycle: Cycle
    first_reward_model: bool  # no previous version to compare with
    holdout_pairs: int
    holdout_tracks: tuple[int, ...]
    holdout_note: str  # "not enough held-out judgements (n): why" instead of ``reward_models``; "" to show them
    reward_models: tuple[RewardModelFigure, ...]  # empty when ``holdout_note`` says why
    policy_rewards: PolicyRewards | None
    win_rates: tuple[WinRate, ...]
    n_comparisons: int
    seam_model: SeamModelFigures | None = None


def cycle_comparisons_label(cycle: Cycle) -> str:
    """``Comparison.proposed_by`` of the comparisons a cycle creates."""
    return f"cycle {cycle.pk}"


def retarget_comparisons_label(job_pk: int) -> str:
    """``Comparison.proposed_by`` of the comparison a retarget request sends to the annotators."""
    return f"{RETARGET_PREFIX}{job_pk}"


def retarget_comparisons() -> QuerySet[Comparison]:
    """Comparisons sent for users' retarget requests, and their sides-swapped repeats.

    Never unbiased held-out evidence: the user chose the passage and the methods, so the pairs
    are a sample of what users ask for, not of the edits a model is scored on.
    """
    return Comparison.objects.filter(Q(proposed_by__startswith=RETARGET_PREFIX)
                                     | Q(repeat_of__proposed_by__startswith=RETARGET_PREFIX))


def heldout_shortfall(n_decided: int, reason: str = "") -> str:
    """What the report card says instead of a held-out accuracy; "" when it may give one.

    Parameters
    ----------
    n_decided : held-out pairs whose combined answer is not a tie (the n of the accuracy)
    reason : why nothing was measured, from whoever measured ("" when something was)
    """
    if not reason and n_decided >= MIN_HELDOUT_PAIRS:
        return ""
    why = reason or f"{n_decided} decided pair{'s' if n_decided != 1 else ''}, at least {MIN_HELDOUT_PAIRS} needed"
    return f"not enough held-out judgements ({n_decided}): {why}"


def _not_held_out_reason(reward_model: dict, holdout: dict) -> str:
    """Why a cycle's reward-model pairs were not held out ("" when its split kept whole tracks apart)."""
    # Cycles recorded before the held-out pairs were checked carry the split only in the summary.
    split_unit = holdout.get("split_unit", reward_model.get("split_unit"))
    if split_unit == "track":
        return ""
    if split_unit is None:
        return "the reward model recorded no split, so no track is known to be held out"
    n_tracks, min_tracks = holdout.get("n_tracks"), holdout.get("min_tracks_for_track_split")
    cover = (f"the judgements cover {n_tracks} tracks, too few for a held-out track ({min_tracks} needed)"
             if n_tracks is not None and min_tracks is not None else
             "the judgements cover too few tracks for a held-out track")
    return f"{cover}: the reward model held out {split_unit}s, so every track had judgements in its training"


def cycle_report(cycle: Cycle) -> CycleReport | None:
    """The report card of a finished cycle (None while it runs or when it failed)."""
    if cycle.status != Cycle.Status.DONE:
        return None
    rm = cycle.metrics.get("reward_model", {})
    holdout = rm.get("holdout") or {}
    split_reason = _not_held_out_reason(rm, holdout)
    n_decided = 0 if split_reason else holdout.get("n_decided", 0)  # pairs on tracks it trained on are not held out
    note = heldout_shortfall(n_decided, split_reason)
    figures: list[RewardModelFigure] = []
    before = holdout.get("before")
    if not note and before is not None:
        trained_on = (f"had trained on {before['n_trained_on']} of these judgements" if before.get("n_trained_on")
                      else "")
        figures.append(RewardModelFigure(f"{before['label']} (before)",
                                         Proportion.wilson(before.get("accuracy"), n_decided), trained_on))
    if not note:
        figures.append(RewardModelFigure(f"{holdout['after']['label']} (after)",
                                         Proportion.wilson(holdout["after"].get("accuracy"), n_decided)))
        figures.append(RewardModelFigure("dense reward only",
                                         Proportion.wilson(holdout["dense"].get("accuracy"), n_decided)))
    policy = cycle.policy_version
    return CycleReport(
        cycle=cycle, first_reward_model=bool(holdout) and before is None, holdout_pairs=holdout.get("n_pairs", 0),
        holdout_tracks=tuple(holdout.get("tracks", ())), holdout_note=note, reward_models=tuple(figures),
        policy_rewards=_policy_rewards(policy, cycle) if policy else None,
        win_rates=_win_rates(policy) if policy else (),
        n_comparisons=Comparison.objects.filter(proposed_by=cycle_comparisons_label(cycle)).count(),
        seam_model=_seam_figures(cycle.seam_model_version) if cycle.seam_model_version_id else None,
    )


def _seam_figures(version: SeamModelVersion) -> SeamModelFigures:
    holdout = version.metrics.get("holdout", {})
    n = holdout.get("n_pairs", 0)
    departures = version.metrics.get("departures", {})
    return SeamModelFigures(
        label=version.label, accuracy=Proportion.wilson(holdout.get("accuracy"), n),
        heuristic_accuracy=Proportion.wilson(holdout.get("heuristic_accuracy"), n),
        holdout_note=heldout_shortfall(n, holdout.get("reason", "")),
        departs=departures.get("departs", 0), passages=departures.get("passages", 0),
        record=seam_model_record(version),
        pessimism=version.metrics.get("pessimism", {}).get("reason", ""),
    )


def _start_label(policy: PolicyVersion) -> str:
    """What the first rollout of ``policy``'s training ran: its parent's weights, or a new network's."""
    if policy.parent_id:
        return f"{policy.parent.label} (start)"
    imitation = policy.metrics.get("imitation")
    if imitation:
        if imitation.get("teacher") == "learned_planner":
            return "a new policy taught to copy the learned planner where it departs, else the heuristic (start)"
        return "a new policy taught to copy the heuristic (start)"
    return "a new policy with random weights (start)"


def _policy_rewards(policy: PolicyVersion, cycle: Cycle) -> PolicyRewards:
    updates = [u for u in policy.metrics.get("per_update", []) if u.get("mean_learned_reward") is not None]
    first = updates[0] if updates else {}
    return PolicyRewards(
        reward_model=cycle.reward_model_version.label if cycle.reward_model_version_id else "–",
        start_label=_start_label(policy),
        start_learned=first.get("mean_learned_reward"), start_dense=first.get("mean_dense_reward"),
        end_label=f"{policy.label} (end)",
        end_learned=policy.metrics.get("mean_learned_reward"), end_dense=policy.metrics.get("mean_dense_reward"),
    )


def _win_rates(policy: PolicyVersion) -> tuple[WinRate, ...]:
    """The policy's win rate against each baseline and its parent, in the judgements so far (humans or simulated)."""
    judgements = Judgement.objects.filter(comparison__is_gold=False).filter(
        Q(comparison__edit_a__source=policy.source) | Q(comparison__edit_b__source=policy.source))
    sources, wins = source_games(judgement_rows_for_quality(judgements))
    if policy.source not in sources:
        return ()
    i = sources.index(policy.source)
    parent = policy.parent.source if policy.parent_id else None
    rates = []
    for j, opponent in enumerate(sources):
        if j == i or not (opponent.startswith(BASELINE_PREFIX) or opponent == parent):
            continue
        games = wins[i, j] + wins[j, i]
        rates.append(WinRate(opponent=opponent, share=Proportion.wilson(wins[i, j] / games, games), n_judgements=games))
    return tuple(rates)


def seam_model_record(version: SeamModelVersion) -> WinRate | None:
    """The learned planner's win rate against the heuristic in the judgements so far (None before any).

    Ties count half; gold comparisons are left out.  Its lower bound above 0.5 is what makes
    ``learned`` the default retarget method (``rlhf.retarget.services.retarget_default_methods``).
    """
    heuristic = BASELINE_EDIT_SOURCES[HEURISTIC]
    judgements = Judgement.objects.filter(comparison__is_gold=False).filter(
        Q(comparison__edit_a__source=version.source, comparison__edit_b__source=heuristic)
        | Q(comparison__edit_a__source=heuristic, comparison__edit_b__source=version.source))
    sources, wins = source_games(judgement_rows_for_quality(judgements))
    if version.source not in sources or heuristic not in sources:
        return None
    i, j = sources.index(version.source), sources.index(heuristic)
    games = wins[i, j] + wins[j, i]
    return WinRate(opponent=heuristic, share=Proportion.wilson(wins[i, j] / games, games), n_judgements=games)

"""Proposing comparisons: candidate edits from the policy and baselines, paired where the reward model is unsure.

Pure module (no Django): it returns plain dataclasses that ``rlhf.cycle`` renders and
stores as Edit and Comparison rows.

1. :func:`choose_excerpts` spreads excerpts across tracks (round robin over a shuffled
   track order, random start, length and target within the env's ranges).
2. :func:`sample_candidates` edits each excerpt several ways: the policy (stochastic),
   the previous policy (stochastic), random valid actions, and the bar-aligned cut to the
   target (``editing.baselines``); edits that sound the same (``Edit.key()``) are kept once,
   the first source listed winning.
3. :func:`choose_pairs` pairs edits of the same excerpt. A share ``random_share`` of the
   pairs is drawn uniformly at random from all pairs FIRST, so that share is an unbiased
   sample for evaluation; the rest are the pairs the ensemble disagrees on most.
4. :func:`seam_question_pairs` asks the questions that teach the learned planner: on other
   excerpts, two of the heuristic's plan, the learned plan and their single departures (one
   decision changed, the rest re-planned exactly), chosen by the cycle's ``pair_selection``.

Uncertainty of a pair (a, b): the standard deviation across ensemble members of the reward
difference ``r_a - r_b`` (members that agree on the order and margin give 0). The predicted
preference is the Bradley-Terry ``P(a preferred)``, averaged over members.
Priority (for the assignment queue, higher first): the pair's uncertainty divided by the
largest uncertainty among all candidate pairs, in [0, 1]; random pairs get the mean
priority of the disagreement pairs so they are interleaved with them, not starved.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import numpy as np
from sb3_contrib import MaskablePPO

from editing.baselines import BAR_CUT, HEURISTIC, RANDOM, baseline_actions
from editing.edit import Edit, apply_actions
from editing.env import EnvConfig, Excerpt, TrackArrays, sample_excerpt
from rlhf.learning.policy import sample_actions
from rlhf.learning.configs import DEFAULT_QUESTION_SELECTION
from rlhf.learning.seam_model import Passage, SeamModel, seam_questions, track_feature_scale

SOURCES = ("policy", "previous_policy", RANDOM, BAR_CUT, HEURISTIC, "learned", "departure")


class ProposalError(ValueError):
    """A proposal cannot be made as asked; the message says why."""


class MemberRewards(Protocol):
    """Per-member raw rewards of edits: float (n_members, len(items))."""

    def member_rewards(self, items: Sequence[tuple[TrackArrays, Edit]]) -> np.ndarray: ...


@dataclass(frozen=True)
class ProposalConfig:
    """How many excerpts, edits and pairs a proposal makes.

    Attributes
    ----------
    n_excerpts : int
        Excerpts to edit, spread across tracks.
    policy_samples, previous_policy_samples, random_samples : int
        Stochastic edits per excerpt from each source.
    include_bar_aligned_cut : bool
        Add the bar-aligned cut of each excerpt.
    include_heuristic : bool
        Add the retargeting heuristic's edit of each excerpt (the baseline to beat).
    n_pairs : int
        Pairs to return (fewer if fewer distinct pairs exist).
    random_share : float in [0, 1]
        Share of the pairs drawn uniformly at random.
    max_pairs_per_excerpt : int
        Cap on disagreement pairs from one excerpt, so they spread over excerpts.
    anchor_pairs : int
        Pairs of the policy's edit against the heuristic, the bar-aligned cut, random actions and
        the previous policy (in that order, excerpt by excerpt), added on top of ``n_pairs``.
    seed : int
    """

    n_excerpts: int = 8
    policy_samples: int = 3
    previous_policy_samples: int = 1
    random_samples: int = 1
    include_bar_aligned_cut: bool = True
    include_heuristic: bool = True
    n_pairs: int = 16
    random_share: float = 0.2
    max_pairs_per_excerpt: int = 4
    anchor_pairs: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.random_share <= 1.0:
            raise ProposalError(f"random_share {self.random_share} must lie in [0, 1]")
        if self.anchor_pairs < 0:
            raise ProposalError(f"anchor_pairs must be at least 0, got {self.anchor_pairs}")
        for name in ("n_excerpts", "n_pairs", "max_pairs_per_excerpt"):
            if getattr(self, name) < 1:
                raise ProposalError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Candidate:
    """One candidate edit of an excerpt and where it came from (one of ``SOURCES``)."""

    excerpt: Excerpt
    actions: tuple[int, ...]
    edit: Edit
    source: str

    @property
    def key(self) -> str:
        return self.edit.key()


@dataclass(frozen=True)
class ProposedPair:
    """Two candidates of the same excerpt to compare.

    Attributes
    ----------
    a, b : Candidate
    priority : float in [0, 1]
        Higher is asked sooner (see the module docstring).
    predicted_preference : float in [0, 1]
        The ensemble's P(a preferred over b).
    uncertainty : float
        Std across members of ``r_a - r_b``.
    chosen_by : {"disagreement", "random", "anchor", "seam_question"}
        "anchor": the new policy against a baseline or the previous policy on the same excerpt,
        asked every cycle so that human scores of each version against fixed references fill in;
        "seam_question": a question for the seam model (:func:`seam_question_pairs`).
    """

    a: Candidate
    b: Candidate
    priority: float
    predicted_preference: float
    uncertainty: float
    chosen_by: str


@dataclass(frozen=True)
class Proposal:
    candidates: tuple[Candidate, ...]
    pairs: tuple[ProposedPair, ...]
    n_duplicates_dropped: int


def choose_excerpts(tracks: Sequence[TrackArrays], n_excerpts: int, rng: np.random.Generator, *, env_config: EnvConfig = EnvConfig()) -> list[Excerpt]:
    """``n_excerpts`` excerpts, round robin over the tracks in a shuffled order (every track before any twice).

    Only passages short enough to judge side by side (the config's excerpt range, never its
    long passages): comparisons are listened to whole.
    """
    if not tracks:
        raise ProposalError("no tracks to take excerpts from")
    env_config = replace(env_config, long_passage_probability=0.0)
    order = rng.permutation(len(tracks))
    return [sample_excerpt(rng, tracks, env_config, track_index=int(order[i % len(tracks)])) for i in range(n_excerpts)]


def sample_candidates(
    tracks: Sequence[TrackArrays],
    excerpts: Sequence[Excerpt],
    *,
    policy: MaskablePPO | None,
    previous_policy: MaskablePPO | None,
    config: ProposalConfig,
    rng: np.random.Generator,
) -> tuple[list[Candidate], int]:
    """Candidate edits of every excerpt from every source; returns (distinct candidates, duplicates dropped)."""
    raw: list[tuple[Excerpt, list[int], str]] = []
    for model, n, source in ((policy, config.policy_samples, "policy"), (previous_policy, config.previous_policy_samples, "previous_policy")):
        if model is None or n == 0:
            continue
        for _ in range(n):
            for excerpt, actions in zip(excerpts, sample_actions(model, tracks, excerpts, deterministic=False, rng=rng)):
                raw.append((excerpt, actions, source))
    for excerpt in excerpts:
        names = [RANDOM] * config.random_samples
        names += [BAR_CUT] if config.include_bar_aligned_cut else []
        names += [HEURISTIC] if config.include_heuristic else []
        for name in names:
            actions = baseline_actions(name, rng=rng, context=tracks[excerpt.track_index].dense, excerpt_start=excerpt.start,
                                       bar_positions=_excerpt_bars(tracks, excerpt), target_beats=excerpt.target_beats)
            raw.append((excerpt, actions, name))
    candidates: list[Candidate] = []
    seen: set[str] = set()
    for excerpt, actions, source in raw:
        edit = apply_actions(actions, excerpt_start=excerpt.start, bar_positions=_excerpt_bars(tracks, excerpt),
                             target_beats=excerpt.target_beats)
        key = edit.key()
        if key in seen:
            continue
        seen.add(key)
        candidates.append(Candidate(excerpt=excerpt, actions=tuple(int(a) for a in actions), edit=edit, source=source))
    return candidates, len(raw) - len(candidates)


def _excerpt_bars(tracks: Sequence[TrackArrays], excerpt: Excerpt) -> np.ndarray:
    return tracks[excerpt.track_index].bar_positions[excerpt.start : excerpt.start + excerpt.n_beats]


def pair_statistics(member_rewards: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uncertainty and predicted preference of pairs.

    Parameters
    ----------
    member_rewards : np.ndarray [shape=(n_members, n_candidates)]
    a, b : np.ndarray [shape=(n_pairs,)], int
        Candidate indices of each pair.

    Returns
    -------
    uncertainty : np.ndarray [shape=(n_pairs,)]
        Std across members of ``r_a - r_b``.
    p_a : np.ndarray [shape=(n_pairs,)]
        Mean over members of ``sigmoid(r_a - r_b)``.
    """
    diff = member_rewards[:, a].astype(np.float64) - member_rewards[:, b].astype(np.float64)
    return diff.std(axis=0), (1.0 / (1.0 + np.exp(-diff))).mean(axis=0)


def choose_pairs(
    candidates: Sequence[Candidate],
    member_rewards: np.ndarray,
    *,
    n_pairs: int,
    random_share: float,
    max_pairs_per_excerpt: int,
    rng: np.random.Generator,
) -> list[ProposedPair]:
    """Choose pairs of same-excerpt candidates: ``round(n_pairs * random_share)`` uniformly at random, the rest by disagreement.

    Parameters
    ----------
    candidates : sequence of Candidate
    member_rewards : np.ndarray [shape=(n_members, len(candidates))]
    """
    if member_rewards.ndim != 2 or member_rewards.shape[1] != len(candidates):
        raise ProposalError(f"member rewards have shape {member_rewards.shape}, expected (n_members, {len(candidates)})")
    by_excerpt: dict[Excerpt, list[int]] = defaultdict(list)
    for i, candidate in enumerate(candidates):
        by_excerpt[candidate.excerpt].append(i)
    all_pairs = [(i, j) for members in by_excerpt.values() for k, i in enumerate(members) for j in members[k + 1 :]]
    if not all_pairs:
        return []
    a = np.array([p[0] for p in all_pairs])
    b = np.array([p[1] for p in all_pairs])
    uncertainty, p_a = pair_statistics(member_rewards, a, b)
    largest = float(uncertainty.max())
    priority = uncertainty / largest if largest > 0 else np.zeros_like(uncertainty)

    n_total = min(n_pairs, len(all_pairs))
    n_random = int(round(n_total * random_share))
    random_rows = rng.choice(len(all_pairs), size=n_random, replace=False) if n_random else np.array([], dtype=int)
    taken = set(int(r) for r in random_rows)
    # Highest uncertainty first; a random key breaks ties so equal pairs do not favour early excerpts.
    order = np.lexsort((rng.random(len(all_pairs)), -uncertainty))
    per_excerpt: dict[Excerpt, int] = defaultdict(int)
    disagreement_rows: list[int] = []
    for row in order:
        if len(disagreement_rows) == n_total - n_random:
            break
        excerpt = candidates[a[row]].excerpt
        if int(row) in taken or per_excerpt[excerpt] >= max_pairs_per_excerpt:
            continue
        per_excerpt[excerpt] += 1
        disagreement_rows.append(int(row))

    random_priority = float(np.mean(priority[disagreement_rows])) if disagreement_rows else 0.0
    pairs = [_pair(candidates, a, b, row, float(priority[row]), p_a, uncertainty, "disagreement") for row in disagreement_rows]
    pairs += [_pair(candidates, a, b, int(row), random_priority, p_a, uncertainty, "random") for row in random_rows]
    return pairs


def _pair(candidates: Sequence[Candidate], a: np.ndarray, b: np.ndarray, row: int, priority: float, p_a: np.ndarray, uncertainty: np.ndarray, chosen_by: str) -> ProposedPair:
    return ProposedPair(
        a=candidates[a[row]],
        b=candidates[b[row]],
        priority=priority,
        predicted_preference=float(p_a[row]),
        uncertainty=float(uncertainty[row]),
        chosen_by=chosen_by,
    )


def propose(
    tracks: Sequence[TrackArrays],
    *,
    reward: MemberRewards,
    policy: MaskablePPO | None,
    previous_policy: MaskablePPO | None = None,
    config: ProposalConfig = ProposalConfig(),
    env_config: EnvConfig = EnvConfig(),
) -> Proposal:
    """Excerpts, candidate edits and chosen pairs in one call (seeded by ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    excerpts = choose_excerpts(tracks, config.n_excerpts, rng, env_config=env_config)
    candidates, n_dropped = sample_candidates(
        tracks, excerpts, policy=policy, previous_policy=previous_policy, config=config, rng=rng
    )
    rewards = reward.member_rewards([(tracks[c.excerpt.track_index], c.edit) for c in candidates])
    pairs = choose_pairs(
        candidates,
        np.asarray(rewards),
        n_pairs=config.n_pairs,
        random_share=config.random_share,
        max_pairs_per_excerpt=config.max_pairs_per_excerpt,
        rng=rng,
    )
    pairs += anchor_pairs(candidates, np.asarray(rewards), n_pairs=config.anchor_pairs, taken=pairs)
    return Proposal(candidates=tuple(candidates), pairs=tuple(pairs), n_duplicates_dropped=n_dropped)


_ANCHORS = (HEURISTIC, BAR_CUT, RANDOM, "previous_policy")


def anchor_pairs(candidates: Sequence[Candidate], member_rewards: np.ndarray, *, n_pairs: int,
                 taken: Sequence[ProposedPair] = ()) -> list[ProposedPair]:
    """Up to ``n_pairs`` pairs of the policy's first edit of an excerpt against that excerpt's references.

    References in order: the heuristic, the bar-aligned cut, random actions, the previous
    policy; excerpt by excerpt, skipping pairs already in ``taken``.  Their priority is 1 (asked
    first): they are how each version's human score is measured against fixed baselines.
    """
    seen = {frozenset((p.a.key, p.b.key)) for p in taken}
    index = {id(c): i for i, c in enumerate(candidates)}
    by_excerpt: dict[Excerpt, dict[str, Candidate]] = defaultdict(dict)
    for candidate in candidates:
        by_excerpt[candidate.excerpt].setdefault(candidate.source, candidate)
    out: list[ProposedPair] = []
    for sources in by_excerpt.values():
        policy = sources.get("policy")
        if policy is None:
            continue
        for name in _ANCHORS:
            other = sources.get(name)
            if len(out) >= n_pairs:
                return out
            if other is None or frozenset((policy.key, other.key)) in seen:
                continue
            seen.add(frozenset((policy.key, other.key)))
            a, b = np.array([index[id(policy)]]), np.array([index[id(other)]])
            uncertainty, p_a = pair_statistics(member_rewards, a, b)
            out.append(ProposedPair(a=policy, b=other, priority=1.0, predicted_preference=float(p_a[0]),
                                    uncertainty=float(uncertainty[0]), chosen_by="anchor"))
    return out


def seam_question_pairs(tracks: Sequence[TrackArrays], excerpts: Sequence[Excerpt], *, model: SeamModel,
                        reward: MemberRewards, selection: str = DEFAULT_QUESTION_SELECTION,
                        rng: np.random.Generator | None = None) -> list[ProposedPair]:
    """Per excerpt, one seam question chosen by ``selection`` (``rlhf.learning.seam_model.seam_questions``).

    Its edits are the heuristic's plan (``"heuristic"``), the learned planner's (``"learned"``) or a
    single departure from either (``"departure"``).  Excerpts with nothing to decide are skipped.
    The pair's predicted preference and uncertainty are the reward-model ensemble's, as for every
    comparison; its priority is 1 (asked first): these are the pairs that teach the learned planner.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    scaled: dict[int, np.ndarray] = {}
    pairs: list[ProposedPair] = []
    for excerpt in excerpts:
        track = tracks[excerpt.track_index]
        if excerpt.track_index not in scaled:
            scaled[excerpt.track_index] = track_feature_scale(track.features)
        bars = track.bar_positions[excerpt.start:excerpt.start + excerpt.n_beats]
        passage = Passage(context=track.dense, scaled=scaled[excerpt.track_index], start=excerpt.start,
                          bar_positions=bars, target_beats=excerpt.target_beats)
        for question in seam_questions(selection, passage, model, rng, 1):
            a, b = (Candidate(excerpt=excerpt, actions=side.actions, edit=passage.edit(side.actions),
                              source=side.source) for side in (question.a, question.b))
            rewards = np.asarray(reward.member_rewards([(track, a.edit), (track, b.edit)]))
            uncertainty, p_a = pair_statistics(rewards, np.array([0]), np.array([1]))
            pairs.append(ProposedPair(a=a, b=b, priority=1.0, predicted_preference=float(p_a[0]),
                                      uncertainty=float(uncertainty[0]), chosen_by="seam_question"))
    return pairs

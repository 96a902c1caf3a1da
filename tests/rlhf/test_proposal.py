"""Proposing comparisons: candidates from every source, duplicates dropped, pairs by disagreement plus a random share."""
from __future__ import annotations

import numpy as np
import pytest

from editing.edit import Action
from editing.env import EnvConfig, Excerpt
from rlhf.learning import proposal as proposal_module
from rlhf.learning.configs import PolicyConfig
from rlhf.learning.policy import build_policy
from rlhf.learning.proposal import (
    Candidate,
    ProposalConfig,
    ProposalError,
    choose_excerpts,
    choose_pairs,
    pair_statistics,
    propose,
    sample_candidates,
)
from tests.editing.test_env import synthetic_tracks

SMALL = PolicyConfig(n_envs=1, n_steps=32, batch_size=32, net_arch=(16,), seed=0)


@pytest.fixture
def tracks():
    return synthetic_tracks(seed=1, n_tracks=3, n_beats=72)


class FakeEnsemble:
    """Member rewards drawn per edit key, so the same edit always gets the same rewards."""

    def __init__(self, n_members: int = 4, seed: int = 0):
        self.n_members = n_members
        self.seed = seed
        self.calls = 0

    def member_rewards(self, items):
        self.calls += 1
        out = np.zeros((self.n_members, len(items)))
        for j, (_, edit) in enumerate(items):
            rng = np.random.default_rng([self.seed, int(edit.key()[:8], 16)])
            out[:, j] = rng.normal(size=self.n_members) * rng.uniform(0.1, 3.0)
        return out


def _candidates(n_excerpts: int, per_excerpt: int, tracks) -> list[Candidate]:
    """Distinct candidates per excerpt: random retargets of 16 beats to 12, one per seed until distinct."""
    from editing.baselines import random_actions
    from editing.edit import apply_actions

    out = []
    for e in range(n_excerpts):
        track_bars = tracks[e % len(tracks)].bar_positions
        start = int(np.flatnonzero(track_bars[4 * e:] == 0)[0]) + 4 * e  # on a downbeat: an 8-beat middle
        excerpt = Excerpt(track_index=e % len(tracks), start=start, n_beats=16, target_beats=12)
        bars = track_bars[excerpt.start : excerpt.start + 16]
        keys: set[str] = set()
        seed = 0
        while len(keys) < per_excerpt:
            assert seed < 200, f"fewer than {per_excerpt} distinct retargets of excerpt {excerpt}"
            actions = random_actions(np.random.default_rng([e, seed]), bar_positions=bars, target_beats=12)
            seed += 1
            edit = apply_actions(actions, excerpt_start=excerpt.start, bar_positions=bars, target_beats=12)
            if edit.key() in keys:
                continue
            keys.add(edit.key())
            out.append(Candidate(excerpt=excerpt, actions=tuple(actions), edit=edit, source="random"))
    return out


def test_duplicates_are_dropped_by_edit_key_keeping_the_first_source(tracks, monkeypatch):
    from editing.baselines import RANDOM
    from editing.edit import passage_frame

    real = proposal_module.baseline_actions

    def keep_all_for_random(name, **kwargs):
        # Every "random" edit keeps the whole middle: at a target of the passage's own length it is
        # identical to the bar-aligned cut's and the heuristic's edits.
        if name != RANDOM:
            return real(name, **kwargs)
        head_end, tail_start = passage_frame(kwargs["bar_positions"])
        return [int(Action.KEEP)] * (tail_start - head_end)

    monkeypatch.setattr(proposal_module, "baseline_actions", keep_all_for_random)
    excerpts = [Excerpt(0, 0, 16, 16), Excerpt(1, 4, 20, 20)]
    config = ProposalConfig(random_samples=3, include_bar_aligned_cut=True, include_heuristic=True)
    candidates, dropped = sample_candidates(
        tracks, excerpts, policy=None, previous_policy=None, config=config, rng=np.random.default_rng(0)
    )
    keys = [c.key for c in candidates]
    assert len(keys) == len(set(keys))
    assert len(candidates) == 2 and dropped == 2 * 5 - 2
    assert all(c.source == "random" for c in candidates)


def test_candidates_come_from_the_policy_the_previous_policy_and_the_baselines(tracks):
    policy = build_policy(tracks, config=SMALL)
    previous = build_policy(tracks, config=PolicyConfig(n_envs=1, n_steps=32, batch_size=32, net_arch=(16,), seed=1))
    excerpts = choose_excerpts(tracks, 3, np.random.default_rng(0))
    config = ProposalConfig(policy_samples=2, previous_policy_samples=1, random_samples=1)
    candidates, dropped = sample_candidates(
        tracks, excerpts, policy=policy, previous_policy=previous, config=config, rng=np.random.default_rng(0)
    )
    assert {c.source for c in candidates} == {"policy", "previous_policy", "random", "bar_aligned_cut", "heuristic"}
    assert len(candidates) + dropped == 3 * (2 + 1 + 1 + 1 + 1)
    for c in candidates:
        assert c.edit.excerpt_start == c.excerpt.start and c.edit.n_source_beats == c.excerpt.n_beats
        assert c.edit.n_output_beats == c.excerpt.target_beats


def test_excerpts_are_spread_across_tracks(tracks):
    excerpts = choose_excerpts(tracks, 6, np.random.default_rng(3))
    counts = np.bincount([e.track_index for e in excerpts], minlength=len(tracks))
    assert counts.tolist() == [2, 2, 2]


@pytest.mark.parametrize("random_share, n_random", [(0.0, 0), (0.3, 3), (0.5, 5), (1.0, 10)])
def test_the_random_share_is_respected(tracks, random_share, n_random):
    candidates = _candidates(n_excerpts=4, per_excerpt=5, tracks=tracks)
    rewards = FakeEnsemble().member_rewards([(None, c.edit) for c in candidates])
    pairs = choose_pairs(candidates, rewards, n_pairs=10, random_share=random_share, max_pairs_per_excerpt=10,
                         rng=np.random.default_rng(0))
    assert len(pairs) == 10
    assert sum(p.chosen_by == "random" for p in pairs) == n_random
    assert len({(p.a.key, p.b.key) for p in pairs}) == 10  # no pair twice


def test_disagreement_pairs_are_the_most_uncertain_ones(tracks):
    candidates = _candidates(n_excerpts=3, per_excerpt=4, tracks=tracks)
    rewards = FakeEnsemble().member_rewards([(None, c.edit) for c in candidates])
    pairs = choose_pairs(candidates, rewards, n_pairs=5, random_share=0.0, max_pairs_per_excerpt=10,
                         rng=np.random.default_rng(0))
    index = {c.key: i for i, c in enumerate(candidates)}
    all_uncertainties = sorted(
        (float(np.std(rewards[:, i] - rewards[:, j]))
         for i in range(len(candidates)) for j in range(i + 1, len(candidates))
         if candidates[i].excerpt == candidates[j].excerpt),
        reverse=True,
    )
    chosen = sorted((p.uncertainty for p in pairs), reverse=True)
    assert chosen == pytest.approx(all_uncertainties[:5])
    for p in pairs:
        assert p.a.excerpt == p.b.excerpt
        assert p.uncertainty == pytest.approx(np.std(rewards[:, index[p.a.key]] - rewards[:, index[p.b.key]]))
        assert 0.0 <= p.priority <= 1.0


def test_pairs_per_excerpt_are_capped_so_they_spread(tracks):
    candidates = _candidates(n_excerpts=4, per_excerpt=5, tracks=tracks)
    rewards = FakeEnsemble().member_rewards([(None, c.edit) for c in candidates])
    pairs = choose_pairs(candidates, rewards, n_pairs=8, random_share=0.0, max_pairs_per_excerpt=2,
                         rng=np.random.default_rng(0))
    per_excerpt = np.bincount([p.a.excerpt.start for p in pairs])
    assert per_excerpt.max() == 2 and len(pairs) == 8


def test_random_pairs_are_not_biased_towards_disagreement(tracks):
    """Over many draws the random share covers confident pairs as often as any other."""
    candidates = _candidates(n_excerpts=2, per_excerpt=6, tracks=tracks)
    rewards = FakeEnsemble().member_rewards([(None, c.edit) for c in candidates])
    all_uncertainty = []
    random_uncertainty = []
    for seed in range(200):
        pairs = choose_pairs(candidates, rewards, n_pairs=6, random_share=0.5, max_pairs_per_excerpt=6,
                             rng=np.random.default_rng(seed))
        random_uncertainty += [p.uncertainty for p in pairs if p.chosen_by == "random"]
    for i in range(len(candidates)):
        for j in range(i + 1, len(candidates)):
            if candidates[i].excerpt == candidates[j].excerpt:
                all_uncertainty.append(float(np.std(rewards[:, i] - rewards[:, j])))
    assert np.mean(random_uncertainty) == pytest.approx(np.mean(all_uncertainty), rel=0.1)


def test_pair_statistics_give_bradley_terry_preference_and_member_spread():
    rewards = np.array([[2.0, 0.0, 1.0], [2.0, 0.0, -1.0]])
    uncertainty, p_a = pair_statistics(rewards, np.array([0, 0]), np.array([1, 2]))
    assert uncertainty[0] == 0.0 and uncertainty[1] == pytest.approx(1.0)
    assert p_a[0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert p_a[1] == pytest.approx((1 / (1 + np.exp(-1.0)) + 1 / (1 + np.exp(-3.0))) / 2)


def test_member_rewards_of_the_wrong_shape_are_refused(tracks):
    candidates = _candidates(n_excerpts=1, per_excerpt=3, tracks=tracks)
    with pytest.raises(ProposalError, match="expected \\(n_members, 3\\)"):
        choose_pairs(candidates, np.zeros((2, 4)), n_pairs=2, random_share=0.0, max_pairs_per_excerpt=2,
                     rng=np.random.default_rng(0))


def test_a_random_share_outside_zero_to_one_is_refused():
    with pytest.raises(ProposalError, match="random_share 1.5"):
        ProposalConfig(random_share=1.5)


def test_propose_end_to_end_scores_all_candidates_in_one_call(tracks):
    ensemble = FakeEnsemble()
    config = ProposalConfig(n_excerpts=3, policy_samples=2, previous_policy_samples=0, n_pairs=6, random_share=0.34, seed=4)
    result = propose(tracks, reward=ensemble, policy=build_policy(tracks, config=SMALL), config=config,
                     env_config=EnvConfig(min_excerpt_beats=16, max_excerpt_beats=24))
    assert ensemble.calls == 1
    chosen = [p for p in result.pairs if p.chosen_by != "anchor"]
    assert len(chosen) == 6 and sum(p.chosen_by == "random" for p in chosen) == 2
    # On top: the policy's edit against fixed references, the heuristic first, so each version's
    # human score against the baselines fills in.
    anchors = [p for p in result.pairs if p.chosen_by == "anchor"]
    assert len(anchors) == config.anchor_pairs == 4
    assert all(p.a.source == "policy" and p.b.source in ("heuristic", "bar_aligned_cut", "random") for p in anchors)
    assert anchors[0].b.source == "heuristic" and all(p.priority == 1.0 for p in anchors)
    assert {c.excerpt.track_index for c in result.candidates} == {0, 1, 2}
    keys = [c.key for c in result.candidates]
    assert len(keys) == len(set(keys))
    for p in result.pairs:
        assert p.a.excerpt == p.b.excerpt and p.a.key != p.b.key
        assert 0.0 <= p.predicted_preference <= 1.0

"""The learned reward as the policy and the proposer see it: a reward-model ensemble behind a small protocol.

Pure module (torch + numpy, no Django).

PPO is paid the learned reward relative to the heuristic's edit of the same passage
(:class:`RelativeToHeuristic`, ``PolicyConfig.learned_reward_baseline = "heuristic"``): a reward
model's scale differs from track to track (one track's edits all score high, another's low), so a
raw learned reward pays a policy for the tracks it was given as much as for its edits.  Measured
from the heuristic's edit, 0 means "as good as the heuristic" on every track, the bar the policy
is judged against.  Each passage's heuristic edit is planned and scored once (cached), in the same
reward-model call as the episodes that need it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from editing.baselines import retarget_heuristic
from editing.dense import dense_rewards
from editing.edit import Edit, apply_actions, model_input
from editing.env import Excerpt, FinishedEpisode, TrackArrays
from rlhf.learning.configs import PolicyError
from rlhf.learning.reward_data import EditInput
from rlhf.learning.reward_model import SCORING_BATCH, RewardEnsemble


@contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """Run the block with torch narrowed (or widened) to ``n_threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LearnedReward(Protocol):
    """Scores finished episodes: the normalised ensemble-mean reward, float (n,)."""

    def __call__(self, episodes: Sequence[FinishedEpisode]) -> np.ndarray: ...


class EnsembleReward:
    """The learned reward of a :class:`rlhf.learning.reward_model.RewardEnsemble` version.

    ``__call__`` gives the policy's reward: the ensemble mean minus ``pessimism`` times the
    members' spread, normalised by the version's recorded statistics, then put on the dense
    reward's scale (``scale``); :meth:`member_rewards` gives raw per-member rewards (proposal's
    uncertainty).
    """

    def __init__(self, ensemble: RewardEnsemble, *, batch_size: int = SCORING_BATCH, n_threads: int | None = None,
                 pessimism: float = 0.0, scale: tuple[float, float] = (0.0, 1.0)) -> None:
        if pessimism < 0:
            raise PolicyError(f"reward pessimism must be at least 0, got {pessimism}")
        self.ensemble = ensemble
        self.batch_size = batch_size
        # Over-optimisation guard: the policy is paid the members' mean minus ``pessimism`` times
        # their spread, so edits the members disagree on (off the data) earn less.
        self.pessimism = float(pessimism)
        # (mean, std) of the dense score on the reward model's reference edits: the normalised
        # learned reward (mean 0, std 1 there) is mapped onto the dense reward's scale.
        self.scale = (float(scale[0]), float(scale[1]))
        # PPO narrows torch to PolicyConfig.n_threads (1) around learning, which suits its small
        # MLPs; the reward model's transformer is scored at the thread count in force when this
        # object was made (all cores by default): about 1.6x faster for a rollout's edits on 2 cores.
        self.n_threads = torch.get_num_threads() if n_threads is None else n_threads

    @staticmethod
    def _inputs(items: Sequence[tuple[TrackArrays, Edit]]) -> list[EditInput]:
        return [EditInput(*model_input(track.features, edit)) for track, edit in items]

    def member_rewards(self, items: Sequence[tuple[TrackArrays, Edit]]) -> np.ndarray:
        """Raw reward of each edit by each member, float32 (n_members, len(items))."""
        inputs = self._inputs(items)
        with torch_threads(self.n_threads):
            return self.ensemble.member_rewards(inputs, batch_size=self.batch_size)

    def __call__(self, episodes: Sequence[FinishedEpisode]) -> np.ndarray:
        members = self.member_rewards([(ep.track, ep.edit) for ep in episodes]).astype(np.float64)
        guarded = members.mean(0) - self.pessimism * members.std(0)
        return self.scale[0] + self.scale[1] * self.ensemble.normalize(guarded)



def heuristic_episode(track: TrackArrays, excerpt: Excerpt) -> FinishedEpisode:
    """The heuristic's edit of ``excerpt`` (``editing.baselines.retarget_heuristic``) as a finished episode."""
    bars = track.bar_positions[excerpt.start : excerpt.start + excerpt.n_beats]
    actions = retarget_heuristic(context=track.dense, excerpt_start=excerpt.start, bar_positions=bars,
                                 target_beats=excerpt.target_beats)
    edit = apply_actions(actions, excerpt_start=excerpt.start, bar_positions=bars, target_beats=excerpt.target_beats)
    return FinishedEpisode(track=track, excerpt=excerpt, edit=edit,
                           dense=dense_rewards(edit, context=track.dense, target_beats=excerpt.target_beats))


class RelativeToHeuristic:
    """A learned reward measured from the heuristic's edit of the same passage: ``learned(edit) - learned(heuristic's)``.

    The heuristic's edit of each passage (a track and an :class:`editing.env.Excerpt`) is planned and
    scored once and cached; the passages not yet cached are scored in the same call to ``inner`` as
    the episodes, so a batch stays one reward-model call.  ``inner``'s value of an edit must not
    depend on the other edits of its call (true of :class:`EnsembleReward`, up to float rounding).
    """

    def __init__(self, inner: LearnedReward) -> None:
        self.inner = inner
        self._heuristic: dict[tuple[TrackArrays, Excerpt], float] = {}

    def __call__(self, episodes: Sequence[FinishedEpisode]) -> np.ndarray:
        missing = list(dict.fromkeys((ep.track, ep.excerpt) for ep in episodes
                                     if (ep.track, ep.excerpt) not in self._heuristic))
        scored = np.asarray(self.inner([*episodes, *(heuristic_episode(t, ex) for t, ex in missing)]), dtype=np.float64)
        if scored.shape != (len(episodes) + len(missing),):
            raise PolicyError(f"learned reward returned shape {scored.shape} for {len(episodes) + len(missing)} edits")
        self._heuristic.update(zip(missing, scored[len(episodes):].tolist()))
        return scored[: len(episodes)] - np.array([self._heuristic[(ep.track, ep.excerpt)] for ep in episodes])

"""Baseline edits: what the policy and the people judging it are compared against.

All three return action sequences for an excerpt, built through
:class:`editing.edit.EditBuilder`, so they are valid by construction and can
be turned into an Edit with :func:`editing.edit.apply_actions`.

- :func:`random_actions`: a uniformly random valid action at every step (until the target length is reached).
- :func:`bar_aligned_cut`: the edit a careful human would make to shorten: remove whole bars, spread out.
- :func:`broken_edit_actions`: a deliberately bad edit (off-bar cuts, stutters, reorders) whose
  loser is known, for gold comparisons that check annotators are listening.
"""
from __future__ import annotations

import numpy as np

from editing.edit import Action, EditBuilder

__all__ = ["random_actions", "bar_aligned_cut", "broken_edit_actions"]

# Share of off-bar beats the broken edit damages; the rest stay so the damage is audible as damage.
_BROKEN_DAMAGE_PROBABILITY = 0.6
_BROKEN_ACTIONS = (Action.CUT, Action.LOOP, Action.REORDER, Action.REPEAT_2)


def random_actions(rng: np.random.Generator, *, bar_positions: np.ndarray, target_beats: int) -> list[int]:
    """Uniformly random actions among the unmasked ones, then STOP once the output has ``target_beats`` beats.

    Parameters
    ----------
    rng : np.random.Generator
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The excerpt's bar positions.
    target_beats : int
        Output length at which the edit stops (it may end shorter when the excerpt runs out).

    Returns
    -------
    list[int]
        Action ids that consume the whole excerpt.
    """
    bar_positions = np.asarray(bar_positions)
    builder = EditBuilder(len(bar_positions), bar_positions)
    actions: list[int] = []
    while not builder.done:
        mask = builder.action_mask()
        if builder.n_output_beats >= target_beats and mask[Action.STOP]:
            action = int(Action.STOP)
        else:
            action = int(rng.choice(np.flatnonzero(mask)))
        builder.step(action)
        actions.append(action)
    return actions


def _bars(bar_positions: np.ndarray) -> list[tuple[int, int]]:
    """(first beat, beats) of every bar that starts and ends on downbeats inside the excerpt."""
    downbeats = np.flatnonzero(bar_positions == 0)
    return [(int(s), int(e - s)) for s, e in zip(downbeats[:-1], downbeats[1:])]


def _spread(n_items: int, k: int) -> list[int]:
    """k indices of n_items, evenly spread (centres of k equal parts)."""
    return sorted({int((j + 0.5) * n_items / k) for j in range(k)})


def bar_aligned_cut(*, bar_positions: np.ndarray, target_beats: int) -> list[int]:
    """Shorten an excerpt to ``target_beats`` by removing whole bars, evenly spread out.

    The first and the last complete bar are kept so the excerpt still opens
    and closes as the original does.  As many bars are removed as fit within
    the excess ``n_source_beats - target_beats``; if beats are still over
    (an excess that is not whole bars), the edit ends with STOP at the target.

    Parameters
    ----------
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The excerpt's bar positions.
    target_beats : int
        Wanted output length, beats (>= 1).

    Returns
    -------
    list[int]
        Action ids (KEEP, CUT and at most one final STOP).
    """
    bar_positions = np.asarray(bar_positions)
    n = len(bar_positions)
    if target_beats < 1:
        raise ValueError(f"target of {target_beats} beats: must be at least 1")
    excess = n - target_beats
    inner = _bars(bar_positions)[1:-1]
    removed: list[tuple[int, int]] = []
    for k in range(len(inner), 0, -1):
        chosen = [inner[i] for i in _spread(len(inner), k)]
        if sum(length for _, length in chosen) <= excess:
            removed = chosen
            break
    cut = np.zeros(n, dtype=bool)
    for start, length in removed:
        cut[start : start + length] = True

    builder = EditBuilder(n, bar_positions)
    actions: list[int] = []
    while not builder.done:
        if builder.n_output_beats >= target_beats:
            action = Action.STOP
        else:
            action = Action.CUT if cut[builder.position] else Action.KEEP
        builder.step(action)
        actions.append(int(action))
    return actions


def broken_edit_actions(rng: np.random.Generator, *, bar_positions: np.ndarray) -> list[int]:
    """A deliberately bad edit: cuts, stutters and reorders on off-bar beats.

    Downbeats are kept (so every seam lands inside a bar); each other beat is
    damaged with probability 0.6 by a random valid choice of CUT, LOOP,
    REORDER or REPEAT_2, and otherwise kept.

    Parameters
    ----------
    rng : np.random.Generator
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The excerpt's bar positions.

    Returns
    -------
    list[int]
        Action ids that consume the whole excerpt.
    """
    bar_positions = np.asarray(bar_positions)
    builder = EditBuilder(len(bar_positions), bar_positions)
    actions: list[int] = []
    while not builder.done:
        mask = builder.action_mask()
        damage = [a for a in _BROKEN_ACTIONS if mask[a]]
        off_bar = bar_positions[builder.position] != 0
        if off_bar and damage and rng.random() < _BROKEN_DAMAGE_PROBABILITY:
            action = int(rng.choice(damage))
        elif mask[Action.KEEP]:
            action = int(Action.KEEP)
        else:
            action = int(Action.CUT)  # KEEP is only masked at the length cap, where CUT is always valid
        builder.step(action)
        actions.append(action)
    return actions

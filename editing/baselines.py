"""Baseline retarget edits: what the policy and the people judging it are compared against.

All of them return action sequences for a passage and a target length, built through
:class:`editing.edit.EditBuilder`, so they keep the opening and final bars and hit the target
exactly by construction; :func:`editing.edit.apply_actions` turns them into an Edit.

- :func:`random_actions`: a uniformly random valid action at every step.
- :func:`bar_aligned_cut`: what a careful editor does by hand: remove (or repeat) whole bars,
  evenly spread, then make up the last few beats just before the final bar.
- :func:`retarget_heuristic`: the strong baseline, a dynamic program in the spirit of
  radiotool's ``retarget_to_length``: the cheapest edit of the exact length, where a seam from
  beat ``a`` to beat ``b`` costs what :func:`seam_cost` says (timbre, harmony and loudness
  similarity, and bar position).  It is the bar the learned policy must clear.
- :func:`broken_edit_actions`: a deliberately bad edit (off-bar cuts, stutters, reorders) whose
  loser is known, for gold comparisons that check annotators are listening.
"""
from __future__ import annotations

import functools

import numpy as np

from editing.dense import DenseContext
from editing.edit import Action, Edit, EditBuilder
from editing.planner import PLANNER_MOVES, RetargetPlanner, plan_actions

__all__ = [
    "RANDOM",
    "BAR_CUT",
    "HEURISTIC",
    "BROKEN",
    "BASELINES",
    "BASELINE_EDIT_SOURCES",
    "baseline_actions",
    "random_actions",
    "bar_aligned_cut",
    "broken_edit_actions",
    "seam_cost",
    "edit_cost",
    "retarget_heuristic",
    "HeuristicPlanner",
    "HEURISTIC_MOVES",
]

# The heuristic's own moves: the planner's (what a first policy imitates).
HEURISTIC_MOVES = PLANNER_MOVES

# The baselines' names: in proposals, evaluations and the stored source of their edits.  Every
# app imports them from here, and quality scores group edits by the stored source.
RANDOM = "random"
BAR_CUT = "bar_aligned_cut"
HEURISTIC = "heuristic"
BROKEN = "broken"
BASELINES = (RANDOM, BAR_CUT, HEURISTIC)
BASELINE_EDIT_SOURCES = {
    RANDOM: "baseline:random",
    BAR_CUT: "baseline:bar_cut",
    HEURISTIC: "baseline:heuristic",
    BROKEN: "baseline:broken",
}

# Share of off-bar beats the broken edit damages; the rest stay so the damage is audible as damage.
_BROKEN_DAMAGE_PROBABILITY = 0.6
_BROKEN_ACTIONS = (Action.CUT, Action.LOOP, Action.REORDER, Action.REPEAT_2)

# Seam costs (dimensionless; a seam between beats as alike as the track's neighbours costs about
# SEAM_BASE_COST).  A seam that lands off the metre (beat b is not at the bar position that
# would follow a) costs like three badly matched beats: listeners hear a stumbled groove first.
SEAM_BASE_COST = 0.25
_METRE_COST = 3.0
_OFF_BAR_COST = 0.5
_EPS = 1e-9
# The bar-aligned cut's fallbacks, in order, where its plan meets the length rule (LOOP_PHRASE last:
# near 2x some lengths are only reachable by repeating a phrase).
_SHORTEN = (Action.CUT, Action.STOP, Action.KEEP, Action.LOOP, Action.REPEAT_2, Action.LOOP_BAR, Action.LOOP_PHRASE)
_LENGTHEN = (Action.LOOP_BAR, Action.REPEAT_2, Action.LOOP, Action.KEEP, Action.CUT, Action.STOP, Action.LOOP_PHRASE)


def _builder(bar_positions: np.ndarray, target_beats: int) -> EditBuilder:
    bar_positions = np.asarray(bar_positions)
    return EditBuilder(len(bar_positions), bar_positions, target_beats=target_beats)


def baseline_actions(name: str, *, rng: np.random.Generator, context: DenseContext, excerpt_start: int,
                     bar_positions: np.ndarray, target_beats: int) -> list[int]:
    """The actions of baseline ``name`` (one of :data:`BASELINE_EDIT_SOURCES`) for a passage.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name == RANDOM:
        return random_actions(rng, bar_positions=bar_positions, target_beats=target_beats)
    if name == BAR_CUT:
        return bar_aligned_cut(bar_positions=bar_positions, target_beats=target_beats)
    if name == HEURISTIC:
        return retarget_heuristic(context=context, excerpt_start=excerpt_start, bar_positions=bar_positions,
                                  target_beats=target_beats)
    if name == BROKEN:
        return broken_edit_actions(rng, bar_positions=bar_positions, target_beats=target_beats)
    raise ValueError(f"baseline {name!r}: expected one of {', '.join(BASELINE_EDIT_SOURCES)}")


def random_actions(rng: np.random.Generator, *, bar_positions: np.ndarray, target_beats: int) -> list[int]:
    """Uniformly random actions among the valid ones (the length rule keeps the target exact).

    Parameters
    ----------
    rng : np.random.Generator
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar positions.
    target_beats : int
        Exact output length, beats.

    Returns
    -------
    list[int]
        Action ids that use up the middle.
    """
    builder = _builder(bar_positions, target_beats)
    actions: list[int] = []
    while not builder.done:
        action = int(rng.choice(np.flatnonzero(builder.action_mask())))
        builder.step(action)
        actions.append(action)
    return actions


def _bars_within(bar_positions: np.ndarray, first: int, stop: int) -> list[tuple[int, int]]:
    """(first beat, beats) of every bar from downbeat to downbeat inside ``[first, stop]``."""
    downbeats = [int(d) for d in np.flatnonzero(np.asarray(bar_positions) == 0) if first <= d <= stop]
    return [(s, e - s) for s, e in zip(downbeats[:-1], downbeats[1:])]


def _spread(n_items: int, k: int) -> list[int]:
    """k indices of n_items, evenly spread (centres of k equal parts)."""
    return sorted({int((j + 0.5) * n_items / k) for j in range(k)})


def bar_aligned_cut(*, bar_positions: np.ndarray, target_beats: int) -> list[int]:
    """Retarget by removing or repeating whole bars, evenly spread, as an editor does by hand.

    Shortening removes as many whole middle bars as fit in the excess; lengthening repeats
    middle bars (LOOP_BAR on a bar's last beat plays the bar again).  The few beats left over
    (less than a bar) are cut, or looped, just before the final bar.

    Parameters
    ----------
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar positions.
    target_beats : int
        Exact output length, beats.

    Returns
    -------
    list[int]
        Action ids (KEEP, CUT, LOOP_BAR, LOOP, and STOP where a cut reaches the final bar).
    """
    bar_positions = np.asarray(bar_positions)
    n = len(bar_positions)
    builder = _builder(bar_positions, target_beats)
    head_end, tail_start = builder.head_end, builder.tail_start
    change = target_beats - n  # < 0: beats to remove; > 0: beats to add
    bars = _bars_within(bar_positions, head_end, tail_start)
    plan: dict[int, Action] = {}
    chosen: list[tuple[int, int]] = []
    for k in range(len(bars), 0, -1):
        candidate = [bars[i] for i in _spread(len(bars), k)]
        if sum(length for _, length in candidate) <= abs(change):
            chosen = candidate
            break
    for start, length in chosen:
        if change < 0:
            for beat in range(start, start + length):
                plan[beat] = Action.CUT
        else:
            plan[start + length - 1] = Action.LOOP_BAR
    left = abs(change) - sum(length for _, length in chosen)
    free = [b for b in range(tail_start - 1, head_end - 1, -1) if b not in plan]
    for beat in free[:left]:
        plan[beat] = Action.CUT if change < 0 else Action.LOOP
    actions: list[int] = []
    while not builder.done:
        action = plan.get(builder.position, Action.KEEP)
        mask = builder.action_mask()
        if not mask[action]:
            # The plan counted bars as four beats; where the bar lengths disagree, take the
            # nearest valid action (cuts that reach the final bar are one STOP).
            action = next(a for a in (_SHORTEN if change < 0 else _LENGTHEN) if mask[a])
        builder.step(action)
        actions.append(int(action))
    return actions


def broken_edit_actions(rng: np.random.Generator, *, bar_positions: np.ndarray, target_beats: int) -> list[int]:
    """A deliberately bad edit: cuts, stutters and reorders on off-bar beats.

    Downbeats are kept (so every seam lands inside a bar); each other beat is damaged with
    probability 0.6 by a random valid choice of CUT, LOOP, REORDER or REPEAT_2, and otherwise
    kept; the length rule keeps the target exact.

    Parameters
    ----------
    rng : np.random.Generator
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar positions.
    target_beats : int
        Exact output length, beats.

    Returns
    -------
    list[int]
        Action ids that use up the middle.
    """
    bar_positions = np.asarray(bar_positions)
    builder = _builder(bar_positions, target_beats)
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
            # A whole phrase repeated is a clean lengthening, not damage: only where nothing else is valid.
            valid = np.flatnonzero(mask)
            action = int(rng.choice(valid[valid != Action.LOOP_PHRASE] if (valid != Action.LOOP_PHRASE).any() else valid))
        builder.step(action)
        actions.append(action)
    return actions


# --------------------------------------------------------------------------- the heuristic

def seam_cost(context: DenseContext, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Cost of a seam from track beat ``a`` (last before it) to track beat ``b`` (first after it).

    A seam sounds written when ``b`` sounds like the beat that would have followed ``a`` and
    ``a`` like the beat that would have led into ``b``: the cost compares ``a + 1`` with ``b``
    and ``a`` with ``b - 1`` in timbre (z-scored MFCC), harmony (chroma) and loudness, each
    relative to the track's typical neighbour step, plus a metre term (``b`` not at the bar
    position ``a + 1`` has) and an off-bar term (``b`` not a downbeat), plus
    :data:`SEAM_BASE_COST` for the seam itself.

    Parameters
    ----------
    context : DenseContext
        The track's digested features (``editing.dense.dense_context``).
    a, b : int or np.ndarray [shape=(k,)]
        Track beat indices.

    Returns
    -------
    np.ndarray [shape=(k,)] or 0-d, float64
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    last = context.n_beats - 1
    after_a = np.minimum(a + 1, last)
    before_b = np.maximum(b - 1, 0)
    position = context.incoming_position[b]
    cost = np.full(np.broadcast(a, b).shape, SEAM_BASE_COST, dtype=np.float64)
    for x, y in ((after_a, b), (a, before_b)):
        timbre = np.linalg.norm(context.mfcc[x] - context.mfcc[y], axis=-1) / (context.typical_timbre_step[position] + _EPS)
        harmony = (1.0 - np.sum(context.chroma[x] * context.chroma[y], axis=-1)) / (context.typical_chroma_step[position] + _EPS)
        level = np.abs(context.level[x] - context.level[y]) / (context.typical_level_step[position] + 1.0)
        cost += 0.5 * (np.minimum(timbre, 10.0) + np.minimum(harmony, 10.0) + np.minimum(level, 10.0)) / 3.0
    cost += np.where(context.incoming_position[after_a] != position, _METRE_COST, 0.0)
    cost += np.where(position != 0, _OFF_BAR_COST, 0.0)
    return cost


def edit_cost(edit: Edit, context: DenseContext) -> float:
    """The heuristic's cost of an edit: the sum of :func:`seam_cost` over its seams."""
    beats = edit.track_beats()
    seams = edit.seam_beats()
    if seams.size == 0:
        return 0.0
    return float(np.sum(seam_cost(context, beats[seams - 1], beats[seams])))


class HeuristicPlanner(RetargetPlanner):
    """The retargeting dynamic program priced by the heuristic's :func:`seam_cost` (see ``editing.planner``).

    Following it from the start gives an edit of the least :func:`edit_cost` among all edits
    made of the planner's moves: the bar-aligned cut is one of them, so the heuristic is never
    worse by its own cost.

    Parameters
    ----------
    context : DenseContext
        The track's digested features.
    excerpt_start, bar_positions, target_beats
        As :class:`editing.planner.RetargetPlanner`'s.
    """

    def __init__(self, *, context: DenseContext, excerpt_start: int, bar_positions: np.ndarray,
                 target_beats: int) -> None:
        super().__init__(seam_costs=functools.partial(seam_cost, context), excerpt_start=excerpt_start,
                         bar_positions=bar_positions, target_beats=target_beats)


def retarget_heuristic(*, context: DenseContext, excerpt_start: int, bar_positions: np.ndarray,
                       target_beats: int) -> list[int]:
    """The cheapest edit of exactly ``target_beats`` beats by :func:`edit_cost`: a dynamic program.

    :class:`HeuristicPlanner` tabulates the least cost to finish from every state; the edit
    follows its cheapest move from the opening bar to the final one.  Every edit made of KEEP,
    CUT, LOOP, REPEAT_2, LOOP_BAR, LOOP_PHRASE and STOP (cuts of up to :data:`editing.planner.MAX_JUMP_BEATS`
    beats) is in its search space, the bar-aligned cut included, so its cost is never above
    the cut's.  Parameters as :class:`HeuristicPlanner`'s.

    Returns
    -------
    list[int]
        Action ids.
    """
    builder = _builder(bar_positions, target_beats)
    if builder.done:
        return []  # nothing between the opening and the final bar to edit
    planner = HeuristicPlanner(context=context, excerpt_start=excerpt_start, bar_positions=bar_positions,
                               target_beats=target_beats)
    return plan_actions(planner, bar_positions=bar_positions, target_beats=target_beats)

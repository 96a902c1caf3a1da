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

import numpy as np

from editing.dense import DenseContext
from editing.edit import Action, Edit, EditBuilder, _bar_tables, _skip_target

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
    "HEURISTIC_MAX_JUMP_BEATS",
]

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
# The dynamic program's cuts skip at most this many beats at once (32 bars): longer jumps are
# never needed to halve a passage, and the bound keeps it linear in the passage length.
HEURISTIC_MAX_JUMP_BEATS = 128
_EPS = 1e-9
# The bar-aligned cut's fallbacks, in order, where its plan meets the length rule.
_SHORTEN = (Action.CUT, Action.STOP, Action.KEEP, Action.LOOP, Action.REPEAT_2, Action.LOOP_BAR)
_LENGTHEN = (Action.LOOP_BAR, Action.REPEAT_2, Action.LOOP, Action.KEEP, Action.CUT, Action.STOP)


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
            action = int(rng.choice(np.flatnonzero(mask)))
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


class HeuristicPlanner:
    """The retargeting dynamic program of one passage, as costs to go from any state of the builder.

    A state of :class:`editing.edit.EditBuilder` is (position ``p``, last output beat ``a``,
    middle beats still needed ``r``).  It is *flowing* when ``a == p - 1`` (the source runs on
    into ``p``) and *pending* otherwise (cuts led past ``p - 1``: whatever plays next arrives
    through a seam from ``a``).  Backwards from the final bar, the planner tabulates

    - ``F[p, r]``: the least cost of finishing from the flowing state at ``p``;
    - ``W[q, r]``: the least cost of finishing once the output has arrived at ``q`` (its seam
      paid), by KEEP, LOOP (``q -> q``), REPEAT_2 (``q -> q - 1``) or LOOP_BAR (``q -> bar start``);

    and a pending state costs ``P(a, p, r) = min(min over q >= p of seam(a, q) + W[q, r],
    seam(a, final bar) if r == 0)``: cuts up to ``q``, or STOP.  A seam costs
    :func:`seam_cost`, so the cost of a finished edit is :func:`edit_cost`.  Cuts skip at most
    :data:`HEURISTIC_MAX_JUMP_BEATS` beats at once.  Once per passage, time O(middle beats x
    max jump x target beats) and memory O(middle beats x (max jump + target beats)); each
    state's action costs are then a few lookups.

    :meth:`action_costs` gives every action's cost to go (its seams now, then the plan), which
    the gym env shows the policy; :meth:`best_action` is the heuristic's move, the cheapest
    of KEEP, CUT, LOOP, LOOP_BAR, REPEAT_2 and STOP (CROSSFADE costs what CUT does, SKIP_TO_BAR
    what its cuts do, and REORDER is left to the policy).  Following it from the start gives
    an edit of the least :func:`edit_cost` among all edits made of those moves: the bar-aligned
    cut is one of them, so the heuristic is never worse by its own cost.

    Parameters
    ----------
    context : DenseContext
        The track's digested features.
    excerpt_start : int
        Track beat of the passage's first beat.
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar positions.
    target_beats : int
        Exact output length, beats.

    Raises
    ------
    editing.edit.EditError
        For a target no edit of the passage can meet.
    """

    def __init__(self, *, context: DenseContext, excerpt_start: int, bar_positions: np.ndarray,
                 target_beats: int) -> None:
        bar_positions = np.asarray(bar_positions)
        builder = _builder(bar_positions, target_beats)
        self.head, self.tail = head, tail = builder.head_end, builder.tail_start
        self.need = need = builder.beats_needed
        self._bar_starts, self._next_downbeats = _bar_tables((bar_positions == 0).tobytes())
        width = need + 1
        m = tail - head
        # A cut lands inside the middle, so no jump is longer than it.
        cap = max(1, min(HEURISTIC_MAX_JUMP_BEATS, m))
        middle = np.arange(head, tail)
        bar_start = np.asarray(self._bar_starts[head:tail], dtype=np.int64)
        # Every seam the planner prices, in one call: the moves at each middle beat (index p - head),
        # then out of every last output beat a = head - 1 .. tail - 1 (index a - head + 1) the forward
        # jumps to q = a + 2 + k (k < cap, q inside the middle) and the jump into the final bar (STOP).
        outgoing = np.arange(head - 1, tail)
        landing = outgoing[:, None] + 2 + np.arange(cap)[None, :]
        inside = landing < tail
        pairs = [
            (middle, middle),  # LOOP
            (middle, middle - 1),  # REPEAT_2
            (middle, bar_start),  # LOOP_BAR
            (np.minimum(middle + 1, tail), middle),  # REORDER's p + 1 -> p (p + 1 < tail where used)
            (np.broadcast_to(outgoing[:, None], landing.shape)[inside], landing[inside]),
            (outgoing, np.full(outgoing.size, tail)),
        ]
        sizes = np.cumsum([0] + [a.size for a, _ in pairs])
        costs = seam_cost(context, excerpt_start + np.concatenate([a for a, _ in pairs]),
                          excerpt_start + np.concatenate([b for _, b in pairs]))
        part = [costs[sizes[j] : sizes[j + 1]] for j in range(len(pairs))]
        self._loop, self._repeat, self._reorder, self._stop = part[0], part[1], part[3], part[5]
        self._loop_bar = np.where(bar_start < middle, part[2], np.inf)
        self._loop_bar_added = (middle - bar_start + 2).astype(np.int64)
        self._jump = np.full(landing.shape, np.inf)
        self._jump[inside] = part[4]
        # Where SKIP_TO_BAR from each middle beat lands (a row of F and W).
        self._skip_row = np.array([_skip_target(p, self._next_downbeats, tail) - head for p in range(head, tail)],
                                  dtype=np.int64)
        self._m = m
        self._F, self._W = _kernels().backward(self._loop, self._repeat, self._loop_bar, self._loop_bar_added,
                                               self._jump, self._stop, m, width)

    @property
    def cost(self) -> float:
        """The least cost of a whole edit (the heuristic's edit's :func:`edit_cost`)."""
        return float(self._F[0, self.need])

    def action_costs(self, builder: EditBuilder, *, mask: np.ndarray | None = None) -> np.ndarray:
        """Each action's cost to go from the builder's state: its seams now, then the plan; float64 (9,).

        ``inf`` where the action is masked, or would need a cut longer than
        :data:`HEURISTIC_MAX_JUMP_BEATS`.  The builder must be one of this planner's passage and
        target; ``mask`` is its current ``action_mask()`` where the caller has it already.
        """
        out = np.full(len(Action), np.inf)
        if builder.done:
            return out
        _kernels().action_costs(out, builder.position - self.head, builder.last_output_beat - self.head + 1,
                                builder.beats_needed, self._m, self._F, self._W, self._jump, self._stop, self._loop,
                                self._repeat, self._loop_bar, self._loop_bar_added, self._reorder, self._skip_row,
                                builder.action_mask() if mask is None else mask)
        return out

    def best_action(self, builder: EditBuilder, *, mask: np.ndarray | None = None) -> int:
        """The heuristic's move from the builder's state: the cheapest of its own moves."""
        costs = self.action_costs(builder, mask=mask)
        return int(HEURISTIC_MOVES[np.argmin(costs[HEURISTIC_MOVES])])


def _kernels():
    """The planner's compiled loops (numba is loaded on first use, by processes that plan)."""
    from editing import plan_kernels

    return plan_kernels


HEURISTIC_MOVES = np.array([Action.KEEP, Action.CUT, Action.LOOP, Action.LOOP_BAR, Action.REPEAT_2, Action.STOP])


def retarget_heuristic(*, context: DenseContext, excerpt_start: int, bar_positions: np.ndarray,
                       target_beats: int) -> list[int]:
    """The cheapest edit of exactly ``target_beats`` beats by :func:`edit_cost`: a dynamic program.

    :class:`HeuristicPlanner` tabulates the least cost to finish from every state; the edit
    follows its cheapest move from the opening bar to the final one.  Every edit made of KEEP,
    CUT, LOOP, REPEAT_2, LOOP_BAR and STOP (cuts of up to :data:`HEURISTIC_MAX_JUMP_BEATS`
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
    actions: list[int] = []
    while not builder.done:
        action = planner.best_action(builder)
        builder.step(action)
        actions.append(action)
    return actions

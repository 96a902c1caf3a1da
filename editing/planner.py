"""The retargeting dynamic program: the cheapest edit of exactly the target length under a seam cost.

Pure (numpy, numba for the inner loops).  The seam cost is a parameter: the heuristic's
(``editing.baselines.seam_cost``, giving ``editing.baselines.retarget_heuristic``) or a learned
one (``rlhf.learning.seam_model.LearnedSeamCost``), planned exactly either way.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from editing.edit import Action, EditBuilder, _bar_tables, _phrase_starts, _skip_target

# Seam costs of track beats a -> b (int arrays of one shape), float64 of that shape.
SeamCosts = Callable[[np.ndarray, np.ndarray], np.ndarray]
# The dynamic program's cuts skip at most this many beats at once (32 bars): longer jumps are
# never needed to halve a passage, and the bound keeps it linear in the passage length.
MAX_JUMP_BEATS = 128


class PlannerError(ValueError):
    """A seam cost the planner cannot plan with (wrong shape, NaN, infinite or negative values)."""


def _builder(bar_positions: np.ndarray, target_beats: int) -> EditBuilder:
    bar_positions = np.asarray(bar_positions)
    return EditBuilder(len(bar_positions), bar_positions, target_beats=target_beats)


# LOOP_PHRASE comes last so that, where it costs exactly what another move does, the plan is the one
# the planner made before the move existed.
PLANNER_MOVES = np.array([Action.KEEP, Action.CUT, Action.LOOP, Action.LOOP_BAR, Action.REPEAT_2, Action.STOP,
                          Action.LOOP_PHRASE])


class RetargetPlanner:
    """The retargeting dynamic program of one passage under a seam cost, as costs to go from any state of the builder.

    A state of :class:`editing.edit.EditBuilder` is (position ``p``, last output beat ``a``,
    middle beats still needed ``r``).  It is *flowing* when ``a == p - 1`` (the source runs on
    into ``p``) and *pending* otherwise (cuts led past ``p - 1``: whatever plays next arrives
    through a seam from ``a``).  Backwards from the final bar, the planner tabulates

    - ``F[p, r]``: the least cost of finishing from the flowing state at ``p``;
    - ``W[q, r]``: the least cost of finishing once the output has arrived at ``q`` (its seam
      paid), by KEEP, LOOP (``q -> q``), REPEAT_2 (``q -> q - 1``), LOOP_BAR (``q -> bar start``)
      or LOOP_PHRASE (``q -> phrase start``: a whole phrase repeated through one seam);

    and a pending state costs ``P(a, p, r) = min(min over q >= p of seam(a, q) + W[q, r],
    seam(a, final bar) if r == 0)``: cuts up to ``q``, or STOP.  A seam costs what ``seam_costs``
    says (the heuristic's ``editing.baselines.seam_cost``, or a learned cost), so the cost of a
    finished edit is the sum of its seams' costs.  Cuts skip at most :data:`MAX_JUMP_BEATS` beats
    at once.  Once per passage, time O(middle beats x
    max jump x target beats) and memory O(middle beats x (max jump + target beats)): two
    float64 tables of (middle beats + 1) x (beats needed + 1), about 0.5 GB for a 4,000-beat
    passage at 2x (20 minutes at 200 BPM) and 0.93 GB at the longest passage
    (:data:`editing.edit.MAX_PASSAGE_BEATS`); float64 keeps plans exact, so ties between moves
    are decided as before and costs match a brute-force count to 1e-9; each
    state's action costs are then a few lookups.

    :meth:`action_costs` gives every action's cost to go (its seams now, then the plan), which
    the gym env shows the policy; :meth:`best_action` is the heuristic's move, the cheapest
    of KEEP, CUT, LOOP, LOOP_BAR, REPEAT_2, STOP and LOOP_PHRASE (CROSSFADE costs what CUT
    does, SKIP_TO_BAR what its cuts do, and REORDER is left to the policy).  Following it from the start gives
    an edit of the least cost among all edits made of those moves.

    Parameters
    ----------
    seam_costs : callable (a, b) -> np.ndarray, float64
        The cost of seams from track beats ``a`` to track beats ``b`` (int arrays of one shape),
        evaluated once per passage for every seam the program prices, in one call.  Costs must be
        finite and non-negative (checked).
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

    def __init__(self, *, seam_costs: SeamCosts, excerpt_start: int, bar_positions: np.ndarray,
                 target_beats: int) -> None:
        bar_positions = np.asarray(bar_positions)
        builder = _builder(bar_positions, target_beats)
        self.head, self.tail = head, tail = builder.head_end, builder.tail_start
        self.need = need = builder.beats_needed
        self._bar_starts, self._next_downbeats = _bar_tables((bar_positions == 0).tobytes())
        width = need + 1
        m = tail - head
        # A cut lands inside the middle, so no jump is longer than it.
        cap = max(1, min(MAX_JUMP_BEATS, m))
        middle = np.arange(head, tail)
        bar_start = np.asarray(self._bar_starts[head:tail], dtype=np.int64)
        phrase_start = np.asarray(_phrase_starts((bar_positions == 0).tobytes())[head:tail], dtype=np.int64)
        has_phrase = phrase_start >= 0
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
            (middle[has_phrase], phrase_start[has_phrase]),  # LOOP_PHRASE
        ]
        sizes = np.cumsum([0] + [a.size for a, _ in pairs])
        costs = np.asarray(seam_costs(excerpt_start + np.concatenate([a for a, _ in pairs]),
                                      excerpt_start + np.concatenate([b for _, b in pairs])), dtype=np.float64)
        if costs.shape != (int(sizes[-1]),) or not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise PlannerError(f"seam costs must be {int(sizes[-1])} finite non-negative values; got shape "
                               f"{costs.shape}, {int(np.sum(~np.isfinite(costs)))} not finite")
        part = [costs[sizes[j] : sizes[j + 1]] for j in range(len(pairs))]
        self._loop, self._repeat, self._reorder, self._stop = part[0], part[1], part[3], part[5]
        self._loop_bar = np.where(bar_start < middle, part[2], np.inf)
        self._loop_bar_added = (middle - bar_start + 2).astype(np.int64)
        self._loop_phrase = np.full(m, np.inf)
        self._loop_phrase[has_phrase] = part[6]
        self._loop_phrase_added = np.where(has_phrase, middle - phrase_start + 2, 0).astype(np.int64)
        self._jump = np.full(landing.shape, np.inf)
        self._jump[inside] = part[4]
        # Where SKIP_TO_BAR from each middle beat lands (a row of F and W).
        self._skip_row = np.array([_skip_target(p, self._next_downbeats, tail) - head for p in range(head, tail)],
                                  dtype=np.int64)
        self._m = m
        self._F, self._W = _kernels().backward(self._loop, self._repeat, self._loop_bar, self._loop_bar_added,
                                               self._loop_phrase, self._loop_phrase_added, self._jump, self._stop,
                                               m, width)

    @property
    def cost(self) -> float:
        """The least cost of a whole edit (the planned edit's summed seam costs)."""
        return float(self._F[0, self.need])

    def action_costs(self, builder: EditBuilder, *, mask: np.ndarray | None = None) -> np.ndarray:
        """Each action's cost to go from the builder's state: its seams now, then the plan; float64 (N_ACTIONS,).

        ``inf`` where the action is masked, or would need a cut longer than
        :data:`MAX_JUMP_BEATS`.  The builder must be one of this planner's passage and
        target; ``mask`` is its current ``action_mask()`` where the caller has it already.
        """
        out = np.full(len(Action), np.inf)
        if builder.done:
            return out
        _kernels().action_costs(out, builder.position - self.head, builder.last_output_beat - self.head + 1,
                                builder.beats_needed, self._m, self._F, self._W, self._jump, self._stop, self._loop,
                                self._repeat, self._loop_bar, self._loop_bar_added, self._loop_phrase,
                                self._loop_phrase_added, self._reorder, self._skip_row,
                                builder.action_mask() if mask is None else mask)
        return out

    def best_action(self, builder: EditBuilder, *, mask: np.ndarray | None = None) -> int:
        """The planner's move from the builder's state: the cheapest of its own moves (:data:`PLANNER_MOVES`)."""
        costs = self.action_costs(builder, mask=mask)
        return int(PLANNER_MOVES[np.argmin(costs[PLANNER_MOVES])])


def _kernels():
    """The planner's compiled loops (numba is loaded on first use, by processes that plan)."""
    from editing import plan_kernels

    return plan_kernels


def plan_actions(planner: RetargetPlanner, *, bar_positions: np.ndarray, target_beats: int,
                 forced: dict[int, int] | None = None) -> list[int]:
    """Follow ``planner``'s cheapest move from the opening bar to the final one.

    ``forced`` maps step indices to the action taken there instead (a departure); every other
    step takes the planner's move, so the rest is re-planned exactly around the forced ones.
    Returns the action ids.
    """
    builder = _builder(bar_positions, target_beats)
    actions: list[int] = []
    forced = forced or {}
    while not builder.done:
        step = len(actions)
        action = forced[step] if step in forced else planner.best_action(builder)
        builder.step(action)
        actions.append(action)
    return actions


def alternatives(planner: RetargetPlanner, actions: Sequence[int], *, bar_positions: np.ndarray,
                 target_beats: int) -> list[tuple[int, int, float]]:
    """Every single departure from a plan: ``(step, action, extra cost)`` for each other move with a finite cost.

    The extra cost is the departure's cost to go at that step minus the plan's own move's: how
    much dearer the plan becomes, by the planner's cost, when that one decision changes.
    """
    builder = _builder(bar_positions, target_beats)
    found: list[tuple[int, int, float]] = []
    for step, chosen in enumerate(actions):
        costs = planner.action_costs(builder)
        for action in PLANNER_MOVES:
            action = int(action)
            if action != chosen and np.isfinite(costs[action]):
                found.append((step, action, float(costs[action] - costs[chosen])))
        builder.step(int(chosen))
    return found

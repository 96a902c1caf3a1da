"""The inner loops of :class:`editing.planner.RetargetPlanner`, compiled with numba.

The planner runs once per episode and prices ten actions every step of PPO, where numpy's
per-call overhead on small arrays cost more than the arithmetic.  The loops here are the
planner's definitions written out (see its docstring for F, W and P); ``RetargetPlanner``
imports this module on first use, so a process loads numba only once it plans (workers,
commands, and the site itself only where retarget jobs run in its threads, with no broker).
Compiled code is cached next to this file (``cache=True``).

Indices follow the planner: middle position ``p`` is row ``p - head`` of F and W (row ``m`` is
the final bar); a last output beat ``a`` is row ``a - head + 1`` of ``jump`` and ``stop``;
``jump[a_row, k]`` is the seam from ``a`` to ``a + 2 + k``.
"""
from __future__ import annotations

import numba
import numpy as np

from editing.edit import Action

# Action ids as plain ints for the compiled code (numba freezes globals into its on-disk cache, which
# is only refreshed when this file changes), checked against editing.edit.Action when imported.
_KEEP, _CUT, _LOOP, _LOOP_BAR, _CROSSFADE, _REORDER, _SKIP_TO_BAR, _REPEAT_2, _STOP, _LOOP_PHRASE = range(10)
if [a.name for a in Action] != ["KEEP", "CUT", "LOOP", "LOOP_BAR", "CROSSFADE", "REORDER", "SKIP_TO_BAR", "REPEAT_2",
                                "STOP", "LOOP_PHRASE"]:
    raise ImportError("editing.plan_kernels: its action ids no longer match editing.edit.Action; update them")


@numba.njit(cache=True)
def backward(loop, repeat, loop_bar, loop_bar_added, loop_phrase, loop_phrase_added, jump, stop, m,
             width):  # pragma: no cover - compiled
    """(F, W), float64 [shape=(m + 1, width)]: the least cost to finish, flowing at a position / arrived at it."""
    F = np.full((m + 1, width), np.inf)
    W = np.full((m + 1, width), np.inf)
    F[m, 0] = 0.0
    cap = jump.shape[1]
    for i in range(m - 1, -1, -1):
        added = loop_bar_added[i]
        phrase_added = loop_phrase_added[i]
        for r in range(width):
            best = np.inf
            if r >= 1:
                best = F[i + 1, r - 1]
            if r >= 2:
                best = min(best, loop[i] + F[i + 1, r - 2])
            if r >= 3:
                best = min(best, repeat[i] + F[i + 1, r - 3])
            if r >= added and loop_bar[i] < np.inf:
                best = min(best, loop_bar[i] + F[i + 1, r - added])
            if r >= phrase_added and loop_phrase[i] < np.inf:
                best = min(best, loop_phrase[i] + F[i + 1, r - phrase_added])
            W[i, r] = best
            F[i, r] = best
        # Flowing at p (last output p - 1, row i of jump): cut to q = p + 1 + j, or STOP.
        F[i, 0] = min(F[i, 0], stop[i])
        for j in range(min(m - i - 1, cap)):
            seam = jump[i, j]
            if seam == np.inf:
                continue
            for r in range(width):
                value = seam + W[i + 1 + j, r]
                if value < F[i, r]:
                    F[i, r] = value
    return F, W


@numba.njit(cache=True)
def pending(jump, stop, W, a_row, first, r, m):  # pragma: no cover - compiled
    """P(a, p, r): last output in ``a_row``, next position in row ``first``; cuts to a landing, or STOP."""
    best = stop[a_row] if r == 0 else np.inf
    k0 = first - a_row - 1  # >= 0: the next position is past the last output
    for j in range(min(m - first, jump.shape[1] - k0)):
        value = jump[a_row, k0 + j] + W[first + j, r]
        if value < best:
            best = value
    return best


@numba.njit(cache=True)
def action_costs(out, i, a_row, r, m, F, W, jump, stop, loop, repeat, loop_bar, loop_bar_added, loop_phrase,
                 loop_phrase_added, reorder, skip_row, mask):  # pragma: no cover - compiled
    """Fill ``out`` (10,) with each action's cost to go from (row ``i``, last output in ``a_row``, ``r`` needed)."""
    for action in range(out.shape[0]):
        out[action] = np.inf
    cap = jump.shape[1]
    if a_row == i:  # flowing: a == p - 1
        enter = 0.0
    else:
        k = i - a_row - 1
        enter = jump[a_row, k] if 0 <= k < cap else np.inf
    if r >= 1:
        out[_KEEP] = enter + F[i + 1, r - 1]
    if r >= 2:
        out[_LOOP] = enter + loop[i] + F[i + 1, r - 2]
    if r >= 3:
        out[_REPEAT_2] = enter + repeat[i] + F[i + 1, r - 3]
    added = loop_bar_added[i]
    if r >= added and loop_bar[i] < np.inf:
        out[_LOOP_BAR] = enter + loop_bar[i] + F[i + 1, r - added]
    phrase_added = loop_phrase_added[i]
    if r >= phrase_added and loop_phrase[i] < np.inf:
        out[_LOOP_PHRASE] = enter + loop_phrase[i] + F[i + 1, r - phrase_added]
    out[_CUT] = pending(jump, stop, W, a_row, i + 1, r, m)
    out[_CROSSFADE] = out[_CUT]
    if i + 1 < m:
        out[_SKIP_TO_BAR] = pending(jump, stop, W, a_row, skip_row[i], r, m)
        if r >= 2:
            k = i - a_row  # seam a -> p + 1
            into = jump[a_row, k] if 0 <= k < cap else np.inf
            out[_REORDER] = into + reorder[i] + pending(jump, stop, W, i + 1, i + 2, r - 2, m)
    if r == 0:
        out[_STOP] = stop[a_row]
    for action in range(out.shape[0]):
        if not mask[action]:
            out[action] = np.inf

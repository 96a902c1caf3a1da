"""Small factories for the editing tests: bar patterns, random passages and targets, finished edits."""
from __future__ import annotations

import numpy as np

from editing.edit import Action, Edit, EditBuilder, EditError, target_range

# Preference order for finishing an edit whatever its target: the first valid one is taken.
_FINISH_ORDER = (Action.KEEP, Action.CUT, Action.LOOP, Action.REPEAT_2, Action.LOOP_BAR, Action.REORDER,
                 Action.CROSSFADE, Action.SKIP_TO_BAR, Action.STOP, Action.LOOP_PHRASE)
BAR_KINDS = ("regular", "phase_jumps", "random", "rare_downbeats", "no_downbeat")


def bars(n: int, offset: int = 0) -> np.ndarray:
    """Regular 4/4 bar positions; ``offset`` is the first beat's position (1..3: a pickup)."""
    return ((np.arange(n) + offset) % 4).astype(np.int8)


def bar_pattern(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Bar positions of ``n`` beats of one kind of :data:`BAR_KINDS`.

    ``phase_jumps`` is a beat tracker that loses the bar now and then (a bar of 3 or 5 beats),
    ``random`` one that has no idea, ``rare_downbeats`` a sparse downbeat every ~20 beats.
    """
    if kind == "regular":
        return bars(n, int(rng.integers(4)))
    if kind == "phase_jumps":
        return ((np.arange(n) + int(rng.integers(4)) + np.cumsum(rng.random(n) < 0.08)) % 4).astype(np.int8)
    if kind == "random":
        return rng.integers(0, 4, n).astype(np.int8)
    if kind == "rare_downbeats":
        return np.where(rng.random(n) < 0.05, 0, 1 + rng.integers(0, 3, n)).astype(np.int8)
    if kind == "no_downbeat":
        return np.ones(n, dtype=np.int8)
    raise ValueError(f"bar pattern kind {kind!r}: expected one of {BAR_KINDS}")


def random_target(rng: np.random.Generator, bar_positions: np.ndarray) -> int:
    """A target the passage can meet, uniform over :func:`target_range` (the rare unreachable ones redrawn)."""
    lowest, highest = target_range(bar_positions)
    while True:
        target = int(rng.integers(lowest, highest + 1))
        try:
            EditBuilder(len(bar_positions), bar_positions, target_beats=target)
        except EditError:
            continue
        return target


def finish(builder: EditBuilder) -> list[int]:
    """Step ``builder`` to the end with the first valid action of a fixed preference; returns the actions."""
    actions = []
    while not builder.done:
        mask = builder.action_mask()
        action = next(a for a in _FINISH_ORDER if mask[a])
        builder.step(action)
        actions.append(int(action))
    return actions


def make_edit(n: int, target: int, prefix: list[int] = (), *, excerpt_start: int = 0,
              bar_positions: np.ndarray | None = None) -> Edit:
    """An edit of an ``n``-beat passage to ``target`` beats: ``prefix`` first, then :func:`finish`."""
    bar_positions = bars(n) if bar_positions is None else bar_positions
    builder = EditBuilder(n, bar_positions, excerpt_start, target_beats=target)
    for action in prefix:
        builder.step(action)
    finish(builder)
    return builder.build()


def played(edit: Edit) -> list[int]:
    """The passage beats an edit plays, in order."""
    return edit.source_beats().tolist()


def masked_rollout(rng: np.random.Generator, builder: EditBuilder) -> list[int]:
    """Uniformly random valid actions until the builder is done; asserts some action is always valid."""
    actions = []
    while not builder.done:
        mask = builder.action_mask()
        assert mask.any(), f"no valid action at source beat {builder.position} ({builder.beats_needed} beats needed)"
        action = int(rng.choice(np.flatnonzero(mask)))
        builder.step(action)
        actions.append(action)
    return actions

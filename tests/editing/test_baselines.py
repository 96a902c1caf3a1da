"""editing/baselines.py: valid by construction, and each baseline sounds like what it claims."""
from __future__ import annotations

import numpy as np
import pytest

from editing.baselines import bar_aligned_cut, broken_edit_actions, random_actions
from editing.edit import Action, Transition, apply_actions


def bars(n: int, offset: int = 0) -> np.ndarray:
    return ((np.arange(n) + offset) % 4).astype(np.int8)


def seams(edit):
    """(outgoing, incoming) source beats of every seam."""
    beats, transitions = edit.source_beats(), edit.transitions()
    at = np.flatnonzero((transitions == Transition.CUT) | (transitions == Transition.CROSSFADE))
    return list(zip(beats[at - 1].tolist(), beats[at].tolist()))


@pytest.mark.parametrize("seed", range(50))
def test_random_actions_are_valid_and_stop_at_the_target(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(16, 65))
    bar_positions = bars(n, seed % 4)
    target = int(rng.integers(4, n))
    actions = random_actions(rng, bar_positions=bar_positions, target_beats=target)
    edit = apply_actions(actions, excerpt_start=0, bar_positions=bar_positions)
    # The step that reached the target added at most 5 beats (LOOP_BAR), and the next one is STOP.
    assert edit.n_output_beats < target + 5
    if edit.n_output_beats >= target:
        assert actions[-1] == Action.STOP


def test_random_actions_use_every_action_and_follow_the_seed():
    used = set()
    for seed in range(40):
        used.update(random_actions(np.random.default_rng(seed), bar_positions=bars(32), target_beats=64))
    assert used == set(range(len(Action)))
    one = random_actions(np.random.default_rng(5), bar_positions=bars(32), target_beats=24)
    assert one == random_actions(np.random.default_rng(5), bar_positions=bars(32), target_beats=24)


@pytest.mark.parametrize("n, target, offset", [(32, 24, 0), (32, 16, 0), (64, 32, 0), (48, 40, 1), (32, 20, 2), (16, 12, 0)])
def test_bar_aligned_cut_removes_whole_bars_spread_out(n, target, offset):
    bar_positions = bars(n, offset)
    edit = apply_actions(bar_aligned_cut(bar_positions=bar_positions, target_beats=target), excerpt_start=0, bar_positions=bar_positions)
    assert edit.n_output_beats == target
    for outgoing, incoming in seams(edit):
        assert bar_positions[incoming] == 0 and bar_positions[outgoing] == 3
        assert (incoming - outgoing - 1) % 4 == 0  # whole bars dropped
    assert edit.source_beats()[0] == 0  # it opens as the original does


def test_bar_aligned_cut_spreads_the_removed_bars():
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=24), excerpt_start=0, bar_positions=bars(32))
    assert seams(edit) == [(7, 12), (15, 20)]  # one bar each, with kept bars between


def test_bar_aligned_cut_trims_the_tail_when_the_excess_is_not_whole_bars():
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=26), excerpt_start=0, bar_positions=bars(32))
    assert edit.n_output_beats == 26
    assert edit.actions[-1] == Action.STOP
    assert all(bars(32)[i] == 0 for _, i in seams(edit))


def test_bar_aligned_cut_keeps_everything_when_the_excerpt_is_short_enough():
    assert bar_aligned_cut(bar_positions=bars(16), target_beats=16) == [Action.KEEP] * 16
    assert bar_aligned_cut(bar_positions=bars(16), target_beats=40) == [Action.KEEP] * 16
    with pytest.raises(ValueError, match="target of 0 beats"):
        bar_aligned_cut(bar_positions=bars(16), target_beats=0)


@pytest.mark.parametrize("seed", range(30))
def test_broken_edit_is_valid_and_audibly_broken(seed):
    bar_positions = bars(32, seed % 4)
    actions = broken_edit_actions(np.random.default_rng(seed), bar_positions=bar_positions)
    edit = apply_actions(actions, excerpt_start=0, bar_positions=bar_positions)
    joins = seams(edit)
    assert len(joins) >= 4
    off_bar = [1 for _, incoming in joins if bar_positions[incoming] != 0]
    assert len(off_bar) >= len(joins) / 2
    assert {Action.LOOP, Action.REORDER, Action.REPEAT_2} & set(actions)

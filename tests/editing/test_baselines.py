"""editing/baselines.py: every baseline retargets exactly and keeps the frame; each sounds like what it claims;
the dynamic program is never worse than the bar-aligned cut by its own cost."""
from __future__ import annotations

import numpy as np
import pytest

from editing.audio import FEATURE_GROUPS, N_AUDIO_FEATURES
from editing.baselines import (
    BAR_CUT,
    BASELINE_EDIT_SOURCES,
    BASELINES,
    BROKEN,
    HEURISTIC,
    HEURISTIC_MOVES,
    RANDOM,
    SEAM_BASE_COST,
    bar_aligned_cut,
    baseline_actions,
    broken_edit_actions,
    HeuristicPlanner,
    edit_cost,
    random_actions,
    retarget_heuristic,
    seam_cost,
)
from editing import planner as planner_module
from editing.dense import DenseContext, dense_context
from editing.edit import Action, Edit, EditBuilder, Transition, apply_actions, passage_frame, target_range
from tests.editing.factories import BAR_KINDS, bar_pattern, bars, played, random_target


def seams(edit: Edit) -> list[tuple[int, int]]:
    """(outgoing, incoming) source beats of every seam."""
    beats, transitions = edit.source_beats(), edit.transitions()
    at = np.flatnonzero((transitions == Transition.CUT) | (transitions == Transition.CROSSFADE))
    return list(zip(beats[at - 1].tolist(), beats[at].tolist()))


def assert_retarget(edit: Edit, bar_positions: np.ndarray, target: int) -> None:
    """What every baseline's edit must be: exactly the target long, opening and final bars as written."""
    n = len(bar_positions)
    head_end, tail_start = passage_frame(bar_positions)
    sources = played(edit)
    assert edit.n_output_beats == edit.target_beats == target
    assert sources[:head_end] == list(range(head_end))
    assert sources[len(sources) - (n - tail_start):] == list(range(tail_start, n))


def synthetic_context(rng: np.random.Generator, bar_positions: np.ndarray) -> DenseContext:
    """A track whose timbre follows the bar position and whose harmony changes every bar, with noise."""
    n = len(bar_positions)
    features = np.zeros((n, N_AUDIO_FEATURES), dtype=np.float32)
    features[:, FEATURE_GROUPS["mfcc"]] = rng.normal(size=(4, 20))[bar_positions] + 0.3 * rng.normal(size=(n, 20))
    bar_index = np.cumsum(bar_positions == 0)
    features[:, FEATURE_GROUPS["chroma"]] = np.eye(12)[(bar_index * 5) % 12] + 0.1 + 0.05 * rng.random((n, 12))
    features[:, FEATURE_GROUPS["loudness"].start] = -20.0 + 2.0 * rng.normal(size=n)
    return dense_context(features, np.arange(n + 1, dtype=np.int64) * 11025, bar_positions)


# --------------------------------------------------------------------------- names

def test_baseline_names_live_in_one_place_and_an_unknown_one_is_refused():
    assert BASELINES == (RANDOM, BAR_CUT, HEURISTIC)
    assert set(BASELINE_EDIT_SOURCES) == {RANDOM, BAR_CUT, HEURISTIC, BROKEN}
    assert all(source.startswith("baseline:") for source in BASELINE_EDIT_SOURCES.values())
    assert len(set(BASELINE_EDIT_SOURCES.values())) == 4
    rng = np.random.default_rng(0)
    context = synthetic_context(rng, bars(64))
    with pytest.raises(ValueError, match="baseline 'silence': expected one of random, bar_aligned_cut, heuristic, broken"):
        baseline_actions("silence", rng=rng, context=context, excerpt_start=0, bar_positions=bars(32), target_beats=24)


@pytest.mark.parametrize("name", list(BASELINE_EDIT_SOURCES))
@pytest.mark.parametrize("target", [17, 24, 40, 63])
def test_every_baseline_retargets_exactly_through_one_entry_point(name, target):
    rng = np.random.default_rng(target)
    track_bars = bars(96)
    context = synthetic_context(rng, track_bars)
    passage = track_bars[20:52]
    actions = baseline_actions(name, rng=rng, context=context, excerpt_start=20, bar_positions=passage, target_beats=target)
    assert_retarget(apply_actions(actions, excerpt_start=20, bar_positions=passage, target_beats=target), passage, target)


# --------------------------------------------------------------------------- random

@pytest.mark.parametrize("seed", range(40))
def test_random_actions_meet_the_target_and_keep_the_frame(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 129))
    bar_positions = bar_pattern(rng, n, BAR_KINDS[seed % len(BAR_KINDS)])
    target = random_target(rng, bar_positions)
    actions = random_actions(rng, bar_positions=bar_positions, target_beats=target)
    assert_retarget(apply_actions(actions, excerpt_start=0, bar_positions=bar_positions, target_beats=target),
                    bar_positions, target)


def test_random_actions_use_every_action_and_follow_the_seed():
    used = set()
    for seed in range(40):
        for target in (24, 48):
            used.update(random_actions(np.random.default_rng(seed), bar_positions=bars(32), target_beats=target))
    assert used == set(range(len(Action)))
    one = random_actions(np.random.default_rng(5), bar_positions=bars(32), target_beats=24)
    assert one == random_actions(np.random.default_rng(5), bar_positions=bars(32), target_beats=24)


# --------------------------------------------------------------------------- bar-aligned cut

@pytest.mark.parametrize("n, target, offset", [(32, 24, 0), (32, 16, 0), (64, 32, 0), (48, 40, 1), (32, 20, 2), (16, 12, 0)])
def test_bar_aligned_cut_shortens_by_removing_whole_bars(n, target, offset):
    bar_positions = bars(n, offset)
    edit = apply_actions(bar_aligned_cut(bar_positions=bar_positions, target_beats=target), excerpt_start=0,
                         bar_positions=bar_positions, target_beats=target)
    assert_retarget(edit, bar_positions, target)
    assert seams(edit)
    for outgoing, incoming in seams(edit):
        assert bar_positions[incoming] == 0 and bar_positions[outgoing] == 3
        assert (incoming - outgoing - 1) % 4 == 0  # whole bars dropped


def test_bar_aligned_cut_spreads_the_removed_bars():
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=24), excerpt_start=0,
                         bar_positions=bars(32), target_beats=24)
    assert seams(edit) == [(7, 12), (19, 24)]  # one bar each, with kept bars between


@pytest.mark.parametrize("n, target, offset", [(32, 40, 0), (16, 20, 0), (64, 80, 2), (48, 56, 1)])
def test_bar_aligned_cut_lengthens_by_repeating_whole_bars(n, target, offset):
    bar_positions = bars(n, offset)
    edit = apply_actions(bar_aligned_cut(bar_positions=bar_positions, target_beats=target), excerpt_start=0,
                         bar_positions=bar_positions, target_beats=target)
    assert_retarget(edit, bar_positions, target)
    assert len(seams(edit)) == (target - n) // 4
    for outgoing, incoming in seams(edit):
        assert bar_positions[outgoing] == 3 and incoming == outgoing - 3  # the bar just heard, again


def test_bar_aligned_cut_spreads_the_repeated_bars():
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=40), excerpt_start=0,
                         bar_positions=bars(32), target_beats=40)
    assert seams(edit) == [(11, 8), (23, 20)]


def test_bar_aligned_cut_makes_up_a_part_bar_just_before_the_final_bar():
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=26), excerpt_start=0,
                         bar_positions=bars(32), target_beats=26)
    assert_retarget(edit, bars(32), 26)
    assert seams(edit) == [(15, 20), (25, 28)]  # one whole bar, then 2 beats before the final bar at 28


def test_bar_aligned_cut_changes_nothing_when_the_target_is_the_passage():
    assert bar_aligned_cut(bar_positions=bars(16), target_beats=16) == [Action.KEEP] * 8


@pytest.mark.parametrize("seed", range(40))
def test_bar_aligned_cut_meets_any_reachable_target_on_any_bars(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(8, 200))
    bar_positions = bar_pattern(rng, n, BAR_KINDS[seed % len(BAR_KINDS)])
    for target in (*target_range(bar_positions), random_target(rng, bar_positions)):
        actions = bar_aligned_cut(bar_positions=bar_positions, target_beats=target)
        assert_retarget(apply_actions(actions, excerpt_start=0, bar_positions=bar_positions, target_beats=target),
                        bar_positions, target)


def test_an_unreachable_target_is_refused_with_the_range():
    with pytest.raises(ValueError, match="possible targets are 8..32 beats"):
        bar_aligned_cut(bar_positions=bars(16), target_beats=40)


# --------------------------------------------------------------------------- broken

@pytest.mark.parametrize("seed", range(30))
def test_broken_edit_is_valid_and_audibly_broken(seed):
    bar_positions = bars(32, seed % 4)
    target = (24, 32, 40)[seed % 3]
    actions = broken_edit_actions(np.random.default_rng(seed), bar_positions=bar_positions, target_beats=target)
    edit = apply_actions(actions, excerpt_start=0, bar_positions=bar_positions, target_beats=target)
    assert_retarget(edit, bar_positions, target)
    joins = seams(edit)
    assert len(joins) >= 4
    off_bar = [1 for _, incoming in joins if bar_positions[incoming] != 0]
    assert len(off_bar) >= len(joins) / 2
    assert {Action.LOOP, Action.REORDER, Action.REPEAT_2} & set(actions)


# --------------------------------------------------------------------------- seam cost and the heuristic

def test_seam_cost_prefers_seams_a_listener_does_not_hear():
    rng = np.random.default_rng(0)
    context = synthetic_context(rng, bars(64))
    # Into the beat that follows anyway: only the base cost of a seam, on a downbeat.
    assert float(seam_cost(context, 7, 8)) == pytest.approx(SEAM_BASE_COST)
    # From a bar's end into a downbeat (on the metre) vs into the middle of a bar (off the metre).
    on_bar = seam_cost(context, np.array([7, 15, 23]), np.array([16, 24, 32]))
    off_bar = seam_cost(context, np.array([7, 15, 23]), np.array([18, 25, 35]))
    assert np.all(on_bar < off_bar)
    assert seam_cost(context, np.arange(10), np.arange(10) + 5).shape == (10,)


def test_edit_cost_is_the_sum_over_the_seams():
    rng = np.random.default_rng(1)
    context = synthetic_context(rng, bars(64))
    untouched = apply_actions([Action.KEEP] * 24, excerpt_start=0, bar_positions=bars(32), target_beats=32)
    assert edit_cost(untouched, context) == 0.0
    edit = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=24), excerpt_start=8,
                         bar_positions=bars(32), target_beats=24)
    beats = edit.track_beats()
    expected = sum(float(seam_cost(context, beats[k - 1], beats[k])) for k in edit.seam_beats().tolist())
    assert edit_cost(edit, context) == pytest.approx(expected)


def heuristic_against_bar_cut(context: DenseContext, track_bars: np.ndarray, start: int, n: int,
                              target: int) -> tuple[float, float]:
    """Both baselines' edits of one passage, checked as retargets; returns their :func:`edit_cost`."""
    passage = track_bars[start : start + n]
    heuristic = apply_actions(
        retarget_heuristic(context=context, excerpt_start=start, bar_positions=passage, target_beats=target),
        excerpt_start=start, bar_positions=passage, target_beats=target,
    )
    bar_cut = apply_actions(bar_aligned_cut(bar_positions=passage, target_beats=target), excerpt_start=start,
                            bar_positions=passage, target_beats=target)
    assert_retarget(heuristic, passage, target)
    return edit_cost(heuristic, context), edit_cost(bar_cut, context)


def draw_target(rng: np.random.Generator, passage: np.ndarray, mode: str) -> int:
    """A reachable target that shortens or lengthens the passage (the passage's own length if it cannot)."""
    n = len(passage)
    lowest, highest = target_range(passage)
    for _ in range(50):
        target = random_target(rng, passage)
        if (mode == "shorten" and target < n) or (mode == "lengthen" and target > n):
            return target
    assert lowest == highest == n, f"no {mode} target for a passage with range {lowest}..{highest}"
    return n


@pytest.mark.parametrize("mode", ["shorten", "lengthen"])
@pytest.mark.parametrize("seed", range(30))
def test_the_heuristic_hits_the_exact_length_and_is_never_worse_than_the_bar_cut(seed, mode):
    rng = np.random.default_rng(seed)
    track_bars = bar_pattern(rng, 160, BAR_KINDS[seed % 3])  # regular, phase jumps, random
    context = synthetic_context(rng, track_bars)
    n = int(rng.integers(8, 97))
    start = int(rng.integers(0, 160 - n + 1))
    target = draw_target(rng, track_bars[start : start + n], mode)
    heuristic, bar_cut = heuristic_against_bar_cut(context, track_bars, start, n, target)
    assert heuristic <= bar_cut + 1e-9


@pytest.mark.parametrize("kind", BAR_KINDS)
def test_the_heuristic_meets_both_ends_of_the_target_range(kind):
    rng = np.random.default_rng(len(kind))
    track_bars = bar_pattern(rng, 120, kind)
    context = synthetic_context(rng, track_bars)
    for n, start in ((16, 0), (37, 30), (64, 50)):
        for target in target_range(track_bars[start : start + n]):
            heuristic, bar_cut = heuristic_against_bar_cut(context, track_bars, start, n, target)
            assert heuristic <= bar_cut + 1e-9


def test_the_heuristic_puts_its_seams_on_bar_lines_where_the_bars_are_regular():
    rng = np.random.default_rng(3)
    context = synthetic_context(rng, bars(128))
    for start, n, target in ((0, 32, 24), (16, 64, 40), (8, 32, 48), (32, 48, 72)):
        passage = bars(128)[start : start + n]
        actions = retarget_heuristic(context=context, excerpt_start=start, bar_positions=passage, target_beats=target)
        edit = apply_actions(actions, excerpt_start=start, bar_positions=passage, target_beats=target)
        assert seams(edit)
        for outgoing, incoming in seams(edit):
            assert passage[incoming] == 0 and passage[outgoing] == 3, f"seam {outgoing} -> {incoming} of {start}+{n} -> {target}"


def test_the_heuristic_leaves_an_unchanged_length_untouched():
    rng = np.random.default_rng(4)
    context = synthetic_context(rng, bars(64))
    actions = retarget_heuristic(context=context, excerpt_start=4, bar_positions=bars(32), target_beats=32)
    edit = apply_actions(actions, excerpt_start=4, bar_positions=bars(32), target_beats=32)
    assert seams(edit) == [] and edit_cost(edit, context) == 0.0


def test_the_heuristic_on_demo_tracks_hits_the_length_and_is_never_worse_than_the_bar_cut(demo_analyses):
    # Real analysed audio: the whole track and a random passage of each demo track, shortened and lengthened.
    rng = np.random.default_rng(0)
    for name, (analysis, _, _) in demo_analyses.items():
        context = dense_context(analysis.features, analysis.beat_samples, analysis.bar_positions)
        for mode in ("shorten", "lengthen"):
            for n in (analysis.n_beats, int(rng.integers(16, min(64, analysis.n_beats) + 1))):
                start = int(rng.integers(0, analysis.n_beats - n + 1))
                target = draw_target(rng, analysis.bar_positions[start : start + n], mode)
                heuristic, bar_cut = heuristic_against_bar_cut(context, analysis.bar_positions, start, n, target)
                assert heuristic <= bar_cut + 1e-9, f"{name}: {start}+{n} -> {target}"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["shorten", "lengthen"])
@pytest.mark.parametrize("seed", range(8))
def test_the_heuristic_on_long_passages(seed, mode):
    # Whole-track lengths (96..300 beats), where jumps are long and the program is widest.
    rng = np.random.default_rng(500 + seed)
    track_bars = bar_pattern(rng, 400, BAR_KINDS[seed % 3])
    context = synthetic_context(rng, track_bars)
    n = int(rng.integers(96, 301))
    start = int(rng.integers(0, 400 - n + 1))
    target = draw_target(rng, track_bars[start : start + n], mode)
    heuristic, bar_cut = heuristic_against_bar_cut(context, track_bars, start, n, target)
    assert heuristic <= bar_cut + 1e-9


# --------------------------------------------------------------------------- the planner's costs to go

def _every_completion(passage: np.ndarray, start: int, target: int) -> dict[tuple[int, ...], Edit]:
    """Every masked action sequence that finishes the passage, with its edit: brute force."""
    out: dict[tuple[int, ...], Edit] = {}

    def walk(prefix: tuple[int, ...]) -> None:
        builder = EditBuilder(len(passage), passage, start, target_beats=target)
        for action in prefix:
            builder.step(action)
        if builder.done:
            out[prefix] = builder.build()
            return
        for action in np.flatnonzero(builder.action_mask()):
            walk(prefix + (int(action),))

    walk(())
    return out


def _seams_so_far(builder: EditBuilder, context: DenseContext) -> float:
    """What the output written so far has paid in seams."""
    entries = builder.entries
    edit = Edit(builder.excerpt_start, builder.n_source_beats, (), entries, None)
    return edit_cost(edit, context)


@pytest.mark.parametrize("seed", range(12))
def test_the_planner_costs_are_exact_against_brute_force(seed):
    """Every state's action costs equal the cheapest completion that starts with that action (all nine
    actions), and the heuristic's edit is the cheapest edit made of its own moves."""
    rng = np.random.default_rng(900 + seed)
    track_bars = bar_pattern(rng, 64, BAR_KINDS[seed % 3])
    context = synthetic_context(rng, track_bars)
    while True:  # a passage with a middle of 3 to 6 beats to edit
        n = int(rng.integers(12, 17))
        start = int(rng.integers(0, 64 - n + 1))
        passage = track_bars[start : start + n]
        head_end, tail_start = passage_frame(passage)
        if 3 <= tail_start - head_end <= 6:
            break
    target = random_target(rng, passage)
    planner = HeuristicPlanner(context=context, excerpt_start=start, bar_positions=passage, target_beats=target)
    every = _every_completion(passage, start, target)
    assert 0 < len(every) < 60_000
    cost_of = {actions: edit_cost(edit, context) for actions, edit in every.items()}
    own = [c for actions, c in cost_of.items() if set(actions) <= set(HEURISTIC_MOVES.tolist())]
    heuristic = retarget_heuristic(context=context, excerpt_start=start, bar_positions=passage, target_beats=target)
    assert cost_of[tuple(heuristic)] == pytest.approx(min(own)) and min(own) == pytest.approx(planner.cost)
    # The cheapest completion after each (state, action), all nine actions first, then the heuristic's moves.
    own_moves = set(HEURISTIC_MOVES.tolist())
    then_own: dict[tuple[int, ...], float] = {}
    for actions, c in cost_of.items():
        for k in range(len(actions)):
            if set(actions[k + 1:]) <= own_moves:
                then_own[actions[: k + 1]] = min(then_own.get(actions[: k + 1], np.inf), c)
    prefixes = {actions[:k] for actions in cost_of for k in range(len(actions))}
    for prefix in prefixes:
        builder = EditBuilder(n, passage, start, target_beats=target)
        for action in prefix:
            builder.step(action)
        paid = _seams_so_far(builder, context)
        costs = planner.action_costs(builder)
        for action in range(len(Action)):
            expected = then_own.get((*prefix, action), np.inf) - paid
            assert costs[action] == pytest.approx(expected, abs=1e-9), f"{prefix} then {Action(action).name}"
    assert len(prefixes) > 3


def test_the_planner_shows_the_heuristic_its_own_edit_as_cheapest_at_every_step():
    rng = np.random.default_rng(5)
    context = synthetic_context(rng, bars(160))
    passage = bars(160)[16:80]
    for target in (40, 90):
        planner = HeuristicPlanner(context=context, excerpt_start=16, bar_positions=passage, target_beats=target)
        builder = EditBuilder(64, passage, 16, target_beats=target)
        spent = []
        while not builder.done:
            costs = planner.action_costs(builder)
            assert np.isfinite(costs).any() and np.all(np.isinf(costs[~builder.action_mask()]))
            action = planner.best_action(builder)
            spent.append(costs[action])
            builder.step(action)
        # The cost to go only falls by the seams paid on the way.
        assert spent[0] == pytest.approx(planner.cost)
        assert np.all(np.diff(spent) <= 1e-9)
        assert edit_cost(builder.build(), context) == pytest.approx(planner.cost)


@pytest.mark.parametrize("seed", range(6))
def test_the_planners_cuts_skip_at_most_the_jump_limit(seed, monkeypatch):
    """With the limit at 1 beat, each action's cost to go is the cheapest completion whose cuts (made from
    that state on) skip at most 1 beat, STOP's jump into the final bar excepted: the limit binds exactly."""
    import editing.baselines as baselines

    monkeypatch.setattr(planner_module, "MAX_JUMP_BEATS", 1)
    rng = np.random.default_rng(1700 + seed)
    track_bars = bars(64)
    context = synthetic_context(rng, track_bars)
    start, n = 4 * int(rng.integers(0, 12)), 13  # a middle of 4 beats: cuts of 2 to 4 beats are over the limit
    passage = track_bars[start : start + n]
    head, tail = passage_frame(passage)
    target = head + (n - tail) + 1 + seed % 3  # one to three middle beats kept: cuts land inside the middle
    planner = HeuristicPlanner(context=context, excerpt_start=start, bar_positions=passage, target_beats=target)
    every = _every_completion(passage, start, target)
    own_moves = set(HEURISTIC_MOVES.tolist())
    bound = 0
    for prefix in {actions[:k] for actions in every for k in range(len(actions))}:
        builder = EditBuilder(n, passage, start, target_beats=target)
        for action in prefix:
            builder.step(action)
        written, paid = builder.n_output_beats, _seams_so_far(builder, context)
        costs = planner.action_costs(builder)
        for action in range(len(Action)):
            best = np.inf
            for actions, edit in every.items():
                if actions[: len(prefix) + 1] != (*prefix, action) or not set(actions[len(prefix) + 1:]) <= own_moves:
                    continue
                sources = edit.source_beats()
                skips = [sources[i] - sources[i - 1] - 1 for i in edit.seam_beats().tolist()
                         if i >= written and sources[i - 1] + 1 < sources[i] < tail]
                if all(s <= 1 for s in skips):
                    best = min(best, edit_cost(edit, context) - paid)
                else:
                    bound += 1
            assert costs[action] == pytest.approx(best, abs=1e-9), f"{prefix} then {Action(action).name}"
    assert bound > 0  # some completions were over the limit: it was tested, not idle

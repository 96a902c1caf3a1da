"""editing/edit.py: the retarget task (frame kept, exact length), action semantics, masks, validation, JSON, features."""
from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest

from editing.audio import N_AUDIO_FEATURES
from editing.edit import (
    ACTION_SET_VERSION,
    EDIT_FEATURE_NAMES,
    MODEL_FEATURE_VERSION,
    MAX_PHRASE_BEATS,
    N_ACTIONS,
    N_EDIT_FEATURES,
    N_MODEL_FEATURES,
    PHRASE_BARS,
    SEAM_CONTEXT_BEATS,
    WINDOW_BEATS,
    Action,
    Edit,
    EditBuilder,
    EditError,
    Transition,
    apply_actions,
    edit_features,
    model_input,
    passage_frame,
    scoring_windows,
    target_range,
    unedited,
    validate_edit,
)
from tests.editing.factories import BAR_KINDS, bar_pattern, bars, make_edit, masked_rollout, played, random_target

A = Action
T = Transition


def transitions(edit: Edit) -> list[Transition]:
    return [e.transition for e in edit.entries]


# --------------------------------------------------------------------------- the frame and the range

@pytest.mark.parametrize(
    "bar_positions, frame",
    [
        (bars(16), (4, 12)),  # opening bar 0..3, final bar 12..15
        (bars(16, 2), (6, 10)),  # a 2-beat pickup stays with the bar it leads into; the last bar keeps its 2 extra beats
        (bars(17, 3), (5, 13)),
        (bars(8), (4, 4)),  # two bars: nothing between them to edit
        (np.ones(20, dtype=np.int8), (4, 16)),  # no downbeat at all: the first and last 4 beats
    ],
)
def test_passage_frame_is_the_opening_and_the_final_bar(bar_positions, frame):
    assert passage_frame(bar_positions) == frame


@pytest.mark.parametrize("kind", BAR_KINDS)
def test_the_unedited_passage_plays_every_beat_once_in_order_without_a_seam(kind):
    positions = bar_pattern(np.random.default_rng(3), 37, kind)
    edit = unedited(excerpt_start=20, bar_positions=positions)
    assert list(edit.track_beats()) == list(range(20, 57))
    assert edit.seam_beats().size == 0 and edit.target_beats == 37
    validate_edit(edit, n_track_beats=80, bar_positions=np.concatenate([np.zeros(20, np.int8), positions,
                                                                        np.zeros(23, np.int8)]))


def test_target_range_is_half_to_twice_the_passage_when_the_bars_allow_it():
    assert target_range(bars(16)) == (8, 32)
    assert target_range(bars(64, 1)) == (32, 128)
    # Two bars and nothing between them: the only retarget is the passage itself.
    assert target_range(bars(8)) == (8, 8)
    # The frame is 4 + 4 beats of a 12-beat passage: never shorter than the two bars.
    assert target_range(bars(12))[0] == 8


@pytest.mark.parametrize("target", [7, 33, 0, -4, 1000])
def test_a_target_outside_the_range_is_refused_with_the_range(target):
    with pytest.raises(EditError, match=f"no retarget of this 16-beat passage lasts {target} beats: possible targets are 8..32 beats"):
        EditBuilder(16, bars(16), target_beats=target)
    with pytest.raises(EditError, match="possible targets are 8..32"):
        apply_actions([], excerpt_start=0, bar_positions=bars(16), target_beats=target)


@pytest.mark.parametrize("seed", range(60))
def test_both_ends_of_the_target_range_are_reachable_and_nothing_beyond(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 120))
    bar_positions = bar_pattern(rng, n, BAR_KINDS[seed % len(BAR_KINDS)])
    lowest, highest = target_range(bar_positions)
    assert np.ceil(n / 2) <= lowest <= highest <= 2 * n
    for target in (lowest, highest):
        edit = make_edit(n, target, bar_positions=bar_positions)
        assert edit.n_output_beats == target
    for target in (lowest - 1, highest + 1):
        with pytest.raises(EditError, match=f"possible targets are {lowest}..{highest}"):
            EditBuilder(n, bar_positions, target_beats=target)


# --------------------------------------------------------------------------- what each action plays

OPENING, FINAL = [0, 1, 2, 3], [12, 13, 14, 15]  # of a 16-beat passage in regular bars


@pytest.mark.parametrize(
    "prefix, target, middle",
    [
        ([], 16, [4, 5, 6, 7, 8, 9, 10, 11]),
        ([A.CUT], 15, [5, 6, 7, 8, 9, 10, 11]),
        ([A.LOOP], 17, [4, 4, 5, 6, 7, 8, 9, 10, 11]),
        ([A.KEEP, A.KEEP, A.KEEP, A.LOOP_BAR], 20, [4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11]),
        ([A.KEEP, A.CROSSFADE], 15, [4, 6, 7, 8, 9, 10, 11]),
        ([A.REORDER], 16, [5, 4, 6, 7, 8, 9, 10, 11]),
        ([A.KEEP, A.SKIP_TO_BAR], 13, [4, 8, 9, 10, 11]),
        ([A.KEEP, A.REPEAT_2], 18, [4, 5, 4, 5, 6, 7, 8, 9, 10, 11]),
        ([A.KEEP, A.KEEP, A.STOP], 10, [4, 5]),
        ([A.REPEAT_2], 18, [4, 3, 4, 5, 6, 7, 8, 9, 10, 11]),  # the first middle beat repeats the opening's last
    ],
)
def test_each_action_plays_the_documented_beats_between_the_untouched_bars(prefix, target, middle):
    edit = make_edit(16, target, [int(a) for a in prefix])
    assert played(edit) == OPENING + middle + FINAL
    assert edit.n_output_beats == edit.target_beats == target
    assert edit.actions[: len(prefix)] == tuple(int(a) for a in prefix)


def test_stop_jumps_to_the_final_bar_which_is_always_played():
    edit = apply_actions([A.KEEP, A.KEEP, A.STOP], excerpt_start=3, bar_positions=bars(16), target_beats=10)
    assert played(edit) == [0, 1, 2, 3, 4, 5, 12, 13, 14, 15]
    assert edit.track_beats().tolist() == [3, 4, 5, 6, 7, 8, 15, 16, 17, 18]
    assert transitions(edit) == [T.START] + [T.CONTINUE] * 5 + [T.CUT] + [T.CONTINUE] * 3
    assert edit.seam_beats().tolist() == [6]
    assert edit.actions == (0, 0, 8)  # the opening and final bars are not actions


def test_crossfade_makes_the_next_seam_long_and_seams_are_marked():
    edit = make_edit(16, 15, [A.KEEP, A.CROSSFADE])
    assert transitions(edit)[5] == T.CROSSFADE
    assert edit.seam_beats().tolist() == [5]


def test_a_pickup_stays_with_its_bar():
    edit = apply_actions([A.STOP], excerpt_start=0, bar_positions=bars(16, 2), target_beats=12)
    assert played(edit) == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]


def test_loop_bar_replays_from_the_downbeat_only():
    assert played(make_edit(16, 19, [A.KEEP, A.LOOP_BAR]))[:8] == [0, 1, 2, 3, 4, 5, 4, 5]


@pytest.mark.parametrize(
    "prefix, target, action, reason",
    [
        ([], 16, A.LOOP_BAR, "no earlier beat of this bar"),  # source beat 4 is a downbeat
        ([A.KEEP] * 7, 16, A.REORDER, "final bar, which is played as written"),
        ([A.KEEP] * 7, 16, A.SKIP_TO_BAR, "use STOP to jump there"),
        ([], 16, A.STOP, "could not last exactly 16 beats"),  # the old STOP's "keep the start, drop the rest"
        ([A.KEEP] * 7, 16, A.LOOP, "could not last exactly 16 beats"),  # overshooting is ruled out as well
        ([], 8, A.KEEP, r"could not last exactly 8 beats \(0 more middle beats are needed from 8 source beats\)"),
    ],
)
def test_masked_actions_are_refused_with_the_reason(prefix, target, action, reason):
    builder = EditBuilder(16, bars(16), target_beats=target)
    for a in prefix:
        builder.step(a)
    assert not builder.action_mask()[action]
    with pytest.raises(EditError, match=reason):
        builder.step(action)


def test_the_shortest_target_leaves_only_the_jumps_to_the_final_bar():
    builder = EditBuilder(16, bars(16), target_beats=8)
    assert {Action(a) for a in np.flatnonzero(builder.action_mask())} == {A.CUT, A.CROSSFADE, A.SKIP_TO_BAR, A.STOP}
    builder.step(A.STOP)
    assert played(builder.build()) == OPENING + FINAL


def test_one_beat_over_the_shortest_allows_one_kept_beat_and_no_loop():
    builder = EditBuilder(16, bars(16), target_beats=9)
    allowed = {Action(a) for a in np.flatnonzero(builder.action_mask())}
    assert allowed == {A.KEEP, A.CUT, A.CROSSFADE, A.SKIP_TO_BAR}
    builder.step(A.KEEP)
    assert builder.beats_needed == 0 and builder.action_mask()[A.STOP] and not builder.action_mask()[A.KEEP]


def test_the_builder_reports_what_is_left():
    builder = EditBuilder(16, bars(16), excerpt_start=2, target_beats=19)
    assert builder.n_output_beats == 4 and builder.position == 4  # the opening bar is already written
    assert builder.beats_needed == 11 and builder.middle_beats_left == 8
    assert builder.step(A.LOOP) == 2
    assert builder.beats_needed == 9 and builder.middle_beats_left == 7
    with pytest.raises(EditError, match="not finished: source beat 5 of 16 is next"):
        builder.build()
    builder.step(A.LOOP)
    builder.step(A.LOOP)
    for _ in range(4):
        builder.step(A.KEEP)
    assert builder.step(A.KEEP) == 5  # the last middle beat and the final bar
    assert builder.done and builder.beats_needed == 0 and not builder.action_mask().any()
    with pytest.raises(EditError, match="after the edit is finished"):
        builder.step(A.KEEP)
    assert builder.build().n_output_beats == 19


# --------------------------------------------------------------------------- the length rule, by reference

def documented_plan(bar_positions: np.ndarray, head_end: int, tail_start: int, p: int,
                    action: Action) -> tuple[list[int], int] | None:
    """(output source beats, source beats consumed) of ``action`` at middle beat ``p`` as the module docstring's
    table states it, before the length rule; None where the table says it is not possible.

    Written from the table alone, independently of EditBuilder, as the reference the builder is checked against.
    """
    t = tail_start
    d = next((q for q in range(p, p - 4, -1) if q >= 0 and bar_positions[q] == 0), max(0, p - 3))
    next_downbeat = next((q for q in range(p + 1, len(bar_positions)) if bar_positions[q] == 0), t)
    has_next = p + 1 < t
    downbeats = [q for q in range(len(bar_positions)) if bar_positions[q] == 0]
    latest = sum(1 for q in downbeats if q <= p) - 1
    f = downbeats[latest - latest % PHRASE_BARS] if latest >= 0 else None
    phrase_ok = f is not None and head_end <= f < d and p - f < MAX_PHRASE_BEATS
    return {
        A.KEEP: ([p], 1),
        A.CUT: ([], 1),
        A.LOOP: ([p, p], 1),
        A.LOOP_BAR: ([p, *range(d, p + 1)], 1) if p > d else None,
        A.CROSSFADE: ([], 1),
        A.REORDER: ([p + 1, p], 2) if has_next else None,
        A.SKIP_TO_BAR: ([], min(next_downbeat, t) - p) if has_next else None,
        A.REPEAT_2: ([p, p - 1, p], 1),
        A.STOP: ([], t - p),
        A.LOOP_PHRASE: ([p, *range(f, p + 1)], 1) if phrase_ok else None,
    }[action]


def completion_reference(bar_positions: np.ndarray):
    """``can_finish(p, need)``: some action sequence from middle beat p writes exactly ``need`` more middle beats."""
    head_end, tail_start = passage_frame(bar_positions)

    @functools.lru_cache(maxsize=None)
    def can_finish(p: int, need: int) -> bool:
        if p == tail_start:
            return need == 0
        for action in Action:
            plan = documented_plan(bar_positions, head_end, tail_start, p, action)
            if plan is not None and len(plan[0]) <= need and can_finish(p + plan[1], need - len(plan[0])):
                return True
        return False

    return can_finish


@pytest.mark.parametrize("seed", range(120))
def test_the_mask_is_exactly_some_completion_exists(seed):
    # Property: at every step of random episodes (all bar kinds, 8..64 beats, random reachable targets),
    # each action is unmasked exactly when the table allows it AND the target can still be met after it;
    # applying it plays the documented beats, and a valid action always exists until the edit is done.
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(8, 65))
    bar_positions = bar_pattern(rng, n, BAR_KINDS[seed % len(BAR_KINDS)])
    head_end, tail_start = passage_frame(bar_positions)
    target = random_target(rng, bar_positions)
    can_finish = completion_reference(bar_positions)
    builder = EditBuilder(n, bar_positions, excerpt_start=int(rng.integers(0, 5)), target_beats=target)
    assert can_finish(head_end, builder.beats_needed) or builder.done
    # Half the episodes favour the looping actions, to reach long targets' corners.
    loopy = seed % 2 == 1
    while not builder.done:
        mask = builder.action_mask()
        assert mask.shape == (N_ACTIONS,) and mask.dtype == bool and mask.any()
        p, need = builder.position, builder.beats_needed
        for action in Action:
            plan = documented_plan(bar_positions, head_end, tail_start, p, action)
            possible = plan is not None and len(plan[0]) <= need and can_finish(p + plan[1], need - len(plan[0]))
            assert mask[action] == possible, f"{action.name} at beat {p} with {need} beats needed"
            if not possible:
                continue
            probe = copy.deepcopy(builder)
            before = probe.n_output_beats
            probe.step(action)
            written = [e.source_beat for e in probe.entries[before:]]
            final = list(range(tail_start, n)) if probe.done else []
            assert written == plan[0] + final
            assert probe.position == (n if probe.done else p + plan[1])
        looping = [a for a in (A.REPEAT_2, A.LOOP_BAR, A.LOOP) if mask[a]]
        builder.step(looping[0] if loopy and looping and rng.random() < 0.7 else int(rng.choice(np.flatnonzero(mask))))
    assert builder.build().n_output_beats == target


def all_documented_edits(bar_positions: np.ndarray) -> dict[tuple[int, ...], int]:
    """Every complete action sequence the table allows (no length rule), with its output length: brute force."""
    n = len(bar_positions)
    head_end, tail_start = passage_frame(bar_positions)
    fixed = head_end + n - tail_start
    found: dict[tuple[int, ...], int] = {}

    def walk(p: int, actions: tuple[int, ...], written: int) -> None:
        if p == tail_start:
            found[actions] = fixed + written
            return
        for action in Action:
            plan = documented_plan(bar_positions, head_end, tail_start, p, action)
            if plan is not None:
                walk(p + plan[1], actions + (int(action),), written + len(plan[0]))

    walk(head_end, (), 0)
    return found


def all_masked_edits(builder: EditBuilder) -> set[tuple[int, ...]]:
    """Every complete action sequence the builder's masks allow: depth-first over copies."""
    if builder.done:
        return {()}
    out = set()
    for action in np.flatnonzero(builder.action_mask()):
        probe = copy.deepcopy(builder)
        probe.step(int(action))
        out |= {(int(action), *rest) for rest in all_masked_edits(probe)}
    return out


SMALL_PASSAGES = [bars(12), bars(13, 3), bars(14, 0), bars(15, 2), bars(9, 1), bars(8),
                  np.array([0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 0, 1], dtype=np.int8),  # 3-beat bars
                  np.array([3, 0, 2, 2, 1, 0, 3, 0, 0, 1, 2, 0, 3], dtype=np.int8),  # a confused tracker
                  np.ones(12, dtype=np.int8)]  # no downbeat at all


@pytest.mark.parametrize("index", range(len(SMALL_PASSAGES)))
def test_on_small_passages_the_masks_allow_exactly_the_edits_that_meet_the_target(index):
    # Brute force: enumerate every action sequence of the documented table, group by output length; for every
    # target the builder accepts exactly the lengths within 0.5x..2x that some sequence has, and its masks
    # let through exactly the sequences of that length: never a dead end, never a lost edit.
    bar_positions = SMALL_PASSAGES[index]
    n = len(bar_positions)
    every = all_documented_edits(bar_positions)
    assert len(every) < 50_000  # keep the brute force brute but quick
    lengths = {length for length in every.values() if np.ceil(n / 2) <= length <= 2 * n}
    assert target_range(bar_positions) == (min(lengths), max(lengths))
    for target in range(0, 2 * n + 2):
        if target not in lengths:
            with pytest.raises(EditError, match="possible targets are"):
                EditBuilder(n, bar_positions, target_beats=target)
            continue
        expected = {actions for actions, length in every.items() if length == target}
        assert all_masked_edits(EditBuilder(n, bar_positions, target_beats=target)) == expected, f"target {target}"


@pytest.mark.parametrize("seed", range(200))
def test_every_finished_edit_keeps_its_frame_and_lasts_the_target(seed):
    # The property: random passages of 8..300 beats (all bar offsets, irregular bars too), random
    # reachable targets, masked random actions: the edit opens with the opening bar and closes with the final
    # bar, both as written, and lasts exactly the target.
    rng = np.random.default_rng(seed)
    n = int(np.exp(rng.uniform(np.log(8), np.log(300))))
    bar_positions = bar_pattern(rng, n, BAR_KINDS[seed % len(BAR_KINDS)])
    if seed % len(BAR_KINDS) == 0:
        bar_positions = bars(n, seed // len(BAR_KINDS) % 4)  # every offset, in turn
    head_end, tail_start = passage_frame(bar_positions)
    target = random_target(rng, bar_positions)
    start = int(rng.integers(0, 50))
    builder = EditBuilder(n, bar_positions, excerpt_start=start, target_beats=target)
    actions = masked_rollout(rng, builder)
    edit = builder.build()
    assert edit.n_output_beats == edit.target_beats == target
    sources = played(edit)
    assert sources[:head_end] == list(range(head_end))
    assert sources[len(sources) - (n - tail_start):] == list(range(tail_start, n))
    assert transitions(edit)[1:head_end] == [T.CONTINUE] * (head_end - 1)
    assert transitions(edit)[len(sources) - (n - tail_start) + 1:] == [T.CONTINUE] * (n - tail_start - 1)
    assert not builder.action_mask().any()
    track_bars = np.concatenate([np.zeros(start, np.int8), bar_positions])
    validate_edit(edit, n_track_beats=start + n, bar_positions=track_bars)
    assert apply_actions(actions, excerpt_start=start, bar_positions=bar_positions, target_beats=target) == edit


# --------------------------------------------------------------------------- Edit: columns, JSON, validation

def test_edit_columns_are_fresh_arrays_each_call():
    edit = make_edit(16, 17, [A.KEEP, A.REORDER, A.LOOP], excerpt_start=5)
    sources = edit.source_beats()
    sources[:] = -1
    assert edit.source_beats().tolist() == [e.source_beat for e in edit.entries]
    assert edit.track_beats().tolist() == [e.source_beat + 5 for e in edit.entries]
    assert edit.transitions().tolist() == [int(e.transition) for e in edit.entries]
    assert edit.output_actions().tolist() == [int(e.action) for e in edit.entries]


def test_json_round_trip_and_key():
    edit = make_edit(32, 40, [A.KEEP, A.REORDER, A.CROSSFADE, A.LOOP], excerpt_start=40)
    data = json.loads(json.dumps(edit.to_json()))
    assert data["target_beats"] == 40
    again = Edit.from_json(data)
    assert again == edit and again.target_beats == 40
    assert again.key() == edit.key() and len(edit.key()) == 64
    other = make_edit(32, 40, [A.KEEP, A.REORDER, A.CUT, A.LOOP], excerpt_start=40)
    assert other.key() != edit.key()
    moved = make_edit(32, 40, [A.KEEP, A.REORDER, A.CROSSFADE, A.LOOP], excerpt_start=41)
    assert moved.key() != edit.key()


def test_an_edit_stored_before_the_retarget_task_is_still_read():
    # The first task's edits have no target and may end anywhere; they are read (and scored) but never replayed.
    data = {"excerpt_start": 0, "n_source_beats": 16, "actions": [0, 0, 8],
            "entries": [[0, 0, 0], [1, 1, 0]]}
    legacy = Edit.from_json(data)
    assert legacy.target_beats is None and legacy.effective_target_beats == 2
    assert "target_beats" not in legacy.to_json()
    validate_edit(legacy, n_track_beats=16, bar_positions=bars(16))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("entries"), "missing 'entries'"),
        (lambda d: d.update(entries=[]), "no output beats"),
        (lambda d: d.update(n_source_beats=4), "passage of 4 beats: must be 8..5400"),
        (lambda d: d["entries"].__setitem__(1, [5, 1, 0]), "CONTINUE from source beat 0 to 5"),
        (lambda d: d["entries"].__setitem__(1, [1, 2, 0]), "seam between contiguous source beats 0 and 1"),
        (lambda d: d["entries"].__setitem__(2, [40, 2, 0]), "source beat 40 is outside the passage 0..15"),
        (lambda d: d["entries"].__setitem__(0, [0, 1, 0]), "transition must be START"),
        (lambda d: d["entries"].__setitem__(1, [1, 1, 1]), "CUT never produces an output beat"),
        (lambda d: d["entries"].__setitem__(1, [1, 9, 0]), "transition 9 is not one of"),
        (lambda d: d["entries"].__setitem__(1, ["1", 1, 0]), "must be an integer"),
        (lambda d: d.update(entries=[[0, 0, 0]] + [[0, 2, 2]] * 32), "at most 32"),
        (lambda d: d.update(target_beats=17), "edit has 16 output beats: its target is 17"),
        (lambda d: d["entries"].pop(), "edit has 15 output beats: its target is 16"),
        (lambda d: d.update(entries=d["entries"][:-1] + [[3, 2, 0]]), "a retarget starts with beat 0 and ends with beat 15"),
        (lambda d: d.update(target_beats=True), "target_beats must be an integer"),
    ],
)
def test_validation_errors_say_what_is_wrong(mutate, message):
    data = make_edit(16, 16).to_json()
    mutate(data)
    with pytest.raises(EditError, match=message):
        Edit.from_json(data)


def test_validate_edit_checks_the_track():
    edit = make_edit(16, 16, excerpt_start=10)
    validate_edit(edit, n_track_beats=26)
    with pytest.raises(EditError, match="run past the track's last beat 24"):
        validate_edit(edit, n_track_beats=25)
    # Same length and frame, but actions that do not produce these entries on this track's bars.
    forged = Edit(10, 16, (int(A.CUT), int(A.LOOP), *[int(A.KEEP)] * 6), edit.entries, 16)
    with pytest.raises(EditError, match="do not follow from its actions"):
        validate_edit(forged, n_track_beats=26, bar_positions=bars(26, 2))


def test_apply_actions_names_the_failing_step():
    with pytest.raises(EditError, match="step 0: STOP is not valid at source beat 4"):
        apply_actions([A.STOP], excerpt_start=0, bar_positions=bars(16), target_beats=16)
    with pytest.raises(EditError, match=r"not finished: source beat 7 of 16 is next \(continue, or STOP"):
        apply_actions([A.KEEP] * 3, excerpt_start=0, bar_positions=bars(16), target_beats=16)
    with pytest.raises(EditError, match="step 8: action 0 after all 16 source beats were used"):
        apply_actions([A.KEEP] * 9, excerpt_start=0, bar_positions=bars(16), target_beats=16)
    with pytest.raises(EditError, match="step 0: action id 12"):
        apply_actions([12], excerpt_start=0, bar_positions=bars(16), target_beats=16)


def test_passage_length_and_bar_positions_are_checked():
    with pytest.raises(EditError, match="passage of 7 beats: must be 8..5400 beats"):
        EditBuilder(7, bars(7), target_beats=7)
    with pytest.raises(EditError, match="passage of 5401 beats"):
        target_range(bars(5401))
    with pytest.raises(EditError, match=r"bar positions have shape \(15,\)"):
        EditBuilder(16, bars(15), target_beats=16)
    with pytest.raises(EditError, match="passage start beat -1"):
        EditBuilder(16, bars(16), -1, target_beats=16)


# --------------------------------------------------------------------------- features and model input

def test_edit_features_describe_seams_jumps_repeats_drift_and_the_target():
    # Opening 0..3; CUT 4, 5, 6 (a seam jumping 3 ahead to 7); LOOP on 7; KEEP 8..11; final bar 12..15.
    edit = make_edit(16, 14, [A.CUT, A.CUT, A.CUT, A.LOOP])
    assert played(edit) == [0, 1, 2, 3, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    f = edit_features(edit)
    assert EDIT_FEATURE_NAMES == ("seam", "jump", "repetition", "drift", "progress", "stretch") and N_EDIT_FEATURES == 6
    assert f.shape == (14, 6) and f.dtype == np.float32
    np.testing.assert_allclose(f[3:7, 0], [0, 1, 1, 0])  # seam strength
    np.testing.assert_allclose(f[3:7, 1], np.tanh(np.array([0, 3, -1, 0]) / 16), atol=1e-6)
    np.testing.assert_allclose(f[3:7, 2], [0, 0, 0.5, 0])  # the second 7 was already heard once
    np.testing.assert_allclose(f[3:7, 3], np.array([0, -3, -2, -2]) / 16, atol=1e-6)
    np.testing.assert_allclose(f[:, 4], np.arange(14) / 14, atol=1e-6)  # progress through the target
    np.testing.assert_allclose(f[:, 5], np.log2(14 / 16), atol=1e-6)  # shortened: < 0
    longer = edit_features(make_edit(16, 24))
    assert np.all(longer[:, 5] == pytest.approx(np.log2(24 / 16)))  # lengthened: > 0
    crossfaded = edit_features(make_edit(16, 15, [A.KEEP, A.CROSSFADE]))
    assert crossfaded[5, 0] == pytest.approx(0.5)


def test_model_input_joins_track_features_of_the_played_beats():
    rng = np.random.default_rng(0)
    track_features = rng.normal(size=(60, N_AUDIO_FEATURES)).astype(np.float32)
    edit = make_edit(32, 40, [A.REORDER, A.LOOP], excerpt_start=20)
    x, action_ids = model_input(track_features, edit)
    assert N_MODEL_FEATURES == 127 and MODEL_FEATURE_VERSION.endswith("+edit-v2+" + ACTION_SET_VERSION)
    assert x.shape == (40, 127) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x[:, :N_AUDIO_FEATURES], track_features[edit.track_beats()])
    np.testing.assert_array_equal(x[:, N_AUDIO_FEATURES:], edit_features(edit))
    assert action_ids.dtype == np.int64
    assert action_ids[4:9].tolist() == [A.REORDER, A.REORDER, A.LOOP, A.LOOP, A.KEEP]
    with pytest.raises(EditError, match=r"shape \(60, 120\)"):
        model_input(track_features[:, :120], edit)
    with pytest.raises(EditError, match="run past the track"):
        model_input(track_features[:40], edit)


# --------------------------------------------------------------------------- scoring windows

def check_windows(n: int, seams: np.ndarray) -> list[tuple[int, int]]:
    windows = scoring_windows(n, seams)
    assert windows and all(0 <= a < b <= n and b - a <= WINDOW_BEATS for a, b in windows)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(windows, windows[1:])), "windows overlap or are out of order"
    assert sum(b - a for a, b in windows) <= n
    return windows


def covered(windows: list[tuple[int, int]], a: int, b: int) -> bool:
    return all(any(w0 <= i < w1 for w0, w1 in windows) for i in range(a, b))


@pytest.mark.parametrize("n", [8, 40, WINDOW_BEATS])
def test_an_edit_up_to_the_window_is_scored_whole(n):
    assert scoring_windows(n, np.array([3, 5])) == [(0, n)]


@pytest.mark.parametrize("seed", range(40))
def test_a_long_edit_is_scored_around_its_opening_ending_and_every_seam(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(WINDOW_BEATS + 1, 1200))
    seams = np.sort(rng.choice(np.arange(1, n), int(rng.integers(0, 60)), replace=False))
    windows = check_windows(n, seams)
    context = SEAM_CONTEXT_BEATS
    assert windows[0][0] == 0 and windows[-1][1] == n
    assert covered(windows, 0, 2 * context) and covered(windows, n - 2 * context, n)
    for seam in seams.tolist():
        assert covered(windows, max(0, seam - context), min(n, seam + context)), f"seam at {seam}"
    # Linear: what is scored grows with the seams, never beyond the opening, the ending and 2 * context per seam.
    assert sum(b - a for a, b in windows) <= 4 * context + 2 * context * len(seams)


def test_a_seamless_long_edit_is_scored_on_its_opening_and_ending_only():
    assert scoring_windows(1000, np.array([], dtype=np.int64)) == [(0, 32), (968, 1000)]


def test_windows_of_real_long_edits_cover_their_seams():
    rng = np.random.default_rng(5)
    for n in (150, 256, 400):
        bar_positions = bars(n, n % 4)
        builder = EditBuilder(n, bar_positions, target_beats=random_target(rng, bar_positions))
        masked_rollout(rng, builder)
        edit = builder.build()
        windows = check_windows(edit.n_output_beats, edit.seam_beats())
        for seam in edit.seam_beats().tolist():
            assert covered(windows, seam - 1, seam + 1)

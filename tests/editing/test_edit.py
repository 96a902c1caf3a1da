"""editing/edit.py: action semantics, validity masks, validation, JSON, edit-aware features."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from editing.audio import N_AUDIO_FEATURES
from editing.edit import (
    EDIT_FEATURE_NAMES,
    MODEL_FEATURE_VERSION,
    N_ACTIONS,
    N_MODEL_FEATURES,
    Action,
    Edit,
    EditBuilder,
    EditError,
    Transition,
    apply_actions,
    edit_features,
    model_input,
    validate_edit,
)

A = Action
T = Transition


def bars(n: int, offset: int = 0) -> np.ndarray:
    return ((np.arange(n) + offset) % 4).astype(np.int8)


def played(edit: Edit) -> list[int]:
    return [e.source_beat for e in edit.entries]


def transitions(edit: Edit) -> list[Transition]:
    return [e.transition for e in edit.entries]


def keep_all_but(n: int, first_actions: list[int]) -> list[int]:
    """first_actions, then KEEP until the excerpt is used up."""
    builder = EditBuilder(n, bars(n))
    for a in first_actions:
        builder.step(a)
    return first_actions + [int(A.KEEP)] * (n - builder.position)


@pytest.mark.parametrize(
    "prefix, expected_start, expected_transitions",
    [
        ([A.KEEP], [0, 1], [T.START, T.CONTINUE]),
        ([A.CUT], [1, 2], [T.START, T.CONTINUE]),
        ([A.LOOP], [0, 0, 1], [T.START, T.CUT, T.CONTINUE]),
        ([A.KEEP, A.KEEP, A.KEEP, A.LOOP_BAR], [0, 1, 2, 3, 0, 1, 2, 3, 4], [T.START, T.CONTINUE, T.CONTINUE, T.CONTINUE, T.CUT, T.CONTINUE, T.CONTINUE, T.CONTINUE, T.CONTINUE]),
        ([A.KEEP, A.CROSSFADE], [0, 2, 3], [T.START, T.CROSSFADE, T.CONTINUE]),
        ([A.REORDER], [1, 0, 2], [T.START, T.CUT, T.CUT]),
        ([A.KEEP, A.SKIP_TO_BAR], [0, 4, 5], [T.START, T.CUT, T.CONTINUE]),
        ([A.KEEP, A.REPEAT_2], [0, 1, 0, 1, 2], [T.START, T.CONTINUE, T.CUT, T.CONTINUE, T.CONTINUE]),
    ],
)
def test_each_action_plays_the_documented_beats(prefix, expected_start, expected_transitions):
    edit = apply_actions(keep_all_but(16, [int(a) for a in prefix]), excerpt_start=0, bar_positions=bars(16))
    assert played(edit)[: len(expected_start)] == expected_start
    assert transitions(edit)[: len(expected_transitions)] == expected_transitions


def test_stop_drops_everything_left():
    edit = apply_actions([A.KEEP, A.KEEP, A.STOP], excerpt_start=3, bar_positions=bars(16))
    assert played(edit) == [0, 1]
    assert edit.track_beats().tolist() == [3, 4]
    assert edit.actions == (0, 0, 8)


def test_loop_bar_replays_from_the_downbeat_only():
    edit = apply_actions(keep_all_but(16, [A.KEEP, A.LOOP_BAR]), excerpt_start=0, bar_positions=bars(16))
    assert played(edit)[:4] == [0, 1, 0, 1]


@pytest.mark.parametrize(
    "prefix, action, reason",
    [
        ([], A.LOOP_BAR, "no earlier beat of this bar"),  # on a downbeat
        ([], A.STOP, "output is still empty"),
        ([], A.CROSSFADE, "output beat before"),
        ([], A.REPEAT_2, "no previous beat"),
        ([A.KEEP] * 12, A.SKIP_TO_BAR, "no later downbeat"),
        ([A.KEEP] * 15, A.REORDER, "no next beat"),
        ([A.KEEP] * 15, A.CROSSFADE, "source beat after"),
        ([A.CUT] * 15, A.CUT, "leave the edit empty"),
    ],
)
def test_masked_actions_are_refused_with_the_reason(prefix, action, reason):
    builder = EditBuilder(16, bars(16))
    for a in prefix:
        builder.step(a)
    assert not builder.action_mask()[action]
    with pytest.raises(EditError, match=reason):
        builder.step(action)


def test_output_is_capped_at_twice_the_excerpt_and_looping_gets_masked():
    builder = EditBuilder(16, bars(16))
    builder.step(A.KEEP)
    for _ in range(10):
        builder.step(A.REPEAT_2)
    assert builder.n_output_beats == 31
    mask = builder.action_mask()
    assert mask[A.KEEP] and not mask[A.LOOP] and not mask[A.REPEAT_2] and not mask[A.REORDER]
    with pytest.raises(EditError, match="exceed 32 beats"):
        builder.step(A.LOOP)
    builder.step(A.KEEP)
    assert builder.action_mask()[A.CUT] and not builder.action_mask()[A.KEEP]
    while not builder.done:
        builder.step(A.CUT)
    assert builder.build().n_output_beats == 32


@pytest.mark.parametrize("seed", range(300))
def test_random_rollouts_over_the_mask_never_raise(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(16, 65))
    # Regular bars at a random phase, or an irregular beat tracker's bar positions.
    bar_positions = bars(n, int(rng.integers(4))) if seed % 3 else rng.integers(0, 4, n).astype(np.int8)
    builder = EditBuilder(n, bar_positions, excerpt_start=int(rng.integers(0, 10)))
    while not builder.done:
        mask = builder.action_mask()
        assert mask.shape == (N_ACTIONS,) and mask.any(), f"no valid action at beat {builder.position}"
        builder.step(int(rng.choice(np.flatnonzero(mask))))
    edit = builder.build()
    assert 1 <= edit.n_output_beats <= 2 * n
    validate_edit(edit, n_track_beats=edit.excerpt_start + n, bar_positions=np.concatenate([np.zeros(edit.excerpt_start, np.int8), bar_positions]))
    assert not builder.action_mask().any()


def documented_plan(bar_positions: np.ndarray, position: int, n_output: int, action: Action) -> tuple[list[int], int] | None:
    """(output source beats, beats consumed) of ``action`` as the module docstring's table states it; None if invalid.

    Written from the table alone, independently of EditBuilder, as the reference the builder is checked against.
    """
    p, n = position, len(bar_positions)
    d = next((q for q in range(p, p - 4, -1) if q >= 0 and bar_positions[q] == 0), max(0, p - 3))
    later = [q for q in range(p + 1, n) if bar_positions[q] == 0]
    has_next = p + 1 < n
    plan = {
        A.KEEP: ([p], 1),
        A.CUT: ([], 1) if n_output > 0 or has_next else None,
        A.LOOP: ([p, p], 1),
        A.LOOP_BAR: ([p, *range(d, p + 1)], 1) if p > d else None,
        A.CROSSFADE: ([], 1) if n_output > 0 and has_next else None,
        A.REORDER: ([p + 1, p], 2) if has_next else None,
        A.SKIP_TO_BAR: ([], later[0] - p) if later else None,
        A.REPEAT_2: ([p, p - 1, p], 1) if p >= 1 else None,
        A.STOP: ([], n - p) if n_output > 0 else None,
    }[action]
    if plan is not None and n_output + len(plan[0]) > 2 * n:
        return None
    return plan


@pytest.mark.parametrize("seed", range(120))
def test_the_mask_is_exactly_what_applying_each_action_allows(seed):
    # Property: at every step of random episodes, with a random minimum length, each action is unmasked
    # exactly when the documented table allows it and, applied, it leaves the minimum reachable; applying
    # it plays the documented beats and consumes the documented source beats.
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(16, 65))
    kind = seed % 4
    if kind == 0:
        bar_positions = bars(n, int(rng.integers(4)))
    elif kind == 1:
        bar_positions = rng.integers(0, 4, n).astype(np.int8)  # an irregular beat tracker
    elif kind == 2:
        bar_positions = np.where(rng.random(n) < 0.05, 0, 1 + rng.integers(0, 3, n)).astype(np.int8)  # rare downbeats
    else:
        bar_positions = np.ones(n, dtype=np.int8)  # no downbeat at all
    min_output = 0 if seed % 5 == 0 else int(rng.integers(1, n + 1))
    # Half the episodes favour the looping actions, to reach the output cap.
    loopy = seed % 2 == 1
    builder = EditBuilder(n, bar_positions, excerpt_start=int(rng.integers(0, 5)))
    while not builder.done:
        mask = builder.action_mask(min_output_beats=min_output)
        assert mask.shape == (N_ACTIONS,) and mask.dtype == bool and mask.any()
        for action in Action:
            plan = documented_plan(bar_positions, builder.position, builder.n_output_beats, action)
            probe = copy.deepcopy(builder)
            if plan is None:
                assert not mask[action], f"{action.name} unmasked at beat {builder.position}"
                with pytest.raises(EditError):
                    probe.step(action)
                continue
            before = probe.n_output_beats
            assert probe.step(action) == len(plan[0])
            assert [e.source_beat for e in probe.entries[before:]] == plan[0]
            assert probe.position == builder.position + plan[1]
            reachable = probe.n_output_beats + (n - probe.position)
            assert mask[action] == (reachable >= min_output), f"{action.name} at beat {builder.position}"
        valid = np.flatnonzero(mask)
        looping = [a for a in (A.REPEAT_2, A.LOOP_BAR, A.LOOP) if mask[a]]
        builder.step(looping[0] if loopy and looping and rng.random() < 0.7 else int(rng.choice(valid)))
    assert builder.build().n_output_beats >= min(min_output, n) or min_output == 0
    assert not builder.action_mask(min_output_beats=min_output).any()


def test_edit_columns_are_fresh_arrays_each_call():
    edit = apply_actions(keep_all_but(16, [A.KEEP, A.REORDER]), excerpt_start=5, bar_positions=bars(16))
    sources = edit.source_beats()
    sources[:] = -1
    assert edit.source_beats().tolist() == [e.source_beat for e in edit.entries]
    assert edit.track_beats().tolist() == [e.source_beat + 5 for e in edit.entries]
    assert edit.transitions().tolist() == [int(e.transition) for e in edit.entries]
    assert edit.output_actions().tolist() == [int(e.action) for e in edit.entries]


def test_every_masked_action_raises_and_every_unmasked_one_steps():
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(16, 40))
        bar_positions = bars(n, int(rng.integers(4)))
        actions: list[int] = []
        builder = EditBuilder(n, bar_positions)
        while not builder.done:
            mask = builder.action_mask()
            for a in range(N_ACTIONS):
                probe = EditBuilder(n, bar_positions)
                for done_action in actions:
                    probe.step(done_action)
                if mask[a]:
                    probe.step(a)
                else:
                    with pytest.raises(EditError):
                        probe.step(a)
            action = int(rng.choice(np.flatnonzero(mask)))
            builder.step(action)
            actions.append(action)


def test_json_round_trip_and_key():
    edit = apply_actions(keep_all_but(32, [A.KEEP, A.REORDER, A.CROSSFADE, A.LOOP]), excerpt_start=40, bar_positions=bars(32))
    data = json.loads(json.dumps(edit.to_json()))
    again = Edit.from_json(data)
    assert again == edit
    assert again.key() == edit.key() and len(edit.key()) == 64
    other = apply_actions(keep_all_but(32, [A.KEEP, A.REORDER, A.CUT, A.LOOP]), excerpt_start=40, bar_positions=bars(32))
    assert other.key() != edit.key()
    moved = apply_actions(keep_all_but(32, [A.KEEP, A.REORDER, A.CROSSFADE, A.LOOP]), excerpt_start=41, bar_positions=bars(32))
    assert moved.key() != edit.key()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("entries"), "missing 'entries'"),
        (lambda d: d.update(entries=[]), "no output beats"),
        (lambda d: d.update(n_source_beats=8), "excerpt of 8 beats: must be 16..64"),
        (lambda d: d["entries"].__setitem__(1, [5, 1, 0]), "CONTINUE from source beat 0 to 5"),
        (lambda d: d["entries"].__setitem__(1, [1, 2, 0]), "seam between contiguous source beats 0 and 1"),
        (lambda d: d["entries"].__setitem__(2, [40, 2, 0]), "source beat 40 is outside the excerpt 0..15"),
        (lambda d: d["entries"].__setitem__(0, [0, 1, 0]), "transition must be START"),
        (lambda d: d["entries"].__setitem__(1, [1, 1, 1]), "CUT never produces an output beat"),
        (lambda d: d["entries"].__setitem__(1, [1, 9, 0]), "transition 9 is not one of"),
        (lambda d: d["entries"].__setitem__(1, ["1", 1, 0]), "must be an integer"),
        (lambda d: d.update(entries=[[0, 0, 0]] + [[0, 2, 2]] * 32), "at most 32"),
    ],
)
def test_validation_errors_say_what_is_wrong(mutate, message):
    data = apply_actions([A.KEEP] * 16, excerpt_start=0, bar_positions=bars(16)).to_json()
    mutate(data)
    with pytest.raises(EditError, match=message):
        Edit.from_json(data)


def test_validate_edit_checks_the_track():
    edit = apply_actions([A.KEEP] * 16, excerpt_start=10, bar_positions=bars(16))
    validate_edit(edit, n_track_beats=26)
    with pytest.raises(EditError, match="run past the track's last beat 24"):
        validate_edit(edit, n_track_beats=25)
    forged = Edit(10, 16, (int(A.KEEP),) * 16, edit.entries[:-1])
    with pytest.raises(EditError, match="do not follow from its actions"):
        validate_edit(forged, n_track_beats=26, bar_positions=bars(26, 2))


def test_apply_actions_names_the_failing_step():
    with pytest.raises(EditError, match="step 0: STOP is not valid at source beat 0"):
        apply_actions([A.STOP], excerpt_start=0, bar_positions=bars(16))
    with pytest.raises(EditError, match="not finished: source beat 3 of 16"):
        apply_actions([A.KEEP] * 3, excerpt_start=0, bar_positions=bars(16))
    with pytest.raises(EditError, match="step 16: action 0 after all 16"):
        apply_actions([A.KEEP] * 17, excerpt_start=0, bar_positions=bars(16))
    with pytest.raises(EditError, match="action id 12"):
        apply_actions([12], excerpt_start=0, bar_positions=bars(16))


def test_edit_features_describe_seams_jumps_repeats_and_drift():
    # KEEP 0, CUT 1..3 (seam jumping 3 ahead), LOOP on 4, then KEEP the rest.
    edit = apply_actions(keep_all_but(16, [A.KEEP, A.CUT, A.CUT, A.CUT, A.LOOP]), excerpt_start=0, bar_positions=bars(16))
    f = edit_features(edit)
    assert EDIT_FEATURE_NAMES == ("seam", "jump", "repetition", "drift")
    assert f.shape == (edit.n_output_beats, 4) and f.dtype == np.float32
    assert played(edit)[:4] == [0, 4, 4, 5]
    np.testing.assert_allclose(f[:4, 0], [0, 1, 1, 0])  # seam strength
    np.testing.assert_allclose(f[:4, 1], np.tanh(np.array([0, 3, -1, 0]) / 16), atol=1e-6)
    np.testing.assert_allclose(f[:4, 2], [0, 0, 0.5, 0])  # the second 4 was already heard once
    np.testing.assert_allclose(f[:4, 3], np.array([0, -3, -2, -2]) / 16, atol=1e-6)
    crossfaded = edit_features(apply_actions(keep_all_but(16, [A.KEEP, A.CROSSFADE]), excerpt_start=0, bar_positions=bars(16)))
    assert crossfaded[1, 0] == pytest.approx(0.5)


def test_model_input_joins_track_features_of_the_played_beats():
    rng = np.random.default_rng(0)
    track_features = rng.normal(size=(60, N_AUDIO_FEATURES)).astype(np.float32)
    edit = apply_actions(keep_all_but(32, [A.REORDER, A.LOOP]), excerpt_start=20, bar_positions=bars(32))
    x, action_ids = model_input(track_features, edit)
    assert N_MODEL_FEATURES == 125 and MODEL_FEATURE_VERSION.endswith("+edit-v1")
    assert x.shape == (edit.n_output_beats, 125) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x[:, :N_AUDIO_FEATURES], track_features[edit.track_beats()])
    np.testing.assert_array_equal(x[:, N_AUDIO_FEATURES:], edit_features(edit))
    assert action_ids.dtype == np.int64
    assert action_ids[:5].tolist() == [A.REORDER, A.REORDER, A.LOOP, A.LOOP, A.KEEP]
    with pytest.raises(EditError, match=r"shape \(60, 120\)"):
        model_input(track_features[:, :120], edit)
    with pytest.raises(EditError, match="run past the track"):
        model_input(track_features[:40], edit)


def test_excerpt_length_is_bounded():
    with pytest.raises(EditError, match="excerpt of 65 beats"):
        EditBuilder(65, bars(65))
    with pytest.raises(EditError, match=r"bar positions have shape \(15,\)"):
        EditBuilder(16, bars(15))

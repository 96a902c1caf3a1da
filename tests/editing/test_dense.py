"""editing/dense.py: the dense rewards prefer what a listener prefers, and stay in [0, 1]."""
from __future__ import annotations

import numpy as np
import pytest

from editing.audio import FEATURE_GROUPS, N_AUDIO_FEATURES
from editing.baselines import bar_aligned_cut, broken_edit_actions, random_actions
from editing.dense import DENSE_WEIGHTS, DenseRewardError, DenseScores, dense_context, dense_rewards
from editing.edit import Action, Edit, EditError, apply_actions, passage_frame

N = 64
SAMPLES_PER_BEAT = 11025


def bars(n: int) -> np.ndarray:
    return (np.arange(n) % 4).astype(np.int8)


@pytest.fixture(scope="module")
def track() -> dict:
    """Synthetic track arrays: timbre follows the bar position (kick, hat, snare, hat), one chord per bar, level -20 dB."""
    rng = np.random.default_rng(0)
    features = np.zeros((N, N_AUDIO_FEATURES))
    position = np.arange(N) % 4
    mfcc = FEATURE_GROUPS["mfcc"]
    features[:, mfcc] = rng.normal(size=(4, 20))[position] + 0.05 * rng.normal(size=(N, 20))
    chroma = FEATURE_GROUPS["chroma"]
    chords = np.eye(12)[[0, 7, 9, 5]]  # one pitch class per bar, cycling every 4 bars
    features[:, chroma] = chords[(np.arange(N) // 4) % 4] + 0.1 + 0.02 * rng.random((N, 12))
    features[:, FEATURE_GROUPS["loudness"].start] = -20.0 + 0.5 * rng.normal(size=N)
    return {
        "features": features.astype(np.float32),
        "beat_samples": np.arange(N + 1, dtype=np.int64) * SAMPLES_PER_BEAT,
        "bar_positions": bars(N),
    }


def random_beat_cut(rng: np.random.Generator, bar_positions: np.ndarray, target: int) -> list[int]:
    """Keep ``target`` beats: cut random middle beats, wherever they fall in the bar."""
    n = len(bar_positions)
    head_end, tail_start = passage_frame(bar_positions)
    middle = tail_start - head_end
    cut = np.zeros(middle, dtype=bool)
    cut[rng.choice(middle, n - target, replace=False)] = True
    return [int(Action.CUT if c else Action.KEEP) for c in cut]


def keep_all(n: int) -> list[int]:
    head_end, tail_start = passage_frame(bars(n))
    return [int(Action.KEEP)] * (tail_start - head_end)


def test_an_untouched_passage_of_the_target_length_scores_one(track):
    edit = apply_actions(keep_all(32), excerpt_start=8, bar_positions=bars(32), target_beats=32)
    scores = dense_rewards(edit, target_beats=32, **track)
    assert scores == DenseScores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, pytest.approx(1.0))


def test_combined_is_the_documented_weighted_mean(track):
    rng = np.random.default_rng(3)
    assert sum(DENSE_WEIGHTS.values()) == pytest.approx(1.0)
    assert set(DENSE_WEIGHTS) == {"tempo_consistency", "energy_flow", "phrase_completeness", "seam_smoothness",
                                  "duration_accuracy", "frame_intact"}
    for target in (17, 24, 40, 60):
        for _ in range(5):
            actions = broken_edit_actions(rng, bar_positions=bars(32), target_beats=target)
            edit = apply_actions(actions, excerpt_start=0, bar_positions=bars(32), target_beats=target)
            scores = dense_rewards(edit, target_beats=target, **track)
            parts = {name: getattr(scores, name) for name in DENSE_WEIGHTS}
            assert all(0.0 <= v <= 1.0 for v in [*parts.values(), scores.combined])
            assert scores.combined == pytest.approx(sum(DENSE_WEIGHTS[k] * v for k, v in parts.items()))


def test_bar_aligned_cut_beats_a_random_beat_cut(track):
    rng = np.random.default_rng(0)
    bar_cut = apply_actions(bar_aligned_cut(bar_positions=bars(32), target_beats=24), excerpt_start=0,
                            bar_positions=bars(32), target_beats=24)
    good = dense_rewards(bar_cut, target_beats=24, **track)
    assert good.phrase_completeness >= 0.8
    for _ in range(10):
        random_cut = apply_actions(random_beat_cut(rng, bars(32), 24), excerpt_start=0, bar_positions=bars(32),
                                   target_beats=24)
        bad = dense_rewards(random_cut, target_beats=24, **track)
        assert bad.phrase_completeness < good.phrase_completeness
        assert bad.combined < good.combined


def test_a_jump_between_tempi_breaks_tempo_consistency(track):
    beat_samples = np.concatenate([np.arange(33) * 11025, 32 * 11025 + np.arange(1, 33) * 7000]).astype(np.int64)
    steady = apply_actions(keep_all(16), excerpt_start=0, bar_positions=bars(16), target_beats=16)
    # Track beats 24..27, then a skip across the tempo change to 32..35 and the final bar 36..39.
    jumpy = apply_actions([Action.SKIP_TO_BAR] + [Action.KEEP] * 4, excerpt_start=24, bar_positions=bars(16),
                          target_beats=12)
    assert jumpy.track_beats().tolist() == [24, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39]
    kwargs = {**track, "beat_samples": beat_samples}
    assert dense_rewards(steady, target_beats=16, **kwargs).tempo_consistency == 1.0
    assert dense_rewards(jumpy, target_beats=12, **kwargs).tempo_consistency < 0.95


def test_a_seam_into_a_much_quieter_passage_breaks_energy_flow(track):
    features = track["features"].copy()
    features[40:, FEATURE_GROUPS["loudness"].start] = -50.0
    # The opening bar (track 28..31) straight into the final bar (40..43): one seam, down 30 dB.
    edit = apply_actions([Action.STOP], excerpt_start=28, bar_positions=bars(16), target_beats=8)
    assert edit.track_beats().tolist() == [28, 29, 30, 31, 40, 41, 42, 43]
    scores = dense_rewards(edit, target_beats=8, **{**track, "features": features})
    assert scores.energy_flow < 0.01
    assert dense_rewards(edit, target_beats=8, **track).energy_flow > 0.8  # same seam, level steady: a small noise-level cost


def test_duration_accuracy_is_linear_in_the_miss_and_a_bar_off_scores_zero(track):
    edit = apply_actions(keep_all(16), excerpt_start=0, bar_positions=bars(16), target_beats=16)
    assert dense_rewards(edit, target_beats=16, **track).duration_accuracy == 1.0
    assert dense_rewards(edit, target_beats=18, **track).duration_accuracy == pytest.approx(0.5)
    assert dense_rewards(edit, target_beats=15, **track).duration_accuracy == pytest.approx(0.75)
    assert dense_rewards(edit, target_beats=20, **track).duration_accuracy == 0.0


def test_duration_accuracy_counts_seconds_not_beats(track):
    # The passage's first half has short beats (0.5 s), its second half beats twice as long.  Two edits of
    # exactly 20 beats: one plays as many short as long beats and lasts what 20 average beats last; the
    # other plays more long beats and runs 1.33 average beats over.
    beat_samples = np.concatenate([[0], np.cumsum(np.where(np.arange(N) < 16, 11025, 22050))]).astype(np.int64)
    kwargs = {**track, "beat_samples": beat_samples}
    K, S, STOP = Action.KEEP, Action.SKIP_TO_BAR, Action.STOP
    balanced = apply_actions([K] * 6 + [S, S] + [K] * 6 + [STOP], excerpt_start=0, bar_positions=bars(32), target_beats=20)
    long_heavy = apply_actions([K] * 4 + [S, S] + [K] * 8 + [STOP], excerpt_start=0, bar_positions=bars(32), target_beats=20)
    assert balanced.source_beats().tolist() == [*range(10), *range(16, 22), *range(28, 32)]
    assert long_heavy.source_beats().tolist() == [*range(8), *range(16, 24), *range(28, 32)]
    assert dense_rewards(balanced, target_beats=20, **kwargs).duration_accuracy == pytest.approx(1.0)
    assert dense_rewards(long_heavy, target_beats=20, **kwargs).duration_accuracy == pytest.approx(2 / 3)


def test_frame_intact_is_one_for_every_retarget_and_half_for_an_edit_that_drops_its_ending(track):
    rng = np.random.default_rng(4)
    for target in (8, 12, 16, 24, 32):
        actions = random_actions(rng, bar_positions=bars(16), target_beats=target)
        edit = apply_actions(actions, excerpt_start=4, bar_positions=bars(16), target_beats=target)
        assert dense_rewards(edit, target_beats=target, **track).frame_intact == 1.0
    # The first task's "keep eight beats, then STOP" (stored without a target): it stops mid-passage.
    stopped = Edit.from_json({"excerpt_start": 4, "n_source_beats": 16, "actions": [0] * 8 + [8],
                              "entries": [[0, 0, 0]] + [[b, 1, 0] for b in range(1, 8)]})
    assert dense_rewards(stopped, target_beats=8, **track).frame_intact == 0.5
    # An edit that skips its opening bar and plays the rest: the ending is intact, the opening is not.
    headless = Edit.from_json({"excerpt_start": 4, "n_source_beats": 16, "actions": [],
                               "entries": [[4, 0, 0]] + [[b, 1, 0] for b in range(5, 16)]})
    assert dense_rewards(headless, target_beats=12, **track).frame_intact == 0.5


def test_inputs_that_do_not_fit_are_refused(track):
    edit = apply_actions(keep_all(32), excerpt_start=0, bar_positions=bars(32), target_beats=32)
    with pytest.raises(DenseRewardError, match="target of 0 beats"):
        dense_rewards(edit, target_beats=0, **track)
    with pytest.raises(DenseRewardError, match=r"beat_samples has shape \(64,\): expected \(65,\)"):
        dense_rewards(edit, target_beats=32, **{**track, "beat_samples": track["beat_samples"][:-1]})
    with pytest.raises(DenseRewardError, match="bar_positions has shape"):
        dense_rewards(edit, target_beats=32, **{**track, "bar_positions": bars(10)})
    with pytest.raises(EditError, match="run past the track"):
        late = apply_actions(keep_all(32), excerpt_start=40, bar_positions=bars(32), target_beats=32)
        dense_rewards(late, target_beats=32, **track)


def test_on_every_demo_track_bar_aligned_cuts_beat_random_cuts_and_broken_edits(demo_analyses):
    rng = np.random.default_rng(0)
    for name, (analysis, _, _) in demo_analyses.items():
        arrays = {"features": analysis.features, "beat_samples": analysis.beat_samples, "bar_positions": analysis.bar_positions}
        for start in (0, analysis.n_beats // 3, analysis.n_beats - 32):
            excerpt_bars = analysis.bar_positions[start : start + 32]
            for target in (24, 40):
                bar_cut = apply_actions(bar_aligned_cut(bar_positions=excerpt_bars, target_beats=target), excerpt_start=start,
                                        bar_positions=excerpt_bars, target_beats=target)
                good = dense_rewards(bar_cut, target_beats=target, **arrays)
                broken_scores = []
                for _ in range(5):
                    if target < 32:
                        random_cut = apply_actions(random_beat_cut(rng, excerpt_bars, target), excerpt_start=start,
                                                   bar_positions=excerpt_bars, target_beats=target)
                        bad = dense_rewards(random_cut, target_beats=target, **arrays)
                        assert bad.combined < good.combined, f"{name} at beat {start}: random cut {bad} >= bar cut {good}"
                    broken = apply_actions(broken_edit_actions(rng, bar_positions=excerpt_bars, target_beats=target),
                                           excerpt_start=start, bar_positions=excerpt_bars, target_beats=target)
                    broken_scores.append(dense_rewards(broken, target_beats=target, **arrays).combined)
                # A broken edit is random: one draw may keep few seams, all on quiet beats (since LOOP_PHRASE widened
                # the length rule's masks, the draws changed and one of 5 here scores above the bar cut); on average
                # broken edits score below it.
                assert np.mean(broken_scores) < good.combined, f"{name} at beat {start}: broken edits {broken_scores} vs bar cut {good}"


def test_a_precomputed_context_gives_exactly_the_same_scores(track, demo_analyses):
    rng = np.random.default_rng(7)
    jittered = {**track, "beat_samples": track["beat_samples"] + np.concatenate([[0], np.cumsum(rng.integers(0, 3000, N))])}
    arrays_list = [track, jittered] + [
        {"features": a.features, "beat_samples": a.beat_samples, "bar_positions": a.bar_positions}
        for a, _, _ in demo_analyses.values()
    ]
    for arrays in arrays_list:
        context = dense_context(**arrays)
        n = arrays["bar_positions"].shape[0]
        for _ in range(10):
            start = int(rng.integers(0, n - 32))
            excerpt_bars = arrays["bar_positions"][start : start + 32]
            for target, actions in ((24, broken_edit_actions(rng, bar_positions=excerpt_bars, target_beats=24)),
                                    (20, random_beat_cut(rng, excerpt_bars, 20)),
                                    (48, bar_aligned_cut(bar_positions=excerpt_bars, target_beats=48))):
                edit = apply_actions(actions, excerpt_start=start, bar_positions=excerpt_bars, target_beats=target)
                for scored_as in (target, target + 3):
                    assert (dense_rewards(edit, target_beats=scored_as, context=context)
                            == dense_rewards(edit, target_beats=scored_as, **arrays))


def test_a_context_is_checked_like_the_arrays_and_is_read_only(track):
    edit = apply_actions(keep_all(32), excerpt_start=40, bar_positions=bars(32), target_beats=32)
    context = dense_context(**track)
    with pytest.raises(EditError, match="run past the track"):
        dense_rewards(edit, target_beats=32, context=context)
    with pytest.raises(DenseRewardError, match="either the track arrays or a context, not both"):
        dense_rewards(edit, target_beats=32, context=context, features=track["features"])
    with pytest.raises(DenseRewardError, match="needs features, beat_samples and bar_positions, or a context"):
        dense_rewards(edit, target_beats=32, features=track["features"])
    with pytest.raises(DenseRewardError, match="bar_positions has shape"):
        dense_context(**{**track, "bar_positions": bars(10)})
    with pytest.raises(ValueError, match="read-only"):
        context.mfcc[0, 0] = 1.0

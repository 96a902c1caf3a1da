"""The editing environment: spaces, masking, episodes, the deferred reward, the spaces spec."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

from editing.audio import FEATURE_GROUPS, N_AUDIO_FEATURES
from editing.dense import dense_rewards
from editing.edit import N_ACTIONS, Action, EditBuilder, apply_actions
from editing.env import (
    OBS_DIM,
    OBS_LAYOUT,
    EditingEnv,
    EnvConfig,
    Excerpt,
    InvalidTrack,
    SpacesSpecMismatch,
    TrackArrays,
    check_spaces_spec,
    sample_excerpt,
    spaces_spec,
)


def synthetic_track(rng: np.random.Generator, n_beats: int, name: str = "synthetic") -> TrackArrays:
    """A track with random features at 120 BPM (22050 Hz), 4/4, first beat a downbeat."""
    features = rng.normal(size=(n_beats, N_AUDIO_FEATURES)).astype(np.float32)
    bars = (np.arange(n_beats) % 4).astype(np.int8)
    features[:, FEATURE_GROUPS["bar_position"]] = np.eye(4, dtype=np.float32)[bars]
    beat_samples = (np.arange(n_beats + 1) * 11025).astype(np.int64)
    return TrackArrays(name, features, beat_samples, bars)


def synthetic_tracks(seed: int = 0, n_tracks: int = 3, n_beats: int = 96) -> list[TrackArrays]:
    rng = np.random.default_rng(seed)
    return [synthetic_track(rng, n_beats + 8 * i, f"track-{i}") for i in range(n_tracks)]


@pytest.fixture
def tracks() -> list[TrackArrays]:
    return synthetic_tracks()


def _block(obs: np.ndarray, name: str) -> np.ndarray:
    start = 0
    for block, size in OBS_LAYOUT:
        if block == name:
            return obs[start : start + size]
        start += size
    raise KeyError(name)


def test_gymnasium_and_sb3_checkers_pass(tracks):
    gymnasium_check_env(EditingEnv(tracks), skip_render_check=True)
    sb3_check_env(EditingEnv(tracks), warn=True)


def test_layout_adds_up_and_spaces_are_finite_float32(tracks):
    env = EditingEnv(tracks)
    assert sum(size for _, size in OBS_LAYOUT) == OBS_DIM == env.observation_space.shape[0]
    assert env.observation_space.dtype == np.float32
    assert np.all(np.isfinite(env.observation_space.low)) and np.all(np.isfinite(env.observation_space.high))
    assert env.action_space.n == N_ACTIONS == 9


@pytest.mark.parametrize("seed", range(40))
def test_masked_random_rollouts_never_send_an_invalid_action(tracks, seed):
    env = EditingEnv(tracks, EnvConfig(min_excerpt_beats=16, max_excerpt_beats=64))
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    for _ in range(3):
        excerpt = info["excerpt"]
        steps, terminated = 0, False
        while not terminated:
            mask = env.action_masks()
            assert mask.dtype == bool and mask.shape == (N_ACTIONS,) and mask.any()
            obs, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(mask))))
            assert not truncated and "invalid_action" not in info
            assert env.observation_space.contains(obs)
            steps += 1
        assert steps <= excerpt.n_beats
        edit = info["finished_episode"].edit
        assert edit.n_source_beats == excerpt.n_beats and edit.excerpt_start == excerpt.start
        obs, info = env.reset()


def test_every_unmasked_action_is_accepted_by_the_edit_builder(tracks):
    """The mask the policy sees is exactly the builder's: each allowed action steps without error."""
    env = EditingEnv(tracks)
    rng = np.random.default_rng(3)
    excerpt, taken = env.reset(seed=3)[1]["excerpt"], []
    for _ in range(200):
        bars = tracks[excerpt.track_index].bar_positions[excerpt.start : excerpt.start + excerpt.n_beats]
        for action in np.flatnonzero(env.action_masks()):
            probe = EditBuilder(excerpt.n_beats, bars, excerpt_start=excerpt.start)
            for past in taken:
                probe.step(past)
            probe.step(int(action))
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        taken.append(action)
        _, _, terminated, _, _ = env.step(action)
        if terminated:
            excerpt, taken = env.reset()[1]["excerpt"], []


def test_terminal_reward_is_the_dense_share_and_the_learned_part_is_deferred(tracks):
    env = EditingEnv(tracks, EnvConfig(learned_weight=0.8))
    excerpt = Excerpt(track_index=1, start=8, n_beats=32, target_beats=24)
    env.reset(options={"excerpt": excerpt})
    rewards = []
    terminated = False
    while not terminated:
        _, reward, terminated, _, info = env.step(int(Action.KEEP))
        rewards.append(reward)
    assert rewards[:-1] == [0.0] * (len(rewards) - 1)
    finished = info["finished_episode"]
    track = tracks[1]
    expected = dense_rewards(
        finished.edit, features=track.features, beat_samples=track.beat_samples,
        bar_positions=track.bar_positions, target_beats=24,
    )
    assert finished.dense == expected
    assert rewards[-1] == pytest.approx(0.2 * expected.combined)
    assert finished.edit.n_output_beats == 32


def test_dense_only_env_pays_the_whole_dense_score(tracks):
    env = EditingEnv(tracks, EnvConfig(learned_weight=0.0))
    env.reset(options={"excerpt": Excerpt(0, 0, 16, 16)})
    terminated = False
    while not terminated:
        _, reward, terminated, _, info = env.step(int(Action.KEEP))
    assert reward == pytest.approx(info["finished_episode"].dense.combined)


def test_an_unmasked_caller_sending_an_invalid_action_ends_the_episode_with_the_penalty(tracks):
    env = EditingEnv(tracks, EnvConfig(invalid_action_penalty=-2.0))
    env.reset(options={"excerpt": Excerpt(0, 0, 16, 8)})
    assert not env.action_masks()[Action.REPEAT_2]  # nothing to repeat at the first beat
    obs, reward, terminated, _, info = env.step(int(Action.REPEAT_2))
    assert terminated and reward == -2.0 and info["invalid_action"] == int(Action.REPEAT_2)
    assert env.observation_space.contains(obs)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(int(Action.KEEP))


def test_observation_carries_target_progress_and_last_action(tracks):
    env = EditingEnv(tracks)
    obs, _ = env.reset(options={"excerpt": Excerpt(2, 4, 40, 30)})
    assert _block(obs, "target") == pytest.approx([30 / 40, 40 / 64, 30 / 64])
    assert _block(obs, "last_action")[N_ACTIONS] == 1.0
    np.testing.assert_array_equal(_block(obs, "action_mask"), env.action_masks().astype(np.float32))
    assert _block(obs, "last_output_beat")[-1] == 0.0  # no output yet
    obs, *_ = env.step(int(Action.LOOP))
    summary = _block(obs, "edit_summary")
    assert summary[0] == pytest.approx(2 / 30)  # two output beats of a 30-beat target
    assert summary[2] == pytest.approx(1 / 40)  # one source beat used
    assert _block(obs, "last_action")[Action.LOOP] == 1.0
    assert _block(obs, "last_output_beat")[-1] == 1.0


def test_the_same_seed_draws_the_same_excerpts(tracks):
    def draws(seed):
        env = EditingEnv(tracks)
        out = [env.reset(seed=seed)[1]["excerpt"]]
        out += [env.reset()[1]["excerpt"] for _ in range(5)]
        return out

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_sampled_excerpts_respect_the_configured_ranges(tracks):
    config = EnvConfig(min_excerpt_beats=20, max_excerpt_beats=40, target_fraction_range=(0.5, 0.75))
    rng = np.random.default_rng(0)
    for _ in range(200):
        ex = sample_excerpt(rng, tracks, config)
        track = tracks[ex.track_index]
        assert 20 <= ex.n_beats <= 40 and 0 <= ex.start and ex.start + ex.n_beats <= track.n_beats
        assert 0.5 * ex.n_beats - 1 <= ex.target_beats <= 0.75 * ex.n_beats + 1


def test_a_finished_episode_replays_through_apply_actions(tracks):
    env = EditingEnv(tracks)
    rng = np.random.default_rng(1)
    _, info = env.reset(seed=1)
    excerpt, terminated = info["excerpt"], False
    while not terminated:
        _, _, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
    edit = info["finished_episode"].edit
    bars = tracks[excerpt.track_index].bar_positions[excerpt.start : excerpt.start + excerpt.n_beats]
    assert apply_actions(edit.actions, excerpt_start=excerpt.start, bar_positions=bars) == edit


def test_spaces_spec_is_json_ready_and_a_different_spec_is_refused():
    import json

    spec = spaces_spec()
    assert json.loads(json.dumps(spec)) == spec
    assert spec["observation"]["shape"] == [OBS_DIM] and spec["action"]["n"] == N_ACTIONS
    check_spaces_spec(spec)
    changed = json.loads(json.dumps(spec))
    changed["observation"]["shape"] = [889]
    with pytest.raises(SpacesSpecMismatch, match="observation.shape: stored \\[889\\]"):
        check_spaces_spec(changed, what="policy v3")


def test_track_arrays_refuse_bad_shapes_and_values_naming_the_track():
    rng = np.random.default_rng(0)
    good = synthetic_track(rng, 32, "ok")
    with pytest.raises(InvalidTrack, match="short.wav: 8 beats"):
        TrackArrays("short.wav", good.features[:8], good.beat_samples[:9], good.bar_positions[:8])
    bad = good.features.copy()
    bad[3, 5] = np.nan
    with pytest.raises(InvalidTrack, match="nan.wav: features contain NaN"):
        TrackArrays("nan.wav", bad, good.beat_samples, good.bar_positions)
    with pytest.raises(InvalidTrack, match="beat_samples"):
        TrackArrays("b.wav", good.features, good.beat_samples[:-1], good.bar_positions)


def test_reset_refuses_an_excerpt_outside_its_track(tracks):
    env = EditingEnv(tracks)
    with pytest.raises(ValueError, match="runs outside track-0"):
        env.reset(options={"excerpt": Excerpt(0, 90, 32, 16)})


@pytest.mark.slow
def test_observations_of_a_real_analysed_track_stay_inside_the_space(demo_analyses):
    analysis, _, _ = next(iter(demo_analyses.values()))
    track = TrackArrays("demo", analysis.features, analysis.beat_samples, analysis.bar_positions)
    env = EditingEnv([track])
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(500):
        assert env.observation_space.contains(obs)
        obs, _, terminated, _, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        if terminated:
            obs, _ = env.reset()


def _reference_observation(env: EditingEnv) -> np.ndarray:
    """The observation built the plain way, block by block from the documented layout."""
    from editing.edit import MAX_EXCERPT_BEATS, Transition
    from editing.env import _COMPACT_COLUMNS, CONTEXT_AFTER, CONTEXT_BEFORE, N_COMPACT

    excerpt, builder = env._excerpt, env._builder
    track = env.tracks[excerpt.track_index]
    n, t, target = excerpt.n_beats, builder.position, excerpt.target_beats
    rows = track.normalised[excerpt.start : excerpt.start + n]

    def compact(b: int) -> np.ndarray:
        if 0 <= b < n:
            return np.concatenate([rows[b, _COMPACT_COLUMNS], [1.0]])
        return np.zeros(N_COMPACT)

    entries = builder.entries
    seams = [i for i, e in enumerate(entries) if e.transition in (Transition.CUT, Transition.CROSSFADE)]
    since = len(entries) - 1 - seams[-1] if seams else len(entries)
    last_action = np.zeros(N_ACTIONS + 1)
    last_action[env._last_action if env._last_action is not None else N_ACTIONS] = 1.0
    parts = [
        rows[t] if t < n else np.zeros(N_AUDIO_FEATURES),
        *[compact(b) for b in range(t - CONTEXT_BEFORE, t)],
        *[compact(b) for b in range(t + 1, t + 1 + CONTEXT_AFTER)],
        compact(entries[-1].source_beat) if entries else np.zeros(N_COMPACT),
        [min(len(entries) / target, 4.0), (target - len(entries)) / n, t / n, len(seams) / n, min(since / 16.0, 1.0)],
        last_action,
        env.action_masks().astype(np.float64),
        [target / n, n / MAX_EXCERPT_BEATS, target / MAX_EXCERPT_BEATS],
    ]
    return np.clip(np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]), -5, 5).astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_observations_equal_a_plain_block_by_block_construction(tracks, seed):
    env = EditingEnv(tracks, EnvConfig(target_fraction_range=(0.25, 4.0)))
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    kept = []
    for _ in range(6):
        terminated = False
        np.testing.assert_array_equal(obs, _reference_observation(env))
        while not terminated:
            obs, _, terminated, _, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
            kept.append((obs, obs.copy()))
            np.testing.assert_array_equal(obs, _reference_observation(env))
            assert obs.dtype == np.float32 and obs.shape == (OBS_DIM,)
        obs, _ = env.reset()
    # Observations handed out earlier are not changed by later steps.
    assert all(np.array_equal(a, b) for a, b in kept)


def test_an_explicit_excerpt_with_a_huge_target_still_gives_observations_inside_the_space(tracks):
    env = EditingEnv(tracks)
    obs, _ = env.reset(options={"excerpt": Excerpt(track_index=0, start=0, n_beats=16, target_beats=400)})
    terminated = False
    while True:
        assert env.observation_space.contains(obs)
        np.testing.assert_array_equal(obs, _reference_observation(env))
        if terminated:
            break
        obs, _, terminated, _, _ = env.step(int(np.flatnonzero(env.action_masks())[0]))


def test_an_edit_never_ends_far_short_of_its_target(tracks):
    # STOP after a beat or two would be the cheapest edit (no seams); the mask rules it out.
    env = EditingEnv(tracks, EnvConfig(learned_weight=0.0, min_output_fraction=0.75))
    rng = np.random.default_rng(3)
    for episode in range(60):
        _, info = env.reset(seed=episode)
        excerpt = info["excerpt"]
        terminated = False
        while not terminated:
            mask = env.action_masks()
            assert mask.any()
            action = Action.STOP if mask[Action.STOP] else int(rng.choice(np.flatnonzero(mask)))
            _, _, terminated, _, info = env.step(int(action))
        n_output = info["finished_episode"].edit.n_output_beats
        assert n_output >= min(excerpt.n_beats, np.ceil(0.75 * excerpt.target_beats))


def test_builder_mask_with_a_minimum_keeps_keep_and_forbids_an_early_stop():
    bars = np.tile(np.arange(4, dtype=np.int8), 8)
    builder = EditBuilder(32, bars)
    mask = builder.action_mask(min_output_beats=24)
    assert mask[Action.KEEP] and not mask[Action.STOP]
    builder.step(Action.KEEP)
    assert builder.action_mask()[Action.STOP]  # without a minimum STOP is fine after one beat


def test_a_finished_episode_is_handed_on_without_copying_its_track(tracks):
    # DummyVecEnv deep-copies every step's infos: the finished episode (and its track arrays) is shared, not copied.
    venv = DummyVecEnv([lambda: EditingEnv(tracks, EnvConfig(learned_weight=0.0))])
    venv.seed(0)
    venv.reset()
    finished = None
    while finished is None:
        _, _, _, infos = venv.step(np.array([int(np.flatnonzero(venv.env_method("action_masks")[0])[0])]))
        finished = infos[0].get("finished_episode")
    assert finished.track is tracks[finished.excerpt.track_index]
    assert copy.deepcopy({"episode": finished})["episode"] is finished
    assert finished.edit == apply_actions(
        finished.edit.actions, excerpt_start=finished.excerpt.start,
        bar_positions=finished.track.bar_positions[finished.excerpt.start : finished.excerpt.start + finished.excerpt.n_beats],
    )

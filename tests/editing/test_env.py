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
from editing.edit import N_ACTIONS, Action, EditBuilder, EditError, Transition, apply_actions, passage_frame, target_range
from editing.env import EditingEnv, EnvConfig, Excerpt, InvalidTrack, TrackArrays, reachable_target, sample_excerpt
from editing.spaces import OBS_DIM, OBS_LAYOUT, SpacesSpecMismatch, check_spaces_spec, spaces_spec
from tests.editing.factories import BAR_KINDS, bar_pattern, played


def synthetic_track(rng: np.random.Generator, n_beats: int, name: str = "synthetic",
                    bars: np.ndarray | None = None) -> TrackArrays:
    """A track with random features at 120 BPM (22050 Hz), 4/4 (first beat a downbeat) unless ``bars`` are given."""
    features = rng.normal(size=(n_beats, N_AUDIO_FEATURES)).astype(np.float32)
    bars = (np.arange(n_beats) % 4).astype(np.int8) if bars is None else bars
    features[:, FEATURE_GROUPS["bar_position"]] = np.eye(4, dtype=np.float32)[bars]
    beat_samples = (np.arange(n_beats + 1) * 11025).astype(np.int64)
    return TrackArrays(name, features, beat_samples, bars)


def synthetic_tracks(seed: int = 0, n_tracks: int = 3, n_beats: int = 96) -> list[TrackArrays]:
    rng = np.random.default_rng(seed)
    return [synthetic_track(rng, n_beats + 8 * i, f"track-{i}") for i in range(n_tracks)]


@pytest.fixture
def tracks() -> list[TrackArrays]:
    return synthetic_tracks()


@pytest.fixture(scope="module")
def long_tracks() -> list[TrackArrays]:
    """Whole-track lengths, one in regular bars and one whose beat tracker loses the bar now and then."""
    rng = np.random.default_rng(11)
    return [synthetic_track(rng, 320, "long-regular"),
            synthetic_track(rng, 300, "long-irregular", bar_pattern(rng, 300, "phase_jumps"))]


def passage_bars(track: TrackArrays, excerpt: Excerpt) -> np.ndarray:
    return track.bar_positions[excerpt.start : excerpt.start + excerpt.n_beats]


def first_valid(env: EditingEnv) -> int:
    return int(np.flatnonzero(env.action_masks())[0])


def assert_retarget_of(edit, excerpt: Excerpt, bars: np.ndarray) -> None:
    """The finished edit lasts exactly the excerpt's target and keeps its opening and final bars as written."""
    n = excerpt.n_beats
    head_end, tail_start = passage_frame(bars)
    sources = played(edit)
    assert edit.n_source_beats == n and edit.excerpt_start == excerpt.start
    assert edit.n_output_beats == edit.target_beats == excerpt.target_beats
    assert sources[:head_end] == list(range(head_end))
    assert sources[len(sources) - (n - tail_start):] == list(range(tail_start, n))


def _block(obs: np.ndarray, name: str) -> np.ndarray:
    start = 0
    for block, size in OBS_LAYOUT:
        if block == name:
            return obs[start : start + size]
        start += size
    raise KeyError(name)


def test_gymnasium_and_sb3_checkers_pass(tracks, long_tracks):
    gymnasium_check_env(EditingEnv(tracks), skip_render_check=True)
    sb3_check_env(EditingEnv(tracks), warn=True)
    long_config = EnvConfig(long_passage_probability=1.0, long_passage_beats=256)
    gymnasium_check_env(EditingEnv(long_tracks, long_config), skip_render_check=True)
    sb3_check_env(EditingEnv(long_tracks, long_config), warn=True)


def test_layout_adds_up_and_spaces_are_finite_float32(tracks):
    env = EditingEnv(tracks)
    assert sum(size for _, size in OBS_LAYOUT) == OBS_DIM == env.observation_space.shape[0]
    assert env.observation_space.dtype == np.float32
    assert np.all(np.isfinite(env.observation_space.low)) and np.all(np.isfinite(env.observation_space.high))
    assert env.action_space.n == N_ACTIONS == 10


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
        finished = info["finished_episode"]
        assert_retarget_of(finished.edit, excerpt, passage_bars(tracks[excerpt.track_index], excerpt))
        assert finished.dense.frame_intact == 1.0 and finished.dense.duration_accuracy == pytest.approx(1.0)
        obs, info = env.reset()


@pytest.mark.parametrize("seed", range(6))
def test_long_passages_finish_with_the_target_and_observations_inside_the_space(long_tracks, seed):
    # One policy edits 16-beat excerpts and whole tracks: passages of 64..256 beats on regular and irregular bars.
    env = EditingEnv(long_tracks, EnvConfig(long_passage_probability=1.0, long_passage_beats=256))
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    excerpt = info["excerpt"]
    assert 64 <= excerpt.n_beats <= 256
    terminated = False
    while not terminated:
        assert env.observation_space.contains(obs)
        obs, _, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
    assert env.observation_space.contains(obs)
    assert_retarget_of(info["finished_episode"].edit, excerpt, passage_bars(long_tracks[excerpt.track_index], excerpt))


@pytest.mark.parametrize("target", [128, 180, 256, 400, 512])
def test_a_256_beat_passage_retargets_to_half_or_twice_its_length(long_tracks, target):
    env = EditingEnv(long_tracks)
    excerpt = Excerpt(track_index=0, start=32, n_beats=256, target_beats=target)
    obs, _ = env.reset(options={"excerpt": excerpt})
    rng = np.random.default_rng(target)
    terminated, steps = False, 0
    while not terminated:
        assert env.observation_space.contains(obs)
        np.testing.assert_array_equal(obs, _reference_observation(env))
        obs, _, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        steps += 1
    assert steps <= 256 - 8
    assert_retarget_of(info["finished_episode"].edit, excerpt, passage_bars(long_tracks[0], excerpt))


def test_every_unmasked_action_is_accepted_by_the_edit_builder(tracks):
    """The mask the policy sees is exactly the builder's: each allowed action steps without error."""
    env = EditingEnv(tracks)
    rng = np.random.default_rng(3)
    excerpt, taken = env.reset(seed=3)[1]["excerpt"], []
    for _ in range(200):
        bars = passage_bars(tracks[excerpt.track_index], excerpt)
        for action in np.flatnonzero(env.action_masks()):
            probe = EditBuilder(excerpt.n_beats, bars, excerpt_start=excerpt.start, target_beats=excerpt.target_beats)
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
        _, reward, terminated, _, info = env.step(first_valid(env))
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
    assert_retarget_of(finished.edit, excerpt, passage_bars(track, excerpt))


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
    assert not env.action_masks()[Action.KEEP]  # 8 beats are the opening and final bars: none left to keep
    obs, reward, terminated, _, info = env.step(int(Action.KEEP))
    assert terminated and reward == -2.0 and info["invalid_action"] == int(Action.KEEP)
    assert env.observation_space.contains(obs)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(int(Action.KEEP))


def test_observation_carries_target_progress_and_beats_left(tracks):
    env = EditingEnv(tracks)
    obs, _ = env.reset(options={"excerpt": Excerpt(2, 4, 40, 30)})
    # A 40-beat passage to 30 beats: opening bar 0..3 already written, middle 4..35, final bar 36..39.
    assert _block(obs, "target") == pytest.approx([30 / 40, np.log2(30 / 40), np.log2(40 / 16) / 8])
    assert _block(obs, "last_action")[N_ACTIONS] == 1.0
    np.testing.assert_array_equal(_block(obs, "action_mask"), env.action_masks().astype(np.float32))
    assert _block(obs, "last_output_beat")[-1] == 1.0  # the opening bar's last beat
    summary = _block(obs, "edit_summary")
    assert summary == pytest.approx([4 / 30, 22 / 32, 32 / 40, 32 / 64, 4 / 16])
    obs, *_ = env.step(int(Action.LOOP))
    summary = _block(obs, "edit_summary")
    # Progress 6 of 30; 20 middle beats still needed from 31 source beats; 31 beats left; a seam just now.
    assert summary == pytest.approx([6 / 30, 20 / 31, 31 / 40, 31 / 64, 0.0])
    assert _block(obs, "last_action")[Action.LOOP] == 1.0 and _block(obs, "last_action")[N_ACTIONS] == 0.0


def test_progress_reaches_one_and_beats_left_reach_zero_at_the_end(tracks):
    env = EditingEnv(tracks)
    for excerpt in (Excerpt(0, 0, 64, 40), Excerpt(1, 8, 48, 90), Excerpt(2, 0, 16, 16)):
        obs, _ = env.reset(options={"excerpt": excerpt})
        progress = [_block(obs, "edit_summary")[0]]
        terminated = False
        while not terminated:
            builder = env._builder
            left = builder.middle_beats_left
            summary = _block(obs, "edit_summary")
            assert summary[3] * 64 == pytest.approx(left)  # beats left, whatever the passage's length
            assert summary[1] == pytest.approx(min(builder.beats_needed / max(left, 1), 5))  # < 1: cut, > 1: loop
            obs, _, terminated, _, _ = env.step(first_valid(env))
            progress.append(_block(obs, "edit_summary")[0])
        assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0) and progress[0] < 1.0
        assert _block(obs, "edit_summary")[1:4] == pytest.approx([0.0, 0.0, 0.0])


def test_the_same_seed_draws_the_same_excerpts(tracks):
    def draws(seed):
        env = EditingEnv(tracks)
        out = [env.reset(seed=seed)[1]["excerpt"]]
        out += [env.reset()[1]["excerpt"] for _ in range(5)]
        return out

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_sampled_excerpts_respect_the_configured_ranges(tracks):
    config = EnvConfig(min_excerpt_beats=20, max_excerpt_beats=40, target_fraction_range=(0.5, 0.75),
                       long_passage_probability=0.0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        ex = sample_excerpt(rng, tracks, config)
        track = tracks[ex.track_index]
        assert 20 <= ex.n_beats <= 40 and 0 <= ex.start and ex.start + ex.n_beats <= track.n_beats
        assert track.bar_positions[ex.start] == 0  # passages start on a downbeat
        assert 0.5 * ex.n_beats - 1 <= ex.target_beats <= 0.75 * ex.n_beats + 1
        EditBuilder(ex.n_beats, passage_bars(track, ex), target_beats=ex.target_beats)  # reachable


def test_sampled_targets_shorten_and_lengthen_but_never_leave_a_passage_as_it_is(tracks, long_tracks):
    rng = np.random.default_rng(1)
    config = EnvConfig(long_passage_probability=0.2)
    stretches, long_ones = [], 0
    for _ in range(300):
        ex = sample_excerpt(rng, long_tracks + tracks, config)
        lowest, highest = target_range(passage_bars((long_tracks + tracks)[ex.track_index], ex))
        assert lowest <= ex.target_beats <= highest
        assert ex.target_beats != ex.n_beats
        stretches.append(ex.target_fraction)
        long_ones += ex.n_beats > 64
    stretches = np.array(stretches)
    assert stretches.min() >= 0.5 and stretches.max() <= 2.0
    # Log-uniform over 0.5x..2x: about as many shortened as lengthened, and some of each near the extremes.
    assert 0.35 < np.mean(stretches < 1) < 0.65
    assert np.any(stretches < 0.6) and np.any(stretches > 1.7)
    assert 20 <= long_ones <= 100  # long passages: about a fifth (of the tracks long enough for one)


def test_reachable_target_snaps_to_the_nearest_length_an_edit_can_have():
    bars = (np.arange(16) % 4).astype(np.int8)
    assert reachable_target(bars, 20) == 20
    assert reachable_target(bars, 3) == 8 and reachable_target(bars, 100) == 32
    rng = np.random.default_rng(0)
    for kind in BAR_KINDS:
        irregular = bar_pattern(rng, 50, kind)
        lowest, highest = target_range(irregular)
        for wanted in range(0, 120, 7):
            got = reachable_target(irregular, wanted)
            assert lowest <= got <= highest
            EditBuilder(50, irregular, target_beats=got)


def test_a_finished_episode_replays_through_apply_actions(tracks):
    env = EditingEnv(tracks)
    rng = np.random.default_rng(1)
    _, info = env.reset(seed=1)
    excerpt, terminated = info["excerpt"], False
    while not terminated:
        _, _, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
    edit = info["finished_episode"].edit
    bars = passage_bars(tracks[excerpt.track_index], excerpt)
    assert apply_actions(edit.actions, excerpt_start=excerpt.start, bar_positions=bars, target_beats=excerpt.target_beats) == edit


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


def test_a_policy_of_the_nine_action_set_is_refused_in_one_line():
    # Stored before LOOP_PHRASE (id 9) existed: its ids 0..8 mean what they mean now, but its output
    # layer, mask and one-hots have nine actions; it is refused, never read with the tenth masked out.
    import json

    old = json.loads(json.dumps(spaces_spec()))
    old["observation"].update(version="editing-obs-v3", shape=[OBS_DIM - 3])
    old["action"] = {"n": 9, "names": [a.name for a in Action][:9]}
    with pytest.raises(SpacesSpecMismatch) as err:
        check_spaces_spec(old, what="policy v3")
    message = str(err.value)
    assert "\n" not in message and message.startswith("policy v3: spaces differ")
    assert "action.n: stored 9, current 10" in message and "LOOP_PHRASE" in message
    assert "action.version: stored None, current 'actions-v2-loop-phrase'" in message


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


def test_reset_refuses_an_excerpt_outside_its_track_or_with_a_target_no_edit_meets(tracks):
    env = EditingEnv(tracks)
    with pytest.raises(ValueError, match="runs outside track-0"):
        env.reset(options={"excerpt": Excerpt(0, 90, 32, 16)})
    with pytest.raises(EditError, match="lasts 40 beats: possible targets are 8..32 beats"):
        env.reset(options={"excerpt": Excerpt(0, 0, 16, 40)})
    with pytest.raises(ValueError, match="no beats between its opening and final bars"):
        env.reset(options={"excerpt": Excerpt(0, 0, 8, 8)})


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


def _reference_heuristic(track: TrackArrays, excerpt: Excerpt, builder: EditBuilder) -> np.ndarray:
    """The heuristic block from a planner of its own: how much more than the cheapest each action costs."""
    from editing.baselines import HeuristicPlanner

    if builder.done:
        return np.zeros(N_ACTIONS + 1)
    planner = HeuristicPlanner(context=track.dense, excerpt_start=excerpt.start,
                               bar_positions=passage_bars(track, excerpt), target_beats=excerpt.target_beats)
    costs = planner.action_costs(builder)
    least = costs[np.isfinite(costs)].min()
    return np.array([*(np.exp(least - c) if np.isfinite(c) else 0.0 for c in costs), np.log1p(least) / 2])


def _reference_observation(env: EditingEnv) -> np.ndarray:
    """The observation built the plain way, block by block from the documented layout."""
    from editing.env import _COMPACT_COLUMNS
    from editing.spaces import CONTEXT_AFTER, CONTEXT_BEFORE, N_COMPACT

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
    left = builder.middle_beats_left
    last_action = np.zeros(N_ACTIONS + 1)
    last_action[env._last_action if env._last_action is not None else N_ACTIONS] = 1.0
    parts = [
        rows[t] if t < n else np.zeros(N_AUDIO_FEATURES),
        *[compact(b) for b in range(t - CONTEXT_BEFORE, t)],
        *[compact(b) for b in range(t + 1, t + 1 + CONTEXT_AFTER)],
        compact(entries[-1].source_beat),
        [len(entries) / target, min(builder.beats_needed / max(left, 1), 5.0), left / n, min(left / 64, 5.0),
         min(since / 16.0, 1.0)],
        last_action,
        np.ones(N_ACTIONS) if builder.done else builder.action_mask().astype(np.float64),
        [target / n, np.log2(target / n), np.log2(n / 16) / 8],
        _reference_heuristic(track, excerpt, builder),
    ]
    return np.clip(np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]), -5, 5).astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_observations_equal_a_plain_block_by_block_construction(tracks, seed):
    env = EditingEnv(tracks, EnvConfig(long_passage_probability=0.5))
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


def test_stopping_as_soon_as_allowed_still_plays_the_ending_and_meets_the_target(tracks):
    # The first task's trivial optimum, "keep beats until the target, then STOP", is now an edit with a seam
    # into the final bar (or none when nothing is cut): it cannot stop mid-phrase or fall short.
    env = EditingEnv(tracks, EnvConfig(learned_weight=0.0))
    for episode in range(40):
        _, info = env.reset(seed=episode)
        excerpt = info["excerpt"]
        terminated = False
        while not terminated:
            mask = env.action_masks()
            action = Action.STOP if mask[Action.STOP] else Action.KEEP if mask[Action.KEEP] else first_valid(env)
            _, _, terminated, _, info = env.step(int(action))
        edit = info["finished_episode"].edit
        bars = passage_bars(tracks[excerpt.track_index], excerpt)
        assert_retarget_of(edit, excerpt, bars)
        if excerpt.target_beats < excerpt.n_beats:
            assert edit.seam_beats().size >= 1  # shortening needs a cut


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
        bar_positions=passage_bars(finished.track, finished.excerpt), target_beats=finished.excerpt.target_beats,
    )


def test_the_heuristic_block_shows_the_dynamic_programs_judgement_of_every_action(tracks, long_tracks):
    """Following the block's best move among the heuristic's own replays the heuristic's edit, on short and long
    passages; masked actions read 0; the reference distribution read from it puts most weight there."""
    from editing.baselines import HEURISTIC_MOVES, retarget_heuristic
    from editing.env import _SLICES, heuristic_policy

    block = _SLICES["heuristic"]
    for pool, config in ((tracks, EnvConfig()), (long_tracks, EnvConfig(long_passage_probability=1.0))):
        env = EditingEnv(pool, config)
        obs, info = env.reset(seed=3)
        for _ in range(4):
            ex = info["excerpt"]
            track = pool[ex.track_index]
            expected = retarget_heuristic(context=track.dense, excerpt_start=ex.start,
                                          bar_positions=passage_bars(track, ex), target_beats=ex.target_beats)
            taken, terminated = [], False
            while not terminated:
                values = obs[block][:N_ACTIONS]
                assert np.all(values[~env.action_masks()] == 0.0) and values.max() == 1.0
                action = int(HEURISTIC_MOVES[np.argmax(values[HEURISTIC_MOVES])])
                assert action == env.heuristic_action()
                assert np.argmax(heuristic_policy(obs, temperature=0.25)) == action
                taken.append(action)
                obs, _, terminated, _, _ = env.step(action)
            assert taken == expected
            obs, info = env.reset()

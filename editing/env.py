"""The editing environment: one episode retargets one passage of a track, one step per middle beat.

An episode takes a passage of ``n_source_beats`` beats of a track (16..64 beats mostly, now and
then a long one of up to 256, so that one policy serves a 16-beat excerpt and a whole track)
and a target length of 0.5x to 2x the passage (part of the observation).  The builder writes
the passage's opening bar first; each step then applies one of the ten
:class:`editing.edit.Action` values to the current source beat through
:class:`editing.edit.EditBuilder`, which is the one home of action semantics, validity and the
length rule; the episode ends when the middle is used up and the builder has written the final
bar.  Every finished edit keeps the opening and final bars and lasts exactly the target: the
masks make anything else impossible (see ``editing.edit``).

Reward
------
Only the terminal step is rewarded: ``w * learned + (1 - w) * dense`` (:func:`mix_reward`),
``w = EnvConfig.learned_weight`` (0.8 by default). The dense part
(:func:`editing.dense.dense_rewards`, combined score in [0, 1]) is paid by the env itself.
The learned part needs the reward-model ensemble, which is far cheaper over a batch of
finished edits than per episode, so the env *defers* it: the terminal step returns
``(1 - w) * dense`` and puts a :class:`FinishedEpisode` in ``info["finished_episode"]``;
the trainer (``rlhf.learning.policy``) scores all finished episodes of a rollout in one call and adds
``w * learned`` to their terminal rewards before advantages are computed. With ``w = 0`` the
env's reward is already complete.

An action the mask forbids ends the episode at once with reward
``EnvConfig.invalid_action_penalty`` and ``info["invalid_action"]`` set: masked policies
never send one, but an unmasked caller (gymnasium's and SB3's environment checkers sample
actions without masks) gets a well-defined MDP instead of an exception.

Observation (``OBS_DIM`` = 440, float32, every value clipped to [-5, 5])
----------------------------------------------------------------------
Beat features are first standardised per track (z-score over the track's beats, so tracks
recorded at different levels look alike; the one-hot ``bar_position`` group is left as is).
A *compact* beat is 31 numbers: the 30 columns of ``CONTEXT_FEATURE_GROUPS`` plus a flag that
is 1 when the beat exists (0 pads windows that run past the excerpt or an empty output).

=====================  =====  ==============================================================
block                  dims   content
=====================  =====  ==============================================================
current_beat           121    all standardised features of the current source beat
context_before         4*31   compact beats t-4 .. t-1 (the bar LOOP_BAR / REPEAT_2 replay)
context_after          4*31   compact beats t+1 .. t+4 (what REORDER, CROSSFADE, SKIP_TO_BAR
                              join the output to)
last_output_beat       31     compact features of the last beat written to the output (the
                              left side of the next seam)
edit_summary           5      output beats / target beats; output beats still needed per
                              middle source beat left (clip 0..5: < 1 must cut, > 1 must
                              loop); middle beats left / n_source_beats; middle beats left
                              / 64 (clip 0..5: beats left, whatever the passage length);
                              beats since the last seam / 16 (clip 0..1)
last_action            11     one-hot of the previous action (10) or "none yet" (1)
action_mask            10     1 where the action is valid now (helps the value function)
target                 3      target beats / n_source_beats (the stretch); log2 of it;
                              log2(n_source_beats / 16) / 8 (the passage's size: 0 for 16
                              beats, about 1.05 for 5400)
heuristic              11     what the retargeting dynamic program would pay from here
                              (``editing.baselines.HeuristicPlanner``): per action,
                              ``exp(-(cost - least cost))`` (1 for the cheapest action, 0
                              where masked or out of its reach); then log1p(least cost) / 2
=====================  =====  ==============================================================

Why the heuristic block (observation v3): the seams that sound written are where the track's
timbre, harmony and loudness continue, and the least-cost plan through them is a dynamic program
over the whole passage, which a step-by-step policy cannot redo from a window of beats.  The
planner's costs to go give the policy the heuristic's judgement of every action; what it learns
from the reward is where to depart from it.  (A first policy also starts from imitating it, or
the learned planner where that departs from it, and its KL guard's reference is the heuristic's
soft choice read from this block, :func:`heuristic_policy`: ``rlhf.learning.policy``.)

Why 427 (before the heuristic block) and not the original 889: the original fed the full 121-dim (+6) feature vector of
seven beats. Only the current beat needs the full description; for the neighbours the
policy needs what decides seams and structure (loudness, onsets, harmony, a coarse
timbre, band energies, bar position), 30 numbers instead of 121, which halves the input
without losing what the actions act on, and adds what the original lacked: the last
*output* beat (the real left side of a seam after cuts), the progress against the target,
and the mask. The fine audio judgement is the reward model's job (127 dims per output beat).

Actions: ``Discrete(10)``, the :class:`editing.edit.Action` values.
Both spaces are recorded by :func:`editing.spaces.spaces_spec`, which policy checkpoints store;
:func:`editing.spaces.check_spaces_spec` fails loudly when a stored spec differs from the declaration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from editing.audio import FEATURE_GROUPS, N_AUDIO_FEATURES
from editing.baselines import HEURISTIC_MOVES, HeuristicPlanner
from editing.dense import DenseContext, DenseScores, dense_context, dense_rewards
from editing.edit import (
    MAX_EXCERPT_BEATS,
    MAX_PASSAGE_BEATS,
    MAX_STRETCH,
    MIN_EXCERPT_BEATS,
    MIN_PASSAGE_BEATS,
    MIN_STRETCH,
    N_ACTIONS,
    Edit,
    EditBuilder,
    Transition,
    reachable_target,
)
from editing.spaces import (
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    CONTEXT_FEATURE_GROUPS,
    N_COMPACT,
    N_HEURISTIC,
    OBS_CLIP,
    OBS_DIM,
    OBS_LAYOUT,
)


def _layout_slices() -> dict[str, slice]:
    slices, start = {}, 0
    for name, n in OBS_LAYOUT:
        slices[name] = slice(start, start + n)
        start += n
    return slices


# Where each block lives in the observation vector; the env writes blocks in place.
_SLICES = _layout_slices()
_CURRENT = _SLICES["current_beat"]
_BEFORE = _SLICES["context_before"]
_AFTER = _SLICES["context_after"]
_LAST_OUTPUT = _SLICES["last_output_beat"]
_SUMMARY = _SLICES["edit_summary"]
_MASK = _SLICES["action_mask"]
_HEURISTIC = _SLICES["heuristic"]


def _compact_columns() -> np.ndarray:
    columns: list[int] = []
    for group, n in CONTEXT_FEATURE_GROUPS:
        sl = FEATURE_GROUPS[group]
        if sl.stop - sl.start < n:
            raise ValueError(f"feature group {group!r}: has {sl.stop - sl.start} columns, the observation takes {n}")
        columns.extend(range(sl.start, sl.start + n))
    return np.asarray(columns, dtype=np.int64)


_COMPACT_COLUMNS = _compact_columns()


class InvalidTrack(ValueError):
    """Track arrays that cannot make an episode (shapes, values or length)."""


def observation_space() -> gym.spaces.Box:
    """The one observation space: Box(-5, 5, (OBS_DIM,), float32)."""
    return gym.spaces.Box(low=-OBS_CLIP, high=OBS_CLIP, shape=(OBS_DIM,), dtype=np.float32)


def action_space() -> gym.spaces.Discrete:
    """The one action space: Discrete(10), the :class:`editing.edit.Action` values."""
    return gym.spaces.Discrete(N_ACTIONS)


def mix_reward(learned: np.ndarray | float, dense: np.ndarray | float, learned_weight: float) -> np.ndarray:
    """The one reward mix: ``w * learned + (1 - w) * dense``.

    Parameters
    ----------
    learned : np.ndarray [shape=(n,)] or float
        Learned reward (ensemble mean, normalised by its version's statistics).
    dense : np.ndarray [shape=(n,)] or float
        Dense combined score in [0, 1].
    learned_weight : float in [0, 1]
    """
    return learned_weight * np.asarray(learned, dtype=np.float64) + (1.0 - learned_weight) * np.asarray(
        dense, dtype=np.float64
    )


@dataclass(frozen=True, eq=False)
class TrackArrays:
    """What the environment needs of one analysed track.

    Attributes
    ----------
    name : str
        Used in error messages (a title or a file name).
    features : np.ndarray [shape=(n_beats, 121), dtype=float32]
        Per-beat audio features (``editing.audio``).
    beat_samples : np.ndarray [shape=(n_beats + 1,), dtype=int64]
        Beat boundaries in samples.
    bar_positions : np.ndarray [shape=(n_beats,), dtype=int8]
        0 = downbeat .. 3.
    normalised : np.ndarray [shape=(n_beats, 121), dtype=float32]
        Derived: the features as the observation shows them (per-track z-scores).
    compact : np.ndarray [shape=(n_beats, N_COMPACT - 1), dtype=float32]
        Derived: the ``CONTEXT_FEATURE_GROUPS`` columns of ``normalised`` (a neighbour beat's
        description in the observation), selected once per track rather than every episode.
    dense : DenseContext
        Derived: the track's part of the dense rewards, computed once rather than every episode.
    """

    name: str
    features: np.ndarray
    beat_samples: np.ndarray
    bar_positions: np.ndarray
    normalised: np.ndarray = field(init=False, repr=False)
    compact: np.ndarray = field(init=False, repr=False)
    dense: DenseContext = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.features.shape[0] if self.features.ndim == 2 else -1
        if self.features.ndim != 2 or self.features.shape[1] != N_AUDIO_FEATURES:
            raise InvalidTrack(f"{self.name}: features have shape {self.features.shape}, expected (n_beats, {N_AUDIO_FEATURES})")
        if n < MIN_EXCERPT_BEATS:
            raise InvalidTrack(f"{self.name}: {n} beats, at least {MIN_EXCERPT_BEATS} needed for an excerpt")
        if self.beat_samples.shape != (n + 1,):
            raise InvalidTrack(f"{self.name}: beat_samples has shape {self.beat_samples.shape}, expected ({n + 1},)")
        if self.bar_positions.shape != (n,):
            raise InvalidTrack(f"{self.name}: bar_positions has shape {self.bar_positions.shape}, expected ({n},)")
        if not np.all(np.isfinite(self.features)):
            raise InvalidTrack(f"{self.name}: features contain NaN or infinite values")
        object.__setattr__(self, "normalised", _standardise(self.features))
        object.__setattr__(self, "compact", np.ascontiguousarray(self.normalised[:, _COMPACT_COLUMNS]))
        object.__setattr__(self, "dense", dense_context(self.features, self.beat_samples, self.bar_positions))

    @property
    def n_beats(self) -> int:
        return int(self.features.shape[0])


def _standardise(features: np.ndarray) -> np.ndarray:
    """Per-track z-score of every column except the bar-position one-hot, clipped to +-OBS_CLIP."""
    out = features.astype(np.float64, copy=True)
    mean = out.mean(axis=0)
    std = out.std(axis=0)
    # A column constant over the track carries no information within it: map it to 0.
    z = np.where(std > 1e-6, (out - mean) / np.where(std > 1e-6, std, 1.0), 0.0)
    bar = FEATURE_GROUPS["bar_position"]
    z[:, bar] = out[:, bar]
    return np.clip(z, -OBS_CLIP, OBS_CLIP).astype(np.float32)


@dataclass(frozen=True)
class Excerpt:
    """One episode's task: retarget ``n_beats`` beats of track ``track_index`` from ``start`` to ``target_beats``.

    Attributes
    ----------
    track_index : int
        Index into the environment's track list.
    start : int
        First track beat of the excerpt.
    n_beats : int
        Source beats, MIN_PASSAGE_BEATS..MAX_PASSAGE_BEATS.
    target_beats : int
        Exact output length in beats, within ``editing.edit.target_range`` of the passage.
    """

    track_index: int
    start: int
    n_beats: int
    target_beats: int

    @property
    def target_fraction(self) -> float:
        return self.target_beats / self.n_beats


@dataclass(frozen=True)
class FinishedEpisode:
    """A finished edit, handed to the learned reward in ``info["finished_episode"]``.

    A read-only record: nothing changes a finished episode, its edit or its track after the
    fact, so a deep copy is the record itself.  SB3's ``DummyVecEnv`` deep-copies every
    step's infos; copying the track's arrays with each finished episode cost about 0.2 ms
    per episode (a third of the env's own time per step) for nothing.
    """

    track: TrackArrays
    excerpt: Excerpt
    edit: Edit
    dense: DenseScores

    def __deepcopy__(self, memo: dict[int, Any]) -> FinishedEpisode:
        return self


@dataclass(frozen=True)
class EnvConfig:
    """How episodes are drawn and rewarded.

    Attributes
    ----------
    min_excerpt_beats, max_excerpt_beats : int
        Length range of most passages in beats (inclusive): the comparisons' 16..64.
    long_passage_probability : float
        Share of episodes on a long passage instead, of ``max_excerpt_beats..long_passage_beats``
        beats, so that the policy also learns to pace a whole track.
    long_passage_beats : int
        Longest passage drawn, beats.
    target_fraction_range : tuple[float, float]
        Target length as a fraction of the passage, drawn log-uniformly (0.5..2: half to twice).
    min_stretch : float
        Targets within this fraction of the passage's own length are not drawn: a retarget to
        (nearly) the same length has the trivial answer "change nothing".
    learned_weight : float
        ``w`` of the reward mix, in [0, 1].
    invalid_action_penalty : float
        Reward of a step that sends a masked action (and ends the episode).
    """

    min_excerpt_beats: int = MIN_EXCERPT_BEATS
    max_excerpt_beats: int = MAX_EXCERPT_BEATS
    long_passage_probability: float = 0.1
    long_passage_beats: int = 256
    target_fraction_range: tuple[float, float] = (MIN_STRETCH, MAX_STRETCH)
    min_stretch: float = 0.1
    learned_weight: float = 0.8
    invalid_action_penalty: float = -1.0

    def __post_init__(self) -> None:
        if not MIN_EXCERPT_BEATS <= self.min_excerpt_beats <= self.max_excerpt_beats <= self.long_passage_beats <= MAX_PASSAGE_BEATS:
            raise ValueError(
                f"EnvConfig: passage beats {self.min_excerpt_beats}..{self.max_excerpt_beats} (long: up to "
                f"{self.long_passage_beats}) must be ordered within {MIN_EXCERPT_BEATS}..{MAX_PASSAGE_BEATS}"
            )
        lo, hi = self.target_fraction_range
        if not MIN_STRETCH <= lo <= hi <= MAX_STRETCH:
            raise ValueError(
                f"EnvConfig: target_fraction_range {self.target_fraction_range} must lie within {MIN_STRETCH}..{MAX_STRETCH}"
            )
        if not 0.0 <= self.long_passage_probability <= 1.0:
            raise ValueError(f"EnvConfig: long_passage_probability {self.long_passage_probability} must lie in [0, 1]")
        if not 0.0 <= self.min_stretch < 0.5:
            raise ValueError(f"EnvConfig: min_stretch {self.min_stretch} must lie in [0, 0.5)")
        if not 0.0 <= self.learned_weight <= 1.0:
            raise ValueError(f"EnvConfig: learned_weight {self.learned_weight} must lie in [0, 1]")


def excerpt_planner(track: TrackArrays, excerpt: Excerpt) -> HeuristicPlanner:
    """The heuristic's plan of an excerpt (read-only once built: the envs editing one excerpt can share it)."""
    return HeuristicPlanner(context=track.dense, excerpt_start=excerpt.start, target_beats=excerpt.target_beats,
                            bar_positions=track.bar_positions[excerpt.start : excerpt.start + excerpt.n_beats])


def _downbeat_at_or_before(bar_positions: np.ndarray, beat: int) -> int:
    downbeats = np.flatnonzero(bar_positions[: beat + 1] == 0)
    return int(downbeats[-1]) if downbeats.size else beat


def sample_excerpt(rng: np.random.Generator, tracks: Sequence[TrackArrays], config: EnvConfig, *, track_index: int | None = None) -> Excerpt:
    """Draw a passage and a target: a track (uniform unless given), a length, a start on a downbeat, a stretch."""
    if track_index is None:
        track_index = int(rng.integers(len(tracks)))
    track = tracks[track_index]
    longest = min(config.max_excerpt_beats, track.n_beats)
    if longest < config.min_excerpt_beats:
        raise InvalidTrack(f"{track.name}: {track.n_beats} beats, a passage needs at least {config.min_excerpt_beats}")
    if rng.random() < config.long_passage_probability and track.n_beats > config.max_excerpt_beats:
        n_beats = int(rng.integers(config.max_excerpt_beats, min(config.long_passage_beats, track.n_beats) + 1))
    else:
        n_beats = int(rng.integers(config.min_excerpt_beats, longest + 1))
    start = _downbeat_at_or_before(track.bar_positions, int(rng.integers(0, track.n_beats - n_beats + 1)))
    lo, hi = (math.log(x) for x in config.target_fraction_range)
    gap = math.log1p(config.min_stretch)
    while True:  # log-uniform, outside the "nearly unchanged" band
        log_fraction = float(rng.uniform(lo, hi))
        if abs(log_fraction) >= gap or lo >= -gap and hi <= gap:
            break
    bars = track.bar_positions[start : start + n_beats]
    target = reachable_target(bars, round(math.exp(log_fraction) * n_beats))
    return Excerpt(track_index=track_index, start=start, n_beats=n_beats, target_beats=target)


class EditingEnv(gym.Env):
    """Gymnasium environment over a list of tracks; see the module docstring for spaces and reward.

    Parameters
    ----------
    tracks : sequence of TrackArrays
        Passages are drawn from these (uniformly by track) with the env's seeded RNG.
    config : EnvConfig
    """

    metadata = {"render_modes": []}

    def __init__(self, tracks: Sequence[TrackArrays], config: EnvConfig = EnvConfig()) -> None:
        if not tracks:
            raise ValueError("EditingEnv: no tracks given")
        self.tracks = list(tracks)
        self.config = config
        self.observation_space = observation_space()
        self.action_space = action_space()
        self._excerpt: Excerpt | None = None
        self._builder: EditBuilder | None = None

    # -- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode on ``options["excerpt"]`` if given, else on a freshly drawn excerpt.

        ``options["planner"]``, with an excerpt, is its :func:`excerpt_planner` made once for several
        envs (best-of-N edits one excerpt N times); otherwise the env plans the excerpt itself.
        """
        super().reset(seed=seed)
        excerpt = (options or {}).get("excerpt")
        if excerpt is None:
            excerpt = sample_excerpt(self.np_random, self.tracks, self.config)
        else:
            self._check_excerpt(excerpt)
        self._excerpt = excerpt
        track = self.tracks[excerpt.track_index]
        self._bars = track.bar_positions[excerpt.start : excerpt.start + excerpt.n_beats]
        self._builder = EditBuilder(excerpt.n_beats, self._bars, excerpt_start=excerpt.start,
                                    target_beats=excerpt.target_beats)
        if self._builder.done:
            raise ValueError(f"excerpt {excerpt}: no beats between its opening and final bars to edit")
        self._mask = self._builder.action_mask()
        planner = (options or {}).get("planner")
        if planner is not None and (planner.head, planner.tail, planner.need) != (
                self._builder.head_end, self._builder.tail_start, self._builder.beats_needed):
            raise ValueError(f"excerpt {excerpt}: the planner given is for another passage or target")
        self._planner = planner if planner is not None else excerpt_planner(track, excerpt)
        n = excerpt.n_beats
        # Compact beats of the excerpt, padded with zero rows (flag 0) so every context window is one
        # slice, even at the terminal position n_beats (hence the extra row after). Kept flat: the
        # window of rows [a, b) is the contiguous slice [a * N_COMPACT, b * N_COMPACT).
        compact = np.zeros((CONTEXT_BEFORE + n + CONTEXT_AFTER + 1, N_COMPACT), dtype=np.float32)
        compact[CONTEXT_BEFORE : CONTEXT_BEFORE + n, :-1] = track.compact[excerpt.start : excerpt.start + n]
        compact[CONTEXT_BEFORE : CONTEXT_BEFORE + n, -1] = 1.0
        self._compact_flat = compact.ravel()
        # The excerpt's full rows and a zero row after them: the current beat at the terminal position.
        current = np.zeros((n + 1, N_AUDIO_FEATURES), dtype=np.float32)
        current[:n] = track.normalised[excerpt.start : excerpt.start + n]
        self._current_rows = current
        self._last_action: int | None = None
        self._n_output = 0
        self._beats_since_seam = 0
        self._last_output_beat: int | None = None
        self._account(self._builder.entries)  # the opening bar, written by the builder
        # The observation is written block by block into this buffer (the target block and the
        # "none yet" last action once per episode) and a copy is handed out each step, so callers
        # that keep observations never see them change.
        self._obs = np.zeros(OBS_DIM, dtype=np.float32)
        stretch = excerpt.target_beats / n
        self._obs[_SLICES["target"]] = (stretch, math.log2(stretch), math.log2(n / MIN_EXCERPT_BEATS) / 8.0)
        self._obs[_SLICES["last_action"].start + N_ACTIONS] = 1.0
        return self._observation(), {"excerpt": excerpt}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._builder is None or self._builder.done:
            raise RuntimeError("EditingEnv.step: call reset() first (the episode is over or never started)")
        action = int(action)
        if not self._mask[action]:
            # Only unmasked callers get here; see the module docstring.
            self._builder = None
            obs = np.zeros(OBS_DIM, dtype=np.float32)
            return obs, float(self.config.invalid_action_penalty), True, False, {"invalid_action": action}
        added = self._builder.step(action)
        self._mask = self._builder.action_mask()
        if added:
            self._account(self._builder.last_entries(added))
        self._set_last_action(action)
        if not self._builder.done:
            return self._observation(), 0.0, False, False, {}
        finished = self._finish()
        reward = float(mix_reward(0.0, finished.dense.combined, self.config.learned_weight))
        return self._observation(), reward, True, False, {"finished_episode": finished}

    def heuristic_action(self) -> int:
        """The retargeting heuristic's move from the current state (what a first policy imitates)."""
        if self._builder is None or self._builder.done:
            raise RuntimeError("EditingEnv.heuristic_action: no episode in progress")
        return self._planner.best_action(self._builder, mask=self._mask)

    def action_masks(self) -> np.ndarray:
        """Valid actions now, bool (N_ACTIONS,); the hook sb3-contrib's MaskablePPO calls."""
        if self._builder is None or self._builder.done:
            return np.ones(N_ACTIONS, dtype=bool)
        return self._mask.copy()

    # -- internals -------------------------------------------------------------------------

    def _check_excerpt(self, excerpt: Excerpt) -> None:
        if not 0 <= excerpt.track_index < len(self.tracks):
            raise ValueError(f"excerpt {excerpt}: track_index outside the {len(self.tracks)} tracks")
        track = self.tracks[excerpt.track_index]
        if not MIN_PASSAGE_BEATS <= excerpt.n_beats <= MAX_PASSAGE_BEATS:
            raise ValueError(f"excerpt {excerpt}: {excerpt.n_beats} beats, expected {MIN_PASSAGE_BEATS}..{MAX_PASSAGE_BEATS}")
        if excerpt.start < 0 or excerpt.start + excerpt.n_beats > track.n_beats:
            raise ValueError(f"excerpt {excerpt}: runs outside {track.name} ({track.n_beats} beats)")

    def _set_last_action(self, action: int) -> None:
        one_hot = _SLICES["last_action"].start
        self._obs[one_hot + (N_ACTIONS if self._last_action is None else self._last_action)] = 0.0
        self._obs[one_hot + action] = 1.0
        self._last_action = action

    def _account(self, new_entries: Sequence[Any]) -> None:
        """Update the running edit summary from the entries one step wrote."""
        for entry in new_entries:
            self._n_output += 1
            if entry.transition in (Transition.CUT, Transition.CROSSFADE):
                self._beats_since_seam = 0
            else:
                self._beats_since_seam += 1
            self._last_output_beat = int(entry.source_beat)

    def _finish(self) -> FinishedEpisode:
        assert self._builder is not None and self._excerpt is not None
        edit = self._builder.build()
        track = self.tracks[self._excerpt.track_index]
        dense = dense_rewards(edit, context=track.dense, target_beats=self._excerpt.target_beats)
        return FinishedEpisode(track=track, excerpt=self._excerpt, edit=edit, dense=dense)

    def _observation(self) -> np.ndarray:
        """The observation now, float32 (OBS_DIM,): the per-step blocks written into the episode's buffer.

        Features are clipped when standardised (``TrackArrays.normalised``), flags, one-hots and
        the mask are 0/1, and the summary's ratios are clipped here; the target block is bounded
        by the 0.5x..2x stretch and the passage's MAX_PASSAGE_BEATS beats.
        """
        assert self._excerpt is not None and self._builder is not None
        obs = self._obs
        excerpt = self._excerpt
        n = excerpt.n_beats
        t = self._builder.position
        obs[_CURRENT] = self._current_rows[t]  # row n is zeros
        # Padded row of excerpt beat b is b + CONTEXT_BEFORE; row 0 is a zero row (flag 0 included).
        flat = self._compact_flat
        obs[_BEFORE] = flat[t * N_COMPACT : (t + CONTEXT_BEFORE) * N_COMPACT]
        after = t + CONTEXT_BEFORE + 1
        obs[_AFTER] = flat[after * N_COMPACT : (after + CONTEXT_AFTER) * N_COMPACT]
        row = 0 if self._last_output_beat is None else self._last_output_beat + CONTEXT_BEFORE
        obs[_LAST_OUTPUT] = flat[row * N_COMPACT : (row + 1) * N_COMPACT]
        builder = self._builder
        left = builder.middle_beats_left
        obs[_SUMMARY] = (
            self._n_output / excerpt.target_beats,
            min(builder.beats_needed / max(left, 1), OBS_CLIP),
            left / n,
            min(left / MAX_EXCERPT_BEATS, OBS_CLIP),
            min(self._beats_since_seam / 16.0, 1.0),
        )
        # After the last step the mask is all valid (what action_masks reports between episodes).
        obs[_MASK] = self._mask if not self._builder.done else True
        obs[_HEURISTIC] = heuristic_block(self._planner.action_costs(builder, mask=self._mask))
        return obs.copy()


# Probability the heuristic's soft choice (:func:`heuristic_policy`) keeps for any other action.
_HEURISTIC_FLOOR = 1e-3
_HEURISTIC_MOVE_MASK = np.isin(np.arange(N_ACTIONS), HEURISTIC_MOVES)


def heuristic_policy(observations: np.ndarray, temperature: float) -> np.ndarray:
    """The heuristic's soft choice in each observed state, among its own moves.

    ``P(a) ∝ exp(-(cost(a) - least cost) / temperature)`` for the heuristic's moves
    (``editing.baselines.HEURISTIC_MOVES``: what a first policy imitates), read from the
    observations' heuristic block, so it needs no planner; every probability below 1e-3 (any
    other action, an action without a finite cost, a move far dearer than the best) is raised
    to 1e-3 before normalising.  The reference of the policy's KL penalty (``rlhf.learning.policy``).

    Parameters
    ----------
    observations : np.ndarray [shape=(..., OBS_DIM)]
    temperature : float
        In seam-cost units (``editing.baselines.seam_cost``).

    Returns
    -------
    np.ndarray [shape=(..., N_ACTIONS)], float64, rows summing to 1
    """
    block = np.asarray(observations, dtype=np.float64)[..., _HEURISTIC][..., :N_ACTIONS]
    weights = np.where(_HEURISTIC_MOVE_MASK, block, 0.0) ** (1.0 / temperature)
    weights = np.maximum(weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-300), _HEURISTIC_FLOOR)
    return weights / weights.sum(axis=-1, keepdims=True)


def heuristic_block(costs: np.ndarray) -> np.ndarray:
    """The observation's heuristic block from the planner's action costs, float32 (N_HEURISTIC,).

    Per action ``exp(-(cost - least))``, 0 where the cost is infinite; then ``log1p(least) / 2``
    (clipped to OBS_CLIP).  All zeros when no action has a finite cost (the episode is over, or
    cuts went past the planner's reach).
    """
    out = np.zeros(N_HEURISTIC, dtype=np.float32)
    # Ten numbers a step: plain floats cost less than numpy's per-call overhead here.
    values = costs.tolist()
    least = min(values)
    if least != math.inf:
        for action, cost in enumerate(values):
            if cost != math.inf:
                out[action] = math.exp(least - cost)
        out[N_ACTIONS] = min(math.log1p(least) / 2.0, OBS_CLIP)
    return out

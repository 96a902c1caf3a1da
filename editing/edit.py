"""An edit of an excerpt: the nine beat actions, their validity, and the edit-aware features.

An excerpt is a run of ``n_source_beats`` consecutive track beats (16..64,
default 32) starting at track beat ``excerpt_start``.  An edit walks through
the excerpt's *source beats* one step at a time; each step applies one action
at the current source beat (the *position*) and appends zero or more *output
beats*.  The result is an ordered list of entries ``(source beat, transition,
action)``, one per output beat, where the transition says how the output
arrives at that beat:

=============  ==  ================================================================
transition     id  meaning
=============  ==  ================================================================
START           0  first output beat
CONTINUE        1  the source beat right after the previous output beat: no seam
CUT             2  a seam (any other beat): rendered with a short crossfade
CROSSFADE       3  a seam after a CROSSFADE action: rendered with a long crossfade
=============  ==  ================================================================

The actions, at position ``p`` (``d`` is the latest downbeat at or before
``p`` no more than 3 beats back; if there is none, ``d = max(0, p - 3)``):

===========  ==  ======================  ========  ========================================
action       id  output beats            consumes  valid when
===========  ==  ======================  ========  ========================================
KEEP          0  p                       1         output stays within the cap
CUT           1  (none)                  1         output non-empty, or beats remain after p
LOOP          2  p, p                    1         within the cap
LOOP_BAR      3  p, d, d+1, ..., p       1         p > d (a bar started before p); cap
CROSSFADE     4  (none); next seam long  1         output non-empty and p + 1 exists
REORDER       5  p+1, p                  2         p + 1 exists; cap
SKIP_TO_BAR   6  (none)                  to next   a later downbeat exists in the excerpt
                                         downbeat
REPEAT_2      7  p, p-1, p               1         p >= 1; cap
STOP          8  (none)                  all left  output non-empty
===========  ==  ======================  ========  ========================================

The cap bounds the output at ``2 * n_source_beats`` beats, so the looping
actions are masked near it.  Every step has at least one valid action (CUT,
or KEEP when CUT would leave the output empty), and the edit is finished when
every source beat is consumed.  :class:`EditBuilder` is the one home of these
semantics; :func:`apply_actions`, the gym env and the baselines all use it.

Edit-aware features, one row per output beat (:func:`edit_features`), tell
the reward model what a listener hears the edit do around that beat:

==  ===============  ==================================================================
#   name             value
==  ===============  ==================================================================
0   seam             strength of the seam just before the beat: 0 START/CONTINUE,
                     1 CUT (short crossfade), 0.5 CROSSFADE (long, softer crossfade)
1   jump             signed source jump at that seam, ``tanh((s - s_prev - 1) / 16)``:
                     0 without a seam, < 0 going back (repeats), > 0 skipping ahead
2   repetition       times this source beat was already heard, ``c / (c + 1)``
3   drift            output progress minus source progress, ``(i - s) / n_source_beats``
                     for output beat ``i`` of source beat ``s``: < 0 after cuts, > 0
                     after repeats
==  ===============  ==================================================================

:func:`model_input` joins them to the track's 121 per-beat audio features of
each output beat's source beat: the reward model's 125-dim input, versioned
by :data:`MODEL_FEATURE_VERSION`.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Iterable

import numpy as np

from editing.audio import BEATS_PER_BAR, FEATURE_VERSION, N_AUDIO_FEATURES

__all__ = [
    "Action",
    "N_ACTIONS",
    "Transition",
    "MIN_EXCERPT_BEATS",
    "MAX_EXCERPT_BEATS",
    "DEFAULT_EXCERPT_BEATS",
    "EditEntry",
    "Edit",
    "EditError",
    "EditBuilder",
    "apply_actions",
    "validate_edit",
    "N_EDIT_FEATURES",
    "EDIT_FEATURE_NAMES",
    "N_MODEL_FEATURES",
    "MODEL_FEATURE_VERSION",
    "edit_features",
    "model_input",
]


class Action(IntEnum):
    KEEP = 0
    CUT = 1
    LOOP = 2
    LOOP_BAR = 3
    CROSSFADE = 4
    REORDER = 5
    SKIP_TO_BAR = 6
    REPEAT_2 = 7
    STOP = 8


N_ACTIONS = len(Action)


class Transition(IntEnum):
    START = 0
    CONTINUE = 1
    CUT = 2
    CROSSFADE = 3


MIN_EXCERPT_BEATS = 16
MAX_EXCERPT_BEATS = 64
DEFAULT_EXCERPT_BEATS = 32

# Actions that put no beat in the output; an entry can never carry one of them.
_SILENT_ACTIONS = frozenset({Action.CUT, Action.CROSSFADE, Action.SKIP_TO_BAR, Action.STOP})
_SEAMS = frozenset({Transition.CUT, Transition.CROSSFADE})

N_EDIT_FEATURES = 4
EDIT_FEATURE_NAMES: tuple[str, ...] = ("seam", "jump", "repetition", "drift")
N_MODEL_FEATURES = N_AUDIO_FEATURES + N_EDIT_FEATURES
MODEL_FEATURE_VERSION = FEATURE_VERSION + "+edit-v1"

# A long crossfade blurs the seam, so the ear notices it about half as much as a cut.
_CROSSFADE_SEAM_STRENGTH = 0.5
# Jumps are scaled by a 16-beat phrase: a one-bar jump reads 0.24, a phrase 0.76.
_JUMP_SCALE_BEATS = 16.0


class EditError(ValueError):
    """An edit (or an action on one) is invalid; the message names what and why."""


@dataclass(frozen=True)
class EditEntry:
    """One output beat: which source beat plays, how the output arrives at it, and the action that put it there.

    Attributes
    ----------
    source_beat : int
        Index within the excerpt, ``0 <= source_beat < n_source_beats``.
    transition : Transition
    action : Action
    """

    source_beat: int
    transition: Transition
    action: Action


@dataclass(frozen=True)
class Edit:
    """A finished edit of one excerpt; validated on construction.

    Attributes
    ----------
    excerpt_start : int
        Track beat index of the excerpt's first beat.
    n_source_beats : int
        Excerpt length in beats, 16..64.
    actions : tuple[int, ...]
        The action id taken at each step (one step may consume several beats).
    entries : tuple[EditEntry, ...]
        One per output beat, in playing order; 1..``2 * n_source_beats`` of them.
    """

    excerpt_start: int
    n_source_beats: int
    actions: tuple[int, ...]
    entries: tuple[EditEntry, ...]

    def __post_init__(self) -> None:
        _check_structure(self)
        # Frozen, so the structure stays checked: validate_edit need not walk the entries again.
        object.__setattr__(self, "_structure_checked", True)

    @property
    def n_output_beats(self) -> int:
        return len(self.entries)

    def _column(self, name: str) -> np.ndarray:
        # Each column of the entries is read from them once (an Edit is frozen): the dense rewards
        # and the reward model's input both read them for every edit.  Callers get a copy.
        cache = self.__dict__.get("_columns")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_columns", cache)
        column = cache.get(name)
        if column is None:
            column = np.fromiter((getattr(e, name) for e in self.entries), dtype=np.int64, count=len(self.entries))
            cache[name] = column
        return column.copy()

    def source_beats(self) -> np.ndarray:
        """Excerpt beat index of each output beat, int64 (n_output_beats,)."""
        return self._column("source_beat")

    def track_beats(self) -> np.ndarray:
        """Absolute track beat index of each output beat, int64 (n_output_beats,)."""
        return self.source_beats() + self.excerpt_start

    def transitions(self) -> np.ndarray:
        """Transition id of each output beat, int64 (n_output_beats,)."""
        return self._column("transition")

    def output_actions(self) -> np.ndarray:
        """Id of the action that produced each output beat, int64 (n_output_beats,)."""
        return self._column("action")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; entries are ``[source_beat, transition, action]`` triples of ints."""
        return {
            "excerpt_start": int(self.excerpt_start),
            "n_source_beats": int(self.n_source_beats),
            "actions": [int(a) for a in self.actions],
            "entries": [[int(e.source_beat), int(e.transition), int(e.action)] for e in self.entries],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Edit:
        """Inverse of :meth:`to_json`; raises :class:`EditError` on anything malformed."""
        if not isinstance(data, dict):
            raise EditError(f"edit JSON: expected an object, got {type(data).__name__}")
        missing = [k for k in ("excerpt_start", "n_source_beats", "actions", "entries") if k not in data]
        if missing:
            raise EditError(f"edit JSON: missing {', '.join(repr(k) for k in missing)}")
        excerpt_start = _json_int(data["excerpt_start"], "excerpt_start")
        n_source_beats = _json_int(data["n_source_beats"], "n_source_beats")
        if not isinstance(data["actions"], list):
            raise EditError("edit JSON: 'actions' must be a list of action ids")
        actions = tuple(_json_int(a, f"actions[{i}]") for i, a in enumerate(data["actions"]))
        if not isinstance(data["entries"], list):
            raise EditError("edit JSON: 'entries' must be a list of [source_beat, transition, action]")
        entries = []
        for i, raw in enumerate(data["entries"]):
            if not isinstance(raw, (list, tuple)) or len(raw) != 3:
                raise EditError(f"edit JSON: entries[{i}] must be [source_beat, transition, action], got {raw!r}")
            source_beat = _json_int(raw[0], f"entries[{i}] source beat")
            transition = _json_enum(Transition, raw[1], f"entries[{i}] transition")
            action = _json_enum(Action, raw[2], f"entries[{i}] action")
            entries.append(EditEntry(source_beat, transition, action))
        return cls(excerpt_start, n_source_beats, actions, tuple(entries))

    def key(self) -> str:
        """sha256 hex digest of the excerpt and the entries: equal for edits that sound the same."""
        payload = json.dumps(
            {
                "excerpt_start": int(self.excerpt_start),
                "n_source_beats": int(self.n_source_beats),
                "entries": [[int(e.source_beat), int(e.transition), int(e.action)] for e in self.entries],
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _json_int(value: Any, what: str) -> int:
    # bool is an int subclass, but true/false as a beat index is a client bug.
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditError(f"edit JSON: {what} must be an integer, got {value!r}")
    return value


def _json_enum(enum: type[IntEnum], value: Any, what: str) -> Any:
    number = _json_int(value, what)
    try:
        return enum(number)
    except ValueError:
        raise EditError(f"edit JSON: {what} {number} is not one of {[int(m) for m in enum]}") from None


def _check_excerpt_length(n_source_beats: int) -> None:
    if not MIN_EXCERPT_BEATS <= n_source_beats <= MAX_EXCERPT_BEATS:
        raise EditError(
            f"excerpt of {n_source_beats} beats: must be {MIN_EXCERPT_BEATS}..{MAX_EXCERPT_BEATS} beats"
        )


def _check_structure(edit: Edit) -> None:
    """What can be checked without the track: ranges, lengths and transition consistency."""
    n = edit.n_source_beats
    _check_excerpt_length(n)
    if edit.excerpt_start < 0:
        raise EditError(f"excerpt start beat {edit.excerpt_start}: must be >= 0")
    if not 1 <= len(edit.actions) <= n:
        raise EditError(f"edit has {len(edit.actions)} actions: must be 1..{n} (one step per source beat at most)")
    for i, a in enumerate(edit.actions):
        if not 0 <= int(a) < N_ACTIONS:
            raise EditError(f"action {i} is {a}: action ids are 0..{N_ACTIONS - 1}")
    if not edit.entries:
        raise EditError("edit has no output beats: an edit must play at least one beat")
    if len(edit.entries) > 2 * n:
        raise EditError(f"edit has {len(edit.entries)} output beats: at most {2 * n} (twice the excerpt)")
    previous = -1
    for i, entry in enumerate(edit.entries):
        if not 0 <= entry.source_beat < n:
            raise EditError(f"output beat {i}: source beat {entry.source_beat} is outside the excerpt 0..{n - 1}")
        if entry.action in _SILENT_ACTIONS:
            raise EditError(f"output beat {i}: action {Action(entry.action).name} never produces an output beat")
        transition = entry.transition
        if type(transition) is not Transition:
            transition = Transition(transition)
        if i == 0:
            if transition is not Transition.START:
                raise EditError(f"output beat 0: transition must be START, got {transition.name}")
        elif transition is Transition.START:
            raise EditError(f"output beat {i}: START is only for the first output beat")
        elif transition is Transition.CONTINUE and entry.source_beat != previous + 1:
            raise EditError(
                f"output beat {i}: CONTINUE from source beat {previous} to {entry.source_beat}; "
                f"the source only continues to {previous + 1}"
            )
        elif transition in _SEAMS and entry.source_beat == previous + 1:
            raise EditError(
                f"output beat {i}: {transition.name} seam between contiguous source beats "
                f"{previous} and {entry.source_beat}; the source continues there"
            )
        previous = entry.source_beat


_ACTIONS = tuple(Action)


@functools.lru_cache(maxsize=1024)
def _bar_tables(downbeats: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per excerpt beat p: the bar start LOOP_BAR replays from, and the next downbeat after p (-1: none).

    ``downbeats`` is the excerpt's ``bar_positions == 0`` as bytes (the cache key: excerpts
    of one track share a handful of bar patterns).  The bar start is the latest downbeat at
    or before p within the last 3 beats, else ``max(0, p - 3)``.  Tuples of ints, because
    the builder reads one entry per step.
    """
    downbeat = np.frombuffer(downbeats, dtype=bool)
    n = downbeat.size
    index = np.arange(n)
    latest = np.maximum.accumulate(np.where(downbeat, index, -1))
    in_bar = (latest >= 0) & (latest >= index - (BEATS_PER_BAR - 1))
    bar_starts = np.where(in_bar, latest, np.maximum(0, index - (BEATS_PER_BAR - 1)))
    # First downbeat at or after q, for q = 0..n (n: none), then shifted to "after p".
    first_from = np.minimum.accumulate(np.where(downbeat, index, n)[::-1])[::-1]
    following = np.append(first_from[1:], n)
    next_downbeats = np.where(following < n, following, -1)
    return tuple(bar_starts.tolist()), tuple(next_downbeats.tolist())


class EditBuilder:
    """Applies actions one step at a time; the one home of action semantics and validity masks.

    Parameters
    ----------
    n_source_beats : int
        Excerpt length in beats, 16..64.
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The excerpt's bar position of each beat, 0 = downbeat .. 3.
    excerpt_start : int
        Track beat index of the excerpt's first beat (recorded in the Edit).
    """

    def __init__(self, n_source_beats: int, bar_positions: np.ndarray, excerpt_start: int = 0) -> None:
        _check_excerpt_length(int(n_source_beats))
        bar_positions = np.asarray(bar_positions)
        if bar_positions.shape != (n_source_beats,):
            raise EditError(
                f"bar positions have shape {bar_positions.shape}: expected ({n_source_beats},), one per excerpt beat"
            )
        if excerpt_start < 0:
            raise EditError(f"excerpt start beat {excerpt_start}: must be >= 0")
        self.n_source_beats = int(n_source_beats)
        self.excerpt_start = int(excerpt_start)
        self._bar_starts, self._next_downbeats = _bar_tables((bar_positions == 0).tobytes())
        self._cap = 2 * self.n_source_beats
        self._position = 0
        self._actions: list[int] = []
        self._entries: list[EditEntry] = []
        self._pending_long = False

    @property
    def position(self) -> int:
        """The next source beat to act on (== n_source_beats once done)."""
        return self._position

    @property
    def done(self) -> bool:
        return self._position >= self.n_source_beats

    @property
    def n_output_beats(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[EditEntry, ...]:
        return tuple(self._entries)

    def _effects(self) -> list[tuple[int, int] | None]:
        """What each action would do at the current position: (output beats added, source beats consumed), or None.

        None means the action is not possible here whatever the output length; the cap is
        applied by the callers.  This table is the one statement of validity: the mask and
        :meth:`step` both read it, and :meth:`_outputs` plays exactly ``added`` beats.
        """
        p, n = self._position, self.n_source_beats
        has_output = bool(self._entries)
        has_next = p + 1 < n
        start = self._bar_starts[p]
        downbeat = self._next_downbeats[p]
        return [
            (1, 1),  # KEEP
            (0, 1) if has_output or has_next else None,  # CUT
            (2, 1),  # LOOP
            (p - start + 2, 1) if start < p else None,  # LOOP_BAR: p, then start..p
            (0, 1) if has_output and has_next else None,  # CROSSFADE
            (2, 2) if has_next else None,  # REORDER
            (0, downbeat - p) if downbeat >= 0 else None,  # SKIP_TO_BAR
            (3, 1) if p >= 1 else None,  # REPEAT_2
            (0, n - p) if has_output else None,  # STOP
        ]

    def _outputs(self, action: Action) -> list[int]:
        """The source beats ``action`` plays at the current position (valid or not: see :meth:`_effects`)."""
        p = self._position
        if action is Action.KEEP:
            return [p]
        if action is Action.LOOP:
            return [p, p]
        if action is Action.LOOP_BAR:
            return [p, *range(self._bar_starts[p], p + 1)]
        if action is Action.REORDER:
            return [p + 1, p]
        if action is Action.REPEAT_2:
            return [p, p - 1, p]
        return []  # CUT, CROSSFADE, SKIP_TO_BAR, STOP

    def _plan(self, action: Action) -> tuple[list[int], int] | None:
        """(output source beats, beats consumed) for the action at the current position, or None if invalid."""
        effect = self._effects()[action]
        if effect is None or len(self._entries) + effect[0] > self._cap:
            return None
        return self._outputs(action), effect[1]

    def action_mask(self, *, min_output_beats: int = 0) -> np.ndarray:
        """Which actions are valid now, bool (N_ACTIONS,); all False once done.

        With ``min_output_beats`` (at most ``n_source_beats``), an action is also masked when,
        after it, the edit could no longer reach that many output beats even by keeping every
        remaining source beat.  Applied from the first step this never masks KEEP, so some
        action stays valid; the env uses it so that an edit cannot end far short of its target.
        """
        if self.done:
            return np.zeros(N_ACTIONS, dtype=bool)
        n_output = len(self._entries)
        room = self._cap - n_output
        # Output beats reachable after an action that adds `added` and consumes `consumed`:
        # n_output + added + (remaining - consumed); shortfall is what that must reach.
        shortfall = min_output_beats - n_output - (self.n_source_beats - self._position)
        return np.array(
            [
                effect is not None and effect[0] <= room and effect[0] - effect[1] >= shortfall
                for effect in self._effects()
            ],
            dtype=bool,
        )

    def step(self, action: int) -> int:
        """Apply one action at the current position; returns how many output beats it added.

        Raises
        ------
        EditError
            If the edit is done, the id is unknown, or the action is masked here.
        """
        if self.done:
            raise EditError(f"action {action} after the edit is finished (all {self.n_source_beats} beats used)")
        try:
            index = int(action)
        except ValueError:
            index = -1
        if not 0 <= index < N_ACTIONS:
            raise EditError(f"action id {action}: action ids are 0..{N_ACTIONS - 1}")
        act = _ACTIONS[index]
        plan = self._plan(act)
        if plan is None:
            raise EditError(f"{act.name} is not valid at source beat {self._position}: {self._why_invalid(act)}")
        sources, consumed = plan
        for source in sources:
            self._append(source, act)
        if act is Action.CROSSFADE:
            self._pending_long = True
        self._actions.append(int(act))
        self._position += consumed
        return len(sources)

    def _why_invalid(self, act: Action) -> str:
        p, n = self._position, self.n_source_beats
        if self._effects()[act] is not None:  # possible here, but not within the output cap
            return f"output would exceed {self._cap} beats (twice the excerpt)"
        return {
            Action.CUT: "it would leave the edit empty",
            Action.LOOP_BAR: "no earlier beat of this bar to loop back to (it is a downbeat or the excerpt's first beat)",
            Action.CROSSFADE: "it needs an output beat before and a source beat after",
            Action.REORDER: f"there is no next beat after {p} (excerpt has {n})",
            Action.SKIP_TO_BAR: "there is no later downbeat in the excerpt",
            Action.REPEAT_2: "there is no previous beat to repeat",
            Action.STOP: "the output is still empty",
        }[act]

    def _append(self, source: int, act: Action) -> None:
        if not self._entries:
            transition = Transition.START
        elif self._pending_long:
            transition = Transition.CROSSFADE
        elif source == self._entries[-1].source_beat + 1:
            transition = Transition.CONTINUE
        else:
            transition = Transition.CUT
        self._pending_long = False
        self._entries.append(EditEntry(source, transition, act))

    def build(self) -> Edit:
        """The finished Edit; raises :class:`EditError` if source beats are left."""
        if not self.done:
            raise EditError(
                f"edit is not finished: source beat {self._position} of {self.n_source_beats} is next "
                "(continue, or end with STOP)"
            )
        return Edit(self.excerpt_start, self.n_source_beats, tuple(self._actions), tuple(self._entries))


def apply_actions(actions: Iterable[int], *, excerpt_start: int, bar_positions: np.ndarray) -> Edit:
    """Apply a whole action sequence to an excerpt.

    Parameters
    ----------
    actions : iterable of int
        Action ids, one per step, that consume exactly the excerpt.
    excerpt_start : int
        Track beat index of the excerpt's first beat.
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The excerpt's bar positions; their length is the excerpt length.

    Raises
    ------
    EditError
        On a masked action (naming its step), or when the actions stop early or run past the end.
    """
    bar_positions = np.asarray(bar_positions)
    builder = EditBuilder(len(bar_positions), bar_positions, excerpt_start)
    for step, action in enumerate(actions):
        if builder.done:
            raise EditError(f"step {step}: action {action} after all {builder.n_source_beats} source beats were used")
        try:
            builder.step(action)
        except EditError as err:
            raise EditError(f"step {step}: {err}") from None
    return builder.build()


def validate_edit(edit: Edit, *, n_track_beats: int, bar_positions: np.ndarray | None = None) -> None:
    """Check that an edit fits its track (and, given the track's bar positions, that its entries follow from its actions).

    Parameters
    ----------
    edit : Edit
    n_track_beats : int
        Beats in the track the edit refers to.
    bar_positions : np.ndarray [shape=(n_track_beats,)], int, optional
        The track's bar positions; when given, the actions are replayed and must give the same entries.

    Raises
    ------
    EditError
    """
    if not edit.__dict__.get("_structure_checked", False):
        _check_structure(edit)
    end = edit.excerpt_start + edit.n_source_beats
    if end > n_track_beats:
        raise EditError(
            f"excerpt beats {edit.excerpt_start}..{end - 1} run past the track's last beat {n_track_beats - 1}"
        )
    if bar_positions is not None:
        bar_positions = np.asarray(bar_positions)
        if bar_positions.shape != (n_track_beats,):
            raise EditError(f"bar positions have shape {bar_positions.shape}: expected ({n_track_beats},)")
        replayed = apply_actions(
            edit.actions, excerpt_start=edit.excerpt_start, bar_positions=bar_positions[edit.excerpt_start : end]
        )
        if replayed.entries != edit.entries:
            raise EditError("edit entries do not follow from its actions on this track's bars")


def edit_features(edit: Edit) -> np.ndarray:
    """The four edit-aware features of each output beat (table in the module docstring).

    Returns
    -------
    np.ndarray [shape=(n_output_beats, 4)], float32
        Columns ``seam, jump, repetition, drift``.
    """
    sources = edit.source_beats()
    transitions = edit.transitions()
    n_out = sources.size
    seam = np.where(
        transitions == Transition.CUT, 1.0, np.where(transitions == Transition.CROSSFADE, _CROSSFADE_SEAM_STRENGTH, 0.0)
    )
    previous = np.concatenate([[-1], sources[:-1]])
    is_seam = (transitions == Transition.CUT) | (transitions == Transition.CROSSFADE)
    jump = np.where(is_seam, np.tanh((sources - previous - 1) / _JUMP_SCALE_BEATS), 0.0)
    # Earlier plays of the same source beat: rank of this occurrence among equal sources.
    order = np.argsort(sources, kind="stable")
    sorted_sources = sources[order]
    first_of_run = np.searchsorted(sorted_sources, sorted_sources, side="left")
    times_heard = np.empty(n_out, dtype=np.float64)
    times_heard[order] = np.arange(n_out) - first_of_run
    repetition = times_heard / (times_heard + 1.0)
    drift = (np.arange(n_out) - sources) / edit.n_source_beats
    return np.stack([seam, jump, repetition, drift], axis=1).astype(np.float32)


def model_input(track_features: np.ndarray, edit: Edit) -> tuple[np.ndarray, np.ndarray]:
    """The reward model's input for one edit (version :data:`MODEL_FEATURE_VERSION`).

    Parameters
    ----------
    track_features : np.ndarray [shape=(n_track_beats, 121)], float
        The track's per-beat audio features (``TrackAnalysis.features``).
    edit : Edit

    Returns
    -------
    features : np.ndarray [shape=(n_output_beats, 125)], float32
        Audio features of each output beat's source beat, then :func:`edit_features`.
    action_ids : np.ndarray [shape=(n_output_beats,)], int64
        The action that produced each output beat.

    Raises
    ------
    EditError
        If the features are not (n_track_beats, 121) or the edit does not fit the track.
    """
    track_features = np.asarray(track_features)
    if track_features.ndim != 2 or track_features.shape[1] != N_AUDIO_FEATURES:
        raise EditError(
            f"track features have shape {track_features.shape}: expected (n_track_beats, {N_AUDIO_FEATURES})"
        )
    validate_edit(edit, n_track_beats=track_features.shape[0])
    audio = track_features[edit.track_beats()].astype(np.float32)
    return np.concatenate([audio, edit_features(edit)], axis=1), edit.output_actions()

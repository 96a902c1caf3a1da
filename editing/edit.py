"""A retarget edit of a passage: the ten beat actions, their validity, and the edit-aware features.

One concept over 600 lines: the edit, with the parts that must agree on what an action does.

The task
--------
A *passage* is a run of ``n_source_beats`` consecutive track beats (8..5400: two bars up to a
whole long track) starting at track beat ``excerpt_start``.  A *retarget* edit makes it last
``target_beats`` output beats (0.5x to 2x of the passage) while it

- opens with the passage's **opening bar** (source beats ``[0, head_end)``), heard as written,
- closes with its **final bar** (source beats ``[tail_start, n_source_beats)``), heard as written,
- and has **exactly** ``target_beats`` output beats.

:func:`passage_frame` defines the two bars: the opening bar runs up to the first downbeat at
index >= 4 (so a pickup is kept with the bar it leads into), the final bar starts at the last
downbeat at or before ``n - 4``.  Everything between them, the *middle*, is what an edit
decides, one step at a time.  Shortening needs cuts and lengthening needs loops, so seams are
unavoidable: their placement is what is learned.

An edit walks through the middle's *source beats*; each step applies one action at the current
source beat (the *position*) and appends zero or more *output beats*.  The opening bar is
written before the first step and the final bar after the last, by the builder itself (they are
not actions).  The result is an ordered list of entries ``(source beat, transition, action)``,
one per output beat, where the transition says how the output arrives at that beat:

=============  ==  ================================================================
transition     id  meaning
=============  ==  ================================================================
START           0  first output beat
CONTINUE        1  the source beat right after the previous output beat: no seam
CUT             2  a seam (any other beat): rendered with a short crossfade
CROSSFADE       3  a seam after a CROSSFADE action: rendered with a long crossfade
=============  ==  ================================================================

The actions, at middle position ``p`` (``t = tail_start``; ``d`` is the latest downbeat at or
before ``p`` no more than 3 beats back, else ``max(0, p - 3)``; ``f`` is the start of ``p``'s
phrase, see below):

===========  ==  ======================  ==========  ======================================
action       id  output beats            consumes    valid when (and the length rule below)
===========  ==  ======================  ==========  ======================================
KEEP          0  p                       1           always
CUT           1  (none)                  1           always
LOOP          2  p, p                    1           always
LOOP_BAR      3  p, d, d+1, ..., p       1           p > d (a bar started before p)
CROSSFADE     4  (none); next seam long  1           always
REORDER       5  p+1, p                  2           p + 1 < t
SKIP_TO_BAR   6  (none)                  to the next  p + 1 < t; skips to the next downbeat
                                         downbeat    (or to t, whichever comes first)
REPEAT_2      7  p, p-1, p               1           always (p >= head_end >= 1)
STOP          8  (none)                  all of the  always: jumps to the final bar
                                         middle left
LOOP_PHRASE   9  p, f, f+1, ..., p       1           head_end <= f < d (the phrase began
                                                     in the middle, before p's bar)
===========  ==  ======================  ==========  ======================================

A *phrase* is :data:`PHRASE_BARS` bars, counted from the passage's first downbeat: ``f`` is the
downbeat that opens the group of four bars holding ``p``.  LOOP_PHRASE on a phrase's last beat
repeats the whole phrase once (one seam), where LOOP_BAR would need four loops of a bar (four
seams).  It is valid only where it differs from LOOP_BAR (``f`` lies before the current bar's
start), where ``f`` lies in the middle (the opening bar is not replayed, as LOOP_BAR never
replays it) and where the jump back is at most :data:`MAX_PHRASE_BEATS` (irregular downbeats).
LOOP_PHRASE was appended (id 9) so ids 0..8 kept their meaning in stored edits; the action set
is versioned by :data:`ACTION_SET_VERSION`, which policies (their spaces spec) and reward models
(their action embedding) record and check.

**The length rule** (what makes every finished edit meet the task by construction): an action is
masked unless, after it, the rest of the middle can still produce exactly the output beats the
target needs.  The builder computes, once per passage, the set of output counts each middle
position can still produce (a bitset per position, :meth:`EditBuilder._reachable`); the mask is a
bit test.  The set of reachable targets is checked at construction: a target no edit can meet
is refused with the range that can.

Semantics that changed from the first task (edit an excerpt *down to* a target, ending where it
stopped), and why:

- STOP no longer drops the rest of the passage: it jumps to the final bar, which is always
  played.  The old STOP made "keep beats until the target, then stop" a seam-free optimum
  that needed no learning and stopped mid-phrase.
- CUT, CROSSFADE and SKIP_TO_BAR never reach into the final bar, and REORDER never plays it
  out of order: the final bar is heard as written.
- The opening bar is written before the first step: no action can touch it.
- The output length is exact: the old minimum-length mask (``min_output_beats``) is gone,
  replaced by the length rule above, which also rules out overshooting.

The output is capped at ``2 * n_source_beats`` beats by the target range.
:class:`EditBuilder` is the one home of these semantics; :func:`apply_actions`, the gym env and
the baselines all use it.

Edit-aware features, one row per output beat (:func:`edit_features`), tell the reward model
what a listener hears the edit do around that beat, and how the edit meets its target:

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
4   progress         ``i / target_beats``: where the beat lies in the target duration
5   stretch          ``log2(target_beats / n_source_beats)``: how much the passage is
                     shortened (< 0) or lengthened (> 0)
==  ===============  ==================================================================

:func:`model_input` joins them to the track's 121 per-beat audio features of each output beat's
source beat: the reward model's 127-dim input (with each output beat's action id, which the model
embeds), versioned by :data:`MODEL_FEATURE_VERSION`, which names the action set too.
:func:`scoring_windows` is the one rule for cutting a long edit into windows the reward model
scores separately, so that scoring cost grows linearly with the edit's length.
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
    "ACTION_SET_VERSION",
    "PHRASE_BARS",
    "MAX_PHRASE_BEATS",
    "Transition",
    "MIN_PASSAGE_BEATS",
    "MAX_PASSAGE_BEATS",
    "MIN_EXCERPT_BEATS",
    "MAX_EXCERPT_BEATS",
    "DEFAULT_EXCERPT_BEATS",
    "MIN_STRETCH",
    "MAX_STRETCH",
    "EditEntry",
    "Edit",
    "EditError",
    "EditBuilder",
    "passage_frame",
    "target_range",
    "reachable_target",
    "apply_actions",
    "unedited",
    "validate_edit",
    "N_EDIT_FEATURES",
    "EDIT_FEATURE_NAMES",
    "N_MODEL_FEATURES",
    "MODEL_FEATURE_VERSION",
    "WINDOW_BEATS",
    "SEAM_CONTEXT_BEATS",
    "edit_features",
    "model_input",
    "scoring_windows",
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
    LOOP_PHRASE = 9


N_ACTIONS = len(Action)
# Names the action set: a model trained on another set reads ids with other meanings, so it is refused.
ACTION_SET_VERSION = "actions-v2-loop-phrase"
# A phrase is four bars; a jump back to its start spans at most two phrases of regular bars.
PHRASE_BARS = 4
MAX_PHRASE_BEATS = 2 * PHRASE_BARS * BEATS_PER_BAR


class Transition(IntEnum):
    START = 0
    CONTINUE = 1
    CUT = 2
    CROSSFADE = 3


# Any passage: two bars (an opening and a final bar) up to a long track (a 20-minute live set or DJ mix
# at 270 BPM).  The planner's tables grow with its square: about 0.93 GB at 2x of the longest.
MIN_PASSAGE_BEATS = 2 * BEATS_PER_BAR
MAX_PASSAGE_BEATS = 5400
# The passages people compare side by side: short enough to judge (issue: 16 to 64 beats).
MIN_EXCERPT_BEATS = 16
MAX_EXCERPT_BEATS = 64
DEFAULT_EXCERPT_BEATS = 32
# A retarget makes a passage last between half and twice its length.
MIN_STRETCH = 0.5
MAX_STRETCH = 2.0

# Actions that put no beat in the output; an entry can never carry one of them.
_SILENT_ACTIONS = frozenset({Action.CUT, Action.CROSSFADE, Action.SKIP_TO_BAR, Action.STOP})
_SEAMS = frozenset({Transition.CUT, Transition.CROSSFADE})

N_EDIT_FEATURES = 6
EDIT_FEATURE_NAMES: tuple[str, ...] = ("seam", "jump", "repetition", "drift", "progress", "stretch")
N_MODEL_FEATURES = N_AUDIO_FEATURES + N_EDIT_FEATURES
# The reward model reads each output beat's action id too (its action embedding), so the action set is
# part of its input's version: a model of another action set is refused when activated or loaded.
MODEL_FEATURE_VERSION = FEATURE_VERSION + "+edit-v2+" + ACTION_SET_VERSION

# A long crossfade blurs the seam, so the ear notices it about half as much as a cut.
_CROSSFADE_SEAM_STRENGTH = 0.5
# Jumps are scaled by a 16-beat phrase: a one-bar jump reads 0.24, a phrase 0.76.
_JUMP_SCALE_BEATS = 16.0

# The reward model reads an edit of up to WINDOW_BEATS output beats whole.  A longer edit is
# read in windows: its opening, its ending, and SEAM_CONTEXT_BEATS either side of each seam
# (what a listener judges), merged where they overlap and cut to WINDOW_BEATS.  Their total
# length is at most the edit's, so scoring time and memory grow linearly with it.
WINDOW_BEATS = 128
SEAM_CONTEXT_BEATS = 16


class EditError(ValueError):
    """An edit (or an action on one) is invalid; the message names what and why."""


@dataclass(frozen=True)
class EditEntry:
    """One output beat: which source beat plays, how the output arrives at it, and the action that put it there.

    Attributes
    ----------
    source_beat : int
        Index within the passage, ``0 <= source_beat < n_source_beats``.
    transition : Transition
    action : Action
    """

    source_beat: int
    transition: Transition
    action: Action


@dataclass(frozen=True)
class Edit:
    """A finished edit of one passage; validated on construction.

    Attributes
    ----------
    excerpt_start : int
        Track beat index of the passage's first beat.
    n_source_beats : int
        Passage length in beats, 8..MAX_PASSAGE_BEATS (5400).
    actions : tuple[int, ...]
        The action id taken at each middle step (one step may consume several beats); the
        opening and final bars are not actions.
    entries : tuple[EditEntry, ...]
        One per output beat, in playing order.
    target_beats : int or None
        The output length the edit was made for (== the number of entries).  None only for
        edits stored before the retarget task, which are read but never made any more.
    """

    excerpt_start: int
    n_source_beats: int
    actions: tuple[int, ...]
    entries: tuple[EditEntry, ...]
    target_beats: int | None = None

    def __post_init__(self) -> None:
        _check_structure(self)
        # Frozen, so the structure stays checked: validate_edit need not walk the entries again.
        object.__setattr__(self, "_structure_checked", True)

    @property
    def n_output_beats(self) -> int:
        return len(self.entries)

    @property
    def effective_target_beats(self) -> int:
        """``target_beats``, or the output length for an edit stored without one."""
        return int(self.target_beats) if self.target_beats is not None else self.n_output_beats

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
        """Passage beat index of each output beat, int64 (n_output_beats,)."""
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

    def seam_beats(self) -> np.ndarray:
        """Output beat index of each seam (the beat the output arrives at through it), int64."""
        transitions = self.transitions()
        return np.flatnonzero((transitions == Transition.CUT) | (transitions == Transition.CROSSFADE))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; entries are ``[source_beat, transition, action]`` triples of ints."""
        out: dict[str, Any] = {
            "excerpt_start": int(self.excerpt_start),
            "n_source_beats": int(self.n_source_beats),
            "actions": [int(a) for a in self.actions],
            "entries": [[int(e.source_beat), int(e.transition), int(e.action)] for e in self.entries],
        }
        if self.target_beats is not None:
            out["target_beats"] = int(self.target_beats)
        return out

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
        target = data.get("target_beats")
        target_beats = None if target is None else _json_int(target, "target_beats")
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
        return cls(excerpt_start, n_source_beats, actions, tuple(entries), target_beats)

    def key(self) -> str:
        """sha256 hex digest of the passage and the entries: equal for edits that sound the same."""
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


def _check_passage_length(n_source_beats: int) -> None:
    if not MIN_PASSAGE_BEATS <= n_source_beats <= MAX_PASSAGE_BEATS:
        raise EditError(
            f"passage of {n_source_beats} beats: must be {MIN_PASSAGE_BEATS}..{MAX_PASSAGE_BEATS} beats "
            f"(at least two bars)"
        )


def _check_structure(edit: Edit) -> None:
    """What can be checked without the track: ranges, lengths, the target and transition consistency."""
    n = edit.n_source_beats
    _check_passage_length(n)
    if edit.excerpt_start < 0:
        raise EditError(f"passage start beat {edit.excerpt_start}: must be >= 0")
    if len(edit.actions) > n:
        raise EditError(f"edit has {len(edit.actions)} actions: at most {n} (one step per source beat at most)")
    for i, a in enumerate(edit.actions):
        if not 0 <= int(a) < N_ACTIONS:
            raise EditError(f"action {i} is {a}: action ids are 0..{N_ACTIONS - 1}")
    if not edit.entries:
        raise EditError("edit has no output beats: an edit must play at least one beat")
    if len(edit.entries) > 2 * n:
        raise EditError(f"edit has {len(edit.entries)} output beats: at most {2 * n} (twice the passage)")
    if edit.target_beats is not None:
        if edit.target_beats != len(edit.entries):
            raise EditError(f"edit has {len(edit.entries)} output beats: its target is {edit.target_beats}")
        if edit.entries[0].source_beat != 0 or edit.entries[-1].source_beat != n - 1:
            raise EditError(
                f"edit plays source beats {edit.entries[0].source_beat}..{edit.entries[-1].source_beat} first and last: "
                f"a retarget starts with beat 0 and ends with beat {n - 1}"
            )
    previous = -1
    for i, entry in enumerate(edit.entries):
        if not 0 <= entry.source_beat < n:
            raise EditError(f"output beat {i}: source beat {entry.source_beat} is outside the passage 0..{n - 1}")
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
    """Per passage beat p: the bar start LOOP_BAR replays from, and the next downbeat after p (-1: none).

    ``downbeats`` is the passage's ``bar_positions == 0`` as bytes (the cache key: passages
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


@functools.lru_cache(maxsize=1024)
def _phrase_starts(downbeats: bytes) -> tuple[int, ...]:
    """Per passage beat p: the phrase start LOOP_PHRASE replays from, or -1 where it is not valid.

    The phrase start is the downbeat opening the group of :data:`PHRASE_BARS` bars (counted from
    the passage's first downbeat) that holds the latest downbeat at or before p.  It is kept only
    where it lies in the middle (never in the opening bar, which no action touches), before p's bar
    start (:func:`_bar_tables`; otherwise LOOP_BAR does the same) and no more than
    :data:`MAX_PHRASE_BEATS` - 1 beats before p.
    """
    downbeat = np.frombuffer(downbeats, dtype=bool)
    index = np.arange(downbeat.size)
    bar_starts = np.asarray(_bar_tables(downbeats)[0], dtype=np.int64)
    head_end, _ = passage_frame(np.where(downbeat, 0, 1))
    downbeat_at = np.flatnonzero(downbeat)
    latest = np.cumsum(downbeat) - 1  # index among the downbeats of the latest one at or before p
    start = np.where(latest >= 0, downbeat_at[np.maximum(latest, 0) // PHRASE_BARS * PHRASE_BARS]
                     if downbeat_at.size else -1, -1)
    valid = (start >= head_end) & (start < bar_starts) & (index - start < MAX_PHRASE_BEATS)
    return tuple(np.where(valid, start, -1).tolist())


def passage_frame(bar_positions: np.ndarray) -> tuple[int, int]:
    """Where the opening bar ends and the final bar starts, in passage beats.

    Parameters
    ----------
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar position of each beat, 0 = downbeat.

    Returns
    -------
    head_end : int
        The opening bar is beats ``[0, head_end)``: up to the first downbeat at index >= 4
        (a pickup stays with the bar it leads into), else the first 4 beats.
    tail_start : int
        The final bar is beats ``[tail_start, n)``: from the last downbeat at or before
        ``n - 4`` (and not inside the opening bar), else the last 4 beats; never before ``head_end``.
    """
    bar_positions = np.asarray(bar_positions)
    n = int(bar_positions.size)
    downbeats = np.flatnonzero(bar_positions == 0)
    later = downbeats[downbeats >= BEATS_PER_BAR]
    head_end = int(later[0]) if later.size else BEATS_PER_BAR
    head_end = min(head_end, n)
    # The final bar starts on a downbeat after the opening bar; with none there (sparse downbeats),
    # it is the last 4 beats, so that a passage longer than its two bars keeps a middle to edit.
    earlier = downbeats[(downbeats <= n - BEATS_PER_BAR) & (downbeats >= head_end)]
    tail_start = int(earlier[-1]) if earlier.size else n - BEATS_PER_BAR
    return head_end, max(tail_start, head_end)





@functools.lru_cache(maxsize=256)
def _frame_cache(downbeats: bytes) -> tuple[int, int, tuple[int, ...]]:
    """(head_end, tail_start, reachable) for a bar pattern; see :meth:`EditBuilder._reachable`."""
    bar_positions = np.where(np.frombuffer(downbeats, dtype=bool), 0, 1)
    head_end, tail_start = passage_frame(bar_positions)
    bar_starts, next_downbeats = _bar_tables(downbeats)
    phrase_starts = _phrase_starts(downbeats)
    n = bar_positions.size
    cap = 2 * n
    limit = (1 << (cap + 1)) - 1
    reachable = [0] * (tail_start + 1)
    reachable[tail_start] = 1  # at the final bar: exactly 0 more middle beats
    for p in range(tail_start - 1, head_end - 1, -1):
        bits = reachable[p + 1] | (reachable[p + 1] << 1) | (reachable[p + 1] << 2) | (reachable[p + 1] << 3)
        bits |= 1  # STOP
        start = bar_starts[p]
        if start < p:
            bits |= reachable[p + 1] << (p - start + 2)
        if phrase_starts[p] >= 0:
            bits |= reachable[p + 1] << (p - phrase_starts[p] + 2)
        if p + 2 <= tail_start:
            bits |= reachable[p + 2] << 2  # REORDER
        if p + 1 < tail_start:
            bits |= reachable[_skip_target(p, next_downbeats, tail_start)]
        reachable[p] = bits & limit
    return head_end, tail_start, tuple(reachable)


def _skip_target(p: int, next_downbeats: tuple[int, ...], tail_start: int) -> int:
    following = next_downbeats[p]
    return tail_start if following < 0 or following > tail_start else following


def target_range(bar_positions: np.ndarray) -> tuple[int, int]:
    """The shortest and longest output, in beats, that a retarget of this passage can have.

    Every length in between is reachable except, at most, a few just below the longest (the
    builder refuses those with this range in the message).  The range is also clipped to
    ``MIN_STRETCH..MAX_STRETCH`` of the passage.
    """
    bar_positions = np.asarray(bar_positions)
    n = int(bar_positions.size)
    _check_passage_length(n)
    head_end, tail_start, reachable = _frame_cache((bar_positions == 0).tobytes())
    fixed = head_end + (n - tail_start)
    lowest = max(fixed, int(np.ceil(MIN_STRETCH * n)))
    highest = min(fixed + reachable[head_end].bit_length() - 1, int(np.floor(MAX_STRETCH * n)))
    return lowest, highest


def reachable_target(bar_positions: np.ndarray, target_beats: int) -> int:
    """The reachable retarget length nearest ``target_beats`` (clipped to the passage's range).

    Raises
    ------
    EditError
        If no length at all is reachable (never for a passage of 8 beats or more).
    """
    bar_positions = np.asarray(bar_positions)
    lowest, highest = target_range(bar_positions)
    head_end, tail_start, reachable = _frame_cache((bar_positions == 0).tobytes())
    fixed = head_end + (bar_positions.size - tail_start)
    wanted = int(min(max(target_beats, lowest), highest))
    for distance in range(0, highest - lowest + 1):
        for candidate in (wanted - distance, wanted + distance):
            if lowest <= candidate <= highest and (reachable[head_end] >> (candidate - fixed)) & 1:
                return candidate
    raise EditError(f"no retarget length is reachable for this {bar_positions.size}-beat passage")


class EditBuilder:
    """Applies actions one step at a time; the one home of action semantics and validity masks.

    Construction writes the opening bar; the step that uses up the middle writes the final bar.

    Parameters
    ----------
    n_source_beats : int
        Passage length in beats, 8..MAX_PASSAGE_BEATS (5400).
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar position of each beat, 0 = downbeat .. 3.
    excerpt_start : int
        Track beat index of the passage's first beat (recorded in the Edit).
    target_beats : int
        The exact output length, beats; within :func:`target_range`.

    Raises
    ------
    EditError
        On a bad passage, or a target no edit of this passage can meet (the message gives the range).
    """

    def __init__(self, n_source_beats: int, bar_positions: np.ndarray, excerpt_start: int = 0, *,
                 target_beats: int) -> None:
        _check_passage_length(int(n_source_beats))
        bar_positions = np.asarray(bar_positions)
        if bar_positions.shape != (n_source_beats,):
            raise EditError(
                f"bar positions have shape {bar_positions.shape}: expected ({n_source_beats},), one per passage beat"
            )
        if excerpt_start < 0:
            raise EditError(f"passage start beat {excerpt_start}: must be >= 0")
        self.n_source_beats = n = int(n_source_beats)
        self.excerpt_start = int(excerpt_start)
        self.target_beats = int(target_beats)
        downbeats = (bar_positions == 0).tobytes()
        self._bar_starts, self._next_downbeats = _bar_tables(downbeats)
        self._phrase_starts = _phrase_starts(downbeats)
        self.head_end, self.tail_start, self._reach = _frame_cache(downbeats)
        self._fixed = self.head_end + (n - self.tail_start)
        lowest, highest = target_range(bar_positions)
        need = self.target_beats - self._fixed
        if not (lowest <= self.target_beats <= highest and need >= 0 and (self._reach[self.head_end] >> need) & 1):
            raise EditError(
                f"no retarget of this {n}-beat passage lasts {self.target_beats} beats: "
                f"possible targets are {lowest}..{highest} beats (0.5x to 2x, keeping the opening "
                f"{self.head_end} and final {n - self.tail_start} beats)"
            )
        self._position = 0
        self._actions: list[int] = []
        self._entries: list[EditEntry] = []
        self._pending_long = False
        for beat in range(self.head_end):
            self._append(beat, Action.KEEP)
        self._position = self.head_end
        self._need = need  # middle output beats still to write
        if self._position >= self.tail_start:
            self._write_final_bar()

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
    def middle_beats_left(self) -> int:
        """Source beats of the middle not yet acted on."""
        return max(0, self.tail_start - self._position)

    @property
    def beats_needed(self) -> int:
        """Output beats the rest of the middle must still write to meet the target exactly."""
        return self._need if not self.done else 0

    @property
    def entries(self) -> tuple[EditEntry, ...]:
        return tuple(self._entries)

    @property
    def last_output_beat(self) -> int:
        """Source beat of the last output beat so far (the opening bar is written at construction)."""
        return self._entries[-1].source_beat

    def last_entries(self, k: int) -> list[EditEntry]:
        """The last ``k`` entries (what one step wrote), without copying the whole edit."""
        return self._entries[len(self._entries) - k:] if k > 0 else []

    def _effects(self) -> list[tuple[int, int] | None]:
        """What each action would do at the current position: (output beats added, source beats consumed), or None.

        None means the action is not possible here whatever the length; the length rule is
        applied by :meth:`action_mask`.  This table is the one statement of validity: the mask
        and :meth:`step` both read it, and :meth:`_outputs` plays exactly ``added`` beats.
        """
        p, t = self._position, self.tail_start
        start = self._bar_starts[p]
        phrase = self._phrase_starts[p]
        has_next = p + 1 < t
        return [
            (1, 1),  # KEEP
            (0, 1),  # CUT
            (2, 1),  # LOOP
            (p - start + 2, 1) if start < p else None,  # LOOP_BAR: p, then start..p
            (0, 1),  # CROSSFADE
            (2, 2) if has_next else None,  # REORDER
            (0, _skip_target(p, self._next_downbeats, t) - p) if has_next else None,  # SKIP_TO_BAR
            (3, 1),  # REPEAT_2 (p >= head_end >= 1)
            (0, t - p),  # STOP: on to the final bar
            (p - phrase + 2, 1) if phrase >= 0 else None,  # LOOP_PHRASE: p, then phrase..p
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
        if action is Action.LOOP_PHRASE:
            return [p, *range(self._phrase_starts[p], p + 1)]
        if action is Action.REORDER:
            return [p + 1, p]
        if action is Action.REPEAT_2:
            return [p, p - 1, p]
        return []  # CUT, CROSSFADE, SKIP_TO_BAR, STOP

    def _allowed(self, effect: tuple[int, int] | None) -> bool:
        if effect is None:
            return False
        added, consumed = effect
        left = self._need - added
        return left >= 0 and bool((self._reach[self._position + consumed] >> left) & 1)

    def action_mask(self) -> np.ndarray:
        """Which actions are valid now, bool (N_ACTIONS,); all False once done.

        An action is valid when it is possible here and the edit can still meet its target
        exactly after it (the length rule in the module docstring); some action always is.
        """
        if self.done:
            return np.zeros(N_ACTIONS, dtype=bool)
        return np.array([self._allowed(effect) for effect in self._effects()], dtype=bool)

    def step(self, action: int) -> int:
        """Apply one action at the current position; returns how many output beats it added (final bar included).

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
        effect = self._effects()[act]
        if not self._allowed(effect):
            raise EditError(f"{act.name} is not valid at source beat {self._position}: {self._why_invalid(act, effect)}")
        before = len(self._entries)
        for source in self._outputs(act):
            self._append(source, act)
        if act is Action.CROSSFADE:
            self._pending_long = True
        self._actions.append(int(act))
        self._need -= effect[0]
        self._position += effect[1]
        if self._position >= self.tail_start:
            self._write_final_bar()
        return len(self._entries) - before

    def _write_final_bar(self) -> None:
        for beat in range(self.tail_start, self.n_source_beats):
            self._append(beat, Action.KEEP)
        self._position = self.n_source_beats

    def _why_invalid(self, act: Action, effect: tuple[int, int] | None) -> str:
        if effect is not None:
            return (f"after it the edit could not last exactly {self.target_beats} beats "
                    f"({self._need} more middle beats are needed from {self.middle_beats_left} source beats)")
        return {
            Action.LOOP_BAR: "no earlier beat of this bar to loop back to (it is a downbeat)",
            Action.LOOP_PHRASE: "its phrase starts in this bar (LOOP_BAR replays that), in the opening bar, or too far back",
            Action.REORDER: "the next beat belongs to the final bar, which is played as written",
            Action.SKIP_TO_BAR: "the next beat belongs to the final bar; use STOP to jump there",
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
                "(continue, or STOP to jump to the final bar)"
            )
        return Edit(self.excerpt_start, self.n_source_beats, tuple(self._actions), tuple(self._entries),
                    self.target_beats)


def apply_actions(actions: Iterable[int], *, excerpt_start: int, bar_positions: np.ndarray, target_beats: int) -> Edit:
    """Apply a whole action sequence to a passage.

    Parameters
    ----------
    actions : iterable of int
        Action ids, one per middle step, that use up the middle exactly.
    excerpt_start : int
        Track beat index of the passage's first beat.
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar positions; their length is the passage length.
    target_beats : int
        The exact output length.

    Raises
    ------
    EditError
        On a masked action (naming its step), an unreachable target, or when the actions stop
        early or run past the end.
    """
    bar_positions = np.asarray(bar_positions)
    builder = EditBuilder(len(bar_positions), bar_positions, excerpt_start, target_beats=target_beats)
    for step, action in enumerate(actions):
        if builder.done:
            raise EditError(f"step {step}: action {action} after all {builder.n_source_beats} source beats were used")
        try:
            builder.step(action)
        except EditError as err:
            raise EditError(f"step {step}: {err}") from None
    return builder.build()


def unedited(*, excerpt_start: int, bar_positions: np.ndarray) -> Edit:
    """The passage as it is: every beat once, in order, no seam (the reference the edits are heard against).

    Built by keeping every middle beat, so it renders through the same path as any edit.

    Parameters
    ----------
    excerpt_start : int
        Track beat index of the passage's first beat.
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar positions; their length is the passage length.
    """
    bar_positions = np.asarray(bar_positions)
    head_end, tail_start = passage_frame(bar_positions)
    return apply_actions([Action.KEEP] * (tail_start - head_end), excerpt_start=excerpt_start,
                         bar_positions=bar_positions, target_beats=int(bar_positions.size))


def validate_edit(edit: Edit, *, n_track_beats: int, bar_positions: np.ndarray | None = None) -> None:
    """Check that an edit fits its track (and, given the track's bar positions, that its entries follow from its actions).

    Parameters
    ----------
    edit : Edit
    n_track_beats : int
        Beats in the track the edit refers to.
    bar_positions : np.ndarray [shape=(n_track_beats,)], int, optional
        The track's bar positions; when given, the actions are replayed and must give the same
        entries (edits stored without a target, before the retarget task, are not replayed).

    Raises
    ------
    EditError
    """
    if not edit.__dict__.get("_structure_checked", False):
        _check_structure(edit)
    end = edit.excerpt_start + edit.n_source_beats
    if end > n_track_beats:
        raise EditError(
            f"passage beats {edit.excerpt_start}..{end - 1} run past the track's last beat {n_track_beats - 1}"
        )
    if bar_positions is not None and edit.target_beats is not None:
        bar_positions = np.asarray(bar_positions)
        if bar_positions.shape != (n_track_beats,):
            raise EditError(f"bar positions have shape {bar_positions.shape}: expected ({n_track_beats},)")
        replayed = apply_actions(
            edit.actions, excerpt_start=edit.excerpt_start, bar_positions=bar_positions[edit.excerpt_start : end],
            target_beats=edit.target_beats,
        )
        if replayed.entries != edit.entries:
            raise EditError("edit entries do not follow from its actions on this track's bars")


def edit_features(edit: Edit) -> np.ndarray:
    """The six edit-aware features of each output beat (table in the module docstring).

    Returns
    -------
    np.ndarray [shape=(n_output_beats, 6)], float32
        Columns ``seam, jump, repetition, drift, progress, stretch``.
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
    target = edit.effective_target_beats
    progress = np.arange(n_out) / target
    stretch = np.full(n_out, np.log2(target / edit.n_source_beats))
    return np.stack([seam, jump, repetition, drift, progress, stretch], axis=1).astype(np.float32)


def model_input(track_features: np.ndarray, edit: Edit) -> tuple[np.ndarray, np.ndarray]:
    """The reward model's input for one edit (version :data:`MODEL_FEATURE_VERSION`).

    Parameters
    ----------
    track_features : np.ndarray [shape=(n_track_beats, 121)], float
        The track's per-beat audio features (``TrackAnalysis.features``).
    edit : Edit

    Returns
    -------
    features : np.ndarray [shape=(n_output_beats, 127)], float32
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


def scoring_windows(n_output_beats: int, seam_beats: np.ndarray) -> list[tuple[int, int]]:
    """The windows of output beats the reward model scores for one edit: the one windowing rule.

    Parameters
    ----------
    n_output_beats : int
    seam_beats : np.ndarray [shape=(n_seams,)], int
        Output beat index of each seam (:meth:`Edit.seam_beats`).

    Returns
    -------
    list of (start, stop)
        Half-open output-beat ranges, in order, each at most :data:`WINDOW_BEATS` long, together
        no longer than the edit.  An edit of up to ``WINDOW_BEATS`` beats is one window; a
        longer one is its opening and ending ``2 * SEAM_CONTEXT_BEATS`` beats and
        ``SEAM_CONTEXT_BEATS`` either side of each seam, merged where they overlap.
    """
    n = int(n_output_beats)
    if n <= WINDOW_BEATS:
        return [(0, n)]
    context = SEAM_CONTEXT_BEATS
    spans = [(0, 2 * context), (n - 2 * context, n)]
    spans += [(max(0, int(s) - context), min(n, int(s) + context)) for s in np.asarray(seam_beats).tolist()]
    spans.sort()
    merged: list[list[int]] = []
    for start, stop in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    windows: list[tuple[int, int]] = []
    for start, stop in merged:
        pieces = -(-(stop - start) // WINDOW_BEATS)
        edges = np.linspace(start, stop, pieces + 1).round().astype(int)
        windows.extend((int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]))
    return windows

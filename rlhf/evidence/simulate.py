"""Simulated annotators: answer open comparisons with a pluggable listener, through the annotators' own services.

Researchers use them to test the whole loop before paying people; the tests use them to
prove that the reward model learns a preference it was never told.

The listener
------------
Each edit gets a score, higher is better, from a *listener* (``rlhf.evidence.listeners``): any callable
``score(clip)`` over a :class:`rlhf.evidence.listeners.Clip` built from the edit's stored rendering
(the WAV file the annotation page plays), its beat timeline, the source track's audio and
grid, and the track's ground truth where the corpus came with one.  The default listener
hears harmonic clashes on the waveform and counts metre and four-bar phrases on the true grid;
``--listener PATH.py:NAME`` plugs in another.

Answers (:class:`AnnotatorModel`)
---------------------------------
With probability ``noise`` (default 0.1, as in Christiano et al. 2017) an annotator answers A
or B uniformly at random with a uniformly random confidence.  Otherwise, with margin
``m = score_A - score_B``: below ``tie_margin`` (0.1 score units) it answers "tie" with
confidence 1 (it cannot tell them apart); else it prefers A with probability
``sigmoid(m / temperature)`` (Boltzmann-rational, temperature 0.5), and its confidence is its
own rule, 1 plus the number of ``confidence_margins`` (0.25, 0.5, 1, 2) that ``|m|`` exceeds:
a clearer difference, a surer answer.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import soundfile as sf
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from annotations.assignment import assignment_next
from annotations.judgements import judgement_submit
from annotations.listening import listening_record_in_full, listening_wait_seconds
from annotations.models import Edit, Track
from annotations.roles import ANNOTATOR
from annotations.services import track_load_analysis, track_load_audio, track_load_truth
from rlhf.evidence.listeners import Clip, Listener, clip_build, default_listener, listener_score

SIMULATED_PREFIX = "sim-annotator-"


class SimulationError(ValueError):
    """The simulation cannot run as configured; the message says why."""


@dataclass(frozen=True)
class AnnotatorModel:
    """How a simulated annotator turns listener scores into answers (see the module docstring)."""

    noise: float = 0.1
    temperature: float = 0.5
    tie_margin: float = 0.1
    confidence_margins: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)

    def answer(self, margin: float, rng: random.Random) -> tuple[str, int, bool]:
        """(choice, confidence, answered at random) for a score margin ``score_A - score_B``."""
        if rng.random() < self.noise:
            return ("a" if rng.random() < 0.5 else "b"), rng.randint(1, 5), True
        if abs(margin) < self.tie_margin:
            return "tie", 1, False
        p_a = 1.0 / (1.0 + np.exp(-margin / self.temperature))
        choice = "a" if rng.random() < p_a else "b"
        confidence = 1 + sum(abs(margin) > m for m in self.confidence_margins)
        return choice, int(confidence), False

    def win_probability(self, margin: np.ndarray | float) -> np.ndarray:
        """Expected share of answers preferring A for margins ``score_A - score_B`` (a tie counts one half)."""
        m = np.asarray(margin, dtype=np.float64)
        p_rule = np.where(np.abs(m) < self.tie_margin, 0.5, 1.0 / (1.0 + np.exp(-m / self.temperature)))
        return self.noise * 0.5 + (1.0 - self.noise) * p_rule


@dataclass
class _TrackCache:
    """Per-track audio, grid and truth, loaded once per simulation."""

    entries: dict[int, tuple] = field(default_factory=dict)

    def get(self, track: Track) -> tuple:
        if track.pk not in self.entries:
            analysis = track_load_analysis(track)
            self.entries[track.pk] = (track_load_audio(track), analysis.beat_samples, analysis.bar_positions,
                                      track_load_truth(track))
        return self.entries[track.pk]


def edit_clip(edit: Edit, *, tracks: _TrackCache | None = None) -> Clip:
    """The :class:`rlhf.evidence.listeners.Clip` of a stored edit: its rendered audio as annotators hear it."""
    with edit.audio.open("rb") as fh:
        audio, sr = sf.read(fh, dtype="float32", always_2d=False)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    y, beat_samples, bar_positions, truth = (tracks or _TrackCache()).get(edit.track)
    render = edit.render
    return clip_build(audio=audio, sample_rate=sr, output_beat_seconds=np.asarray(render["beat_starts_seconds"]),
                      source_beats=np.asarray(render["track_beats"]), seam_seconds=render["seam_seconds"],
                      track_audio=y, beat_samples=beat_samples, bar_positions=bar_positions, truth=truth,
                      excerpt_start=edit.excerpt_start_beat, n_source_beats=edit.n_source_beats,
                      target_beats=edit.target_beats)


def edit_listener_score(edit: Edit, listener: Listener, *, cache: dict[int, float] | None = None,
                        tracks: _TrackCache | None = None) -> float:
    """The listener's score of a stored ``edit``."""
    if cache is not None and edit.pk in cache:
        return cache[edit.pk]
    value = listener_score(listener, edit_clip(edit, tracks=tracks))
    if cache is not None:
        cache[edit.pk] = value
    return value


@dataclass(frozen=True)
class SimulationReport:
    n_judgements: int
    n_annotators: int
    n_random: int


def simulated_annotators(n: int) -> list:
    """``n`` simulated annotator accounts (created on first use, in the annotator group, unusable password)."""
    if n < 1:
        raise SimulationError(f"{n} simulated annotators asked for, at least 1 needed")
    User = get_user_model()
    group, _ = Group.objects.get_or_create(name=ANNOTATOR)
    users = []
    for i in range(n):
        user, created = User.objects.get_or_create(username=f"{SIMULATED_PREFIX}{i + 1}")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        user.groups.add(group)
        users.append(user)
    return users


def annotators_simulate(
    *,
    n_annotators: int = 3,
    max_judgements: int | None = None,
    listener: Listener = default_listener,
    model: AnnotatorModel = AnnotatorModel(),
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Let simulated annotators judge open comparisons until none is left (or ``max_judgements``).

    ``listener`` scores each edit (``rlhf.evidence.listeners``).  Each annotator takes work from
    ``annotations.assignment.assignment_next`` and answers with
    ``annotations.judgements.judgement_submit``, exactly as the API does, so assignment rules,
    quotas, gold items and repeats apply.
    """
    if not 0.0 <= model.noise <= 1.0:
        raise SimulationError(f"noise rate {model.noise} is outside [0, 1]")
    users = simulated_annotators(n_annotators)
    rng = random.Random(seed)
    cache: dict[int, float] = {}
    tracks = _TrackCache()
    done = n_random = 0
    active = list(users)
    answers: dict[int, tuple[str, int, bool]] = {}
    while active and (max_judgements is None or done < max_judgements):
        waits: list[float] = []
        for user in list(active):
            if max_judgements is not None and done >= max_judgements:
                break
            assignment = assignment_next(annotator=user, rng=rng)
            if assignment is None:
                active.remove(user)
                continue
            comparison = assignment.comparison
            if assignment.pk not in answers:
                # Answered when given (so `rng` is drawn in the same order as without waiting), its audio
                # recorded as served; submitted once the minimum listen has passed, the browser's rule.
                margin = (edit_listener_score(comparison.edit_a, listener, cache=cache, tracks=tracks)
                          - edit_listener_score(comparison.edit_b, listener, cache=cache, tracks=tracks))
                answers[assignment.pk] = model.answer(margin, rng)
                listening_record_in_full(annotator=user, assignment=assignment)
            wait = listening_wait_seconds(assignment=assignment)
            if wait > 0:  # all annotators wait at once: a round costs one minimum listen
                waits.append(wait)
                continue
            choice, confidence, was_random = answers.pop(assignment.pk)
            n_random += was_random
            left = comparison.edit_a if assignment.left_is_a else comparison.edit_b
            # A simulated listener hears both edits in full (at least the minimum the service demands).
            minimum = float(settings.ANNOTATION_MIN_LISTEN_SECONDS)
            seconds_a = max(comparison.edit_a.duration_seconds, minimum)
            seconds_b = max(comparison.edit_b.duration_seconds, minimum)
            judgement_submit(
                annotator=user, comparison_id=comparison.pk, choice=choice, confidence=confidence,
                left_edit_id=left.pk, seconds_a=seconds_a, seconds_b=seconds_b, switches=2,
                decision_seconds=seconds_a + seconds_b + 3.0,
            )
            done += 1
            if progress is not None:
                progress(done)
        if waits:
            time.sleep(min(waits))
    return SimulationReport(n_judgements=done, n_annotators=n_annotators, n_random=n_random)

"""Simulated annotators: answer open comparisons by a hidden rule, through the annotators' own services.

Researchers use them to test the whole loop before paying people; the tests
use them to prove that the reward model learns a preference it was never told.

The hidden preference rule (``PreferenceRule``) listens to the rendered audio
------------------------------------------------------------------------------
Each edit gets a score, higher is better, from its stored rendering (the WAV
file the annotation page plays) and its beat grid:

* every seam costs ``seam_cost`` (0.5): a listener notices each splice;
* a loudness jump at a seam costs ``jump_cost`` (1.0) per 6 dB: the level is
  the RMS in dBFS of the ``window_ms`` (80 ms) of rendered audio just before
  and just after the seam (the crossfade itself is in neither window);
* a seam whose incoming beat is not a downbeat (bar position 0 on the track's
  beat grid) costs ``off_bar_cost`` (1.0): a cut off the bar line stumbles;
* every output beat that replays a track beat already heard costs
  ``repeat_cost`` (0.15): loops get tiresome;
* every beat of difference between the edit's length and the length it was
  asked for (``Edit.target_beats``) costs ``length_cost`` (0.1): a listener
  who asked for a 24-beat edit hears a 2-beat one as broken, however clean.
  Without this term the cheapest edit is the shortest one (no seams at all),
  and a policy trained against the rule learns to stop after a beat or two.

Penalties add up over the edit (more glitches, worse edit), unlike the dense
rewards, which average over seams; so the rule is related to the dense
rewards but not the same, and a learned model can beat them.

Answers
-------
With probability ``noise`` (default 0.1, as in Christiano et al. 2017) an
annotator answers A or B uniformly at random with a uniformly random
confidence.  Otherwise, with margin ``m = score_A - score_B``, it prefers A with
probability ``sigmoid(m / temperature)`` (Boltzmann-rational, temperature
0.5) and reports the confidence whose target in ``reward_model`` (0.6 ... 0.98)
is closest to ``sigmoid(|m| / temperature)``: confidence follows the margin.
An exact tie of scores is answered "tie".
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import soundfile as sf
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from annotations.assignment import assignment_next
from annotations.judgements import judgement_submit
from annotations.models import Edit
from annotations.roles import ANNOTATOR
from annotations.services import track_load_analysis
from rlhf.reward_model import CONFIDENCE_LEVELS, confidence_target

SIMULATED_PREFIX = "sim-annotator-"


class SimulationError(ValueError):
    """The simulation cannot run as configured; the message says why."""


@dataclass(frozen=True)
class PreferenceRule:
    """The hidden rule (see the module docstring); costs are in score units."""

    seam_cost: float = 0.5
    jump_cost_per_6db: float = 1.0
    off_bar_cost: float = 1.0
    repeat_cost: float = 0.15
    length_cost: float = 0.1
    window_ms: float = 80.0

    def score(self, audio: np.ndarray, sample_rate: int, *, seam_seconds: list[float],
              track_beats: np.ndarray, seam_output_beats: list[int], bar_positions: np.ndarray,
              target_beats: int | None = None) -> float:
        """Score one rendered edit.

        Parameters
        ----------
        audio : np.ndarray [shape=(n,)], float  rendered mono audio
        sample_rate : int, Hz
        seam_seconds : output time of every seam, s
        track_beats : np.ndarray [shape=(n_output_beats,)], int  track beat of each output beat
        seam_output_beats : output beat index starting each seam (same order as ``seam_seconds``)
        bar_positions : np.ndarray [shape=(n_track_beats,)], int  the track's bar positions
        target_beats : the length the edit was asked for, in output beats (None: no length term)
        """
        window = max(1, int(self.window_ms / 1000 * sample_rate))
        score = 0.0
        for t, k in zip(seam_seconds, seam_output_beats):
            centre = int(round(t * sample_rate))
            before = audio[max(0, centre - window) : centre]
            after = audio[centre : centre + window]
            jump_db = abs(_rms_db(after) - _rms_db(before)) if before.size and after.size else 0.0
            score -= self.seam_cost + self.jump_cost_per_6db * jump_db / 6.0
            if bar_positions[track_beats[k]] != 0:
                score -= self.off_bar_cost
        _, first_seen = np.unique(track_beats, return_index=True)
        score -= self.repeat_cost * (track_beats.size - first_seen.size)
        if target_beats:
            score -= self.length_cost * abs(track_beats.size - target_beats)
        return float(score)


def seam_output_beats(beat_starts_seconds: np.ndarray, seam_seconds: list[float]) -> list[int]:
    """The output beat each seam starts: the one whose start is nearest the seam.

    Parameters
    ----------
    beat_starts_seconds : np.ndarray [shape=(n_output_beats + 1,)], output beat boundaries, s
    seam_seconds : output time of every seam, s
    """
    starts = np.asarray(beat_starts_seconds, dtype=np.float64)[:-1]
    return [int(np.argmin(np.abs(starts - t))) for t in seam_seconds]


def _rms_db(x: np.ndarray) -> float:
    # -100 dBFS floor: digital silence would otherwise be -inf.
    return float(20 * np.log10(max(np.sqrt(np.mean(np.square(x, dtype=np.float64))), 1e-5)))


@dataclass(frozen=True)
class AnnotatorModel:
    """How a simulated annotator turns rule scores into answers."""

    noise: float = 0.1
    temperature: float = 0.5

    def answer(self, margin: float, rng: random.Random) -> tuple[str, int, bool]:
        """(choice, confidence, answered at random) for a score margin ``score_A - score_B``."""
        if rng.random() < self.noise:
            return ("a" if rng.random() < 0.5 else "b"), rng.randint(1, 5), True
        if margin == 0.0:
            return "tie", 1, False
        p_a = 1.0 / (1.0 + np.exp(-margin / self.temperature))
        choice = "a" if rng.random() < p_a else "b"
        p_sure = max(p_a, 1.0 - p_a)
        confidence = min(CONFIDENCE_LEVELS, key=lambda c: abs(confidence_target("a", c) - p_sure))
        return choice, confidence, False


def edit_rule_score(edit: Edit, rule: PreferenceRule, *, cache: dict[int, float] | None = None) -> float:
    """The hidden rule's score of ``edit``, from its rendered audio and the track's beat grid."""
    if cache is not None and edit.pk in cache:
        return cache[edit.pk]
    with edit.audio.open("rb") as fh:
        audio, sr = sf.read(fh, dtype="float32", always_2d=False)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    render = edit.render
    seams = [float(t) for t in render["seam_seconds"]]
    seam_beats = seam_output_beats(render["beat_starts_seconds"], seams)
    analysis = track_load_analysis(edit.track)
    value = rule.score(audio, sr, seam_seconds=seams, track_beats=np.asarray(render["track_beats"], dtype=np.int64),
                       seam_output_beats=seam_beats, bar_positions=analysis.bar_positions,
                       target_beats=edit.target_beats)
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
    rule: PreferenceRule = PreferenceRule(),
    model: AnnotatorModel = AnnotatorModel(),
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Let simulated annotators judge open comparisons until none is left (or ``max_judgements``).

    Each annotator takes work from ``annotations.assignment.assignment_next``
    and answers with ``annotations.judgements.judgement_submit``, exactly as
    the API does, so assignment rules, quotas, gold items and repeats apply.
    """
    if not 0.0 <= model.noise <= 1.0:
        raise SimulationError(f"noise rate {model.noise} is outside [0, 1]")
    users = simulated_annotators(n_annotators)
    rng = random.Random(seed)
    cache: dict[int, float] = {}
    done = n_random = 0
    active = list(users)
    while active and (max_judgements is None or done < max_judgements):
        for user in list(active):
            if max_judgements is not None and done >= max_judgements:
                break
            assignment = assignment_next(annotator=user, rng=rng)
            if assignment is None:
                active.remove(user)
                continue
            comparison = assignment.comparison
            margin = (edit_rule_score(comparison.edit_a, rule, cache=cache)
                      - edit_rule_score(comparison.edit_b, rule, cache=cache))
            choice, confidence, was_random = model.answer(margin, rng)
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
    return SimulationReport(n_judgements=done, n_annotators=n_annotators, n_random=n_random)

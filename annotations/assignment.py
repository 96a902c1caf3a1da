"""Which comparison an annotator gets next.

Rules
-----
- An annotator with an open (unexpired, neither completed nor skipped)
  assignment gets that one back, so reloading the page never burns a slot.
- Nobody sees a comparison twice: any earlier assignment (judged, skipped or
  expired) excludes it.
- Each comparison takes ``required_judgements`` judgements from different
  annotators.  A slot is held by a judgement or by an open assignment; the
  quota check runs with the comparison row locked (``select_for_update``), so
  two annotators asking at once never push it past the quota.  The queue
  reads ``Comparison.n_judgements`` (kept by ``judgement_submit``) to skip
  full comparisons without counting; the check under the lock counts exactly.
- Higher ``priority`` first (the training side sets it), then older first;
  a comparison locked by another request at that instant is passed over
  rather than waited for.
- Tracks are mixed: a comparison of the track the annotator was last given
  waits behind those of other tracks (the same order otherwise), so judging
  one track's pairs back to back happens only when no other track has open
  work.  A deferred comparison comes first the next time, so priority order
  slips by at most one place.
- Gold comparisons, sides-swapped repeats and hidden references (both sides
  the same edit) are mixed in at the rates ``settings.ANNOTATION_GOLD_RATE``,
  ``ANNOTATION_REPEAT_RATE`` and ``ANNOTATION_HIDDEN_REFERENCE_RATE``.  When the
  drawn kind has nothing left, regular, gold and hidden-reference work is
  tried, so nobody idles while work remains.
- The side each edit is shown on is drawn per assignment and recorded in
  ``Assignment.left_is_a``; a repeat shows the edits on the sides opposite to
  the ones this annotator saw in the original.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Mapping

import numpy as np

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from editing.audio import BEATS_PER_BAR

from .models import Assignment, Comparison, Judgement
from .playhead import BeatMap, difference_region

Kind = Literal["regular", "gold", "repeat", "reference"]
KINDS: tuple[Kind, ...] = ("regular", "gold", "repeat", "reference")
# A difference region covering this share of both edits is "the whole clip": the page offers no loop.
LOOP_USEFUL_MAX_SHARE = 0.8
# One full listen counts when the audio clock reached the end within this much (its tick granularity).
FULL_LISTEN_SLACK_SECONDS = 0.1
# Candidates fetched per attempt; more than one so that losing a race for the
# top comparison falls through to the next one instead of another query.
_CANDIDATES_PER_TRY = 8


def _holds_slot(now: datetime) -> Q:
    """An assignment that holds a judgement slot at ``now``: neither completed, nor skipped, nor expired."""
    return Q(completed_at__isnull=True, skipped_reason="", expires_at__gt=now)


def open_assignments(now: datetime | None = None) -> QuerySet[Assignment]:
    """Assignments that currently hold a judgement slot."""
    return Assignment.objects.filter(_holds_slot(now or timezone.now()))


def _full_by_open_assignments(now: datetime) -> QuerySet[Comparison]:
    """Ids of comparisons whose stored judgements plus open assignments already fill the quota.

    Open assignments are few (about one per active annotator) and sit in a
    partial index, so this is a small set that the queue query hashes once.
    """
    return (
        Comparison.objects.filter(assignments__completed_at__isnull=True, assignments__skipped_reason="",
                                  assignments__expires_at__gt=now)
        .annotate(n_open=Count("assignments"))
        .filter(n_open__gte=F("required_judgements") - F("n_judgements"))
        .order_by().values("pk")
    )


def available_comparisons(*, annotator, kind: Kind | None = None, now: datetime | None = None) -> QuerySet[Comparison]:
    """Comparisons ``annotator`` could be given now, best first (no locking: a hint, not a promise).

    ``kind`` None means regular and gold (hidden references included) together (what the queue shows);
    repeats are made on demand and never counted as waiting work.

    Only comparisons whose ``n_judgements`` is short of the quota are read (the
    ``comparison_open_queue`` partial index, in queue order); the annotator's
    own history and the comparisons filled by open assignments are small sets
    excluded by hashed lookups, so asking for the first few costs the same at
    3,000 comparisons as at 30.
    """
    now = now or timezone.now()
    seen = Assignment.objects.filter(annotator=annotator).values("comparison_id")
    judged = Judgement.objects.filter(annotator=annotator).values("comparison_id")
    qs = (
        Comparison.objects.filter(n_judgements__lt=F("required_judgements"))
        .exclude(pk__in=seen).exclude(pk__in=judged).exclude(pk__in=_full_by_open_assignments(now))
    )
    if kind is None:
        qs = qs.filter(repeat_of__isnull=True)
    elif kind == "regular":
        qs = qs.filter(is_gold=False, repeat_of__isnull=True)
    elif kind == "gold":
        qs = qs.filter(is_gold=True, is_hidden_reference=False, repeat_of__isnull=True)
    elif kind == "reference":
        qs = qs.filter(is_hidden_reference=True, repeat_of__isnull=True)
    else:
        qs = qs.filter(repeat_of__judgements__annotator=annotator)
    return qs.order_by("-priority", "created_at", "pk")


def _repeat_source(annotator) -> Comparison | None:
    """A regular comparison this annotator judged that has no repeat yet (oldest judgement first)."""
    return (
        Comparison.objects.filter(judgements__annotator=annotator, is_gold=False, repeat_of__isnull=True)
        .annotate(n_repeats=Count("repeats"))
        .filter(n_repeats=0)
        .order_by("judgements__created_at", "pk")
        .first()
    )


def _repeat_create(original: Comparison) -> Comparison:
    """The sides-swapped twin of ``original`` (edit A and B exchanged), judged by those who judged it."""
    from .services import comparison_create

    return comparison_create(
        edit_a=original.edit_b, edit_b=original.edit_a, proposed_by=f"repeat of {original.pk}",
        priority=original.priority, predicted_preference=(
            None if original.predicted_preference is None else 1.0 - original.predicted_preference
        ),
        reward_model_version=original.reward_model_version,
        required_judgements=original.required_judgements, repeat_of=original,
    )


def _left_is_a(comparison: Comparison, annotator, rng: random.Random) -> bool:
    if comparison.repeat_of_id is not None:
        first = Judgement.objects.filter(annotator=annotator, comparison_id=comparison.repeat_of_id).first()
        if first is not None:
            # Show on the left the edit this annotator heard on the right the first time.
            return comparison.edit_a_id != first.left_edit_id
    return rng.random() < 0.5


def _claim(comparison_id: int, *, annotator, rng: random.Random, now: datetime, shown: bool) -> Assignment | None:
    """Lock one comparison and take a slot if it still has one; None when it is full, seen or locked.

    Everything the decision reads is read AFTER the row lock, in statements
    of their own.  Under READ COMMITTED a statement sees the snapshot taken
    when it started, and its row lock comes at its end: another claim can
    commit in between, and counts (or a "seen" check) read by the locking
    statement itself would miss it and give the last slot twice, or break the
    one-assignment-per-annotator constraint when one person's two tabs ask at
    once (``tests/annotations/test_assignment.py`` holds a statement in that
    window; the saturated bench once stored 4 judgements for 3 slots that way).
    ``n_judgements`` is only the queue's hint; it is corrected here when a
    judgement arrived by another road (a script, a fixture) and left it behind.
    """
    with transaction.atomic():
        # skip_locked: while another request holds this comparison, try the next candidate
        # instead of queueing behind it (all annotators tend to want the same top one).
        # of=("self",): the edits are read for the page, not locked.
        comparison = (
            Comparison.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("edit_a", "edit_b").filter(pk=comparison_id).first()
        )
        if comparison is None:
            return None
        slots = Assignment.objects.filter(comparison=comparison).aggregate(
            seen=Count("pk", filter=Q(annotator=annotator)),
            held=Count("pk", filter=_holds_slot(now)),
        )
        if slots["seen"]:
            return None
        judged = Judgement.objects.filter(comparison=comparison).count()
        if judged != comparison.n_judgements:
            Comparison.objects.filter(pk=comparison.pk).update(n_judgements=judged)
        if judged + slots["held"] >= comparison.required_judgements:
            return None
        minutes = float(settings.ANNOTATION_ASSIGNMENT_MINUTES)
        return Assignment.objects.create(
            annotator=annotator, comparison=comparison, left_is_a=_left_is_a(comparison, annotator, rng),
            expires_at=now + timedelta(minutes=minutes), shown_at=now if shown else None,
        )


def _draw_kind(rng: random.Random) -> Kind:
    gold = float(settings.ANNOTATION_GOLD_RATE)
    repeat = float(settings.ANNOTATION_REPEAT_RATE)
    reference = float(settings.ANNOTATION_HIDDEN_REFERENCE_RATE)
    if not (0.0 <= gold and 0.0 <= repeat and 0.0 <= reference and gold + repeat + reference <= 1.0):
        raise ValueError(
            f"ANNOTATION_GOLD_RATE={gold}, ANNOTATION_REPEAT_RATE={repeat} and ANNOTATION_HIDDEN_REFERENCE_RATE="
            f"{reference} must be >= 0 and sum to <= 1"
        )
    r = rng.random()
    if r < gold:
        return "gold"
    if r < gold + repeat:
        return "repeat"
    if r < gold + repeat + reference:
        return "reference"
    return "regular"


def _repeat_ensure(original: Comparison) -> None:
    """Make ``original``'s repeat unless it has one (made meanwhile by another of its judges).

    Two of its judges asking at once both find it without a repeat; the
    original's row lock orders them, and the second sees the first's twin.
    """
    with transaction.atomic():
        Comparison.objects.select_for_update().filter(pk=original.pk).first()
        if not Comparison.objects.filter(repeat_of=original).exists():
            _repeat_create(original)


def _last_track_id(annotator) -> int | None:
    """The track of the comparison last given to ``annotator`` (being judged, judged, skipped or expired)."""
    return (
        Assignment.objects.filter(annotator=annotator).order_by("-created_at", "-pk")
        .values_list("comparison__track_id", flat=True).first()
    )


def _candidate_ids(kind: Kind, *, annotator, now: datetime, avoid_track_id: int | None) -> list[int]:
    """The first few comparisons of the queue, those of ``avoid_track_id`` after the first few of the others.

    Two index-ordered reads instead of one sorted by "same track": the queue's
    partial index keeps serving the order, and the cost stays two reads
    however long the queue and whichever tracks fill it.
    """
    queue = available_comparisons(annotator=annotator, kind=kind, now=now).values_list("pk", flat=True)
    if avoid_track_id is None:
        return list(queue[:_CANDIDATES_PER_TRY])
    return (list(queue.exclude(track_id=avoid_track_id)[:_CANDIDATES_PER_TRY])
            + list(queue.filter(track_id=avoid_track_id)[:_CANDIDATES_PER_TRY]))


def _try_kind(kind: Kind, *, annotator, rng: random.Random, now: datetime,
              avoid_track_id: int | None, shown: bool) -> Assignment | None:
    if kind == "repeat" and not available_comparisons(annotator=annotator, kind="repeat", now=now).exists():
        original = _repeat_source(annotator)
        if original is None:
            return None
        _repeat_ensure(original)
    while True:
        ids = _candidate_ids(kind, annotator=annotator, now=now, avoid_track_id=avoid_track_id)
        if not ids:
            return None
        for comparison_id in ids:
            assignment = _claim(comparison_id, annotator=annotator, rng=rng, now=now, shown=shown)
            if assignment is not None:
                return assignment
        # Every candidate filled up under us; the next query sees fresher counts.


def assignment_current(*, annotator, now: datetime | None = None) -> Assignment | None:
    """The annotator's open assignment, if any (the oldest when there are several)."""
    return (
        open_assignments(now).filter(annotator=annotator)
        .select_related("comparison", "comparison__edit_a", "comparison__edit_b")
        .order_by("created_at", "pk").first()
    )


def assignment_next(*, annotator, rng: random.Random | None = None) -> Assignment | None:
    """The comparison ``annotator`` should judge next, as an assignment; None when nothing is left.

    Parameters
    ----------
    annotator : a user (role checks are the caller's job)
    rng : source of the gold/repeat draw and of the left side (tests pass a seeded one)
    """
    rng = rng or random.SystemRandom()
    now = timezone.now()
    current = assignment_current(annotator=annotator, now=now)
    if current is None:
        return _assign_new(annotator=annotator, rng=rng, now=now, shown=True)
    if current.shown_at is None:
        _mark_shown(current, now=now)
    return current


def _mark_shown(assignment: Assignment, *, now: datetime) -> None:
    """Start ``assignment``'s listening clock: it is the one shown now (the first time only).

    A pair given ahead was assigned, and its audio maybe fetched, while another
    was judged; its clock starts here, not at the prefetch.  The conditional
    update keeps the first time when two tabs ask at once.
    """
    if Assignment.objects.filter(pk=assignment.pk, shown_at__isnull=True).update(shown_at=now):
        assignment.shown_at = now
    else:
        assignment.refresh_from_db(fields=["shown_at"])


def _assign_new(*, annotator, rng: random.Random, now: datetime, shown: bool) -> Assignment | None:
    first = _draw_kind(rng)
    avoid_track_id = _last_track_id(annotator)
    # Repeats are made on demand, so they are never a fallback: that would
    # turn an empty queue into a stream of repeats.
    for kind in (first,) + tuple(k for k in ("regular", "gold", "reference") if k != first):
        assignment = _try_kind(kind, annotator=annotator, rng=rng, now=now, avoid_track_id=avoid_track_id,
                               shown=shown)
        if assignment is not None:
            return assignment  # its comparison and edits came with the lock: no second read
    return None


def assignment_ahead(*, annotator, current: Assignment, rng: random.Random | None = None) -> Assignment | None:
    """The comparison after ``current``, assigned now so the page can fetch its audio while ``current`` is judged.

    The annotator's second open assignment when there is one (a reload asks
    again), else a newly claimed one: it holds its slot like any assignment,
    and ``assignment_next`` hands it out once ``current`` is judged or skipped.
    Its ``shown_at`` stays empty until then, so prefetching its audio does not
    start its listening clock.  None when nothing else is left.
    """
    rng = rng or random.SystemRandom()
    now = timezone.now()
    waiting = (
        open_assignments(now).filter(annotator=annotator).exclude(pk=current.pk)
        .select_related("comparison", "comparison__edit_a", "comparison__edit_b")
        .order_by("created_at", "pk").first()
    )
    if waiting is not None:
        return waiting
    return _assign_new(annotator=annotator, rng=rng, now=now, shown=False)


def queue_length(*, annotator) -> int:
    """How many comparisons (regular and gold) wait for this annotator after the one being judged.

    Those that could still be given, plus any already assigned ahead (``assignment_ahead``), which
    are no longer available to anyone else but are still work left.
    """
    ahead = max(open_assignments().filter(annotator=annotator).count() - 1, 0)
    return available_comparisons(annotator=annotator).count() + ahead


@dataclass(frozen=True)
class ServedAudio:
    """The file a side is served as: its format (``?format=`` of the audio URL), duration and timeline.

    ``render`` holds the timeline of that very file (``beat_starts_seconds``, ``track_beats``,
    ``seam_seconds``): the native render's for Opus and FLAC copies, the edit's own for the legacy MP3.
    """

    format: str
    duration_seconds: float
    render: Mapping[str, Any]


@dataclass(frozen=True)
class ShownSide:
    """One side of the page: the edit, the choice value that picks it, and its beat map for the playhead."""

    edit_id: int
    choice: str  # "a" or "b": the comparison's edit this side plays
    audio_format: str  # the ?format= of its audio URL: "opus", "flac" or "mp3"
    duration_seconds: float  # of the file served
    min_listen_seconds: float  # min(setting, the whole edit once): see min_listen_seconds()
    beat_starts_seconds: list[float]
    track_beats: list[int]
    seam_seconds: list[float]


@dataclass(frozen=True)
class ShownComparison:
    """What the annotation page shows for an assignment; ``difference`` is (start, end) seconds per side."""

    id: int
    expires_at: datetime
    min_listen_seconds: float
    left: ShownSide
    right: ShownSide
    difference_left: tuple[float, float] | None
    difference_right: tuple[float, float] | None
    loop_useful: bool  # False when the difference region is about the whole of both edits


def min_listen_seconds(duration_seconds: float) -> float:
    """Seconds an edit must be heard before a judgement counts: the setting, or the whole edit once if shorter.

    A 1.7 s edit needs one full listen, not three; the small slack forgives the
    audio clock stopping a tick before the very end.
    """
    setting = float(settings.ANNOTATION_MIN_LISTEN_SECONDS)
    return round(max(0.0, min(setting, float(duration_seconds) - FULL_LISTEN_SLACK_SECONDS)), 3)


def _shown_side(edit, choice: str, served: ServedAudio) -> ShownSide:
    render = served.render
    return ShownSide(
        edit_id=edit.pk, choice=choice, audio_format=served.format, duration_seconds=float(served.duration_seconds),
        # What the server requires (annotations.listening.listening_check): of the edit, not of the file.
        min_listen_seconds=min_listen_seconds(edit.duration_seconds),
        beat_starts_seconds=[float(t) for t in render.get("beat_starts_seconds", [])],
        track_beats=[int(b) for b in render.get("track_beats", [])],
        seam_seconds=[float(t) for t in render.get("seam_seconds", [])],
    )


def shown_comparison(assignment: Assignment, *, served: Mapping[int, ServedAudio]) -> ShownComparison:
    """Selector: the assignment's comparison laid out left/right as this annotator sees it.

    ``served`` maps each edit's id to the file the page will fetch for it
    (``annotations.listening.listening_shown`` makes them): durations and beat maps are that file's.
    """
    comparison = assignment.comparison
    a = _shown_side(comparison.edit_a, "a", served[comparison.edit_a_id])
    b = _shown_side(comparison.edit_b, "b", served[comparison.edit_b_id])
    left, right = (a, b) if assignment.left_is_a else (b, a)
    region = None
    if left.track_beats and right.track_beats:
        # One bar either side of where the edits part: the seam and the music around it.
        region = difference_region(BeatMap(np.asarray(left.beat_starts_seconds), np.asarray(left.track_beats)),
                                   BeatMap(np.asarray(right.beat_starts_seconds), np.asarray(right.track_beats)),
                                   context_beats=BEATS_PER_BAR)
    loop_useful = region is not None and not all(
        (end - start) >= LOOP_USEFUL_MAX_SHARE * side.duration_seconds
        for (start, end), side in ((region.a_seconds, left), (region.b_seconds, right))
    )
    return ShownComparison(
        id=comparison.pk, expires_at=assignment.expires_at,
        min_listen_seconds=float(settings.ANNOTATION_MIN_LISTEN_SECONDS), left=left, right=right,
        difference_left=region.a_seconds if region else None,
        difference_right=region.b_seconds if region else None,
        loop_useful=loop_useful,
    )


__all__ = [
    "KINDS", "assignment_ahead", "assignment_current", "assignment_next", "min_listen_seconds", "available_comparisons", "open_assignments",
    "queue_length", "ServedAudio", "shown_comparison",
]

"""Judgement services (submit, skip) and the progress selector.

The browser page, the API and any script call these same functions; the
errors they raise (``annotations.errors``) become HTTP 4xx in one place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time

from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from .assignment import open_assignments, queue_length
from .errors import (
    AssignmentClosed,
    ComparisonNotFound,
    InvalidJudgement,
    JudgementConflict,
    NotAssigned,
)
from .listening import listening_check
from .models import Assignment, Comparison, Judgement
from .roles import is_researcher

CHOICES = tuple(Judgement.Choice.values)  # ("a", "b", "tie")
MIN_CONFIDENCE, MAX_CONFIDENCE = 1, 5
MAX_SKIP_REASON = 200
# Sane caps on what a client reports, refused above (400): a day of listening, and switches
# far beyond any keyboard, well inside the 32-bit column.  Below them, seconds are further
# bounded by the wall time the server measured.
MAX_REPORTED_SECONDS = 24 * 3600.0
MAX_SWITCHES = 100_000


def _check_fields(*, choice, confidence, seconds_a, seconds_b, switches, decision_seconds) -> None:
    if choice not in CHOICES:
        raise InvalidJudgement(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
    if isinstance(confidence, bool) or not isinstance(confidence, int):
        raise InvalidJudgement(f"confidence {confidence!r} is not a whole number")
    if not MIN_CONFIDENCE <= confidence <= MAX_CONFIDENCE:
        raise InvalidJudgement(f"confidence {confidence} is outside {MIN_CONFIDENCE}..{MAX_CONFIDENCE}")
    for name, value in (("seconds_a", seconds_a), ("seconds_b", seconds_b), ("decision_seconds", decision_seconds)):
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                or not 0 <= value <= MAX_REPORTED_SECONDS):
            raise InvalidJudgement(f"{name} {value!r} must be a number of seconds in 0..{MAX_REPORTED_SECONDS:g}")
    if isinstance(switches, bool) or not isinstance(switches, int) or not 0 <= switches <= MAX_SWITCHES:
        raise InvalidJudgement(f"switches {switches!r} must be a whole number in 0..{MAX_SWITCHES}")


def _same_answer(judgement: Judgement, *, choice: str, confidence: int, left_edit_id: int) -> bool:
    return (judgement.choice, judgement.confidence, judgement.left_edit_id) == (choice, confidence, left_edit_id)


def _repeat_or_conflict(judgement: Judgement, *, choice: str, confidence: int, left_edit_id: int) -> Judgement:
    if _same_answer(judgement, choice=choice, confidence=confidence, left_edit_id=left_edit_id):
        return judgement
    raise JudgementConflict(
        f"comparison {judgement.comparison_id} was already judged by you "
        f"({judgement.choice}, confidence {judgement.confidence}); a judgement cannot be changed"
    )


def judgement_submit(*, annotator, comparison_id: int, choice: str, confidence: int, left_edit_id: int,
                     seconds_a: float, seconds_b: float, switches: int, decision_seconds: float,
                     comment: str = "") -> tuple[Judgement, bool]:
    """Store ``annotator``'s judgement of a comparison assigned to them, in one transaction.

    Parameters
    ----------
    choice : ``"a"``, ``"b"`` or ``"tie"`` -- edit A / edit B of the comparison (not left/right)
    confidence : 1..5
    left_edit_id : the edit shown on the left; must match the assignment
    seconds_a, seconds_b : seconds listened to edit A and edit B, as the client counted them
        (stored at most the wall time since the assignment; the listening rule
        itself reads what the audio view served, see ``annotations.listening``)
    switches : number of A<->B switches (0..``MAX_SWITCHES``)
    decision_seconds : seconds from the comparison appearing to submit (stored at
        most the wall time since the assignment)

    Returns
    -------
    (judgement, created) : ``created`` is False when the same answer was already
        stored (a retried submit), which is then returned unchanged.

    Raises
    ------
    InvalidJudgement : 400
    NotAssigned : 403 -- the comparison was never assigned to this annotator
    ComparisonNotFound : 404
    JudgementConflict, AssignmentClosed : 409
    NotListenedEnough : 409 -- the server has not served both sides for the minimum
        listen, or less than that has passed since the comparison was shown (not since
        it was fetched ahead)

    The judgement also records whether the server served the comparison's
    original passage to this annotator (``original_heard``); it is never required.
    """
    _check_fields(choice=choice, confidence=confidence, seconds_a=seconds_a, seconds_b=seconds_b,
                  switches=switches, decision_seconds=decision_seconds)
    answer = dict(choice=choice, confidence=confidence, left_edit_id=left_edit_id)
    try:
        with transaction.atomic():
            # The comparison lock orders this submit against assignment_next's quota check.
            comparison = (Comparison.objects.select_for_update(of=("self",))
                          .select_related("edit_a", "edit_b").filter(pk=comparison_id).first())
            if comparison is None:
                raise ComparisonNotFound(f"comparison {comparison_id} does not exist")
            existing = Judgement.objects.filter(annotator=annotator, comparison=comparison).first()
            if existing is not None:
                return _repeat_or_conflict(existing, **answer), False
            assignment = Assignment.objects.select_for_update().filter(
                annotator=annotator, comparison=comparison).first()
            if assignment is None:
                raise NotAssigned(f"comparison {comparison_id} is not assigned to you")
            if assignment.skipped_reason:
                raise AssignmentClosed(f"comparison {comparison_id} was skipped ({assignment.skipped_reason})")
            shown_left = comparison.edit_a_id if assignment.left_is_a else comparison.edit_b_id
            if left_edit_id != shown_left:
                raise InvalidJudgement(
                    f"left_edit {left_edit_id} is not the edit shown on the left for comparison "
                    f"{comparison_id} (edit {shown_left})"
                )
            now = timezone.now()
            heard, wall_seconds = listening_check(assignment=assignment, comparison=comparison, now=now)
            if assignment.expires_at <= now:
                # Late but welcome while the comparison still has a free slot.
                taken = (Judgement.objects.filter(comparison=comparison).count()
                         + open_assignments(now).filter(comparison=comparison).count())
                if taken >= comparison.required_judgements:
                    raise AssignmentClosed(
                        f"your assignment of comparison {comparison_id} expired and its slot was taken"
                    )
            judgement = Judgement.objects.create(
                annotator=annotator, comparison=comparison, choice=choice, confidence=confidence,
                left_edit_id=left_edit_id, seconds_a=min(float(seconds_a), wall_seconds),
                seconds_b=min(float(seconds_b), wall_seconds), switches=switches,
                decision_seconds=min(float(decision_seconds), wall_seconds), comment=comment,
                served_seconds_a=heard.seconds_a, served_seconds_b=heard.seconds_b, wall_seconds=wall_seconds,
                original_heard=heard.original,
            )
            assignment.completed_at = now
            assignment.save(update_fields=["completed_at"])
            # Recounted rather than incremented, under the same lock, so the queue's copy heals if it drifted.
            Comparison.objects.filter(pk=comparison.pk).update(n_judgements=Subquery(
                Judgement.objects.filter(comparison=OuterRef("pk")).order_by().values("comparison")
                .annotate(n=Count("pk")).values("n")
            ))
            return judgement, True
    except IntegrityError:
        # The same annotator submitted twice at once and the other request won the unique constraint.
        existing = Judgement.objects.filter(annotator=annotator, comparison_id=comparison_id).first()
        if existing is None:
            raise
        return _repeat_or_conflict(existing, **answer), False


def assignment_skip(*, annotator, comparison_id: int, reason_choice: str = Assignment.SkipReason.OTHER,
                    reason: str = "") -> Assignment:
    """Give back an assignment without judging it, with a reason; its slot goes to someone else.

    Parameters
    ----------
    reason_choice : one of ``Assignment.SkipReason`` (broken audio, identical, cannot decide, other);
        stored as given, so the quality page can count skips per reason
    reason : the annotator's own words; required for "other", optional otherwise

    Skipping again returns the skipped assignment unchanged.

    Raises
    ------
    InvalidJudgement : 400 -- unknown preset, "other" without words, or an over-long reason
    NotAssigned : 403 -- ComparisonNotFound : 404 -- AssignmentClosed : 409 (already judged)
    """
    reason = (reason or "").strip()
    if reason_choice not in Assignment.SkipReason.values:
        raise InvalidJudgement(
            f"skip reason {reason_choice!r} is not one of {', '.join(Assignment.SkipReason.values)}")
    if reason_choice == Assignment.SkipReason.OTHER and not reason:
        raise InvalidJudgement("a skip for another reason needs that reason in words")
    if len(reason) > MAX_SKIP_REASON:
        raise InvalidJudgement(f"skip reason is {len(reason)} characters; at most {MAX_SKIP_REASON}")
    with transaction.atomic():
        if not Comparison.objects.filter(pk=comparison_id).exists():
            raise ComparisonNotFound(f"comparison {comparison_id} does not exist")
        assignment = Assignment.objects.select_for_update().filter(
            annotator=annotator, comparison_id=comparison_id).first()
        if assignment is None:
            raise NotAssigned(f"comparison {comparison_id} is not assigned to you")
        if assignment.completed_at is not None:
            raise AssignmentClosed(f"comparison {comparison_id} is already judged; it cannot be skipped")
        if not assignment.skipped_reason:
            # skipped_reason is what closes an assignment, so it is never left empty.
            assignment.skipped_reason = reason or Assignment.SkipReason(reason_choice).label
            assignment.skip_reason_choice = reason_choice
            assignment.save(update_fields=["skipped_reason", "skip_reason_choice"])
        return assignment


@dataclass(frozen=True)
class Progress:
    """An annotator's counts: judgements today (UTC day of the site's time zone), in total, and work left."""

    done_today: int
    done_total: int
    left_in_queue: int


def progress_get(*, annotator, now: datetime | None = None) -> Progress:
    """Selector: the counts shown on the annotation page."""
    now = timezone.localtime(now or timezone.now())
    start_of_day = timezone.make_aware(datetime.combine(now.date(), time.min), now.tzinfo)
    done = Judgement.objects.filter(annotator=annotator).aggregate(
        today=Count("pk", filter=Q(created_at__gte=start_of_day)), total=Count("pk"))
    return Progress(
        done_today=done["today"],
        done_total=done["total"],
        left_in_queue=queue_length(annotator=annotator),
    )


def judgements_visible(*, user, annotator_id: int | None = None, comparison_id: int | None = None,
                       date=None, since: datetime | None = None, until: datetime | None = None):
    """Selector: judgements ``user`` may read, filtered; researchers and admins see all, others their own."""
    qs = Judgement.objects.select_related("annotator").order_by("-created_at", "-pk")
    if not is_researcher(user):
        qs = qs.filter(annotator=user)
    if annotator_id is not None:
        qs = qs.filter(annotator_id=annotator_id)
    if comparison_id is not None:
        qs = qs.filter(comparison_id=comparison_id)
    if date is not None:
        qs = qs.filter(created_at__date=date)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs

"""Domain errors: the one base class every app's refusals derive from, and the annotation side's own.

A service raises a :class:`DomainError` subclass whose message names the thing
and the reason; ``status_code`` and ``code`` say how the site answers it.  The
site turns them into HTTP answers in ONE place (``feedback_site.errors``): JSON
for the API, the ``refused.html`` page for pages.  This module imports nothing
from Django, so pure modules and every app (``rlhf -> annotations`` is allowed)
can derive from it.
"""
from __future__ import annotations


class DomainError(Exception):
    """Base class: ``status_code`` is the HTTP status, ``code`` a stable machine-readable name.

    Messages are shown to the user as they are, so they must never carry a
    server path (a temporary upload file, the storage root).
    """

    status_code = 400
    code = "invalid"


class AnnotationError(DomainError):
    """A refusal of the annotation side (judgements, assignments, exports)."""


class InvalidJudgement(AnnotationError):
    """A judgement field is out of range or inconsistent with the assignment."""

    code = "invalid_judgement"


class NotListenedEnough(AnnotationError):
    """The server has not served a side for the minimum listen, or not that much time has passed."""

    status_code = 409
    code = "not_listened_enough"


class ComparisonNotFound(AnnotationError):
    status_code = 404
    code = "comparison_not_found"


class NotAssigned(AnnotationError):
    """The comparison exists but was never handed to this annotator."""

    status_code = 403
    code = "not_assigned"


class JudgementConflict(AnnotationError):
    """This annotator already judged the comparison with a different answer."""

    status_code = 409
    code = "judgement_conflict"


class AssignmentClosed(AnnotationError):
    """The assignment was skipped, or expired and its slot went to someone else."""

    status_code = 409
    code = "assignment_closed"

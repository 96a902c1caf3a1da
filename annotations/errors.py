"""Domain errors of the annotation side, and the ONE place that turns them into HTTP responses.

Services raise these; the DRF exception handler below maps each to its status
code, so the browser page, the API and tests see the same message.
"""
from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class AnnotationError(Exception):
    """Base class: ``status_code`` is the HTTP status, ``code`` a stable machine-readable name."""

    status_code = 400
    code = "invalid"


class InvalidJudgement(AnnotationError):
    """A judgement field is out of range or inconsistent with the assignment."""

    code = "invalid_judgement"


class NotListenedEnough(AnnotationError):
    """A side was not heard for the configured minimum before submitting."""

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


def exception_handler(exc, context):
    """DRF exception handler: domain errors become ``{"detail", "code"}`` with their status."""
    if isinstance(exc, AnnotationError):
        return Response({"detail": str(exc), "code": exc.code}, status=exc.status_code)
    return drf_exception_handler(exc, context)

"""The ONE place where failures become HTTP answers, for the API and for pages alike.

* A domain error (``annotations.errors.DomainError`` and every app's subclasses)
  is the service refusing on purpose: the API answers ``{"detail", "code"}``
  with the error's status, a page renders ``refused.html`` with it.
* A database that cannot be reached is not the client's fault and not a bug:
  the API answers 503 JSON with ``Retry-After``, a page answers a plain
  "temporarily unavailable" page (rendered without touching the database).
* Anything else is a bug: DRF's own handler, then Django's 500.

Under ``/api/`` every error is JSON ``{"detail", "code"}`` (a refused text
field adds ``"field"``): DRF's own errors gain their ``code``, and Django's
400/403/404/500 handlers (``handler400`` ... in ``feedback_site.urls``)
answer JSON there too; a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is 413.
"""
from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from annotations.errors import DomainError

logger = logging.getLogger(__name__)

# How long a client should wait before retrying while the database is unreachable.
RETRY_AFTER_SECONDS = 30
DATABASE_UNAVAILABLE = "the database is temporarily unavailable; try again shortly"
# Connection-level failures (server down, connection terminated).  An IntegrityError or a
# ProgrammingError is a bug or a race, never "try again later".
UNREACHABLE_DATABASE_ERRORS = (OperationalError, InterfaceError)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _refusal_body(exc: DomainError) -> dict:
    body = {"detail": str(exc), "code": exc.code}
    field = getattr(exc, "field", None)  # the refused input, where the error knows it
    if field:
        body["field"] = field
    return body


def api_exception_handler(exc, context):
    """DRF's ``EXCEPTION_HANDLER`` for the whole site."""
    if isinstance(exc, DomainError):
        set_rollback()
        return Response(_refusal_body(exc), status=exc.status_code)
    if isinstance(exc, UNREACHABLE_DATABASE_ERRORS):
        logger.warning("database unreachable during an API request: %s", exc)
        return Response({"detail": DATABASE_UNAVAILABLE, "code": "database_unavailable"}, status=503,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    # As DRF's handler does, so that the code below sees DRF's exception and its code.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    # DRF's own errors (404, 405, 403, 429 ...) carry a detail only: give them the site's code too.
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        response.data["code"] = getattr(exc, "default_code", "error")
    return response


def refusal_response(request: HttpRequest, exc: DomainError) -> HttpResponse:
    """A domain error outside DRF: JSON under /api/, else the ``refused.html`` page."""
    if _wants_json(request):
        return JsonResponse(_refusal_body(exc), status=exc.status_code)
    return render(request, "refused.html", {"message": str(exc), "code": exc.code}, status=exc.status_code)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 JSON for API clients, a plain page for browsers; neither touches the database."""
    if _wants_json(request):
        response = JsonResponse({"detail": DATABASE_UNAVAILABLE, "code": "database_unavailable"}, status=503)
    else:
        response = HttpResponse(render_to_string("unavailable.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DomainErrorMiddleware:
    """Turns a domain error or an unreachable database raised by a page view into its answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, DomainError):
            return refusal_response(request, exc)
        if isinstance(exc, UNREACHABLE_DATABASE_ERRORS):
            logger.warning("database unreachable during %s: %s", request.path, exc)
            return database_unavailable_response(request)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: also reached when a middleware (the session, the user) found the database down."""
    import sys

    exc = sys.exc_info()[1]
    if isinstance(exc, UNREACHABLE_DATABASE_ERRORS):
        return database_unavailable_response(request)
    if _wants_json(request):
        return JsonResponse({"detail": "server error", "code": "server_error"}, status=500)
    return HttpResponse(render_to_string("500.html"), status=500)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: a malformed request Django refused (SuspiciousOperation); a body too large is 413."""
    if isinstance(exception, RequestDataTooBig):
        detail, code, status = "the request body is larger than the site accepts", "too_large", 413
    else:
        detail, code, status = "bad request", "bad_request", 400
    if _wants_json(request):
        return JsonResponse({"detail": detail, "code": code}, status=status)
    if status == 413:
        return HttpResponse(detail + "\n", status=413, content_type="text/plain; charset=utf-8")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler403``: a PermissionDenied outside DRF (DRF's views, CSRF checks included, answer their own)."""
    if _wants_json(request):
        return JsonResponse({"detail": str(exception) or "permission denied", "code": "permission_denied"},
                            status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: JSON under /api/ (an unknown URL or a missing row), Django's page elsewhere."""
    if _wants_json(request):
        return JsonResponse({"detail": f"not found: {request.path}", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)

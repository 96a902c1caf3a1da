"""Request limits the site enforces before a view (or the CSRF check) reads the body."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from annotations.errors import DomainError
from annotations.uploads import upload_check_size

from .errors import refusal_response


class UploadSizeLimitMiddleware:
    """Refuses a multipart upload larger than ``settings.MAX_UPLOAD_BYTES`` from its Content-Length alone.

    It runs before any view phase: the CSRF check reads ``request.POST``, which
    would otherwise receive the whole body into temporary files first.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.content_type == "multipart/form-data":
            try:
                n_bytes = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                n_bytes = 0
            try:
                upload_check_size(n_bytes=n_bytes, what="the upload")
            except DomainError as refusal:
                return refusal_response(request, refusal)
        return self.get_response(request)

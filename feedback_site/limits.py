"""Request limits the site enforces before a view (or the CSRF check) reads the body."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from annotations.errors import DomainError
from annotations.uploads import upload_check_size

from .errors import refusal_response
from .text_input import check_text, check_urlencoded


class UriTooLong(DomainError):
    status_code = 414
    code = "uri_too_long"


class UrlLengthLimitMiddleware:
    """Refuses (414) a URL longer than ``settings.MAX_URL_CHARS``, path and query string together.

    gunicorn refuses longer request lines itself (``limit_request_line`` in
    gunicorn.conf.py), with its own plain answer; this limit sits below it, so
    a too-long URL that reaches the site gets the site's answer (JSON under /api/).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        n_chars = len(request.path_info) + len(request.META.get("QUERY_STRING", ""))
        if n_chars > settings.MAX_URL_CHARS:
            return refusal_response(request, UriTooLong(
                f"the URL is {n_chars} characters long, at most {settings.MAX_URL_CHARS} are accepted"))
        return self.get_response(request)


class CraftedTextMiddleware:
    """Refuses (400, naming the field) a query parameter or form field holding a NUL, a lone surrogate or invalid UTF-8.

    The one check of ``feedback_site.text_input``, for every page and API view;
    JSON bodies are checked by the API's JSON parser (``feedback_site.rest``).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_urlencoded(request.META.get("QUERY_STRING", "").encode("latin-1", "replace"),
                             what="query parameter")
            if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
                check_urlencoded(request.body, what="form field")
            elif request.method == "POST" and request.content_type == "multipart/form-data":
                # Django has decoded these already (invalid UTF-8 became replacement characters).
                for name, values in request.POST.lists():
                    check_text(name, "a form field name")
                    for value in values:
                        check_text(value, name)
        except DomainError as refusal:
            return refusal_response(request, refusal)
        return self.get_response(request)


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

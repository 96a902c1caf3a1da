"""Pages of the annotation side: the listening page and permission-checked audio with HTTP Range support.

The page is a shell; everything it shows comes from the REST API
(``annotations.api``) through ``static/js/annotate.js``.
"""
from __future__ import annotations

import mimetypes
import re
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from . import roles
from .assignment import open_assignments
from .models import Assignment, Edit

CHUNK_BYTES = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}

# Keys, in one place for the page's legend and the script (passed as JSON).
KEYS = (
    ("Space", "play / pause"),
    ("S", "switch A \u2194 B at the same musical moment"),
    ("\u2190 / \u2192", "seek 2 s back / forward"),
    ("L", "loop the part where A and B differ"),
    ("A / B / T", "choose A, B or tie"),
    ("1\u20135", "confidence"),
    ("C", "write a comment"),
    ("Enter", "submit"),
    ("K", "skip (asks for a reason)"),
)


@login_required
@ensure_csrf_cookie
def annotate(request: HttpRequest) -> HttpResponse:
    """The listening page (annotators only; the API refuses everyone else too)."""
    if not roles.is_annotator(request.user):
        raise PermissionDenied("only annotators can annotate")
    return render(request, "annotations/annotate.html", {
        "keys": KEYS,
        "min_listen_seconds": settings.ANNOTATION_MIN_LISTEN_SECONDS,
    })


def _may_hear(user, edit_id: int) -> bool:
    """Researchers and admins hear everything; an annotator hears edits of comparisons assigned to them
    (open or completed)."""
    if roles.is_researcher(user):
        return True
    if not roles.is_annotator(user):
        return False
    mine = Assignment.objects.filter(annotator=user).filter(
        Q(comparison__edit_a_id=edit_id) | Q(comparison__edit_b_id=edit_id)
    )
    return (mine.filter(completed_at__isnull=False).exists()
            or open_assignments().filter(pk__in=mine.values("pk")).exists())


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive byte positions of a single ``bytes=`` range; None when unsatisfiable."""
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            return None
        return max(size - n, 0), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or end < start:
        return None
    return start, end


def _stream(fh, start: int, length: int):
    try:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


@require_GET
def audio(request: HttpRequest, edit_id: int) -> HttpResponse:
    """Stream an edit's audio, honouring a single ``Range: bytes=`` request (206 / 416).

    Anyone not allowed to hear the edit gets 404, so ids reveal nothing.
    """
    if not request.user.is_authenticated or not _may_hear(request.user, edit_id):
        raise Http404("no such audio")
    edit = Edit.objects.filter(pk=edit_id).only("audio").first()
    if edit is None or not edit.audio:
        raise Http404("no such audio")
    size = edit.audio.size
    suffix = PurePosixPath(edit.audio.name).suffix.lower()
    content_type = AUDIO_TYPES.get(suffix) or mimetypes.guess_type(edit.audio.name)[0] or "application/octet-stream"
    header = request.headers.get("Range")
    if header is None:
        start, end, code = 0, size - 1, 200
    else:
        span = _parse_range(header, size)
        if span is None:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            response["Accept-Ranges"] = "bytes"
            return response
        (start, end), code = span, 206
    length = end - start + 1
    response = StreamingHttpResponse(_stream(edit.audio.open("rb"), start, length), status=code,
                                     content_type=content_type)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    # Private: permission depends on the user, so shared caches must not keep it.
    response["Cache-Control"] = "private, max-age=3600"
    if code == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response

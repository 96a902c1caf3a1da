"""Pages of the annotation side: the listening page and permission-checked audio with HTTP Range support
(the edits, and the original passage they were cut from).

The page is a shell; everything it shows comes from the REST API
(``annotations.api``) through ``static/js/annotate.js``.
"""
from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from . import roles
from .listening import (
    LEGACY_FORMAT,
    listening_allowed_edit,
    listening_original,
    listening_record,
    listening_record_original,
)
from .models import Assignment, Edit
from .services import LISTENING_FORMATS, edit_listening_audio_ensure, edit_listening_copy_ensure

CHUNK_BYTES = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg",
               ".opus": "audio/ogg; codecs=opus"}

# Keys, in one place for the page's legend (the script's table in static/js/annotate.js matches it).
# Playback (1 / 2, O) and answers (A / B / T) never share a key; confidence is Shift + its number.
KEYS = (
    ("1 / 2", "play A / play B (at the same musical moment)"),
    ("O", "play the original, the unedited passage (optional; at the same musical moment)"),
    ("Space", "pause / resume"),
    ("\u2190 / \u2192", "seek 2 s back / forward"),
    ("L", "loop where A and B first differ"),
    ("A / B / T", "choose A, B or tie"),
    ("Shift+1 \u2026 Shift+5", "confidence, 1 guess \u2026 5 certain"),
    ("C", "write a comment"),
    ("Enter", "submit"),
    ("K", "skip (asks for a reason)"),
    ("Esc", "leave a text box or a focused control, so every key is a shortcut again"),
    ("?", "show these keys"),
)


@login_required
@ensure_csrf_cookie
def annotate(request: HttpRequest) -> HttpResponse:
    """The listening page (annotators only; the API refuses everyone else too)."""
    if not roles.is_annotator(request.user):
        raise PermissionDenied("only annotators can annotate")
    return render(request, "annotations/annotate.html", {
        "keys": KEYS,
        "sides": (("left", "A"), ("right", "B")),
        "skip_reasons": Assignment.SkipReason.choices,
        "min_listen_seconds": settings.ANNOTATION_MIN_LISTEN_SECONDS,
    })


UNSATISFIABLE = "unsatisfiable"


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``(first, last)`` inclusive byte positions of a single ``bytes=`` range.

    RFC 9110 (14.2): a Range header that is not a valid single ``bytes=`` range
    (another unit, several ranges, last before first, garbage) is ignored, so
    the answer is the whole body: None.  A valid range that lies wholly past the
    end (or a zero-length suffix) is :data:`UNSATISFIABLE`: 416.
    """
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            return UNSATISFIABLE
        return max(size - n, 0), size - 1
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return UNSATISFIABLE
    end = size - 1 if last == "" else min(int(last), size - 1)
    return start, end


def _stream(fh, start: int, length: int, on_done: Callable[[int], None]):
    """Yield ``length`` bytes from ``start``; ``on_done(bytes_sent)`` runs once, when done or when the client left.

    On a complete response it runs just before the last chunk is handed over, so a client that has
    the whole file can never submit ahead of the record of it (a judgement right after the last
    byte arrived was refused under load).
    """
    sent = 0
    recorded = False
    try:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            if remaining == 0:
                on_done(sent + len(chunk))
                recorded = True
            yield chunk
            sent += len(chunk)
    finally:
        fh.close()
        if not recorded:
            on_done(sent)




def _serve(request: HttpRequest, stored: File, served: Callable[[int, int, int, datetime], None]) -> HttpResponse:
    """Stream ``stored``, honouring a single ``Range: bytes=`` request (206; 416 past the end).

    ``served(first_byte, n_bytes, file_bytes, started_at)`` runs once the bytes have left (or the client left).
    """
    size = stored.size
    suffix = PurePosixPath(stored.name).suffix.lower()
    content_type = AUDIO_TYPES.get(suffix) or mimetypes.guess_type(stored.name)[0] or "application/octet-stream"
    span = _parse_range(request.headers.get("Range", ""), size)
    if span == UNSATISFIABLE:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        response["Accept-Ranges"] = "bytes"
        return response
    if span is None:
        start, end, code = 0, size - 1, 200
    else:
        (start, end), code = span, 206
    length = end - start + 1
    started_at = timezone.now()
    response = StreamingHttpResponse(
        _stream(stored.open("rb"), start, length, lambda n_bytes: served(start, n_bytes, size, started_at)),
        status=code, content_type=content_type)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    # Not stored by any cache, the browser's included: permission depends on the user, and the server
    # must see every listen (an edit recurs in other comparisons, e.g. a repeat with sides swapped).
    response["Cache-Control"] = "private, no-store"
    if code == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


@require_GET
def audio(request: HttpRequest, edit_id: int) -> HttpResponse:
    """Stream an edit's audio, honouring a single ``Range: bytes=`` request (206; 416 past the end).

    ``?format=opus`` or ``?format=flac`` serves the listening copy encoded from the
    edit's native render (the source's rate -- 48 kHz for Opus -- and channels),
    ``?format=mp3`` the legacy analysis-rate mono copy; each is made on first
    request.  The page asks for ``settings.ANNOTATION_AUDIO_FORMAT``.  Without a
    format, the rendered WAV.  Anyone not allowed to hear the edit gets 404, so
    ids reveal nothing.

    The bytes streamed to an annotator are recorded against their open
    assignment of the edit's comparison: that is what a judgement's listening
    rule counts, whatever the page reports.
    """
    if not request.user.is_authenticated or not listening_allowed_edit(user=request.user, edit_id=edit_id):
        raise Http404("no such audio")
    edit = Edit.objects.filter(pk=edit_id).only("audio", "listening_audio").first()
    if edit is None or not edit.audio:
        raise Http404("no such audio")
    fmt = request.GET.get("format")
    stored, file_seconds = edit.audio, None
    if fmt == LEGACY_FORMAT:
        stored = edit_listening_audio_ensure(edit=edit).listening_audio
    elif fmt in LISTENING_FORMATS:
        copy = edit_listening_copy_ensure(edit=edit, fmt=fmt)
        stored, file_seconds = copy.audio, copy.duration_seconds

    def served(first_byte: int, n_bytes: int, file_bytes: int, started_at: datetime) -> None:
        # What left the server, written after streaming: the judgement rule reads it (annotations.listening).
        listening_record(annotator=request.user, edit_id=edit_id, first_byte=first_byte, n_bytes=n_bytes,
                         file_bytes=file_bytes, file_seconds=file_seconds, started_at=started_at)

    return _serve(request, stored, served)


@require_GET
def original_audio(request: HttpRequest, comparison_id: int) -> HttpResponse:
    """Stream the unedited source passage of a comparison (encoded as the edits' listening copies), with Range support.

    Made on first request (``annotations.listening.listening_original``).  Only those
    who may hear the comparison get it, anyone else 404; the comparison names the
    passage, so no other part of any track can be fetched here.  The bytes
    streamed to an annotator are recorded against their open assignment of
    the comparison, and the judgement stores whether any were
    (``Judgement.original_heard``).
    """
    if not request.user.is_authenticated:
        raise Http404("no such audio")
    original = listening_original(user=request.user, comparison_id=comparison_id)  # 404 unless allowed

    def served(first_byte: int, n_bytes: int, file_bytes: int, started_at: datetime) -> None:
        listening_record_original(annotator=request.user, comparison_id=comparison_id, first_byte=first_byte,
                                  n_bytes=n_bytes, file_bytes=file_bytes, file_seconds=original.duration_seconds,
                                  started_at=started_at)

    return _serve(request, original.audio, served)

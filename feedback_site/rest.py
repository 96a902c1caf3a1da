"""Site-wide REST framework pieces that bound what a client can make the server do.

Named in ``settings.REST_FRAMEWORK``; no app imports this module.

- ``BoundedLimitOffsetPagination``: ``?limit=`` is capped at ``max_limit``
  (a huge limit used to reach the database as an out-of-range slice: a 500).
- ``DepthLimitedJSONParser``: a JSON body nested deeper than ``MAX_JSON_DEPTH``
  is refused with 400 before it is parsed (1,100 levels used to raise
  RecursionError inside the JSON decoder: a 500), and one whose strings or keys
  hold a NUL or a lone surrogate after it is parsed (``feedback_site.text_input``:
  400 naming the field; they used to fail at the database: a 500).
"""
from __future__ import annotations

import io
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser

from .text_input import check_json_text

# Our bodies nest three levels at most (an export's filters); 32 leaves room without inviting abuse.
MAX_JSON_DEPTH = 32

# A JSON string (skipped whole, so brackets inside strings do not count) or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when ``body`` (JSON text, UTF-8) opens more than ``limit`` arrays/objects inside each other."""
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing (400) bodies nested deeper than ``MAX_JSON_DEPTH`` before decoding them,
    and text the studio never stores (a NUL, a lone surrogate) after."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - the body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:  # a decoder that recursed anyway: still the client's malformed body
            raise ParseError("JSON parse error - the body nests too deeply") from None
        check_json_text(data)
        return data


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=`` paging whose limit is capped at ``settings.API_MAX_PAGE_SIZE``."""

    @property
    def max_limit(self) -> int:
        return settings.API_MAX_PAGE_SIZE

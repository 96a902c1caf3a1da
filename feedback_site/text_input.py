"""Text a client sends is checked once, at the edge, before any view or the database sees it.

A NUL character cannot be stored in PostgreSQL, and a lone surrogate (JSON's
``"\\ud800"``, or the bytes ``%ED%A0%80`` in a query string) cannot even be
encoded to UTF-8: either one reaching a query or a row used to be a 500.
They never belong in the studio's text, so every query parameter, form field
and JSON string (names and keys too) carrying one is refused with 400,
naming the field.  ``feedback_site.limits.CraftedTextMiddleware`` checks query
strings and form bodies, ``feedback_site.rest.DepthLimitedJSONParser`` JSON
bodies; ``feedback_site.errors`` answers the refusal.  Django-free.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from annotations.errors import DomainError

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidText(DomainError):
    """A text field holds a character the studio never stores; ``field`` names it."""

    code = "invalid_text"

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be accepted as text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    if _LONE_SURROGATE.search(value):
        return "contains a lone surrogate (not a Unicode character)"
    return None


def check_text(value: str, field: str) -> None:
    """Raise :class:`InvalidText` naming ``field`` when ``value`` holds a NUL or a lone surrogate."""
    problem = text_problem(value)
    if problem is not None:
        raise InvalidText(field, problem)


def check_json_text(value: Any, field: str = "") -> None:
    """Check every string and key of decoded JSON; the field is named by its path (``filters.proposed_by[1]``)."""
    if isinstance(value, str):
        check_text(value, field or "the body")
    elif isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            path = f"{field}.{_printable(key_text)}" if field else _printable(key_text)
            check_text(key_text, path)
            check_json_text(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_text(item, f"{field}[{index}]")


def check_urlencoded(raw: bytes, *, what: str) -> None:
    """Check an ``application/x-www-form-urlencoded`` text (a query string or a form body) before Django decodes it.

    Django decodes invalid UTF-8 into replacement characters without a word, so
    the bytes are checked here, strictly: invalid UTF-8 (a surrogate's bytes
    among it) and NUL are refused, naming the parameter (``what`` says where it was).
    """
    for pair in raw.split(b"&"):
        if not pair:
            continue
        name_raw, _, value_raw = pair.partition(b"=")
        name_bytes = unquote_to_bytes(name_raw.replace(b"+", b" "))
        name = _printable(name_bytes.decode("utf-8", errors="replace"))
        if _strict_text(name_bytes) is None or text_problem(name_bytes.decode("utf-8")):
            raise InvalidText(name, f"this {what} name is not valid text")
        value = _strict_text(unquote_to_bytes(value_raw.replace(b"+", b" ")))
        if value is None:
            raise InvalidText(name, "is not valid UTF-8 text")
        check_text(value, name)


def _strict_text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _printable(text: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", text).replace("\x00", "\\0")

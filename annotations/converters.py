"""The ``<id:...>`` URL converter: a row id within the 64-bit column, so a longer number is a 404, not a 500.

Registered on import; every app's ``urls.py`` imports this module before using ``<id:...>``.
"""
from __future__ import annotations

from django.urls import register_converter

MAX_ID = 2**63 - 1


class IdConverter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValueError(f"{value} is not a row id")  # the URL does not match: 404
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


register_converter(IdConverter, "id")

"""Turning what a client or operator typed into domain values, or a clear 400.

Shared by the admin API and the CLI, so both accept exactly the same input.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flamel_usage.core.errors import BadRequest
from flamel_usage.core.money import parse_credits
from flamel_usage.core.periods import local_midnight, to_micros

#: Largest whole number accepted for limits and ids: fits a signed 64-bit column.
MAX_INT = 2**63 - 1


#: Unicode categories of characters that show nothing, or not what they are: controls,
#: format characters (zero-width spaces and joiners, bidirectional overrides and isolates,
#: the byte order mark, tag characters) and lone surrogates.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def refuse_invisible(text: str, field: str) -> None:
    """A 400 when ``text`` holds a character a reader cannot see, naming it.

    Such characters make identities that look alike and are not: ``ada@x.org`` with a
    U+200B (zero-width space) after ``ada`` prints as ``ada@x.org``, and a U+202E
    (right-to-left override) shows the rest of a name backwards.
    """
    for char in text:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            raise BadRequest(
                f"{field} contains an invisible or control character (U+{ord(char):04X})"
            )


def parse_instant(text: str, field: str) -> datetime:
    """An aware datetime from ISO 8601; an instant without an offset is ambiguous, so refused."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{field} must be an ISO 8601 date-time") from None
    if instant.tzinfo is None:
        raise BadRequest(f"{field} needs a UTC offset, e.g. 2026-11-25T10:00:00+00:00")
    if not 1970 <= instant.year <= 9000:
        raise BadRequest(f"{field} is out of range")
    return instant


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day_or_instant(text: str, field: str, zone: ZoneInfo) -> int:
    """Microseconds: a date ``YYYY-MM-DD`` is that day's first instant in the billing
    zone ``zone`` (what a person means by "from the 1st"); anything else must be an
    instant with an offset. Else ``BadRequest`` with the reason ``invalid_range``."""
    if _DAY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise BadRequest(f"{field} is not a calendar date", reason="invalid_range") from None
        if not 1970 <= day.year <= 9000:
            raise BadRequest(f"{field} is out of range", reason="invalid_range")
        return local_midnight(day, zone)
    try:
        return to_micros(parse_instant(text, field))
    except BadRequest as error:
        raise BadRequest(error.message, reason="invalid_range") from None


def parse_id(text: str, field: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequest(f"{field} must be a positive whole number")
    return int(text)


class JsonObject:
    """The fields of a JSON request body, read once each, with unknown fields refused.

    Refusing unknown fields catches a misspelt ``maxTtpCount`` before it silently
    creates an unlimited plan.
    """

    def __init__(self, data: object, allowed: set[str]) -> None:
        if not isinstance(data, Mapping):
            raise BadRequest("the body must be a JSON object")
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}")
        self._data: Mapping[str, Any] = data

    def has(self, name: str) -> bool:
        return name in self._data

    def value(self, name: str) -> object:
        """The field as sent (None when absent or null), for a domain function to check."""
        return self._data.get(name)

    def string(self, name: str, *, required: bool = True, max_length: int = 1024) -> str | None:
        value = self._data.get(name)
        if value is None:
            if required:
                raise BadRequest(f"{name} is required")
            return None
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
        if "\x00" in value:
            raise BadRequest(f"{name} must not contain NUL characters")
        if len(value) > max_length:
            raise BadRequest(f"{name} is longer than {max_length} characters")
        return value

    def required_string(self, name: str, *, max_length: int = 1024) -> str:
        value = self.string(name, max_length=max_length)
        assert value is not None
        return value

    def positive_int(self, name: str) -> int:
        value = self._data.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_INT:
            raise BadRequest(f"{name} must be a positive whole number")
        return value

    def count_limit(self, name: str) -> int | None:
        """A whole number of operations, or null for no limit; the range is the domain's."""
        value = self._data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{name} must be a whole number >= 0 or null")
        return value

    def credits(self, name: str, *, allow_zero: bool = False) -> int:
        """An amount sent as a JSON number; a string is refused, as the contract says."""
        if name not in self._data:
            raise BadRequest(f"{name} is required")
        value = self._data[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{name} must be a number")
        return parse_credits(value, name, allow_zero=allow_zero)

    def instant(self, name: str) -> int | None:
        """Microseconds since the epoch, or None when absent or null."""
        text = self.string(name, required=False, max_length=64)
        return None if text is None else to_micros(parse_instant(text, name))

"""Turning what a client or operator typed into domain values, or a clear 400.

Shared by the API's body fields (``http/bodies``), the pages and the CLI, so all of them
accept exactly the same input. Beside each rule stands the pattern that states it in the
OpenAPI document, so that a change of one is made with the other in view.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from zoneinfo import ZoneInfo

from flamel_usage.core.errors import Refusal
from flamel_usage.core.periods import local_midnight, to_micros

#: Largest whole number accepted for limits and ids: fits a signed 64-bit column.
MAX_INT = 2**63 - 1
#: Digits of an id in a path: more cannot name a row, and ``int`` of thousands of
#: digits costs time.
MAX_ID_DIGITS = 18


#: Unicode categories of characters that show nothing, or not what they are: controls,
#: format characters (zero-width spaces and joiners, bidirectional overrides and isolates,
#: the byte order mark, tag characters) and lone surrogates.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})

#: Python's whitespace (``str.strip``, ``\\s``) beyond ASCII, spelt out: ECMA-262's ``\\s``,
#: which OpenAPI tools use, is another set (it lacks U+0085, say).
UNICODE_SPACE = "\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
#: One character that ``str.strip`` removes, as a regular expression class.
SPACE = "[\\t-\\r\\x1c-\\x20" + UNICODE_SPACE + "]"
#: The characters of ``_INVISIBLE_CATEGORIES`` in the BMP beyond the C0 controls, for a
#: regular expression class: the C1 controls and the format characters (zero-width,
#: bidirectional controls, byte order mark). Those beyond the BMP (tag characters, say)
#: are refused too, but cannot be written in an ECMA-262 class without the u flag, where
#: each is two UTF-16 units: the document says so in words.
INVISIBLE = (
    "\\x80-\\x9f\\xad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u180e"
    "\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb"
)


def refuse_invisible(text: str, field: str) -> None:
    """A 400 when ``text`` holds a character a reader cannot see, naming it.

    Such characters make identities that look alike and are not: ``ada@x.org`` with a
    U+200B (zero-width space) after ``ada`` prints as ``ada@x.org``, and a U+202E
    (right-to-left override) shows the rest of a name backwards.
    """
    for char in text:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            raise Refusal(
                "bad_request",
                f"{field} contains an invisible or control character (U+{ord(char):04X})",
            )


#: Longest instant taken, in characters: RFC 3339 with nanoseconds is 35.
MAX_INSTANT_LENGTH = 64
_DATE = "(?:19[7-9][0-9]|[2-8][0-9]{3}|9000)-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_TIME = "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
#: What ``to_instant`` takes, as the document states it: RFC 3339 with an upper-case
#: ``T`` and ``Z``, seconds 00-59 (no leap second), an offset, and a year from 1970 to
#: 9000. (``datetime.fromisoformat`` also takes other ISO 8601 forms; clients are told
#: this one.)
INSTANT_PATTERN = f"^{_DATE}{_TIME}{_OFFSET}$"
#: What ``parse_day_or_instant`` takes: a date, or an instant as above.
DAY_OR_INSTANT_PATTERN = f"^(?:{_DATE}|{_DATE}{_TIME}{_OFFSET})$"


def to_instant(text: str) -> datetime:
    """An aware datetime from ISO 8601, or ``ValueError`` saying what is wrong as a
    predicate, for the caller to put after the field's name.

    An instant without an offset is ambiguous, so refused.
    """
    if len(text) > MAX_INSTANT_LENGTH:
        raise ValueError(f"is longer than {MAX_INSTANT_LENGTH} characters")
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time") from None
    if instant.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-11-25T10:00:00+00:00")
    if not 1970 <= instant.year <= 9000:
        raise ValueError("is out of range")
    return instant


def parse_instant(text: str, field: str) -> datetime:
    """``to_instant``, or ``bad_request`` naming ``field``."""
    try:
        return to_instant(text)
    except ValueError as error:
        raise Refusal("bad_request", f"{field} {error}") from None


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day_or_instant(text: str, field: str, zone: ZoneInfo) -> int:
    """Microseconds: a date ``YYYY-MM-DD`` is that day's first instant in the billing
    zone ``zone`` (what a person means by "from the 1st"); anything else must be an
    instant with an offset. Else ``invalid_range``."""
    if _DAY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise Refusal("invalid_range", f"{field} is not a calendar date") from None
        if not 1970 <= day.year <= 9000:
            raise Refusal("invalid_range", f"{field} is out of range")
        return local_midnight(day, zone)
    try:
        return to_micros(parse_instant(text, field))
    except Refusal as error:
        raise Refusal("invalid_range", error.message) from None


def parse_id(text: str, field: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > MAX_ID_DIGITS:
        raise Refusal("bad_request", f"{field} must be a positive whole number")
    return int(text)

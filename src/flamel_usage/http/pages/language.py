"""The reader's language, and numbers and dates written for people in it.

The language is, in order: the one just picked with ``?lang=`` (kept in a cookie for a
year), the one the cookie kept, the browser's ``Accept-Language``, English.
"""

from __future__ import annotations

from datetime import datetime

from flamel_usage.auth import cookies
from flamel_usage.core.money import credits_value
from flamel_usage.http.pages.responses import Header, set_cookie
from flamel_usage.http.pages.strings import LANGUAGES, STRINGS, Language
from flamel_usage.http.routing import Request

LANG_COOKIE = "lang"
_ONE_YEAR = 365 * 24 * 3600
#: Language ranges read from ``Accept-Language``; a longer header is cut, not parsed.
_MAX_RANGES = 32


def accept_language(header: str) -> Language:
    """Korean when the client prefers Korean to English, else English."""
    best: Language = "en"
    best_q = 0.0
    for part in header.split(",")[:_MAX_RANGES]:
        tag, _, params = part.partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        quality = 1.0
        name, eq, value = params.strip().partition("=")
        if eq and name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        if primary in LANGUAGES and quality > best_q:
            best, best_q = ("ko" if primary == "ko" else "en"), quality
    return best


def page_language(request: Request) -> tuple[Language, list[Header]]:
    """The page language and, when ``?lang=`` chose it, the cookie that keeps the choice."""
    chosen = request.query_value("lang")
    for language in LANGUAGES:
        if chosen == language:
            return language, [set_cookie(request, LANG_COOKIE, language, _ONE_YEAR, "Lax")]
    stored = cookies.parse_cookie_header(request.headers.get("cookie", "")).get(LANG_COOKIE)
    for language in LANGUAGES:
        if stored == language:
            return language, []
    return accept_language(request.headers.get("accept-language", "")), []


# --- numbers ------------------------------------------------------------------------------


def credits_text(milli: int) -> str:
    """A credit amount for people: grouped thousands, exact decimals, no trailing zeros."""
    whole, rest = divmod(milli, 1000)
    text = f"{whole:,}"
    if rest:
        text += "." + f"{rest:03d}".rstrip("0")
    return text


def credits_json(milli: int) -> str:
    """The amount exactly as ``GET /api/users/me/usage`` writes it: what ``data-value``
    carries, so a script reads the page's numbers as it reads the API's."""
    return str(credits_value(milli))


def credits_attribute(milli: int) -> str:
    """An amount as an HTML number attribute (``<meter value>``): no grouping."""
    whole, rest = divmod(milli, 1000)
    return f"{whole}.{rest:03d}".rstrip("0").rstrip(".") if rest else str(whole)


def grouped(count: int) -> str:
    """A count for people, thousands grouped."""
    return f"{count:,}"


# --- dates --------------------------------------------------------------------------------


def utc_offset(moment: datetime) -> str:
    """``UTC+09:00``: the offset of the instant's own zone, always written out."""
    raw = moment.strftime("%z")  # +0900
    return f"UTC{raw[:3]}:{raw[3:5]}" if raw else "UTC"


def _month(moment: datetime, language: Language) -> str:
    return STRINGS[language]["months"].split()[moment.month - 1]


def date_text(moment: datetime, language: Language) -> str:
    """The instant's wall time in its own zone, with the offset, for people."""
    month = _month(moment, language)
    clock = f"{moment:%H:%M} ({utc_offset(moment)})"
    if language == "ko":
        return f"{moment.year}년 {month} {moment.day}일 {clock}"
    return f"{month} {moment.day}, {moment.year}, {clock}"


def day_text(moment: datetime, language: Language) -> str:
    """The instant's day, month and day only: ``November 2``, ``11월 2일``."""
    return STRINGS[language]["day"].format(month=_month(moment, language), day=moment.day)

"""The pages as HTML: Jinja2 templates (``http/pages/templates/``) with autoescape on.

Every value a template writes is escaped by the engine, attributes and text alike; a
visible string with placeholders goes through ``fill``, which escapes the string first
and then each value that is not already markup, so nothing the reader or a database sent
can become markup. ``StrictUndefined`` turns a misspelt name in a template into an error
in the tests rather than an empty string on a page.

The environment is built on the first page rendered, once per process, not at import:
the JSON API never pays for it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup, escape

from flamel_usage.auth.credentials import MAX_KEY_NAME, KeyInfo
from flamel_usage.core.periods import from_micros
from flamel_usage.http.pages import chart, language
from flamel_usage.http.pages.assets import asset_url
from flamel_usage.http.pages.forms import CSRF_FIELD
from flamel_usage.http.pages.strings import LANGUAGE_NAMES, LANGUAGES, STRINGS, Language
from flamel_usage.ledger.balances import Usage
from flamel_usage.ledger.history import History
from flamel_usage.ledger.limits import count_state, credit_state


def fill(text: str, **values: object) -> Markup:
    """``text`` escaped, with each ``{name}`` replaced by its value, escaped unless it is
    markup already (a template's macro, such as a ``<time>`` element)."""
    return escape(text).format(**values)


def _between(value: int, low: int, high: int) -> int:
    """``value``, or the nearer bound when it is outside: what a ``<meter>`` shows."""
    return max(low, min(value, high))


def _coordinate(value: float) -> str:
    """An SVG coordinate to the hundredth of a unit: finer is invisible."""
    return f"{value:.2f}"


_FILTERS = {
    "fill": fill,
    "credits": language.credits_text,
    "credits_json": language.credits_json,
    "credits_attribute": language.credits_attribute,
    "grouped": language.grouped,
    "date_text": language.date_text,
    "day_text": language.day_text,
    "utc_offset": language.utc_offset,
    "between": _between,
    "coordinate": _coordinate,
}

_GLOBALS = {
    "asset_url": asset_url,
    "csrf_field": CSRF_FIELD,
    "LANGUAGES": LANGUAGES,
    "LANGUAGE_NAMES": LANGUAGE_NAMES,
    "credit_state": credit_state,
    "count_state": count_state,
    "from_micros": from_micros,
    "MAX_KEY_NAME": MAX_KEY_NAME,
    "POOLS": chart.POOLS,
    "HISTORY_CSV": chart.HISTORY_CSV,
    "CHART_WIDTH": chart.CHART_WIDTH,
    "CHART_HEIGHT": chart.CHART_HEIGHT,
    "PLOT_LEFT": chart.PLOT_LEFT,
    "PLOT_RIGHT": chart.PLOT_RIGHT,
    "DAY_LABEL_Y": chart.DAY_LABEL_Y,
}


@functools.cache
def environment() -> jinja2.Environment:
    """The one environment: templates from the package, compiled on first use and kept
    (they never change while the process runs, so nothing is re-read)."""
    built = jinja2.Environment(
        loader=jinja2.PackageLoader("flamel_usage.http.pages", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    built.filters.update(_FILTERS)
    built.globals.update(_GLOBALS)
    return built


def _render(template: str, language: Language, path: str, **context: Any) -> str:
    """``template`` in ``language``; ``path`` is the page's own, for the language switch."""
    page = environment().get_template(template)
    return page.render(t=STRINGS[language], language=language, path=path, **context)


def render_login(
    language: Language, csrf: str, *, email: str = "", error: str | None = None
) -> str:
    return _render("login.html", language, "/", csrf=csrf, email=email, error=error)


def render_forbidden(language: Language) -> str:
    return _render("problem.html", language, "/", problem="forbidden", link="back_to_login")


def render_unavailable(language: Language) -> str:
    return _render("problem.html", language, "/", problem="unavailable", link="try_again")


def render_history_chart(language: Language, history: History) -> str:
    """The usage page's card of daily spending alone."""
    return _render("history.html", language, "/usage", chart=chart.measure(history))


def render_usage(
    language: Language,
    usage: Usage,
    *,
    history: History,
    email: str,
    logout_csrf: str,
    zone_name: str,
    sign_out: bool = True,
) -> str:
    """The usage page; without the sign-out form when ``sign_out`` is false (sessions
    that are the platform's to end)."""
    return _render(
        "usage.html",
        language,
        "/usage",
        usage=usage,
        chart=chart.measure(history),
        email=email,
        logout_csrf=logout_csrf,
        zone_name=zone_name,
        sign_out=sign_out,
    )


def render_keys(
    language: Language,
    found: Iterable[KeyInfo],
    *,
    now: int,
    zone: ZoneInfo,
    email: str,
    csrf: str,
    new_key: str | None = None,
    error: str | None = None,
    name: str = "",
    expires: str = "",
    sign_out: bool = True,
) -> str:
    """The keys page: the new key once, the error of the last form, the form with what
    was typed kept, and the list; the sign-out form unless ``sign_out`` is false."""
    return _render(
        "keys.html",
        language,
        "/keys",
        keys=list(found),
        now=now,
        zone=zone,
        email=email,
        csrf=csrf,
        new_key=new_key,
        error=error,
        name=name,
        expires=expires,
        sign_out=sign_out,
    )


def render_revoke(language: Language, key: KeyInfo, csrf: str) -> str:
    """The confirmation step before a key is revoked."""
    return _render("revoke.html", language, f"/keys/{key.id}/revoke", key=key, csrf=csrf)

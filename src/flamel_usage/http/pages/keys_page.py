"""The keys page: a signed-in person's API keys, a form to create one (shown once), and
a confirmation step before one is revoked.

Every POST passes the three guards of ``forms.py`` (our origin, a live session, the
session's form token) before anything changes; bad input is answered by the page itself,
with the error said and the form's values kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flamel_usage.accounts.users import email_of
from flamel_usage.auth import credentials as auth
from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import parse_id
from flamel_usage.core.periods import to_micros
from flamel_usage.http import guards, security
from flamel_usage.http.context import Services
from flamel_usage.http.pages import forms, responses
from flamel_usage.http.pages.language import page_language
from flamel_usage.http.pages.render import render_forbidden, render_keys, render_revoke
from flamel_usage.http.pages.responses import Header
from flamel_usage.http.pages.strings import Language
from flamel_usage.http.routing import Request, Response


@dataclass(frozen=True, slots=True)
class _Visit:
    """A signed-in visit to the keys pages: the language, the session and its user."""

    language: Language
    headers: list[Header]
    session_id: str
    user_id: int
    email: str

    def form_token(self, services: Services) -> str:
        return forms.session_form_token(self.session_id, services.session_secret.reveal())


async def _visit(request: Request, services: Services) -> _Visit | None:
    """The visit, or None when no live session signs it in."""
    now = services.clock()
    claim = await guards.session_claim(request, services, now)
    if claim is None:
        return None
    async with services.db.read() as conn:
        user_id = await claim.user_id(conn, now)
        if user_id is None:
            return None
        email = await email_of(conn, user_id)
    language, headers = page_language(request)
    return _Visit(language, headers, claim.session_id, user_id, email)


async def _answer(
    visit: _Visit,
    services: Services,
    status: int = 200,
    *,
    new_key: str | None = None,
    error: str | None = None,
    form: Mapping[str, str] | None = None,
) -> Response:
    """The keys page for ``visit``: the list as it is now, with the new key or the
    error, and the form's values kept."""
    await services.last_used.flush(services.db)
    async with services.db.read() as conn:
        found = await auth.list_keys(conn, visit.user_id)
    kept = form or {}
    html = render_keys(
        visit.language,
        found,
        now=services.clock(),
        zone=services.settings.timezone,
        email=visit.email,
        sign_out=not services.sessions.external,
        csrf=visit.form_token(services),
        new_key=new_key,
        error=error,
        name=kept.get("name", ""),
        expires=kept.get("expires", ""),
    )
    return responses.page(status, html, visit.headers)


async def show(request: Request, services: Services) -> Response:
    visit = await _visit(request, services)
    if visit is None:
        return responses.to_sign_in(services, page_language(request)[1])
    return await _answer(visit, services)


def _end_of_day(text: str, zone: ZoneInfo) -> int | None:
    """The end of the day ``YYYY-MM-DD`` in the billing zone, or None for no day; a 400
    for anything else. The key then works through the whole day the person picked."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise Refusal("bad_request", "expires must be a date, YYYY-MM-DD") from None
    if not 1970 <= day.year <= 9000:
        raise Refusal("bad_request", "expires is out of range")
    return to_micros(datetime.combine(day + timedelta(days=1), time(), zone))


async def _checked_form(
    request: Request, services: Services
) -> tuple[_Visit, dict[str, str]] | Response:
    """The visit and form of a keys page POST, signed in, from this site and carrying the
    session's form token; else the 403 page to answer."""
    visit = await _visit(request, services)
    if visit is not None and security.same_origin(request):
        form = await forms.read_form(request)
        if forms.session_form_ok(visit.session_id, services.session_secret.reveal(), form):
            return visit, form
    return responses.page(403, render_forbidden(page_language(request)[0]))


async def create(request: Request, services: Services) -> Response:
    """Make a key and show it, once, on the answer itself: never in a redirect's URL,
    and the page is ``no-store``, so that neither history nor a cache keeps it."""
    checked = await _checked_form(request, services)
    if isinstance(checked, Response):
        return checked
    visit, form = checked
    name = form.get("name", "")
    try:
        key_name = auth.key_name(name if name.strip() else None)
    except Refusal:
        return await _answer(visit, services, 400, error="error_name", form=form)
    try:
        async with services.db.transaction() as conn:
            issued = await auth.issue_key(
                conn,
                visit.user_id,
                name=key_name,
                expires_at=_end_of_day(form.get("expires", ""), services.settings.timezone),
                now=services.clock(),
                max_live=auth.MAX_LIVE_KEYS,
            )
    except Refusal as refusal:
        if refusal.reason == "too_many_keys":
            return await _answer(visit, services, 409, error="error_too_many", form=form)
        if refusal.reason == "bad_request":  # what is left to refuse is the expiry
            return await _answer(visit, services, 400, error="error_expiry", form=form)
        raise
    return await _answer(visit, services, 200, new_key=issued.key)


async def _own_key(visit: _Visit, services: Services, raw_id: str) -> auth.KeyInfo | None:
    """The visitor's key of that id that can still be revoked, else None."""
    try:
        key_id = parse_id(raw_id, "keyId")
    except Refusal:
        return None
    async with services.db.read() as conn:
        found = await auth.list_keys(conn, visit.user_id)
    return next((key for key in found if key.id == key_id and key.revoked_at is None), None)


async def confirm_revoke(request: Request, services: Services) -> Response:
    visit = await _visit(request, services)
    if visit is None:
        return responses.to_sign_in(services, page_language(request)[1])
    key = await _own_key(visit, services, request.params["keyId"])
    if key is None:  # gone, revoked, or someone else's: the list says what there is
        return responses.redirect("/keys", visit.headers)
    html = render_revoke(visit.language, key, visit.form_token(services))
    return responses.page(200, html, visit.headers)


async def revoke(request: Request, services: Services) -> Response:
    checked = await _checked_form(request, services)
    if isinstance(checked, Response):
        return checked
    visit, _ = checked
    key = await _own_key(visit, services, request.params["keyId"])
    if key is not None:
        async with services.db.transaction() as conn:
            await auth.revoke_key(conn, key.id, services.clock(), owner=visit.user_id)
    return responses.redirect("/keys")

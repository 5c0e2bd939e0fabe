"""The pages' forms: reading what they post, and the tokens that prove a post came from
our own page.

Forms are guarded three ways (the handlers check all three): a POST whose ``Origin`` is
present and not ours is refused (``http/security.py``); the sign-in form carries a
double-submit token, a random value in an HttpOnly, SameSite=Strict ``csrf`` cookie and
the same value in a hidden field; the forms of a signed-in page (sign out, create and
revoke a key) carry an HMAC of the session id under the session secret. Tokens are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qs

from flamel_usage.auth import cookies
from flamel_usage.core.errors import Refusal
from flamel_usage.http.pages.responses import Header, set_cookie
from flamel_usage.http.routing import Request

CSRF_COOKIE = "csrf"
CSRF_FIELD = "csrf"
#: Fields read from a form at most: ours have three; many more is not a form of ours.
MAX_FIELDS = 16
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def _csrf_cookie(request: Request) -> str | None:
    return cookies.parse_cookie_header(request.headers.get("cookie", "")).get(CSRF_COOKIE)


def login_token(request: Request) -> tuple[str, list[Header]]:
    """The sign-in form's token: the ``csrf`` cookie's when well formed (two tabs do not
    invalidate each other), else a new one with the cookie that carries it."""
    current = _csrf_cookie(request)
    if current is not None and _TOKEN.fullmatch(current):
        return current, []
    token = secrets.token_urlsafe(32)
    return token, [set_cookie(request, CSRF_COOKIE, token, None, "Strict")]


def login_token_ok(request: Request, form: Mapping[str, str]) -> bool:
    cookie = _csrf_cookie(request) or ""
    field = form.get(CSRF_FIELD, "")
    if not _TOKEN.fullmatch(cookie):
        return False
    return hmac.compare_digest(cookie.encode("ascii"), field.encode("utf-8", "replace"))


def used_login_token(request: Request) -> Header:
    """The cookie that drops a used sign-in token: the next sign-in gets a new one."""
    return set_cookie(request, CSRF_COOKIE, "", 0, "Strict")


def session_form_token(session_id: str, secret: str) -> str:
    """The token of a signed-in page's forms: HMAC-SHA256 of the session id under the
    session secret. A forger on another site knows neither."""
    message = b"flamel-session-form\x00" + session_id.encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def session_form_ok(session_id: str, secret: str, form: Mapping[str, str]) -> bool:
    expected = session_form_token(session_id, secret)
    return hmac.compare_digest(
        expected.encode(), form.get(CSRF_FIELD, "").encode("utf-8", "replace")
    )


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded body (first value of each); empty when unreadable, which
    then fails the token check like any other form that is not ours."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        raw = (await request.body()).decode("utf-8")
        parsed = parse_qs(raw, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (Refusal, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items()}

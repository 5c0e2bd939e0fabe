"""Server-rendered pages: sign in, see your usage, manage your API keys, sign out; in
English and Korean.

Everything works without JavaScript: plain HTML forms posting
``application/x-www-form-urlencoded``, answered with ``303 See Other``. The one script,
``/static/pages.js``, is served from the package (never inline, so a strict
``Content-Security-Policy`` holds) and only rewrites the reset time from the billing time
zone into the browser's own and makes the copy button of a new API key work.

Forms are guarded three ways: a POST whose ``Origin`` is present and not ours is refused;
the sign-in form carries a double-submit token (a random value in an HttpOnly,
SameSite=Strict ``csrf`` cookie and the same value in a hidden field); the forms of a
signed-in page (sign out, create and revoke a key) carry an HMAC of the session id under
the session secret. Tokens are compared in
constant time. Every value written into HTML goes through ``html.escape``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import html
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from importlib import resources
from typing import Literal
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from flamel_usage.auth import cookies
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.throttle import TooManyRequests
from flamel_usage.core.errors import ApiError, BadRequest, NotFound, ServiceUnavailable
from flamel_usage.core.inputs import parse_id
from flamel_usage.core.money import credits_value
from flamel_usage.core.periods import from_micros, to_micros
from flamel_usage.db.gateway import DatabaseUnavailable
from flamel_usage.http import security
from flamel_usage.http.api import usage as public
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Handler, Request, Response
from flamel_usage.ledger.balances import Usage, read_usage
from flamel_usage.ledger.history import Bucket, History, read_history

Language = Literal["en", "ko"]
LANGUAGES: tuple[Language, ...] = ("en", "ko")
LANG_COOKIE = "lang"
CSRF_COOKIE = "csrf"
CSRF_FIELD = "csrf"
#: Share of a limit used from which a limit is shown as "near the limit".
NEAR_NUMERATOR, NEAR_DENOMINATOR = 4, 5  # 80 %

# --- every visible string, one dict per language ------------------------------------------

EN: dict[str, str] = {
    "brand": "Flamel",
    "language": "Language",
    "login_title": "Sign in · Flamel usage",
    "login_heading": "Sign in",
    "login_intro": "See your Flamel credit, limits and billing period.",
    "email": "Email",
    "password": "Password",
    "login_submit": "Sign in",
    "error_credentials": "The email or the password is wrong. Check both and try again.",
    "error_throttled": "Too many failed sign-ins. Wait a few minutes, then try again.",
    "error_missing": "Enter your email and your password.",
    "usage_title": "Your usage · Flamel",
    "usage_heading": "Your usage",
    "signed_in_as": "Signed in as {email}",
    "logout": "Sign out",
    "period_heading": "Billing period",
    "period_label": "Current period",
    "period_range": "{start} to {end}",
    "reset_label": "Resets on",
    "zone_billing": "Times are in the billing time zone ({zone}).",
    "zone_local": "Times are in your time zone ({zone}).",
    "plan_credit": "Plan credit",
    "purchased_credit": "Purchased credit",
    "ttp": "Text to prompt (TTP)",
    "edits": "Image edits",
    "postpaid": "Postpaid usage",
    "credits_unit": "credits",
    "credit_left": "{value} of {max} credits left this period",
    "count_used": "{value} of {max} used this period",
    "count_used_unlimited": "{value} used this period, no limit",
    "purchased_note": "Spent after plan credit. It carries over from period to period.",
    "postpaid_note": "Credits used beyond your prepaid credit this period, billed afterwards.",
    "state_ok": "Available",
    "state_near": "Near the limit",
    "state_reached": "Limit reached",
    "state_unlimited": "Unlimited",
    "forbidden_title": "Request refused · Flamel usage",
    "forbidden_heading": "This request was refused",
    "forbidden_body": (
        "The form has expired or was sent from another site. "
        "Go back, reload the page and try again."
    ),
    "back_to_login": "Back to sign-in",
    "unavailable_title": "Temporarily unavailable · Flamel usage",
    "unavailable_heading": "Your usage cannot be reached right now",
    "unavailable_body": "The service is briefly unavailable. Wait a few seconds, then try again.",
    "try_again": "Try again",
    "history_heading": "Spending per day",
    "history_title": "Credit spent per day, {start} to {end}",
    "history_desc": (
        "{total} credits spent in all; the most on {day}: {most} credits."
        " Days in the billing time zone ({zone}). The table that follows lists every day."
    ),
    "history_desc_none": (
        "No credit spent yet. Days in the billing time zone ({zone})."
        " The table that follows lists every day."
    ),
    "history_day": "Day",
    "history_total": "Total",
    "history_csv": "Download CSV",
    "day": "{month} {day}",
    "months": "January February March April May June July August September October "
    "November December",
    "account_nav": "Your account",
    "nav_usage": "Usage",
    "nav_keys": "API keys",
    "keys_title": "API keys · Flamel",
    "keys_heading": "API keys",
    "keys_intro": "Programs send a key in the X-Api-Key header to read your usage.",
    "new_key_heading": "Your new key",
    "new_key_warning": "Copy it now and keep it somewhere safe: it will not be shown again.",
    "copy": "Copy",
    "copied": "Copied",
    "create_heading": "Create a key",
    "key_name": "Name",
    "key_name_hint": "Optional: what the key is for, up to 64 characters.",
    "key_expires": "Expires after",
    "key_expires_hint": "Optional: the key stops working at the end of this day ({zone}).",
    "create_submit": "Create key",
    "list_heading": "Your keys",
    "no_keys": "You have no keys yet.",
    "col_name": "Name",
    "col_prefix": "Key",
    "col_created": "Created",
    "col_last_used": "Last used",
    "col_expires": "Expires",
    "col_state": "State",
    "col_action": "Action",
    "never": "Never",
    "no_name": "(no name)",
    "state_active": "Active",
    "state_expired": "Expired",
    "state_revoked": "Revoked",
    "revoke": "Revoke",
    "revoke_title": "Revoke key · Flamel",
    "revoke_heading": "Revoke this key?",
    "revoke_body": "Programs that use {key} will be refused at once. This cannot be undone.",
    "revoke_confirm": "Revoke key",
    "cancel": "Cancel",
    "error_name": "The name must be 1 to 64 characters, with no invisible or control characters.",
    "error_expiry": "The expiry must be a date from today on.",
    "error_too_many": "You have 20 live keys already. Revoke one before creating another.",
}

KO: dict[str, str] = {
    "brand": "Flamel",
    "language": "언어",
    "login_title": "로그인 · Flamel 사용량",
    "login_heading": "로그인",
    "login_intro": "Flamel 크레딧, 사용 한도와 청구 기간을 확인하세요.",
    "email": "이메일",
    "password": "비밀번호",
    "login_submit": "로그인",
    "error_credentials": "이메일 또는 비밀번호가 올바르지 않습니다. 확인한 뒤 다시 시도하세요.",
    "error_throttled": "로그인 실패가 너무 많습니다. 몇 분 뒤에 다시 시도하세요.",
    "error_missing": "이메일과 비밀번호를 입력하세요.",
    "usage_title": "내 사용량 · Flamel",
    "usage_heading": "내 사용량",
    "signed_in_as": "{email} 계정으로 로그인됨",
    "logout": "로그아웃",
    "period_heading": "청구 기간",
    "period_label": "현재 기간",
    "period_range": "{start} ~ {end}",
    "reset_label": "초기화 시각",
    "zone_billing": "시간은 청구 시간대({zone}) 기준입니다.",
    "zone_local": "시간은 사용자의 시간대({zone}) 기준입니다.",
    "plan_credit": "플랜 크레딧",
    "purchased_credit": "구매한 크레딧",
    "ttp": "텍스트 투 프롬프트 (TTP)",
    "edits": "이미지 편집",
    "postpaid": "후불 사용량",
    "credits_unit": "크레딧",
    "credit_left": "이번 기간 {max} 크레딧 중 {value} 크레딧 남음",
    "count_used": "이번 기간 {max}회 중 {value}회 사용",
    "count_used_unlimited": "이번 기간 {value}회 사용, 한도 없음",
    "purchased_note": "플랜 크레딧 다음에 사용되며, 기간이 바뀌어도 남아 있습니다.",
    "postpaid_note": "이번 기간에 선불 크레딧을 넘어 사용한 크레딧으로, 나중에 청구됩니다.",
    "state_ok": "여유 있음",
    "state_near": "한도 임박",
    "state_reached": "한도 도달",
    "state_unlimited": "무제한",
    "forbidden_title": "요청 거부 · Flamel 사용량",
    "forbidden_heading": "요청이 거부되었습니다",
    "forbidden_body": (
        "양식이 만료되었거나 다른 사이트에서 전송되었습니다. "
        "이전 페이지로 돌아가 새로 고친 뒤 다시 시도하세요."
    ),
    "back_to_login": "로그인 페이지로 돌아가기",
    "unavailable_title": "일시적으로 사용할 수 없음 · Flamel 사용량",
    "unavailable_heading": "지금은 사용량을 불러올 수 없습니다",
    "unavailable_body": "서비스를 잠시 사용할 수 없습니다. 몇 초 뒤에 다시 시도하세요.",
    "try_again": "다시 시도",
    "history_heading": "일별 사용량",
    "history_title": "{start} ~ {end} 일별 크레딧 사용량",
    "history_desc": (
        "모두 {total} 크레딧을 사용했고, 가장 많이 사용한 날은 {day}({most} 크레딧)입니다."
        " 날짜는 청구 시간대({zone}) 기준입니다. 이어지는 표에 날마다의 수치가 있습니다."
    ),
    "history_desc_none": (
        "아직 사용한 크레딧이 없습니다. 날짜는 청구 시간대({zone}) 기준입니다."
        " 이어지는 표에 날마다의 수치가 있습니다."
    ),
    "history_day": "날짜",
    "history_total": "합계",
    "history_csv": "CSV 다운로드",
    "day": "{month} {day}일",
    "months": "1월 2월 3월 4월 5월 6월 7월 8월 9월 10월 11월 12월",
    "account_nav": "내 계정",
    "nav_usage": "사용량",
    "nav_keys": "API 키",
    "keys_title": "API 키 · Flamel",
    "keys_heading": "API 키",
    "keys_intro": "프로그램은 X-Api-Key 헤더에 키를 담아 보내 사용량을 조회합니다.",
    "new_key_heading": "새 키",
    "new_key_warning": "지금 복사해 안전한 곳에 보관하세요. 이 키는 다시 표시되지 않습니다.",
    "copy": "복사",
    "copied": "복사됨",
    "create_heading": "키 만들기",
    "key_name": "이름",
    "key_name_hint": "선택 사항: 키의 용도, 최대 64자.",
    "key_expires": "만료일",
    "key_expires_hint": "선택 사항: 이 날이 끝나면({zone}) 키가 더 이상 작동하지 않습니다.",
    "create_submit": "키 만들기",
    "list_heading": "내 키",
    "no_keys": "아직 키가 없습니다.",
    "col_name": "이름",
    "col_prefix": "키",
    "col_created": "만든 날",
    "col_last_used": "마지막 사용",
    "col_expires": "만료",
    "col_state": "상태",
    "col_action": "작업",
    "never": "없음",
    "no_name": "(이름 없음)",
    "state_active": "사용 중",
    "state_expired": "만료됨",
    "state_revoked": "폐기됨",
    "revoke": "폐기",
    "revoke_title": "키 폐기 · Flamel",
    "revoke_heading": "이 키를 폐기할까요?",
    "revoke_body": "{key} 키를 쓰는 프로그램은 즉시 거부됩니다. 되돌릴 수 없습니다.",
    "revoke_confirm": "키 폐기",
    "cancel": "취소",
    "error_name": "이름은 1~64자여야 하며 보이지 않는 문자나 제어 문자를 넣을 수 없습니다.",
    "error_expiry": "만료일은 오늘 이후의 날짜여야 합니다.",
    "error_too_many": "사용 중인 키가 이미 20개입니다. 하나를 폐기한 뒤 새로 만드세요.",
}

STRINGS: dict[Language, dict[str, str]] = {"en": EN, "ko": KO}
#: How each language names itself in the switch.
LANGUAGE_NAMES: dict[Language, str] = {"en": "English", "ko": "한국어"}


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fill(template: str, **markup: str) -> str:
    """``template`` escaped, with ``{name}`` replaced by ready (already escaped) markup."""
    return _esc(template).format(**markup)


# --- language -----------------------------------------------------------------------------


def _accept_language(header: str) -> Language:
    """Korean when the client prefers Korean to English, else English."""
    best: Language = "en"
    best_q = 0.0
    for part in header.split(",")[:32]:
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


def _language(request: Request) -> tuple[Language, list[tuple[bytes, bytes]]]:
    """The page language and, when ``?lang=`` chose it, the cookie that keeps the choice."""
    chosen = request.query_value("lang")
    for language in LANGUAGES:
        if chosen == language:
            one_year = 365 * 24 * 3600
            return language, [_set_cookie(request, LANG_COOKIE, language, one_year, "Lax")]
    stored = cookies.parse_cookie_header(request.headers.get("cookie", "")).get(LANG_COOKIE)
    for language in LANGUAGES:
        if stored == language:
            return language, []
    return _accept_language(request.headers.get("accept-language", "")), []


# --- cookies, tokens, origin --------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def _set_cookie(
    request: Request, name: str, value: str, max_age: int | None, same_site: str
) -> tuple[bytes, bytes]:
    secure = "; Secure" if request.is_https else ""
    lifetime = "" if max_age is None else f"; Max-Age={max_age}"
    attributes = f"Path=/{lifetime}; HttpOnly; SameSite={same_site}{secure}"
    return (b"set-cookie", f"{name}={value}; {attributes}".encode())


def _login_csrf(request: Request) -> tuple[str, list[tuple[bytes, bytes]]]:
    """The sign-in form's token: the ``csrf`` cookie's when well formed, else a new one."""
    current = cookies.parse_cookie_header(request.headers.get("cookie", "")).get(CSRF_COOKIE)
    if current is not None and _TOKEN.fullmatch(current):
        return current, []
    token = secrets.token_urlsafe(32)
    return token, [_set_cookie(request, CSRF_COOKIE, token, None, "Strict")]


def _login_csrf_ok(request: Request, form: Mapping[str, str]) -> bool:
    cookie = cookies.parse_cookie_header(request.headers.get("cookie", "")).get(CSRF_COOKIE, "")
    field = form.get(CSRF_FIELD, "")
    if not _TOKEN.fullmatch(cookie):
        return False
    return hmac.compare_digest(cookie.encode("ascii"), field.encode("utf-8", "replace"))


def session_form_token(session_id: str, secret: str) -> str:
    """The token of a signed-in page's forms: HMAC-SHA256 of the session id under the
    session secret. A forger on another site knows neither."""
    message = b"flamel-session-form\x00" + session_id.encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _session_form_ok(session_id: str, secret: str, form: Mapping[str, str]) -> bool:
    expected = session_form_token(session_id, secret)
    return hmac.compare_digest(
        expected.encode(), form.get(CSRF_FIELD, "").encode("utf-8", "replace")
    )


async def _read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded body (first value of each); empty when unreadable."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        raw = (await request.body()).decode("utf-8")
        parsed = parse_qs(raw, keep_blank_values=True, max_num_fields=16, errors="strict")
    except (ApiError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items()}


# --- responses ----------------------------------------------------------------------------

_PAGE_HEADERS = (
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"vary", b"Accept-Language, Cookie"),
    *security.html_headers(security.PAGE_POLICY),
)


def _html(status: int, page: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    return Response(status, page.encode("utf-8"), [*_PAGE_HEADERS, *headers])


def _redirect(location: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    return Response(
        303, b"", [(b"location", location.encode()), (b"cache-control", b"no-store"), *headers]
    )


# --- static files -------------------------------------------------------------------------

_ASSETS = {
    "pages.css": "text/css; charset=utf-8",
    "pages.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    """``(content, version)`` of an allowlisted file under ``http/pages/static/``."""
    content = (
        resources.files("flamel_usage.http.pages").joinpath("static").joinpath(name).read_bytes()
    )
    return content, hashlib.sha256(content).hexdigest()[:12]


def asset_url(name: str) -> str:
    """The file's URL, versioned by its content so it can be cached for good."""
    return f"/static/{name}?v={_asset(name)[1]}"


async def static_file(request: Request, services: Services) -> Response:
    name = request.params["name"]
    if name not in _ASSETS:  # only ever a key of the allowlist, never a path
        raise NotFound("no such file")
    content, version = _asset(name)
    versioned = request.query_value("v") == version
    cache = b"public, max-age=31536000, immutable" if versioned else b"no-cache"
    return Response(
        200,
        content,
        [
            (b"content-type", _ASSETS[name].encode()),
            (b"cache-control", cache),
        ],
    )


# --- rendering ----------------------------------------------------------------------------


def _layout(language: Language, title: str, main: str, path: str) -> str:
    t = STRINGS[language]
    current = ' aria-current="true"'
    switch = "".join(
        f'<li><a href="{_esc(path)}?lang={code}" lang="{code}" hreflang="{code}"'
        f"{current if code == language else ''}>{_esc(LANGUAGE_NAMES[code])}</a></li>"
        for code in LANGUAGES
    )
    return (
        "<!doctype html>\n"
        f'<html lang="{language}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n"
        f'<link rel="icon" href="{_esc(asset_url("favicon.svg"))}" type="image/svg+xml">\n'
        f'<link rel="stylesheet" href="{_esc(asset_url("pages.css"))}">\n'
        f'<script src="{_esc(asset_url("pages.js"))}" defer></script>\n'
        "</head>\n<body>\n"
        '<header class="topbar">\n'
        f'<span class="brand"><img src="{_esc(asset_url("favicon.svg"))}" alt="">'
        f"{_esc(t['brand'])}</span>\n"
        f'<nav class="lang" aria-label="{_esc(t["language"])}"><ul>{switch}</ul></nav>\n'
        "</header>\n"
        f'<main id="main">\n{main}\n</main>\n'
        "</body>\n</html>\n"
    )


def render_login(
    language: Language, csrf: str, *, email: str = "", error: str | None = None
) -> str:
    t = STRINGS[language]
    alert = ""
    invalid = ""
    if error is not None:
        alert = f'<p class="alert" role="alert" id="login-error">{_esc(t[error])}</p>\n'
        invalid = ' aria-invalid="true" aria-describedby="login-error"'
    main = (
        '<div class="login card">\n'
        f"<h1>{_esc(t['login_heading'])}</h1>\n"
        f'<p class="muted intro">{_esc(t["login_intro"])}</p>\n'
        f"{alert}"
        '<form method="post" action="/login">\n'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{_esc(csrf)}">\n'
        '<div class="field">'
        f'<label for="email">{_esc(t["email"])}</label>'
        '<input id="email" name="email" type="email" autocomplete="username" required'
        f' maxlength="254" value="{_esc(email)}"{invalid}>'
        "</div>\n"
        '<div class="field">'
        f'<label for="password">{_esc(t["password"])}</label>'
        '<input id="password" name="password" type="password"'
        f' autocomplete="current-password" required{invalid}>'
        "</div>\n"
        f'<button class="button block" type="submit">{_esc(t["login_submit"])}</button>\n'
        "</form>\n</div>"
    )
    return _layout(language, t["login_title"], main, "/")


def _render_problem(language: Language, problem: str, link: str) -> str:
    """The page of a request that could not be done: ``problem``'s title, heading and
    text, and a link home labelled ``link``."""
    t = STRINGS[language]
    main = (
        '<div class="problem card">\n'
        f"<h1>{_esc(t[problem + '_heading'])}</h1>\n"
        f"<p>{_esc(t[problem + '_body'])}</p>\n"
        f'<p><a href="/">{_esc(t[link])}</a></p>\n'
        "</div>"
    )
    return _layout(language, t[problem + "_title"], main, "/")


def render_forbidden(language: Language) -> str:
    return _render_problem(language, "forbidden", "back_to_login")


def render_unavailable(language: Language) -> str:
    return _render_problem(language, "unavailable", "try_again")


def _number(milli: int) -> str:
    """A credit amount for people: grouped thousands, exact decimals, no trailing zeros."""
    whole, rest = divmod(milli, 1000)
    text = f"{whole:,}"
    if rest:
        text += "." + f"{rest:03d}".rstrip("0")
    return text


def _json_number(milli: int) -> str:
    """The amount exactly as ``GET /api/users/me/usage`` writes it."""
    return str(credits_value(milli))


def _plain(milli: int) -> str:
    """An amount as an HTML number attribute (``<meter value>``)."""
    whole, rest = divmod(milli, 1000)
    return f"{whole}.{rest:03d}".rstrip("0").rstrip(".") if rest else str(whole)


def credit_state(left: int, maximum: int) -> str:
    """``ok``, ``near`` (at least 80 % used) or ``reached`` for plan credit left of max."""
    if left <= 0 or maximum <= 0:
        return "reached"
    used = maximum - min(left, maximum)
    return "near" if used * NEAR_DENOMINATOR >= maximum * NEAR_NUMERATOR else "ok"


def count_state(count: int, maximum: int | None) -> str:
    """``unlimited``, ``reached``, ``near`` (at least 80 % used) or ``ok``."""
    if maximum is None:
        return "unlimited"
    if count >= maximum:
        return "reached"
    return "near" if count * NEAR_DENOMINATOR >= maximum * NEAR_NUMERATOR else "ok"


def _field(name: str, value: str, text: str) -> str:
    return f'<span data-field="{name}" data-value="{_esc(value)}">{_esc(text)}</span>'


def _badge(t: Mapping[str, str], state: str) -> str:
    return f'<span class="badge state-{state}">{_esc(t["state_" + state])}</span>'


def _limit_head(t: Mapping[str, str], ident: str, label: str, state: str | None) -> str:
    badge = "" if state is None else _badge(t, state)
    return f'<div class="limit-head"><h2 id="{ident}-label">{_esc(t[label])}</h2>{badge}</div>\n'


def _credit_card(t: Mapping[str, str], usage: Usage) -> str:
    state = credit_state(usage.current_credit, usage.max_credit)
    left = _field(
        "currentCredit", _json_number(usage.current_credit), _number(usage.current_credit)
    )
    maximum = _field("maxCredit", _json_number(usage.max_credit), _number(usage.max_credit))
    text = _fill(t["credit_left"], value=left, max=maximum)
    meter = ""
    if usage.max_credit > 0:
        value = _plain(max(0, min(usage.current_credit, usage.max_credit)))
        meter = (
            f'<meter class="state-{state}" min="0" max="{_plain(usage.max_credit)}"'
            f' value="{value}" aria-labelledby="plan-credit-label"'
            ' aria-describedby="plan-credit-text">'
            f"{_esc(_number(usage.current_credit))} / {_esc(_number(usage.max_credit))}</meter>\n"
        )
    return (
        '<section class="card limit" aria-labelledby="plan-credit-label"'
        f' data-limit="planCredit" data-state="{state}">\n'
        f"{_limit_head(t, 'plan-credit', 'plan_credit', state)}"
        f'<p class="figure">{_esc(_number(usage.current_credit))}'
        f' <span class="of">/ {_esc(_number(usage.max_credit))}</span></p>\n'
        f"{meter}"
        f'<p class="muted small" id="plan-credit-text">{text}</p>\n'
        "</section>"
    )


def _amount_card(
    t: Mapping[str, str], ident: str, label: str, field: str, milli: int, note: str
) -> str:
    value = _field(field, _json_number(milli), _number(milli))
    return (
        f'<section class="card limit" aria-labelledby="{ident}-label" data-limit="{field}">\n'
        f"{_limit_head(t, ident, label, None)}"
        f'<p class="figure">{value} <span class="of">{_esc(t["credits_unit"])}</span></p>\n'
        f'<p class="muted small">{_esc(t[note])}</p>\n'
        "</section>"
    )


def _count_card(
    t: Mapping[str, str],
    ident: str,
    label: str,
    fields: tuple[str, str],
    count: int,
    maximum: int | None,
) -> str:
    state = count_state(count, maximum)
    used = _field(fields[0], str(count), f"{count:,}")
    if maximum is None:
        figure = f'<p class="figure">{_esc(f"{count:,}")}</p>\n'
        text = _fill(t["count_used_unlimited"], value=used)
        meter = ""
    else:
        limit = _field(fields[1], str(maximum), f"{maximum:,}")
        figure = (
            f'<p class="figure">{_esc(f"{count:,}")}'
            f' <span class="of">/ {_esc(f"{maximum:,}")}</span></p>\n'
        )
        text = _fill(t["count_used"], value=used, max=limit)
        meter = ""
        if maximum > 0:
            meter = (
                f'<meter class="state-{state}" min="0" max="{maximum}"'
                f' value="{min(count, maximum)}" aria-labelledby="{ident}-label"'
                f' aria-describedby="{ident}-text">{count} / {maximum}</meter>\n'
            )
    return (
        f'<section class="card limit" aria-labelledby="{ident}-label"'
        f' data-limit="{fields[0]}" data-state="{state}">\n'
        f"{_limit_head(t, ident, label, state)}"
        f"{figure}{meter}"
        f'<p class="muted small" id="{ident}-text">{text}</p>\n'
        "</section>"
    )


def _offset(moment: datetime) -> str:
    raw = moment.strftime("%z")  # +0900
    return f"UTC{raw[:3]}:{raw[3:5]}" if raw else "UTC"


def _date_text(moment: datetime, language: Language) -> str:
    """The instant's wall time in its own zone, with the offset, for people."""
    month = STRINGS[language]["months"].split()[moment.month - 1]
    clock = f"{moment:%H:%M} ({_offset(moment)})"
    if language == "ko":
        return f"{moment.year}년 {month} {moment.day}일 {clock}"
    return f"{month} {moment.day}, {moment.year}, {clock}"


def _time(moment: datetime, language: Language, field: str | None = None) -> str:
    stamp = moment.isoformat(timespec="seconds")
    marker = "" if field is None else f' data-field="{field}"'
    return (
        f'<time datetime="{_esc(stamp)}" data-localize{marker}>'
        f"{_esc(_date_text(moment, language))}</time>"
    )


# --- the history chart ---------------------------------------------------------------------

#: The chart's drawing box (SVG user units; CSS scales it to the card's width) and its plot
#: area inside, which leaves room for the credit axis on the left and the days below.
CHART_WIDTH, CHART_HEIGHT = 720, 240
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 64, 712, 12, 212
#: The pools from the bottom of a bar's stack up: the order credit is spent in.
POOLS = (("plan", "plan_credit"), ("purchased", "purchased_credit"), ("postpaid", "postpaid"))
HISTORY_CSV = "/api/users/me/usage/history?format=csv"
#: Most day numbers under the bars; beyond, every second (third...) day is named.
MAX_DAY_LABELS = 16


def _day_text(moment: datetime, language: Language) -> str:
    t = STRINGS[language]
    return t["day"].format(month=t["months"].split()[moment.month - 1], day=moment.day)


def _pool_milli(bucket: Bucket) -> tuple[int, int, int]:
    return bucket.plan, bucket.purchased, bucket.postpaid


def axis_top(largest: int) -> int:
    """The credit axis' top (millicredits): the smallest 1, 2 or 5 times a power of ten at
    or above the largest day, so its gridlines read as round numbers; 1 credit when
    nothing was spent."""
    if largest <= 0:
        return 1000
    power = 1
    while True:
        for multiple in (1, 2, 5):
            if multiple * power >= largest:
                return multiple * power
        power *= 10


def _bars(history: History, top: int, language: Language) -> str:
    """One group a bucket, its pools stacked from the baseline, each height proportional
    to the credit (a day without spending has an empty group); a tooltip tells the day."""
    t = STRINGS[language]
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(len(history.buckets), 1)
    width = slot * 0.7
    scale = (PLOT_BOTTOM - PLOT_TOP) / top
    every = -(-len(history.buckets) // MAX_DAY_LABELS)
    groups = []
    for index, bucket in enumerate(history.buckets):
        x = PLOT_LEFT + index * slot + (slot - width) / 2
        spent = sum(_pool_milli(bucket))
        tip = f"{_day_text(bucket.start, language)}: {_number(spent)} {t['credits_unit']}"
        parts = [f"<title>{_esc(tip)}</title>"]
        base = float(PLOT_BOTTOM)
        for (pool, _), milli in zip(POOLS, _pool_milli(bucket), strict=True):
            if milli:
                height = milli * scale
                base -= height
                parts.append(
                    f'<rect class="pool-{pool}" x="{x:.2f}" y="{base:.2f}"'
                    f' width="{width:.2f}" height="{height:.2f}"/>'
                )
        if index % every == 0:
            parts.append(
                f'<text class="chart-day" x="{x + width / 2:.2f}" y="{PLOT_BOTTOM + 18}"'
                f' text-anchor="middle">{bucket.start.day}</text>'
            )
        start = _esc(bucket.start.isoformat())
        groups.append(f'<g class="chart-bucket" data-start="{start}">{"".join(parts)}</g>')
    return "\n".join(groups)


def _gridlines(top: int) -> str:
    """Lines at nothing, half the axis and its top, labelled in credits."""
    lines = []
    for milli in (0, top // 2, top):
        y = PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * milli / top
        lines.append(
            f'<line class="chart-grid" x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}"'
            f' y1="{y:.2f}" y2="{y:.2f}"/>'
            f'<text class="chart-axis" x="{PLOT_LEFT - 8}" y="{y + 4:.2f}"'
            f' text-anchor="end">{_esc(_number(milli))}</text>'
        )
    return "\n".join(lines)


def _time_element(stamp: str, text: str) -> str:
    return f'<time datetime="{_esc(stamp)}">{_esc(text)}</time>'


def _history_table(t: Mapping[str, str], history: History, language: Language) -> str:
    head = "".join(
        f'<th scope="col">{_esc(t[key])}</th>'
        for key in ("history_day", *(label for _, label in POOLS), "history_total")
    )
    rows = []
    for bucket in history.buckets:
        amounts = (*_pool_milli(bucket), sum(_pool_milli(bucket)))
        cells = "".join(f"<td>{_esc(_number(milli))}</td>" for milli in amounts)
        day = _time_element(bucket.start.date().isoformat(), _day_text(bucket.start, language))
        rows.append(f'<tr><th scope="row">{day}</th>{cells}</tr>')
    return (
        # Hidden by its wrapper: a table grows to its content whatever width it is given.
        '<div class="visually-hidden"><table id="history-table">\n'
        f"<caption>{_esc(t['history_heading'])} ({_esc(t['credits_unit'])})</caption>\n"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table></div>"
    )


def render_history_chart(language: Language, history: History) -> str:
    """The usage page's card of daily spending: an SVG bar chart stacked by pool, drawn
    on the server (no script), named and described for assistive technology, with the
    same numbers in a table for screen readers and a link to them as CSV."""
    t = STRINGS[language]
    spent = [sum(_pool_milli(bucket)) for bucket in history.buckets]
    largest = max(spent, default=0)
    top = axis_top(largest)
    first = history.buckets[0].start if history.buckets else history.start
    last = history.buckets[-1].start if history.buckets else history.start
    title = t["history_title"].format(
        start=_day_text(first, language), end=_day_text(last, language)
    )
    zone = history.timezone
    if largest:
        busiest = history.buckets[spent.index(largest)].start
        desc = t["history_desc"].format(
            total=_number(sum(spent)),
            day=_day_text(busiest, language),
            most=_number(largest),
            zone=zone,
        )
    else:
        desc = t["history_desc_none"].format(zone=zone)
    legend = "".join(
        f'<li><span class="swatch pool-{pool}" aria-hidden="true"></span>{_esc(t[label])}</li>'
        for pool, label in POOLS
    )
    return (
        '<section class="card history" aria-labelledby="history-heading">\n'
        '<div class="limit-head">'
        f'<h2 id="history-heading">{_esc(t["history_heading"])}</h2>'
        f'<a href="{_esc(HISTORY_CSV)}" download>{_esc(t["history_csv"])}</a>'
        "</div>\n"
        f'<svg class="history-chart" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}"'
        ' role="img" aria-labelledby="history-title history-desc"'
        ' xmlns="http://www.w3.org/2000/svg">\n'
        f'<title id="history-title">{_esc(title)}</title>\n'
        f'<desc id="history-desc">{_esc(desc)}</desc>\n'
        f"{_gridlines(top)}\n{_bars(history, top, language)}\n"
        "</svg>\n"
        f'<ul class="legend">{legend}</ul>\n'
        f"{_history_table(t, history, language)}\n"
        "</section>"
    )


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
    t = STRINGS[language]
    start = usage.period.start
    end = usage.period.end
    zone = f"{zone_name}, {_offset(end)}"
    period = _fill(
        t["period_range"],
        start=_time(start, language, "periodStart"),
        end=_time(end, language, "periodEnd"),
    )
    cards = [
        _credit_card(t, usage),
        _amount_card(
            t,
            "purchased",
            "purchased_credit",
            "additionalCredit",
            usage.additional_credit,
            "purchased_note",
        ),
        _count_card(t, "ttp", "ttp", ("ttpCount", "maxTtpCount"), usage.ttp_count, usage.max_ttp),
        _count_card(
            t, "edits", "edits", ("editCount", "maxEditCount"), usage.edit_count, usage.max_edit
        ),
    ]
    if usage.postpaid_used is not None:
        cards.append(
            _amount_card(
                t,
                "postpaid",
                "postpaid",
                "postpaidUsageCount",
                usage.postpaid_used,
                "postpaid_note",
            )
        )
    main = (
        '<div class="page-head">\n<div>\n'
        f"<h1>{_esc(t['usage_heading'])}</h1>\n"
        f'<p class="muted">{_fill(t["signed_in_as"], email=_esc(email))}</p>\n'
        "</div>\n"
        f"{_account_bar(t, 'usage', logout_csrf, sign_out)}</div>\n"
        '<section class="card period" aria-labelledby="period-heading">\n'
        f'<h2 id="period-heading">{_esc(t["period_heading"])}</h2>\n'
        f"<dl>\n<dt>{_esc(t['period_label'])}</dt><dd>{period}</dd>\n"
        f"<dt>{_esc(t['reset_label'])}</dt><dd>{_time(end, language, 'resetAt')}</dd>\n</dl>\n"
        f'<p class="muted small" data-tz-note'
        f' data-local-template="{_esc(t["zone_local"])}">'
        f"{_fill(t['zone_billing'], zone=_esc(zone))}</p>\n"
        "</section>\n"
        f'<div class="grid">\n{chr(10).join(cards)}\n</div>\n'
        f"{render_history_chart(language, history)}"
    )
    return _layout(language, t["usage_title"], main, "/usage")


def _account_bar(t: Mapping[str, str], current: str, csrf: str, sign_out: bool) -> str:
    """The signed-in pages' navigation (usage, API keys) and their sign-out form, which
    is not there (``sign_out`` False) when sessions are the platform's to end."""
    current_mark = ' aria-current="page"'
    links = "".join(
        f'<li><a href="/{page}"{current_mark if page == current else ""}>'
        f"{_esc(t['nav_' + page])}</a></li>"
        for page in ("usage", "keys")
    )
    form = (
        '<form method="post" action="/logout">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{_esc(csrf)}">'
        f'<button class="button secondary" type="submit">{_esc(t["logout"])}</button>'
        "</form>"
    )
    return (
        '<div class="account-bar">'
        f'<nav class="tabs" aria-label="{_esc(t["account_nav"])}"><ul>{links}</ul></nav>'
        f"{form if sign_out else ''}</div>\n"
    )


def _key_label(key: auth.KeyInfo) -> str:
    """How a key is named to people: its prefix, and its name when it has one."""
    prefix = f'<code class="prefix">{_esc(key.prefix)}…</code>'
    return prefix if key.name is None else f"{prefix} ({_esc(key.name)})"


def _key_row(
    t: Mapping[str, str], key: auth.KeyInfo, language: Language, now: int, zone: ZoneInfo
) -> str:
    def instant(us: int | None) -> str:
        return _esc(t["never"]) if us is None else _time(from_micros(us, zone), language)

    state = key.state(now)
    action = ""
    if state != "revoked":
        action = (
            f'<a class="button danger small" href="/keys/{key.id}/revoke"'
            f' aria-label="{_esc(t["revoke"])} {_esc(key.prefix)}">{_esc(t["revoke"])}</a>'
        )
    name = (
        f'<span class="muted">{_esc(t["no_name"])}</span>' if key.name is None else _esc(key.name)
    )
    return (
        f'<tr data-key-id="{key.id}" data-state="{state}">'
        f"<td>{name}</td>"
        f'<td><code class="prefix">{_esc(key.prefix)}…</code></td>'
        f"<td>{instant(key.created_at)}</td>"
        f"<td>{instant(key.last_used_at)}</td>"
        f"<td>{'—' if key.expires_at is None else instant(key.expires_at)}</td>"
        f'<td><span class="badge key-{state}">{_esc(t["state_" + state])}</span></td>'
        f"<td>{action}</td></tr>"
    )


def render_keys(
    language: Language,
    found: Iterable[auth.KeyInfo],
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
    t = STRINGS[language]
    shown = ""
    if new_key is not None:
        shown = (
            '<section class="card new-key" aria-labelledby="new-key-heading">\n'
            f'<h2 id="new-key-heading">{_esc(t["new_key_heading"])}</h2>\n'
            f'<p class="warning" role="status">{_esc(t["new_key_warning"])}</p>\n'
            '<div class="secret"><code id="new-key">'
            f"{_esc(new_key)}</code>"
            '<button class="button secondary" type="button" hidden data-copy="new-key"'
            f' data-copied="{_esc(t["copied"])}">{_esc(t["copy"])}</button></div>\n'
            "</section>\n"
        )
    alert = ""
    invalid = {"error_name": "", "error_expiry": ""}
    if error is not None:
        alert = f'<p class="alert" role="alert" id="key-error">{_esc(t[error])}</p>\n'
        if error in invalid:
            invalid[error] = ' aria-invalid="true" aria-describedby="key-error"'
    rows = [_key_row(t, key, language, now, zone) for key in found]
    headings = "".join(
        f'<th scope="col">{_esc(t[column])}</th>'
        for column in (
            "col_name",
            "col_prefix",
            "col_created",
            "col_last_used",
            "col_expires",
            "col_state",
            "col_action",
        )
    )
    listing = (
        f'<div class="table-wrap"><table class="keys">\n<thead><tr>{headings}</tr></thead>\n'
        f"<tbody>\n{chr(10).join(rows)}\n</tbody>\n</table></div>"
        if rows
        else f'<p class="muted">{_esc(t["no_keys"])}</p>'
    )
    main = (
        '<div class="page-head">\n<div>\n'
        f"<h1>{_esc(t['keys_heading'])}</h1>\n"
        f'<p class="muted">{_fill(t["signed_in_as"], email=_esc(email))}</p>\n'
        "</div>\n"
        f"{_account_bar(t, 'keys', csrf, sign_out)}</div>\n"
        f'<p class="intro">{_esc(t["keys_intro"])}</p>\n'
        f"{shown}{alert}"
        '<section class="card create-key" aria-labelledby="create-heading">\n'
        f'<h2 id="create-heading">{_esc(t["create_heading"])}</h2>\n'
        '<form method="post" action="/keys" class="inline-form">\n'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{_esc(csrf)}">\n'
        '<div class="field">'
        f'<label for="key-name">{_esc(t["key_name"])}</label>'
        f'<input id="key-name" name="name" type="text" maxlength="{auth.MAX_KEY_NAME}"'
        f' autocomplete="off" value="{_esc(name)}" aria-describedby="key-name-hint"'
        f"{invalid['error_name']}>"
        f'<span class="muted small" id="key-name-hint">{_esc(t["key_name_hint"])}</span>'
        "</div>\n"
        '<div class="field">'
        f'<label for="key-expires">{_esc(t["key_expires"])}</label>'
        f'<input id="key-expires" name="expires" type="date" value="{_esc(expires)}"'
        f' aria-describedby="key-expires-hint"{invalid["error_expiry"]}>'
        f'<span class="muted small" id="key-expires-hint">'
        f"{_fill(t['key_expires_hint'], zone=_esc(zone.key))}</span>"
        "</div>\n"
        f'<button class="button" type="submit">{_esc(t["create_submit"])}</button>\n'
        "</form>\n</section>\n"
        '<section class="card key-list" aria-labelledby="list-heading">\n'
        f'<h2 id="list-heading">{_esc(t["list_heading"])}</h2>\n'
        f"{listing}\n</section>"
    )
    return _layout(language, t["keys_title"], main, "/keys")


def render_revoke(language: Language, key: auth.KeyInfo, csrf: str) -> str:
    """The confirmation step before a key is revoked: the form that does it, or cancel."""
    t = STRINGS[language]
    main = (
        '<div class="problem card">\n'
        f"<h1>{_esc(t['revoke_heading'])}</h1>\n"
        f"<p>{_fill(t['revoke_body'], key=_key_label(key))}</p>\n"
        f'<form method="post" action="/keys/{key.id}/revoke" class="actions">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{_esc(csrf)}">'
        f'<button class="button danger" type="submit">{_esc(t["revoke_confirm"])}</button>'
        f'<a class="button secondary" href="/keys">{_esc(t["cancel"])}</a>'
        "</form>\n</div>"
    )
    return _layout(language, t["revoke_title"], main, f"/keys/{key.id}/revoke")


# --- handlers -----------------------------------------------------------------------------


def _sign_in_url(services: Services) -> str:
    """Where a signed-out visitor goes: our sign-in page, or the platform's
    (``FLAMEL_LOGIN_URL``) when sessions are the platform's."""
    if services.sessions.external and services.settings.login_url:
        return services.settings.login_url
    return "/"


async def login_page(request: Request, services: Services) -> Response:
    language, headers = _language(request)
    if await public.signed_in_user(request, services) is not None:
        return _redirect("/usage", headers)
    if services.sessions.external:
        return _redirect(_sign_in_url(services), headers)
    token, csrf_headers = _login_csrf(request)
    return _html(200, render_login(language, token), [*headers, *csrf_headers])


async def login_submit(request: Request, services: Services) -> Response:
    public.refuse_without_own_sign_in(services)
    language, _ = _language(request)
    forbidden = _html(403, render_forbidden(language))
    if not security.same_origin(request):
        return forbidden
    form = await _read_form(request)
    if not _login_csrf_ok(request, form):
        return forbidden
    token, _ = _login_csrf(request)
    email = form.get("email", "")
    password = form.get("password", "")
    if not email.strip() or not password:
        return _html(400, render_login(language, token, email=email, error="error_missing"))
    now = services.clock()
    ttl = services.settings.session_ttl_seconds
    secret = services.session_secret.reveal()
    try:
        signed_in = await auth.login(
            services.db,
            email,
            password,
            now=now,
            ttl_seconds=ttl,
            client=public.client_address(request, services),
            device_cookie=public.device_cookie(request),
            secret=secret,
            budget=services.login_budget,
        )
    except auth.InvalidCredentials as refused:
        services.metrics.auth_failure(refused.reason)
        return _html(401, render_login(language, token, email=email, error="error_credentials"))
    except TooManyRequests as refusal:
        services.metrics.auth_failure(refusal.reason)
        page = _html(429, render_login(language, token, email=email, error="error_throttled"))
        page.headers.extend(refusal.headers)
        return page
    value = cookies.session_cookie_value(signed_in.session_id, secret)
    return _redirect(
        "/usage",
        [
            public.session_cookie_header(value, ttl, request, services),
            public.device_cookie_header(signed_in.device_cookie, request),
            _set_cookie(request, CSRF_COOKIE, "", 0, "Strict"),  # used up: a new one next time
        ],
    )


async def usage_page(request: Request, services: Services) -> Response:
    language, headers = _language(request)
    now = services.clock()
    claim = await public.session_claim(request, services, now)
    if claim is None:
        return _redirect(_sign_in_url(services), headers)
    zone = services.settings.timezone
    async with services.db.read() as conn:
        user_id = await claim.user_id(conn, now)
        if user_id is None:
            return _redirect(_sign_in_url(services), headers)
        email = await conn.fetchval("SELECT email FROM users WHERE id = ?", user_id)
        usage = await read_usage(conn, user_id, now, zone)
        history = await read_history(
            conn,
            user_id,
            start=None,
            end=None,
            granularity="day",
            kinds=services.settings.operation_costs,
            now=now,
            zone=zone,
        )
    page = render_usage(
        language,
        usage,
        history=history,
        email=str(email),
        logout_csrf=session_form_token(claim.session_id, services.session_secret.reveal()),
        zone_name=zone.key or str(zone),
        sign_out=not services.sessions.external,
    )
    return _html(200, page, headers)


async def logout_submit(request: Request, services: Services) -> Response:
    public.refuse_without_own_sign_in(services)
    language, _ = _language(request)
    forbidden = _html(403, render_forbidden(language))
    if not security.same_origin(request):
        return forbidden
    form = await _read_form(request)
    clear = public.session_cookie_header("", 0, request, services)
    found = public.session_id(request, services)
    if found is None:  # no session to end: nothing a forged request could do
        return _redirect("/", [clear])
    if not _session_form_ok(found, services.session_secret.reveal(), form):
        return forbidden
    async with services.db.transaction() as conn:
        await auth.logout(conn, found)
    return _redirect("/", [clear])


@dataclass(frozen=True, slots=True)
class _KeysVisit:
    """A signed-in visit to the keys pages: the language, the session and its user."""

    language: Language
    headers: list[tuple[bytes, bytes]]
    session_id: str
    user_id: int
    email: str


async def _keys_visit(request: Request, services: Services) -> _KeysVisit | None:
    """The visit, or None when no live session signs it in."""
    now = services.clock()
    claim = await public.session_claim(request, services, now)
    if claim is None:
        return None
    async with services.db.read() as conn:
        user_id = await claim.user_id(conn, now)
        if user_id is None:
            return None
        email = await conn.fetchval("SELECT email FROM users WHERE id = ?", user_id)
    language, headers = _language(request)
    return _KeysVisit(language, headers, claim.session_id, user_id, str(email))


async def _keys_answer(
    visit: _KeysVisit,
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
    page = render_keys(
        visit.language,
        found,
        now=services.clock(),
        zone=services.settings.timezone,
        email=visit.email,
        csrf=session_form_token(visit.session_id, services.session_secret.reveal()),
        new_key=new_key,
        error=error,
        name=kept.get("name", ""),
        expires=kept.get("expires", ""),
        sign_out=not services.sessions.external,
    )
    return _html(status, page, visit.headers)


async def keys_page(request: Request, services: Services) -> Response:
    visit = await _keys_visit(request, services)
    if visit is None:
        return _redirect(_sign_in_url(services), _language(request)[1])
    return await _keys_answer(visit, services)


def _end_of_day(text: str, zone: ZoneInfo) -> int | None:
    """The end of the day ``YYYY-MM-DD`` in the billing zone, or None for no day; a 400
    for anything else. The key then works through the whole day the person picked."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest("expires must be a date, YYYY-MM-DD") from None
    if not 1970 <= day.year <= 9000:
        raise BadRequest("expires is out of range")
    return to_micros(datetime.combine(day + timedelta(days=1), time(), zone))


async def _keys_form(
    request: Request, services: Services
) -> tuple[_KeysVisit, dict[str, str]] | Response:
    """The visit and form of a keys page POST, signed in, from this site and carrying the
    session's form token; else the 403 page to answer."""
    language, _ = _language(request)
    visit = await _keys_visit(request, services)
    if visit is None or not security.same_origin(request):
        return _html(403, render_forbidden(language))
    form = await _read_form(request)
    if not _session_form_ok(visit.session_id, services.session_secret.reveal(), form):
        return _html(403, render_forbidden(language))
    return visit, form


async def keys_create(request: Request, services: Services) -> Response:
    """Make a key and show it, once, on the answer itself: never in a redirect's URL,
    and the page is ``no-store``, so that neither history nor a cache keeps it."""
    checked = await _keys_form(request, services)
    if isinstance(checked, Response):
        return checked
    visit, form = checked
    name = form.get("name", "")
    try:
        key_name = auth.key_name(name if name.strip() else None)
    except BadRequest:
        return await _keys_answer(visit, services, 400, error="error_name", form=form)
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
    except auth.TooManyKeys:
        return await _keys_answer(visit, services, 409, error="error_too_many", form=form)
    except BadRequest:  # what is left to refuse is the expiry
        return await _keys_answer(visit, services, 400, error="error_expiry", form=form)
    return await _keys_answer(visit, services, 200, new_key=issued.key)


async def _own_key(visit: _KeysVisit, services: Services, raw_id: str) -> auth.KeyInfo | None:
    """The visitor's key of that id that can still be revoked, else None."""
    try:
        key_id = parse_id(raw_id, "keyId")
    except BadRequest:
        return None
    async with services.db.read() as conn:
        found = await auth.list_keys(conn, visit.user_id)
    return next((key for key in found if key.id == key_id and key.revoked_at is None), None)


async def revoke_confirm_page(request: Request, services: Services) -> Response:
    visit = await _keys_visit(request, services)
    if visit is None:
        return _redirect(_sign_in_url(services), _language(request)[1])
    key = await _own_key(visit, services, request.params["keyId"])
    if key is None:  # gone, revoked, or someone else's: the list says what there is
        return _redirect("/keys", visit.headers)
    csrf = session_form_token(visit.session_id, services.session_secret.reveal())
    return _html(200, render_revoke(visit.language, key, csrf), visit.headers)


async def revoke_submit(request: Request, services: Services) -> Response:
    checked = await _keys_form(request, services)
    if isinstance(checked, Response):
        return checked
    visit, _ = checked
    key = await _own_key(visit, services, request.params["keyId"])
    if key is not None:
        async with services.db.transaction() as conn:
            await auth.revoke_key(conn, key.id, services.clock(), owner=visit.user_id)
    return _redirect("/keys")


def _outage_as_page(handler: Handler) -> Handler:
    """``handler``, with the database being unavailable answered by a page, in the
    reader's language, rather than the API's JSON envelope, which a browser would show
    raw. Status and ``Retry-After`` are the API's."""

    @functools.wraps(handler)
    async def page(request: Request, services: Services) -> Response:
        try:
            return await handler(request, services)
        except DatabaseUnavailable:
            language, _ = _language(request)
            return _html(503, render_unavailable(language), ServiceUnavailable.headers)

    return page


ROUTES = [
    ("GET", "/", _outage_as_page(login_page)),
    ("POST", "/login", _outage_as_page(login_submit)),
    ("GET", "/usage", _outage_as_page(usage_page)),
    ("POST", "/logout", _outage_as_page(logout_submit)),
    ("GET", "/keys", _outage_as_page(keys_page)),
    ("POST", "/keys", _outage_as_page(keys_create)),
    ("GET", "/keys/{keyId}/revoke", _outage_as_page(revoke_confirm_page)),
    ("POST", "/keys/{keyId}/revoke", _outage_as_page(revoke_submit)),
    ("GET", "/static/{name}", static_file),
]

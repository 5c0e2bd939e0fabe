"""What customers call: their usage, and logging in and out of a browser session.

The session is our own sign-in's, or the platform's when ``FLAMEL_SESSION_STORE`` names
its store (``auth.platform_sessions``); our sign-in endpoints then answer ``404``: the
platform signs its customers in and out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Literal, TypeVar

from flamel_usage.auth import cookies
from flamel_usage.auth import credentials as auth
from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import parse_day_or_instant
from flamel_usage.core.money import credits_value
from flamel_usage.core.periods import from_micros
from flamel_usage.db.gateway import Connection
from flamel_usage.http import guards
from flamel_usage.http.bodies.inbound import LoginRequest
from flamel_usage.http.bodies.outbound import LoginResponse, UsageHistory, body_response
from flamel_usage.http.bodies.reading import read_body
from flamel_usage.http.context import Services
from flamel_usage.http.guards import Caller
from flamel_usage.http.routing import Request, Response, empty_response, json_response
from flamel_usage.ledger.balances import read_usage
from flamel_usage.ledger.history import GRANULARITIES, History, read_history

#: Marks a browser that has signed in to an account before (see ``auth.throttle``).
DEVICE_COOKIE = "flamel_device"
#: About as long as a browser keeps a cookie at all (Chrome caps at 400 days).
DEVICE_COOKIE_MAX_AGE = 400 * 24 * 3600


async def get_my_usage(
    request: Request, services: Services, caller: Caller, conn: Connection
) -> Response:
    usage = await read_usage(conn, caller.user_id, caller.now, services.settings.timezone)
    return json_response(usage.to_dto())


HISTORY_FORMATS: tuple[Literal["json", "csv"], ...] = ("json", "csv")
_Choice = TypeVar("_Choice", bound=str)
CSV_HEADERS = ((b"content-type", b"text/csv; charset=utf-8"), (b"cache-control", b"no-store"))


async def get_my_usage_history(
    request: Request, services: Services, caller: Caller, conn: Connection
) -> Response:
    """The caller's spending per day or hour (``ledger.history``), as JSON or CSV.

    Unknown query fields are ignored, as the usage read ignores its query.
    """
    given = {name: request.query_value(name) for name in ("from", "to")}
    granularity = _query_choice(request, "granularity", GRANULARITIES, "invalid_granularity")
    shape = _query_choice(request, "format", HISTORY_FORMATS, "invalid_format")
    history = await read_history(
        conn,
        caller.user_id,
        start=_optional_instant(given["from"], "from", services),
        end=_optional_instant(given["to"], "to", services),
        granularity=granularity,
        kinds=services.settings.operation_costs,
        now=caller.now,
        zone=services.settings.timezone,
    )
    if shape == "csv":
        return Response(200, history_csv(history).encode(), list(CSV_HEADERS))
    return body_response(UsageHistory.of(history))


def _query_choice(request: Request, name: str, choices: Sequence[_Choice], reason: str) -> _Choice:
    """One of ``choices`` (the first is the default), else a refusal for ``reason``."""
    value = request.query_value(name)
    if value is None:
        return choices[0]
    for choice in choices:
        if value == choice:
            return choice
    raise Refusal(reason, f"{name} must be one of {', '.join(choices)}")


def _optional_instant(value: str | None, name: str, services: Services) -> int | None:
    return None if value is None else parse_day_or_instant(value, name, services.settings.timezone)


def history_csv(history: History) -> str:
    """One row per bucket under ``start,end,plan,purchased,postpaid,<kind>...``."""
    kinds = list(history.buckets[0].operations) if history.buckets else []
    # Each bucket ends where the next starts: one ISO string per boundary.
    shown = [bucket.start.isoformat() for bucket in history.buckets]
    shown.append(history.end.isoformat())
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["start", "end", "plan", "purchased", "postpaid", *kinds])
    writer.writerows(
        [
            start,
            end,
            credits_value(bucket.plan),
            credits_value(bucket.purchased),
            credits_value(bucket.postpaid),
            *[bucket.operations[kind] for kind in kinds],
        ]
        for bucket, start, end in zip(history.buckets, shown, shown[1:], strict=False)
    )
    return out.getvalue()


def session_cookie_header(
    value: str, max_age: int, request: Request, services: Services
) -> tuple[bytes, bytes]:
    """``Set-Cookie`` for the session: the API's login and the login page set the same."""
    return _cookie_header(services.settings.session_cookie_name, value, max_age, request)


def refuse_without_own_sign_in(services: Services) -> None:
    """``404`` for our sign-in and sign-out while sessions are the platform's: it alone
    signs its customers in and out, and we never write its store."""
    if services.sessions.external:
        raise Refusal("not_found", "sign-in is the platform's: this server reads its sessions")


def device_cookie(request: Request) -> str | None:
    """The raw device cookie, for ``auth.login`` to check."""
    return cookies.parse_cookie_header(request.headers.get("cookie", "")).get(DEVICE_COOKIE)


def device_cookie_header(value: str, request: Request) -> tuple[bytes, bytes]:
    """``Set-Cookie`` for the device cookie, which both sign-ins set."""
    return _cookie_header(DEVICE_COOKIE, value, DEVICE_COOKIE_MAX_AGE, request)


def _cookie_header(name: str, value: str, max_age: int, request: Request) -> tuple[bytes, bytes]:
    secure = "; Secure" if request.is_https else ""
    attributes = f"Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    return (b"set-cookie", f"{name}={value}; {attributes}".encode())


async def login(request: Request, services: Services) -> Response:
    refuse_without_own_sign_in(services)
    body = await read_body(request, LoginRequest)
    now = services.clock()
    ttl = services.settings.session_ttl_seconds
    secret = services.session_secret.reveal()
    signed_in = await auth.login(
        services.db,
        body.email,
        body.password,
        now=now,
        ttl_seconds=ttl,
        client=guards.client_address(request, services),
        device_cookie=device_cookie(request),
        secret=secret,
        budget=services.login_budget,
    )
    value = cookies.session_cookie_value(signed_in.session_id, secret)
    expires = from_micros(now + ttl * 1_000_000).isoformat()
    return body_response(
        LoginResponse(expires),
        headers=[
            session_cookie_header(value, ttl, request, services),
            device_cookie_header(signed_in.device_cookie, request),
        ],
    )


async def logout(request: Request, services: Services) -> Response:
    refuse_without_own_sign_in(services)
    found = guards.session_id(request, services)
    if found is not None:
        async with services.db.transaction() as conn:
            await auth.logout(conn, found)
    return empty_response(204, headers=[session_cookie_header("", 0, request, services)])


ROUTES = [
    guards.customer("GET", "/api/users/me/usage", get_my_usage),
    guards.customer("GET", "/api/users/me/usage/history", get_my_usage_history),
    guards.public("POST", "/api/auth/login", login),
    guards.public("POST", "/api/auth/logout", logout),
]

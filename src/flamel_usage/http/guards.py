"""The guards a route is declared with, and what each hands its handler.

Every route is made by one of ``public``, ``customer``, ``session`` or ``admin``. Each
returns a ``Route`` whose endpoint runs the guard first and the handler only when the
guard lets the request in, handing it what the guard established (a ``Caller``). The
router holds these endpoints and nothing else, and ``tests/test_route_guards.py``
walks the route table: a new route cannot forget its guard, nor a handler its check.

``customer`` routes are reads of the caller's own account: the guard opens the one read
the handler then uses, so the usage read still costs one connection and one lock.

A session is our own sign-in's, or the platform's when ``FLAMEL_SESSION_STORE`` names its
store (``auth.platform_sessions``): that store is read before the database connection is
taken (``session_claim``), never while one is held.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from flamel_usage.auth import cookies
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.platform_sessions import SessionClaim
from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Connection
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Guard, Handler, Request, Response, Route


class Caller(NamedTuple):
    """The customer a guard let in, and the instant (microseconds) it checked them at."""

    user_id: int
    now: int


#: A ``customer`` route's handler: it reads on the guard's open connection.
CustomerHandler = Callable[[Request, Services, Caller, Connection], Awaitable[Response]]
SessionHandler = Callable[[Request, Services, Caller], Awaitable[Response]]


def public(method: str, path: str, handler: Handler) -> Route:
    """A route anyone may call; the handler is the endpoint."""
    return Route(method, path, Guard.PUBLIC, handler)


def admin(method: str, path: str, handler: Handler) -> Route:
    """A route of the operator API: the bearer token is checked before anything else, so
    a caller without it learns nothing about validation, ids or size limits."""

    async def endpoint(request: Request, services: Services) -> Response:
        check_admin_token(request, services)
        return await handler(request, services)

    return Route(method, path, Guard.ADMIN, endpoint)


def customer(method: str, path: str, handler: CustomerHandler) -> Route:
    """A read of the caller's account, by API key or session. A wrong key is counted
    against its client once the read is over: the count is a write, and must not hold
    the read's connection (on SQLite, the worker's only one) while it waits."""

    async def endpoint(request: Request, services: Services) -> Response:
        now = services.clock()
        try:
            signed = await _key_or_session(request, services, now)
            async with services.db.read() as conn:
                user_id = await _signed_user(conn, signed, request, services, now)
                return await handler(request, services, Caller(user_id, now), conn)
        except Refusal as refusal:
            if refusal.reason == "wrong_api_key":
                client = client_address(request, services)
                await auth.count_wrong_key(services.db, client, now, services.key_budget)
            raise

    return Route(method, path, Guard.CUSTOMER, endpoint)


def session(method: str, path: str, handler: SessionHandler) -> Route:
    """A route for the signed-in browser only. A key cannot act here: a stolen key must
    not mint itself successors or revoke its owner's other keys, so a request that sends
    ``X-Api-Key`` (valid or not; a blank one counts as absent) is ``session_required``."""

    async def endpoint(request: Request, services: Services) -> Response:
        return await handler(request, services, await _session_caller(request, services))

    return Route(method, path, Guard.SESSION, endpoint)


def check_admin_token(request: Request, services: Services) -> None:
    """Refuse a request without the configured bearer token; with none configured,
    refuse every one, so a server started without thinking never exposes the books."""
    token = services.settings.admin_token
    if token is None:
        raise Refusal("admin_disabled", "no admin token is configured on this server")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.reveal().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Refusal("admin_unauthorized", "send Authorization: Bearer <admin token>")


def session_id(request: Request, services: Services) -> str | None:
    """The session id from a session cookie (``connect.sid`` unless configured) signed
    with one of the session secrets, else None."""
    name = services.settings.session_cookie_name
    raw = cookies.parse_cookie_header(request.headers.get("cookie", "")).get(name)
    if raw is None:
        return None
    secrets = (secret.reveal() for secret in services.session_secrets)
    return cookies.session_id_from_cookie(raw, *secrets)


async def session_claim(request: Request, services: Services, now: int) -> SessionClaim | None:
    """The cookie's session as its store has it: for the platform's store a round trip
    to it, so made before any database connection is taken."""
    found = session_id(request, services)
    return None if found is None else await services.sessions.claim(found, now)


async def signed_in_user(request: Request, services: Services, now: int) -> tuple[str, int] | None:
    """``(session id, user id)`` of the cookie's live session at ``now``, else None."""
    claim = await session_claim(request, services, now)
    if claim is None:
        return None
    async with services.db.read() as conn:
        user_id = await claim.user_id(conn, now)
    return None if user_id is None else (claim.session_id, user_id)


def client_address(request: Request, services: Services) -> str:
    """Who is calling, for the throttle: the peer, or what a trusted proxy says it is.

    The proxy's word is the header's last address over all its lines (``Request`` joins
    them): what comes before it is whatever the client sent.
    """
    header = services.settings.client_address_header
    forwarded = request.headers.get(header) if header else None
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64] or request.peer
    return request.peer


def _api_key(request: Request) -> str | None:
    """The ``X-Api-Key`` sent, if any: one of nothing but spaces and tabs (HTTP's
    whitespace) is as good as none, so that a client's empty default does not hide its
    cookie."""
    key = request.headers.get("x-api-key")
    return key if key is not None and key.strip(" \t") else None


async def _key_or_session(
    request: Request, services: Services, now: int
) -> str | SessionClaim | None:
    """What the caller signs in with: the API key, else the session's claim, else None.
    ``X-Api-Key``, when sent, decides alone (SPEC 1), and no session store is asked."""
    api_key = _api_key(request)
    if api_key is not None:
        return api_key
    return await session_claim(request, services, now)


async def _signed_user(
    conn: Connection,
    signed: str | SessionClaim | None,
    request: Request,
    services: Services,
    now: int,
) -> int:
    """The user id of ``signed`` (from ``_key_or_session``), else the contract's refusal."""
    if isinstance(signed, str):
        owner = await auth.user_for_api_key(
            conn,
            signed,
            now,
            client=client_address(request, services),
            budget=services.key_budget,
        )
        services.last_used.note(owner.key_id, now)
        return owner.user_id
    user_id = None if signed is None else await signed.user_id(conn, now)
    if user_id is None:
        raise Refusal("not_logged_in")
    return user_id


async def _session_caller(request: Request, services: Services) -> Caller:
    if _api_key(request) is not None:
        raise Refusal("session_required")
    now = services.clock()
    signed_in = await signed_in_user(request, services, now)
    if signed_in is None:
        raise Refusal("not_logged_in")
    return Caller(signed_in[1], now)

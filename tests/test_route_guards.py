"""Every route carries its guard: walked from the app's route table, so that a route
added later is covered without a word here and cannot forget its guard.

Every admin route refuses a missing or wrong bearer token (``401 admin_unauthorized``)
and, on a server with no token configured, every request (``403 admin_disabled``).
Every customer and session route refuses a request with no credential (``403
not_logged_in``); a session route refuses an API key (``403 session_required``). No
refusal changes a row. Path parameters are filled with values that would otherwise be
found (the ids of a real user and key), so that only the guard can refuse.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from flamel_usage.core.config import Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import ROUTES, App
from flamel_usage.http.routing import Guard, Route
from flamel_usage.metering.outcomes import Held
from tests.conftest import ADMIN_TOKEN, FakeClock
from tests.factories import Factory
from tests.store import table_rows

ADMIN = [route for route in ROUTES if route.guard is Guard.ADMIN]
SIGNED_IN = [route for route in ROUTES if route.guard in (Guard.CUSTOMER, Guard.SESSION)]
SESSION = [route for route in ROUTES if route.guard is Guard.SESSION]
WRONG_TOKENS = [None, "", "Bearer", f"Bearer {ADMIN_TOKEN}x", "Bearer x", f"Basic {ADMIN_TOKEN}"]
_PARAMETER = re.compile(r"\{(\w+)\}")


def _label(route: Route) -> str:
    return f"{route.method} {route.path}"


@dataclass
class Known:
    """Ids that exist, for the path parameters."""

    user_id: int
    key_id: int
    key: str
    hold_id: int


@pytest.fixture
async def known(factory: Factory, db: Database) -> Known:
    user = await factory.user()
    key = await factory.key(user)
    async with db.read() as conn:
        key_id = await conn.fetchval("SELECT id FROM api_keys WHERE user_id = ?", user.id)
    held = await factory.hold(user, "image", "guard-walk-hold")
    assert isinstance(held, Held)
    return Known(user.id, int(key_id), key, held.hold.id)


def _path(route: Route, known: Known) -> str:
    """The route's path with each parameter filled with a valid-looking value."""
    values = {
        "userId": str(known.user_id),
        "keyId": str(known.key_id),
        "holdId": str(known.hold_id),
        "idempotencyKey": "guard-walk",
        "webhookId": "1",
        "deliveryId": "1",
        "name": "pages.css",
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"{_label(route)}: give the path parameter {name} a value here"
        return values[name]

    return _PARAMETER.sub(fill, route.path)


async def _call(
    client: httpx.AsyncClient, route: Route, known: Known, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(
        route.method,
        _path(route, known),
        json={},
        headers={"Idempotency-Key": "guard-walk", "Origin": "http://testserver", **headers},
    )


def _assert_refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == status
    assert body["data"] == reason


@pytest.fixture
async def tokenless(
    environ: dict[str, str], db: Database, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose settings have no FLAMEL_ADMIN_TOKEN."""
    environ = {name: value for name, value in environ.items() if name != "FLAMEL_ADMIN_TOKEN"}
    transport = httpx.ASGITransport(app=App(Settings.from_environ(environ), db, clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def test_the_table_declares_each_route_once_with_the_guard_its_prefix_needs() -> None:
    """An operator path is admin and a customer's own path signed in, whatever a new
    route's author wrote; the table the walks below take is not empty."""
    assert len({(route.method, route.path) for route in ROUTES}) == len(ROUTES)
    for route in ROUTES:
        if route.path.startswith("/api/admin/"):
            assert route.guard is Guard.ADMIN, _label(route)
        elif route.path.startswith("/api/users/me/"):
            assert route.guard in (Guard.CUSTOMER, Guard.SESSION), _label(route)
        else:
            assert route.guard is Guard.PUBLIC, _label(route)
    assert ("PUT", "/api/admin/users/{userId}/plan") in {(r.method, r.path) for r in ADMIN}
    assert ("GET", "/api/users/me/usage") in {(r.method, r.path) for r in SIGNED_IN}


@pytest.mark.parametrize("route", ADMIN, ids=_label)
async def test_every_admin_route_refuses_a_missing_or_wrong_token(
    client: httpx.AsyncClient, db: Database, known: Known, route: Route
) -> None:
    before = await table_rows(db)
    for authorization in WRONG_TOKENS:
        headers = {} if authorization is None else {"Authorization": authorization}
        response = await _call(client, route, known, headers)
        _assert_refused(response, 401, "admin_unauthorized")
    # A customer's credentials are no admin's.
    customer = {"X-Api-Key": known.key, "Authorization": f"Bearer {known.key}"}
    _assert_refused(await _call(client, route, known, customer), 401, "admin_unauthorized")
    assert await table_rows(db) == before


@pytest.mark.parametrize("route", ADMIN, ids=_label)
async def test_every_admin_route_is_disabled_without_a_configured_token(
    tokenless: httpx.AsyncClient, db: Database, known: Known, route: Route
) -> None:
    before = await table_rows(db)
    for authorization in (None, f"Bearer {ADMIN_TOKEN}", "Bearer None", "Bearer "):
        headers = {} if authorization is None else {"Authorization": authorization}
        response = await _call(tokenless, route, known, headers)
        _assert_refused(response, 403, "admin_disabled")
    assert await table_rows(db) == before


@pytest.mark.parametrize("route", SIGNED_IN, ids=_label)
async def test_every_signed_in_route_refuses_a_request_without_credentials(
    client: httpx.AsyncClient, db: Database, known: Known, route: Route
) -> None:
    before = await table_rows(db)
    for headers in ({}, {"X-Api-Key": " \t"}, {"Cookie": "connect.sid=forged"}):
        response = await _call(client, route, known, headers)
        _assert_refused(response, 403, "not_logged_in")
    # The operator's token signs no customer in.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    _assert_refused(await _call(client, route, known, admin), 403, "not_logged_in")
    assert await table_rows(db) == before


@pytest.mark.parametrize("route", SESSION, ids=_label)
async def test_every_session_route_refuses_an_api_key(
    client: httpx.AsyncClient, db: Database, known: Known, route: Route
) -> None:
    before = await table_rows(db)
    for key in (known.key, "flm_wrong"):
        response = await _call(client, route, known, {"X-Api-Key": key})
        _assert_refused(response, 403, "session_required")
    assert await table_rows(db) == before


@pytest.mark.parametrize("route", ADMIN, ids=_label)
async def test_the_right_token_passes_every_admin_guard(
    client: httpx.AsyncClient, known: Known, route: Route
) -> None:
    """The walks above would pass against a guard that refuses everyone: not this one."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = await _call(client, route, known, headers)
    assert response.status_code not in (401, 403), response.text

"""Bad input is answered in the error envelope and changes nothing.

Each test starts from one small world (a plan, a user with a password, a key, a
purchase, an open session), sends something wrong, and then checks the answer's
envelope and that every row of every table and the user's usage are what they were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import orjson
import pytest
from hypothesis import strategies as st

from flamel_usage.core.config import Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import ROUTES, App
from flamel_usage.http.routing import Guard
from tests.conftest import ADMIN_TOKEN, FakeClock
from tests.factories import Factory
from tests.store import table_rows

USAGE = "/api/users/me/usage"
MY_KEYS = "/api/users/me/keys"
PASSWORD = "correct horse battery staple"
ENVELOPE_KEYS = {"success", "code", "data", "message"}
CORE_TABLES = {
    "plans",
    "users",
    "accounts",
    "credit_purchases",
    "api_keys",
    "sessions",
    "ledger_entries",
}
FEW = hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)


@dataclass
class World:
    user_id: int
    key_id: int
    key: str
    cookie: str
    email: str
    #: Writes what the app buffers (keys' last-use times), so a snapshot sees it settled.
    settle: Callable[[], Awaitable[None]]


@pytest.fixture
async def world(client: httpx.AsyncClient, factory: Factory, app: App) -> World:
    plan = await factory.plan(name="pro", credits=100, max_ttp=10, max_edit=5)
    user = await factory.user(plan, password=PASSWORD, email="ada@example.com")
    key = await factory.key(user)
    await factory.purchase(user, 12.5)
    async with factory.db.read() as conn:
        key_id = await conn.fetchval("SELECT id FROM api_keys WHERE user_id = ?", user.id)
    response = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    client.cookies.clear()
    cookie = response.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    return World(
        user.id,
        int(key_id),
        key,
        cookie,
        user.email,
        lambda: app.services.last_used.flush(factory.db),
    )


async def _snapshot(db: Database, client: httpx.AsyncClient, world: World) -> dict[str, Any]:
    """Every row of every table, and the user's usage as the endpoint shows it."""
    response = await client.get(USAGE, headers={"X-Api-Key": world.key})
    assert response.status_code == 200, response.text
    await world.settle()
    rows = await table_rows(db)
    # A refused credential is counted against its client (the throttle's own record,
    # tested in test_throttle.py); it changes nothing the caller owns.
    rows.pop("auth_failures")
    assert set(rows) >= CORE_TABLES
    counts = {table: len(found) for table, found in rows.items()}
    return {"usage": response.json(), **rows, "counts": counts}


class Unchanged:
    """A snapshot taken before the bad request; ``verify`` compares the state after it."""

    def __init__(self, db: Database, client: httpx.AsyncClient, world: World) -> None:
        self.db, self.client, self.world = db, client, world
        self.before: dict[str, Any] = {}

    async def take(self) -> Unchanged:
        self.before = await _snapshot(self.db, self.client, self.world)
        return self

    async def verify(self) -> None:
        after = await _snapshot(self.db, self.client, self.world)
        assert after["counts"] == self.before["counts"]
        assert after == self.before


@pytest.fixture
async def unchanged(db: Database, client: httpx.AsyncClient, world: World) -> Unchanged:
    return await Unchanged(db, client, world).take()


def assert_envelope(
    response: httpx.Response, status: int, reason: str, message: str | None = None
) -> dict[str, Any]:
    """The error envelope with ``status`` and ``reason``; ``message`` pinned when given."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) <= ENVELOPE_KEYS
    assert body["success"] is False
    assert body["code"] == status
    assert body["data"] == reason
    if "message" in body:
        assert isinstance(body["message"], str)
        assert body["message"]
        for leak in (ADMIN_TOKEN, "Traceback", "SELECT", "INSERT", "sqlite", "asyncpg"):
            assert leak not in body["message"]
    if message is not None:
        assert body.get("message") == message
    return body


def _admin_headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}", **extra}


@contextmanager
def case(label: object) -> Iterator[None]:
    """Names the failing case of a loop in the assertion's report."""
    try:
        yield
    except AssertionError as exc:
        exc.add_note(f"failing case: {label!r}")
        raise


# --- headers --------------------------------------------------------------------------------


NON_ASCII_KEYS: dict[str, Callable[[str], bytes]] = {
    "latin1-last-char": lambda key: key[:-1].encode() + b"\xe9",
    "latin1-all": lambda key: b"flm_" + b"\xe9" * 43,
    "utf8-last-char": lambda key: key[:-1].encode() + "é".encode(),
    "utf8-cyrillic": lambda key: "flm_ключ".encode(),
    "high-bytes": lambda key: b"\xff\xfe\xfd",
    "nul-suffix": lambda key: key.encode() + b"\x00",
    "tab-suffix": lambda key: key.encode() + b"\t",
    "del-first": lambda key: b"\x7f" + key.encode()[1:],
}


async def test_non_ascii_api_key(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    for label, make_key in NON_ASCII_KEYS.items():
        with case(label):
            response = await client.get(USAGE, headers={"X-Api-Key": make_key(world.key)})
            assert response.json() == {"success": False, "code": 401, "data": "wrong_api_key"}
            assert_envelope(response, 401, "wrong_api_key")
    await unchanged.verify()


MALFORMED_COOKIES = [
    b"",
    b";",
    b";;;",
    b"connect.sid",
    b"connect.sid=",
    b"=connect.sid",
    b"==;==",
    b"connect.sid=%",
    b"connect.sid=%E0%A4%A",
    b"connect.sid=%C0%AF",
    b"connect.sid=s%3A",
    b"connect.sid=s%3A.",
    b'connect.sid=""',
    b'connect.sid="s%3A',
    b"connect.sid=s%3A\xff\xfe.\xe9",
    b"connect.sid=\xc3\xa9",
    b"connect.sid=s%3A%00.%00",
    b"connect.sid=s%3A%F0%9F%8D%AA.%F0%9F%8D%AA",
    b"connect.sid=" + b"A" * 8000,
    b"connect.sid=s%3A" + b"%41" * 2000 + b".sig",
    b"\xff\xfe=\xfd",
]


async def test_malformed_cookie_header(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    for cookie in MALFORMED_COOKIES:
        with case(cookie[:60]):
            response = await client.get(USAGE, headers={"Cookie": cookie})
            assert response.json() == {"success": False, "code": 403, "data": "not_logged_in"}
            assert_envelope(response, 403, "not_logged_in")
    await unchanged.verify()


async def test_first_of_duplicate_session_cookies_wins(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    """As in the ``cookie`` package Express uses: a garbage first value is not skipped."""
    header = f"connect.sid=garbage; connect.sid={world.cookie}"
    assert_envelope(await client.get(USAGE, headers={"Cookie": header}), 403, "not_logged_in")
    header = f"connect.sid={world.cookie}; connect.sid=garbage"
    assert (await client.get(USAGE, headers={"Cookie": header})).status_code == 200
    await unchanged.verify()


async def test_session_cookie_on_a_second_cookie_line_is_read(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    """Node joins repeated Cookie lines with "; " before Express reads them: the session
    is found on either line, and the first ``connect.sid`` still wins."""
    second_line = [("Cookie", "lang=ko"), ("Cookie", f"connect.sid={world.cookie}")]
    assert (await client.get(USAGE, headers=second_line)).status_code == 200
    first_wins = [("Cookie", "connect.sid=garbage"), ("Cookie", f"connect.sid={world.cookie}")]
    assert_envelope(await client.get(USAGE, headers=first_wins), 403, "not_logged_in")
    await unchanged.verify()


# --- request bodies ------------------------------------------------------------------------------


def _credentials(world: World, path: str) -> dict[str, str]:
    """What ``path`` takes: the session cookie for the caller's own keys (which refuse an
    API key and ignore the admin token), the admin token everywhere else."""
    if path.startswith(MY_KEYS):
        return {"Cookie": f"connect.sid={world.cookie}"}
    return _admin_headers()


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    valid: dict[str, Any]
    headers: dict[str, str] = dataclasses.field(default_factory=_admin_headers)


def _endpoints(world: World) -> dict[str, Endpoint]:
    """Every operation that reads a JSON body, with a body it accepts."""
    return {
        "create-my-key": Endpoint(
            "POST",
            MY_KEYS,
            {"name": "laptop", "expiresAt": "2027-01-01T00:00:00+00:00"},
            _credentials(world, MY_KEYS),
        ),
        "create-plan": Endpoint(
            "POST", "/api/admin/plans", {"name": "new-plan", "periodUnit": "month", "maxCredit": 10}
        ),
        "create-user": Endpoint(
            "POST",
            "/api/admin/users",
            {"email": "new@example.com", "plan": "pro", "password": "long enough"},
        ),
        "create-key": Endpoint("POST", f"/api/admin/users/{world.user_id}/keys", {}),
        "update-key": Endpoint("PATCH", f"/api/admin/keys/{world.key_id}", {"expiresAt": None}),
        "buy-credits": Endpoint("POST", f"/api/admin/users/{world.user_id}/credits", {"amount": 5}),
        "login": Endpoint(
            "POST", "/api/auth/login", {"email": "ada@example.com", "password": PASSWORD}
        ),
    }


ENDPOINTS = [
    "create-plan",
    "create-user",
    "create-key",
    "update-key",
    "buy-credits",
    "login",
    "create-my-key",
]


async def _send(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    content: bytes,
    content_type: str | None = "application/json",
) -> httpx.Response:
    headers = dict(endpoint.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.request(
        endpoint.method, endpoint.path, content=content, headers=headers
    )
    client.cookies.clear()
    return response


async def test_the_valid_bodies_are_valid(client: httpx.AsyncClient, world: World) -> None:
    """The bodies the tests below spoil are accepted as they are (so a 400 is the spoiling's)."""
    for name in ENDPOINTS:
        endpoint = _endpoints(world)[name]
        response = await _send(client, endpoint, orjson.dumps(endpoint.valid))
        assert response.status_code in (200, 201, 204), (name, response.text)


INVALID_JSON = [
    b"",
    b" ",
    b"{",
    b"{'name': 1}",
    b'{"a": 1,}',
    b'{"a" 1}',
    b"nul",
    b"NaN",
    b'{"maxCredit": NaN}',
    b'{"maxCredit": Infinity}',
    b'{"maxCredit": -Infinity}',
    b'{"maxCredit": 1e400}',
    b'{"amount": 1e400}',
    b"\xff\xfe{}",
    b'{"a": "\xff"}',
    b'{"a": "\\ud800"}',
    b"{}{}",
    b"[1, 2",
    b"[" * 30_000 + b"]" * 30_000,
    b"// comment\n{}",
]


@pytest.mark.parametrize("name", ENDPOINTS)
async def test_invalid_json(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged, name: str
) -> None:
    for content in INVALID_JSON:
        with case(content[:40]):
            response = await _send(client, _endpoints(world)[name], content)
            assert_envelope(response, 400, "bad_request", "the body is not valid JSON")
    await unchanged.verify()


@pytest.mark.parametrize("name", ENDPOINTS)
async def test_json_that_is_not_an_object(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged, name: str
) -> None:
    endpoint = _endpoints(world)[name]
    for data in ([], [endpoint.valid], "string", "{}", 1, 1.5, True, False, None):
        with case(data):
            response = await _send(client, endpoint, orjson.dumps(data))
            assert_envelope(response, 400, "bad_request", "the body must be a JSON object")
    await unchanged.verify()


@pytest.mark.parametrize("name", ENDPOINTS)
async def test_unknown_field(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged, name: str
) -> None:
    endpoint = _endpoints(world)[name]
    for field in ("extra", "MaxCredit", "maxTTPCount", "", "__proto__", "id", "e-mail"):
        with case(field):
            response = await _send(client, endpoint, orjson.dumps({**endpoint.valid, field: 1}))
            assert_envelope(response, 400, "bad_request", f"unknown field {field!r}")
    await unchanged.verify()


MISSING = [
    ("create-plan", "name"),
    ("create-plan", "periodUnit"),
    ("create-plan", "maxCredit"),
    ("create-user", "email"),
    ("create-user", "plan"),
    ("update-key", "expiresAt"),
    ("buy-credits", "amount"),
    ("login", "email"),
    ("login", "password"),
]


@pytest.mark.parametrize(("name", "field"), MISSING)
async def test_missing_required_field(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged, name: str, field: str
) -> None:
    endpoint = _endpoints(world)[name]
    body = {key: value for key, value in endpoint.valid.items() if key != field}
    response = await _send(client, endpoint, orjson.dumps(body))
    assert field in assert_envelope(response, 400, "bad_request")["message"]
    await unchanged.verify()


async def test_empty_object_names_the_first_missing_field(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    for name in ("create-plan", "create-user", "update-key", "buy-credits", "login"):
        with case(name):
            response = await _send(client, _endpoints(world)[name], b"{}")
            assert "is required" in assert_envelope(response, 400, "bad_request")["message"]

    await unchanged.verify()


#: (endpoint, field, value, expected reason)
BAD_VALUES: list[tuple[str, str, Any, str]] = [
    ("create-plan", "maxCredit", "10", "bad_request"),
    ("create-plan", "maxCredit", "abc", "bad_request"),
    ("create-plan", "maxCredit", True, "bad_request"),
    ("create-plan", "maxCredit", False, "bad_request"),
    ("create-plan", "maxCredit", None, "bad_request"),
    ("create-plan", "maxCredit", [10], "bad_request"),
    ("create-plan", "maxCredit", {"value": 10}, "bad_request"),
    ("create-plan", "maxCredit", -1, "bad_request"),
    ("create-plan", "maxCredit", -0.001, "bad_request"),
    ("create-plan", "maxCredit", 0.0001, "bad_request"),
    ("create-plan", "maxCredit", 1.2345, "bad_request"),
    ("create-plan", "maxCredit", 1e20, "bad_request"),
    ("create-plan", "maxCredit", 10**13, "bad_request"),
    ("create-plan", "maxCredit", 1.7976931348623157e308, "bad_request"),
    ("create-plan", "maxTtpCount", "3", "bad_request"),
    ("create-plan", "maxTtpCount", 1.5, "bad_request"),
    ("create-plan", "maxTtpCount", 3.0, "bad_request"),
    ("create-plan", "maxTtpCount", -1, "bad_request"),
    ("create-plan", "maxTtpCount", True, "bad_request"),
    ("create-plan", "maxTtpCount", 2**63, "bad_request"),
    ("create-plan", "maxTtpCount", 2**64 - 1, "bad_request"),
    ("create-plan", "maxEditCount", -5, "bad_request"),
    ("create-plan", "maxEditCount", "unlimited", "bad_request"),
    ("create-plan", "name", "", "bad_request"),
    ("create-plan", "name", " leading-space", "bad_request"),
    ("create-plan", "name", "x" * 65, "bad_request"),
    ("create-plan", "name", "bad/name", "bad_request"),
    ("create-plan", "name", "nul\x00name", "bad_request"),
    ("create-plan", "name", "pro\n", "bad_request"),
    ("create-plan", "name", 123, "bad_request"),
    ("create-plan", "name", None, "bad_request"),
    ("create-plan", "name", "pro", "plan_exists"),
    ("create-plan", "name", "PRO", "plan_exists"),
    ("create-plan", "name", "pro ", "bad_request"),
    ("create-plan", "name", "pro\u200b", "bad_request"),
    ("create-plan", "periodUnit", "week", "bad_request"),
    ("create-plan", "periodUnit", "Month", "bad_request"),
    ("create-plan", "periodUnit", 1, "bad_request"),
    ("create-plan", "billingMode", "free", "bad_request"),
    ("create-plan", "billingMode", True, "bad_request"),
    ("create-user", "email", "not-an-email", "bad_request"),
    ("create-user", "email", "", "bad_request"),
    ("create-user", "email", 5, "bad_request"),
    ("create-user", "email", "a@" + "b" * 300, "bad_request"),
    ("create-user", "email", "ADA@example.com", "user_exists"),
    ("create-user", "email", "nul\x00@example.com", "bad_request"),
    ("create-user", "email", "ada\u202e@example.com", "bad_request"),
    ("create-user", "email", "new\u200b@example.com", "bad_request"),
    ("create-user", "plan", 1, "bad_request"),
    ("create-user", "plan", "", "plan_not_found"),
    ("create-user", "plan", "no-such-plan", "plan_not_found"),
    ("create-user", "plan", "pro\x00", "bad_request"),
    ("create-user", "password", "short", "bad_request"),
    ("create-user", "password", 12345678, "bad_request"),
    ("create-user", "anchor", "2026-11-25T10:00:00", "bad_request"),
    ("create-user", "anchor", "yesterday", "bad_request"),
    ("create-user", "anchor", "0001-01-01T00:00:00+00:00", "bad_request"),
    ("create-user", "anchor", "9999-12-31T23:59:59+00:00", "bad_request"),
    ("create-user", "anchor", 1_700_000_000, "bad_request"),
    ("create-key", "expiresAt", "2026-11-25T10:00:00", "bad_request"),
    ("create-key", "expiresAt", "2026-13-01T00:00:00+00:00", "bad_request"),
    ("create-key", "expiresAt", "2026-11-25T10:00:00+25:00", "bad_request"),
    ("create-key", "expiresAt", 0, "bad_request"),
    ("create-key", "expiresAt", True, "bad_request"),
    ("create-key", "expiresAt", "x" * 100, "bad_request"),
    ("update-key", "expiresAt", "soon", "bad_request"),
    ("update-key", "expiresAt", 1, "bad_request"),
    ("update-key", "expiresAt", [], "bad_request"),
    *[
        (endpoint, "name", value, "bad_request")
        for endpoint in ("create-key", "update-key", "create-my-key")
        for value in (
            5,
            True,
            ["laptop"],
            {"name": "laptop"},
            "",
            "   ",
            "\t\n",
            "x" * 65,
            " " + "x" * 65 + " ",
            "x" * 257,
            "lap\u202etop",  # RIGHT-TO-LEFT OVERRIDE: shows the rest backwards
            "lap\u200btop",  # ZERO WIDTH SPACE
            "\u2066laptop\u2069",  # an isolate, a bidirectional control too
            "lap\x00top",
            "lap\ntop",
        )
    ],
    ("create-my-key", "expiresAt", 0, "bad_request"),
    ("create-my-key", "expiresAt", 1_800_000_000, "bad_request"),
    ("create-my-key", "expiresAt", True, "bad_request"),
    ("create-my-key", "expiresAt", ["2027-01-01T00:00:00+00:00"], "bad_request"),
    ("create-my-key", "expiresAt", {"at": "2027-01-01T00:00:00+00:00"}, "bad_request"),
    ("create-my-key", "expiresAt", "2027-01-01T00:00:00", "bad_request"),  # no offset
    ("create-my-key", "expiresAt", "2027-01-01", "bad_request"),
    ("create-my-key", "expiresAt", "next week", "bad_request"),
    ("create-my-key", "expiresAt", "2027-02-30T00:00:00+00:00", "bad_request"),
    ("create-my-key", "expiresAt", "2027-01-01T00:00:00+24:00", "bad_request"),
    ("create-my-key", "expiresAt", "9999-12-31T23:59:59+00:00", "bad_request"),
    ("create-my-key", "expiresAt", "x" * 100, "bad_request"),
    ("create-my-key", "expiresAt", "2020-01-01T00:00:00+00:00", "bad_request"),  # the past
    ("create-my-key", "expiresAt", "2026-11-25T10:00:00+00:00", "bad_request"),  # now
    ("create-my-key", "expiresAt", "2026-11-25T19:00:00+09:00", "bad_request"),  # now, in Seoul
    ("buy-credits", "amount", 0, "bad_request"),
    ("buy-credits", "amount", 0.0, "bad_request"),
    ("buy-credits", "amount", -5, "bad_request"),
    ("buy-credits", "amount", "5", "bad_request"),
    ("buy-credits", "amount", "NaN", "bad_request"),
    ("buy-credits", "amount", "Infinity", "bad_request"),
    ("buy-credits", "amount", "sNaN", "bad_request"),
    ("buy-credits", "amount", 0.0001, "bad_request"),
    ("buy-credits", "amount", 1e20, "bad_request"),
    ("buy-credits", "amount", True, "bad_request"),
    ("buy-credits", "amount", None, "bad_request"),
    ("buy-credits", "expiresAt", "2026-11-25", "bad_request"),
    ("buy-credits", "expiresAt", 5, "bad_request"),
    ("login", "email", 5, "bad_request"),
    ("login", "email", None, "bad_request"),
    ("login", "email", "x" * 255, "bad_request"),
    ("login", "password", 12345678, "bad_request"),
    ("login", "password", ["x"], "bad_request"),
    ("login", "email", "ada\x00@example.com", "bad_request"),
    ("login", "password", "nul\x00password", "bad_request"),
]
STATUS = {
    "bad_request": 400,
    "invalid_credentials": 401,
    "plan_not_found": 404,
    "plan_exists": 409,
    "user_exists": 409,
}


def _bad_value_params() -> list[Any]:
    return [
        pytest.param(name, field, value, reason, id=f"{name}-{field}-{value!r}"[:60])
        for name, field, value, reason in BAD_VALUES
    ]


@pytest.mark.parametrize(("name", "field", "value", "reason"), _bad_value_params())
async def test_wrong_value(
    db: Database,
    client: httpx.AsyncClient,
    world: World,
    unchanged: Unchanged,
    name: str,
    field: str,
    value: Any,
    reason: str,
) -> None:
    endpoint = _endpoints(world)[name]
    response = await _send(client, endpoint, orjson.dumps({**endpoint.valid, field: value}))
    body = assert_envelope(response, STATUS[reason], reason)
    if reason == "bad_request":
        assert field.lower() in body.get("message", "").lower(), body
    await unchanged.verify()


async def test_a_bad_name_leaves_a_valid_expiry_unset_too(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    """One PATCH is one change: the expiry it would set is not kept when its name is refused."""
    endpoint = _endpoints(world)["update-key"]
    body = {"expiresAt": "2030-01-01T00:00:00+00:00", "name": "lap\u202etop"}
    response = await _send(client, endpoint, orjson.dumps(body))
    assert "U+202E" in assert_envelope(response, 400, "bad_request")["message"]
    await unchanged.verify()


WRONG_CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonp",
    "application/json-patch+json",
    "text/json",
    "",
]


@pytest.mark.parametrize("name", ENDPOINTS)
async def test_wrong_content_type(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged, name: str
) -> None:
    endpoint = _endpoints(world)[name]
    for content_type in WRONG_CONTENT_TYPES:
        with case(content_type):
            response = await _send(client, endpoint, orjson.dumps(endpoint.valid), content_type)
            assert_envelope(
                response, 415, "unsupported_media_type", "send the body as application/json"
            )
    await unchanged.verify()


async def test_json_content_type_variants_are_accepted(
    client: httpx.AsyncClient, world: World
) -> None:
    endpoint = _endpoints(world)["create-plan"]
    for index, content_type in enumerate(
        ["application/json; charset=utf-8", "Application/JSON", " application/json ;x=y", None]
    ):
        body = {**endpoint.valid, "name": f"variant-{index}"}
        response = await _send(client, endpoint, orjson.dumps(body), content_type)
        assert response.status_code == 201, (content_type, response.text)


@pytest.mark.parametrize("name", ENDPOINTS)
async def test_body_over_64_kib(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged, name: str
) -> None:
    endpoint = _endpoints(world)[name]
    content = orjson.dumps({**endpoint.valid, "padding": "p" * (64 * 1024)})
    assert len(content) > 64 * 1024
    response = await _send(client, endpoint, content)
    assert_envelope(response, 413, "payload_too_large", "request body exceeds 65536 bytes")
    await unchanged.verify()


async def test_body_limit_is_exactly_64_kib(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    endpoint = _endpoints(world)["create-plan"]
    base = orjson.dumps({**endpoint.valid, "name": ""})
    fits = base.replace(b'"name":""', b'"name":"' + b"n" * (64 * 1024 - len(base)) + b'"')
    assert len(fits) == 64 * 1024
    # Exactly the limit is read (and refused for its long name); one byte more is not read.
    response = await _send(client, endpoint, fits)
    assert_envelope(response, 400, "bad_request", "name is longer than 64 characters")
    response = await _send(client, endpoint, fits + b" ")
    assert_envelope(response, 413, "payload_too_large")
    await unchanged.verify()


async def test_streamed_body_over_64_kib_without_content_length(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "streamed", "periodUnit": "month", "maxCredit": 1, "x": "'
        for _ in range(70):
            yield b"s" * 1024
        yield b'"}'

    response = await client.post(
        "/api/admin/plans",
        content=chunks(),
        headers=_admin_headers(**{"Content-Type": "application/json"}),
    )
    assert "content-length" not in response.request.headers
    assert_envelope(response, 413, "payload_too_large")
    await unchanged.verify()


async def test_understated_content_length_does_not_bypass_the_limit(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    content = orjson.dumps(
        {"name": "liar", "periodUnit": "month", "maxCredit": 1, "x": "l" * 70_000}
    )
    response = await client.post(
        "/api/admin/plans",
        content=content,
        headers=_admin_headers(**{"Content-Type": "application/json", "Content-Length": "10"}),
    )
    assert_envelope(response, 413, "payload_too_large")
    await unchanged.verify()


# --- routes, methods, ids ----------------------------------------------------------------------

UNKNOWN_ROUTES = [
    ("GET", "/api/users/me/usage/"),
    ("GET", "/api/users/me"),
    ("GET", "/api/users/me/usage/extra"),
    ("GET", "/API/users/me/usage"),
    ("GET", "/api/users/1/usage"),
    ("GET", "/api/users/me/usage%00"),
    ("POST", "/api/nope"),
    ("GET", "/api/admin/users/1/unknown"),
    ("GET", "/api/admin/users//keys"),
    ("GET", "/api/admin/keys"),
    ("DELETE", "/api/admin/keys/1/revoke/now"),
    ("GET", "/.env"),
    ("GET", "/api/admin/../admin/plans/x"),
]


async def test_unknown_routes(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    for method, path in UNKNOWN_ROUTES:
        with case((method, path)):
            response = await client.request(
                method, path, headers=_admin_headers(**{"X-Api-Key": world.key})
            )
            assert_envelope(response, 404, "not_found", "no such route")
    await unchanged.verify()


WRONG_METHODS = [
    ("POST", "/api/users/me/usage"),
    ("PUT", "/api/users/me/usage"),
    ("DELETE", "/api/users/me/usage"),
    ("PATCH", "/api/users/me/usage"),
    ("TRACE", "/api/users/me/usage"),
    ("BREW", "/api/users/me/usage"),
    ("GET", "/api/auth/login"),
    ("PUT", "/api/auth/login"),
    ("GET", "/api/auth/logout"),
    ("DELETE", "/api/admin/plans"),
    ("PUT", "/api/admin/plans"),
    ("GET", "/api/admin/users"),
    ("PUT", "/api/admin/users/1"),
    ("DELETE", "/api/admin/users/1/keys"),
    ("GET", "/api/admin/keys/1"),
    ("PUT", "/api/admin/keys/1"),
    ("GET", "/api/admin/keys/1/revoke"),
    ("POST", "/api/admin/reconcile"),
    ("PUT", MY_KEYS),
    ("PATCH", MY_KEYS),
    ("DELETE", MY_KEYS),
    ("GET", MY_KEYS + "/1"),
    ("POST", MY_KEYS + "/1"),
    ("PATCH", MY_KEYS + "/1"),
]


async def test_wrong_methods(client: httpx.AsyncClient, world: World, unchanged: Unchanged) -> None:
    for method, path in WRONG_METHODS:
        with case((method, path)):
            response = await client.request(
                method,
                path,
                content=orjson.dumps({"amount": 1}),
                headers=_admin_headers(**{"X-Api-Key": world.key}),
            )
            assert_envelope(response, 405, "method_not_allowed", f"{method} is not allowed here")
    await unchanged.verify()


ID_ROUTES = [
    ("DELETE", "/api/admin/users/{}", None),
    ("GET", "/api/admin/users/{}/usage", None),
    ("POST", "/api/admin/users/{}/keys", {}),
    ("GET", "/api/admin/users/{}/keys", None),
    ("PATCH", "/api/admin/keys/{}", {"expiresAt": None}),
    ("POST", "/api/admin/keys/{}/revoke", None),
    ("POST", "/api/admin/users/{}/credits", {"amount": 1}),
    ("DELETE", MY_KEYS + "/{}", None),
]
BAD_IDS = [
    "abc",
    "-1",
    "+1",
    "1.5",
    "1e3",
    "0x1",
    "1_000",
    "99999999999999999999",
    "9" * 100,
    "%D9%A1",  # ARABIC-INDIC DIGIT ONE
    "%EF%BC%91",  # FULLWIDTH DIGIT ONE
    "%C2%B9",  # SUPERSCRIPT ONE: str.isdigit() is true for it
    "%201",
    "1%20",
    "%2F1",
    "%00",
    "null",
    "%FF",
]


async def _id_call(
    client: httpx.AsyncClient, world: World, method: str, template: str, body: Any, path_id: str
) -> httpx.Response:
    headers = _credentials(world, template)
    if body is not None:
        headers["Content-Type"] = "application/json"
    return await client.request(
        method,
        template.format(path_id),
        content=None if body is None else orjson.dumps(body),
        headers=headers,
    )


@pytest.mark.parametrize(("method", "template", "body"), ID_ROUTES)
async def test_bad_path_ids(
    client: httpx.AsyncClient,
    world: World,
    unchanged: Unchanged,
    method: str,
    template: str,
    body: Any,
) -> None:
    for bad_id in BAD_IDS:
        with case(bad_id):
            response = await _id_call(client, world, method, template, body, bad_id)
            assert_envelope(response, 400, "bad_request")
    await unchanged.verify()


@pytest.mark.parametrize(("method", "template", "body"), ID_ROUTES)
async def test_well_formed_unknown_path_ids(
    client: httpx.AsyncClient,
    world: World,
    unchanged: Unchanged,
    method: str,
    template: str,
    body: Any,
) -> None:
    reason = "key_not_found" if "/keys/" in template else "user_not_found"
    for missing_id in ("0", "999999", "999999999999999999", "0001000"):
        with case(missing_id):
            response = await _id_call(client, world, method, template, body, missing_id)
            assert_envelope(response, 404, reason)
    await unchanged.verify()


# --- admin authorisation ------------------------------------------------------------------------

#: A body each admin write would take, so that a refusal is the token's alone.
ADMIN_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/admin/plans"): {"name": "sneaky", "periodUnit": "month", "maxCredit": 1},
    ("POST", "/api/admin/users"): {"email": "sneaky@example.com", "plan": "pro"},
    ("POST", "/api/admin/users/{userId}/keys"): {},
    ("PATCH", "/api/admin/keys/{keyId}"): {"expiresAt": "2020-01-01T00:00:00+00:00"},
    ("POST", "/api/admin/users/{userId}/credits"): {"amount": 1000},
    ("PUT", "/api/admin/users/{userId}/plan"): {"plan": "pro"},
    ("POST", "/api/admin/charges"): {"userId": 1, "kind": "image"},
}
#: Every admin route of the app's table (a new one is covered without a word here).
ADMIN_ROUTES = [
    (route.method, route.path, ADMIN_BODIES.get((route.method, route.path)))
    for route in ROUTES
    if route.guard is Guard.ADMIN
]


async def _admin_call(
    client: httpx.AsyncClient,
    world: World,
    route: tuple[str, str, Any],
    headers: dict[str, str],
) -> httpx.Response:
    method, template, body = route
    path = (
        template.replace("{userId}", str(world.user_id))
        .replace("{keyId}", str(world.key_id))
        .replace("{idempotencyKey}", "guard-test")
    )
    return await client.request(
        method,
        path,
        content=None if body is None else orjson.dumps(body),
        headers={"Content-Type": "application/json", "Idempotency-Key": "guard-test", **headers},
    )


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        f"Bearer {ADMIN_TOKEN.upper()}",
        "Bearer wrong-token",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        f"Token {ADMIN_TOKEN}",
        f"Bearer{ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN} {ADMIN_TOKEN}",
    ],
)
async def test_admin_without_the_right_token(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for route in ADMIN_ROUTES:
        with case(route[:2]):
            response = await _admin_call(client, world, route, headers)
            assert_envelope(
                response,
                401,
                "admin_unauthorized",
                "send Authorization: Bearer <admin token>",
            )
    await unchanged.verify()


async def test_admin_with_an_api_key_or_session_is_refused(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    headers = {"X-Api-Key": world.key, "Cookie": f"connect.sid={world.cookie}"}
    for route in ADMIN_ROUTES:
        with case(route[:2]):
            response = await _admin_call(client, world, route, headers)
            assert_envelope(response, 401, "admin_unauthorized")
    await unchanged.verify()


async def test_admin_token_is_checked_before_the_body(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged
) -> None:
    """Without the token a caller learns nothing about validation, ids or size limits."""
    for content, content_type in [
        (b"{", "application/json"),
        (b"x" * (70 * 1024), "application/json"),
        (b"{}", "text/plain"),
    ]:
        with case((content[:10], content_type)):
            response = await client.post(
                "/api/admin/plans", content=content, headers={"Content-Type": content_type}
            )
            assert_envelope(response, 401, "admin_unauthorized")
    response = await client.delete("/api/admin/users/not-a-number")
    assert_envelope(response, 401, "admin_unauthorized")
    await unchanged.verify()


@pytest.fixture
async def tokenless_client(
    environ: dict[str, str], db: Database, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose settings have no FLAMEL_ADMIN_TOKEN."""
    settings = Settings.from_environ(
        {name: value for name, value in environ.items() if name != "FLAMEL_ADMIN_TOKEN"}
    )
    assert settings.admin_token is None
    transport = httpx.ASGITransport(app=App(settings, db, clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.mark.parametrize(
    "authorization", [None, f"Bearer {ADMIN_TOKEN}", "Bearer ", "Bearer x", "Bearer None"]
)
async def test_admin_disabled_without_a_configured_token(
    tokenless_client: httpx.AsyncClient,
    world: World,
    unchanged: Unchanged,
    authorization: str | None,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for route in ADMIN_ROUTES:
        with case(route[:2]):
            response = await _admin_call(tokenless_client, world, route, headers)
            assert_envelope(
                response, 403, "admin_disabled", "no admin token is configured on this server"
            )
    await unchanged.verify()


async def test_public_endpoints_still_work_without_a_configured_token(
    tokenless_client: httpx.AsyncClient, world: World
) -> None:
    response = await tokenless_client.get(USAGE, headers={"X-Api-Key": world.key})
    assert response.status_code == 200
    response = await tokenless_client.get(USAGE, headers={"Cookie": f"connect.sid={world.cookie}"})
    assert response.status_code == 200


# --- property tests -------------------------------------------------------------------------------

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


PLAN_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["pro", "Basic", "a b", "", "x" * 65, "ok-name"]) | JSON_LEAVES,
        "periodUnit": st.sampled_from(["month", "year", "week", ""]) | JSON_LEAVES,
        "maxCredit": st.sampled_from([0, 1, 0.5, 0.0005, -1, 1e20, 10**13]) | JSON_LEAVES,
        "maxTtpCount": st.sampled_from([None, 0, 5, -1, 2**63]) | JSON_LEAVES,
        "maxEditCount": st.sampled_from([None, 0, 5, -1, 1.5]) | JSON_LEAVES,
        "billingMode": st.sampled_from(["prepaid", "postpaid", "free"]) | JSON_LEAVES,
        "extra": JSON_VALUES,
    },
)


@FEW
@hypothesis.given(data=JSON_VALUES)
async def test_random_json_to_create_plan_is_a_bad_request(
    client: httpx.AsyncClient, db: Database, world: World, data: Any
) -> None:
    hypothesis.assume(not isinstance(data, dict) or not {"name", "periodUnit"} <= set(data))
    before = await _snapshot(db, client, world)
    response = await client.post(
        "/api/admin/plans", content=orjson.dumps(data), headers=_admin_headers()
    )
    assert_envelope(response, 400, "bad_request")
    assert await _snapshot(db, client, world) == before


@FEW
@hypothesis.given(data=PLAN_BODIES)
async def test_random_plan_fields_answer_an_envelope_or_the_plan(
    client: httpx.AsyncClient, db: Database, world: World, data: dict[str, Any]
) -> None:
    before = await _snapshot(db, client, world)
    response = await client.post(
        "/api/admin/plans", content=orjson.dumps(data), headers=_admin_headers()
    )
    assert response.status_code != 500, response.text
    if response.status_code == 201:
        plan = response.json()
        assert plan["name"] == data["name"]
        assert plan["periodUnit"] == data["periodUnit"]
        assert plan["maxCredit"] == data["maxCredit"]
        assert plan["maxTtpCount"] == data.get("maxTtpCount")
        assert plan["maxEditCount"] == data.get("maxEditCount")
        assert plan["billingMode"] == (data.get("billingMode") or "prepaid")
        after = await _snapshot(db, client, world)
        assert after["counts"]["plans"] == before["counts"]["plans"] + 1
        return
    body = assert_envelope(response, response.status_code, response.json().get("data"))
    assert response.status_code in (400, 409), body
    assert await _snapshot(db, client, world) == before


API_KEY_VALUES = (
    st.binary(max_size=80).filter(lambda raw: not set(raw) & {0x0A, 0x0D})
    | st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n"), max_size=60).map(
        str.encode
    )
    | st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        min_size=43,
        max_size=43,
    ).map(lambda tail: f"flm_{tail}".encode())
)


@FEW
@hypothesis.given(raw=API_KEY_VALUES)
async def test_random_api_keys_are_refused_and_change_nothing(
    client: httpx.AsyncClient, db: Database, world: World, raw: bytes
) -> None:
    before = await _snapshot(db, client, world)
    response = await client.get(USAGE, headers={"X-Api-Key": raw})
    assert response.status_code != 500, response.text
    if response.status_code == 429:  # a guard against key guessing may slow us down
        assert_envelope(response, 429, response.json()["data"])
    elif not raw.strip(b" \t"):  # a blank key is no key: the (absent) cookie decides
        assert response.json() == {"success": False, "code": 403, "data": "not_logged_in"}
    else:
        assert response.json() == {"success": False, "code": 401, "data": "wrong_api_key"}
    assert await _snapshot(db, client, world) == before


@FEW
@hypothesis.given(raw=st.binary(max_size=200).filter(lambda raw: not set(raw) & {0x0A, 0x0D}))
async def test_random_cookie_headers_are_not_logged_in(
    client: httpx.AsyncClient, db: Database, world: World, raw: bytes
) -> None:
    before = await _snapshot(db, client, world)
    for header in (raw, b"connect.sid=" + raw, b"connect.sid=s%3A" + raw):
        response = await client.get(USAGE, headers={"Cookie": header})
        assert response.json() == {"success": False, "code": 403, "data": "not_logged_in"}
    assert await _snapshot(db, client, world) == before


# --- the usage history's query ------------------------------------------------------------

HISTORY = "/api/users/me/usage/history"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("from=yesterday", "invalid_range"),
        ("from=", "invalid_range"),
        ("to=2026-02-30", "invalid_range"),
        ("to=2026-11-30T10:00:00", "invalid_range"),  # an instant needs its offset
        ("from=1969-12-31", "invalid_range"),
        ("from=9001-01-01T00:00:00Z", "invalid_range"),
        ("from=%EF%BC%92026-11-01", "invalid_range"),  # a full-width digit
        ("from=2026-11-30&to=2026-11-01", "invalid_range"),
        ("from=2026-11-30&to=2026-11-30", "invalid_range"),
        ("from=2026-01-01&to=2027-01-02T00:00:01Z", "range_too_long"),
        ("from=2026-12-01&to=2027-01-02&granularity=hour", "range_too_long"),
        ("from=9000-01-01&to=9000-12-31T23:59:59Z&granularity=hour", "range_too_long"),
        ("granularity=week", "invalid_granularity"),
        ("granularity=", "invalid_granularity"),
        ("granularity=DAY", "invalid_granularity"),
        ("format=xml", "invalid_format"),
        ("format=CSV", "invalid_format"),
    ],
)
async def test_bad_history_query(
    client: httpx.AsyncClient, world: World, unchanged: Unchanged, query: str, reason: str
) -> None:
    response = await client.get(f"{HISTORY}?{query}", headers={"X-Api-Key": world.key})
    assert_envelope(response, 400, reason)
    await unchanged.verify()


async def test_history_ranges_at_their_limits_are_accepted(
    client: httpx.AsyncClient, world: World
) -> None:
    for query in (
        "from=2028-01-01&to=2029-01-01",
        "from=2026-11-01&to=2026-12-02",
        "from=2026-12-01&to=2027-01-01&granularity=hour",
        "from=9000-12-01&to=9000-12-31T23:59:59Z",
    ):
        response = await client.get(f"{HISTORY}?{query}", headers={"X-Api-Key": world.key})
        assert response.status_code == 200, (query, response.text)


@FEW
@hypothesis.given(
    field=st.sampled_from(["from", "to", "granularity", "format"]),
    value=st.text(max_size=40),
)
async def test_random_history_query_values_answer_an_envelope_or_the_history(
    client: httpx.AsyncClient, db: Database, world: World, field: str, value: str
) -> None:
    before = await _snapshot(db, client, world)
    response = await client.get(HISTORY, params={field: value}, headers={"X-Api-Key": world.key})
    if response.status_code != 200:
        assert_envelope(response, 400, response.json()["data"])
    assert await _snapshot(db, client, world) == before

"""The platform's sessions, read from its connect-redis or connect-pg-simple store (SPEC 7).

In-process, against the real stores: each test writes the sessions it needs in the
stores' own formats (``tests.platform_stores``), so it can also make the states the real
Express app never makes (a cookie expiry that disagrees with the store's, a user field of
the wrong type). ``test_platform_interop.py`` signs in on the real Express app instead.
Every test runs on both stores and both of our databases.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from flamel_usage.accounts import users as accounts
from flamel_usage.auth.cookies import new_session_id, session_cookie_value
from flamel_usage.auth.platform_sessions import session_tag
from flamel_usage.core.config import ConfigError, Settings
from flamel_usage.core.periods import from_micros
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from tests.conftest import SESSION_SECRET, FakeClock
from tests.factories import Factory
from tests.platform_stores import (
    REDIS_URL,
    SCHEMA,
    TABLE,
    platform_database,
    redis_prefix,
    stored_session,
    write_session,
)
from tests.processes import free_port

USAGE = "/api/users/me/usage"
LOGIN_URL = "https://platform.example.com/login"
OLD_SECRET = "an-old-secret-that-signed-cookies-before-rotation"
NEW_SECRET = "the-new-secret-that-signs-every-cookie-from-now-on"


@pytest.fixture(scope="session")
def redis_session_prefix() -> Iterator[str]:
    with redis_prefix() as prefix:
        yield prefix


@pytest.fixture(scope="session")
def platform_postgres() -> Iterator[str]:
    with platform_database() as url:
        yield url


@pytest.fixture(params=["redis", "postgresql"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def where(store: str, request: pytest.FixtureRequest) -> str:
    """The Redis key prefix, or the platform's PostgreSQL URL."""
    fixture = "redis_session_prefix" if store == "redis" else "platform_postgres"
    return str(request.getfixturevalue(fixture))


def _store_settings(store: str, where: str) -> dict[str, str]:
    if store == "redis":
        return {"FLAMEL_SESSION_STORE": REDIS_URL, "FLAMEL_SESSION_STORE_PREFIX": where}
    return {
        "FLAMEL_SESSION_STORE": where,
        "FLAMEL_SESSION_STORE_SCHEMA": SCHEMA,
        "FLAMEL_SESSION_STORE_TABLE": TABLE,
    }


@pytest.fixture
def environ(environ: dict[str, str], store: str, where: str) -> dict[str, str]:
    return {
        **environ,
        **_store_settings(store, where),
        "FLAMEL_LOGIN_URL": LOGIN_URL,
        "FLAMEL_DATABASE_TIMEOUT_SECONDS": "1",
    }


@asynccontextmanager
async def _serving(environ: dict[str, str], db: Database, clock: FakeClock) -> AsyncIterator[App]:
    """The app with its session store open, as its lifespan would have it."""
    app = App(Settings.from_environ(environ), db, clock)
    await app.services.sessions.open()
    try:
        yield app
    finally:
        await app.services.sessions.close()


@asynccontextmanager
async def _client_of(
    environ: dict[str, str], db: Database, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    async with _serving(environ, db, clock) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def app(environ: dict[str, str], db: Database, clock: FakeClock) -> AsyncIterator[App]:
    async with _serving(environ, db, clock) as served:
        yield served


def _js_instant(us: int) -> str:
    """An instant as JavaScript's ``Date.toJSON`` writes it (express-session's expires)."""
    return from_micros(us).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Platform:
    """Sessions put into the platform's store, and the cookies that carry them."""

    def __init__(self, store: str, where: str, clock: FakeClock) -> None:
        self.store, self.where, self.clock = store, where, clock

    def session_of(self, user: object, *, lifetime_s: int = 3600) -> dict[str, Any]:
        """A session as express-session and passport write it for ``user``."""
        expires = self.clock() + lifetime_s * 1_000_000
        return {
            "cookie": {
                "originalMaxAge": lifetime_s * 1000,
                "expires": _js_instant(expires),
                "httpOnly": True,
                "path": "/",
                "sameSite": "lax",
            },
            "passport": {"user": user},
        }

    async def put(self, session: Any, *, ttl_s: int = 3600, secret: str = SESSION_SECRET) -> str:
        """Store ``session`` under a new id; the ``Cookie`` header that carries it."""
        session_id = new_session_id()
        await write_session(
            self.store, self.where, session_id, session, ttl_seconds=ttl_s, now=self.clock()
        )
        self.last_session_id = session_id
        return f"connect.sid={session_cookie_value(session_id, secret)}"

    async def signed_in(self, user: object, **options: Any) -> str:
        return await self.put(self.session_of(user), **options)


@pytest.fixture
def platform(store: str, where: str, clock: FakeClock) -> Platform:
    return Platform(store, where, clock)


async def _user_known_as(factory: Factory, db: Database, external_id: str) -> accounts.User:
    user = await factory.user()
    async with db.transaction() as conn:
        await accounts.set_external_id(conn, user.id, external_id)
    return user


def _refused(response: httpx.Response, status: int, reason: str) -> None:
    """The error envelope with ``reason``, and perhaps a ``message``."""
    assert response.status_code == status, response.text
    body = response.json()
    body.pop("message", None)
    assert body == {"success": False, "code": status, "data": reason}


# --- who the session is -------------------------------------------------------------------


async def test_a_platform_session_reads_its_users_usage(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform
) -> None:
    ada = await _user_known_as(factory, db, "u-ada")
    await factory.purchase(ada, 7)
    await _user_known_as(factory, db, "u-bob")
    cookie = await platform.signed_in("u-ada")
    read = await client.get(USAGE, headers={"Cookie": cookie})
    assert read.status_code == 200, read.text
    key = await factory.key(ada)
    assert read.json() == (await client.get(USAGE, headers={"X-Api-Key": key})).json()
    history = await client.get(f"{USAGE}/history", headers={"Cookie": cookie})
    assert history.status_code == 200, history.text


async def test_a_number_as_user_id_is_its_decimal_digits(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform
) -> None:
    await _user_known_as(factory, db, "42")
    response = await client.get(USAGE, headers={"Cookie": await platform.signed_in(42)})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "user", [None, True, 42.5, "", "x" * 256, {"id": "u-ada"}, ["u-ada"]], ids=repr
)
async def test_a_user_field_that_names_no_id_is_not_logged_in(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform, user: object
) -> None:
    await _user_known_as(factory, db, "u-ada")
    response = await client.get(USAGE, headers={"Cookie": await platform.signed_in(user)})
    _refused(response, 403, "not_logged_in")


@pytest.mark.parametrize(
    "session",
    [
        {"cookie": {"expires": None}},  # signed out, or never signed in
        {"cookie": {"expires": None}, "passport": {}},
        {"cookie": {"expires": None}, "passport": "u-ada"},
        ["u-ada"],
        b"not json at all",
        b'{"passport": {"user": "u-ada"}',
    ],
    ids=repr,
)
async def test_a_session_without_the_user_field_is_not_logged_in(
    client: httpx.AsyncClient,
    factory: Factory,
    db: Database,
    platform: Platform,
    session: object,
    store: str,
) -> None:
    if isinstance(session, bytes) and store == "postgresql":
        pytest.skip("a json column holds JSON only")
    await _user_known_as(factory, db, "u-ada")
    response = await client.get(USAGE, headers={"Cookie": await platform.put(session)})
    _refused(response, 403, "not_logged_in")


async def test_an_unknown_platform_user_is_logged_by_a_short_hash_of_the_session(
    client: httpx.AsyncClient, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = await platform.signed_in("u-nobody-here")
    with caplog.at_level(logging.INFO, logger="flamel_usage.auth.platform_sessions"):
        response = await client.get(USAGE, headers={"Cookie": cookie})
    _refused(response, 403, "not_logged_in")
    session_id = platform.last_session_id
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("platform_sessions")]
    assert len(lines) == 1, lines
    assert session_tag(session_id) in lines[0]
    assert "u-nobody-here" in lines[0]
    assert session_id not in caplog.text


async def test_a_deleted_user_is_not_logged_in_and_a_new_user_may_take_the_id(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform, clock: FakeClock
) -> None:
    ada = await _user_known_as(factory, db, "u-ada")
    cookie = await platform.signed_in("u-ada")
    async with db.transaction() as conn:
        await accounts.delete_user(conn, ada.id, clock())
    _refused(await client.get(USAGE, headers={"Cookie": cookie}), 403, "not_logged_in")
    await _user_known_as(factory, db, "u-ada")
    assert (await client.get(USAGE, headers={"Cookie": cookie})).status_code == 200


async def test_no_such_session_and_a_forged_cookie_are_not_logged_in(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform
) -> None:
    await _user_known_as(factory, db, "u-ada")
    stored = await platform.signed_in("u-ada")
    unknown = f"connect.sid={session_cookie_value(new_session_id(), SESSION_SECRET)}"
    forged = await platform.signed_in("u-ada", secret="another-secret-of-at-least-32-bytes")
    tampered = stored[:-3] + ("AAA" if not stored.endswith("AAA") else "BBB")
    for cookie in (unknown, forged, tampered):
        _refused(await client.get(USAGE, headers={"Cookie": cookie}), 403, "not_logged_in")
    assert (await client.get(USAGE, headers={"Cookie": stored})).status_code == 200


# --- when it ends -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "status"),
    [
        (timedelta(seconds=-1), 403),
        (timedelta(0), 403),
        (timedelta(seconds=1), 200),
        (None, 200),  # a cookie that ends with the browser: the store's expiry alone
        ("tomorrow", 403),
        ("2030-01-01T00:00:00", 403),  # no offset: not something JavaScript writes
        (1893456000000, 403),
    ],
    ids=repr,
)
async def test_the_session_cookies_own_expiry_counts(
    client: httpx.AsyncClient,
    factory: Factory,
    db: Database,
    platform: Platform,
    clock: FakeClock,
    expires: object,
    status: int,
) -> None:
    """The store still holds the session (an hour left); its cookie says otherwise."""
    await _user_known_as(factory, db, "u-ada")
    session = platform.session_of("u-ada")
    if isinstance(expires, timedelta):
        expires = _js_instant(clock() + round(expires.total_seconds() * 1_000_000))
    session["cookie"]["expires"] = expires
    response = await client.get(USAGE, headers={"Cookie": await platform.put(session)})
    assert response.status_code == status, response.text


async def test_connect_pg_simple_expire_is_compared_as_it_compares_it(
    client: httpx.AsyncClient,
    factory: Factory,
    db: Database,
    platform: Platform,
    clock: FakeClock,
    store: str,
) -> None:
    """``expire >= to_timestamp(ceil(now))``, in the connection's zone (Seoul's, here):
    a session lives through its expiry second and not a microsecond past it. Done in
    UTC instead, a session would live nine hours too long."""
    if store != "postgresql":
        pytest.skip("connect-pg-simple's expire column")
    await _user_known_as(factory, db, "u-ada")
    clock.set(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))  # on a whole second
    session = platform.session_of("u-ada")
    session["cookie"]["expires"] = None
    ends_now = await platform.put(session, ttl_s=0)
    ended = await platform.put(session, ttl_s=-1)
    assert (await client.get(USAGE, headers={"Cookie": ends_now})).status_code == 200
    _refused(await client.get(USAGE, headers={"Cookie": ended}), 403, "not_logged_in")
    clock.advance(0.000001)
    _refused(await client.get(USAGE, headers={"Cookie": ends_now}), 403, "not_logged_in")


async def test_a_redis_session_ends_with_its_key(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform, store: str
) -> None:
    if store != "redis":
        pytest.skip("connect-redis's key TTL")
    await _user_known_as(factory, db, "u-ada")
    session = platform.session_of("u-ada")
    session["cookie"]["expires"] = None
    cookie = await platform.put(session, ttl_s=1)
    assert (await client.get(USAGE, headers={"Cookie": cookie})).status_code == 200
    time.sleep(1.2)
    _refused(await client.get(USAGE, headers={"Cookie": cookie}), 403, "not_logged_in")


async def test_reading_changes_nothing_in_the_store(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform, store: str
) -> None:
    """No touch, no save: neither the value nor the expiry moves."""
    await _user_known_as(factory, db, "u-ada")
    cookie = await platform.signed_in("u-ada")
    before = await stored_session(store, platform.where, platform.last_session_id)
    for path in (USAGE, f"{USAGE}/history", "/usage", "/keys", "/api/users/me/keys"):
        response = await client.get(path, headers={"Cookie": cookie})
        assert response.status_code == 200, (path, response.text)
    assert await stored_session(store, platform.where, platform.last_session_id) == before


# --- the store down -------------------------------------------------------------------------


@pytest.fixture
def unreachable_environ(environ: dict[str, str], store: str) -> dict[str, str]:
    """The same settings, with the store at a port where nothing listens."""
    port = free_port()
    url = (
        f"redis://127.0.0.1:{port}/0"
        if store == "redis"
        else f"postgresql://postgres@127.0.0.1:{port}/platform"
    )
    return {**environ, "FLAMEL_SESSION_STORE": url}


async def test_a_store_that_does_not_answer_is_503_not_403(
    unreachable_environ: dict[str, str],
    db: Database,
    clock: FakeClock,
    factory: Factory,
    platform: Platform,
) -> None:
    ada = await _user_known_as(factory, db, "u-ada")
    key = await factory.key(ada)
    cookie = await platform.signed_in("u-ada")
    async with _client_of(unreachable_environ, db, clock) as client:
        started = time.monotonic()
        for path in (USAGE, f"{USAGE}/history", "/api/users/me/keys"):
            response = await client.get(path, headers={"Cookie": cookie})
            assert response.status_code == 503, response.text
            assert response.json() == {
                "success": False,
                "code": 503,
                "data": "service_unavailable",
                "message": "the session store is unavailable: retry shortly",
            }
            assert response.headers["retry-after"] == "1"
        page = await client.get("/usage", headers={"Cookie": cookie})
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "success": False,
            "code": 503,
            "data": "service_unavailable",
            "message": "the session store does not answer",
        }
        # A key needs no session store: it is answered as ever.
        assert (await client.get(USAGE, headers={"X-Api-Key": key})).status_code == 200
        assert time.monotonic() - started < 10


@asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """The port of a server that accepts connections, reads, and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while await reader.read(4096):
                pass
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_store_that_never_answers_is_503_within_the_timeout(
    environ: dict[str, str],
    store: str,
    db: Database,
    clock: FakeClock,
    factory: Factory,
    platform: Platform,
) -> None:
    await _user_known_as(factory, db, "u-ada")
    cookie = await platform.signed_in("u-ada")
    async with _silent_server() as port:
        url = (
            f"redis://127.0.0.1:{port}/0"
            if store == "redis"
            else f"postgresql://postgres@127.0.0.1:{port}/platform"
        )
        hanging = {**environ, "FLAMEL_SESSION_STORE": url}  # the timeout is 1 s
        async with _client_of(hanging, db, clock) as client:
            for _ in range(2):  # the first connects, the next finds a connection made
                started = time.monotonic()
                reads = [client.get(USAGE, headers={"Cookie": cookie}) for _ in range(5)]
                for response in await asyncio.gather(*reads):
                    _refused(response, 503, "service_unavailable")
                assert time.monotonic() - started < 2.5


async def test_reads_that_arrive_together_each_get_their_own_session(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform
) -> None:
    """Redis reads of one turn of the event loop go as one MGET: each request still
    gets its own user's answer, a missing session among them its own 403."""
    users = [await _user_known_as(factory, db, f"u-{n}") for n in range(12)]
    for n, user in enumerate(users):
        await factory.purchase(user, n + 1)
    cookies = [await platform.signed_in(f"u-{n}") for n in range(12)]
    cookies.append(f"connect.sid={session_cookie_value(new_session_id(), SESSION_SECRET)}")
    reads = [client.get(USAGE, headers={"Cookie": cookie}) for cookie in cookies * 2]
    answers = await asyncio.gather(*reads)
    for n, answer in enumerate(answers):
        if n % len(cookies) == len(users):
            _refused(answer, 403, "not_logged_in")
        else:
            assert answer.status_code == 200, answer.text
            assert answer.json()["additionalCredit"] == n % len(cookies) + 1


async def test_readyz_says_ready_when_the_store_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text


# --- no sign-in of our own ----------------------------------------------------------------


async def test_our_sign_in_and_sign_out_are_not_there(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform
) -> None:
    await factory.user(email="ada@example.com", password="correct horse battery staple")
    credentials = {"email": "ada@example.com", "password": "correct horse battery staple"}
    _refused(await client.post("/api/auth/login", json=credentials), 404, "not_found")
    await _user_known_as(factory, db, "u-ada")
    cookie = await platform.signed_in("u-ada")
    _refused(await client.post("/api/auth/logout", headers={"Cookie": cookie}), 404, "not_found")
    form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    for path in ("/login", "/logout"):
        response = await client.post(path, content=b"csrf=x", headers=form)
        _refused(response, 404, "not_found")
    # Still signed in: nothing of the platform's session was touched.
    assert (await client.get(USAGE, headers={"Cookie": cookie})).status_code == 200


async def test_the_pages_send_a_signed_out_visitor_to_the_platforms_sign_in(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/", "/usage", "/keys", "/keys/1/revoke"):
        response = await client.get(path)
        assert response.status_code == 303, (path, response.text)
        assert response.headers["location"] == LOGIN_URL


async def test_the_pages_work_with_a_platform_session(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform
) -> None:
    ada = await _user_known_as(factory, db, "u-ada")
    cookie = await platform.signed_in("u-ada")
    home = await client.get("/", headers={"Cookie": cookie})
    assert (home.status_code, home.headers["location"]) == (303, "/usage")
    page = await client.get("/usage", headers={"Cookie": cookie})
    assert page.status_code == 200, page.text
    assert ada.email in page.text
    assert 'action="/logout"' not in page.text  # signing out is the platform's
    keys = await client.get("/keys", headers={"Cookie": cookie})
    assert keys.status_code == 200, keys.text
    assert 'action="/logout"' not in keys.text


async def test_the_keys_api_takes_a_platform_session(
    client: httpx.AsyncClient, factory: Factory, db: Database, platform: Platform
) -> None:
    await _user_known_as(factory, db, "u-ada")
    cookie = {"Cookie": await platform.signed_in("u-ada")}
    created = await client.post("/api/users/me/keys", json={"name": "ci"}, headers=cookie)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert (await client.get(USAGE, headers={"X-Api-Key": key})).status_code == 200
    listed = await client.get("/api/users/me/keys", headers=cookie)
    assert [k["name"] for k in listed.json()["keys"]] == ["ci"]
    _refused(await client.get("/api/users/me/keys"), 403, "not_logged_in")


# --- Express's settings ---------------------------------------------------------------------


async def test_cookie_name_and_user_field_follow_the_settings(
    environ: dict[str, str], db: Database, clock: FakeClock, factory: Factory, platform: Platform
) -> None:
    await _user_known_as(factory, db, "acct-7")
    session = platform.session_of(None)
    session["auth"] = {"account": {"id": "acct-7"}}
    cookie = await platform.put(session)
    settings = {
        **environ,
        "FLAMEL_SESSION_COOKIE_NAME": "platform.sid",
        "FLAMEL_SESSION_USER_FIELD": "auth.account.id",
    }
    async with _client_of(settings, db, clock) as client:
        renamed = cookie.replace("connect.sid=", "platform.sid=")
        assert (await client.get(USAGE, headers={"Cookie": renamed})).status_code == 200
        _refused(await client.get(USAGE, headers={"Cookie": cookie}), 403, "not_logged_in")


async def test_a_rotated_secret_signs_with_the_first_and_accepts_any_listed(
    environ: dict[str, str], db: Database, clock: FakeClock, factory: Factory, platform: Platform
) -> None:
    await _user_known_as(factory, db, "u-ada")
    signed_old = await platform.signed_in("u-ada", secret=OLD_SECRET)
    signed_new = await platform.signed_in("u-ada", secret=NEW_SECRET)
    rotating = {**environ, "FLAMEL_SESSION_SECRET": f"{NEW_SECRET},{OLD_SECRET}"}
    async with _client_of(rotating, db, clock) as client:
        for cookie in (signed_old, signed_new):
            assert (await client.get(USAGE, headers={"Cookie": cookie})).status_code == 200
    rotated = {**environ, "FLAMEL_SESSION_SECRET": NEW_SECRET}
    async with _client_of(rotated, db, clock) as client:
        _refused(await client.get(USAGE, headers={"Cookie": signed_old}), 403, "not_logged_in")
        assert (await client.get(USAGE, headers={"Cookie": signed_new})).status_code == 200


async def test_our_own_sign_in_signs_with_the_first_secret(
    environ: dict[str, str], db: Database, clock: FakeClock, factory: Factory
) -> None:
    """With our own sessions too: the new secret signs, and a cookie signed with an
    old one still listed keeps working until it is taken off the list."""
    own = {name: value for name, value in environ.items() if not name.startswith("FLAMEL_SESSION")}
    await factory.user(email="ada@example.com", password="correct horse battery staple")
    credentials = {"email": "ada@example.com", "password": "correct horse battery staple"}
    async with _client_of({**own, "FLAMEL_SESSION_SECRET": OLD_SECRET}, db, clock) as client:
        signed_in = await client.post("/api/auth/login", json=credentials)
        old_cookie = signed_in.headers["set-cookie"].split(";", 1)[0]
    rotating = {**own, "FLAMEL_SESSION_SECRET": f"{NEW_SECRET},{OLD_SECRET}"}
    async with _client_of(rotating, db, clock) as client:
        assert (await client.get(USAGE, headers={"Cookie": old_cookie})).status_code == 200
        signed_in = await client.post("/api/auth/login", json=credentials)
        new_cookie = signed_in.headers["set-cookie"].split(";", 1)[0]
    async with _client_of({**own, "FLAMEL_SESSION_SECRET": NEW_SECRET}, db, clock) as client:
        assert (await client.get(USAGE, headers={"Cookie": new_cookie})).status_code == 200
        _refused(await client.get(USAGE, headers={"Cookie": old_cookie}), 403, "not_logged_in")


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"FLAMEL_SESSION_STORE": "memcached://127.0.0.1:11211"}, "FLAMEL_SESSION_STORE"),
        ({"FLAMEL_SESSION_STORE": "redis://127.0.0.1:6379/0"}, "FLAMEL_LOGIN_URL"),
        (
            {"FLAMEL_SESSION_STORE": "postgresql://x@h/db", "FLAMEL_LOGIN_URL": "login"},
            "FLAMEL_LOGIN_URL",
        ),
        ({"FLAMEL_LOGIN_URL": "https://example.com/log in"}, "FLAMEL_LOGIN_URL"),
        ({"FLAMEL_SESSION_COOKIE_NAME": "my cookie"}, "FLAMEL_SESSION_COOKIE_NAME"),
        ({"FLAMEL_SESSION_COOKIE_NAME": "a=b"}, "FLAMEL_SESSION_COOKIE_NAME"),
        ({"FLAMEL_SESSION_USER_FIELD": "passport..user"}, "FLAMEL_SESSION_USER_FIELD"),
        ({"FLAMEL_SESSION_USER_FIELD": ".user"}, "FLAMEL_SESSION_USER_FIELD"),
    ],
    ids=repr,
)
def test_bad_session_settings_are_refused_by_name(extra: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_environ(extra)


def test_each_listed_secret_must_be_long_enough_and_is_never_shown() -> None:
    short = "too-short-to-sign-anything"
    with pytest.raises(ConfigError, match="secret 2 of 2 at least 32 bytes") as refused:
        Settings.from_environ({"FLAMEL_SESSION_SECRET": f"{NEW_SECRET},{short}"})
    assert short not in str(refused.value)
    assert NEW_SECRET not in str(refused.value)
    settings = Settings.from_environ({"FLAMEL_SESSION_SECRET": f"{NEW_SECRET},{OLD_SECRET}"})
    assert [s.reveal() for s in settings.resolved_session_secrets()] == [NEW_SECRET, OLD_SECRET]
    assert settings.resolved_session_secret().reveal() == NEW_SECRET


def test_the_defaults_are_express_sessions() -> None:
    settings = Settings.from_environ({})
    assert settings.session_store is None
    assert settings.session_cookie_name == "connect.sid"
    assert settings.session_user_field == ("passport", "user")
    assert settings.session_store_prefix == "sess:"
    assert settings.session_store_table == "session"

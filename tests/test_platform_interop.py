"""The platform's real sign-in: a customer signs in on an Express app (express-session,
passport, connect-redis or connect-pg-simple, all from npm; ``tests/interop/platform.js``)
and our ``flamel-usage serve`` reads their usage with the cookie that app set (SPEC 7).

Per store, one Express app and our servers, all real processes on 127.0.0.1: ``current``
accepts the platform's secret as the second of two (the first, a new one, signs),
``rotated`` lists the new secret alone, ``down`` points at a port where no store listens.
Express signs with the platform's secret only. Our database is SQLite: the store under
test is the session store. The usage page is then read in Chromium after a sign-in on
the Express app's own form, to which our pages send a signed-out visitor.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from flamel_usage.auth.cookies import new_session_id, session_cookie_value, session_id_from_cookie
from flamel_usage.auth.platform_sessions import session_tag
from tests.conftest import ADMIN_TOKEN
from tests.node_packages import INTEROP_DIR, node_with_packages
from tests.platform_stores import (
    REDIS_URL,
    SCHEMA,
    TABLE,
    platform_database,
    redis_prefix,
)
from tests.processes import ServerProcess, free_port, http_client, server_process
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, TIMEOUT_MS

PLATFORM_SECRET = "the-platforms-own-express-session-secret"
NEW_SECRET = "a-new-secret-the-platform-rotates-to-next"
START_TIMEOUT_S = 30
#: The store's lifetime of a session whose cookie has no expiry: short, to see it end.
STORE_TTL_S = 2
USAGE = "/api/users/me/usage"
PASSWORD = "platform-password"
#: The platform's customers: ids of both kinds, and one with no user on our side.
PLATFORM_USERS = [
    {"id": "u-ada", "username": "ada", "password": PASSWORD},
    {"id": 7, "username": "bob", "password": PASSWORD},
    {"id": "u-carol", "username": "carol", "password": PASSWORD},
]


@contextmanager
def express_app(node: str, port: int, settings: dict[str, str]) -> Iterator[str]:
    """``platform.js`` listening on ``port``: its base URL, until the end of the block."""
    env = {**os.environ, **settings, "PORT": str(port)}
    process = subprocess.Popen(
        [node, str(INTEROP_DIR / "platform.js")],
        cwd=INTEROP_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(process, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _wait_for_port(process: subprocess.Popen[str], port: int) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        with suppress(ValueError):
            if json.loads(line) == {"port": port}:
                return
    process.kill()
    rest = process.stdout.read() if process.returncode is not None else ""
    pytest.fail(f"platform.js did not start on port {port}: {line}{rest}")


@dataclass
class Platform:
    """One store's setup: the Express app and our servers."""

    store: str
    express: str
    current: ServerProcess
    rotated: ServerProcess
    down: ServerProcess
    users: dict[str, int]

    def sign_in(self, username: str, **extra: Any) -> str:
        """A real sign-in on Express: the session cookie it set, as a Cookie header."""
        with httpx.Client(base_url=self.express, timeout=10) as client:
            body = {"username": username, "password": PASSWORD, **extra}
            response = client.post("/login", json=body)
            assert response.status_code == 200, response.text
            return f"connect.sid={client.cookies['connect.sid']}"

    def express_post(self, path: str, cookie: str | None = None) -> httpx.Response:
        headers = {"Cookie": cookie} if cookie else {}
        with httpx.Client(base_url=self.express, timeout=10) as client:
            return client.post(path, json={}, headers=headers)

    def usage(self, cookie: str, server: ServerProcess | None = None) -> httpx.Response:
        with http_client((server or self.current).base_url) as client:
            return client.get(USAGE, headers={"Cookie": cookie})

    def admin_usage(self, email: str) -> Any:
        with http_client(self.current.base_url, Authorization=f"Bearer {ADMIN_TOKEN}") as client:
            return client.get(f"/api/admin/users/{self.users[email]}/usage").json()


def _store_settings(store: str, where: str) -> tuple[dict[str, str], dict[str, str]]:
    """(ours, Express's) settings for the store at ``where``."""
    if store == "redis":
        ours = {"FLAMEL_SESSION_STORE": REDIS_URL, "FLAMEL_SESSION_STORE_PREFIX": where}
        theirs = {"STORE": "redis", "REDIS_URL": REDIS_URL, "REDIS_PREFIX": where}
        return ours, theirs
    ours = {
        "FLAMEL_SESSION_STORE": where,
        "FLAMEL_SESSION_STORE_SCHEMA": SCHEMA,
        "FLAMEL_SESSION_STORE_TABLE": TABLE,
    }
    theirs = {"STORE": "pg", "PG_URL": where, "PG_SCHEMA": SCHEMA, "PG_TABLE": TABLE}
    return ours, theirs


@contextmanager
def _store(store: str) -> Iterator[str]:
    if store == "redis":
        with redis_prefix() as prefix:
            yield prefix
    else:  # connect-pg-simple creates its table itself (createTableIfMissing)
        with platform_database(with_table=False) as url:
            yield url


def _create_users(base_url: str) -> dict[str, int]:
    with http_client(base_url, Authorization=f"Bearer {ADMIN_TOKEN}") as admin:
        plan = {"name": "Pro", "periodUnit": "month", "maxCredit": 100, "maxTtpCount": 5}
        assert admin.post("/api/admin/plans", json=plan).status_code == 201
        ids = {}
        for email, external_id, credits in (
            ("ada@example.com", "u-ada", 11),
            ("bob@example.com", "7", 5),
        ):
            body = {"email": email, "plan": "Pro", "externalId": external_id}
            created = admin.post("/api/admin/users", json=body)
            assert created.status_code == 201, created.text
            ids[email] = created.json()["id"]
            bought = admin.post(f"/api/admin/users/{ids[email]}/credits", json={"amount": credits})
            assert bought.status_code == 201, bought.text
        return ids


@pytest.fixture(scope="module", params=["redis", "postgresql"])
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    store = str(request.param)
    node = node_with_packages()
    data = tmp_path_factory.mktemp(f"platform-{store}")
    express_port = free_port()
    with _store(store) as where:
        ours, theirs = _store_settings(store, where)
        environ = {
            "FLAMEL_DATA_DIR": str(data),
            "FLAMEL_DATABASE_URL": f"sqlite:///{data / 'flamel.sqlite3'}",
            "FLAMEL_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLAMEL_SESSION_SECRET": f"{NEW_SECRET},{PLATFORM_SECRET}",
            "FLAMEL_LOGIN_URL": f"http://127.0.0.1:{express_port}/login",
            "FLAMEL_DATABASE_TIMEOUT_SECONDS": "2",
            **ours,
        }
        down_store = (
            f"redis://127.0.0.1:{free_port()}/0"
            if store == "redis"
            else f"postgresql://postgres@127.0.0.1:{free_port()}/platform"
        )
        with (
            server_process(environ) as current,
            server_process({**environ, "FLAMEL_SESSION_SECRET": NEW_SECRET}) as rotated,
            server_process({**environ, "FLAMEL_SESSION_STORE": down_store}) as down,
        ):
            users = _create_users(current.base_url)
            express = {
                **theirs,
                "SECRETS": PLATFORM_SECRET,
                "STORE_TTL_S": str(STORE_TTL_S),
                "USERS": json.dumps(PLATFORM_USERS),
                "AFTER_LOGIN": f"{current.base_url}/usage",
            }
            with express_app(node, express_port, express) as express_url:
                yield Platform(store, express_url, current, rotated, down, users)


# --- the usage read with the platform's cookie ----------------------------------------------


def test_the_cookie_express_set_reads_that_users_usage(platform: Platform) -> None:
    for username, email in (("ada", "ada@example.com"), ("bob", "bob@example.com")):
        response = platform.usage(platform.sign_in(username))
        assert response.status_code == 200, response.text
        assert response.json() == platform.admin_usage(email)
    assert platform.admin_usage("ada@example.com") != platform.admin_usage("bob@example.com")


def test_after_logout_in_express_the_cookie_is_refused(platform: Platform) -> None:
    cookie = platform.sign_in("ada")
    assert platform.usage(cookie).status_code == 200
    assert platform.express_post("/logout", cookie).status_code == 200
    _not_logged_in(platform.usage(cookie))


def test_after_the_sessions_expiry_it_is_refused(platform: Platform) -> None:
    """Both ways a session ends: its cookie's expiry (which connect-redis and
    connect-pg-simple also give the store), and the store's own lifetime of a session
    whose cookie ends with the browser."""
    short = platform.sign_in("ada", maxAgeMs=1500)
    browser_only = platform.sign_in("ada", browserSession=True)
    assert platform.usage(short).status_code == 200
    assert platform.usage(browser_only).status_code == 200
    time.sleep(STORE_TTL_S + 1.2)
    _not_logged_in(platform.usage(short))
    _not_logged_in(platform.usage(browser_only))


def test_a_secret_still_listed_is_accepted_and_a_rotated_out_one_refused(
    platform: Platform,
) -> None:
    cookie = platform.sign_in("ada")
    assert platform.usage(cookie, platform.current).status_code == 200
    _not_logged_in(platform.usage(cookie, platform.rotated))


def test_a_tampered_session_id_is_refused(platform: Platform) -> None:
    cookie = platform.sign_in("ada")
    raw = cookie.removeprefix("connect.sid=")
    session_id = session_id_from_cookie(raw, PLATFORM_SECRET)
    assert session_id is not None
    flipped = session_id[:-1] + ("A" if session_id[-1] != "A" else "B")
    # The id changed under the platform's signature; and another id, signed right.
    for forged in (
        raw.replace(session_id, flipped),
        session_cookie_value(flipped, PLATFORM_SECRET),
    ):
        _not_logged_in(platform.usage(f"connect.sid={forged}"))
    _not_logged_in(
        platform.usage(f"connect.sid={session_cookie_value(new_session_id(), PLATFORM_SECRET)}")
    )
    assert platform.usage(cookie).status_code == 200


def test_a_session_without_a_user_is_refused(platform: Platform) -> None:
    with httpx.Client(base_url=platform.express, timeout=10) as client:
        assert client.post("/anonymous", json={}).status_code == 200
        cookie = f"connect.sid={client.cookies['connect.sid']}"
    _not_logged_in(platform.usage(cookie))


def test_a_platform_user_unknown_here_is_refused_and_logged_by_a_hash(
    platform: Platform,
) -> None:
    cookie = platform.sign_in("carol")
    _not_logged_in(platform.usage(cookie))
    session_id = session_id_from_cookie(cookie.removeprefix("connect.sid="), PLATFORM_SECRET)
    assert session_id is not None
    deadline = time.monotonic() + 5
    while session_tag(session_id) not in platform.current.output():
        assert time.monotonic() < deadline, platform.current.output()
        time.sleep(0.05)
    line = next(
        line for line in platform.current.output().splitlines() if session_tag(session_id) in line
    )
    assert " INFO flamel_usage.auth.platform_sessions: " in line
    assert "'u-carol'" in line
    assert session_id not in platform.current.output()


def test_a_store_that_does_not_answer_is_503_within_the_timeout(platform: Platform) -> None:
    cookie = platform.sign_in("ada")
    started = time.monotonic()
    response = platform.usage(cookie, platform.down)
    assert time.monotonic() - started < 2 + 1.5
    assert response.status_code == 503, response.text
    assert response.json()["data"] == "service_unavailable"
    assert response.headers["retry-after"] == "1"
    with http_client(platform.down.base_url) as client:
        assert client.get("/readyz").status_code == 503
    with http_client(platform.current.base_url) as client:
        assert client.get("/readyz").status_code == 200


def test_our_sign_in_is_not_there_and_the_keys_api_takes_the_cookie(platform: Platform) -> None:
    cookie = platform.sign_in("ada")
    with http_client(platform.current.base_url) as client:
        login = client.post("/api/auth/login", json={"email": "ada@example.com", "password": "x"})
        assert (login.status_code, login.json()["data"]) == (404, "not_found")
        logout = client.post("/api/auth/logout", headers={"Cookie": cookie})
        assert logout.status_code == 404
        created = client.post("/api/users/me/keys", json={"name": "ci"}, headers={"Cookie": cookie})
        assert created.status_code == 201, created.text
        listed = client.get("/api/users/me/keys", headers={"Cookie": cookie})
        assert [key["name"] for key in listed.json()["keys"]] == ["ci"]
    assert platform.usage(cookie).status_code == 200


def _not_logged_in(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["data"] == "not_logged_in"


# --- the page, in Chromium ------------------------------------------------------------------


def test_the_usage_page_after_signing_in_on_the_platform(platform: Platform) -> None:
    """Our page sends the signed-out browser to the platform's sign-in; after it, the
    platform sends it back, and the page shows that customer's numbers."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run installs it)")
    expected = platform.admin_usage("ada@example.com")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{platform.current.base_url}/usage")
            assert page.url == f"{platform.express}/login"
            page.fill("input[name=username]", "ada")
            page.fill("input[name=password]", PASSWORD)
            with page.expect_navigation(url=re.compile(r".*/usage$")):
                page.click("button[type=submit]")
            assert page.url == f"{platform.current.base_url}/usage"
            text = page.inner_text("main")
            assert "ada@example.com" in text
            assert page.locator("form[action='/logout']").count() == 0
            shown = page.get_attribute("[data-field=additionalCredit]", "data-value")
            assert shown is not None
            assert float(shown) == expected["additionalCredit"] == 11
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"usage-platform-{platform.store}.png"))
        finally:
            browser.close()

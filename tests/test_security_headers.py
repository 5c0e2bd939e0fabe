"""Security headers on every response and on HTML, and CORS: off unless allowlisted.

In-process on both stores; the docs page is also opened in headless Chromium, to show
that Swagger UI works under its Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from flamel_usage.core.config import ConfigError, Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from tests.conftest import FakeClock
from tests.factories import Factory
from tests.processes import running_server

USAGE = "/api/users/me/usage"
ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"


def directives(response: httpx.Response) -> dict[str, set[str]]:
    """The Content-Security-Policy as directive -> sources."""
    policy: dict[str, set[str]] = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *sources = part.split()
        assert name not in policy, f"repeated directive {name}"
        policy[name] = set(sources)
    return policy


def assert_html_security(response: httpx.Response) -> dict[str, set[str]]:
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]
    policy = directives(response)
    assert policy["frame-ancestors"] == {"'none'"}
    assert policy["default-src"] == {"'none'"}
    assert policy["script-src"] == {"'self'"}  # no inline script, no eval, no third party
    assert policy["base-uri"] == {"'none'"}
    return policy


# --- HTML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 200), ("POST", "/login", 403)],
)
async def test_pages_send_a_strict_policy(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    policy = assert_html_security(response)
    assert policy["style-src"] == {"'self'"}
    assert policy["img-src"] == {"'self'"}


async def test_the_usage_page_sends_a_strict_policy(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(password="a long enough password")
    login = await client.post(
        "/api/auth/login", json={"email": user.email, "password": "a long enough password"}
    )
    assert login.status_code == 200
    response = await client.get("/usage")
    assert response.status_code == 200
    assert_html_security(response)


async def test_the_docs_page_allows_only_what_swagger_ui_needs(client: httpx.AsyncClient) -> None:
    response = await client.get("/api")
    assert response.status_code == 200
    policy = assert_html_security(response)
    assert policy["style-src"] == {"'self'", "'unsafe-inline'"}
    assert policy["img-src"] == {"'self'", "data:"}
    assert policy["connect-src"] == {"'self'"}


# --- every response -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api-json", 200),
        ("GET", "/api/static/swagger-ui.css", 200),
        ("GET", "/static/pages.css", 200),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", USAGE, 403),
        ("GET", "/api/admin/plans", 401),
        ("POST", "/api/auth/logout", 204),
        ("GET", "/usage", 303),
        ("GET", "/nothing", 404),
        ("PUT", "/healthz", 405),
        ("HEAD", "/healthz", 200),
    ],
)
async def test_every_response_is_nosniff_once(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]


# --- CORS ---------------------------------------------------------------------------------


@pytest.fixture
async def cors(
    environ: dict[str, str], db: Database, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that lets ``ALLOWED`` (and one more origin) read the usage."""
    settings = Settings.from_environ(
        {**environ, "FLAMEL_CORS_ORIGINS": f" {ALLOWED.upper()} , http://localhost:3000"}
    )
    transport = httpx.ASGITransport(app=App(settings, db, clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def access_control(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def preflight(origin: str, path: str = USAGE) -> httpx.Request:
    return httpx.Request(
        "OPTIONS",
        f"http://testserver{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )


async def test_cors_is_off_by_default(client: httpx.AsyncClient, factory: Factory) -> None:
    key = await factory.key(await factory.user())
    response = await client.get(USAGE, headers={"Origin": ALLOWED, "X-Api-Key": key})
    assert response.status_code == 200
    assert access_control(response) == {}
    assert "vary" not in response.headers
    answered = await client.send(preflight(ALLOWED))
    assert answered.status_code == 405
    assert answered.json()["data"] == "method_not_allowed"
    assert access_control(answered) == {}


async def test_an_allowlisted_origin_may_read_the_usage_without_credentials(
    cors: httpx.AsyncClient, factory: Factory
) -> None:
    key = await factory.key(await factory.user())
    for origin in (ALLOWED, "http://localhost:3000"):
        response = await cors.get(USAGE, headers={"Origin": origin, "X-Api-Key": key})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert "Origin" in response.headers["vary"]
        assert "access-control-allow-credentials" not in response.headers
        assert "X-Request-Id" in response.headers["access-control-expose-headers"]
    # An error is readable too, so that the page can tell a wrong key from an outage.
    refused = await cors.get(USAGE, headers={"Origin": ALLOWED, "X-Api-Key": "flm_wrong"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ALLOWED


async def test_the_preflight_of_an_allowlisted_origin_is_answered(
    cors: httpx.AsyncClient,
) -> None:
    response = await cors.send(preflight(ALLOWED))
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-methods"] == "GET"
    allowed_headers = {
        name.strip().lower() for name in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"x-api-key", "content-type"} <= allowed_headers
    assert "access-control-allow-credentials" not in response.headers
    assert int(response.headers["access-control-max-age"]) > 0
    assert "Origin" in response.headers["vary"]


async def test_other_origins_get_no_cors_headers(cors: httpx.AsyncClient, factory: Factory) -> None:
    key = await factory.key(await factory.user())
    for origin in (OTHER, "https://app.example.com.evil.example", "null", ALLOWED + ":443"):
        response = await cors.get(USAGE, headers={"Origin": origin, "X-Api-Key": key})
        assert response.status_code == 200
        assert access_control(response) == {}
        assert "Origin" in response.headers["vary"]
        answered = await cors.send(preflight(origin))
        assert answered.status_code == 403
        assert answered.json()["data"] == "origin_not_allowed"
        assert access_control(answered) == {}


async def test_cors_covers_the_usage_route_only(cors: httpx.AsyncClient) -> None:
    for path in ("/api-json", "/api/auth/login", "/healthz", "/api/admin/plans"):
        response = await cors.get(path, headers={"Origin": ALLOWED})
        assert access_control(response) == {}, path
        answered = await cors.send(preflight(ALLOWED, path))
        assert answered.status_code == 405, path
        assert access_control(answered) == {}, path


async def test_an_options_that_is_no_preflight_stays_a_405(cors: httpx.AsyncClient) -> None:
    response = await cors.options(USAGE)
    assert response.status_code == 405
    assert response.json()["data"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLAMEL_CORS_ORIGINS", "*"),
        ("FLAMEL_CORS_ORIGINS", "https://app.example.com/"),
        ("FLAMEL_CORS_ORIGINS", "https://app.example.com/path"),
        ("FLAMEL_CORS_ORIGINS", "app.example.com"),
        ("FLAMEL_CORS_ORIGINS", "ftp://app.example.com"),
        ("FLAMEL_CORS_ORIGINS", "https://*.example.com"),
        ("FLAMEL_CORS_ORIGINS", "null"),
        ("FLAMEL_LOG_FORMAT", "xml"),
        ("FLAMEL_ACCESS_LOG", "maybe"),
    ],
)
def test_bad_settings_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: value})


def test_operational_settings_have_safe_defaults() -> None:
    settings = Settings.from_environ({})
    assert settings.cors_origins == frozenset()
    assert settings.log_format == "text"
    assert settings.access_log is False
    assert Settings.from_environ({"FLAMEL_ACCESS_LOG": "on"}).access_log is True


# --- the docs page in a real browser ------------------------------------------------------


def test_swagger_ui_runs_under_its_policy(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)", pytrace=False)
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data")}
    with running_server(environ) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS
        )
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.add_init_script(
                "document.addEventListener('securitypolicyviolation', (e) =>"
                " console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(f"{base_url}/api", timeout=TIMEOUT_MS)
            operation = page.locator('[data-path="/api/users/me/usage"]').first
            operation.click(timeout=TIMEOUT_MS)  # expands it: parameters, responses, examples
            page.get_by_text("currentCredit").first.wait_for(timeout=TIMEOUT_MS)
            page.get_by_role("button", name="Try it out").first.click(timeout=TIMEOUT_MS)
            page.get_by_role("button", name="Execute").first.wait_for(timeout=TIMEOUT_MS)
            page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
            assert problems == []
        finally:
            browser.close()

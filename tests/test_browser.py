"""The pages in a real browser: headless Chromium (Debian's) driven by Playwright.

A real ``flamel-usage serve`` on SQLite; accounts and charges made through the admin API
over HTTP. The browser signs in with the keyboard only, reads the same numbers as
``GET /api/users/me/usage``, sees a charge after a reload, switches to Korean and signs
out. Screenshots go to ``test-artifacts/screenshots/`` at the repository root.

Chromium is not optional: when ``/usr/bin/chromium`` is missing these tests fail and say
how to install it (``.ci/run`` does). Playwright only drives it; ``playwright install``
is never needed. Every wait is bounded.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import ADMIN_TOKEN
from tests.processes import http_client, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
EMAIL = "ada@example.com"
PASSWORD = "correct horse battery staple"
BROWSER_ZONE = "Asia/Seoul"  # the server bills in UTC; the page shows the browser's zone

#: Computes the contrast ratio (WCAG 2) of every visible text node against the first
#: opaque background behind it.
_CONTRASTS = """
() => {
  const parse = (c) => {
    const p = c.match(/rgba?\\(([^)]*)\\)/)[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const channel = (v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.a > 0) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent.trim();
    const el = walker.currentNode.parentElement;
    if (!text || el.closest("meter") || el.getClientRects().length === 0) continue;
    const a = luminance(parse(getComputedStyle(el).color));
    const b = luminance(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    found.push([text.slice(0, 60), Math.round(ratio * 100) / 100]);
  }
  return found;
}
"""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the stores are tested elsewhere; here it is the browser."""
    return f"sqlite:///{tmp_path / 'browser.sqlite3'}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the page tests need Debian's Chromium "
            "(apt-get install -y chromium; .ci/run installs it)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(environ: dict[str, str]) -> Iterator[str]:
    with running_server(environ) as base_url:
        yield base_url


@pytest.fixture
def admin(server: str) -> Iterator[httpx.Client]:
    with http_client(server, Authorization=f"Bearer {ADMIN_TOKEN}") as client:
        yield client


@pytest.fixture
def account(admin: httpx.Client) -> dict[str, Any]:
    """A user on a 100-credit plan (10 TTP, unlimited edits), an API key of theirs, and
    8 TTP operations already charged."""
    plan = admin.post(
        "/api/admin/plans",
        json={"name": "pro", "periodUnit": "month", "maxCredit": 100, "maxTtpCount": 10},
    )
    assert plan.status_code == 201, plan.text
    user = admin.post(
        "/api/admin/users", json={"email": EMAIL, "plan": "pro", "password": PASSWORD}
    )
    assert user.status_code == 201, user.text
    user_id = user.json()["id"]
    bought = admin.post(f"/api/admin/users/{user_id}/credits", json={"amount": 12.5})
    assert bought.status_code == 201, bought.text
    key = admin.post(f"/api/admin/users/{user_id}/keys", json={})
    assert key.status_code == 201, key.text
    for n in range(8):  # 8 of 10 TTP: near the limit
        charged = admin.post(
            "/api/admin/charges",
            json={"userId": user_id, "kind": "ttp"},
            headers={"Idempotency-Key": f"setup-ttp-{n}"},
        )
        assert charged.status_code == 201, charged.text
    return {"id": user_id, "key": key.json()["key"]}


@pytest.fixture
def context(browser: Browser, server: str) -> Iterator[BrowserContext]:
    made = browser.new_context(
        base_url=server,
        locale="en-US",
        timezone_id=BROWSER_ZONE,
        viewport={"width": 1100, "height": 860},
    )
    made.set_default_timeout(TIMEOUT_MS)
    made.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def problems() -> list[str]:
    """Console and script errors of the test's tab (a CSP violation is one)."""
    return []


@pytest.fixture
def page(context: BrowserContext, problems: list[str]) -> Iterator[Page]:
    """A tab that must end without any console or script error the test did not expect."""
    opened = context.new_page()
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    assert problems == [], "the browser reported errors"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def focused(page: Page) -> str:
    """What has the keyboard focus: ``tag#id`` or ``tag:text``."""
    result: str = page.evaluate(
        "() => { const e = document.activeElement;"
        " return e.id ? `${e.tagName.toLowerCase()}#${e.id}`"
        " : `${e.tagName.toLowerCase()}:${e.textContent.trim()}`; }"
    )
    return result


def tab_to(page: Page, target: str, limit: int = 12) -> list[str]:
    """Press Tab until ``target`` has the focus; the stops on the way."""
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(focused(page))
        if seen[-1] == target:
            return seen
    raise AssertionError(f"Tab never reached {target}; it went {seen}")


def sign_in_with_keyboard(page: Page, password: str) -> None:
    tab_to(page, "input#email")
    page.keyboard.type(EMAIL)
    page.keyboard.press("Tab")
    assert focused(page) == "input#password"
    page.keyboard.type(password)
    page.keyboard.press("Enter")


def fields(page: Page) -> dict[str, tuple[str, str]]:
    """``data-field`` to ``(data-value, visible text)`` of every number on the page."""
    pairs = page.eval_on_selector_all(
        "[data-field][data-value]",
        "els => els.map(e => [e.dataset.field, e.dataset.value, e.textContent.trim()])",
    )
    return {name: (value, text) for name, value, text in pairs}


def assert_numbers_match(page: Page, dto: dict[str, Any]) -> None:
    shown = fields(page)
    expected = {
        name: value for name, value in dto.items() if name != "period" and value is not None
    }
    assert set(shown) == set(expected)
    for name, value in expected.items():
        data_value, text = shown[name]
        assert float(data_value) == float(text.replace(",", "")) == value, name


def api_usage(server: str, key: str) -> dict[str, Any]:
    response = httpx.get(f"{server}/api/users/me/usage", headers={"X-Api-Key": key}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_chart(page: Page, name: str, spent: int) -> None:
    """The history chart is drawn, named for assistive technology, and its table adds up
    to what the account spent (all of it today, or yesterday too around midnight)."""
    chart = page.get_by_role("img", name=re.compile(f"^{name}"))
    chart.wait_for()
    box = chart.bounding_box()
    assert box is not None
    assert box["width"] > 600
    assert box["height"] > 150
    bars = page.locator("svg.history-chart rect.pool-plan")
    assert bars.count() >= 1
    bar = bars.first.bounding_box()
    assert bar is not None
    assert bar["height"] > 10
    totals = page.locator("#history-table tbody td:last-child").all_text_contents()
    assert sum(int(total) for total in totals) == spent
    assert len(totals) >= 28  # every day of the month, zeros included
    table = page.locator(".visually-hidden:has(#history-table)").bounding_box()
    assert table is not None
    assert table["width"] <= 1  # for screen readers, not drawn


def assert_readable(page: Page) -> None:
    contrasts = page.evaluate(_CONTRASTS)
    assert contrasts, "no text measured"
    low = [(text, ratio) for text, ratio in contrasts if ratio < 4.5]
    assert low == [], "text below 4.5:1 contrast"


def test_sign_in_read_charge_switch_language_sign_out(
    page: Page, server: str, admin: httpx.Client, account: dict[str, Any]
) -> None:
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert_readable(page)
    screenshot(page, "login.png")

    sign_in_with_keyboard(page, PASSWORD)
    page.wait_for_url("**/usage")
    page.get_by_role("heading", name="Your usage").wait_for()
    dto = api_usage(server, account["key"])
    assert_numbers_match(page, dto)
    assert (dto["currentCredit"], dto["additionalCredit"], dto["ttpCount"]) == (92, 12.5, 8)
    badges = page.locator(".badge").all_inner_texts()
    assert badges == ["Available", "Near the limit", "Unlimited"]
    assert_chart(page, "Credit spent per day", 8)

    # the reset instant, rewritten by /static/pages.js into the browser's zone
    reset = page.locator('time[data-field="resetAt"]')
    end = datetime.fromisoformat(dto["period"].split("/")[1])
    assert reset.get_attribute("datetime") == end.isoformat(timespec="seconds")
    assert reset.get_attribute("data-localized") == "true"
    local = end.astimezone(ZoneInfo(BROWSER_ZONE))
    assert f"{local:%H:%M}" in reset.inner_text()
    assert "(UTC+00:00)" in str(reset.get_attribute("title"))  # the billing-zone text
    assert BROWSER_ZONE in page.locator("[data-tz-note]").inner_text()

    # every control is reachable with Tab, in reading order
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    stops = tab_to(page, "button:Sign out")
    assert stops[:2] == ["a:English", "a:한국어"]
    assert_readable(page)
    screenshot(page, "usage-en.png")
    # the chart's numbers as CSV, downloaded with the session cookie
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download CSV").click()
    csv = Path(downloading.value.path()).read_text(encoding="utf-8")
    assert csv.startswith("start,end,plan,purchased,postpaid,")
    assert len(csv.splitlines()) == 1 + page.locator("#history-table tbody tr").count()

    charged = admin.post(
        "/api/admin/charges",
        json={"userId": account["id"], "kind": "ttp"},
        headers={"Idempotency-Key": "browser-ttp-1"},
    )
    assert charged.status_code == 201, charged.text
    page.reload()
    after = api_usage(server, account["key"])
    assert (after["ttpCount"], after["currentCredit"]) == (9, 91)
    assert_numbers_match(page, after)
    assert fields(page)["ttpCount"] == ("9", "9")
    assert page.locator('meter[aria-labelledby="ttp-label"]').get_attribute("value") == "9"

    page.get_by_role("link", name="한국어").click()
    page.wait_for_function("document.documentElement?.lang === 'ko'")
    page.get_by_role("heading", name="내 사용량").wait_for()
    assert_numbers_match(page, after)
    badges = page.locator(".badge").all_inner_texts()
    assert badges == ["여유 있음", "한도 임박", "무제한"]
    assert_chart(page, "\\d+월 \\d+일 ~ \\d+월 \\d+일 일별 크레딧 사용량", 9)
    assert_readable(page)
    screenshot(page, "usage-ko.png")

    page.get_by_role("button", name="로그아웃").click()
    page.wait_for_url(f"{server}/")
    page.get_by_role("heading", name="로그인").wait_for()
    page.goto("/usage")
    assert page.url == f"{server}/"  # signed out for real: back at the login page


def test_a_wrong_password_shows_the_error(
    page: Page, account: dict[str, Any], problems: list[str]
) -> None:
    page.goto("/")
    with page.expect_response("**/login") as answer:
        sign_in_with_keyboard(page, "not the password")
    assert answer.value.status == 401
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "The email or the password is wrong." in alert.inner_text()
    assert page.locator("#email").input_value() == EMAIL
    names = {cookie["name"] for cookie in page.context.cookies()}
    assert "csrf" in names
    assert "connect.sid" not in names
    # the re-rendered form works as it is
    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    page.wait_for_url("**/usage")
    page.get_by_role("heading", name="Your usage").wait_for()
    # Chromium logs every document answered 4xx; that 401 was the point of this test
    expected = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    problems[:] = [problem for problem in problems if problem != expected]


def test_an_expired_session_goes_back_to_login(
    page: Page, server: str, account: dict[str, Any], database_url: str
) -> None:
    page.goto("/")
    sign_in_with_keyboard(page, PASSWORD)
    page.wait_for_url("**/usage")
    now_us = time.time_ns() // 1000
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=15) as conn:
        changed = conn.execute("UPDATE sessions SET expires_at = ?", (now_us - 1,)).rowcount
    conn.close()
    assert changed == 1
    page.reload()
    page.wait_for_url(f"{server}/")
    page.locator("#email").wait_for()


def test_everything_works_without_javascript(
    browser: Browser, server: str, account: dict[str, Any]
) -> None:
    context = browser.new_context(
        base_url=server, java_script_enabled=False, timezone_id=BROWSER_ZONE
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto("/")
        sign_in_with_keyboard(page, PASSWORD)
        page.wait_for_url("**/usage")
        assert_numbers_match(page, api_usage(server, account["key"]))
        # no script ran: the reset time stays in the billing zone, with its offset
        reset = page.locator('time[data-field="resetAt"]')
        assert reset.get_attribute("data-localized") is None
        assert reset.inner_text().endswith("(UTC+00:00)")
        assert "billing time zone (UTC, UTC+00:00)" in page.locator("[data-tz-note]").inner_text()
        page.get_by_role("link", name="한국어").click()
        page.get_by_role("heading", name="내 사용량").wait_for()
        page.get_by_role("button", name="로그아웃").click()
        page.wait_for_url(f"{server}/")
        page.get_by_role("heading", name="로그인").wait_for()
    finally:
        context.close()


def test_create_use_and_revoke_a_key_on_the_keys_page(
    page: Page, server: str, account: dict[str, Any]
) -> None:
    page.goto("/")
    sign_in_with_keyboard(page, PASSWORD)
    page.wait_for_url("**/usage")
    page.get_by_role("link", name="API keys").click()
    page.get_by_role("heading", name="API keys", exact=True).wait_for()

    page.locator("#key-name").fill("CI pipeline")
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("heading", name="Your new key").wait_for()
    assert page.get_by_role("button", name="Copy").is_visible()  # shown by pages.js
    new_key = page.locator("#new-key").inner_text()
    assert new_key.startswith("flm_")
    assert api_usage(server, new_key)["ttpCount"] == 8
    assert_readable(page)
    screenshot(page, "keys-en.png")

    page.get_by_role("link", name="한국어").click()
    page.get_by_role("heading", name="API 키", exact=True).wait_for()
    assert new_key not in page.content()  # shown once only
    assert_readable(page)
    screenshot(page, "keys-ko.png")
    page.get_by_role("link", name="English").click()

    row = page.locator("tr", has_text="CI pipeline")
    row.get_by_role("link", name="Revoke").click()
    page.get_by_role("heading", name="Revoke this key?").wait_for()
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url("**/keys")
    assert page.locator("tr", has_text="CI pipeline").locator(".badge").inner_text() == "Revoked"
    response = httpx.get(f"{server}/api/users/me/usage", headers={"X-Api-Key": new_key}, timeout=10)
    assert response.status_code == 401
    assert response.json()["data"] == "wrong_api_key"

"""The server-rendered pages: sign in, usage, sign out, in English and Korean.

Everything goes through HTTP on the in-process app (both stores). Pages are read with the
standard library's HTML parser: numbers through the ``data-field``/``data-value`` marks
the page carries, states through ``data-state`` and the visible badge. Spending is done
through ``POST /api/admin/charges``, as the platform does it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from flamel_usage.accounts.users import User
from flamel_usage.core.config import Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from flamel_usage.http.pages.chart import HISTORY_CSV
from flamel_usage.http.pages.strings import EN, KO
from flamel_usage.ledger.limits import count_state, credit_state
from tests.conftest import FakeClock
from tests.factories import Factory
from tests.test_history_chart import buckets_of, rects, svg_of, table_rows

PASSWORD = "correct horse battery staple"
USAGE_API = "/api/users/me/usage"
HISTORY_API = "/api/users/me/usage/history"
KOREAN = "ko-KR,ko;q=0.9"
_keys = itertools.count(1)


# --- reading pages ------------------------------------------------------------------------


@dataclass
class Page:
    lang: str | None = None
    fields: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (value, text)
    states: dict[str, str | None] = field(default_factory=dict)  # data-limit: data-state
    badges: list[str] = field(default_factory=list)
    inputs: dict[str, dict[str, str | None]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # for: text
    forms: list[dict[str, str | None]] = field(default_factory=list)
    scripts: list[dict[str, str | None]] = field(default_factory=list)
    meters: list[dict[str, str | None]] = field(default_factory=list)
    times: dict[str, str] = field(default_factory=dict)  # data-field: datetime
    links: list[dict[str, str | None]] = field(default_factory=list)
    handlers: list[str] = field(default_factory=list)  # on* attributes: must stay empty
    styles: int = 0  # inline <style> elements and style attributes: must stay 0
    text: str = ""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._capture: list[tuple[str, str, list[str]]] = []  # (tag, kind/key, chunks)
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        page = self.page
        page.handlers += [name for name, _ in attrs if name.startswith("on")]
        page.styles += ("style" in a) + (tag == "style")
        if tag == "html":
            page.lang = a.get("lang")
        if tag == "input" and a.get("name"):
            page.inputs[str(a["name"])] = a
        if tag == "form":
            page.forms.append(a)
        if tag == "script":
            page.scripts.append(a)
        if tag == "meter":
            page.meters.append(a)
        if tag == "a":
            page.links.append(a)
        if tag == "section" and a.get("data-limit"):
            page.states[str(a["data-limit"])] = a.get("data-state")
        if tag == "time" and a.get("data-field"):
            page.times[str(a["data-field"])] = str(a.get("datetime"))
        if a.get("data-field") and a.get("data-value") is not None:
            self._capture.append((tag, "field:" + str(a["data-field"]), []))
            self._value = str(a["data-value"])
        elif tag == "span" and "badge" in (a.get("class") or ""):
            self._capture.append((tag, "badge", []))
        elif tag == "label" and a.get("for"):
            self._capture.append((tag, "label:" + str(a["for"]), []))

    def handle_endtag(self, tag: str) -> None:
        if self._capture and self._capture[-1][0] == tag:
            _, key, chunks = self._capture.pop()
            text = "".join(chunks).strip()
            if key.startswith("field:"):
                self.page.fields[key[6:]] = (self._value, text)
            elif key == "badge":
                self.page.badges.append(text)
            else:
                self.page.labels[key[6:]] = text

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        for _, _, chunks in self._capture:
            chunks.append(data)

    def close(self) -> None:
        super().close()
        self.page.text = " ".join(" ".join(self._text).split())


def read(response: httpx.Response) -> Page:
    reader = _Reader()
    reader.feed(response.text)
    reader.close()
    return reader.page


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Name to the whole ``Set-Cookie`` line, for every cookie the response sets."""
    lines = response.headers.get_list("set-cookie")
    return {line.split("=", 1)[0]: line for line in lines}


def number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


# --- helpers ------------------------------------------------------------------------------


async def make_user(factory: Factory, **plan: Any) -> User:
    return await factory.user(await factory.plan(**plan), password=PASSWORD)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    form = read(await client.get("/"))
    token = form.inputs["csrf"]["value"]
    assert token
    return await client.post("/login", data={"email": email, "password": password, "csrf": token})


async def signed_in(client: httpx.AsyncClient, user: User) -> None:
    response = await sign_in(client, user.email)
    assert response.status_code == 303, response.text


async def charge(
    admin: httpx.AsyncClient, user: User, kind: str, cost: float | None = None
) -> None:
    body: dict[str, Any] = {"userId": user.id, "kind": kind}
    if cost is not None:
        body["cost"] = cost
    response = await admin.post(
        "/api/admin/charges", json=body, headers={"Idempotency-Key": f"page-{next(_keys)}"}
    )
    assert response.status_code == 201, response.text


async def usage_page(client: httpx.AsyncClient, **headers: str) -> Page:
    response = await client.get("/usage", headers=headers)
    assert response.status_code == 200, response.text
    return read(response)


def assert_is_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in response.headers["content-security-policy"]


# --- not signed in ------------------------------------------------------------------------


async def test_usage_redirects_to_login_when_not_signed_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/usage")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert "connect.sid" not in set_cookies(response)


async def test_a_forged_session_cookie_redirects_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/usage", headers={"Cookie": "connect.sid=s%3Aabc.def"})
    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_login_page_has_a_csrf_field_matching_an_httponly_strict_cookie(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert_is_page(response, 200)
    page = read(response)
    cookie = set_cookies(response)["csrf"]
    token = page.inputs["csrf"]["value"]
    assert token
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert cookie.startswith(f"csrf={token};")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert page.inputs["csrf"]["type"] == "hidden"
    [form] = page.forms
    assert (form["method"], form["action"]) == ("post", "/login")
    # the same token on a second visit: two tabs do not invalidate each other
    again = await client.get("/")
    assert read(again).inputs["csrf"]["value"] == token
    assert "csrf" not in set_cookies(again)


async def test_login_page_is_accessible_and_script_free_inline(client: httpx.AsyncClient) -> None:
    page = read(await client.get("/"))
    assert page.lang == "en"
    assert page.inputs["email"]["type"] == "email"
    assert page.inputs["password"]["type"] == "password"
    assert page.labels == {"email": "Email", "password": "Password"}
    assert page.scripts
    assert all(script.get("src", "").startswith("/static/") for script in page.scripts)
    assert page.handlers == []
    assert page.styles == 0


# --- signing in ---------------------------------------------------------------------------


async def test_right_password_signs_in_with_a_session_cookie(
    client: httpx.AsyncClient, factory: Factory, settings: Settings
) -> None:
    user = await make_user(factory)
    response = await sign_in(client, user.email)
    assert response.status_code == 303
    assert response.headers["location"] == "/usage"
    session = set_cookies(response)["connect.sid"]
    assert session.startswith("connect.sid=s%3A")
    assert "HttpOnly" in session
    assert f"Max-Age={settings.session_ttl_seconds}" in session
    # the used-up sign-in token is dropped
    assert "Max-Age=0" in set_cookies(response)["csrf"]
    usage = await client.get("/usage")
    assert_is_page(usage, 200)
    assert user.email in read(usage).text
    # already signed in: the login page sends the user on
    again = await client.get("/")
    assert again.status_code == 303
    assert again.headers["location"] == "/usage"


async def test_sign_in_uses_the_same_session_as_the_api(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory)
    await signed_in(client, user)
    assert (await client.get(USAGE_API)).status_code == 200


async def test_wrong_password_rerenders_the_form_with_an_error_and_no_session(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory)
    response = await sign_in(client, user.email, "wrong password")
    assert_is_page(response, 401)
    assert "connect.sid" not in set_cookies(response)
    page = read(response)
    assert "The email or the password is wrong." in page.text
    assert page.inputs["email"]["value"] == user.email
    assert page.inputs["email"]["aria-invalid"] == "true"
    assert page.inputs["csrf"]["value"]  # the form can be sent again as it is
    assert (await client.get("/usage")).status_code == 303


async def test_unknown_email_answers_like_a_wrong_password(client: httpx.AsyncClient) -> None:
    response = await sign_in(client, "nobody@example.com")
    assert_is_page(response, 401)
    assert "connect.sid" not in set_cookies(response)


async def test_empty_fields_ask_for_both(client: httpx.AsyncClient) -> None:
    response = await sign_in(client, "", "")
    assert_is_page(response, 400)
    assert "Enter your email and your password." in read(response).text


@pytest.mark.parametrize("case", ["no field", "wrong field", "no cookie", "bad cookie"])
async def test_login_without_the_right_csrf_token_is_refused(
    client: httpx.AsyncClient, factory: Factory, case: str
) -> None:
    user = await make_user(factory)
    token = read(await client.get("/")).inputs["csrf"]["value"]
    assert token
    data = {"email": user.email, "password": PASSWORD, "csrf": token}
    if case == "no field":
        del data["csrf"]
    elif case == "wrong field":
        data["csrf"] = token[:-1] + ("A" if token[-1] != "A" else "B")
    elif case == "no cookie":
        client.cookies.clear()
    else:
        client.cookies.clear()
        client.cookies.set("csrf", "short")
        data["csrf"] = "short"
    response = await client.post("/login", data=data)
    assert_is_page(response, 403)
    assert "connect.sid" not in set_cookies(response)
    assert "This request was refused" in read(response).text
    assert (await client.get("/usage")).status_code == 303


async def test_login_not_sent_as_a_form_is_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory)
    token = read(await client.get("/")).inputs["csrf"]["value"]
    response = await client.post(
        "/login",
        json={"email": user.email, "password": PASSWORD, "csrf": token},
    )
    assert_is_page(response, 403)
    assert "connect.sid" not in set_cookies(response)


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://testserver"])
async def test_login_from_another_origin_is_refused(
    client: httpx.AsyncClient, factory: Factory, origin: str
) -> None:
    user = await make_user(factory)
    token = read(await client.get("/")).inputs["csrf"]["value"]
    response = await client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf": token},
        headers={"Origin": origin},
    )
    assert_is_page(response, 403)
    assert "connect.sid" not in set_cookies(response)


async def test_login_from_our_own_origin_is_accepted(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory)
    token = read(await client.get("/")).inputs["csrf"]["value"]
    response = await client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf": token},
        headers={"Origin": "http://testserver"},
    )
    assert response.status_code == 303


# --- the usage page -----------------------------------------------------------------------


def assert_matches_api(page: Page, dto: dict[str, Any]) -> None:
    """Every number of the DTO is on the page, visible and exact; nulls are states."""
    for name in ("currentCredit", "additionalCredit", "maxCredit", "ttpCount", "editCount"):
        value, text = page.fields[name]
        assert Decimal(value) == Decimal(str(dto[name])), name
        assert number(text) == Decimal(str(dto[name])), name
    for count, limit in (("ttpCount", "maxTtpCount"), ("editCount", "maxEditCount")):
        if dto[limit] is None:
            assert limit not in page.fields
            assert page.states[count] == "unlimited"
        else:
            value, text = page.fields[limit]
            assert int(value) == int(text.replace(",", "")) == dto[limit]
    if dto["postpaidUsageCount"] is None:
        assert "postpaidUsageCount" not in page.fields
    else:
        value, text = page.fields["postpaidUsageCount"]
        assert Decimal(value) == number(text) == Decimal(str(dto["postpaidUsageCount"]))
    start, end = dto["period"].split("/")
    assert page.times == {"periodStart": start, "periodEnd": end, "resetAt": end}


async def test_usage_shows_exactly_the_numbers_of_the_api(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory, credits=1500, max_ttp=1000, max_edit=None)
    await factory.purchase(user, 2.5)
    await charge(admin, user, "ttp")
    await charge(admin, user, "image", 0.125)
    await signed_in(admin, user)
    page = await usage_page(admin)
    dto = (await admin.get(USAGE_API)).json()
    assert dto["currentCredit"] == 1498.875
    assert page.fields["currentCredit"] == ("1498.875", "1,498.875")
    assert page.fields["maxCredit"] == ("1500", "1,500")
    assert page.fields["additionalCredit"] == ("2.5", "2.5")
    assert_matches_api(page, dto)
    assert page.states["planCredit"] == "ok"


async def test_postpaid_usage_is_shown_when_the_account_has_it(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory, credits=2, max_ttp=None, max_edit=5, postpaid=True)
    for _ in range(4):  # 4 of 5 edits; 2 credits from the plan, 2 postpaid
        await charge(admin, user, "edit")
    await charge(admin, user, "image", 1.5)
    await signed_in(admin, user)
    page = await usage_page(admin)
    dto = (await admin.get(USAGE_API)).json()
    assert dto["postpaidUsageCount"] == 3.5
    assert_matches_api(page, dto)
    assert page.states == {
        "planCredit": "reached",
        "additionalCredit": None,
        "ttpCount": "unlimited",
        "editCount": "near",
        "postpaidUsageCount": None,
    }


async def test_usage_page_is_not_cached_and_states_the_period(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory)
    await signed_in(client, user)
    response = await client.get("/usage")
    assert_is_page(response, 200)
    text = read(response).text
    # the clock fixture's instant, in the billing zone (UTC here) with its offset
    assert "November 25, 2026, 10:00 (UTC+00:00) to December 25, 2026, 10:00 (UTC+00:00)" in text
    assert "Resets on December 25, 2026, 10:00 (UTC+00:00)" in text
    assert "Times are in the billing time zone (UTC, UTC+00:00)." in text


async def test_the_reset_time_is_rendered_in_the_billing_zone(
    settings: Settings, db: Database, clock: FakeClock
) -> None:
    seoul = replace(settings, timezone=ZoneInfo("Asia/Seoul"))
    factory = Factory(db, clock, seoul.timezone)
    user = await make_user(factory)
    transport = httpx.ASGITransport(app=App(seoul, db, clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await signed_in(client, user)
        page = read(await client.get("/usage"))
    assert page.times["resetAt"] == "2026-12-25T19:00:00+09:00"
    assert "December 25, 2026, 19:00 (UTC+09:00)" in page.text
    assert "(Asia/Seoul, UTC+09:00)" in page.text


async def test_limit_states_follow_the_spending(admin: httpx.AsyncClient, factory: Factory) -> None:
    user = await make_user(factory, credits=10, max_ttp=5, max_edit=None)
    await signed_in(admin, user)

    async def states() -> tuple[dict[str, str | None], list[str]]:
        page = await usage_page(admin)
        assert_matches_api(page, (await admin.get(USAGE_API)).json())
        return page.states, page.badges

    found, badges = await states()
    assert (found["planCredit"], found["ttpCount"], found["editCount"]) == (
        "ok",
        "ok",
        "unlimited",
    )
    assert badges == ["Available", "Available", "Unlimited"]

    for _ in range(4):  # 4 of 5 TTP: 80 %
        await charge(admin, user, "ttp")
    found, badges = await states()
    assert (found["planCredit"], found["ttpCount"]) == ("ok", "near")
    assert badges == ["Available", "Near the limit", "Unlimited"]

    await charge(admin, user, "ttp")  # 5 of 5
    found, badges = await states()
    assert (found["planCredit"], found["ttpCount"]) == ("ok", "reached")
    assert badges == ["Available", "Limit reached", "Unlimited"]

    await charge(admin, user, "image", 2.999)  # 7.999 of 10 credits used: not yet 80 %
    found, _ = await states()
    assert found["planCredit"] == "ok"
    await charge(admin, user, "image", 0.001)  # 8 of 10: 80 %
    found, badges = await states()
    assert found["planCredit"] == "near"
    assert badges[0] == "Near the limit"

    await charge(admin, user, "image", 2)  # all 10 used
    found, badges = await states()
    assert found["planCredit"] == "reached"
    assert badges[0] == "Limit reached"


async def test_meters_carry_their_numbers_and_a_visible_text(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory, credits=10, max_ttp=5, max_edit=4)
    await charge(admin, user, "ttp")
    await signed_in(admin, user)
    page = await usage_page(admin)
    assert [(m["min"], m["max"], m["value"]) for m in page.meters] == [
        ("0", "10", "9"),
        ("0", "5", "1"),
        ("0", "4", "0"),
    ]
    for meter in page.meters:
        assert meter["aria-labelledby"]
        assert meter["aria-describedby"]
    assert "9 of 10 credits left this period" in page.text
    assert "1 of 5 used this period" in page.text
    assert "0 of 4 used this period" in page.text


async def test_the_chart_shows_the_days_of_the_history_api(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory, credits=10, max_ttp=None, max_edit=None, postpaid=True)
    await factory.purchase(user, 5)
    await charge(admin, user, "image", 8)  # from the plan
    await charge(admin, user, "image", 4.5)  # 2 from the plan, 2.5 purchased
    await charge(admin, user, "image", 3)  # 2.5 purchased, 0.5 postpaid
    await signed_in(admin, user)
    response = await admin.get("/usage")
    assert_is_page(response, 200)
    html = response.text
    history = (await admin.get(HISTORY_API)).json()  # the same session: the same days

    svg = svg_of(html)
    assert svg.attrib["role"] == "img"
    groups = buckets_of(svg)
    assert [group.attrib["data-start"] for group in groups] == [
        bucket["start"] for bucket in history["buckets"]
    ]
    rows = table_rows(html)
    assert len(rows) == len(history["buckets"]) >= 28  # every day of the month
    for row, bucket in zip(rows, history["buckets"], strict=True):
        credit = bucket["credit"]
        shown = [number(cell) for cell in row[1:]]
        expected = [Decimal(str(credit[pool])) for pool in ("plan", "purchased", "postpaid")]
        assert shown == [*expected, sum(expected)], row[0]
    spent = [row for row in rows if row[-1] != "0"]
    assert [row[1:] for row in spent] == [["10", "5", "0.5", "15.5"]]
    tallest = max(groups, key=lambda group: len(rects(group)))
    assert set(rects(tallest)) == {"plan", "purchased", "postpaid"}
    page = read(response)
    assert page.styles == 0
    assert page.handlers == []
    assert {"href": HISTORY_CSV, "download": None} in page.links
    csv = await admin.get(HISTORY_CSV)
    assert csv.status_code == 200
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert len(csv.text.splitlines()) == len(rows) + 1

    korean = (await admin.get("/usage", headers={"Accept-Language": KOREAN})).text
    assert "일별 사용량" in korean
    korean_rows = table_rows(korean)
    assert [row[1:] for row in korean_rows] == [row[1:] for row in rows]
    assert all(row[0].endswith("일") for row in korean_rows)


@pytest.mark.parametrize(
    ("limit", "count", "state"),
    [
        (None, 7, "unlimited"),
        (10, 7, "ok"),
        (10, 8, "near"),
        (10, 10, "reached"),
        (0, 0, "reached"),
    ],
)
def test_count_states(limit: int | None, count: int, state: str) -> None:
    assert count_state(count, limit) == state


@pytest.mark.parametrize(
    ("left", "maximum", "state"),
    [(100_000, 100_000, "ok"), (20_001, 100_000, "ok"), (20_000, 100_000, "near"),
     (1, 100_000, "near"), (0, 100_000, "reached"), (0, 0, "reached"), (5_000, 0, "reached")],
)  # fmt: skip
def test_credit_states(left: int, maximum: int, state: str) -> None:
    assert credit_state(left, maximum) == state


# --- languages ----------------------------------------------------------------------------


def test_both_languages_have_every_string() -> None:
    assert EN.keys() == KO.keys()
    assert all(value.strip() for value in [*EN.values(), *KO.values()])
    # Templates read ``t.name``: a key named like a dict method (``copy``) renders the method.
    assert not set(EN) & set(dir(dict))


async def test_korean_from_accept_language(client: httpx.AsyncClient, factory: Factory) -> None:
    login = read(await client.get("/", headers={"Accept-Language": KOREAN}))
    assert login.lang == "ko"
    assert login.labels == {"email": "이메일", "password": "비밀번호"}
    user = await make_user(factory, max_edit=None)
    await signed_in(client, user)
    page = await usage_page(client, **{"Accept-Language": KOREAN})
    assert page.lang == "ko"
    assert "내 사용량" in page.text
    assert "2026년 12월 25일 10:00 (UTC+00:00)" in page.text
    assert "무제한" in page.badges
    for key, english in EN.items():
        if key not in {"brand", "months"} and "{" not in english:
            assert english not in page.text, key


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("", "en"),
        ("ko", "ko"),
        ("en-US,en;q=0.9,ko;q=0.8", "en"),
        ("fr-FR,ko;q=0.5", "ko"),
        ("ko;q=0, en", "en"),
        ("de", "en"),
        ("ko;q=bogus, en;q=0.1", "en"),
    ],
)
async def test_accept_language_choice(
    client: httpx.AsyncClient, header: str, language: str
) -> None:
    page = read(await client.get("/", headers={"Accept-Language": header}))
    assert page.lang == language


async def test_the_language_switch_sticks(client: httpx.AsyncClient, factory: Factory) -> None:
    page = read(await client.get("/"))
    switch = {link["hreflang"]: link for link in page.links if link.get("hreflang")}
    assert switch["ko"]["href"] == "/?lang=ko"
    assert switch["en"]["aria-current"] == "true"
    response = await client.get("/?lang=ko", headers={"Accept-Language": "en"})
    assert read(response).lang == "ko"
    assert set_cookies(response)["lang"].startswith("lang=ko;")
    # the cookie now wins over the browser's preference, on every page
    user = await make_user(factory)
    await signed_in(client, user)
    page = await usage_page(client, **{"Accept-Language": "en"})
    assert page.lang == "ko"
    switch = {link["hreflang"]: link for link in page.links if link.get("hreflang")}
    assert switch["en"]["href"] == "/usage?lang=en"
    assert switch["ko"]["aria-current"] == "true"
    back = await client.get("/usage?lang=en", headers={"Accept-Language": KOREAN})
    assert read(back).lang == "en"
    assert (await usage_page(client, **{"Accept-Language": KOREAN})).lang == "en"


async def test_korean_error_message(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await make_user(factory)
    await client.get("/?lang=ko")
    response = await sign_in(client, user.email, "wrong password")
    assert response.status_code == 401
    assert "이메일 또는 비밀번호가 올바르지 않습니다." in read(response).text


async def test_many_query_fields_still_get_the_page(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """From 17 fields on, the pages once answered 500 (and logged a traceback)."""
    for fields in (17, 1000):
        query = "&".join(f"f{n}=x" for n in range(fields))
        login = await client.get(f"/?{query}&lang=ko")
        assert_is_page(login, 200)
        assert read(login).lang == "ko"
        assert (await client.get(f"/usage?{query}")).status_code == 303
        assert (await client.get(f"/static/pages.css?{query}")).status_code == 200
    user = await make_user(factory)
    await signed_in(client, user)
    page = await client.get(f"/usage?{query}&lang=en")
    assert_is_page(page, 200)
    assert read(page).lang == "en"


# --- escaping -----------------------------------------------------------------------------


async def test_what_the_client_sent_is_escaped(client: httpx.AsyncClient) -> None:
    hostile = '"><script>alert(1)</script>'
    response = await sign_in(client, hostile, "x")
    assert response.status_code == 401
    assert "<script>alert" not in response.text
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert read(response).inputs["email"]["value"] == hostile


async def test_an_unknown_language_is_ignored_not_reflected(client: httpx.AsyncClient) -> None:
    response = await client.get("/?lang=%3Cscript%3Ealert(1)%3C/script%3E")
    assert response.status_code == 200
    assert read(response).lang == "en"
    assert "<script>alert" not in response.text
    assert "lang" not in set_cookies(response)
    bad_cookie = await client.get("/", headers={"Cookie": "lang=<script>"})
    assert read(bad_cookie).lang == "en"
    assert "<script>" not in bad_cookie.text


HOSTILE = "\"'><script>alert(1)</script>&amp;"


def assert_shown_as_text(response: httpx.Response, *values: str) -> Page:
    """Each value is on the page as the reader typed it, in its text or a field's value,
    and none of it became markup."""
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    page = read(response)
    assert page.scripts == [{"src": page.scripts[0]["src"], "defer": None}]  # ours alone
    assert page.handlers == []
    fields = {str(attributes.get("value")) for attributes in page.inputs.values()}
    for value in values:
        assert value in page.text or value in fields, value
    return page


async def test_hostile_values_are_escaped_on_every_page(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """An email and key names that are markup, with both kinds of quote and an entity,
    reach every page that shows them as text: the template engine escapes text and
    attributes alike. A plan's name is never shown on a page (and is letters, digits and
    ``._-`` only)."""
    email = f"{HOSTILE}@example.com"  # a valid address: the API would accept it too
    user = await factory.user(await factory.plan(), password=PASSWORD, email=email)
    assert user.email == email
    login = await sign_in(client, email, "wrong password")
    assert login.status_code == 401
    assert assert_shown_as_text(login, email).inputs["email"]["value"] == email

    await signed_in(client, user)
    assert_shown_as_text(await client.get("/usage"), email)
    keys = await client.get("/keys")
    assert_shown_as_text(keys, email)

    name = f"{HOSTILE} & co"
    token = str(read(keys).inputs["csrf"]["value"])
    created = await client.post("/keys", data={"csrf": token, "name": name})
    assert created.status_code == 200
    assert_shown_as_text(created, email, name)
    [key] = (await client.get("/api/users/me/keys")).json()["keys"]
    assert key["name"] == name
    confirm = await client.get(f"/keys/{key['id']}/revoke")
    assert confirm.status_code == 200
    assert_shown_as_text(confirm, name)

    too_long = HOSTILE * 3  # kept in the form to be corrected, and refused
    refused = await client.post("/keys", data={"csrf": token, "name": too_long})
    assert refused.status_code == 400
    assert assert_shown_as_text(refused, too_long).inputs["name"]["value"] == too_long


# --- signing out --------------------------------------------------------------------------


async def test_logout_with_its_token_ends_the_session(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory)
    await signed_in(client, user)
    page = await usage_page(client)
    [form] = page.forms
    assert (form["method"], form["action"]) == ("post", "/logout")
    token = page.inputs["csrf"]["value"]
    assert token
    stolen = client.cookies["connect.sid"]
    response = await client.post("/logout", data={"csrf": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert "Max-Age=0" in set_cookies(response)["connect.sid"]
    assert (await client.get("/usage")).status_code == 303
    # the session itself is gone, not only the cookie
    client.cookies.clear()
    replay = await client.get(USAGE_API, headers={"Cookie": f"connect.sid={stolen}"})
    assert replay.status_code == 403


@pytest.mark.parametrize("case", ["no token", "wrong token", "other session's token"])
async def test_logout_without_its_token_is_refused(
    client: httpx.AsyncClient, factory: Factory, case: str
) -> None:
    other = await make_user(factory)
    await signed_in(client, other)
    other_token = (await usage_page(client)).inputs["csrf"]["value"]
    client.cookies.clear()
    user = await make_user(factory)
    await signed_in(client, user)
    token = (await usage_page(client)).inputs["csrf"]["value"]
    assert token
    assert other_token != token
    data = {
        "no token": {},
        "wrong token": {"csrf": "0" * len(token)},
        "other session's token": {"csrf": other_token},
    }[case]
    response = await client.post("/logout", data=data)
    assert_is_page(response, 403)
    assert "connect.sid" not in set_cookies(response)
    assert (await client.get("/usage")).status_code == 200


async def test_logout_from_another_origin_is_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await make_user(factory)
    await signed_in(client, user)
    token = (await usage_page(client)).inputs["csrf"]["value"]
    response = await client.post(
        "/logout", data={"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert_is_page(response, 403)
    assert (await client.get("/usage")).status_code == 200


async def test_logout_without_a_session_just_goes_home(client: httpx.AsyncClient) -> None:
    response = await client.post("/logout", data={})
    assert response.status_code == 303
    assert response.headers["location"] == "/"


# --- expiry -------------------------------------------------------------------------------


async def test_an_expired_session_goes_back_to_login(
    client: httpx.AsyncClient, factory: Factory, clock: FakeClock, settings: Settings
) -> None:
    user = await make_user(factory)
    await signed_in(client, user)
    clock.advance(settings.session_ttl_seconds - 1)
    assert (await client.get("/usage")).status_code == 200
    clock.advance(1)
    response = await client.get("/usage")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    login = await client.get("/")
    assert login.status_code == 200
    assert read(login).inputs["csrf"]["value"]


# --- static files -------------------------------------------------------------------------


async def test_static_files_are_served_from_the_package(client: httpx.AsyncClient) -> None:
    page = read(await client.get("/"))
    [script] = page.scripts
    src = str(script["src"])
    assert "defer" in script
    response = await client.get(src)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert b"data-localize" in response.content
    css = await client.get("/static/pages.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert css.headers["cache-control"] == "no-cache"  # unversioned: revalidate


@pytest.mark.parametrize("name", ["nope.js", "..%2Fpages.py", "..%2F..%2Fconfig.py", "%2Fetc"])
async def test_only_known_static_files_are_served(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status_code == 404

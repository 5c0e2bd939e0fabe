"""Brute-force defence: wrong keys and failed logins are throttled per client and account,
without handing anyone a switch that locks a customer out."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from flamel_usage.core.config import Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from tests.conftest import ADMIN_TOKEN, SESSION_SECRET, FakeClock
from tests.factories import Factory
from tests.processes import running_server

USAGE = "/api/users/me/usage"
PASSWORD = "correct horse battery staple"
WRONG_KEY = "flm_" + "w" * 43
DEVICE_COOKIE = "flamel_device"
CSRF_TOKEN = "c" * 43
BUDGETS = {
    "FLAMEL_KEY_FAILURE_BUDGET": "3",
    "FLAMEL_LOGIN_FAILURE_BUDGET": "2",
    "FLAMEL_THROTTLE_WINDOW_SECONDS": "60",
    "FLAMEL_CLIENT_ADDRESS_HEADER": "X-Forwarded-For",
}


@pytest.fixture
async def throttled(
    environ: dict[str, str], db: Database, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = App(Settings.from_environ({**environ, **BUDGETS}), db, clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def _from(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"10.0.0.9, {address}", **headers}


# --- API keys ------------------------------------------------------------------------------


async def test_past_the_budget_wrong_keys_are_refused_and_valid_keys_still_answered(
    throttled: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    """Defect 13: behind one address (a proxy, a NAT, the platform's back end) a few wrong
    keys must not lock every customer out."""
    keys = [await factory.key(await factory.user()) for _ in range(2)]
    attacker = _from("203.0.113.7", **{"X-Api-Key": WRONG_KEY})

    answers = [await throttled.get(USAGE, headers=attacker) for _ in range(5)]
    same_address = [
        await throttled.get(USAGE, headers=_from("203.0.113.7", **{"X-Api-Key": key}))
        for key in keys
    ]
    other_address = await throttled.get(
        USAGE, headers=_from("198.51.100.1", **{"X-Api-Key": keys[0]})
    )

    assert [answer.status_code for answer in answers] == [401, 401, 401, 429, 429]
    assert answers[-1].json() == {
        "success": False,
        "code": 429,
        "data": "too_many_requests",
        "message": "too many failed attempts: wait before trying again",
    }
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
    assert [answer.status_code for answer in same_address] == [200, 200]
    assert other_address.status_code == 200

    clock.advance(61)
    assert (await throttled.get(USAGE, headers=attacker)).status_code == 401


async def test_the_address_a_proxy_adds_on_its_own_line_is_the_one_counted(
    throttled: httpx.AsyncClient,
) -> None:
    """A proxy such as HAProxy (``option forwardfor``) adds its own X-Forwarded-For line
    after the one the client sent: the client's line, however it changes, is not who
    is counted."""
    answers = []
    for n in range(5):
        headers = [
            ("X-Forwarded-For", f"198.51.100.{n}, 192.0.2.{n}"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Api-Key", WRONG_KEY),
        ]
        answers.append((await throttled.get(USAGE, headers=headers)).status_code)
    assert answers == [401, 401, 401, 429, 429]


async def test_malformed_keys_count_too(throttled: httpx.AsyncClient) -> None:
    garbage = _from("203.0.113.8", **{"X-Api-Key": "not a key"})
    answers = [(await throttled.get(USAGE, headers=garbage)).status_code for _ in range(4)]
    assert answers == [401, 401, 401, 429]


async def test_a_blank_key_is_not_counted(throttled: httpx.AsyncClient) -> None:
    blank = _from("203.0.113.9", **{"X-Api-Key": " "})
    answers = [(await throttled.get(USAGE, headers=blank)).status_code for _ in range(4)]
    assert answers == [403, 403, 403, 403]


@pytest.fixture
async def sqlite_app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[App, Path]]:
    path = tmp_path / "store.sqlite3"
    settings = Settings.from_environ(
        {
            "FLAMEL_DATA_DIR": str(tmp_path / "data"),
            "FLAMEL_DATABASE_URL": f"sqlite:///{path}",
            "FLAMEL_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLAMEL_SESSION_SECRET": SESSION_SECRET,
        }
    )
    database = Database.from_url(settings.database_url, timeout=5)
    await database.start()
    try:
        yield App(settings, database, clock), path
    finally:
        await database.close()


async def test_a_wrong_key_waiting_for_the_write_lock_leaves_the_worker_answering(
    sqlite_app: tuple[App, Path], clock: FakeClock
) -> None:
    """Defect 7: counting a wrong key is a write; while another process holds SQLite's
    write lock, that write waits with the event loop free and the read connection
    released, so the same worker goes on answering."""
    app, path = sqlite_app
    factory = Factory(app.services.db, clock, app.services.settings.timezone)
    key = await factory.key(await factory.user())
    release = threading.Event()
    held_to_the_end: list[bool] = []

    with closing(sqlite3.connect(path, isolation_level=None, check_same_thread=False)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

        def hold_until_released() -> None:
            # Bounded: a frozen event loop could never set ``release``.
            held_to_the_end.append(not release.wait(timeout=3))
            other.execute("ROLLBACK")

        holder = threading.Thread(target=hold_until_released)
        holder.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            wrong = asyncio.create_task(http.get(USAGE, headers={"X-Api-Key": WRONG_KEY}))
            await asyncio.sleep(0.2)  # the wrong key reaches its write and waits there
            reads = [await http.get(USAGE, headers={"X-Api-Key": key}) for _ in range(5)]
            waiting = not wrong.done()
            release.set()
            answer = await asyncio.wait_for(wrong, 10)
        holder.join(5)

    assert waiting, "the wrong key was answered before the write lock was free"
    assert [read.status_code for read in reads] == [200] * 5
    assert held_to_the_end == [False], "the reads waited for the other writer"
    assert answer.status_code == 401
    async with app.services.db.read() as conn:
        assert await conn.fetchval("SELECT SUM(failures) FROM auth_failures") == 1


async def test_the_throttle_holds_across_worker_processes(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    key = await factory.key(await factory.user())
    settings = {**environ, **BUDGETS}
    del settings["FLAMEL_CLIENT_ADDRESS_HEADER"]
    with running_server(settings, workers=2) as base_url:
        answers = []
        for _ in range(6):
            # A new connection each time, so the requests spread over both workers.
            with httpx.Client(base_url=base_url, timeout=10) as client:
                answers.append(client.get(USAGE, headers={"X-Api-Key": WRONG_KEY}).status_code)
        with httpx.Client(base_url=base_url, timeout=10) as client:
            valid = client.get(USAGE, headers={"X-Api-Key": key}).status_code
    assert answers == [401, 401, 401, 429, 429, 429]
    assert valid == 200


# --- sign-in -------------------------------------------------------------------------------


async def _login(
    client: httpx.AsyncClient, address: str, email: str, password: str, device: str | None = None
) -> httpx.Response:
    """``POST /api/auth/login`` from ``address``, with the device cookie when given."""
    headers = _from(address)
    if device is not None:
        headers["Cookie"] = f"{DEVICE_COOKIE}={device}"
    response = await client.post(
        "/api/auth/login", json={"email": email, "password": password}, headers=headers
    )
    client.cookies.clear()  # every cookie is sent explicitly
    return response


async def _device_of(client: httpx.AsyncClient, address: str, email: str) -> str | None:
    """The device cookie a successful sign-in from ``address`` gives its browser."""
    response = await _login(client, address, email, PASSWORD)
    assert response.status_code == 200, response.text
    return response.cookies.get(DEVICE_COOKIE)


async def _exhaust_the_account(client: httpx.AsyncClient, email: str) -> None:
    """Wrong passwords for ``email`` from addresses of its own, till the account is over."""
    answers = [
        (await _login(client, f"203.0.113.{n}", email, "wrong password")).status_code
        for n in range(1, 4)
    ]
    assert answers == [401, 401, 429]


async def test_failed_logins_of_unknown_clients_are_throttled_per_account(
    throttled: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(password=PASSWORD)
    await _exhaust_the_account(throttled, user.email)

    assert (await _login(throttled, "192.0.2.50", user.email, PASSWORD)).status_code == 429
    clock.advance(61)
    assert (await _login(throttled, "192.0.2.50", user.email, PASSWORD)).status_code == 200


async def test_failed_logins_are_throttled_per_client(
    throttled: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(password=PASSWORD)
    guesses = [
        (await _login(throttled, "192.0.2.99", f"nobody{n}@example.com", "guess")).status_code
        for n in range(3)
    ]
    assert guesses == [401, 401, 429]
    assert (await _login(throttled, "192.0.2.99", user.email, PASSWORD)).status_code == 429
    assert (await _login(throttled, "192.0.2.100", user.email, PASSWORD)).status_code == 200


async def test_an_attacker_cannot_lock_the_owner_out_of_a_browser_they_signed_in_with(
    throttled: httpx.AsyncClient, factory: Factory
) -> None:
    """Defect 4: wrong passwords from anywhere, even from the owner's own address, leave
    a browser that signed in to the account before able to sign in."""
    user = await factory.user(password=PASSWORD)
    device = await _device_of(throttled, "192.0.2.10", user.email)
    await _exhaust_the_account(throttled, user.email)
    # The owner's address (a NAT shared with the attacker) over its budget too.
    for n in range(2):
        await _login(throttled, "192.0.2.10", f"nobody{n}@example.com", "guess")

    same_address = await _login(throttled, "192.0.2.10", user.email, PASSWORD, device)
    elsewhere = await _login(throttled, "198.51.100.5", user.email, PASSWORD, device)
    unknown_browser = await _login(throttled, "198.51.100.6", user.email, PASSWORD)

    assert same_address.status_code == 200, same_address.text
    assert elsewhere.status_code == 200, elsewhere.text
    assert unknown_browser.status_code == 429


async def test_the_owner_signing_in_does_not_give_an_attacker_more_guesses(
    throttled: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    """Defect 4: an attacker from ever new addresses gets the account's budget of password
    checks per window, however often the owner signs in meanwhile, and no more."""
    user = await factory.user(password=PASSWORD)
    device = await _device_of(throttled, "192.0.2.10", user.email)
    checked = 0
    for n in range(6):
        answer = await _login(throttled, f"203.0.113.{n}", user.email, f"guess {n}")
        assert answer.status_code in (401, 429)
        checked += answer.status_code == 401
        owner = await _login(throttled, "192.0.2.10", user.email, PASSWORD, device)
        assert owner.status_code == 200
        device = owner.cookies.get(DEVICE_COOKIE, device)
    assert checked == 2
    # Past the budget the right password is refused too: it cannot be told from a guess.
    assert (await _login(throttled, "203.0.113.99", user.email, PASSWORD)).status_code == 429

    clock.advance(61)
    assert (await _login(throttled, "203.0.113.100", user.email, "guess")).status_code == 401


async def test_a_device_cookie_counts_only_for_its_own_account(
    throttled: httpx.AsyncClient, factory: Factory
) -> None:
    """Defect 4: the attacker's own account's device cookie, or a forged one, makes no
    known browser of the victim's account."""
    victim = await factory.user(password=PASSWORD)
    attacker = await factory.user(password=PASSWORD)
    own_device = await _device_of(throttled, "203.0.113.1", attacker.email)
    assert own_device is not None
    await _exhaust_the_account(throttled, victim.email)

    for device in (own_device, "forged.AAAA", own_device.rsplit(".", 1)[0] + ".AAAA", ""):
        answer = await _login(throttled, "203.0.113.50", victim.email, PASSWORD, device)
        assert answer.status_code == 429, device


async def test_a_known_browser_has_a_budget_of_its_own(
    throttled: httpx.AsyncClient, factory: Factory
) -> None:
    """Defect 4: a device cookie (stolen, say) buys no more guesses than the budget, and
    its failures lock out neither the account nor the address."""
    user = await factory.user(password=PASSWORD)
    device = await _device_of(throttled, "192.0.2.10", user.email)
    wrong = [
        (await _login(throttled, "192.0.2.10", user.email, "wrong", device)).status_code
        for _ in range(3)
    ]
    assert wrong == [401, 401, 429]
    assert (await _login(throttled, "192.0.2.10", user.email, PASSWORD, device)).status_code == 429
    assert (await _login(throttled, "192.0.2.10", user.email, PASSWORD)).status_code == 200


async def _sign_in_on_the_page(
    client: httpx.AsyncClient, address: str, email: str, device: str | None = None
) -> httpx.Response:
    cookie = f"csrf={CSRF_TOKEN}" + ("" if device is None else f"; {DEVICE_COOKIE}={device}")
    response = await client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf": CSRF_TOKEN},
        headers=_from(address, Cookie=cookie),
    )
    client.cookies.clear()
    return response


async def test_the_sign_in_page_remembers_the_browser_too(
    throttled: httpx.AsyncClient, factory: Factory
) -> None:
    """Defect 4, on the sign-in page."""
    user = await factory.user(password=PASSWORD)
    first = await _sign_in_on_the_page(throttled, "192.0.2.10", user.email)
    assert first.status_code == 303
    device = first.cookies.get(DEVICE_COOKIE)
    await _exhaust_the_account(throttled, user.email)

    known = await _sign_in_on_the_page(throttled, "192.0.2.11", user.email, device)
    unknown = await _sign_in_on_the_page(throttled, "192.0.2.12", user.email)
    assert known.status_code == 303
    assert unknown.status_code == 429

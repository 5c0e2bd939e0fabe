"""Brute-force defence: wrong keys and failed logins are throttled per client and account."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from flamel_usage.config import Settings
from flamel_usage.db import Database
from flamel_usage.web.app import App
from tests.conftest import ADMIN_TOKEN, SESSION_SECRET, FakeClock
from tests.factories import Factory
from tests.processes import running_server

USAGE = "/api/users/me/usage"
PASSWORD = "correct horse battery staple"
WRONG_KEY = "flm_" + "w" * 43
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


async def _login(client: httpx.AsyncClient, address: str, email: str, password: str) -> int:
    response = await client.post(
        "/api/auth/login", json={"email": email, "password": password}, headers=_from(address)
    )
    return response.status_code


async def test_failed_logins_are_throttled_per_account(
    throttled: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(password=PASSWORD)
    wrong = [
        await _login(throttled, f"192.0.2.{n}", user.email, "wrong password") for n in range(3)
    ]
    right_while_blocked = await _login(throttled, "192.0.2.50", user.email, PASSWORD)

    assert wrong == [401, 401, 429]
    assert right_while_blocked == 429
    clock.advance(61)
    assert await _login(throttled, "192.0.2.50", user.email, PASSWORD) == 200


async def test_failed_logins_are_throttled_per_client(
    throttled: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(password=PASSWORD)
    guesses = [
        await _login(throttled, "192.0.2.99", f"nobody{n}@example.com", "guess") for n in range(3)
    ]
    assert guesses == [401, 401, 429]
    assert await _login(throttled, "192.0.2.99", user.email, PASSWORD) == 429
    assert await _login(throttled, "192.0.2.100", user.email, PASSWORD) == 200


async def test_a_successful_login_clears_the_account_count(
    throttled: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(password=PASSWORD)
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert await _login(throttled, address, user.email, "wrong password") == 401
        assert await _login(throttled, address, user.email, PASSWORD) == 200

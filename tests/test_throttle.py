"""Brute-force defence: wrong keys and failed logins are throttled per client and account."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from flamel_usage.config import Settings
from flamel_usage.db import Database
from flamel_usage.web.app import App
from tests.conftest import FakeClock
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


async def test_wrong_keys_are_refused_past_the_budget_and_other_clients_are_not_slowed(
    throttled: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    key = await factory.key(await factory.user())
    attacker = _from("203.0.113.7", **{"X-Api-Key": WRONG_KEY})

    answers = [(await throttled.get(USAGE, headers=attacker)).status_code for _ in range(5)]
    blocked_valid = await throttled.get(USAGE, headers=_from("203.0.113.7", **{"X-Api-Key": key}))
    other_client = await throttled.get(USAGE, headers=_from("198.51.100.1", **{"X-Api-Key": key}))

    assert answers == [401, 401, 401, 429, 429]
    assert blocked_valid.status_code == 429
    assert blocked_valid.json() == {
        "success": False,
        "code": 429,
        "data": "too_many_requests",
        "message": "too many failed attempts: wait before trying again",
    }
    assert 1 <= int(blocked_valid.headers["retry-after"]) <= 60
    assert other_client.status_code == 200

    clock.advance(61)
    assert (
        await throttled.get(USAGE, headers=_from("203.0.113.7", **{"X-Api-Key": key}))
    ).status_code == 200


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
    assert valid == 429

"""Purchases with an Idempotency-Key: sold once per key, whatever the retries.

Every test runs on SQLite and on PostgreSQL (the ``db`` fixture); stored state is read
back with plain SQL, so a test checks what was written, not only what an answer says.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from flamel_usage.db.gateway import Database
from flamel_usage.metering import idempotency
from tests.conftest import ADMIN_TOKEN, FakeClock
from tests.factories import Factory
from tests.processes import running_server
from tests.store import table_rows

DAY = 86_400
CONCURRENT = 20


def credits_url(user_id: int) -> str:
    return f"/api/admin/users/{user_id}/credits"


async def buy(
    client: httpx.AsyncClient, user_id: int, body: dict[str, object], key: str | bytes | None
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await client.post(credits_url(user_id), json=body, headers=headers)


def reason_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["success"] is False
    assert body["code"] == response.status_code
    return response.status_code, body["data"]


async def _count(db: Database, statement: str, *args: object) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval(statement, *args))


async def purchases_of(db: Database, user_id: int) -> int:
    return await _count(db, "SELECT count(*) FROM credit_purchases WHERE user_id = ?", user_id)


async def test_a_retry_with_the_key_replays_the_first_answer_and_sells_nothing(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    body = {"amount": 12.5, "expiresAt": "2027-01-01T00:00:00+00:00"}
    first = await buy(admin, user.id, body, "order-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # Spent and bought since: the replay still shows the usage of the first answer.
    await factory.charge(user, "image", "later", 3)
    await factory.purchase(user, 1)
    clock.advance(3600)
    changed = await table_rows(db)

    again = await buy(admin, user.id, body, "order-1")
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert await table_rows(db) == changed
    assert await purchases_of(db, user.id) == 2
    entries = "SELECT count(*) FROM ledger_entries WHERE user_id = ? AND entry_type = 'purchase'"
    assert await _count(db, entries, user.id) == 2
    assert (await factory.usage(user)).additional_credit == 12_500 + 1000
    # 12.5 and 12.50 are the same amount, and an instant in another offset the same one.
    same = {"amount": 12.50, "expiresAt": "2027-01-01T09:00:00+09:00"}
    assert (await buy(admin, user.id, same, "order-1")).content == first.content
    assert await factory.reconcile() == []


@pytest.mark.parametrize(
    ("body", "other_user"),
    [
        ({"amount": 13}, False),
        ({"amount": 12.5, "expiresAt": "2027-01-01T00:00:00+00:00"}, False),
        ({"amount": 12.5}, True),
    ],
    ids=["other-amount", "other-expiry", "other-user"],
)
async def test_the_key_with_another_body_is_409_and_changes_nothing(
    db: Database,
    admin: httpx.AsyncClient,
    factory: Factory,
    body: dict[str, object],
    other_user: bool,
) -> None:
    plan = await factory.plan(credits=10, max_ttp=None)
    user = await factory.user(plan)
    other = await factory.user(plan)
    assert (await buy(admin, user.id, {"amount": 12.5}, "k")).status_code == 201
    state = await table_rows(db)
    response = await buy(admin, (other if other_user else user).id, body, "k")
    assert reason_of(response) == (409, "idempotency_key_reused")
    assert "idempotent-replayed" not in response.headers
    assert await table_rows(db) == state


async def test_without_a_key_every_request_sells(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    for _ in range(2):
        response = await buy(admin, user.id, {"amount": 1}, None)
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
    assert await purchases_of(db, user.id) == 2
    assert await _count(db, "SELECT count(*) FROM credit_purchases WHERE fingerprint IS NULL") == 2
    assert await factory.reconcile() == []


@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, " k", "\tk", "k\x7f", b"caf\xc3\xa9", b"k\x00"],
    ids=["empty", "256", "leading-space", "tab", "del", "utf8", "nul"],
)
async def test_a_bad_key_is_an_envelope_error_and_sells_nothing(
    db: Database, admin: httpx.AsyncClient, factory: Factory, key: str | bytes
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    state = await table_rows(db)
    response = await buy(admin, user.id, {"amount": 1}, key)
    assert response.headers["content-type"].startswith("application/json")
    assert reason_of(response) == (400, "invalid_idempotency_key")
    assert await table_rows(db) == state


async def test_a_bad_body_with_a_key_is_not_remembered(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    """Refusals of the request are not outcomes: the key stays free for the fixed body."""
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    state = await table_rows(db)
    assert reason_of(await buy(admin, user.id, {"amount": 0}, "k")) == (400, "bad_request")
    past = {"amount": 1, "expiresAt": "2026-11-01T00:00:00+00:00"}
    assert reason_of(await buy(admin, user.id, past, "k")) == (400, "bad_request")
    assert reason_of(await buy(admin, 999, {"amount": 1}, "k")) == (404, "user_not_found")
    assert await table_rows(db) == state
    assert (await buy(admin, user.id, {"amount": 1}, "k")).status_code == 201


async def test_a_key_is_a_purchases_own_not_a_charges(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    """Pinned: purchases keep their keys in their own rows, apart from charges and holds."""
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    await factory.charge(user, "image", "shared")
    assert (await buy(admin, user.id, {"amount": 1}, "shared")).status_code == 201
    assert (await factory.usage(user)).additional_credit == 1000
    assert await factory.reconcile() == []


async def test_the_record_is_retired_with_the_retention_and_the_key_sells_again(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    await factory.purchase(user, 1, idempotency_key="old")
    clock.advance(20 * DAY)
    await factory.purchase(user, 1, idempotency_key="recent")
    clock.advance(11 * DAY)

    assert await idempotency.prune(db, clock(), 30) == 1
    keyed = "SELECT count(*) FROM credit_purchases WHERE idempotency_key IS NOT NULL"
    assert await _count(db, keyed) == 1
    await factory.purchase(user, 1, idempotency_key="recent")  # replayed
    assert await purchases_of(db, user.id) == 2
    await factory.purchase(user, 5, idempotency_key="old")  # a new purchase
    assert await purchases_of(db, user.id) == 3
    assert (await factory.usage(user)).additional_credit == 7000
    assert await factory.reconcile() == []
    assert await idempotency.prune(db, clock(), 30) == 0


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    """A wait for the database as long as ``test_concurrency``'s storms get."""
    return {**environ, "FLAMEL_DATABASE_TIMEOUT_SECONDS": "20"}


async def test_one_key_sent_twenty_times_at_once_sells_once(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Idempotency-Key": "same"}
    with running_server(environ, workers=2) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=30
        ) as client:
            responses = await asyncio.gather(
                *(client.post(credits_url(user.id), json={"amount": 2}) for _ in range(CONCURRENT))
            )
            reconciled = (await client.get("/api/admin/reconcile")).json()
    assert Counter(response.status_code for response in responses) == {201: CONCURRENT}
    assert len({response.content for response in responses}) == 1
    replayed = [response.headers.get("idempotent-replayed") for response in responses]
    assert replayed.count("true") == CONCURRENT - 1
    assert await purchases_of(db, user.id) == 1
    assert (await factory.usage(user)).additional_credit == 2000
    assert reconciled == {"ok": True, "problems": []}

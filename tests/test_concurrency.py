"""Charges under real concurrency: server processes with several workers, both stores.

Every storm is bounded (a fixed number of requests, each with a timeout) and goes to
127.0.0.1 only. The assertions are exact counts: no interleaving may spend a credit
twice, pass a limit, or apply one idempotency key twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from flamel_usage.db.gateway import Database
from flamel_usage.db.postgres import PostgresDatabase
from tests.conftest import ADMIN_TOKEN
from tests.factories import Factory
from tests.processes import running_server

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STORM = 200


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    """The servers of these storms wait longer for the database than the default 3 s.

    Hundreds of charges for one account queue for its row lock, one at a time; on a
    loaded machine (CI beside other work) the last of them can wait more than 3 s for a
    pooled connection and get the 503 that is right for an overloaded server. What
    these tests check is what the ledger keeps, not that bound.
    """
    return {**environ, "FLAMEL_DATABASE_TIMEOUT_SECONDS": "20"}


async def _storm(
    base_urls: list[str], bodies: list[tuple[str, dict[str, object]]]
) -> list[httpx.Response]:
    """Send every (idempotency key, body) at once, spread over the servers in turn."""
    limits = httpx.Limits(max_connections=STORM, max_keepalive_connections=0)
    timeout = httpx.Timeout(30.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=ADMIN) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{base_urls[index % len(base_urls)]}/api/admin/charges",
                    json=body,
                    headers={"Idempotency-Key": key},
                )
                for index, (key, body) in enumerate(bodies)
            )
        )


async def _usage_and_reconcile(base_url: str, user_id: int) -> tuple[dict[str, object], bool]:
    async with httpx.AsyncClient(base_url=base_url, headers=ADMIN, timeout=10) as client:
        usage = (await client.get(f"/api/admin/users/{user_id}/usage")).json()
        reconciled = (await client.get("/api/admin/reconcile")).json()
    return usage, reconciled["ok"]


async def _account_with_137_credits(factory: Factory) -> int:
    plan = await factory.plan(credits=100, max_ttp=None)
    user = await factory.user(plan)
    await factory.purchase(user, 37)
    return user.id


async def test_credit_is_never_spent_twice(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    user_id = await _account_with_137_credits(factory)
    with running_server(environ, workers=2) as base_url:
        bodies = [(f"storm-{n}", {"userId": user_id, "kind": "image"}) for n in range(STORM)]
        responses = await _storm([base_url], bodies)
        usage, clean = await _usage_and_reconcile(base_url, user_id)
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 137, 402: 63}
    assert {r.json()["data"] for r in responses if r.status_code == 402} == {"insufficient_credit"}
    assert (usage["currentCredit"], usage["additionalCredit"]) == (0, 0)
    assert clean


async def test_a_limit_is_never_passed(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    plan = await factory.plan(credits=10_000, max_ttp=137)
    user = await factory.user(plan)
    with running_server(environ, workers=2) as base_url:
        bodies = [(f"ttp-{n}", {"userId": user.id, "kind": "ttp"}) for n in range(STORM)]
        responses = await _storm([base_url], bodies)
        usage, clean = await _usage_and_reconcile(base_url, user.id)
    assert Counter(r.status_code for r in responses) == {201: 137, 429: 63}
    assert {r.json()["data"] for r in responses if r.status_code == 429} == {"ttp_limit_exceeded"}
    assert usage["ttpCount"] == 137
    assert usage["currentCredit"] == 10_000 - 137
    assert clean


async def test_two_service_processes_share_one_database(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    """On PostgreSQL these could be on two machines; on SQLite, two processes on one."""
    user_id = await _account_with_137_credits(factory)
    with running_server(environ, workers=2) as first, running_server(environ, workers=2) as second:
        bodies = [(f"split-{n}", {"userId": user_id, "kind": "image"}) for n in range(STORM)]
        responses = await _storm([first, second], bodies)
        usage, clean = await _usage_and_reconcile(second, user_id)
    assert Counter(r.status_code for r in responses) == {201: 137, 402: 63}
    assert (usage["currentCredit"], usage["additionalCredit"]) == (0, 0)
    assert clean


async def test_one_idempotency_key_sent_fifty_times_at_once_charges_once(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    user_id = await _account_with_137_credits(factory)
    with running_server(environ, workers=2) as base_url:
        bodies = [("same-key", {"userId": user_id, "kind": "image"})] * 50
        responses = await _storm([base_url], bodies)
        usage, clean = await _usage_and_reconcile(base_url, user_id)
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 49
    assert usage["currentCredit"] == 99
    assert clean


async def test_concurrent_refunds_restore_once(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    user_id = await _account_with_137_credits(factory)
    with running_server(environ, workers=2) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=ADMIN, timeout=30) as client:
            charged = await client.post(
                "/api/admin/charges",
                json={"userId": user_id, "kind": "image", "cost": 120},
                headers={"Idempotency-Key": "to-refund"},
            )
            assert charged.status_code == 201
            refunds = await asyncio.gather(
                *(client.post("/api/admin/charges/to-refund/refund") for _ in range(20))
            )
        usage, clean = await _usage_and_reconcile(base_url, user_id)
    assert Counter(r.status_code for r in refunds) == {200: 1, 409: 19}
    assert {r.json()["data"] for r in refunds if r.status_code == 409} == {"already_refunded"}
    assert (usage["currentCredit"], usage["additionalCredit"]) == (100, 37)
    assert clean


async def _abandon_a_transaction(db: Database) -> None:
    """Take a lock and write a row, then fail: the transaction is rolled back."""
    async with db.transaction() as conn:
        await conn.lock_name("handover")
        await conn.execute(
            "INSERT INTO auth_failures (bucket, window_end, failures) VALUES (?, 1, 1)",
            "handover",
        )
        raise RuntimeError("abandoned")


async def test_a_pooled_postgresql_connection_is_handed_on_clean(postgres_database: str) -> None:
    # The pool sends no reset query when a connection comes back (db._keep_session):
    # whatever a use leaves behind must be nothing that the next use of the same
    # connection (one in this pool) can see: no transaction, row or advisory lock.
    db = PostgresDatabase(postgres_database, max_size=1)
    await db.open()
    try:
        async with db.read() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(RuntimeError, match="abandoned"):
            await _abandon_a_transaction(db)
        async with db.read() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
            # The abandoned transaction had written: were it still open, it would have an id.
            assert await conn.fetchval("SELECT txid_current_if_assigned()") is None
            locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = ?"
            assert await conn.fetchval(locks, backend) == 0
            rows = "SELECT count(*) FROM auth_failures WHERE bucket = ?"
            assert await conn.fetchval(rows, "handover") == 0
    finally:
        await db.close()

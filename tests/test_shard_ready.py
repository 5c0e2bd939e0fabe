"""Ready to shard by user: every statement the hot paths send to PostgreSQL touches one
user's rows, named by the user's id, or reference tables (plans).

A storm of usage reads (by API key), charges (new keys and retries), refunds and
purchases (keyed, retried) runs against PostgreSQL with every statement logged as the
driver sends it (placeholders numbered, as PostgreSQL's own ``log_statement`` would
show them); the test fails on any statement on a table of users' rows that does not
filter by the user (``user_id = $n``, or ``id = $n`` on ``users``) or, for an insert,
does not give the row's ``user_id``. With Citus, or any PostgreSQL-compatible engine
that shards by a key, each such statement is routed to the one shard holding its user.

``LOOKUPS`` are the statements that find who the user is from something else: each is
one indexed lookup by a unique value of its own (a credential's hash, an idempotency key
given without its user), which a sharded store serves from a table distributed by that
value (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import httpx
import pytest

from flamel_usage.auth.credentials import KEY_OWNER
from flamel_usage.db import postgres
from flamel_usage.db.gateway import Database
from flamel_usage.metering import refunds
from tests.factories import Factory

#: Tables holding users' rows, each distributed by its user's id.
BY_USER = {
    "users",
    "accounts",
    "credit_purchases",
    "ledger_entries",
    "charges",
    "usage_hours",
    "usage_days",
}
#: Tables every shard holds a copy of.
REFERENCE = {"plans"}
#: Tables distributed by a key of their own: a throttle bucket, a credential's hash.
OWN_KEY = {"auth_failures", "api_keys", "sessions"}
LOOKUPS = {
    postgres._numbered(KEY_OWNER): "an API key's owner, by the key's hash",
    postgres._numbered(refunds.CHARGE_BY_KEY): "a refund's charge: the route names its key only",
}
USERS = 8
ROUNDS = 6

#: Tables a statement names; ``FOR UPDATE`` and an upsert's ``DO UPDATE`` name none.
_TABLE = re.compile(r"\b(?:FROM|JOIN|(?<!FOR )(?<!DO )UPDATE|INTO)\s+([a-z_]+)", re.IGNORECASE)
_BY_USER = re.compile(r"\b(?:[a-z]+\.)?user_id\s*=\s*\$\d+", re.IGNORECASE)
_USER_ROW = re.compile(r"\b(?:u\.)?id\s*=\s*\$\d+", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT INTO\s+([a-z_]+)\s*\(([^)]*)\)", re.IGNORECASE)


def unkeyed(statement: str) -> str | None:
    """Why ``statement`` would not go to one user's shard, or None."""
    tables = {name.lower() for name in _TABLE.findall(statement)}
    unknown = tables - BY_USER - REFERENCE - OWN_KEY
    if unknown:
        return f"tables not classified for sharding: {sorted(unknown)}"
    if not tables & BY_USER or statement in LOOKUPS:
        return None
    insert = _INSERT.match(statement)
    if insert is not None:
        columns = {column.strip() for column in insert.group(2).split(",")}
        return None if "user_id" in columns or insert.group(1) == "users" else "no user_id"
    if _BY_USER.search(statement):
        return None
    if tables & BY_USER == {"users"} and _USER_ROW.search(statement):
        return None
    return "no filter by the user"


def test_the_check_tells_keyed_from_unkeyed_statements() -> None:
    assert unkeyed("SELECT x FROM charges WHERE user_id = $1 AND idempotency_key = $2") is None
    assert unkeyed("UPDATE credit_purchases SET remaining = 0 WHERE user_id = $1") is None
    assert unkeyed("INSERT INTO ledger_entries (user_id, at) VALUES ($1, $2)") is None
    assert unkeyed("SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL") is None
    assert unkeyed("SELECT * FROM plans WHERE id = $1") is None
    assert unkeyed("SELECT a.x FROM accounts a WHERE a.user_id = $1 FOR UPDATE OF a") is None
    assert unkeyed("SELECT pg_advisory_xact_lock(hashtext($1))") is None
    upsert = "INSERT INTO usage_hours (user_id, n) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE"
    assert unkeyed(f"{upsert} SET n = usage_hours.n + excluded.n") is None
    assert unkeyed("UPDATE credit_purchases SET remaining = 0 WHERE id = $1") is not None
    assert unkeyed("SELECT x FROM charges WHERE idempotency_key = $1") is not None
    assert unkeyed("INSERT INTO charges (id) VALUES ($1)") is not None
    assert unkeyed("SELECT x FROM holds WHERE id = $1") is not None


@pytest.fixture
def database_url(postgres_database: str) -> str:
    return postgres_database


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent from now on, as PostgreSQL receives its text."""
    sent: list[str] = []
    translate = postgres._PostgresConnection._sql

    def logged(self: postgres._PostgresConnection, sql: str) -> str:
        text = translate(self, sql)
        sent.append(text)
        return text

    monkeypatch.setattr(postgres._PostgresConnection, "_sql", logged)
    return sent


async def test_every_hot_path_statement_filters_by_the_user(
    db: Database, admin: httpx.AsyncClient, factory: Factory, statements: list[str]
) -> None:
    plan = await factory.plan(credits=5, max_ttp=None)
    users = [await factory.user(plan) for _ in range(USERS)]
    keys = {user.id: await factory.key(user) for user in users}
    statements.clear()  # the set-up is not a hot path

    async def customer(user_id: int, round_no: int) -> None:
        read = await admin.get("/api/users/me/usage", headers={"X-Api-Key": keys[user_id]})
        assert read.status_code == 200, read.text
        key = f"u{user_id}-r{round_no}"
        body = {"userId": user_id, "kind": "image", "cost": 1}
        for _ in range(2):  # the retry replays
            charged = await admin.post(
                "/api/admin/charges", json=body, headers={"Idempotency-Key": key}
            )
            assert charged.status_code in (201, 402), charged.text
        if round_no % 2 == 0:
            refunded = await admin.post(f"/api/admin/charges/{quote(key)}/refund")
            assert refunded.status_code in (200, 409, 404), refunded.text
        else:
            for _ in range(2):  # the retry replays
                bought = await admin.post(
                    f"/api/admin/users/{user_id}/credits",
                    json={"amount": 1},
                    headers={"Idempotency-Key": f"{key}-buy"},
                )
                assert bought.status_code == 201, bought.text
        usage = await admin.get(f"/api/admin/users/{user_id}/usage")
        assert usage.status_code == 200, usage.text

    for round_no in range(ROUNDS):
        await asyncio.gather(*(customer(user.id, round_no) for user in users))

    sent = list(statements)
    assert await factory.reconcile() == []  # a job over the whole store, not a hot path
    assert len(sent) > USERS * ROUNDS * 10
    offending = {text: why for text in sent if (why := unkeyed(text)) is not None}
    assert not offending, "\n".join(f"{why}: {text}" for text, why in offending.items())

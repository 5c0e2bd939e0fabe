"""Metering (SPEC sections 3 and 4): charges and refunds, at the domain level and over HTTP.

Every test runs on SQLite and on PostgreSQL (the ``db`` fixture). Stored state is read
back with plain SQL, so a test checks what was written, not only what a read shows.
Users are created at the clock's start, 2026-11-25T10:00Z, so their first period is
[2026-11-25T10:00Z, 2026-12-25T10:00Z).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from flamel_usage.accounts import users as accounts
from flamel_usage.accounts.users import User
from flamel_usage.core.config import Settings
from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from flamel_usage.ledger import balances as ledger
from flamel_usage.metering.outcomes import Charged, Refused
from tests.conftest import ADMIN_TOKEN, FakeClock
from tests.factories import Factory
from tests.store import table_rows

MILLI = 1000
US = timedelta(microseconds=1)
START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PERIOD_END = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)
FIRST_PERIOD = "2026-11-25T10:00:00+00:00/2026-12-25T10:00:00+00:00"
SECOND_PERIOD = "2026-12-25T10:00:00+00:00/2027-01-25T10:00:00+00:00"
CHARGES = "/api/admin/charges"
_DEFAULT = object()


# --- helpers -------------------------------------------------------------------------


def us(instant: datetime) -> int:
    return to_micros(instant)


def envelope(status: int, reason: str) -> dict[str, object]:
    return {"success": False, "code": status, "data": reason}


def error_of(response: httpx.Response) -> dict[str, object]:
    """The envelope of an error response, without its optional human-readable message."""
    body = response.json()
    body.pop("message", None)
    return dict(body)


async def post_charge(
    client: httpx.AsyncClient,
    key: str | bytes | None,
    user_id: object,
    kind: object = "ttp",
    cost: object = _DEFAULT,
) -> httpx.Response:
    body: dict[str, object] = {"userId": user_id, "kind": kind}
    if cost is not _DEFAULT:
        body["cost"] = cost
    headers = {} if key is None else {"Idempotency-Key": key}
    return await client.post(CHARGES, json=body, headers=headers)


async def post_refund(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post(f"{CHARGES}/{quote(key, safe='')}/refund")


async def row_count(db: Database, table: str) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))


async def remaining(db: Database, purchase_id: int) -> int:
    async with db.read() as conn:
        return int(
            await conn.fetchval("SELECT remaining FROM credit_purchases WHERE id = ?", purchase_id)
        )


async def entries(db: Database, user_id: int) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = await conn.fetchall(
            "SELECT entry_type, pool, amount, period_start, purchase_id, charge_id, note"
            " FROM ledger_entries WHERE user_id = ? ORDER BY id",
            user_id,
        )
    return [
        {
            "type": row["entry_type"],
            "pool": row["pool"],
            "amount": row["amount"],
            "period": row["period_start"],
            "purchase": row["purchase_id"],
            "charge": row["charge_id"],
            "note": row["note"],
        }
        for row in rows
    ]


async def execute(db: Database, sql: str, *args: object) -> None:
    async with db.transaction() as conn:
        await conn.execute(sql, *args)


async def usage_dto(factory: Factory, user: User) -> dict[str, Any]:
    return (await factory.usage(user)).to_dto()


def split(body: dict[str, Any]) -> tuple[object, object, object]:
    charge = body["charge"]
    return charge["fromPlanCredit"], charge["fromPurchasedCredit"], charge["postpaid"]


# --- which pool pays ------------------------------------------------------------------


async def test_plan_credit_first_then_purchased_split_in_one_charge(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=2, max_ttp=None)
    user = await factory.user(plan)
    bought = await factory.purchase(user, 5)

    first = await post_charge(admin, "c1", user.id, "image", 1.5)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"].startswith("application/json")
    assert "idempotent-replayed" not in first.headers
    body = first.json()
    assert split(body) == (1.5, 0, 0)
    assert body["charge"]["cost"] == 1.5
    assert body["charge"]["kind"] == "image"
    assert body["charge"]["userId"] == user.id
    assert body["charge"]["idempotencyKey"] == "c1"
    assert body["charge"]["refundedAt"] is None
    assert body["charge"]["createdAt"] == START.isoformat()
    assert body["usage"]["currentCredit"] == 0.5
    assert body["usage"]["additionalCredit"] == 5
    assert body["usage"]["postpaidUsageCount"] is None
    assert await remaining(db, bought.id) == 5 * MILLI

    second = await post_charge(admin, "c2", user.id, "image", 2)
    assert second.status_code == 201, second.text
    assert split(second.json()) == (0.5, 1.5, 0)
    assert second.json()["usage"]["currentCredit"] == 0
    assert second.json()["usage"]["additionalCredit"] == 3.5
    assert await remaining(db, bought.id) == 3500
    assert await usage_dto(factory, user) == second.json()["usage"]

    charge_id = second.json()["charge"]["id"]
    mine = [entry for entry in await entries(db, user.id) if entry["charge"] == charge_id]
    assert [(e["type"], e["pool"], e["amount"], e["purchase"]) for e in mine] == [
        ("charge", "plan", -500, None),
        ("charge", "purchase", -1500, bought.id),
    ]
    assert await factory.reconcile() == []


async def test_purchases_spend_soonest_expiry_first_then_by_id_then_unexpiring(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=0, max_ttp=None)
    user = await factory.user(plan)
    in_10_days = us(START + timedelta(days=10))
    forever_a = await factory.purchase(user, 1)
    late = await factory.purchase(user, 1, expires_at=us(START + timedelta(days=20)))
    soon_a = await factory.purchase(user, 1, expires_at=in_10_days)
    soon_b = await factory.purchase(user, 1, expires_at=in_10_days)
    forever_b = await factory.purchase(user, 1)
    ids = [soon_a.id, soon_b.id, late.id, forever_a.id, forever_b.id]

    async def left() -> list[int]:
        return [await remaining(db, purchase_id) for purchase_id in ids]

    response = await post_charge(admin, "a", user.id, "image", 1.5)
    assert split(response.json()) == (0, 1.5, 0)
    assert await left() == [0, 500, 1000, 1000, 1000]
    response = await post_charge(admin, "b", user.id, "image", 1.5)
    assert split(response.json()) == (0, 1.5, 0)
    assert await left() == [0, 0, 0, 1000, 1000]
    response = await post_charge(admin, "c", user.id, "image", 1.5)
    assert await left() == [0, 0, 0, 0, 500]
    assert response.json()["usage"]["additionalCredit"] == 0.5

    taken = [
        (entry["charge"], entry["purchase"], entry["amount"])
        for entry in await entries(db, user.id)
        if entry["type"] == "charge" and entry["pool"] == "purchase"
    ]
    charge_ids = [taken[0][0], taken[2][0], taken[4][0]]
    assert taken == [
        (charge_ids[0], soon_a.id, -1000),
        (charge_ids[0], soon_b.id, -500),
        (charge_ids[1], soon_b.id, -500),
        (charge_ids[1], late.id, -1000),
        (charge_ids[2], forever_a.id, -1000),
        (charge_ids[2], forever_b.id, -500),
    ]
    assert await factory.reconcile() == []


async def test_fractional_costs_add_up_exactly(admin: httpx.AsyncClient, factory: Factory) -> None:
    plan = await factory.plan(credits=1, max_ttp=None)
    user = await factory.user(plan)
    for key, cost in (("f1", 0.5), ("f2", 0.25), ("f3", 0.125), ("f4", 0.001), ("f5", 0.1)):
        response = await post_charge(admin, key, user.id, "image", cost)
        assert response.status_code == 201, response.text
        assert response.json()["charge"]["cost"] == cost
    usage = await usage_dto(factory, user)
    assert usage["currentCredit"] == 0.024
    assert (await factory.usage(user)).current_credit == 24
    refused = await post_charge(admin, "f6", user.id, "image", 0.025)
    assert refused.status_code == 402
    fits = await post_charge(admin, "f7", user.id, "image", 0.024)
    assert fits.status_code == 201
    assert fits.json()["usage"]["currentCredit"] == 0
    assert await factory.reconcile() == []


async def test_a_purchase_is_spendable_until_its_expiry_instant(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=0, max_ttp=None)
    user = await factory.user(plan)
    expiry = START + timedelta(days=3)
    expiring = await factory.purchase(user, 2, expires_at=us(expiry))
    lasting = await factory.purchase(user, 5)

    clock.set(expiry - US)
    before = await factory.charge(user, "image", "before")
    assert isinstance(before, Charged)
    assert await remaining(db, expiring.id) == 1000
    assert await remaining(db, lasting.id) == 5000

    clock.set(expiry)
    assert (await factory.usage(user)).additional_credit == 5000
    at = await factory.charge(user, "image", "at")
    assert isinstance(at, Charged)
    assert at.charge.from_purchased == 1000
    assert await remaining(db, expiring.id) == 0
    assert await remaining(db, lasting.id) == 4000
    expired = [e for e in await entries(db, user.id) if e["type"] == "expiry"]
    assert [(e["pool"], e["amount"], e["purchase"]) for e in expired] == [
        ("purchase", -1000, expiring.id)
    ]
    assert (await factory.usage(user)).additional_credit == 4000
    assert await factory.reconcile() == []


async def test_an_expired_purchase_cannot_make_a_prepaid_charge_fit(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=0, max_ttp=None)
    user = await factory.user(plan)
    expiry = START + timedelta(hours=1)
    expiring = await factory.purchase(user, 2, expires_at=us(expiry))
    clock.set(expiry)
    refused = await factory.charge(user, "image", "late")
    assert refused == Refused("insufficient_credit", "the charge needs 1 credits")
    assert await remaining(db, expiring.id) == 0
    assert await factory.reconcile() == []


# --- period boundaries ----------------------------------------------------------------


async def test_a_charge_at_the_period_end_lands_in_the_new_period(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=3, max_ttp=2, max_edit=1)
    user = await factory.user(plan)
    for key, kind in (("t1", "ttp"), ("t2", "ttp"), ("e1", "edit")):
        assert (await post_charge(admin, key, user.id, kind)).status_code == 201
    assert (await post_charge(admin, "t3", user.id, "ttp")).status_code == 429
    before = len(await entries(db, user.id))

    clock.set(PERIOD_END)
    response = await post_charge(admin, "t4", user.id, "ttp")
    assert response.status_code == 201, response.text
    usage = response.json()["usage"]
    assert usage == {
        "currentCredit": 2,
        "additionalCredit": 0,
        "maxCredit": 3,
        "period": SECOND_PERIOD,
        "ttpCount": 1,
        "maxTtpCount": 2,
        "editCount": 0,
        "maxEditCount": 1,
        "postpaidUsageCount": None,
    }
    charge_id = response.json()["charge"]["id"]
    new = (await entries(db, user.id))[before:]
    old_start, new_start = us(START), us(PERIOD_END)
    assert [(e["type"], e["pool"], e["amount"], e["period"], e["charge"]) for e in new] == [
        ("period_start", "plan", 3000, new_start, None),
        ("charge", "plan", -1000, new_start, charge_id),
        ("charge", "ttp", 1, new_start, charge_id),
    ]
    # Every plan credit of the first period was spent: no expiry entry.
    assert (await post_charge(admin, "e2", user.id, "edit")).status_code == 201
    assert (await post_charge(admin, "e3", user.id, "edit")).status_code == 429

    # The next boundary with unused credit records its expiry against the old period.
    clock.set(datetime(2027, 1, 25, 10, tzinfo=UTC))
    before = len(await entries(db, user.id))
    assert (await post_charge(admin, "t5", user.id, "ttp")).status_code == 201
    new = (await entries(db, user.id))[before:]
    assert [(e["type"], e["pool"], e["amount"], e["period"]) for e in new[:2]] == [
        ("expiry", "plan", -1000, new_start),
        ("period_start", "plan", 3000, us(datetime(2027, 1, 25, 10, tzinfo=UTC))),
    ]
    assert old_start < new_start
    assert await factory.reconcile() == []


async def test_one_microsecond_before_the_period_end_is_still_the_old_period(
    admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=1, max_ttp=1)
    user = await factory.user(plan)
    assert (await post_charge(admin, "a", user.id, "ttp")).status_code == 201
    clock.set(PERIOD_END - US)
    refused = await post_charge(admin, "b", user.id, "ttp")
    assert refused.status_code == 429
    assert error_of(refused) == envelope(429, "ttp_limit_exceeded")
    clock.set(PERIOD_END)
    assert (await post_charge(admin, "c", user.id, "ttp")).status_code == 201


# --- postpaid and prepaid -------------------------------------------------------------


async def test_postpaid_accrues_beyond_credit_and_resets_next_period(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=1, max_ttp=None, postpaid=True)
    user = await factory.user(plan)
    bought = await factory.purchase(user, 1)
    assert (await usage_dto(factory, user))["postpaidUsageCount"] == 0

    response = await post_charge(admin, "p1", user.id, "image", 3)
    assert response.status_code == 201, response.text
    assert split(response.json()) == (1, 1, 1)
    assert response.json()["usage"]["postpaidUsageCount"] == 1
    assert response.json()["usage"]["currentCredit"] == 0
    assert response.json()["usage"]["additionalCredit"] == 0
    assert await remaining(db, bought.id) == 0

    response = await post_charge(admin, "p2", user.id, "ttp", 2.5)
    assert response.status_code == 201
    assert split(response.json()) == (0, 0, 2.5)
    big = await post_charge(admin, "p3", user.id, "image", 10**9)
    assert big.status_code == 201, big.text
    assert big.json()["usage"]["postpaidUsageCount"] == 10**9 + 3.5
    assert await factory.reconcile() == []

    clock.set(PERIOD_END)
    usage = await usage_dto(factory, user)
    assert (usage["postpaidUsageCount"], usage["currentCredit"], usage["ttpCount"]) == (0, 1, 0)
    response = await post_charge(admin, "p4", user.id, "image", 1.5)
    assert split(response.json()) == (1, 0, 0.5)
    assert response.json()["usage"]["postpaidUsageCount"] == 0.5
    assert await factory.reconcile() == []


async def test_prepaid_exact_fit_is_charged(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=1, max_ttp=None)
    user = await factory.user(plan)
    bought = await factory.purchase(user, 0.5, expires_at=us(START + timedelta(days=1)))
    response = await post_charge(admin, "fit", user.id, "image", 1.5)
    assert response.status_code == 201
    assert split(response.json()) == (1, 0.5, 0)
    assert await remaining(db, bought.id) == 0
    refused = await post_charge(admin, "over", user.id, "image", 0.001)
    assert error_of(refused) == envelope(402, "insufficient_credit")


async def test_prepaid_charge_that_does_not_fit_is_refused_whole_and_changes_nothing(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=1, max_ttp=None)
    user = await factory.user(plan)
    await factory.purchase(user, 0.5, expires_at=us(START + timedelta(days=1)))
    await factory.purchase(user, 0.25)
    before = await table_rows(db)
    usage_before = await usage_dto(factory, user)

    refused = await post_charge(admin, "big", user.id, "ttp", 1.751)
    assert refused.status_code == 402
    assert refused.json() == {
        "success": False,
        "code": 402,
        "data": "insufficient_credit",
        "message": "the charge needs 1.751 credits",
    }
    after = await table_rows(db)
    assert {table: rows for table, rows in after.items() if table != "charges"} == {
        table: rows for table, rows in before.items() if table != "charges"
    }
    assert len(after["charges"]) == len(before["charges"]) + 1
    assert await usage_dto(factory, user) == usage_before
    assert await factory.reconcile() == []


# --- per-period limits ----------------------------------------------------------------


async def test_ttp_and_edit_limits_image_unlimited_refund_frees_a_slot(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=100, max_ttp=2, max_edit=2)
    user = await factory.user(plan)
    for key in ("t1", "t2"):
        assert (await post_charge(admin, key, user.id, "ttp")).status_code == 201
    before = await table_rows(db)
    refused = await post_charge(admin, "t3", user.id, "ttp")
    assert refused.status_code == 429
    assert refused.json() == {
        "success": False,
        "code": 429,
        "data": "ttp_limit_exceeded",
        "message": "ttp limit of 2 per period reached",
    }
    after = await table_rows(db)
    assert after["ledger_entries"] == before["ledger_entries"]
    assert after["accounts"] == before["accounts"]

    for key in ("e1", "e2"):
        assert (await post_charge(admin, key, user.id, "edit")).status_code == 201
    assert error_of(await post_charge(admin, "e3", user.id, "edit")) == envelope(
        429, "edit_limit_exceeded"
    )
    for index in range(5):
        assert (await post_charge(admin, f"i{index}", user.id, "image")).status_code == 201
    usage = await usage_dto(factory, user)
    assert (usage["ttpCount"], usage["editCount"], usage["currentCredit"]) == (2, 2, 91)

    assert (await post_refund(admin, "t1")).status_code == 200
    assert (await usage_dto(factory, user))["ttpCount"] == 1
    assert (await post_charge(admin, "t4", user.id, "ttp")).status_code == 201
    assert (await post_charge(admin, "t5", user.id, "ttp")).status_code == 429

    clock.set(PERIOD_END)
    for key in ("n1", "n2"):
        assert (await post_charge(admin, key, user.id, "ttp")).status_code == 201
    assert (await post_charge(admin, "n3", user.id, "ttp")).status_code == 429
    assert (await post_charge(admin, "n4", user.id, "edit")).status_code == 201
    assert await factory.reconcile() == []


async def test_limit_is_checked_before_credit_and_zero_allows_none(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=0, max_ttp=0, max_edit=None)
    user = await factory.user(plan)
    assert error_of(await post_charge(admin, "t", user.id, "ttp")) == envelope(
        429, "ttp_limit_exceeded"
    )
    assert error_of(await post_charge(admin, "e", user.id, "edit")) == envelope(
        402, "insufficient_credit"
    )


async def test_limits_apply_to_postpaid_plans_too(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=0, max_ttp=1, postpaid=True)
    user = await factory.user(plan)
    assert (await post_charge(admin, "a", user.id, "ttp")).status_code == 201
    assert error_of(await post_charge(admin, "b", user.id, "ttp")) == envelope(
        429, "ttp_limit_exceeded"
    )


# --- idempotency ----------------------------------------------------------------------


async def test_same_key_same_body_replays_byte_identical_and_charges_once(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    first = await post_charge(admin, "k", user.id, "ttp", 2)
    assert first.status_code == 201
    state = await table_rows(db)
    clock.advance(3600)
    again = await post_charge(admin, "k", user.id, "ttp", 2)
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert await table_rows(db) == state
    assert (await factory.usage(user)).current_credit == 8000
    # 2 and 2.0 are the same amount: the same body.
    same = await post_charge(admin, "k", user.id, "ttp", 2.0)
    assert same.status_code == 201
    assert same.content == first.content
    assert await table_rows(db) == state


@pytest.mark.parametrize(
    ("kind", "cost", "other_user"),
    [("edit", 2, False), ("ttp", 3, False), ("ttp", 2.001, False), ("ttp", 2, True)],
    ids=["other-kind", "other-cost", "other-fraction", "other-user"],
)
async def test_same_key_different_body_is_409_and_changes_nothing(
    db: Database,
    admin: httpx.AsyncClient,
    factory: Factory,
    kind: str,
    cost: float,
    other_user: bool,
) -> None:
    plan = await factory.plan(credits=10, max_ttp=None)
    user = await factory.user(plan)
    other = await factory.user(plan)
    assert (await post_charge(admin, "k", user.id, "ttp", 2)).status_code == 201
    state = await table_rows(db)
    response = await post_charge(admin, "k", (other if other_user else user).id, kind, cost)
    assert response.status_code == 409
    assert error_of(response) == envelope(409, "idempotency_key_reused")
    assert "idempotent-replayed" not in response.headers
    assert await table_rows(db) == state


async def test_omitted_cost_and_explicit_default_cost_are_different_bodies(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    """Pinned: the fingerprint is the body as sent, so an explicit cost equal to the
    kind's default is not the same request as one that leaves the cost out."""
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    assert (await post_charge(admin, "omitted", user.id, "ttp")).status_code == 201
    assert error_of(await post_charge(admin, "omitted", user.id, "ttp", 1)) == envelope(
        409, "idempotency_key_reused"
    )
    assert (await post_charge(admin, "explicit", user.id, "ttp", 1)).status_code == 201
    assert error_of(await post_charge(admin, "explicit", user.id, "ttp")) == envelope(
        409, "idempotency_key_reused"
    )
    assert (await post_charge(admin, "omitted", user.id, "ttp")).status_code == 201
    assert (await factory.usage(user)).current_credit == 8000


async def test_a_refusal_is_replayed_even_after_credit_or_slots_free_up(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=1, max_ttp=1))
    assert (await post_charge(admin, "t1", user.id, "ttp")).status_code == 201
    poor = await post_charge(admin, "poor", user.id, "image", 5)
    assert poor.status_code == 402
    limited = await post_charge(admin, "limited", user.id, "ttp", 0.5)
    assert limited.status_code == 429

    await factory.purchase(user, 10)
    clock.set(PERIOD_END)
    state = await table_rows(db)
    for key, first, kind, cost in (("poor", poor, "image", 5), ("limited", limited, "ttp", 0.5)):
        again = await post_charge(admin, key, user.id, kind, cost)
        assert again.status_code == first.status_code
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
    assert await table_rows(db) == state
    # A new key for the same operation goes through now.
    assert (await post_charge(admin, "rich", user.id, "image", 5)).status_code == 201


async def test_errors_that_are_not_answers_are_not_remembered(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    assert error_of(await post_charge(admin, "k", user.id, "video")) == envelope(
        400, "unknown_kind"
    )
    assert error_of(await post_charge(admin, "k", 10**6, "ttp")) == envelope(404, "user_not_found")
    assert error_of(await post_charge(admin, "k", user.id, "ttp", -1)) == envelope(
        400, "bad_request"
    )
    assert await row_count(db, "charges") == 0
    response = await post_charge(admin, "k", user.id, "ttp")
    assert response.status_code == 201
    assert "idempotent-replayed" not in response.headers


async def test_replay_after_a_refund_returns_the_original_answer(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    """Pinned: the first answer is replayed as it was (refundedAt null), charging nothing."""
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    first = await post_charge(admin, "k", user.id, "ttp")
    assert (await post_refund(admin, "k")).status_code == 200
    state = await table_rows(db)
    again = await post_charge(admin, "k", user.id, "ttp")
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert await table_rows(db) == state
    assert (await factory.usage(user)).current_credit == 10000


@pytest.fixture
async def seoul(
    environ: dict[str, str], db: Database, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Factory]]:
    """An admin client and a factory of a server that bills in Asia/Seoul (+09:00)."""
    settings = Settings.from_environ({**environ, "FLAMEL_TIMEZONE": "Asia/Seoul"})
    transport = httpx.ASGITransport(app=App(settings, db, clock))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http, Factory(db, clock, settings.timezone)


async def test_replays_answer_the_first_bytes_of_a_charge_a_refusal_and_a_refunded_charge(
    db: Database, seoul: tuple[httpx.AsyncClient, Factory], clock: FakeClock
) -> None:
    """Pinned: the record keeps the outcome (the usage right after a charge, the reason
    and message of a refusal), and a replay renders it to the first answer's bytes, with
    fractional credits, postpaid usage and the billing zone's offset in it."""
    admin, factory = seoul
    postpaid = await factory.user(await factory.plan(credits=1, max_ttp=None, postpaid=True))
    prepaid = await factory.user(await factory.plan(credits=1, max_ttp=1))
    await factory.purchase(postpaid, 0.25)
    assert (await post_charge(admin, "slot", prepaid.id, "ttp", 0.5)).status_code == 201
    first = {
        "charged": await post_charge(admin, "charged", postpaid.id, "image", 2.375),
        "refused": await post_charge(admin, "refused", prepaid.id, "image", 1.5),
        "limited": await post_charge(admin, "limited", prepaid.id, "ttp", 0.25),
        "refunded": await post_charge(admin, "refunded", postpaid.id, "edit", 0.125),
    }
    assert [answer.status_code for answer in first.values()] == [201, 402, 429, 201]
    assert "+09:00/" in first["charged"].json()["usage"]["period"]
    assert first["charged"].json()["usage"]["postpaidUsageCount"] == 1.125
    assert (await post_refund(admin, "refunded")).status_code == 200
    for user in (prepaid, postpaid):  # usage now differs from what the first answers showed
        await factory.purchase(user, 10)
    clock.advance(3600)

    state = await table_rows(db)
    sent = {
        "charged": (postpaid.id, "image", 2.375),
        "refused": (prepaid.id, "image", 1.5),
        "limited": (prepaid.id, "ttp", 0.25),
        "refunded": (postpaid.id, "edit", 0.125),
    }
    for key, (user_id, kind, cost) in sent.items():
        again = await post_charge(admin, key, user_id, kind, cost)
        assert (again.status_code, again.content) == (first[key].status_code, first[key].content)
        assert again.headers["idempotent-replayed"] == "true"
    assert await table_rows(db) == state


async def test_a_record_that_kept_the_whole_first_answer_replays_it(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    """Records written before outcomes were typed hold the whole answer (its envelope for
    a refusal): they replay byte for byte too."""
    user = await factory.user(await factory.plan(credits=1, max_ttp=None))
    charged = await post_charge(admin, "old-charge", user.id, "ttp", 0.5)
    refused = await post_charge(admin, "old-refusal", user.id, "image", 5)
    assert (charged.status_code, refused.status_code) == (201, 402)
    async with db.transaction() as conn:
        for key, answer in (("old-charge", charged), ("old-refusal", refused)):
            await conn.execute(
                "UPDATE charges SET response = ? WHERE idempotency_key = ?",
                answer.content.decode(),
                key,
            )
    for key, answer, cost in (("old-charge", charged, 0.5), ("old-refusal", refused, 5)):
        kind = "ttp" if key == "old-charge" else "image"
        again = await post_charge(admin, key, user.id, kind, cost)
        assert (again.status_code, again.content) == (answer.status_code, answer.content)


async def test_keys_are_case_sensitive_and_may_be_255_printable_characters(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    long_key = "x" * 254 + "~"
    for key in ("Key", "key", "KEY", long_key, "a spaced key", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"):
        response = await post_charge(admin, key, user.id, "ttp")
        assert response.status_code == 201, (key, response.text)
        assert response.json()["charge"]["idempotencyKey"] == key
    assert (await factory.usage(user)).current_credit == 4000


# --- refunds --------------------------------------------------------------------------


async def test_refund_restores_exactly_to_the_pools_it_came_from_once(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=1, max_ttp=5))
    soon = await factory.purchase(user, 1, expires_at=us(START + timedelta(days=5)))
    lasting = await factory.purchase(user, 1)
    other = await factory.user(await factory.plan(credits=7, max_ttp=5))
    assert (await post_charge(admin, "other", other.id, "ttp")).status_code == 201
    usage_before = await usage_dto(factory, user)

    charged = await post_charge(admin, "k", user.id, "ttp", 2.5)
    assert split(charged.json()) == (1, 1.5, 0)
    assert (await remaining(db, soon.id), await remaining(db, lasting.id)) == (0, 500)
    clock.advance(60)

    refunded = await post_refund(admin, "k")
    assert refunded.status_code == 200, refunded.text
    assert refunded.headers["content-type"].startswith("application/json")
    body = refunded.json()
    assert body["charge"] == {
        **charged.json()["charge"],
        "refundedAt": (START + timedelta(seconds=60)).isoformat(),
    }
    assert body["usage"] == usage_before
    assert await usage_dto(factory, user) == usage_before
    assert (await remaining(db, soon.id), await remaining(db, lasting.id)) == (1000, 1000)
    charge_id = charged.json()["charge"]["id"]
    refund_entries = [
        (e["pool"], e["amount"], e["purchase"], e["period"], e["note"])
        for e in await entries(db, user.id)
        if e["type"] == "refund"
    ]
    start = us(START)
    assert refund_entries == [
        ("plan", 1000, None, start, None),
        ("purchase", 1000, soon.id, start, None),
        ("purchase", 500, lasting.id, start, None),
        ("ttp", -1, None, start, None),
    ]
    assert all(
        e["charge"] == charge_id for e in await entries(db, user.id) if e["type"] == "refund"
    )
    assert (await usage_dto(factory, other))["currentCredit"] == 6
    assert await factory.reconcile() == []

    state = await table_rows(db)
    again = await post_refund(admin, "k")
    assert error_of(again) == envelope(409, "already_refunded")
    assert await table_rows(db) == state


async def test_refund_of_a_refusal_or_an_unknown_key_is_refused(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(credits=1, max_ttp=0))
    assert (await post_charge(admin, "poor", user.id, "image", 2)).status_code == 402
    assert (await post_charge(admin, "limited", user.id, "ttp")).status_code == 429
    state = await table_rows(db)
    assert error_of(await post_refund(admin, "poor")) == envelope(409, "not_refundable")
    assert error_of(await post_refund(admin, "limited")) == envelope(409, "not_refundable")
    assert error_of(await post_refund(admin, "never-used")) == envelope(404, "charge_not_found")
    assert error_of(await post_refund(admin, "x" * 256)) == envelope(400, "invalid_idempotency_key")
    assert error_of(await post_refund(admin, "poor\x00")) == envelope(
        400, "invalid_idempotency_key"
    )
    assert await table_rows(db) == state


async def test_a_purchase_that_expired_since_the_charge_stays_expired(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=0, max_ttp=None))
    expiry = START + timedelta(hours=1)
    expiring = await factory.purchase(user, 2, expires_at=us(expiry))
    lasting = await factory.purchase(user, 1)
    charged = await post_charge(admin, "k", user.id, "image")
    assert split(charged.json()) == (0, 1, 0)

    clock.set(expiry)
    refunded = await post_refund(admin, "k")
    assert refunded.status_code == 200, refunded.text
    assert split(refunded.json()) == (0, 1, 0)
    assert refunded.json()["usage"]["additionalCredit"] == 1
    assert (await remaining(db, expiring.id), await remaining(db, lasting.id)) == (0, 1000)
    tail = [
        (e["type"], e["pool"], e["amount"], e["purchase"], e["note"])
        for e in await entries(db, user.id)
    ][-2:]
    assert tail == [
        ("expiry", "purchase", -1000, expiring.id, None),
        ("refund", "purchase", 0, expiring.id, "the purchase has expired since the charge"),
    ]
    assert await factory.reconcile() == []


async def test_refund_of_an_earlier_period_charge_leaves_the_current_period_alone(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=2, max_ttp=2))
    bought = await factory.purchase(user, 5)
    old = await post_charge(admin, "old", user.id, "ttp", 3)
    assert split(old.json()) == (2, 1, 0)

    clock.set(PERIOD_END + timedelta(days=1))
    assert (await post_charge(admin, "new", user.id, "ttp")).status_code == 201
    current = await usage_dto(factory, user)
    assert (current["currentCredit"], current["ttpCount"], current["additionalCredit"]) == (1, 1, 4)

    refunded = await post_refund(admin, "old")
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["usage"] == {**current, "additionalCredit": 5}
    assert await remaining(db, bought.id) == 5000
    refund_entries = [
        (e["pool"], e["amount"], e["period"], e["note"])
        for e in await entries(db, user.id)
        if e["type"] == "refund"
    ]
    assert refund_entries == [
        ("plan", 0, us(START), "plan credit of an ended period is not restored"),
        ("purchase", 1000, us(START), None),
        ("ttp", -1, us(START), "counted in an ended period: recorded against that period"),
    ]
    # The current period still counts its own ttp: one more fits, then the limit.
    assert (await post_charge(admin, "new2", user.id, "ttp")).status_code == 201
    assert (await post_charge(admin, "new3", user.id, "ttp")).status_code == 429
    assert await factory.reconcile() == []


async def test_postpaid_refund_reverses_the_period_it_accrued_in(
    db: Database, admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=0, max_ttp=None, postpaid=True))
    assert split((await post_charge(admin, "old", user.id, "image", 2)).json()) == (0, 0, 2)
    clock.set(PERIOD_END)
    assert split((await post_charge(admin, "new", user.id, "image", 1)).json()) == (0, 0, 1)
    refunded = await post_refund(admin, "old")
    assert refunded.status_code == 200
    assert split(refunded.json()) == (0, 0, 2)
    assert refunded.json()["usage"]["postpaidUsageCount"] == 1
    assert (await post_refund(admin, "new")).json()["usage"]["postpaidUsageCount"] == 0
    refund_entries = [
        (e["pool"], e["amount"], e["period"])
        for e in await entries(db, user.id)
        if e["type"] == "refund"
    ]
    assert refund_entries == [("postpaid", -2000, us(START)), ("postpaid", -1000, us(PERIOD_END))]
    assert await factory.reconcile() == []


async def test_refund_after_an_immediate_downgrade_stays_within_the_new_allowance(
    db: Database, factory: Factory
) -> None:
    big = await factory.plan(credits=10, max_ttp=None)
    small = await factory.plan(credits=5, max_ttp=None)
    user = await factory.user(big)
    assert isinstance(await factory.charge(user, "image", "k", 8), Charged)
    async with db.transaction() as conn:
        await ledger.change_plan(
            conn, user.id, small.name, at_next_period=False, now=factory.clock(), zone=factory.zone
        )
    assert (await factory.usage(user)).current_credit == 0  # 5 allowed, 8 already spent
    await factory.refund("k")
    usage = await factory.usage(user)
    assert await factory.reconcile() == []
    # As if the charge had never happened: the new allowance, nothing spent.
    assert (usage.current_credit, usage.max_credit) == (5 * MILLI, 5 * MILLI)


@pytest.mark.parametrize(
    "key",
    ["order/42", "a b c", "100%", "q?x=1#frag", "a+b", "%2F", "slash/", "/lead", "a/../b"],
)
async def test_keys_with_reserved_characters_are_refunded_by_their_url_encoding(
    admin: httpx.AsyncClient, factory: Factory, key: str
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    assert (await post_charge(admin, key, user.id, "image")).status_code == 201
    refunded = await post_refund(admin, key)
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["charge"]["idempotencyKey"] == key
    assert refunded.json()["usage"]["currentCredit"] == 10
    assert error_of(await post_refund(admin, key)) == envelope(409, "already_refunded")


async def test_dot_keys_need_percent_encoded_dots_in_the_refund_path(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    """Pinned: '.' and '..' are valid keys, but a client that normalises dot segments
    cannot address them unless it sends the dots as %2E."""
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    for key, encoded in ((".", "%2E"), ("..", "%2E%2E")):
        assert (await post_charge(admin, key, user.id, "image")).status_code == 201
        refunded = await admin.post(f"{CHARGES}/{encoded}/refund")
        assert refunded.status_code == 200, refunded.text
        assert refunded.json()["charge"]["idempotencyKey"] == key


async def test_refund_needs_the_admin_token(
    db: Database, client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    assert isinstance(await factory.charge(user, "ttp", "k"), Charged)
    state = await table_rows(db)
    response = await client.post(f"{CHARGES}/k/refund")
    assert error_of(response) == envelope(401, "admin_unauthorized")
    assert await table_rows(db) == state


# --- reconcile ------------------------------------------------------------------------


async def test_reconcile_detects_a_tampered_charge(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    await factory.purchase(user, 3)
    for key, cost in (("a", 2), ("b", 9), ("c", 0.5)):
        assert (await post_charge(admin, key, user.id, "image", cost)).status_code == 201
    assert (await post_refund(admin, "b")).status_code == 200
    assert await factory.reconcile() == []
    report = await admin.get("/api/admin/reconcile")
    assert report.json() == {"ok": True, "problems": []}

    await execute(db, "UPDATE charges SET cost = cost + 1 WHERE idempotency_key = ?", "a")
    problems = await factory.reconcile()
    assert len(problems) == 1
    assert problems[0].startswith(f"user {user.id}: charge ")
    assert "costs 2001, its entries cover 2000" in problems[0]
    assert (await admin.get("/api/admin/reconcile")).json()["ok"] is False

    await execute(db, "UPDATE charges SET cost = cost - 1 WHERE idempotency_key = ?", "a")
    await execute(db, "UPDATE charges SET refunded_at = NULL WHERE idempotency_key = ?", "b")
    problems = await factory.reconcile()
    assert len(problems) == 1
    assert "refund record and refund entries disagree" in problems[0]

    await execute(db, "UPDATE charges SET refunded_at = 1 WHERE idempotency_key = ?", "b")
    assert await factory.reconcile() == []
    await execute(db, "UPDATE charges SET status = 402 WHERE idempotency_key = ?", "c")
    problems = await factory.reconcile()
    assert len(problems) == 1
    assert "was refused but has ledger entries" in problems[0]


async def test_reconcile_checks_each_charges_split_against_its_entries(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    """The usage history sums the split on the charges row: it must be the entries'."""
    user = await factory.user(await factory.plan(credits=1, max_ttp=None))
    await factory.purchase(user, 3)
    assert (await post_charge(admin, "split", user.id, "image", 2)).status_code == 201
    split = "SELECT from_plan, from_purchased, postpaid FROM charges WHERE idempotency_key = ?"
    async with db.read() as conn:
        row = await conn.fetchone(split, "split")
    assert row is not None
    assert (row["from_plan"], row["from_purchased"], row["postpaid"]) == (1000, 1000, 0)
    assert await factory.reconcile() == []

    await execute(
        db,
        "UPDATE charges SET from_plan = from_plan - 1, postpaid = postpaid + 1"
        " WHERE idempotency_key = ?",
        "split",
    )
    (problem,) = await factory.reconcile()
    assert problem.endswith(
        "records plan/purchased/postpaid (999, 1000, 1), its entries say (1000, 1000, 0)"
    )


async def test_the_split_migration_fills_in_charges_made_before_it(
    db: Database, factory: Factory
) -> None:
    """A store charged before migration 0007: each charge's split, from its entries."""
    prepaid = await factory.user(await factory.plan(credits=1, max_ttp=None))
    await factory.purchase(prepaid, 3)
    postpaid = await factory.user(await factory.plan(credits=1, max_ttp=None, postpaid=True))
    for user, key, cost in ((prepaid, "both", 2), (prepaid, "refused", 9), (postpaid, "owed", 3)):
        await factory.charge(user, "image", key, cost)
    async with db.transaction() as conn:
        await conn.execute("DROP INDEX charges_user_spent")
        for column in ("from_plan", "from_purchased", "postpaid"):
            await conn.execute(f"ALTER TABLE charges DROP COLUMN {column}")
        await conn.execute("CREATE INDEX charges_user ON charges (user_id, created_at)")
        await conn.execute("DELETE FROM schema_migrations WHERE version = 7")

    assert await db.migrate() == [7]

    async with db.read() as conn:
        rows = await conn.fetchall(
            "SELECT idempotency_key, status, from_plan, from_purchased, postpaid FROM charges"
            " ORDER BY id"
        )
    assert [tuple(row) for row in rows] == [
        ("both", 201, 1000, 1000, 0),
        ("refused", 402, 0, 0, 0),
        ("owed", 201, 1000, 0, 2000),
    ]
    assert await factory.reconcile() == []


# --- bad input over HTTP --------------------------------------------------------------

_DROP = object()


def body(**fields: object) -> Any:
    """A charge body for the test's user, with fields replaced (``_DROP`` removes one);
    a callable field value is called with the user's id."""

    def make(user_id: int) -> bytes:
        data: dict[str, object] = {"userId": user_id, "kind": "ttp"}
        for name, value in fields.items():
            if value is _DROP:
                data.pop(name, None)
            else:
                data[name] = value(user_id) if callable(value) else value
        return json.dumps(data).encode()

    return make


def raw(text: bytes) -> Any:
    return lambda user_id: text.replace(b"USER", str(user_id).encode())


BAD_REQUESTS = [
    # The Idempotency-Key header.
    pytest.param(_DROP, body(), 400, "invalid_idempotency_key", id="key-missing"),
    pytest.param("", body(), 400, "invalid_idempotency_key", id="key-empty"),
    pytest.param("k" * 256, body(), 400, "invalid_idempotency_key", id="key-256"),
    pytest.param("\tk", body(), 400, "invalid_idempotency_key", id="key-tab"),
    pytest.param("k\x7f", body(), 400, "invalid_idempotency_key", id="key-del"),
    pytest.param(b"caf\xc3\xa9", body(), 400, "invalid_idempotency_key", id="key-utf8"),
    pytest.param(b"k\xff", body(), 400, "invalid_idempotency_key", id="key-latin1"),
    pytest.param(b"k\x00", body(), 400, "invalid_idempotency_key", id="key-nul"),
    # kind
    pytest.param("k", body(kind="video"), 400, "unknown_kind", id="kind-unknown"),
    pytest.param("k", body(kind="TTP"), 400, "unknown_kind", id="kind-upper"),
    pytest.param("k", body(kind=""), 400, "unknown_kind", id="kind-empty"),
    pytest.param("k", body(kind="tt\x00p"), 400, "bad_request", id="kind-nul"),
    pytest.param("k", body(kind="t" * 33), 400, "bad_request", id="kind-too-long"),
    pytest.param("k", body(kind=None), 400, "bad_request", id="kind-null"),
    pytest.param("k", body(kind=1), 400, "bad_request", id="kind-number"),
    pytest.param("k", body(kind=_DROP), 400, "bad_request", id="kind-missing"),
    # cost
    pytest.param("k", body(cost=-1), 400, "bad_request", id="cost-negative"),
    pytest.param("k", body(cost=-0.5), 400, "bad_request", id="cost-negative-fraction"),
    pytest.param("k", body(cost=0), 400, "bad_request", id="cost-zero"),
    pytest.param("k", body(cost=0.0), 400, "bad_request", id="cost-zero-float"),
    pytest.param(
        "k",
        raw(b'{"userId": USER, "kind": "ttp", "cost": 1e400}'),
        400,
        "bad_request",
        id="cost-inf",
    ),
    pytest.param(
        "k",
        raw(b'{"userId": USER, "kind": "ttp", "cost": -1e400}'),
        400,
        "bad_request",
        id="cost-minus-inf",
    ),
    pytest.param(
        "k", raw(b'{"userId": USER, "kind": "ttp", "cost": NaN}'), 400, "bad_request", id="cost-nan"
    ),
    pytest.param("k", body(cost=1e20), 400, "bad_request", id="cost-1e20"),
    pytest.param("k", body(cost=10**12 + 1), 400, "bad_request", id="cost-over-max"),
    pytest.param("k", body(cost=0.0001), 400, "bad_request", id="cost-4-decimals"),
    pytest.param("k", body(cost=1.0005), 400, "bad_request", id="cost-1.0005"),
    pytest.param("k", body(cost=True), 400, "bad_request", id="cost-true"),
    pytest.param("k", body(cost=False), 400, "bad_request", id="cost-false"),
    pytest.param("k", body(cost=None), 400, "bad_request", id="cost-null"),
    pytest.param("k", body(cost=[1]), 400, "bad_request", id="cost-list"),
    pytest.param("k", body(cost={}), 400, "bad_request", id="cost-object"),
    pytest.param("k", body(cost="abc"), 400, "bad_request", id="cost-word"),
    pytest.param("k", body(cost="NaN"), 400, "bad_request", id="cost-string-nan"),
    # A JSON string is not a number, even one Decimal would read (the contract says so).
    pytest.param("k", body(cost="1"), 400, "bad_request", id="cost-string"),
    pytest.param("k", body(cost="1_000"), 400, "bad_request", id="cost-string-underscore"),
    pytest.param("k", body(cost=" 2 "), 400, "bad_request", id="cost-string-spaces"),
    # userId
    pytest.param("k", body(userId=0), 400, "bad_request", id="user-zero"),
    pytest.param("k", body(userId=-1), 400, "bad_request", id="user-negative"),
    pytest.param("k", body(userId=str), 400, "bad_request", id="user-string"),
    pytest.param("k", body(userId=float), 400, "bad_request", id="user-float-whole"),
    pytest.param("k", body(userId=1.5), 400, "bad_request", id="user-fraction"),
    pytest.param("k", body(userId=True), 400, "bad_request", id="user-true"),
    pytest.param("k", body(userId=None), 400, "bad_request", id="user-null"),
    pytest.param("k", body(userId=_DROP), 400, "bad_request", id="user-missing"),
    pytest.param("k", body(userId=lambda uid: [uid]), 400, "bad_request", id="user-list"),
    pytest.param("k", body(userId=2**63), 400, "bad_request", id="user-2**63"),
    pytest.param("k", body(userId=2**64), 400, "bad_request", id="user-2**64"),
    pytest.param("k", body(userId=10**30), 400, "bad_request", id="user-huge"),
    pytest.param("k", body(userId=2**63 - 1), 404, "user_not_found", id="user-max-unknown"),
    pytest.param(
        "k", body(userId=lambda uid: uid + 1000), 404, "user_not_found", id="user-unknown"
    ),
    # the body as a whole
    pytest.param(
        "k", raw(b'{"userId": USER, "kind": "ttp"'), 400, "bad_request", id="json-truncated"
    ),
    pytest.param("k", raw(b""), 400, "bad_request", id="json-empty"),
    pytest.param("k", raw(b"[USER]"), 400, "bad_request", id="json-array"),
    pytest.param("k", raw(b'"ttp"'), 400, "bad_request", id="json-string"),
    pytest.param("k", raw(b"null"), 400, "bad_request", id="json-null"),
    pytest.param(
        "k",
        raw(b'{"userId": USER, "kind": "ttp"}\xff'),
        400,
        "bad_request",
        id="json-trailing-bytes",
    ),
    pytest.param("k", body(costs=1), 400, "bad_request", id="field-unknown"),
    pytest.param("k", body(idempotencyKey="k"), 400, "bad_request", id="field-key-in-body"),
]


@pytest.mark.parametrize(("key", "make_body", "status", "reason"), BAD_REQUESTS)
async def test_bad_charge_request_is_an_envelope_error_and_changes_nothing(
    db: Database,
    admin: httpx.AsyncClient,
    factory: Factory,
    key: object,
    make_body: Any,
    status: int,
    reason: str,
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    await factory.purchase(user, 2)
    assert isinstance(await factory.charge(user, "ttp", "earlier"), Charged)
    state = await table_rows(db)
    headers = {"content-type": "application/json"}
    if key is not _DROP:
        headers["Idempotency-Key"] = key  # type: ignore[assignment]
    response = await admin.post(CHARGES, content=make_body(user.id), headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert error_of(response) == envelope(status, reason)
    assert await table_rows(db) == state


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({}, 401, "admin_unauthorized"),
        ({"Authorization": "Bearer wrong-token"}, 401, "admin_unauthorized"),
        ({"Authorization": "Basic dGVzdA=="}, 401, "admin_unauthorized"),
    ],
    ids=["no-token", "wrong-token", "basic-auth"],
)
async def test_charge_needs_the_admin_token(
    db: Database,
    client: httpx.AsyncClient,
    factory: Factory,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    state = await table_rows(db)
    response = await client.post(
        CHARGES,
        json={"userId": user.id, "kind": "ttp"},
        headers={"Idempotency-Key": "k", **headers},
    )
    assert error_of(response) == envelope(status, reason)
    assert await table_rows(db) == state


async def test_charge_body_must_be_json(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    state = await table_rows(db)
    response = await admin.post(
        CHARGES,
        content=json.dumps({"userId": user.id, "kind": "ttp"}).encode(),
        headers={"Idempotency-Key": "k", "content-type": "text/plain"},
    )
    assert error_of(response) == envelope(415, "unsupported_media_type")
    assert await table_rows(db) == state


async def test_a_deleted_user_cannot_be_charged_but_earlier_answers_replay(
    db: Database, admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    first = await post_charge(admin, "before", user.id, "ttp")
    assert (await admin.delete(f"/api/admin/users/{user.id}")).status_code == 204
    state = await table_rows(db)
    assert error_of(await post_charge(admin, "after", user.id, "ttp")) == envelope(
        404, "user_not_found"
    )
    # Pinned: the key's first answer is still the answer for that key.
    replay = await post_charge(admin, "before", user.id, "ttp")
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    assert await table_rows(db) == state


# --- the CLI --------------------------------------------------------------------------


def cli(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("flamel-usage")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "flamel_usage"]
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLAMEL_")}
    env.update(environ)
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_cli_charge_replay_refusal_and_refund(
    db: Database, environ: dict[str, str], factory: Factory, clock: FakeClock
) -> None:
    # The CLI runs on the system clock: make the account in the real current period.
    clock.set(datetime.now(UTC))
    user = await factory.user(await factory.plan(credits=1, max_ttp=None), email="cli@example.com")

    charged = cli(environ, "charge", "CLI@example.com", "ttp", "--idempotency-key", "cli/1")
    assert charged.returncode == 0, charged.stderr
    body = json.loads(charged.stdout)
    assert body["charge"]["idempotencyKey"] == "cli/1"
    assert body["charge"]["userId"] == user.id
    assert split(body) == (1, 0, 0)
    assert body["usage"]["currentCredit"] == 0

    replayed = cli(environ, "charge", "cli@example.com", "ttp", "--idempotency-key", "cli/1")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == charged.stdout

    refused = cli(
        environ, "charge", "cli@example.com", "ttp", "--idempotency-key", "cli/2", "--cost", "0.5"
    )
    assert refused.returncode == 1, refused.stderr
    assert json.loads(refused.stdout)["data"] == "insufficient_credit"

    refunded = cli(environ, "refund", "cli/1")
    assert refunded.returncode == 0, refunded.stderr
    assert json.loads(refunded.stdout)["charge"]["refundedAt"] is not None
    assert json.loads(refunded.stdout)["usage"]["currentCredit"] == 1

    again = cli(environ, "refund", "cli/1")
    assert again.returncode == 2
    assert "already_refunded" in again.stderr
    assert await factory.reconcile() == []
    assert await row_count(db, "charges") == 2
    assert accounts.normalise_email("CLI@example.com") == user.email

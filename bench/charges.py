"""The charges part of the benchmark: charges/s over HTTP next to a raw transaction loop.

Used by ``bench/run.py`` (``--parts charges`` runs this part alone). Over HTTP,
``bench/charges.lua`` drives ``POST /api/admin/charges`` with a fresh Idempotency-Key
per request, a random seeded user and a random kind. The raw loop runs the statements
that ``flamel_usage.metering.charges.charge`` runs (imported from the service, with the
default costs and a charge's fingerprint) for the same mix of requests, with the same
driver and connection settings as the service, in one process without HTTP or the rest
of the service's code: one transaction after the other on SQLite (it has one writer at a time
anyway), ``--charge-connections`` concurrent transactions on one asyncpg pool on
PostgreSQL. Refusals (402 insufficient credit, 429 limits) are intended answers;
anything else counts as an error.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from benchlib import numbered

from flamel_usage.accounts.users import LIVE_USER
from flamel_usage.core.config import OPERATION_COSTS
from flamel_usage.ledger.balances import ACCOUNT, EXPIRED_PURCHASES, INSERT_ENTRY, USAGE
from flamel_usage.ledger.rollup import RECORD_DAY, RECORD_HOUR, day_of, hour_of
from flamel_usage.metering.charges import (
    LIVE_PURCHASES,
    SPEND_FROM_ACCOUNT,
    SPEND_FROM_PURCHASE,
    ChargeRequest,
)
from flamel_usage.metering.idempotency import INSERT_RECORD, READ_RECORD, RECORD_USAGE

OK = {201}
REFUSALS = {402, 429}
KINDS = ("ttp",) * 5 + ("edit",) * 3 + ("image",) * 2  # the mix charges.lua sends
#: The cost of each kind, in millicredits, as a server with no FLAMEL_OPERATION_COSTS has it.
COSTS = OPERATION_COSTS.read({})
COUNTED = {"ttp": ("ttp_count", "max_ttp"), "edit": ("edit_count", "max_edit")}
#: What ``Connection.lock_name`` sends on PostgreSQL (SQLite's write lock needs none).
LOCK = "SELECT pg_advisory_xact_lock(hashtext(?))"
LOCKED_ACCOUNT = ACCOUNT + " FOR UPDATE OF a"  # ``Connection.for_update("a")``
#: The seed's billing zone, which the history's day rollup is keyed in.
ZONE = ZoneInfo("UTC")

Fetch = Callable[..., Awaitable[Any]]


async def charge_once(
    one: Fetch, many: Fetch, run: Fetch, user_id: int, kind: str, key: str, postgres: bool
) -> int:
    """One charge, statement for statement as the service makes it; its HTTP status.

    The periods of the seed are current, so the roll-over is never due (as in the
    service on this data); expired purchases are looked for all the same.
    """
    now = time.time_ns() // 1000
    if postgres:
        await one(LOCK, f"charge:{key}")
    if await one(READ_RECORD, user_id, key) is not None:
        raise RuntimeError(f"idempotency key {key} repeated")
    await one(LIVE_USER, user_id)
    account = await one(LOCKED_ACCOUNT if postgres else ACCOUNT, user_id)
    await many(EXPIRED_PURCHASES, user_id, now)
    fingerprint = ChargeRequest(user_id, kind, None).fingerprint()
    cost = COSTS[kind]
    status = 201
    if kind in COUNTED:
        count, limit = COUNTED[kind]
        if account[limit] is not None and account[count] >= account[limit]:
            status = 429
    from_plan = min(account["plan_credit"], cost)
    owed, taken = cost - from_plan, []
    if status == 201 and owed:
        for purchase in await many(LIVE_PURCHASES, user_id, now):
            part = min(purchase["remaining"], owed)
            taken.append((purchase["id"], part))
            owed -= part
            if not owed:
                break
        if owed and account["billing_mode"] == "prepaid":
            status = 402
    period = account["period_start"]
    if status != 201:
        reason = "insufficient_credit" if status == 402 else f"{kind}_limit_exceeded"
        body = orjson.dumps({"data": reason, "message": None}).decode()
        await one(
            INSERT_RECORD, key, fingerprint, user_id, kind, cost, status, body, 0, 0, 0, period, now
        )
        return status
    purchased = cost - from_plan - owed
    charge_id = (
        await one(
            INSERT_RECORD,
            key,
            fingerprint,
            user_id,
            kind,
            cost,
            201,
            "{}",
            from_plan,
            purchased,
            owed,
            period,
            now,
        )
    )[0]
    ttp, edit = int(kind == "ttp"), int(kind == "edit")
    await run(SPEND_FROM_ACCOUNT, from_plan, owed, ttp, edit, user_id)
    entries: list[tuple[str, int, int | None]] = [("plan", -from_plan, None)]
    entries += [("purchase", -part, purchase_id) for purchase_id, part in taken]
    entries.append(("postpaid", owed, None))
    if kind in COUNTED:
        entries.append((kind, 1, None))
    for purchase_id, part in taken:
        await run(SPEND_FROM_PURCHASE, part, user_id, purchase_id)
    for pool, amount, purchase_id in entries:
        if amount or pool in COUNTED:
            await run(
                INSERT_ENTRY,
                user_id,
                now,
                "charge",
                pool,
                amount,
                period,
                purchase_id,
                charge_id,
                None,
            )
    await run(RECORD_HOUR, user_id, hour_of(now), kind, 1, from_plan, purchased, owed)
    await run(RECORD_DAY, user_id, day_of(now, ZONE), kind, 1, from_plan, purchased, owed)
    usage = await one(USAGE, user_id, now, user_id)
    body = orjson.dumps({"usage": list(usage)})
    await run(RECORD_USAGE, body.decode(), user_id, charge_id)
    return 201


async def _no_reset_query(conn: asyncpg.Connection) -> None:
    """Released connections get no reset query, as in the service's pool."""


def _requests(users: int, seed: int) -> Callable[[], tuple[int, str]]:
    rng = random.Random(seed)
    return lambda: (rng.randint(1, users), rng.choice(KINDS))


async def raw_sqlite(path: str, seconds: float, users: int, tag: str, seed: int) -> dict[str, Any]:
    """Charges one after the other in BEGIN IMMEDIATE transactions, like the service."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "busy_timeout=10000",
        "foreign_keys=ON",
    ):
        conn.execute(f"PRAGMA {pragma}")

    async def one(sql: str, *args: object) -> Any:
        return conn.execute(sql, args).fetchone()

    async def many(sql: str, *args: object) -> Any:
        return conn.execute(sql, args).fetchall()

    async def run(sql: str, *args: object) -> Any:
        return conn.execute(sql, args).rowcount

    statuses: dict[int, int] = {}
    pick = _requests(users, seed)
    started = time.monotonic()
    deadline = started + seconds
    number = 0
    try:
        while time.monotonic() < deadline:
            number += 1
            user_id, kind = pick()
            conn.execute("BEGIN IMMEDIATE")
            try:
                status = await charge_once(one, many, run, user_id, kind, f"{tag}-{number}", False)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        conn.close()
    return _summary(statuses, time.monotonic() - started)


async def raw_postgres(
    url: str, seconds: float, users: int, tag: str, seed: int, concurrency: int
) -> dict[str, Any]:
    """``concurrency`` loops of transactions on one pool, in one process."""
    pool = await asyncpg.create_pool(
        url, min_size=concurrency, max_size=concurrency, reset=_no_reset_query
    )
    sql = {
        text: numbered(text)
        for text in (
            *(LOCK, READ_RECORD, LIVE_USER, LOCKED_ACCOUNT, EXPIRED_PURCHASES, LIVE_PURCHASES),
            *(INSERT_RECORD, SPEND_FROM_ACCOUNT, SPEND_FROM_PURCHASE, INSERT_ENTRY, USAGE),
            *(RECORD_HOUR, RECORD_DAY, RECORD_USAGE),
        )
    }
    statuses: dict[int, int] = {}
    pick = _requests(users, seed)
    started = time.monotonic()
    deadline = started + seconds
    counter = iter(range(1, 1 << 62))

    async def loop() -> None:
        while time.monotonic() < deadline:
            user_id, kind = pick()
            key = f"{tag}-{next(counter)}"
            async with pool.acquire() as conn, conn.transaction():

                async def one(text: str, *args: object) -> Any:
                    return await conn.fetchrow(sql[text], *args)

                async def many(text: str, *args: object) -> Any:
                    return await conn.fetch(sql[text], *args)

                async def run(text: str, *args: object) -> Any:
                    return await conn.execute(sql[text], *args)

                status = await charge_once(one, many, run, user_id, kind, key, True)
            statuses[status] = statuses.get(status, 0) + 1

    try:
        await asyncio.wait_for(
            asyncio.gather(*(loop() for _ in range(concurrency))), timeout=seconds + 60
        )
    finally:
        await pool.close()
    return _summary(statuses, time.monotonic() - started)


def _summary(statuses: dict[int, int], elapsed: float) -> dict[str, Any]:
    done = sum(statuses.values())
    return {
        "per_second": done / elapsed,
        "requests": done,
        "refusals": sum(statuses.get(status, 0) for status in REFUSALS),
        "statuses": statuses,
    }

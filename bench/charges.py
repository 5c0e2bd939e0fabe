"""The charges part of the benchmark: charges/s over HTTP next to a raw transaction loop.

Used by ``bench/run.py`` (``--parts charges`` runs this part alone). Over HTTP,
``bench/charges.lua`` drives ``POST /api/admin/charges`` with a fresh Idempotency-Key
per request, a random seeded user and a random kind. The raw loop runs the statements
that ``flamel_usage.metering.charges.charge`` runs for the same mix of requests, with the
same driver and connection settings as the service, in one process without HTTP or the
service's code: one transaction after the other on SQLite (it has one writer at a time
anyway), ``--charge-connections`` concurrent transactions on one asyncpg pool on
PostgreSQL. Refusals (402 insufficient credit, 429 limits) are intended answers;
anything else counts as an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

OK = {201}
REFUSALS = {402, 429}
KINDS = ("ttp",) * 5 + ("edit",) * 3 + ("image",) * 2  # the mix charges.lua sends
COST = 1000  # the default cost of every kind (FLAMEL_OPERATION_COSTS), in millicredits
COUNTED = {"ttp": ("ttp_count", "max_ttp"), "edit": ("edit_count", "max_edit")}

LOCK = "SELECT pg_advisory_xact_lock(hashtext(?))"
FIRST = "SELECT fingerprint, status, response FROM charges WHERE idempotency_key = ?"
LIVE_USER = "SELECT id FROM users WHERE id = ? AND deleted_at IS NULL"
COLUMNS = (
    "a.user_id, a.plan_id, a.pending_plan_id, a.anchor_at, a.period_start, a.period_end,"
    " a.plan_credit, a.ttp_count, a.edit_count, a.postpaid_used, p.period_unit, p.max_credit,"
    " p.max_ttp, p.max_edit, p.billing_mode"
)
ACCOUNT = f"SELECT {COLUMNS} FROM accounts a JOIN plans p ON p.id = a.plan_id WHERE a.user_id = ?"
EXPIRED = (
    "SELECT id, remaining FROM credit_purchases"
    " WHERE user_id = ? AND remaining > 0 AND expires_at <= ?"
)
LIVE_PURCHASES = (
    "SELECT id, remaining FROM credit_purchases"
    " WHERE user_id = ? AND remaining > 0 AND (expires_at IS NULL OR expires_at > ?)"
    " ORDER BY expires_at IS NULL, expires_at, id"
)
RECORD = (
    "INSERT INTO charges (idempotency_key, fingerprint, user_id, kind, cost, status, response,"
    " from_plan, from_purchased, postpaid, period_start, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
APPLY = (
    "UPDATE accounts SET plan_credit = plan_credit - ?, postpaid_used = postpaid_used + ?,"
    " ttp_count = ttp_count + ?, edit_count = edit_count + ? WHERE user_id = ?"
)
TAKE = "UPDATE credit_purchases SET remaining = remaining - ? WHERE id = ?"
ENTRY = (
    "INSERT INTO ledger_entries (user_id, at, entry_type, pool, amount, period_start,"
    " purchase_id, charge_id, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
USAGE = (
    f"SELECT {COLUMNS}, (SELECT CAST(COALESCE(SUM(c.remaining), 0) AS BIGINT)"
    " FROM credit_purchases c WHERE c.user_id = ? AND c.remaining > 0"
    " AND (c.expires_at IS NULL OR c.expires_at > ?)) AS purchased"
    " FROM accounts a JOIN plans p ON p.id = a.plan_id WHERE a.user_id = ?"
)
RESPOND = "UPDATE charges SET response = ? WHERE id = ?"

Fetch = Callable[..., Awaitable[Any]]


def numbered(sql: str) -> str:
    head, *rest = sql.split("?")
    return head + "".join(f"${number}{part}" for number, part in enumerate(rest, start=1))


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
    if await one(FIRST, key) is not None:
        raise RuntimeError(f"idempotency key {key} repeated")
    await one(LIVE_USER, user_id)
    account = await one(ACCOUNT + (" FOR UPDATE OF a" if postgres else ""), user_id)
    await many(EXPIRED, user_id, now)
    fingerprint = hashlib.sha256(f"{user_id}|{kind}|default".encode()).hexdigest()
    status = 201
    if kind in COUNTED:
        count, limit = COUNTED[kind]
        if account[limit] is not None and account[count] >= account[limit]:
            status = 429
    from_plan = min(account["plan_credit"], COST)
    owed, taken = COST - from_plan, []
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
        body = orjson.dumps({"success": False, "code": status, "data": "refused"}).decode()
        await one(RECORD, key, fingerprint, user_id, kind, COST, status, body, 0, 0, 0, period, now)
        return status
    purchased = COST - from_plan - owed
    charge_id = (
        await one(
            RECORD,
            key,
            fingerprint,
            user_id,
            kind,
            COST,
            201,
            "",
            from_plan,
            purchased,
            owed,
            period,
            now,
        )
    )[0]
    ttp, edit = int(kind == "ttp"), int(kind == "edit")
    await run(APPLY, from_plan, owed, ttp, edit, user_id)
    entries: list[tuple[str, int, int | None]] = [("plan", -from_plan, None)]
    entries += [("purchase", -part, purchase_id) for purchase_id, part in taken]
    entries.append(("postpaid", owed, None))
    if kind in COUNTED:
        entries.append((kind, 1, None))
    for purchase_id, part in taken:
        await run(TAKE, part, purchase_id)
    for pool, amount, purchase_id in entries:
        if amount or pool in COUNTED:
            await run(
                ENTRY, user_id, now, "charge", pool, amount, period, purchase_id, charge_id, None
            )
    usage = await one(USAGE, user_id, now, user_id)
    body = orjson.dumps({"charge": {"id": charge_id, "key": key}, "usage": list(usage)})
    await run(RESPOND, body.decode(), charge_id)
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
        "synchronous=NORMAL",
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
            *(LOCK, FIRST, LIVE_USER, ACCOUNT + " FOR UPDATE OF a", EXPIRED),
            *(LIVE_PURCHASES, RECORD, APPLY, TAKE, ENTRY, USAGE, RESPOND),
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

"""Bytes per user, per charge and per ledger entry on each store, measured.

Not part of the tests. `.venv/bin/python bench/sizes.py [--users 2000] [--charges 20000]`
makes a fresh SQLite file and a private PostgreSQL database (on FLAMEL_TEST_POSTGRES_URL),
creates the users (each with its account, first ledger entry and one API key) and the
charges (a random user and kind, a fresh idempotency key, as the admin API makes them:
the record with its replay body, the ledger entries) through the service's own code, and
prints the bytes on disk of each table with its indexes divided by its rows: SQLite's
`dbstat` pages after VACUUM, PostgreSQL's `pg_total_relation_size` (heap, indexes and
TOAST) after VACUUM FULL, so that neither counts free space. Then it prunes every
idempotency record (`FLAMEL_IDEMPOTENCY_RETENTION_DAYS` passed) and measures a charge
again, as it is kept after its retention. `docs/scaling.md` quotes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
from benchlib import admin, database_url

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import credentials as auth
from flamel_usage.db.gateway import Database
from flamel_usage.metering import charges, idempotency

UTC = ZoneInfo("UTC")
COSTS = {"ttp": 1000, "edit": 1000, "image": 1000}
#: Each table with the rows it is measured per.
PER_USER = ("users", "accounts", "api_keys")
TABLES = (*PER_USER, "charges", "ledger_entries")
DAY = 86_400_000_000


async def fill(db: Database, users: int, charge_count: int) -> None:
    now = time.time_ns() // 1000
    async with db.transaction() as conn:
        await accounts.create_plan(
            conn,
            name="sizes",
            period_unit="month",
            max_credit=10_000_000,
            max_ttp=None,
            max_edit=None,
            billing_mode="postpaid",
            now=now,
        )
    for number in range(users):
        async with db.transaction() as conn:
            user = await accounts.create_user(
                conn,
                email=f"user{number}@sizes.example.com",
                plan_name="sizes",
                anchor=None,
                password_hash=None,
                now=now,
                zone=UTC,
                external_id=f"platform-user-{number}",
            )
            await auth.issue_key(conn, user.id, expires_at=None, now=now)
    rng = random.Random(7)
    for number in range(charge_count):
        request = charges.ChargeRequest(rng.randint(1, users), rng.choice(tuple(COSTS)), None)
        async with db.transaction() as conn:
            await charges.charge(
                conn,
                request,
                idempotency_key=f"job-{number:08d}-{rng.getrandbits(64):016x}",
                costs=COSTS,
                now=now + number,
                zone=UTC,
            )


async def table_bytes(db: Database) -> dict[str, int]:
    """Each table's bytes on disk with its indexes (and TOAST on PostgreSQL)."""
    async with db.read() as conn:
        if db.dialect == "sqlite":
            rows = await conn.fetchall(
                "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s"
                " JOIN sqlite_master m ON m.name = s.name GROUP BY m.tbl_name"
            )
        else:
            rows = await conn.fetchall(
                "SELECT relname, pg_total_relation_size(oid) FROM pg_class"
                " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            )
        found = {row[0]: int(row[1]) for row in rows}
        counts = {}
        for table in TABLES:
            counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    return {table: found.get(table, 0) for table in TABLES} | {
        f"{table}:rows": counts[table] for table in TABLES
    }


async def vacuum(db: Database, url: str) -> None:
    if db.dialect == "sqlite":
        async with db.read() as conn:
            await conn.execute("VACUUM")
    else:
        raw = await asyncpg.connect(url)
        try:
            await raw.execute("VACUUM FULL ANALYZE")
        finally:
            await raw.close()


def per_row(sizes: dict[str, int]) -> dict[str, float]:
    users = sizes["users:rows"]
    return {
        "user (users + accounts + one api key)": sum(sizes[t] for t in PER_USER) / users,
        "charge (its record, with indexes)": sizes["charges"] / sizes["charges:rows"],
        "ledger entry": sizes["ledger_entries"] / sizes["ledger_entries:rows"],
    }


async def measure(url: str, users: int, charge_count: int) -> dict[str, float]:
    db = Database.from_url(url)
    await db.open()
    try:
        await db.migrate()
        await fill(db, users, charge_count)
        await vacuum(db, url)
        figures = per_row(await table_bytes(db))
        entries_per_charge = (await table_bytes(db))["ledger_entries:rows"] / charge_count
        retired = await idempotency.prune(db, time.time_ns() // 1000 + 31 * DAY, 30)
        assert retired == charge_count, retired
        await vacuum(db, url)
        after = await table_bytes(db)
        figures["charge after its retention (key retired)"] = after["charges"] / charge_count
        figures["ledger entries per charge"] = entries_per_charge
    finally:
        await db.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--charges", type=int, default=20000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="flamel-sizes-") as work:
        results["sqlite"] = asyncio.run(
            measure(f"sqlite:///{Path(work) / 'sizes.sqlite3'}", args.users, args.charges)
        )
    name = f"flamel_sizes_{int(time.time())}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        results["postgresql"] = asyncio.run(measure(database_url(name), args.users, args.charges))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"{args.users:,} users, {args.charges:,} charges; bytes on disk per row:")
    print(f"  {'':44s} {'sqlite':>10s} {'postgresql':>10s}")
    for what in results["sqlite"]:
        sqlite, postgres = results["sqlite"][what], results["postgresql"][what]
        print(f"  {what:44s} {sqlite:10.1f} {postgres:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

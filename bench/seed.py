"""A realistic benchmark database, seeded fast with bulk inserts after the real migrations.

    .venv/bin/python bench/seed.py [--users 100000] [--entries 1000000] [--postgres URL]

What it makes (every instant relative to the moment of seeding, billing zone UTC):

* four plans, one of each kind, made by the service (``accounts.create_plan``): prepaid
  with ttp/edit limits (monthly and yearly), prepaid without limits, postpaid;
* ``--users`` users, each with an account in its current period (ending at least two
  days after seeding, so that a cached seed stays current for the day), one API key
  (hashed and shown as ``flamel_usage.auth.keys`` does it) and, for one in five, a live
  purchase of credit;
* ledger entries up to ``--entries`` in all: for each account a ``period_start`` entry of
  its current period and the entries of a few charges in it (reflected in the account's
  balances), and filler in EARLIER periods: period starts, charges (with their
  ``charges`` rows), some refunds, expired purchases and period-end expiries;
* the usage history's rollups of the charges that stand, by hour (``usage_hours``) and
  by UTC day (``usage_days``, its zone recorded in ``usage_days_zone``: a server started
  with another billing zone rebuilds it);
* ``reconcile`` is clean on the result (checked when a seed is made).

SQLite seeds are cached under ``bench/.cache`` (keyed by the parameters, the day, the
migrations and this file), so a rerun on the same day starts at once; the plain keys,
one a line in user order, are written next to them for wrk. A PostgreSQL database is
seeded from the SQLite file with ``COPY``, so both stores hold the same rows.

What the service decides is taken from it, not copied: the schema (its migrations), the
plans, the key hash and prefix, a charge's fingerprint, the ledger's INSERT. The other
rows are written in bulk under the column names of ``COLUMNS``, so a column the schema
adds without a default, renames or moves fails the seed instead of shifting its values.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import sqlite3
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import keys
from flamel_usage.core.periods import Period, from_micros, period_containing, to_micros
from flamel_usage.db import migrate
from flamel_usage.db.gateway import Database
from flamel_usage.ledger import balances, rollup
from flamel_usage.ledger import reconcile as books
from flamel_usage.metering.charges import ChargeRequest

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
ZONE = ZoneInfo("UTC")
SECOND = 1_000_000
DAY = 86_400 * SECOND
CREDIT = 1000  # millicredits

#: id, name, period unit, allowance (millicredits), max ttp, max edit, billing mode, weight
PLANS = (
    (1, "Starter", "month", 1_000 * CREDIT, 100, 50, "prepaid", 45),
    (2, "Pro Annual", "year", 12_000 * CREDIT, 1_200, 600, "prepaid", 15),
    (3, "Unlimited", "month", 5_000 * CREDIT, None, None, "prepaid", 28),
    (4, "Enterprise", "month", 5 * CREDIT, None, None, "postpaid", 12),
)
TABLES = (
    "plans",
    "users",
    "accounts",
    "api_keys",
    "credit_purchases",
    "charges",
    "ledger_entries",
    "usage_hours",
    "usage_days",
    "usage_days_zone",
)
#: The columns the seed writes in bulk, in the order of its rows; the ledger's entries
#: go in through the service's own statement (``balances.INSERT_ENTRY``).
COLUMNS = {
    "users": ("id", "email", "created_at", "external_id"),
    "accounts": (
        *("user_id", "plan_id", "anchor_at", "period_start", "period_end"),
        *("plan_credit", "ttp_count", "edit_count", "postpaid_used"),
    ),
    "api_keys": ("id", "user_id", "prefix", "key_hash", "created_at"),
    "credit_purchases": ("id", "user_id", "amount", "remaining", "expires_at", "created_at"),
    "charges": (
        *("id", "idempotency_key", "fingerprint", "user_id", "kind", "cost", "status"),
        *("response", "period_start", "created_at", "refunded_at"),
        *("from_plan", "from_purchased", "postpaid"),
    ),
    "usage_hours": (
        *("user_id", "hour", "kind", "operations", "from_plan", "from_purchased", "postpaid"),
    ),
    "usage_days": (
        *("user_id", "day", "kind", "operations", "from_plan", "from_purchased", "postpaid"),
    ),
    "usage_days_zone": ("zone",),
}
KINDS = ("ttp", "edit", "image")
#: The user whose usage history the benchmark reads, and its charges in the current period.
HISTORY_USER = 1
HISTORY_CHARGES = 10_000
COUNTED = {"ttp": ("ttp_count", 4), "edit": ("edit_count", 5)}  # account field, plan index


def api_key(number: int) -> str:
    """The plain API key of user ``number``: deterministic, shaped like the real ones."""
    digest = hashlib.sha256(f"flamel-bench-key-{number}".encode()).digest()
    return "flm_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def external_id(number: int) -> str:
    """The platform's id of user ``number``, which its sessions carry (``sessions.py``)."""
    return f"bench-{number}"


@dataclass
class _Account:
    user_id: int
    plan: tuple[Any, ...]
    plan_credit: int = 0
    ttp_count: int = 0
    edit_count: int = 0
    postpaid_used: int = 0


class _Generator:
    """Rows for every table, built in memory; ids are assigned here."""

    def __init__(self, users: int, entries: int, now: int) -> None:
        self.users, self.entries, self.now = users, entries, now
        self.rng = random.Random(f"flamel-bench-{users}-{entries}")
        self.rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in COLUMNS}
        #: Rows of ``balances.INSERT_ENTRY``; ids follow from their order, by instant.
        self.ledger: list[tuple[Any, ...]] = []
        self.next_purchase = 1
        self.next_charge = 1
        self.keys: list[str] = []
        self.anchors: dict[int, int] = {}
        #: The history's rollups of the charges that stand: (user, hour or day, kind) ->
        #: numbers.
        self.hours: dict[tuple[int, int, str], list[int]] = {}
        self.days: dict[tuple[int, int, str], list[int]] = {}

    def entry(
        self,
        user_id: int,
        at: int,
        entry_type: str,
        pool: str,
        amount: int,
        period_start: int,
        purchase_id: int | None = None,
        charge_id: int | None = None,
        note: str | None = None,
    ) -> None:
        self.ledger.append(
            (user_id, at, entry_type, pool, amount, period_start, purchase_id, charge_id, note)
        )

    def run(self) -> None:
        weights = [plan[7] for plan in PLANS]
        left = self.entries - self.history_user()
        per_user, extra = divmod(left, self.users - 1)
        for user_id in range(HISTORY_USER + 1, self.users + 1):
            plan = self.rng.choices(PLANS, weights)[0]
            self.user(user_id, plan, per_user + (1 if user_id - HISTORY_USER <= extra else 0))
        self.ledger.sort(key=lambda row: row[1])
        self.rows["usage_hours"] = [(*where, *numbers) for where, numbers in self.hours.items()]
        self.rows["usage_days"] = [(*where, *numbers) for where, numbers in self.days.items()]
        self.rows["usage_days_zone"] = [(ZONE.key,)]

    def periods(self, unit: str, past: int) -> tuple[int, list[Period]]:
        """An anchor (whole seconds) and the current period plus ``past`` earlier ones."""
        span = 31 if unit == "month" else 366
        back = timedelta(days=span * past + self.rng.uniform(1, 27 if unit == "month" else 300))
        anchor = from_micros(self.now) - back
        anchor = anchor.replace(microsecond=0)
        now = from_micros(self.now)
        current = period_containing(anchor, unit, now, ZONE)
        while to_micros(current.end) - self.now < 2 * DAY:
            anchor -= timedelta(days=3)
            current = period_containing(anchor, unit, now, ZONE)
        found = [current]
        for _ in range(past):
            before = found[-1].start - timedelta(microseconds=1)
            found.append(period_containing(anchor, unit, before, ZONE))
        return to_micros(anchor), found[::-1]

    def history_user(self) -> int:
        """User ``HISTORY_USER``: ``HISTORY_CHARGES`` charges of every kind spread over its
        current period so far (postpaid, some refunded); the ledger entries written."""
        account, (current,) = self.subscriber(HISTORY_USER, PLANS[3], past=0)
        start = to_micros(current.start)
        rolled = start + SECOND
        self.entry(HISTORY_USER, rolled, "period_start", "plan", account.plan[3], start)
        account.plan_credit = account.plan[3]
        written = 1
        instants = sorted(
            self.rng.randint(rolled, self.now - SECOND) for _ in range(HISTORY_CHARGES)
        )
        for at in instants:
            written += self.charge(account, at, start, room=6, refundable=True)
        self.account_row(account, current)
        return written

    def subscriber(
        self, user_id: int, plan: tuple[Any, ...], past: int
    ) -> tuple[_Account, list[Period]]:
        """The user, its key and an empty account; its current period and ``past`` before."""
        anchor, periods = self.periods(plan[2], past)
        email = accounts.normalise_email(f"user{user_id}@bench.flamel.local")
        self.rows["users"].append((user_id, email, anchor, external_id(user_id)))
        key = api_key(user_id)
        self.keys.append(key)
        self.rows["api_keys"].append(
            (user_id, user_id, keys.key_prefix(key), keys.key_hash(key), anchor + SECOND)
        )
        self.anchors[user_id] = anchor
        return _Account(user_id, plan), periods

    def user(self, user_id: int, plan: tuple[Any, ...], budget: int) -> None:
        rng = self.rng
        unit = plan[2]
        # Current period: its start, maybe a purchase, a few charges; the rest is filler
        # in earlier periods, as many of them as keeps it to about a dozen entries each.
        current_charges = rng.randint(0, max(0, min(3, (budget - 4) // 3)))
        buys = budget >= 3 and rng.random() < 0.2
        estimate = budget - 1 - (1 if buys else 0) - 2 * current_charges
        past = 0
        if estimate >= 2:
            past = max(1, min(36 if unit == "month" else 3, estimate // 12))
        account, periods = self.subscriber(user_id, plan, past)
        current = periods[-1]
        filler = max(0, budget - self.current_period(account, current, current_charges, buys))
        history = _Account(user_id, plan)
        if past:
            shares = [filler // past + (1 if i < filler % past else 0) for i in range(past)]
            for period, share in zip(periods[:-1], shares, strict=True):
                self.past_period(history, period, share, expired_purchase=rng.random() < 0.1)
        self.account_row(account, current)

    def account_row(self, account: _Account, current: Period) -> None:
        user_id, plan, anchor = account.user_id, account.plan, self.anchors[account.user_id]
        self.rows["accounts"].append(
            (
                user_id,
                plan[0],
                anchor,
                to_micros(current.start),
                to_micros(current.end),
                account.plan_credit,
                account.ttp_count,
                account.edit_count,
                account.postpaid_used,
            )
        )

    def past_period(
        self, account: _Account, period: Period, quota: int, *, expired_purchase: bool
    ) -> None:
        """``quota`` entries in one ended period: start, charges (some refunded), expiry."""
        start, end = to_micros(period.start), to_micros(period.end)
        rolled = start + self.rng.randint(1, 3600) * SECOND  # the first write after the start
        self.entry(account.user_id, rolled, "period_start", "plan", account.plan[3], start)
        account.plan_credit = account.plan[3]
        account.ttp_count = account.edit_count = account.postpaid_used = 0
        left = quota - 1
        if expired_purchase and left >= 4:
            self.expired_purchase(account, start, end)
            left -= 2
        while left > 1:  # one entry stays for the period's expiry (or a last charge)
            at = self.rng.randint(rolled, end - 3600 * SECOND)
            written = self.charge(account, at, start, room=left - 1, refundable=True)
            if not written:
                break
            left -= written
        leftover = account.plan_credit
        if leftover and left >= 1:
            closed = end + self.rng.randint(1, 7200) * SECOND
            self.entry(account.user_id, closed, "expiry", "plan", -leftover, start)
            left -= 1
        while left >= 1:
            at = self.rng.randint(rolled, end - SECOND)
            written = self.charge(account, at, start, room=left, refundable=False)
            if not written:
                break
            left -= written

    def expired_purchase(self, account: _Account, start: int, end: int) -> None:
        purchase_id = self.next_purchase
        self.next_purchase += 1
        bought = start + DAY
        expires = end - DAY
        amount = 10 * CREDIT
        self.rows["credit_purchases"].append(
            (purchase_id, account.user_id, amount, 0, expires, bought)
        )
        self.entry(account.user_id, bought, "purchase", "purchase", amount, start, purchase_id)
        self.entry(
            account.user_id, expires + SECOND, "expiry", "purchase", -amount, start, purchase_id
        )

    def current_period(self, account: _Account, period: Period, charges: int, buys: bool) -> int:
        start = to_micros(period.start)
        rolled = min(self.now - 60 * SECOND, start + self.rng.randint(1, 3600) * SECOND)
        rolled = max(rolled, start)
        self.entry(account.user_id, rolled, "period_start", "plan", account.plan[3], start)
        account.plan_credit = account.plan[3]
        account.ttp_count = account.edit_count = account.postpaid_used = 0
        used = 1
        if buys:
            purchase_id = self.next_purchase
            self.next_purchase += 1
            amount = self.rng.choice((50, 100, 250)) * CREDIT
            expires = None if self.rng.random() < 0.5 else self.now + 90 * DAY
            self.rows["credit_purchases"].append(
                (purchase_id, account.user_id, amount, amount, expires, rolled)
            )
            self.entry(account.user_id, rolled, "purchase", "purchase", amount, start, purchase_id)
            used += 1
        for _ in range(charges):
            at = self.rng.randint(rolled, self.now - SECOND)
            used += self.charge(account, at, start, room=3, refundable=False)
        return used

    def charge(
        self, account: _Account, at: int, period_start: int, *, room: int, refundable: bool
    ) -> int:
        """One successful charge taking at most ``room`` entries; the entries written."""
        rng, plan = self.rng, account.plan
        kind = rng.choices(KINDS, (5, 3, 2))[0] if room >= 2 else "image"
        if kind in COUNTED:
            field, limit_index = COUNTED[kind]
            limit = plan[limit_index]
            if limit is not None and getattr(account, field) >= limit:
                kind = "image"
        cost = rng.choice((1, 1, 1, 2, 5)) * CREDIT
        from_plan = min(account.plan_credit, cost)
        owed = cost - from_plan
        if owed and plan[6] == "prepaid":
            cost, owed = from_plan, 0
        counted = kind in COUNTED
        needed = (1 if from_plan else 0) + (1 if owed else 0) + (1 if counted else 0)
        if needed > room and from_plan and owed:
            cost, owed = from_plan, 0  # take what plan credit covers: one entry fewer
            needed -= 1
        if cost == 0 or needed > room:
            return 0
        refund = refundable and room >= 2 * needed and rng.random() < 0.05
        charge_id = self.next_charge
        self.next_charge += 1
        user_id = account.user_id
        fingerprint = ChargeRequest(user_id, kind, cost).fingerprint()
        refunded_at = at + rng.randint(1, 600) * SECOND if refund else None
        response = json.dumps({"charge": {"id": charge_id, "kind": kind, "cost": cost / CREDIT}})
        self.rows["charges"].append(
            (
                charge_id,
                f"bench-seed-{charge_id}",
                fingerprint,
                user_id,
                kind,
                cost,
                201,
                response,
                period_start,
                at,
                refunded_at,
                from_plan,
                0,
                owed,
            )
        )
        parts = []
        if from_plan:
            parts.append(("plan", -from_plan))
            account.plan_credit -= from_plan
        if owed:
            parts.append(("postpaid", owed))
            account.postpaid_used += owed
        if counted:
            parts.append((kind, 1))
            field = COUNTED[kind][0]
            setattr(account, field, getattr(account, field) + 1)
        for pool, amount in parts:
            self.entry(user_id, at, "charge", pool, amount, period_start, charge_id=charge_id)
        if refunded_at is None:
            hour = self.hours.setdefault((user_id, rollup.hour_of(at), kind), [0, 0, 0, 0])
            day = self.days.setdefault((user_id, rollup.day_of(at, ZONE), kind), [0, 0, 0, 0])
            for index, number in enumerate((1, from_plan, 0, owed)):
                hour[index] += number
                day[index] += number
        else:
            for pool, amount in parts:
                self.entry(
                    user_id, refunded_at, "refund", pool, -amount, period_start, charge_id=charge_id
                )
            account.plan_credit += from_plan
            account.postpaid_used -= owed
            if counted:
                field = COUNTED[kind][0]
                setattr(account, field, getattr(account, field) - 1)
        return len(parts) * (2 if refund else 1)


# --- SQLite ------------------------------------------------------------------------------


def _migrations_digest() -> str:
    digest = hashlib.sha256()
    for migration in migrate.packaged("sqlite"):
        digest.update(f"{migration.name}:{migration.checksum}".encode())
    return digest.hexdigest()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


async def _migrate(url: str) -> None:
    db = Database.from_url(url)
    await db.open()
    try:
        await db.migrate()
    finally:
        await db.close()


async def _make_plans(url: str, now: int) -> None:
    """``PLANS``, made as an operator makes them; ids 1-4 on the empty store."""
    db = Database.from_url(url)
    await db.open()
    try:
        async with db.transaction() as conn:
            for plan_id, name, unit, credit, ttp, edit, mode, _ in PLANS:
                made = await accounts.create_plan(
                    conn,
                    name=name,
                    period_unit=unit,
                    max_credit=credit,
                    max_ttp=ttp,
                    max_edit=edit,
                    billing_mode=mode,
                    now=now - 800 * DAY,
                )
                if made.id != plan_id:
                    raise RuntimeError(f"plan {name} got id {made.id}, not {plan_id}")
    finally:
        await db.close()


async def reconcile(url: str) -> list[str]:
    db = Database.from_url(url)
    await db.open()
    try:
        async with db.read() as conn:
            return await books.reconcile(conn, ZONE)
    finally:
        await db.close()


@dataclass(frozen=True)
class Seed:
    path: Path
    keys: Path
    users: int
    entries: int
    counts: dict[str, int]
    seconds: float
    cached: bool


def _write_sqlite(path: Path, generator: _Generator) -> None:
    asyncio.run(_migrate(f"sqlite:///{path}"))
    asyncio.run(_make_plans(f"sqlite:///{path}", generator.now))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN ('ledger_entries', 'charges')"
        ).fetchall()
        conn.execute("BEGIN")
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for table, columns in COLUMNS.items():
            marks = ", ".join("?" * len(columns))
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                generator.rows[table],
            )
        conn.executemany(balances.INSERT_ENTRY, generator.ledger)
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def sqlite_seed(users: int, entries: int, *, cache: Path = CACHE, log: Any = print) -> Seed:
    """The cached seeded SQLite file for these parameters, made first when needed."""
    cache.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    tag = hashlib.sha256(
        f"{day}|{_migrations_digest()}|".encode() + Path(__file__).read_bytes()
    ).hexdigest()[:12]
    stem = f"seed-u{users}-e{entries}"
    path = cache / f"{stem}-{tag}.sqlite3"
    keys = cache / f"keys-u{users}.txt"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and keys.exists():
        info = json.loads(meta.read_text())
        return Seed(path, keys, users, entries, info["counts"], info["seconds"], cached=True)
    for old in cache.glob(f"{stem}-*"):
        old.unlink()
    started = time.monotonic()
    log(f"seeding SQLite: {users:,} users, {entries:,} ledger entries ...")
    generator = _Generator(users, entries, time.time_ns() // 1000)
    generator.run()
    building = path.with_name(path.name + ".building")
    building.unlink(missing_ok=True)
    _write_sqlite(building, generator)
    problems = asyncio.run(reconcile(f"sqlite:///{building}"))
    if problems:
        raise RuntimeError(f"the seed does not reconcile: {problems[:5]}")
    keys.write_text("\n".join(generator.keys) + "\n")
    made = {**generator.rows, "plans": PLANS, "ledger_entries": generator.ledger}
    counts = {table: len(made[table]) for table in TABLES}
    seconds = round(time.monotonic() - started, 1)
    building.rename(path)
    meta.write_text(json.dumps({"counts": counts, "seconds": seconds, "day": day}))
    log(f"  seeded in {seconds} s (reconcile clean): {counts}")
    return Seed(path, keys, users, entries, counts, seconds, cached=False)


# --- PostgreSQL --------------------------------------------------------------------------


async def postgres_seed(sqlite_path: Path, url: str) -> dict[str, Any]:
    """Migrate the (empty) database at ``url`` and copy every seeded row into it."""
    started = time.monotonic()
    await _migrate(url)
    source = sqlite3.connect(sqlite_path)
    conn = await asyncpg.connect(url, timeout=30)
    try:
        indexes = await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i"
            " WHERE i.schemaname = 'public' AND i.tablename IN ('ledger_entries', 'charges')"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
            " WHERE c.conindid = format('%I', i.indexname)::regclass)"
        )
        async with conn.transaction():
            # The rows are consistent by construction: skip the per-row FK triggers.
            await conn.execute("SET LOCAL session_replication_role = replica")
            for row in indexes:
                await conn.execute(f'DROP INDEX "{row["indexname"]}"')
            counts = {}
            for table in TABLES:
                columns = _columns(source, table)
                records = source.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
                await conn.copy_records_to_table(table, records=records, columns=columns)
                counts[table] = len(records)
                if "id" in columns:
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)"
                    )
            for row in indexes:
                await conn.execute(row["indexdef"])
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
        source.close()
    return {"counts": counts, "seconds": round(time.monotonic() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="also copy the seed into this (empty) database")
    args = parser.parse_args()
    seed = sqlite_seed(args.users, args.entries)
    print(f"{seed.path} ({'cached' if seed.cached else 'new'}), keys in {seed.keys}")
    if args.postgres:
        print(asyncio.run(postgres_seed(seed.path, args.postgres)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

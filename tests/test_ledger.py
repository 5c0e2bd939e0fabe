"""The ledger behind the usage numbers (SPEC sections 2 and 3), through the real services.

Every test runs on SQLite and on PostgreSQL (the ``db`` fixture). Stored state is read
back with plain SQL, so that a test checks what was written, not only what a read shows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flamel_usage.accounts.users import User
from flamel_usage.core.errors import Refusal
from flamel_usage.core.periods import from_micros, period_containing, to_micros
from flamel_usage.db.gateway import Database
from flamel_usage.http.metrics import charge_outcome
from flamel_usage.ledger import balances as ledger
from flamel_usage.metering import charges, purchases
from tests.conftest import FakeClock
from tests.factories import Factory

SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")
US = timedelta(microseconds=1)
MILLI = 1000


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def us(instant: datetime) -> int:
    return to_micros(instant)


@dataclass(frozen=True)
class Entry:
    id: int
    at: int
    entry_type: str
    pool: str
    amount: int
    period_start: int
    purchase_id: int | None


@dataclass(frozen=True)
class Account:
    period_start: int
    period_end: int
    plan_credit: int
    ttp_count: int
    edit_count: int
    postpaid_used: int


async def entries(db: Database, user_id: int | None = None) -> list[Entry]:
    sql = "SELECT id, at, entry_type, pool, amount, period_start, purchase_id FROM ledger_entries"
    args: tuple[object, ...] = ()
    if user_id is not None:
        sql += " WHERE user_id = ?"
        args = (user_id,)
    async with db.read() as conn:
        rows = await conn.fetchall(sql + " ORDER BY id", *args)
    return [
        Entry(
            id=row["id"],
            at=row["at"],
            entry_type=row["entry_type"],
            pool=row["pool"],
            amount=row["amount"],
            period_start=row["period_start"],
            purchase_id=row["purchase_id"],
        )
        for row in rows
    ]


async def entry_count(db: Database) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval("SELECT COUNT(*) FROM ledger_entries"))


async def account(db: Database, user_id: int) -> Account:
    async with db.read() as conn:
        row = await conn.fetchone(
            "SELECT period_start, period_end, plan_credit, ttp_count, edit_count, postpaid_used"
            " FROM accounts WHERE user_id = ?",
            user_id,
        )
    assert row is not None
    return Account(
        period_start=row["period_start"],
        period_end=row["period_end"],
        plan_credit=row["plan_credit"],
        ttp_count=row["ttp_count"],
        edit_count=row["edit_count"],
        postpaid_used=row["postpaid_used"],
    )


async def purchase_remaining(db: Database, purchase_id: int) -> int:
    async with db.read() as conn:
        return int(
            await conn.fetchval("SELECT remaining FROM credit_purchases WHERE id = ?", purchase_id)
        )


async def execute(db: Database, sql: str, *args: object) -> None:
    async with db.transaction() as conn:
        await conn.execute(sql, *args)


async def period_of(factory: Factory, user: User) -> str:
    return (await factory.usage(user)).period.iso_interval()


# --- period arithmetic on real accounts ----------------------------------------------


async def test_jan_31_anchor_clamps_to_leap_day_then_returns_to_the_31st(
    factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2028, 1, 31))
    user = await factory.user(anchor=utc(2028, 1, 31))
    assert user.anchor == utc(2028, 1, 31)

    expected = {
        utc(2028, 1, 31): "2028-01-31T00:00:00+00:00/2028-02-29T00:00:00+00:00",
        utc(2028, 2, 15): "2028-01-31T00:00:00+00:00/2028-02-29T00:00:00+00:00",
        utc(2028, 2, 29) - US: "2028-01-31T00:00:00+00:00/2028-02-29T00:00:00+00:00",
        utc(2028, 2, 29): "2028-02-29T00:00:00+00:00/2028-03-31T00:00:00+00:00",
        utc(2028, 3, 15): "2028-02-29T00:00:00+00:00/2028-03-31T00:00:00+00:00",
        utc(2028, 3, 31) - US: "2028-02-29T00:00:00+00:00/2028-03-31T00:00:00+00:00",
        utc(2028, 3, 31): "2028-03-31T00:00:00+00:00/2028-04-30T00:00:00+00:00",
        utc(2028, 4, 30): "2028-04-30T00:00:00+00:00/2028-05-31T00:00:00+00:00",
    }
    for at, interval in expected.items():
        clock.set(at)
        assert await period_of(factory, user) == interval, at


async def test_stored_period_after_a_write_matches_the_lazily_read_one(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2028, 1, 31))
    user = await factory.user(anchor=utc(2028, 1, 31))
    clock.set(utc(2028, 3, 1))
    lazy = await period_of(factory, user)
    await factory.purchase(user, 1)
    assert await period_of(factory, user) == lazy
    assert lazy == "2028-02-29T00:00:00+00:00/2028-03-31T00:00:00+00:00"
    stored = await account(db, user.id)
    assert (stored.period_start, stored.period_end) == (us(utc(2028, 2, 29)), us(utc(2028, 3, 31)))


async def test_user_created_long_after_its_anchor_starts_in_the_current_period(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2028, 3, 15, 12))
    user = await factory.user(anchor=utc(2028, 1, 31))
    assert await period_of(factory, user) == ("2028-02-29T00:00:00+00:00/2028-03-31T00:00:00+00:00")
    stored = await account(db, user.id)
    assert stored.period_start == us(utc(2028, 2, 29))
    assert stored.plan_credit == 100 * MILLI


async def test_yearly_plan_anchored_on_a_leap_day(factory: Factory, clock: FakeClock) -> None:
    plan = await factory.plan(period="year", credits=5000)
    clock.set(utc(2028, 2, 29, 8))
    user = await factory.user(plan, anchor=utc(2028, 2, 29, 8))
    expected = {
        utc(2028, 12, 31): "2028-02-29T08:00:00+00:00/2029-02-28T08:00:00+00:00",
        utc(2029, 2, 28, 8) - US: "2028-02-29T08:00:00+00:00/2029-02-28T08:00:00+00:00",
        utc(2029, 2, 28, 8): "2029-02-28T08:00:00+00:00/2030-02-28T08:00:00+00:00",
        utc(2031, 6, 1): "2031-02-28T08:00:00+00:00/2032-02-29T08:00:00+00:00",
        utc(2032, 2, 29, 8): "2032-02-29T08:00:00+00:00/2033-02-28T08:00:00+00:00",
    }
    for at, interval in expected.items():
        clock.set(at)
        usage = await factory.usage(user)
        assert usage.period.iso_interval() == interval, at
        assert usage.max_credit == usage.current_credit == 5000 * MILLI


async def test_seoul_billing_zone_reports_plus_nine_hours(db: Database, clock: FakeClock) -> None:
    factory = Factory(db, clock, SEOUL)
    # 2026-10-31T15:00Z is Nov 1, 00:00 in Seoul: the anchor day is the 1st, not the 31st.
    clock.set(utc(2026, 10, 31, 15))
    user = await factory.user(anchor=utc(2026, 10, 31, 15))
    clock.set(utc(2026, 11, 25, 10))
    november = "2026-11-01T00:00:00+09:00/2026-12-01T00:00:00+09:00"
    assert await period_of(factory, user) == november
    assert (await factory.usage(user)).to_dto()["period"] == november

    clock.set(utc(2026, 11, 30, 15) - US)
    assert await period_of(factory, user) == november
    clock.set(utc(2026, 11, 30, 15))
    december = "2026-12-01T00:00:00+09:00/2027-01-01T00:00:00+09:00"
    assert await period_of(factory, user) == december

    await factory.purchase(user, 1)
    assert await period_of(factory, user) == december
    stored = await account(db, user.id)
    assert (stored.period_start, stored.period_end) == (
        us(utc(2026, 11, 30, 15)),
        us(utc(2026, 12, 31, 15)),
    )


async def test_new_york_periods_follow_the_wall_clock_across_dst(
    db: Database, clock: FakeClock
) -> None:
    factory = Factory(db, clock, NEW_YORK)
    anchor = datetime(2026, 2, 10, tzinfo=NEW_YORK)  # 05:00Z
    clock.set(anchor)
    user = await factory.user(anchor=anchor)
    assert user.anchor == utc(2026, 2, 10, 5)

    # DST starts on 2026-03-08: the first period ends at local midnight, EDT (-04:00).
    february = "2026-02-10T00:00:00-05:00/2026-03-10T00:00:00-04:00"
    march = "2026-03-10T00:00:00-04:00/2026-04-10T00:00:00-04:00"
    clock.set(utc(2026, 2, 20))
    assert await period_of(factory, user) == february
    clock.set(utc(2026, 3, 10, 4) - US)
    assert await period_of(factory, user) == february
    clock.set(utc(2026, 3, 10, 4))
    assert await period_of(factory, user) == march
    clock.set(utc(2026, 3, 15))
    assert await period_of(factory, user) == march

    await factory.purchase(user, 1)
    assert await period_of(factory, user) == march
    stored = await account(db, user.id)
    assert (stored.period_start, stored.period_end) == (
        us(utc(2026, 3, 10, 4)),
        us(utc(2026, 4, 10, 4)),
    )

    # DST ends on 2026-11-01: back to -05:00.
    clock.set(utc(2026, 10, 20))
    assert await period_of(factory, user) == ("2026-10-10T00:00:00-04:00/2026-11-10T00:00:00-05:00")
    clock.set(utc(2026, 11, 10, 5))
    assert await period_of(factory, user) == ("2026-11-10T00:00:00-05:00/2026-12-10T00:00:00-05:00")


# --- lazy roll-over ------------------------------------------------------------------


async def test_read_at_the_boundary_shows_a_fresh_period_without_writing(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=100, max_ttp=10, max_edit=5)
    clock.set(utc(2027, 1, 15, 9))
    user = await factory.user(plan, anchor=utc(2027, 1, 15, 9))
    await factory.purchase(user, 3)
    before_entries = await entries(db)
    before_account = await account(db, user.id)

    clock.set(utc(2027, 2, 15, 9))
    usage = await factory.usage(user)
    assert usage.period.iso_interval() == "2027-02-15T09:00:00+00:00/2027-03-15T09:00:00+00:00"
    assert usage.current_credit == usage.max_credit == 100 * MILLI
    assert usage.additional_credit == 3 * MILLI
    assert (usage.ttp_count, usage.max_ttp, usage.edit_count, usage.max_edit) == (0, 10, 0, 5)
    assert usage.postpaid_used is None

    assert await entries(db) == before_entries
    assert await account(db, user.id) == before_account
    assert before_account.period_end == us(utc(2027, 2, 15, 9))
    assert await factory.reconcile() == []


async def test_write_after_the_boundary_records_the_roll_over(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2027, 1, 15, 9))
    user = await factory.user(anchor=utc(2027, 1, 15, 9))
    old_start, new_start, new_end = (
        us(utc(2027, 1, 15, 9)),
        us(utc(2027, 2, 15, 9)),
        us(utc(2027, 3, 15, 9)),
    )
    [created] = await entries(db, user.id)
    assert (created.entry_type, created.pool, created.amount, created.period_start) == (
        "period_start",
        "plan",
        100 * MILLI,
        old_start,
    )

    clock.set(utc(2027, 2, 20))
    now = clock()
    purchase = await factory.purchase(user, 7.5)
    new = (await entries(db, user.id))[1:]
    assert [(e.entry_type, e.pool, e.amount, e.period_start, e.purchase_id, e.at) for e in new] == [
        ("expiry", "plan", -100 * MILLI, old_start, None, now),
        ("period_start", "plan", 100 * MILLI, new_start, None, now),
        ("purchase", "purchase", 7500, new_start, purchase.id, now),
    ]
    stored = await account(db, user.id)
    assert stored == Account(new_start, new_end, 100 * MILLI, 0, 0, 0)
    usage = await factory.usage(user)
    assert (usage.current_credit, usage.additional_credit) == (100 * MILLI, 7500)
    assert await factory.reconcile() == []

    # A second write in the same period rolls nothing over again.
    await factory.purchase(user, 1)
    newest = (await entries(db, user.id))[4:]
    assert [(e.entry_type, e.period_start) for e in newest] == [("purchase", new_start)]


async def test_several_skipped_periods_are_read_and_rolled_over_at_once(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2027, 1, 31, 12))
    user = await factory.user(anchor=utc(2027, 1, 31, 12))
    count = await entry_count(db)

    clock.set(utc(2027, 6, 30, 18))
    usage = await factory.usage(user)
    assert usage.period.iso_interval() == "2027-06-30T12:00:00+00:00/2027-07-31T12:00:00+00:00"
    assert usage.current_credit == 100 * MILLI
    assert await entry_count(db) == count

    await factory.purchase(user, 2)
    rows = (await entries(db, user.id))[1:]
    assert [(e.entry_type, e.amount, e.period_start) for e in rows] == [
        ("expiry", -100 * MILLI, us(utc(2027, 1, 31, 12))),
        ("period_start", 100 * MILLI, us(utc(2027, 6, 30, 12))),
        ("purchase", 2 * MILLI, us(utc(2027, 6, 30, 12))),
    ]
    stored = await account(db, user.id)
    assert (stored.period_start, stored.period_end) == (
        us(utc(2027, 6, 30, 12)),
        us(utc(2027, 7, 31, 12)),
    )
    assert await period_of(factory, user) == usage.period.iso_interval()
    assert await factory.reconcile() == []


async def test_zero_credit_plan_rolls_over_without_an_expiry_entry(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=0)
    clock.set(utc(2027, 1, 1))
    user = await factory.user(plan, anchor=utc(2027, 1, 1))
    clock.set(utc(2027, 2, 1))
    await factory.purchase(user, 1)
    rows = await entries(db, user.id)
    assert [(e.entry_type, e.pool, e.amount) for e in rows] == [
        ("period_start", "plan", 0),
        ("period_start", "plan", 0),
        ("purchase", "purchase", MILLI),
    ]
    assert await factory.reconcile() == []


async def test_write_before_a_future_anchor_does_not_roll_over(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2026, 11, 25, 10))
    user = await factory.user(anchor=utc(2027, 1, 1))
    assert await period_of(factory, user) == ("2027-01-01T00:00:00+00:00/2027-02-01T00:00:00+00:00")
    await factory.purchase(user, 5)
    rows = await entries(db, user.id)
    assert [(e.entry_type, e.pool) for e in rows] == [
        ("period_start", "plan"),
        ("purchase", "purchase"),
    ]


async def test_charges_before_a_future_anchor_keep_their_counts_and_credit(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=100, max_ttp=1)
    clock.set(utc(2026, 11, 25, 10))
    user = await factory.user(plan, anchor=utc(2027, 1, 1))
    costs = {"ttp": 60 * MILLI}
    statuses = []
    for key in ("first", "second"):
        async with db.transaction() as conn:
            outcome = await charges.charge(
                conn,
                charges.ChargeRequest(user.id, "ttp", None),
                idempotency_key=key,
                costs=costs,
                now=clock(),
                zone=UTC_ZONE,
            )
        statuses.append(charge_outcome(outcome))
    assert statuses == ["charged", "ttp_limit_exceeded"]
    usage = await factory.usage(user)
    assert (usage.ttp_count, usage.current_credit) == (1, 40 * MILLI)


# --- purchased credit ----------------------------------------------------------------


async def test_purchases_add_up(db: Database, factory: Factory, clock: FakeClock) -> None:
    user = await factory.user()
    for amount in (10, 2.5, 0.125, 1000):
        await factory.purchase(user, amount)
    usage = await factory.usage(user)
    assert usage.additional_credit == 1_012_625
    assert usage.to_dto()["additionalCredit"] == 1012.625
    assert usage.current_credit == 100 * MILLI
    assert await factory.reconcile() == []


async def test_purchase_stops_counting_at_exactly_its_expiry(
    factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user()
    expires = clock() + 3600 * 1_000_000
    await factory.purchase(user, 5, expires_at=expires)
    await factory.purchase(user, 1)
    clock.now = expires - 1
    assert (await factory.usage(user)).additional_credit == 6 * MILLI
    clock.now = expires
    assert (await factory.usage(user)).additional_credit == 1 * MILLI
    clock.now = expires + 1
    assert (await factory.usage(user)).additional_credit == 1 * MILLI


async def test_purchase_survives_the_end_of_its_period(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2027, 1, 10))
    user = await factory.user(anchor=utc(2027, 1, 10))
    purchase = await factory.purchase(user, 4, expires_at=us(utc(2027, 5, 1)))
    await factory.purchase(user, 6)

    clock.set(utc(2027, 3, 20))
    assert (await factory.usage(user)).additional_credit == 10 * MILLI
    await factory.purchase(user, 1)  # rolls over; the purchases stay
    assert (await factory.usage(user)).additional_credit == 11 * MILLI
    assert await purchase_remaining(db, purchase.id) == 4 * MILLI
    assert await factory.reconcile() == []


async def test_write_past_an_expiry_closes_the_purchase(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2027, 1, 10))
    user = await factory.user(anchor=utc(2027, 1, 10))
    expires = us(utc(2027, 1, 20))
    expiring = await factory.purchase(user, 4, expires_at=expires)
    lasting = await factory.purchase(user, 3)

    clock.now = expires
    count = await entry_count(db)
    assert (await factory.usage(user)).additional_credit == 3 * MILLI
    assert await purchase_remaining(db, expiring.id) == 4 * MILLI  # a read writes nothing
    assert await entry_count(db) == count

    await factory.purchase(user, 1)
    assert await purchase_remaining(db, expiring.id) == 0
    assert await purchase_remaining(db, lasting.id) == 3 * MILLI
    closing = [e for e in await entries(db, user.id) if e.purchase_id == expiring.id]
    assert [(e.entry_type, e.pool, e.amount, e.at, e.period_start) for e in closing] == [
        ("purchase", "purchase", 4 * MILLI, us(utc(2027, 1, 10)), us(utc(2027, 1, 10))),
        ("expiry", "purchase", -4 * MILLI, expires, us(utc(2027, 1, 10))),
    ]
    assert (await factory.usage(user)).additional_credit == 4 * MILLI
    assert await factory.reconcile() == []

    # Closed once: later writes add no second expiry entry.
    clock.advance(60)
    await factory.purchase(user, 1)
    again = [e for e in await entries(db, user.id) if e.purchase_id == expiring.id]
    assert len(again) == 2


async def test_expired_purchase_is_closed_by_a_roll_over_write(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    clock.set(utc(2027, 1, 10))
    user = await factory.user(anchor=utc(2027, 1, 10))
    expiring = await factory.purchase(user, 4, expires_at=us(utc(2027, 1, 20)))
    clock.set(utc(2027, 4, 2))
    await factory.purchase(user, 1)
    rows = (await entries(db, user.id))[2:]
    new_start = us(utc(2027, 3, 10))
    assert [(e.entry_type, e.pool, e.amount, e.period_start, e.purchase_id) for e in rows] == [
        ("expiry", "plan", -100 * MILLI, us(utc(2027, 1, 10)), None),
        ("period_start", "plan", 100 * MILLI, new_start, None),
        ("expiry", "purchase", -4 * MILLI, new_start, expiring.id),
        ("purchase", "purchase", 1 * MILLI, new_start, expiring.id + 1),
    ]
    assert await purchase_remaining(db, expiring.id) == 0
    assert await factory.reconcile() == []


async def test_purchase_for_an_unknown_user_is_not_found(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    async with db.transaction() as conn:
        with pytest.raises(Refusal) as caught:
            await purchases.buy_credits(
                conn,
                purchases.PurchaseRequest(999, 1000, expires_at=None),
                idempotency_key=None,
                now=clock(),
                zone=UTC_ZONE,
            )
    assert caught.value.reason == "user_not_found"
    assert await entry_count(db) == 0
    async with db.read() as conn:
        with pytest.raises(Refusal, match="no such user"):
            await ledger.read_usage(conn, 999, clock(), UTC_ZONE)


# --- postpaid usage ------------------------------------------------------------------


async def test_postpaid_usage_count_is_none_for_prepaid_and_zero_for_postpaid(
    factory: Factory, clock: FakeClock
) -> None:
    prepaid = await factory.user(await factory.plan())
    postpaid = await factory.user(await factory.plan(postpaid=True))
    assert (await factory.usage(prepaid)).postpaid_used is None
    assert (await factory.usage(prepaid)).to_dto()["postpaidUsageCount"] is None
    assert (await factory.usage(postpaid)).postpaid_used == 0
    assert (await factory.usage(postpaid)).to_dto()["postpaidUsageCount"] == 0

    clock.advance(40 * 86_400)  # past the first period: the lazy read
    assert (await factory.usage(prepaid)).to_dto()["postpaidUsageCount"] is None
    assert (await factory.usage(postpaid)).to_dto()["postpaidUsageCount"] == 0
    await factory.purchase(prepaid, 1)  # and the written roll-over
    await factory.purchase(postpaid, 1)
    assert (await factory.usage(prepaid)).to_dto()["postpaidUsageCount"] is None
    assert (await factory.usage(postpaid)).to_dto()["postpaidUsageCount"] == 0
    assert await factory.reconcile() == []


# --- reconcile -----------------------------------------------------------------------


async def _busy_books(factory: Factory, clock: FakeClock) -> tuple[User, User, int]:
    clock.set(utc(2027, 1, 31))
    monthly = await factory.user(anchor=utc(2027, 1, 31))
    yearly = await factory.user(await factory.plan(period="year", postpaid=True))
    await factory.purchase(monthly, 5, expires_at=us(utc(2027, 2, 10)))
    kept = await factory.purchase(monthly, 2)
    clock.set(utc(2027, 2, 12))
    await factory.purchase(monthly, 1)  # closes the expired purchase
    clock.set(utc(2027, 5, 1))
    await factory.purchase(monthly, 3)  # rolls over several periods
    await factory.purchase(yearly, 9, expires_at=us(utc(2027, 5, 2)))
    clock.set(utc(2028, 2, 1))
    await factory.purchase(yearly, 1)  # rolls the yearly plan over, closes its purchase
    return monthly, yearly, kept.id


async def test_reconcile_is_clean_after_a_mix_of_operations(
    factory: Factory, clock: FakeClock
) -> None:
    await _busy_books(factory, clock)
    assert await factory.reconcile() == []


async def test_reconcile_finds_a_tampered_balance(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    monthly, yearly, _ = await _busy_books(factory, clock)
    await execute(
        db, "UPDATE accounts SET plan_credit = plan_credit + 1 WHERE user_id = ?", yearly.id
    )
    problems = await factory.reconcile()
    assert len(problems) == 1
    assert problems[0].startswith(f"user {yearly.id}: plan_credit is ")
    assert f"is {100 * MILLI + 1}, ledger says {100 * MILLI}" in problems[0]
    assert f"user {monthly.id}" not in problems[0]

    await execute(
        db, "UPDATE accounts SET plan_credit = plan_credit - 1 WHERE user_id = ?", yearly.id
    )
    assert await factory.reconcile() == []


async def test_reconcile_finds_a_tampered_purchase(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    monthly, _, kept = await _busy_books(factory, clock)
    await execute(db, "UPDATE credit_purchases SET remaining = remaining - 1 WHERE id = ?", kept)
    problems = await factory.reconcile()
    assert problems == [
        f"user {monthly.id}: purchase {kept} has {2 * MILLI - 1} left, ledger says {2 * MILLI}"
    ]
    await execute(db, "UPDATE credit_purchases SET remaining = remaining + 1 WHERE id = ?", kept)
    assert await factory.reconcile() == []


async def test_reconcile_finds_a_tampered_count_and_a_lost_entry(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user()
    await execute(db, "UPDATE accounts SET ttp_count = 2 WHERE user_id = ?", user.id)
    assert await factory.reconcile() == [f"user {user.id}: ttp_count is 2, ledger says 0"]
    await execute(db, "UPDATE accounts SET ttp_count = 0 WHERE user_id = ?", user.id)
    await execute(db, "DELETE FROM ledger_entries WHERE user_id = ?", user.id)
    assert await factory.reconcile() == [
        f"user {user.id}: plan_credit is {100 * MILLI}, ledger says 0"
    ]


# --- append-only ---------------------------------------------------------------------


async def test_ledger_only_grows_and_never_changes_past_entries(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    seen: list[Entry] = []

    async def check(added: int) -> None:
        nonlocal seen
        now = await entries(db)
        assert now[: len(seen)] == seen
        assert len(now) - len(seen) == added
        seen = now

    clock.set(utc(2027, 1, 1))
    user = await factory.user(anchor=utc(2027, 1, 1))
    await check(1)
    await factory.purchase(user, 2, expires_at=us(utc(2027, 1, 5)))
    await check(1)
    await factory.usage(user)
    await factory.reconcile()
    await check(0)
    clock.set(utc(2027, 1, 6))
    await factory.usage(user)
    await check(0)
    await factory.purchase(user, 1)  # closes the expired purchase
    await check(2)
    clock.set(utc(2027, 3, 1))
    await factory.usage(user)
    await check(0)
    await factory.purchase(user, 1)  # roll-over
    await check(3)
    await factory.purchase(user, 1)
    await check(1)


async def test_random_operations_match_a_simple_model(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    """A deterministic random walk of reads, purchases and time, checked against a model."""
    rng = random.Random(20280131)
    anchor = utc(2028, 1, 31, 6)
    clock.set(anchor)
    user = await factory.user(anchor=anchor)
    open_purchases: list[tuple[int, int | None]] = []  # (amount, expires_at), not yet closed
    stored_start = us(anchor)
    total_entries = await entry_count(db)

    for _ in range(40):
        clock.advance(rng.choice([1, 3600, 86_400, 9 * 86_400, 31 * 86_400, 70 * 86_400]))
        now = clock()
        period = period_containing(anchor, "month", from_micros(now), UTC_ZONE)
        if rng.random() < 0.5:
            amount = rng.randint(1, 50_000)
            expires = rng.choice([None, now + rng.randint(1, 60 * 86_400 * 1_000_000)])
            await factory.purchase(user, amount / MILLI, expires_at=expires)
            added = 1
            if us(period.start) != stored_start:
                added += 2  # plan credit expiry + period start
                stored_start = us(period.start)
            closed = [p for p in open_purchases if p[1] is not None and p[1] <= now]
            added += len(closed)
            open_purchases = [p for p in open_purchases if p not in closed]
            open_purchases.append((amount, expires))
            assert await entry_count(db) == total_entries + added
            total_entries += added
        usage = await factory.usage(user)
        assert usage.period.iso_interval() == period.iso_interval()
        assert usage.additional_credit == sum(
            amount for amount, exp in open_purchases if exp is None or exp > now
        )
        assert usage.current_credit == usage.max_credit == 100 * MILLI
        assert await entry_count(db) == total_entries
    assert await factory.reconcile() == []

"""The usage history's hourly rollup (``ledger.rollup``): kept by charges, refunds and
holds (made, settled, released, expired), equal to its recomputation from the ledger,
checked by reconcile, backfilled by its migration. That the history read from it agrees
with the usage read is in ``test_usage_history_properties.py`` (and, holds in the mix,
``test_holds_properties.py``); buckets, zones and edges in ``test_usage_history.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Database
from flamel_usage.ledger import rollup
from flamel_usage.ledger.history import read_history
from flamel_usage.metering import holds
from flamel_usage.metering.outcomes import Charged, Held, Refused
from tests.conftest import FakeClock
from tests.factories import Factory

ROLLUP_MIGRATION = 11
_ROWS = (
    "SELECT user_id, hour, kind, operations, from_plan, from_purchased, postpaid"
    " FROM usage_hours ORDER BY user_id, hour, kind"
)


async def _rollup(db: Database) -> list[tuple[Any, ...]]:
    async with db.read() as conn:
        return [tuple(row) for row in await conn.fetchall(_ROWS)]


async def _execute(db: Database, sql: str, *args: object) -> None:
    async with db.transaction() as conn:
        await conn.execute(sql, *args)


async def test_charges_add_to_their_hour_and_refunds_take_back(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    """Per user, UTC hour and kind: made charges add their split, refused ones nothing,
    a refund takes the whole charge back from the hour it was made in, also once the
    period has ended; an hour whose charges were all refunded stays, at zero."""
    start = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    hour = to_micros(start)
    user = await factory.user(await factory.plan(credits=2, max_ttp=None))
    other = await factory.user(await factory.plan(credits=10, max_ttp=None, postpaid=True))
    await factory.purchase(user, 1.5)
    clock.set(start + timedelta(minutes=5))
    assert isinstance(await factory.charge(user, "ttp", "a", 1.5), Charged)
    assert isinstance(await factory.charge(user, "ttp", "b", 1), Charged)  # 0.5 + 0.5 bought
    assert isinstance(await factory.charge(user, "image", "c", 5), Refused)
    assert isinstance(await factory.charge(other, "edit", "d", 12), Charged)  # 2 postpaid
    clock.set(start + timedelta(minutes=59, seconds=59, microseconds=999_999))
    assert isinstance(await factory.charge(user, "image", "e", 0.5), Charged)
    clock.set(start + timedelta(hours=1))
    assert isinstance(await factory.charge(user, "image", "f", 0.25), Charged)
    assert await _rollup(db) == [
        (user.id, hour, "image", 1, 0, 500, 0),
        (user.id, hour, "ttp", 2, 2000, 500, 0),
        (user.id, hour + rollup.HOUR, "image", 1, 0, 250, 0),
        (other.id, hour, "edit", 1, 10_000, 0, 2000),
    ]

    clock.set(start + timedelta(hours=3))
    await factory.refund("b")
    await factory.refund("f")
    clock.set(start + timedelta(days=40))  # both accounts are in a later period now
    await factory.refund("d")
    assert await _rollup(db) == [
        (user.id, hour, "image", 1, 0, 500, 0),
        (user.id, hour, "ttp", 1, 1500, 0, 0),
        (user.id, hour + rollup.HOUR, "image", 0, 0, 0, 0),
        (other.id, hour, "edit", 0, 0, 0, 0),
    ]
    assert await factory.reconcile() == []


async def test_holds_count_in_their_hour_as_the_history_counts_them(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    """A hold adds what it holds and its operation to its hour; a settle takes off what
    went back, not the operation; a release, or an expiry (by the sweep, or lazily at
    the account's lock), takes off the whole hold. Past its expiry and not yet released,
    it stays in the rollup, and the history leaves it out already."""
    start = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    hour = to_micros(start)
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    await factory.purchase(user, 2)
    clock.set(start + timedelta(minutes=5))
    made = []
    for kind, key, cost, ttl in (
        ("ttp", "released", 3, 86_400),
        ("image", "settled", 2, 86_400),
        ("edit", "swept", 1, 60),
        ("image", "lazily", 5.5, 120),  # the 4 plan credit left, 1.5 purchased
    ):
        outcome = await factory.hold(user, kind, key, cost, ttl_seconds=ttl)
        assert isinstance(outcome, Held)
        made.append(outcome.hold.id)
    released, settled, _, _ = made
    assert await _rollup(db) == [
        (user.id, hour, "edit", 1, 1000, 0, 0),
        (user.id, hour, "image", 2, 6000, 1500, 0),
        (user.id, hour, "ttp", 1, 3000, 0, 0),
    ]

    clock.set(start + timedelta(hours=1, minutes=30))  # two expired, not yet released
    async with db.read() as conn:
        history = await read_history(
            conn,
            user.id,
            start=hour,
            end=hour + rollup.HOUR,
            granularity="hour",
            kinds=["ttp", "edit", "image"],
            now=clock(),
            zone=factory.zone,
        )
    (bucket,) = history.buckets
    assert (bucket.plan, bucket.purchased, bucket.postpaid) == (5000, 0, 0)
    assert bucket.operations == {"ttp": 1, "edit": 0, "image": 1}

    await factory.settle(settled, 0.5)  # gives back 1.5 of plan credit
    await factory.release(released)
    async with db.transaction() as conn:  # the sweep
        assert await holds.accounts_with_expired_holds(conn, now=clock(), limit=10) == []
    # The settle and the release locked the account: the expired holds went with them.
    assert await _rollup(db) == [
        (user.id, hour, "edit", 0, 0, 0, 0),
        (user.id, hour, "image", 1, 500, 0, 0),
        (user.id, hour, "ttp", 0, 0, 0, 0),
    ]
    assert await factory.reconcile() == []


async def test_the_sweep_takes_an_expired_hold_off_its_hour(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    start = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    clock.set(start)
    assert isinstance(await factory.hold(user, "edit", "h", 2, ttl_seconds=60), Held)
    assert await _rollup(db) == [(user.id, to_micros(start), "edit", 1, 2000, 0, 0)]
    clock.set(start + timedelta(minutes=2))
    async with db.transaction() as conn:
        due = await holds.accounts_with_expired_holds(conn, now=clock(), limit=10)
        assert due == [user.id]
        await holds.expire(conn, user.id, now=clock(), zone=factory.zone)
    assert await _rollup(db) == [(user.id, to_micros(start), "edit", 0, 0, 0, 0)]
    assert await factory.reconcile() == []


async def test_reconcile_finds_a_rollup_that_disagrees_with_the_ledger(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    assert isinstance(await factory.charge(user, "ttp", "a", 2), Charged)
    assert isinstance(await factory.charge(user, "edit", "b", 1), Charged)
    hour = rollup.hour_of(clock())
    assert await factory.reconcile() == []

    await _execute(db, "UPDATE usage_hours SET from_plan = 2001 WHERE kind = 'ttp'")
    await _execute(db, "DELETE FROM usage_hours WHERE kind = 'edit'")
    await _execute(
        db,
        "INSERT INTO usage_hours VALUES (?, ?, 'image', 1, 0, 0, 0)",
        user.id,
        hour + rollup.HOUR,
    )
    where = f"user {user.id}: usage_hours at"
    assert await factory.reconcile() == [
        f"{where} {hour} for edit holds operations/plan/purchased/postpaid (0, 0, 0, 0),"
        " the ledger says (1, 1000, 0, 0)",
        f"{where} {hour} for ttp holds operations/plan/purchased/postpaid (1, 2001, 0, 0),"
        " the ledger says (1, 2000, 0, 0)",
        f"{where} {hour + rollup.HOUR} for image holds operations/plan/purchased/postpaid"
        " (1, 0, 0, 0), the ledger says (0, 0, 0, 0)",
    ]

    # A row at zero is no row: an hour whose charges were all refunded.
    await _execute(db, "UPDATE usage_hours SET from_plan = 2000 WHERE kind = 'ttp'")
    await _execute(
        db, "INSERT INTO usage_hours VALUES (?, ?, 'edit', 1, 1000, 0, 0)", user.id, hour
    )
    await _execute(db, "UPDATE usage_hours SET operations = 0 WHERE kind = 'image'")
    assert await factory.reconcile() == []


async def test_the_migration_backfills_charges_made_before_it(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    """A store charged before migration 0011: the rollup of its standing charges."""
    prepaid = await factory.user(await factory.plan(credits=1, max_ttp=None))
    await factory.purchase(prepaid, 3)
    postpaid = await factory.user(await factory.plan(credits=1, max_ttp=None, postpaid=True))
    for user, kind, key, cost in (
        (prepaid, "ttp", "both", 2),
        (prepaid, "image", "refused", 9),
        (postpaid, "image", "owed", 3),
        (postpaid, "image", "refunded", 1),
    ):
        await factory.charge(user, kind, key, cost)
        clock.advance(3600)
    await factory.refund("refunded")
    kept = await _rollup(db)
    assert len(kept) == 3

    async with db.transaction() as conn:
        await conn.execute("DROP TABLE usage_hours")
        await conn.execute("DELETE FROM schema_migrations WHERE version = ?", ROLLUP_MIGRATION)
    assert await db.migrate() == [ROLLUP_MIGRATION]

    # The refunded charge's hour is no row now rather than a row at zero: the same sums.
    assert await _rollup(db) == [row for row in kept if row[3]]
    assert await factory.reconcile() == []


async def test_a_kind_whose_charges_were_all_refunded_is_not_in_the_history(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    """A kind no longer configured shows in the history while a charge of it stands; its
    hour's row at zero after the refund does not bring it back."""
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    costs = {"ttp": 1000, "edit": 1000, "image": 1000, "upscale": 2000}
    assert isinstance(await factory.charge(user, "upscale", "u", costs=costs), Charged)
    await factory.refund("u")
    async with db.read() as conn:
        history = await read_history(
            conn,
            user.id,
            start=None,
            end=None,
            granularity="day",
            kinds=["ttp", "edit", "image"],
            now=clock(),
            zone=factory.zone,
        )
    assert {kind for bucket in history.buckets for kind in bucket.operations} == {
        "ttp",
        "edit",
        "image",
    }
    assert sum(bucket.plan for bucket in history.buckets) == 0

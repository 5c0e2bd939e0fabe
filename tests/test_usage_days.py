"""The usage history's day rollup (``ledger.rollup``, table ``usage_days``): each charge
in the row of its local day of the billing zone (days of 23 and 25 hours, a midnight the
clock skips, a half-hour zone), kept by refunds and holds as the hours are, read by the
history by day, rebuilt when the billing zone changes (``key_days``, at a server's
start) and for a store made before it, checked by reconcile. The hour rollup is in
``test_usage_rollup.py``; that the history agrees with the usage read, days included,
in ``test_usage_history_properties.py``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flamel_usage.core.config import Settings
from flamel_usage.core.periods import from_micros, local_midnight
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from flamel_usage.ledger import rollup
from flamel_usage.ledger.history import History, read_history
from flamel_usage.ledger.reconcile import reconcile
from flamel_usage.metering.outcomes import Charged, Held
from tests.conftest import FakeClock
from tests.factories import Factory

DAYS_MIGRATION = 14
KINDS = ["ttp", "edit", "image"]
_ROWS = (
    "SELECT user_id, day, kind, operations, from_plan, from_purchased, postpaid"
    " FROM usage_days ORDER BY user_id, day, kind"
)
_KEYED = "SELECT zone FROM usage_days_zone"


async def _rows(db: Database) -> list[tuple[Any, ...]]:
    async with db.read() as conn:
        return [tuple(row) for row in await conn.fetchall(_ROWS)]


async def _keyed(db: Database) -> list[str]:
    async with db.read() as conn:
        return [row[0] for row in await conn.fetchall(_KEYED)]


def _midnight(day: str, zone: ZoneInfo, days_after: int = 0) -> int:
    return local_midnight(date.fromisoformat(day) + timedelta(days=days_after), zone)


async def _history(
    db: Database, user_id: int, start: int, end: int, zone: ZoneInfo, now: int, by: str = "day"
) -> History:
    async with db.read() as conn:
        return await read_history(
            conn,
            user_id,
            start=start,
            end=end,
            granularity="day" if by == "day" else "hour",
            kinds=KINDS,
            now=now,
            zone=zone,
        )


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("America/New_York", "2026-11-01", 25),  # an hour back at 2:00
        ("America/New_York", "2026-03-08", 23),  # an hour on at 2:00
        ("America/Santiago", "2026-09-06", 23),  # the clock skips midnight: 1:00 starts it
        ("Asia/Kolkata", "2026-11-25", 24),  # +05:30: midnight cuts a UTC hour
    ],
)
async def test_a_charge_adds_to_its_local_day_and_a_refund_takes_it_back(
    db: Database, clock: FakeClock, zone: str, day: str, hours: int
) -> None:
    billing = ZoneInfo(zone)
    factory = Factory(db, clock, billing)
    start, end = _midnight(day, billing), _midnight(day, billing, 1)
    assert end - start == hours * rollup.HOUR
    clock.set(from_micros(start - 3 * 24 * rollup.HOUR))
    user = await factory.user(await factory.plan(credits=100, max_ttp=None))
    for number, at in enumerate((start - 1, start, end - 1, end)):
        clock.set(from_micros(at))
        assert isinstance(await factory.charge(user, "ttp", f"d{number}"), Charged)
    clock.set(from_micros(start + 90 * 60_000_000))
    assert isinstance(await factory.charge(user, "image", "refunded", 2), Charged)
    await factory.refund("refunded")

    before = rollup.day_of(start - 1, billing)
    assert before == _midnight(day, billing, -1)
    assert await _rows(db) == [
        (user.id, before, "ttp", 1, 1000, 0, 0),
        (user.id, start, "image", 0, 0, 0, 0),
        (user.id, start, "ttp", 2, 2000, 0, 0),
        (user.id, end, "ttp", 1, 1000, 0, 0),
    ]
    assert await factory.reconcile() == []
    # Read from the rollup (the whole day) and from the hours and charges (the ends).
    history = await _history(db, user.id, start - 5 * 60_000_000, end + 1, billing, clock())
    assert [bucket.operations["ttp"] for bucket in history.buckets] == [1, 2, 1]
    assert [bucket.plan for bucket in history.buckets] == [1000, 2000, 1000]
    assert [bucket.operations["image"] for bucket in history.buckets] == [0, 0, 0]


async def test_holds_keep_their_day_and_an_expired_one_is_off_the_history_at_once(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    """A hold adds to its day when made; a settle takes off what went back, a release
    the whole hold. Past its expiry and not yet released, it stays in the rollup, and
    the history by day leaves it out already."""
    zone = factory.zone
    start = _midnight("2026-11-25", zone)
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    clock.set(from_micros(start + 10 * rollup.HOUR))
    made = [
        await factory.hold(user, "ttp", "settled", 3, ttl_seconds=86_400),
        await factory.hold(user, "edit", "released", 1, ttl_seconds=86_400),
        await factory.hold(user, "image", "expires", 2, ttl_seconds=60),
    ]
    held = [outcome.hold.id for outcome in made if isinstance(outcome, Held)]
    assert len(held) == 3
    settled, released, _ = held
    assert await _rows(db) == [
        (user.id, start, "edit", 1, 1000, 0, 0),
        (user.id, start, "image", 1, 2000, 0, 0),
        (user.id, start, "ttp", 1, 3000, 0, 0),
    ]
    clock.advance(3600)
    whole_days = (start - 24 * rollup.HOUR, start + 48 * rollup.HOUR)
    history = await _history(db, user.id, *whole_days, zone, clock())
    assert history.buckets[1].operations == {"ttp": 1, "edit": 1, "image": 0}
    assert history.buckets[1].plan == 4000

    await factory.settle(settled, 1)
    await factory.release(released)  # locks the account: the expired hold goes too
    assert await _rows(db) == [
        (user.id, start, "edit", 0, 0, 0, 0),
        (user.id, start, "image", 0, 0, 0, 0),
        (user.id, start, "ttp", 1, 1000, 0, 0),
    ]
    assert await factory.reconcile() == []


async def test_reconcile_finds_a_day_that_disagrees_with_the_ledger(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    assert isinstance(await factory.charge(user, "ttp", "a", 2), Charged)
    day = rollup.day_of(clock(), factory.zone)
    assert await factory.reconcile() == []

    async with db.transaction() as conn:
        await conn.execute("UPDATE usage_days SET operations = 2 WHERE kind = 'ttp'")
        await conn.execute(
            "INSERT INTO usage_days VALUES (?, ?, 'edit', 0, 0, 0, 1000)", user.id, day
        )
    where = f"user {user.id}: usage_days at {day}"
    assert await factory.reconcile() == [
        f"{where} for edit holds operations/plan/purchased/postpaid (0, 0, 0, 1000),"
        " the ledger says (0, 0, 0, 0)",
        f"{where} for ttp holds operations/plan/purchased/postpaid (2, 2000, 0, 0),"
        " the ledger says (1, 2000, 0, 0)",
    ]


async def test_a_change_of_zone_rebuilds_the_days(db: Database, clock: FakeClock) -> None:
    """Charges kept in UTC days; the zone becomes Kolkata's (+05:30, whose midnights cut
    UTC hours): the days are rebuilt once, the history by day agrees with the one by hour
    (which reads the charges there) and reconcile is clean; charges after it add to the
    rebuilt days."""
    utc, kolkata = ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")
    factory = Factory(db, clock, utc)
    start = _midnight("2026-11-20", utc)
    user = await factory.user(await factory.plan(credits=1000, max_ttp=None))
    for number in range(40):  # every 2 h 13 min over four days, an odd microsecond
        clock.set(from_micros(start + number * 133 * 60_000_000 + 7))
        kind = KINDS[number % 3]
        assert isinstance(await factory.charge(user, kind, f"z{number}", 1 + number % 4), Charged)
    await factory.refund("z7")
    assert await _keyed(db) == ["UTC"]  # the factory's first user, as a start does
    assert not await rollup.key_days(db, utc)
    kept = await _rows(db)

    # Until a start in Kolkata rebuilds them, the UTC days are neither read nor checked.
    whole = (_midnight("2026-11-20", kolkata), _midnight("2026-11-25", kolkata))
    async with db.read() as conn:
        assert await reconcile(conn, kolkata) == []
    unkept = await _history(db, user.id, *whole, kolkata, clock())
    assert await rollup.key_days(db, kolkata)
    assert await _keyed(db) == ["Asia/Kolkata"]
    assert not await rollup.key_days(db, kolkata)
    assert await _rows(db) != kept
    assert await _history(db, user.id, *whole, kolkata, clock()) == unkept
    moved = Factory(db, clock, kolkata)
    assert await moved.reconcile() == []
    assert isinstance(await moved.charge(user, "edit", "after", 1), Charged)
    await moved.refund("z12")
    assert await moved.reconcile() == []

    days = await _history(db, user.id, *whole, kolkata, clock())
    hours = await _history(db, user.id, *whole, kolkata, clock(), by="hour")
    assert len(days.buckets) == 5
    for bucket in days.buckets:
        inside = [hour for hour in hours.buckets if bucket.start <= hour.start < bucket.end]
        assert len(inside) == 24
        for kind in KINDS:
            assert bucket.operations[kind] == sum(hour.operations[kind] for hour in inside)
        assert bucket.plan == sum(hour.plan for hour in inside)
    assert sum(bucket.operations["ttp"] for bucket in days.buckets) > 0

    assert await rollup.key_days(db, utc)  # and back
    assert await factory.reconcile() == []


async def test_a_store_made_before_the_day_rollup_gets_its_days(
    db: Database, factory: Factory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0014 makes the table empty, with no zone recorded: the server's first
    start fills it from the charges that stand (here two rows a statement, so that the
    rows go in several)."""
    monkeypatch.setattr(rollup, "_ROWS_PER_INSERT", 2)
    user = await factory.user(await factory.plan(credits=50, max_ttp=None))
    for number in range(6):
        assert isinstance(await factory.charge(user, KINDS[number % 3], f"o{number}"), Charged)
        clock.advance(7 * 3600)
    await factory.refund("o4")
    kept = [row for row in await _rows(db) if any(row[3:])]

    async with db.transaction() as conn:
        await conn.execute("DROP TABLE usage_days")
        await conn.execute("DROP TABLE usage_days_zone")
        await conn.execute("DELETE FROM schema_migrations WHERE version = ?", DAYS_MIGRATION)
    assert await db.migrate() == [DAYS_MIGRATION]
    assert await _rows(db) == []
    assert await _keyed(db) == []
    assert await rollup.key_days(db, factory.zone)
    assert await _rows(db) == kept
    assert await factory.reconcile() == []


async def test_a_server_starting_in_another_zone_rebuilds_the_days_first(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    """Through the lifespan, as a server starts: its own store, the zone recorded."""
    user = await factory.user()
    assert isinstance(await factory.charge(user, "ttp", "seoul"), Charged)
    assert await _keyed(db) == [factory.zone.key]
    settings = Settings.from_environ({**environ, "FLAMEL_TIMEZONE": "Asia/Seoul"})
    app = App(settings)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    deadline = time.monotonic() + 10
    while not sent:
        assert time.monotonic() < deadline, "the lifespan did not start"
        await asyncio.sleep(0.01)
    assert await _keyed(db) == ["Asia/Seoul"]
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, timeout=10)
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert await Factory(db, factory.clock, ZoneInfo("Asia/Seoul")).reconcile() == []

"""Any interleaving of holds, settles, releases, charges, refunds and expiries keeps the
books exact (SPEC sections 3 and 8).

Random sequences on both stores, with time moving on so that holds expire and periods
end. After every step: each balance equals its ledger (``reconcile``, the history's
rollup included), a prepaid account's credit never goes below zero, and the usage read,
which releases expired holds only in what it shows, equals what the account holds once
a write has released them (the read is exact without writing). The history of the
period agrees with the usage read, before and after that write: read from the hourly
rollup (UTC hours), from the daily one (days of the billing zone, UTC) and from the
charges themselves (hours of a zone of half-hour offset), the same totals.

Each example gets its own plan and user in one database per store, so the books of the
earlier examples must stay reconciled too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flamel_usage.core.errors import Refusal
from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Connection, Database
from flamel_usage.ledger import balances as ledger
from flamel_usage.ledger.history import Granularity, read_history
from flamel_usage.metering.outcomes import Charged, Held
from tests.factories import Factory
from tests.store import truncate_all

UTC_ZONE = ZoneInfo("UTC")
#: Offsets of whole hours and a half: its hours cut UTC hours, so the history by hour
#: reads the charges themselves, by the rule the rollups must keep.
HALF_HOUR_ZONE = ZoneInfo("Asia/Kolkata")
START = datetime(2026, 11, 30, 20, tzinfo=UTC)
ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)  # the period ends on 2026-12-01T00:00Z

steps = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), st.sampled_from([1, 2, 3, 5])),
        st.tuples(st.just("hold"), st.sampled_from([1, 2, 4, 6])),
        st.tuples(st.just("settle"), st.integers(0, 40)),
        st.tuples(st.just("release"), st.integers(0, 40)),
        st.tuples(st.just("refund"), st.integers(0, 40)),
        st.tuples(st.just("buy"), st.sampled_from([1, 3])),
        st.tuples(st.just("wait"), st.sampled_from([60, 600, 3600, 4 * 3600])),
    ),
    max_size=16,
)


class _Store:
    """One open database, a clock to move, and a loop to drive them from sync examples."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = Database.from_url(url)
        self.now = to_micros(START)
        self.factory = Factory(self.db, lambda: self.now, UTC_ZONE)
        self.names = itertools.count()
        self.loop.run_until_complete(self._open())

    async def _open(self) -> None:
        await self.db.open()
        if self.db.dialect == "postgresql":
            await truncate_all(self.db)
        else:
            await self.db.migrate()

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.db.close())
        finally:
            self.loop.close()

    def play(self, sequence: list[tuple[str, int]], postpaid: bool) -> None:
        self.now = to_micros(START)
        self.loop.run_until_complete(self._play(sequence, postpaid))

    async def _play(self, sequence: list[tuple[str, int]], postpaid: bool) -> None:
        run = next(self.names)
        plan = await self.factory.plan(credits=6, max_ttp=None, postpaid=postpaid, name=f"h{run}")
        user = await self.factory.user(plan, anchor=ANCHOR)
        holds: list[tuple[int, int]] = []  # (hold id, held millicredits)
        charged: list[str] = []
        for number, (step, value) in enumerate(sequence):
            key = f"h{run}-{number}"
            try:
                if step == "charge":
                    if isinstance(await self.factory.charge(user, "ttp", key, value), Charged):
                        charged.append(key)
                elif step == "hold":
                    outcome = await self.factory.hold(user, "ttp", key, value, ttl_seconds=1800)
                    if isinstance(outcome, Held):
                        holds.append((outcome.hold.id, outcome.hold.held))
                elif step in ("settle", "release") and holds:
                    hold_id, held = holds[value % len(holds)]
                    if step == "settle":
                        await self.factory.settle(hold_id, (held * (value % 5) // 4) / 1000)
                    else:
                        await self.factory.release(hold_id)
                elif step == "refund" and charged:
                    await self.factory.refund(charged[value % len(charged)])
                elif step == "buy":
                    await self.factory.purchase(user, value, expires_at=self.now + 7200 * 10**6)
                elif step == "wait":
                    self.now += value * 1_000_000
            except Refusal as refusal:
                # A finished or expired hold, a refunded charge: refused, nothing changed.
                if refusal.reason not in ("hold_not_active", "already_refunded"):
                    raise
            await self._check(user.id, sequence, postpaid)

    async def _check(self, user_id: int, sequence: object, postpaid: bool) -> None:
        async with self.db.read() as conn:
            shown = await ledger.read_usage(conn, user_id, self.now, UTC_ZONE)
            await self._check_history(conn, user_id, shown, sequence)
        assert await self.factory.reconcile() == [], sequence
        async with self.db.transaction() as conn:
            await ledger.locked_account(conn, user_id, self.now, UTC_ZONE)
        async with self.db.read() as conn:
            written = await ledger.read_usage(conn, user_id, self.now, UTC_ZONE)
            await self._check_history(conn, user_id, written, sequence)
        assert shown == written, sequence
        assert await self.factory.reconcile() == [], sequence
        assert shown.additional_credit >= 0
        assert shown.current_credit >= 0
        if not postpaid:
            assert shown.postpaid_used is None

    async def _check_history(
        self, conn: Connection, user_id: int, usage: ledger.Usage, sequence: object
    ) -> None:
        """The period's history by UTC hour and by day of the billing zone (the rollups,
        less expired active holds) and by hour of a half-hour zone (the charges): the
        same totals, agreeing with ``usage``."""
        start, end = to_micros(usage.period.start), to_micros(usage.period.end)
        totals = []
        reads: tuple[tuple[ZoneInfo, Granularity], ...] = (
            (UTC_ZONE, "hour"),
            (UTC_ZONE, "day"),
            (HALF_HOUR_ZONE, "hour"),
        )
        for zone, granularity in reads:
            history = await read_history(
                conn,
                user_id,
                start=start,
                end=end,
                granularity=granularity,
                kinds=("ttp",),
                now=self.now,
                zone=zone,
            )
            buckets = history.buckets
            totals.append(
                (
                    sum(bucket.plan for bucket in buckets),
                    sum(bucket.purchased for bucket in buckets),
                    sum(bucket.postpaid for bucket in buckets),
                    sum(bucket.operations["ttp"] for bucket in buckets),
                    {kind for bucket in buckets for kind in bucket.operations},
                )
            )
        from_rollup, from_days, from_charges = totals
        assert from_rollup == from_days == from_charges, sequence
        plan, _, postpaid, operations, kinds = from_rollup
        assert kinds == {"ttp"}, sequence
        assert operations == usage.ttp_count, sequence
        assert postpaid == (usage.postpaid_used or 0), sequence
        allowance = usage.max_credit
        assert usage.current_credit == max(0, min(allowance, allowance - plan)), sequence


@pytest.fixture
def store(database_url: str) -> Iterator[_Store]:
    opened = _Store(database_url)
    yield opened
    opened.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=steps, postpaid=st.booleans())
# An expired hold beside a standing charge: the read gives back within the allowance.
@example(sequence=[("charge", 1), ("hold", 1), ("wait", 3600)], postpaid=False)
# Expired across the period's end, with purchased credit in it and an expiring purchase.
@example(
    sequence=[("buy", 3), ("hold", 6), ("hold", 2), ("wait", 4 * 3600), ("release", 1)],
    postpaid=False,
)
@example(sequence=[("hold", 6), ("hold", 4), ("settle", 1), ("wait", 3600)], postpaid=True)
def test_any_interleaving_keeps_the_books_exact(
    store: _Store, sequence: list[tuple[str, int]], postpaid: bool
) -> None:
    store.play(sequence, postpaid)

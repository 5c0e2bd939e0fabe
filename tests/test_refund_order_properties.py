"""What a refund restores does not depend on the order of plan changes in a period.

SPEC 3 and 4: a refund restores what its charge took, within the current period's
allowance. The rule that makes this independent of order: after any refund or plan
change, plan credit is the current allowance less what plan credit paid for the
period's charges that stand (not refunded), within [0, allowance]. Random sequences of
charges, refunds and immediate plan changes inside one period, on both stores, must
end exactly there, with the books reconciled.

Each example gets its own plans and user in one database per store (the books of the
earlier examples must stay reconciled too), so no example waits for a fresh database.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Database
from flamel_usage.ledger import balances as ledger
from flamel_usage.metering.outcomes import Charged
from tests.factories import Factory
from tests.store import truncate_all

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 11, 20, tzinfo=UTC)
ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)
#: Allowances in credits: the user starts on the first; changes move among all three.
ALLOWANCES = (5, 1, 3)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), st.sampled_from([1, 2, 3, 5])),
        st.tuples(st.just("refund"), st.integers(0, 7)),
        st.tuples(st.just("change"), st.integers(0, len(ALLOWANCES) - 1)),
    ),
    max_size=14,
)


class _Store:
    """One open database and an event loop to drive it from hypothesis's sync examples."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = Database.from_url(url)
        self.factory = Factory(self.db, lambda: int(NOW.timestamp() * 1_000_000), UTC_ZONE)
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

    def play(self, sequence: list[tuple[str, int]]) -> None:
        self.loop.run_until_complete(self._play(sequence))

    async def _play(self, sequence: list[tuple[str, int]]) -> None:
        run = next(self.names)
        plans = [
            await self.factory.plan(credits=credits, max_ttp=None, name=f"r{run}-{index}")
            for index, credits in enumerate(ALLOWANCES)
        ]
        user = await self.factory.user(plans[0], anchor=ANCHOR)
        allowance = ALLOWANCES[0] * 1000
        from_plan: dict[str, int] = {}  # charged keys: what plan credit paid
        standing: set[str] = set()
        for number, (step, value) in enumerate(sequence):
            if step == "charge":
                key = f"r{run}-{number}"
                outcome = await self.factory.charge(user, "image", key, cost=value)
                if isinstance(outcome, Charged):
                    from_plan[key] = outcome.charge.from_plan
                    standing.add(key)
            elif step == "refund" and from_plan:
                key = sorted(from_plan)[value % len(from_plan)]
                if key in standing:
                    await self.factory.refund(key)
                    standing.discard(key)
                else:
                    with pytest.raises(Refusal, match="refunded already"):
                        await self.factory.refund(key)
            elif step == "change":
                async with self.db.transaction() as conn:
                    await ledger.change_plan(
                        conn,
                        user.id,
                        plans[value].name,
                        at_next_period=False,
                        now=self.factory.clock(),
                        zone=UTC_ZONE,
                    )
                allowance = ALLOWANCES[value] * 1000
        spent = sum(from_plan[key] for key in standing)
        usage = await self.factory.usage(user)
        assert usage.max_credit == allowance
        assert usage.current_credit == max(0, min(allowance, allowance - spent)), sequence
        assert await self.factory.reconcile() == []


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[_Store]:
    opened = _Store(database_url)
    yield opened
    opened.close()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=steps)
# The audit's case: charge all of a 5-credit plan; downgrade, refund, upgrade.
@example(sequence=[("charge", 5), ("change", 1), ("refund", 0), ("change", 0)])
def test_plan_credit_is_the_allowance_less_the_standing_charges(
    store: _Store, sequence: list[tuple[str, int]]
) -> None:
    store.play(sequence)

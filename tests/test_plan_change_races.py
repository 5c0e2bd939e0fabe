"""Plan changes racing the writes of one account, on both stores.

Each storm runs its writes at once on separate connections of the real store (on
PostgreSQL, real concurrent transactions, the account row locked by one while the
others wait). Whatever the interleaving, every write must answer its real outcome:
never ``user_not_found`` for a user who exists, and the books reconcile afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime

from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Database
from flamel_usage.ledger import balances as ledger
from flamel_usage.metering.outcomes import Charged, Refused
from tests.conftest import FakeClock
from tests.factories import Factory

ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)
BOUNDARY = datetime(2026, 12, 1, tzinfo=UTC)


async def _outcome(write: Awaitable[object]) -> str:
    """``ok``, ``charged``, or the reason of the refusal."""
    try:
        result = await write
    except Refusal as error:
        return error.reason
    if isinstance(result, Refused):
        return result.reason
    return "charged" if isinstance(result, Charged) else "ok"


async def _change_plan(factory: Factory, user_id: int, plan: str, *, at_next: bool) -> None:
    async with factory.db.transaction() as conn:
        await ledger.change_plan(
            conn, user_id, plan, at_next_period=at_next, now=factory.clock(), zone=factory.zone
        )


async def test_charges_at_a_boundary_with_a_scheduled_change_are_all_charged(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    basic = await factory.plan(credits=100, max_ttp=None, name="basic")
    await factory.plan(credits=1000, max_ttp=None, name="pro")
    user = await factory.user(basic, anchor=ANCHOR)
    await _change_plan(factory, user.id, "pro", at_next=True)
    clock.set(BOUNDARY)

    outcomes = await asyncio.gather(
        *(_outcome(factory.charge(user, "image", f"boundary-{n}")) for n in range(12))
    )

    assert Counter(outcomes) == {"charged": 12}
    usage = await factory.usage(user)
    assert (usage.current_credit, usage.max_credit) == (1000_000 - 12_000, 1000_000)
    assert await factory.reconcile() == []


async def test_plan_changes_mixed_with_every_write_answer_real_outcomes(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    small = await factory.plan(credits=50, max_ttp=3, name="small")
    await factory.plan(credits=500, max_ttp=None, name="large")
    user = await factory.user(small, anchor=ANCHOR)
    for n in range(6):
        await factory.charge(user, "image", f"early-{n}")
    clock.set(BOUNDARY)
    await _change_plan(factory, user.id, "large", at_next=True)  # no effect: a new period

    writes: list[Awaitable[object]] = []
    for n in range(40):
        match n % 5:
            case 0:
                plan = "small" if n % 10 == 0 else "large"
                writes.append(_change_plan(factory, user.id, plan, at_next=n % 20 == 0))
            case 1:
                writes.append(factory.purchase(user, 5))
            case 2:
                writes.append(factory.refund(f"early-{n // 5 % 6}"))
            case _:
                writes.append(factory.charge(user, "ttp" if n % 2 else "image", f"mixed-{n}"))
    outcomes = Counter(await asyncio.gather(*(_outcome(write) for write in writes)))

    assert set(outcomes) <= {"ok", "charged", "ttp_limit_exceeded", "already_refunded"}, outcomes
    assert outcomes["ok"] >= 8 + 8
    assert await factory.reconcile() == []

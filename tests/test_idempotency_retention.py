"""Idempotency records are kept FLAMEL_IDEMPOTENCY_RETENTION_DAYS, then pruned in the
background: a refusal's record is deleted, a charge's record gives up its key (the
charge and its ledger entries stay), and the key may be used again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Database
from flamel_usage.http import app as app_module
from flamel_usage.http.app import App
from flamel_usage.metering import idempotency
from flamel_usage.metering.outcomes import Charged, Refused
from tests.conftest import FakeClock
from tests.factories import Factory

DAY = 86_400


async def _count(db: Database, statement: str, *args: object) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval(statement, *args))


async def test_records_older_than_the_retention_are_pruned_and_their_keys_free(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=3, max_ttp=None))
    assert isinstance(await factory.charge(user, "image", "old-charge"), Charged)
    assert isinstance(await factory.charge(user, "image", "old-refusal", 10), Refused)
    clock.advance(20 * DAY)
    assert isinstance(await factory.charge(user, "image", "recent"), Charged)
    clock.advance(11 * DAY)  # "old-*" are 31 days old, "recent" 11

    assert await idempotency.prune(db, clock(), 30) == 2

    assert await _count(db, "SELECT count(*) FROM charges") == 2  # the refusal's record went
    keys = "SELECT count(*) FROM charges WHERE idempotency_key IN ('old-charge', 'old-refusal')"
    assert await _count(db, keys) == 0
    assert await factory.reconcile() == []
    # Within the retention, a retry still gets its first outcome.
    assert (await factory.charge(user, "image", "recent")).replayed
    # Past it, the key is a new one: another charge (with a body the first never had).
    again = await factory.charge(user, "edit", "old-charge")
    assert isinstance(again, Charged)
    assert not again.replayed
    assert await factory.reconcile() == []
    assert await idempotency.prune(db, clock(), 30) == 0


async def test_pruning_goes_in_batches(
    db: Database, factory: Factory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "PRUNE_BATCH", 2)
    user = await factory.user(await factory.plan(credits=100, max_ttp=None))
    for n in range(5):
        await factory.charge(user, "image", f"k{n}")
    clock.advance(2 * DAY)
    assert await idempotency.prune(db, clock(), 1) == 5
    retired = f"SELECT count(*) FROM charges WHERE idempotency_key LIKE '{idempotency.RETIRED}%'"
    assert await _count(db, retired) == 5


async def test_a_retired_charge_is_no_longer_refundable_by_its_key(
    db: Database, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    await factory.charge(user, "image", "k")
    clock.advance(31 * DAY)
    await idempotency.prune(db, clock(), 30)
    with pytest.raises(Refusal) as refused:
        await factory.refund("k")
    assert refused.value.reason == "charge_not_found"


async def test_the_housekeeping_prunes_with_the_configured_retention(
    app: App, db: Database, factory: Factory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    await factory.charge(user, "image", "k")
    clock.advance(app.services.settings.idempotency_retention_days * DAY + 1)
    monkeypatch.setattr(app_module, "FLUSH_INTERVAL_SECONDS", 0.01)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(message: dict[str, Any]) -> None:
        pass

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    try:
        deadline = time.monotonic() + 5
        while await _count(db, "SELECT count(*) FROM charges WHERE idempotency_key = 'k'"):
            assert time.monotonic() < deadline, "no pruning pass"
            await asyncio.sleep(0.01)
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, timeout=5)

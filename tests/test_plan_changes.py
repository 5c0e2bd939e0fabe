"""Plan changes: now (counts kept, allowance adjusted) or at the next period start."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from flamel_usage.db.gateway import Database
from tests.conftest import FakeClock
from tests.factories import Factory

ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)


async def _charge(admin: httpx.AsyncClient, user_id: int, key: str, **body: object) -> int:
    response = await admin.post(
        "/api/admin/charges",
        json={"userId": user_id, "kind": "image", **body},
        headers={"Idempotency-Key": key},
    )
    return response.status_code


async def _change(admin: httpx.AsyncClient, user_id: int, **body: object) -> httpx.Response:
    return await admin.put(f"/api/admin/users/{user_id}/plan", json=body)


async def test_an_upgrade_now_keeps_what_was_spent_and_the_counts(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    small = await factory.plan(credits=100, max_ttp=10, name="small")
    await factory.plan(credits=500, max_ttp=3, name="large")
    user = await factory.user(small, anchor=ANCHOR)
    assert await _charge(admin, user.id, "a", cost=30) == 201
    for n in range(4):
        assert await _charge(admin, user.id, f"t{n}", kind="ttp") == 201

    changed = await _change(admin, user.id, plan="large")

    assert changed.status_code == 200
    body = changed.json()
    assert (body["plan"], body["pendingPlan"]) == ("large", None)
    usage = body["usage"]
    assert (usage["currentCredit"], usage["maxCredit"]) == (466, 500)
    assert (usage["ttpCount"], usage["maxTtpCount"]) == (4, 3)
    assert usage["period"] == "2026-11-01T00:00:00+00:00/2026-12-01T00:00:00+00:00"
    assert await _charge(admin, user.id, "t-over", kind="ttp") == 429
    assert await factory.reconcile() == []


async def test_a_downgrade_now_never_goes_below_zero(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    large = await factory.plan(credits=100, name="large")
    await factory.plan(credits=50, name="small")
    user = await factory.user(large, anchor=ANCHOR)
    assert await _charge(admin, user.id, "a", cost=80) == 201

    usage = (await _change(admin, user.id, plan="small", effective="now")).json()["usage"]

    assert (usage["currentCredit"], usage["maxCredit"]) == (0, 50)
    assert await factory.reconcile() == []


async def test_a_change_at_the_next_period_waits_for_the_boundary(
    admin: httpx.AsyncClient, factory: Factory, clock: FakeClock, db: Database
) -> None:
    basic = await factory.plan(credits=100, name="basic")
    await factory.plan(credits=300, max_ttp=None, postpaid=True, name="enterprise")
    user = await factory.user(basic, anchor=ANCHOR)
    assert await _charge(admin, user.id, "a", cost=10) == 201

    body = (await _change(admin, user.id, plan="enterprise", effective="next_period")).json()
    assert (body["plan"], body["pendingPlan"]) == ("basic", "enterprise")
    assert body["usage"]["currentCredit"] == 90
    assert body["usage"]["postpaidUsageCount"] is None

    clock.set(datetime(2026, 12, 1, tzinfo=UTC))
    seen = (await admin.get(f"/api/admin/users/{user.id}/usage")).json()
    assert (seen["currentCredit"], seen["maxCredit"], seen["postpaidUsageCount"]) == (300, 300, 0)
    assert seen["period"] == "2026-12-01T00:00:00+00:00/2027-01-01T00:00:00+00:00"

    assert await _charge(admin, user.id, "b", cost=301) == 201
    after = (await admin.get(f"/api/admin/users/{user.id}/usage")).json()
    assert (after["currentCredit"], after["postpaidUsageCount"]) == (0, 1)
    async with db.read() as conn:
        pending = await conn.fetchval(
            "SELECT pending_plan_id FROM accounts WHERE user_id = ?", user.id
        )
    assert pending is None
    assert await factory.reconcile() == []


async def test_a_new_period_unit_starts_where_the_current_period_ends(
    admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    monthly = await factory.plan(credits=100, name="monthly")
    await factory.plan(credits=1000, period="year", name="yearly")
    user = await factory.user(monthly, anchor=datetime(2026, 1, 15, tzinfo=UTC))
    clock.set(datetime(2026, 11, 20, tzinfo=UTC))

    await _change(admin, user.id, plan="yearly", effective="next_period")
    clock.set(datetime(2027, 3, 1, tzinfo=UTC))
    usage = (await admin.get(f"/api/admin/users/{user.id}/usage")).json()

    assert usage["period"] == "2026-12-15T00:00:00+00:00/2027-12-15T00:00:00+00:00"
    assert usage["currentCredit"] == 1000


async def test_a_unit_change_now_keeps_the_current_period(
    admin: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    monthly = await factory.plan(credits=100, name="monthly")
    await factory.plan(credits=1000, period="year", name="yearly")
    user = await factory.user(monthly, anchor=datetime(2026, 1, 15, tzinfo=UTC))
    clock.set(datetime(2026, 11, 20, tzinfo=UTC))

    usage = (await _change(admin, user.id, plan="yearly")).json()["usage"]
    assert usage["period"] == "2026-11-15T00:00:00+00:00/2026-12-15T00:00:00+00:00"
    assert usage["currentCredit"] == 1000

    clock.set(datetime(2026, 12, 15, tzinfo=UTC))
    later = (await admin.get(f"/api/admin/users/{user.id}/usage")).json()
    assert later["period"] == "2026-12-15T00:00:00+00:00/2027-12-15T00:00:00+00:00"
    assert await factory.reconcile() == []


async def test_asking_for_the_current_plan_at_the_next_period_cancels_a_pending_change(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    basic = await factory.plan(name="basic")
    await factory.plan(name="other")
    user = await factory.user(basic)
    await _change(admin, user.id, plan="other", effective="next_period")

    body = (await _change(admin, user.id, plan="basic", effective="next_period")).json()

    assert (body["plan"], body["pendingPlan"]) == ("basic", None)


async def test_bad_plan_changes_change_nothing(admin: httpx.AsyncClient, factory: Factory) -> None:
    basic = await factory.plan(name="basic")
    user = await factory.user(basic)
    before = (await admin.get(f"/api/admin/users/{user.id}/usage")).json()

    unknown_plan = await _change(admin, user.id, plan="nope")
    unknown_user = await _change(admin, 999, plan="basic")
    bad_effective = await _change(admin, user.id, plan="basic", effective="tomorrow")
    missing_plan = await _change(admin, user.id)

    assert (unknown_plan.status_code, unknown_plan.json()["data"]) == (404, "plan_not_found")
    assert (unknown_user.status_code, unknown_user.json()["data"]) == (404, "user_not_found")
    assert (bad_effective.status_code, missing_plan.status_code) == (400, 400)
    assert (await admin.get(f"/api/admin/users/{user.id}/usage")).json() == before


async def _refund(admin: httpx.AsyncClient, key: str) -> None:
    assert (await admin.post(f"/api/admin/charges/{key}/refund")).status_code == 200


async def test_a_refund_restores_the_same_whatever_the_order_of_plan_changes(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    full = await factory.plan(credits=100, name="full")
    await factory.plan(credits=10, name="small")
    orders = {
        "refund": ["refund"],
        "downgrade, upgrade, refund": ["small", "full", "refund"],
        "downgrade, refund, upgrade": ["small", "refund", "full"],
        "refund, downgrade, upgrade": ["refund", "small", "full"],
    }
    left = {}
    for number, (name, steps) in enumerate(orders.items()):
        user = await factory.user(full, anchor=ANCHOR)
        key = f"charge-{number}"
        assert await _charge(admin, user.id, key, cost=100) == 201
        for step in steps:
            if step == "refund":
                await _refund(admin, key)
            else:
                assert (await _change(admin, user.id, plan=step)).status_code == 200
        left[name] = (await admin.get(f"/api/admin/users/{user.id}/usage")).json()["currentCredit"]

    assert left == dict.fromkeys(orders, 100)
    assert await factory.reconcile() == []


async def test_a_refund_after_a_downgrade_stays_within_the_new_allowance(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    full = await factory.plan(credits=100, name="full")
    await factory.plan(credits=10, name="small")
    user = await factory.user(full, anchor=ANCHOR)
    assert await _charge(admin, user.id, "a", cost=60) == 201
    assert await _charge(admin, user.id, "b", cost=30) == 201
    await _change(admin, user.id, plan="small")

    await _refund(admin, "a")

    usage = (await admin.get(f"/api/admin/users/{user.id}/usage")).json()
    assert (usage["currentCredit"], usage["maxCredit"]) == (0, 10)
    await _refund(admin, "b")
    usage = (await admin.get(f"/api/admin/users/{user.id}/usage")).json()
    assert usage["currentCredit"] == 10
    assert await factory.reconcile() == []

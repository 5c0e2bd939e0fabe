"""Holds (SPEC section 8): reserve credit for a long job, then settle or release it.

Every test runs on SQLite and on PostgreSQL (the ``db`` fixture). Users are created at
the clock's start, 2026-11-25T10:00Z, so their first period is
[2026-11-25T10:00Z, 2026-12-25T10:00Z).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from flamel_usage.accounts.users import User
from flamel_usage.client import (
    AdminClient,
    AsyncAdminClient,
    HoldNotActive,
    HoldNotFound,
    InsufficientCredit,
)
from flamel_usage.core.config import Settings
from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from flamel_usage.ledger.history import read_history
from flamel_usage.metering import holds
from flamel_usage.metering.outcomes import Charged, Held, Refused
from tests.conftest import ADMIN_TOKEN, FakeClock
from tests.factories import Factory
from tests.processes import run_cli, running_server, single_line
from tests.store import reset_database, snapshot, table_rows

HOLDS = "/api/admin/holds"
NEXT_PERIOD = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _held(factory: Factory, user: User, key: str, cost: float, **kw: Any) -> Held:
    outcome = await factory.hold(user, "image", key, cost, **kw)
    assert isinstance(outcome, Held), outcome
    return outcome


async def _user(factory: Factory, credits: int = 100, purchased: float = 0, **kw: Any) -> User:
    user = await factory.user(await factory.plan(credits=credits, **kw))
    if purchased:
        await factory.purchase(user, purchased)
    return user


def _numbers(usage: Any) -> tuple[int, int, int, int]:
    return (usage.current_credit, usage.additional_credit, usage.ttp_count, usage.edit_count)


# --- the domain ------------------------------------------------------------------------


async def test_a_hold_takes_credit_as_a_charge_does(factory: Factory) -> None:
    user = await _user(factory, credits=10, purchased=20)
    held = await _held(factory, user, "job-1", 15)
    hold = held.hold
    assert (hold.held, hold.cost, hold.state) == (15_000, 15_000, "active")
    assert (hold.from_plan, hold.from_purchased, hold.postpaid) == (10_000, 5_000, 0)
    assert hold.expires_at == factory.clock() + holds.DEFAULT_TTL_SECONDS * 1_000_000
    assert _numbers(held.usage) == (0, 15_000, 0, 0)
    assert _numbers(await factory.usage(user)) == (0, 15_000, 0, 0)
    assert await factory.reconcile() == []


async def test_a_hold_passes_the_checks_of_a_charge(factory: Factory) -> None:
    user = await _user(factory, credits=10, max_ttp=1)
    assert await factory.hold(user, "image", "too-much", 11) == Refused(
        "insufficient_credit", "the charge needs 11 credits"
    )
    assert isinstance(await factory.hold(user, "ttp", "first-ttp"), Held)
    refused = await factory.hold(user, "ttp", "second-ttp")
    assert isinstance(refused, Refused)
    assert refused.reason == "ttp_limit_exceeded"
    again = await factory.hold(user, "ttp", "second-ttp")
    assert isinstance(again, Refused)
    assert again.replayed
    assert _numbers(await factory.usage(user)) == (9_000, 0, 1, 0)
    assert await factory.reconcile() == []


async def test_settle_gives_the_rest_back_purchased_credit_first(factory: Factory) -> None:
    user = await _user(factory, credits=10, purchased=20)
    held = await _held(factory, user, "job", 25)  # 10 plan + 15 purchased
    settled = await factory.settle(held.hold.id, 12)
    hold = settled.hold
    assert (hold.state, hold.cost, hold.held) == ("settled", 12_000, 25_000)
    # 13 go back: all 13 to purchased credit, plan credit keeps what it paid.
    assert (hold.from_plan, hold.from_purchased) == (10_000, 2_000)
    assert _numbers(settled.usage) == (0, 18_000, 0, 0)
    settled_low = await factory.settle((await _held(factory, user, "job-2", 10)).hold.id, 1)
    assert _numbers(settled_low.usage) == (0, 17_000, 0, 0)
    assert await factory.reconcile() == []


async def test_settle_gives_plan_credit_back_once_purchases_are_whole(factory: Factory) -> None:
    user = await _user(factory, credits=10, purchased=5)
    held = await _held(factory, user, "job", 12)  # 10 plan + 2 purchased
    settled = await factory.settle(held.hold.id, 3)
    assert (settled.hold.from_plan, settled.hold.from_purchased) == (3_000, 0)
    assert _numbers(settled.usage) == (7_000, 5_000, 0, 0)
    assert await factory.reconcile() == []


async def test_release_gives_everything_back_and_uncounts(factory: Factory) -> None:
    user = await _user(factory, credits=10, purchased=5)
    held = await factory.hold(user, "ttp", "ttp-job", 12)
    assert isinstance(held, Held)
    assert _numbers(held.usage) == (0, 3_000, 1, 0)
    released = await factory.release(held.hold.id)
    assert released.hold.state == "released"
    assert (released.hold.cost, released.hold.from_plan, released.hold.from_purchased) == (0, 0, 0)
    assert _numbers(released.usage) == (10_000, 5_000, 0, 0)
    assert await factory.reconcile() == []


async def test_settle_and_release_are_final_and_idempotent(factory: Factory) -> None:
    user = await _user(factory)
    hold_id = (await _held(factory, user, "job", 10)).hold.id
    first = await factory.settle(hold_id, 4)
    again = await factory.settle(hold_id, 4)
    assert again.replayed
    assert not first.replayed
    assert (again.hold, again.usage) == (first.hold, first.usage)
    for other in (factory.settle(hold_id, 5), factory.release(hold_id)):
        with pytest.raises(Exception, match="settled") as caught:
            await other
        assert getattr(caught.value, "reason", None) == "hold_not_active"
    released_id = (await _held(factory, user, "job-2", 10)).hold.id
    first = await factory.release(released_id)
    assert (await factory.release(released_id)).usage == first.usage
    with pytest.raises(Exception, match="released"):
        await factory.settle(released_id, 1)
    assert _numbers(await factory.usage(user)) == (96_000, 0, 0, 0)


async def test_a_settle_above_the_held_cost_is_refused(factory: Factory, db: Database) -> None:
    user = await _user(factory)
    hold_id = (await _held(factory, user, "job", 10)).hold.id
    before = await table_rows(db)
    with pytest.raises(Exception, match="more than the 10 credits held") as caught:
        await factory.settle(hold_id, 10.001)
    assert getattr(caught.value, "reason", None) == "bad_request"
    assert await table_rows(db) == before


async def test_an_expired_hold_reads_released_and_the_next_write_releases_it(
    factory: Factory, db: Database, clock: FakeClock
) -> None:
    user = await _user(factory, credits=10, purchased=5)
    held = await factory.hold(user, "ttp", "job", 12, ttl_seconds=60)
    assert isinstance(held, Held)
    clock.advance(59)
    assert _numbers(await factory.usage(user)) == (0, 3_000, 1, 0)
    clock.advance(1)
    before = await table_rows(db)
    assert _numbers(await factory.usage(user)) == (10_000, 5_000, 0, 0)
    async with db.read() as conn:
        assert await holds.active_holds(conn, user.id, now=clock()) == []
        spent = await read_history(
            conn,
            user.id,
            start=None,
            end=None,
            granularity="day",
            kinds=["ttp"],
            now=clock(),
            zone=factory.zone,
        )
    assert sum(bucket.plan + bucket.purchased for bucket in spent.buckets) == 0
    assert await table_rows(db) == before  # reads never write
    assert await factory.reconcile() == []
    charged = await factory.charge(user, "image", "after", 1)
    assert isinstance(charged, Charged)
    assert _numbers(charged.usage) == (9_000, 5_000, 0, 0)
    with pytest.raises(Exception, match="expired"):
        await factory.settle(held.hold.id, 1)
    assert await factory.reconcile() == []


async def test_the_sweep_releases_expired_holds(
    factory: Factory, db: Database, clock: FakeClock
) -> None:
    users = [await _user(factory, credits=10) for _ in range(3)]
    for n, user in enumerate(users):
        await _held(factory, user, f"job-{n}", 4, ttl_seconds=10 * (n + 1))
    clock.advance(20)
    async with db.read() as conn:
        due = await holds.accounts_with_expired_holds(conn, now=clock(), limit=10)
    assert due == [users[0].id, users[1].id]
    for user_id in due:
        async with db.transaction() as conn:
            await holds.expire(conn, user_id, now=clock(), zone=factory.zone)
    async with db.read() as conn:
        assert await holds.accounts_with_expired_holds(conn, now=clock(), limit=10) == []
        states = await conn.fetchall("SELECT hold_state FROM charges ORDER BY id")
    assert [row["hold_state"] for row in states] == ["expired", "expired", "active"]
    assert await factory.reconcile() == []


async def test_what_was_taken_from_an_ended_period_stays_with_it(
    factory: Factory, clock: FakeClock
) -> None:
    user = await _user(factory, credits=10, purchased=5)
    clock.set(NEXT_PERIOD - timedelta(minutes=10))
    held = await factory.hold(user, "ttp", "long-job", 12, ttl_seconds=3600)
    assert isinstance(held, Held)
    clock.set(NEXT_PERIOD + timedelta(minutes=1))
    released = await factory.release(held.hold.id)
    # The new period's plan credit is whole; the purchased part came back.
    assert _numbers(released.usage) == (10_000, 5_000, 0, 0)
    assert await factory.reconcile() == []


async def test_a_hold_is_not_refunded_and_its_key_is_its_own(factory: Factory) -> None:
    user = await _user(factory)
    await _held(factory, user, "job", 10)
    with pytest.raises(Exception, match="settle or release") as caught:
        await factory.refund("job")
    assert getattr(caught.value, "reason", None) == "not_refundable"
    with pytest.raises(Exception, match="different") as caught:
        await factory.charge(user, "image", "job", 10)
    assert getattr(caught.value, "reason", None) == "idempotency_key_reused"
    await factory.charge(user, "image", "a-charge", 1)
    with pytest.raises(Exception, match="different"):
        await factory.hold(user, "image", "a-charge", 1)


async def test_the_creation_replays_its_first_answer_after_a_settle(factory: Factory) -> None:
    user = await _user(factory)
    first = await _held(factory, user, "job", 10)
    await factory.settle(first.hold.id, 2)
    replayed = await _held(factory, user, "job", 10)
    assert replayed.replayed
    assert (replayed.hold, replayed.usage) == (first.hold, first.usage)


async def test_history_counts_what_holds_hold_and_keep(factory: Factory, db: Database) -> None:
    user = await _user(factory, credits=100)
    settled = await _held(factory, user, "settled", 10)
    await factory.settle(settled.hold.id, 3)
    released = await _held(factory, user, "released", 10)
    await factory.release(released.hold.id)
    await _held(factory, user, "active", 5)
    async with db.read() as conn:
        spent = await read_history(
            conn,
            user.id,
            start=None,
            end=None,
            granularity="day",
            kinds=["image"],
            now=factory.clock(),
            zone=factory.zone,
        )
    assert sum(bucket.plan for bucket in spent.buckets) == 8_000
    assert sum(bucket.operations["image"] for bucket in spent.buckets) == 2
    assert (await factory.usage(user)).current_credit == 92_000


async def test_postpaid_holds_give_postpaid_usage_back_first(factory: Factory) -> None:
    user = await _user(factory, credits=10, postpaid=True)
    held = await _held(factory, user, "job", 25)
    assert (held.hold.from_plan, held.hold.postpaid) == (10_000, 15_000)
    settled = await factory.settle(held.hold.id, 12)
    assert (settled.hold.from_plan, settled.hold.postpaid) == (10_000, 2_000)
    assert settled.usage.postpaid_used == 2_000
    assert await factory.reconcile() == []


# --- over HTTP -------------------------------------------------------------------------


async def _post_hold(
    admin: httpx.AsyncClient, key: str | None, body: dict[str, object]
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await admin.post(HOLDS, json=body, headers=headers)


async def test_the_hold_routes(admin: httpx.AsyncClient, factory: Factory) -> None:
    user = await _user(factory, credits=10, purchased=20)
    made = await _post_hold(admin, "job", {"userId": user.id, "kind": "image", "cost": 15})
    assert made.status_code == 201, made.text
    hold = made.json()["hold"]
    assert (hold["state"], hold["held"], hold["fromPlanCredit"]) == ("active", 15, 10)
    assert hold["fromPurchasedCredit"] == 5
    assert hold["finishedAt"] is None
    assert hold["expiresAt"] == "2026-11-25T10:15:00+00:00"
    assert made.json()["usage"]["currentCredit"] == 0
    again = await _post_hold(admin, "job", {"userId": user.id, "kind": "image", "cost": 15})
    assert again.content == made.content
    assert again.headers["idempotent-replayed"] == "true"
    listed = await admin.get(f"/api/admin/users/{user.id}/holds")
    assert listed.json() == {"holds": [hold]}
    path = f"{HOLDS}/{hold['holdId']}"
    settled = await admin.post(f"{path}/settle", json={"cost": 2.5})
    assert settled.status_code == 200, settled.text
    assert settled.json()["hold"]["state"] == "settled"
    usage = settled.json()["usage"]
    assert (usage["currentCredit"], usage["additionalCredit"]) == (7.5, 20)
    replay = await admin.post(f"{path}/settle", json={"cost": 2.5})
    assert replay.content == settled.content
    assert replay.headers["idempotent-replayed"] == "true"
    other = await admin.post(f"{path}/release")
    assert other.status_code == 409
    assert other.json()["data"] == "hold_not_active"
    assert (await admin.get(f"/api/admin/users/{user.id}/holds")).json() == {"holds": []}
    assert (await admin.get("/api/admin/reconcile")).json()["ok"]


@pytest.mark.parametrize(
    ("key", "body", "status", "reason"),
    [
        (None, {"userId": 1, "kind": "image"}, 400, "invalid_idempotency_key"),
        ("k", {"userId": 1, "kind": "video"}, 400, "unknown_kind"),
        ("k", {"userId": 1, "kind": "image", "ttlSeconds": 0}, 400, "bad_request"),
        ("k", {"userId": 1, "kind": "image", "ttlSeconds": 86_401}, 400, "bad_request"),
        ("k", {"userId": 1, "kind": "image", "ttlSeconds": 1.5}, 400, "bad_request"),
        ("k", {"userId": 1, "kind": "image", "cost": 0}, 400, "bad_request"),
        ("k", {"userId": 1, "kind": "image", "cost": -1}, 400, "bad_request"),
        ("k", {"userId": 1, "kind": "image", "price": 1}, 400, "bad_request"),
        ("k", {"kind": "image"}, 400, "bad_request"),
        ("k", {"userId": 999_999, "kind": "image"}, 404, "user_not_found"),
    ],
)
async def test_a_bad_hold_request_changes_nothing(
    admin: httpx.AsyncClient,
    factory: Factory,
    db: Database,
    key: str | None,
    body: dict[str, object],
    status: int,
    reason: str,
) -> None:
    user = await _user(factory)
    sent = {**body, "userId": user.id} if body.get("userId") == 1 else body
    before = await table_rows(db)
    response = await _post_hold(admin, key, sent)
    assert (response.status_code, response.json()["data"]) == (status, reason), response.text
    assert await table_rows(db) == before


async def test_bad_settles_and_releases_change_nothing(
    admin: httpx.AsyncClient, factory: Factory, db: Database
) -> None:
    user = await _user(factory)
    made = await _post_hold(admin, "job", {"userId": user.id, "kind": "image", "cost": 10})
    path = f"{HOLDS}/{made.json()['hold']['holdId']}"
    before = await table_rows(db)
    cases = [
        (f"{path}/settle", {"cost": 10.5}, 400, "bad_request"),
        (f"{path}/settle", {"cost": -1}, 400, "bad_request"),
        (f"{path}/settle", {}, 400, "bad_request"),
        (f"{path}/settle", {"cost": 1, "extra": 1}, 400, "bad_request"),
        (f"{HOLDS}/abc/settle", {"cost": 1}, 400, "bad_request"),
        (f"{HOLDS}/999999/settle", {"cost": 1}, 404, "hold_not_found"),
        (f"{HOLDS}/999999/release", None, 404, "hold_not_found"),
        (f"/api/admin/users/{user.id}x/holds", None, 400, "bad_request"),
    ]
    for url, body, status, reason in cases:
        if url.endswith("/holds"):
            response = await admin.get(url)
        else:
            response = await admin.post(url, json=body)
        assert (response.status_code, response.json()["data"]) == (status, reason), url
    assert (await admin.get("/api/admin/users/999999/holds")).status_code == 404
    assert await table_rows(db) == before


async def test_the_app_sweeps_expired_holds(
    environ: dict[str, str], db: Database, clock: FakeClock, factory: Factory
) -> None:
    user = await _user(factory)
    await _held(factory, user, "job", 4, ttl_seconds=1)
    clock.advance(2)
    app = App(Settings.from_environ({**environ, "FLAMEL_HOLD_SWEEP_SECONDS": "0.05"}), db, clock)
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    running = asyncio.create_task(app({"type": "lifespan"}, inbox.get, sent.put))
    assert (await sent.get())["type"] == "lifespan.startup.complete"
    for _ in range(100):
        async with db.read() as conn:
            state = await conn.fetchval("SELECT hold_state FROM charges")
        if state == "expired":
            break
        await asyncio.sleep(0.05)
    await inbox.put({"type": "lifespan.shutdown"})
    await running
    assert state == "expired"
    assert await factory.reconcile() == []


# --- concurrency -----------------------------------------------------------------------


@pytest.fixture
def slow_environ(environ: dict[str, str]) -> dict[str, str]:
    """Hundreds of holds queue for one account's lock: wait longer than 3 s for it."""
    return {**environ, "FLAMEL_DATABASE_TIMEOUT_SECONDS": "20"}


async def test_200_holds_against_137_credits_get_exactly_137(
    db: Database, factory: Factory, slow_environ: dict[str, str]
) -> None:
    user = await _user(factory, credits=100, purchased=37, max_ttp=None)
    with running_server(slow_environ, workers=2) as base_url:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=base_url, headers=ADMIN, limits=limits, timeout=30
        ) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        HOLDS,
                        json={"userId": user.id, "kind": "image"},
                        headers={"Idempotency-Key": f"storm-{n}"},
                    )
                    for n in range(200)
                )
            )
            usage = (await client.get(f"/api/admin/users/{user.id}/usage")).json()
            listed = (await client.get(f"/api/admin/users/{user.id}/holds")).json()
            clean = (await client.get("/api/admin/reconcile")).json()["ok"]
    assert Counter(r.status_code for r in responses) == {201: 137, 402: 63}
    assert (usage["currentCredit"], usage["additionalCredit"]) == (0, 0)
    assert len(listed["holds"]) == 137
    assert clean


async def test_settle_and_release_racing_on_one_hold_one_wins(
    db: Database, factory: Factory, slow_environ: dict[str, str]
) -> None:
    user = await _user(factory, credits=100)
    with running_server(slow_environ, workers=2) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=ADMIN, timeout=30) as client:
            # Made by the server, on its clock (the factory's is a fake one, days earlier).
            hold_ids = [
                (
                    await _post_hold(
                        client, f"race-{n}", {"userId": user.id, "kind": "image", "cost": 10}
                    )
                ).json()["hold"]["holdId"]
                for n in range(5)
            ]
            races = await asyncio.gather(
                *(
                    asyncio.gather(
                        client.post(f"{HOLDS}/{hold_id}/settle", json={"cost": 4}),
                        client.post(f"{HOLDS}/{hold_id}/release"),
                    )
                    for hold_id in hold_ids
                )
            )
            usage = (await client.get(f"/api/admin/users/{user.id}/usage")).json()
            clean = (await client.get("/api/admin/reconcile")).json()["ok"]
    settled = 0
    for settle, release in races:
        statuses = sorted((settle.status_code, release.status_code))
        assert statuses == [200, 409], (settle.text, release.text)
        settled += settle.status_code == 200
    assert usage["currentCredit"] == 100 - 4 * settled
    assert clean


async def test_hold_timestamps_are_instants(factory: Factory) -> None:
    user = await _user(factory)
    held = await _held(factory, user, "job", 1, ttl_seconds=holds.MAX_TTL_SECONDS)
    start = to_micros(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    assert held.hold.expires_at == start + 86_400 * 1_000_000


# --- the CLI ---------------------------------------------------------------------------


def test_the_holds_commands(environ: dict[str, str], database_url: str) -> None:
    reset_database(database_url)

    def ok(*args: str) -> Any:
        done = run_cli(environ, *args)
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
        return json.loads(done.stdout)

    plan = run_cli(environ, "plans", "create", "Pro", "--credits", "10", "--period", "month")
    assert plan.returncode == 0
    assert run_cli(environ, "users", "create", "ann@example.com", "--plan", "Pro").returncode == 0
    made = ok(
        "holds",
        "create",
        "ann@example.com",
        "image",
        "--cost",
        "6",
        "--ttl",
        "600",
        "--idempotency-key",
        "cli-job",
    )
    hold_id = str(made["hold"]["holdId"])
    assert made["usage"]["currentCredit"] == 4
    assert ok("holds", "list", "ann@example.com")["holds"] == [made["hold"]]
    settled = ok("holds", "settle", hold_id, "2.5")
    assert (settled["hold"]["state"], settled["usage"]["currentCredit"]) == ("settled", 7.5)
    refused = run_cli(environ, "holds", "release", hold_id)
    assert refused.returncode != 0
    assert "hold_not_active" in refused.stderr or "settled" in refused.stderr
    before = snapshot(database_url)
    for bad in (
        ("holds", "create", "ann@example.com", "image", "--ttl", "0", "--idempotency-key", "x"),
        ("holds", "settle", hold_id, "-1"),
        ("holds", "settle", "abc", "1"),
        ("holds", "list", "nobody@example.com"),
    ):
        done = run_cli(environ, *bad)
        assert done.returncode not in (0, 1), bad
        assert single_line(done.stderr).startswith("flamel-usage: "), done.stderr
    assert snapshot(database_url) == before
    assert ok("holds", "list", "ann@example.com") == {"holds": []}


# --- the Python SDK --------------------------------------------------------------------


async def test_the_admin_clients_hold_settle_release_and_list(app: App, factory: Factory) -> None:
    user = await _user(factory, credits=10)
    transport = httpx.ASGITransport(app=app)
    async with AsyncAdminClient(
        ADMIN_TOKEN, base_url="http://testserver", transport=transport
    ) as sdk:
        made = await sdk.hold(user.id, "image", cost=6, ttl_seconds=600, idempotency_key="sdk")
        assert (made.hold.state, made.hold.held, made.usage.current_credit) == ("active", 6, 4)
        assert not made.replayed
        again = await sdk.hold(user.id, "image", cost=6, ttl_seconds=600, idempotency_key="sdk")
        assert again.replayed
        assert again.hold == made.hold
        assert await sdk.list_holds(user.id) == [made.hold]
        settled = await sdk.settle_hold(made.hold.hold_id, 2)
        assert (settled.hold.state, settled.usage.current_credit) == ("settled", 8)
        assert (await sdk.settle_hold(made.hold.hold_id, 2)).replayed
        with pytest.raises(HoldNotActive):
            await sdk.release_hold(made.hold.hold_id)
        with pytest.raises(HoldNotFound):
            await sdk.release_hold(999_999)
        with pytest.raises(InsufficientCredit):
            await sdk.hold(user.id, "image", cost=9)
        second = await sdk.hold(user.id, "image", cost=1)
        released = await sdk.release_hold(second.hold.hold_id)
        assert (released.hold.state, released.usage.current_credit) == ("released", 8)
        assert await sdk.list_holds(user.id) == []
    with AdminClient(
        ADMIN_TOKEN, base_url="http://testserver", transport=httpx.MockTransport(_no_holds)
    ) as sync_sdk:
        assert sync_sdk.list_holds(user.id) == []


def _no_holds(request: httpx.Request) -> httpx.Response:
    assert request.url.path.endswith("/holds")
    return httpx.Response(200, json={"holds": []})

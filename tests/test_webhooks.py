"""Webhooks in one process, on SQLite and PostgreSQL: endpoints through the admin API,
the alerts a change fires (once per user, alert and period), and the dispatcher sending
them, signed, to a real receiver on 127.0.0.1, in order per user, with retries.

The dispatcher is driven by hand (``deliver_due``, ``sweep``) against the fake clock, so
each test decides when time passes; the processes' own dispatchers are tested in
``test_webhook_delivery.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from flamel_usage.client import (
    AsyncAdminClient,
    InvalidRequest,
    InvalidWebhook,
    NotFound,
    verify_webhook,
)
from flamel_usage.core.config import Settings
from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from flamel_usage.ledger import balances as ledger
from flamel_usage.webhooks.dispatcher import Dispatcher
from tests.conftest import ADMIN_TOKEN, FakeClock
from tests.factories import Factory
from tests.processes import run_cli
from tests.webhook_receiver import Receiver

ALL_EVENTS = ["usage.threshold_reached", "credit.depleted", "limit.reached", "credit.expiring"]


def error(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert (body["code"], body["data"]) == (status, reason)


@pytest.fixture
def hook_settings(environ: dict[str, str]) -> Settings:
    """Private addresses allowed (the receiver is on 127.0.0.1), and short retry times."""
    return Settings.from_environ(
        {
            **environ,
            "FLAMEL_WEBHOOK_ALLOW_PRIVATE": "on",
            "FLAMEL_WEBHOOK_BACKOFF_SECONDS": "1",
            "FLAMEL_WEBHOOK_RETRY_SECONDS": "60",
            "FLAMEL_WEBHOOK_DISABLE_SECONDS": "120",
        }
    )


@pytest.fixture
def now_clock(clock: FakeClock) -> FakeClock:
    """The fake clock at the real time: receivers check webhook-timestamp against theirs."""
    clock.set(datetime.now(UTC))
    return clock


@pytest.fixture
async def hooks(
    hook_settings: Settings, db: Database, now_clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """The admin API of a server that allows private webhook addresses."""
    app = App(hook_settings, db, now_clock)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http


@pytest.fixture
async def dispatcher(
    db: Database, hook_settings: Settings, now_clock: FakeClock
) -> AsyncIterator[Dispatcher]:
    sender = Dispatcher(db, hook_settings, now_clock)
    yield sender
    await sender.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def hook_factory(db: Database, now_clock: FakeClock, hook_settings: Settings) -> Factory:
    return Factory(db, now_clock, hook_settings.timezone)


async def register(
    hooks: httpx.AsyncClient, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    response = await hooks.post(
        "/api/admin/webhooks", json={"url": url, "events": events or ALL_EVENTS}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["secret"].startswith("whsec_")
    return created


async def drain(dispatcher: Dispatcher, clock: FakeClock, *, rounds: int = 20) -> int:
    """Send everything due, letting time pass between rounds for retries; the sends."""
    sent = 0
    for _ in range(rounds):
        claimed = await dispatcher.deliver_due()
        sent += claimed
        if not claimed:
            clock.advance(2)
            if not await dispatcher.deliver_due():
                break
            sent += 1
    return sent


async def deliveries(hooks: httpx.AsyncClient, endpoint_id: int) -> list[dict[str, Any]]:
    response = await hooks.get(f"/api/admin/webhooks/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


async def test_a_charge_crossing_80_percent_sends_exactly_one_signed_event(
    hooks: httpx.AsyncClient,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    created = await register(hooks, receiver.url)
    user = await hook_factory.user(await hook_factory.plan(credits=10, max_ttp=None))
    for number in range(7):
        await hook_factory.charge(user, "image", f"c{number}")
    assert await dispatcher.deliver_due() == 0  # 70%: nothing crossed
    await hook_factory.charge(user, "image", "c7")  # 80%
    await hook_factory.charge(user, "image", "c8")  # 90%: 80 fired already
    await drain(dispatcher, now_clock)
    [message] = receiver.received
    secret = created["secret"]
    event = Webhook(secret).verify(message.body, message.headers)
    assert event == verify_webhook(message.body, message.headers, secret)
    assert event["type"] == "usage.threshold_reached"
    data = event["data"]
    assert data["userId"] == user.id
    assert "externalId" not in data  # the user has none
    assert data["threshold"] == 80
    assert (data["currentCredit"], data["maxCredit"], data["additionalCredit"]) == (2, 10, 0)
    assert data["period"].count("/") == 1
    assert datetime.fromisoformat(event["timestamp"]).tzinfo is not None
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(message.body, message.headers)
    with pytest.raises(InvalidWebhook):
        verify_webhook(message.body + b" ", message.headers, secret)
    [logged] = await deliveries(hooks, created["endpoint"]["id"])
    assert logged["status"] == "delivered"
    assert logged["webhookId"] == message.webhook_id
    assert (logged["attempts"], logged["lastStatus"]) == (1, 200)


async def test_the_last_charge_fires_every_alert_it_reaches_in_order(
    hooks: httpx.AsyncClient,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    await register(hooks, receiver.url)
    user = await hook_factory.user(await hook_factory.plan(credits=2, max_ttp=2))
    await hook_factory.charge(user, "ttp", "first")  # 50%
    await hook_factory.charge(user, "ttp", "second")  # 100%, no credit, TTP limit
    await drain(dispatcher, now_clock)
    events = [message.event for message in receiver.received]
    assert [(e["type"], e["data"].get("threshold"), e["data"].get("limit")) for e in events] == [
        ("usage.threshold_reached", 80, None),
        ("usage.threshold_reached", 100, None),
        ("credit.depleted", None, None),
        ("limit.reached", None, "ttp"),
    ]
    assert all(e["data"]["currentCredit"] == 0 and e["data"]["ttpCount"] == 2 for e in events)
    # Refunded and spent again in the same period: nothing fires twice.
    await hook_factory.refund("second")
    await hook_factory.charge(user, "ttp", "third")
    await drain(dispatcher, now_clock)
    assert len(receiver.received) == 4


async def test_a_new_period_fires_again(
    hooks: httpx.AsyncClient,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    await register(hooks, receiver.url, ["usage.threshold_reached"])
    user = await hook_factory.user(await hook_factory.plan(credits=1, max_ttp=None))
    await hook_factory.charge(user, "image", "this period")
    now_clock.advance(32 * 86_400)
    await hook_factory.charge(user, "image", "next period")
    await drain(dispatcher, now_clock)
    periods = [message.event["data"]["period"] for message in receiver.received]
    assert len(periods) == 4  # 80 and 100, in each period
    assert periods[0] == periods[1] != periods[2] == periods[3]


async def test_a_receiver_down_then_up_gets_everything_in_order_per_user(
    hooks: httpx.AsyncClient,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    created = await register(hooks, receiver.url)
    plan = await hook_factory.plan(credits=2, max_ttp=2)
    users = [await hook_factory.user(plan) for _ in range(3)]
    receiver.status = 503
    for round_ in range(2):
        for user in users:
            await hook_factory.charge(user, "ttp", f"{user.id}-{round_}")
    for _ in range(3):  # the receiver fails: retried, later events wait their turn
        await dispatcher.deliver_due()
        now_clock.advance(3)
    log = await deliveries(hooks, created["endpoint"]["id"])
    assert len(log) == 12
    assert not receiver.received
    tried = [entry for entry in log if entry["attempts"]]
    assert len(tried) == 3  # the first event of each user only
    assert all(entry["lastStatus"] == 503 and entry["status"] == "pending" for entry in tried)
    receiver.status = 200
    now_clock.advance(60)  # every retry is due; the deadline is the event's time + 60 s
    await drain(dispatcher, now_clock)
    by_user: dict[int, list[str]] = {}
    for message in receiver.received:
        data = message.event["data"]
        by_user.setdefault(data["userId"], []).append(message.webhook_id)
    expected: dict[int, list[str]] = {}
    for entry in sorted(log, key=lambda entry: entry["id"]):
        expected.setdefault(entry["userId"], []).append(entry["webhookId"])
    assert by_user == expected
    assert all(
        entry["status"] == "delivered"
        for entry in await deliveries(hooks, created["endpoint"]["id"])
    )


async def test_retries_end_after_the_retry_window_and_a_failing_endpoint_is_disabled(
    hooks: httpx.AsyncClient,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    created = await register(hooks, receiver.url, ["usage.threshold_reached"])
    endpoint_id = created["endpoint"]["id"]
    user = await hook_factory.user(await hook_factory.plan(credits=10, max_ttp=None))
    receiver.status = 503
    await hook_factory.charge(user, "image", "eight", cost=8)  # 80%
    assert await dispatcher.deliver_due() == 1
    now_clock.advance(61)  # past the 60 s retry window
    assert await dispatcher.deliver_due() == 1
    [first] = await deliveries(hooks, endpoint_id)
    assert first["status"] == "failed"
    assert first["attempts"] == 2
    await hook_factory.charge(user, "image", "two", cost=2)  # 100%: its turn now
    now_clock.advance(60)  # failing for 121 s: past the 120 s of the test settings
    assert await dispatcher.deliver_due() == 1
    [endpoint] = (await hooks.get("/api/admin/webhooks")).json()["endpoints"]
    assert endpoint["enabled"] is False
    assert endpoint["disabledAt"] is not None
    log = await deliveries(hooks, endpoint_id)
    assert [entry["status"] for entry in log] == ["failed", "failed"]
    assert not receiver.received
    # A redelivery enables the endpoint and sends with the same webhook-id.
    receiver.status = 200
    again = await hooks.post(
        f"/api/admin/webhooks/{endpoint_id}/deliveries/{first['id']}/redeliver"
    )
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "pending"
    assert await dispatcher.deliver_due() == 1
    [message] = receiver.received
    assert message.webhook_id == first["webhookId"]
    [endpoint] = (await hooks.get("/api/admin/webhooks")).json()["endpoints"]
    assert endpoint["enabled"] is True


async def test_private_addresses_are_refused_without_the_flag(admin: httpx.AsyncClient) -> None:
    for url in (
        "https://127.0.0.1/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost/hooks",
        "https://[::1]/hooks",
        "https://10.1.2.3/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "http://example.com/hooks",  # plain http
        "ftp://example.com/hooks",
        "https://user:pw@example.com/hooks",
        "not a url",
    ):
        response = await admin.post("/api/admin/webhooks", json={"url": url, "events": ALL_EVENTS})
        error(response, 400, "bad_request")
    listed = await admin.get("/api/admin/webhooks")
    assert listed.json() == {"endpoints": []}


async def test_an_address_turned_private_is_refused_at_send(
    hooks: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    """Registered while allowed (as a name that resolved publicly then would be), sent
    by a dispatcher that does not allow private addresses: checked again, not sent."""
    created = await register(hooks, f"https://127.0.0.1:{receiver.port}/hooks")
    user = await hook_factory.user(await hook_factory.plan(credits=1, max_ttp=None))
    await hook_factory.charge(user, "image", "all")
    strict = Dispatcher(db, settings, now_clock)
    try:
        assert await strict.deliver_due() == 1
    finally:
        await strict.close()
    log = await deliveries(hooks, created["endpoint"]["id"])
    tried = [entry for entry in log if entry["attempts"]]
    assert tried
    assert all("private" in entry["lastError"] for entry in tried)
    assert all(entry["lastStatus"] is None for entry in tried)
    assert not receiver.received


async def test_endpoints_admin_api(
    hooks: httpx.AsyncClient,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    for body in (
        {"url": receiver.url, "events": []},
        {"url": receiver.url, "events": ["credit.gone"]},
        {"url": receiver.url, "events": ["credit.depleted", "credit.depleted"]},
        {"events": ALL_EVENTS},
        {"url": receiver.url, "events": ALL_EVENTS, "secret": "mine"},
        {"url": receiver.url, "events": ALL_EVENTS, "description": "x" * 201},
    ):
        error(await hooks.post("/api/admin/webhooks", json=body), 400, "bad_request")
    assert (await hooks.get("/api/admin/webhooks")).json() == {"endpoints": []}
    for method, path in (
        ("DELETE", "/api/admin/webhooks/99"),
        ("POST", "/api/admin/webhooks/99/rotate"),
        ("GET", "/api/admin/webhooks/99/deliveries"),
        ("POST", "/api/admin/webhooks/99/deliveries/1/redeliver"),
    ):
        error(await hooks.request(method, path), 404, "not_found")
    error(await hooks.delete("/api/admin/webhooks/x"), 400, "bad_request")

    body = {"url": receiver.url, "events": ["credit.depleted"], "description": "alerts"}
    response = await hooks.post("/api/admin/webhooks", json=body)
    assert response.status_code == 201
    created = response.json()
    endpoint = created["endpoint"]
    assert (endpoint["url"], endpoint["events"], endpoint["description"]) == (
        receiver.url,
        ["credit.depleted"],
        "alerts",
    )
    listed = (await hooks.get("/api/admin/webhooks")).json()["endpoints"]
    assert listed == [endpoint]
    assert "secret" not in listed[0]

    rotated = await hooks.post(f"/api/admin/webhooks/{endpoint['id']}/rotate")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != created["secret"]
    user = await hook_factory.user(await hook_factory.plan(credits=1, max_ttp=None))
    await hook_factory.charge(user, "image", "all")  # depleted (80/100 are not taken)
    await drain(dispatcher, now_clock)
    [message] = receiver.received
    assert message.event["type"] == "credit.depleted"
    Webhook(new_secret).verify(message.body, message.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(message.body, message.headers)

    deleted = await hooks.delete(f"/api/admin/webhooks/{endpoint['id']}")
    assert deleted.status_code == 204
    assert (await hooks.get("/api/admin/webhooks")).json() == {"endpoints": []}
    error(await hooks.get(f"/api/admin/webhooks/{endpoint['id']}/deliveries"), 404, "not_found")


async def test_without_endpoints_an_alert_is_marked_and_nothing_queued(
    db: Database, hook_factory: Factory
) -> None:
    user = await hook_factory.user(await hook_factory.plan(credits=1, max_ttp=None))
    await hook_factory.charge(user, "image", "all")
    async with db.read() as conn:
        assert await conn.fetchval("SELECT COUNT(*) FROM webhook_alerts") == 3
        assert await conn.fetchval("SELECT COUNT(*) FROM webhook_events") == 0
        assert await conn.fetchval("SELECT COUNT(*) FROM webhook_deliveries") == 0


async def test_a_failed_charge_fires_nothing(
    hooks: httpx.AsyncClient, db: Database, receiver: Receiver, hook_factory: Factory
) -> None:
    await register(hooks, receiver.url)
    user = await hook_factory.user(await hook_factory.plan(credits=1, max_ttp=None))
    await hook_factory.charge(user, "image", "too much", cost=2)  # refused: 402
    async with db.read() as conn:
        assert await conn.fetchval("SELECT COUNT(*) FROM webhook_events") == 0


async def test_a_downgrade_past_a_threshold_fires_it(
    hooks: httpx.AsyncClient,
    db: Database,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    await register(hooks, receiver.url, ["usage.threshold_reached"])
    user = await hook_factory.user(await hook_factory.plan(credits=10, max_ttp=None))
    small = await hook_factory.plan(credits=5, max_ttp=None)
    await hook_factory.charge(user, "image", "four", cost=4)  # 40% of 10; 80% of 5
    async with db.transaction() as conn:
        await ledger.change_plan(
            conn,
            user.id,
            small.name,
            at_next_period=False,
            now=now_clock(),
            zone=hook_factory.zone,
        )
    await drain(dispatcher, now_clock)
    [message] = receiver.received
    assert message.event["data"]["threshold"] == 80
    assert message.event["data"]["maxCredit"] == 5


async def test_credit_expiring_within_the_days_fires_once_per_purchase(
    hooks: httpx.AsyncClient,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
    now_clock: FakeClock,
) -> None:
    await register(hooks, receiver.url, ["credit.expiring"])
    user = await hook_factory.user(await hook_factory.plan(credits=10, max_ttp=None))
    soon = to_micros(datetime.now(UTC) + timedelta(days=3))
    later = to_micros(datetime.now(UTC) + timedelta(days=30))
    purchase = await hook_factory.purchase(user, 5, expires_at=soon)
    await hook_factory.purchase(user, 7, expires_at=later)
    await hook_factory.purchase(user, 9)  # never expires
    assert await dispatcher.sweep() == 1
    assert await dispatcher.sweep() == 0
    await drain(dispatcher, now_clock)
    [message] = receiver.received
    data = message.event["data"]
    assert message.event["type"] == "credit.expiring"
    assert (data["purchaseId"], data["expiringCredit"], data["additionalCredit"]) == (
        purchase.id,
        5,
        21,
    )
    assert datetime.fromisoformat(data["expiresAt"]) == datetime.fromtimestamp(soon / 1e6, UTC)


async def test_the_cli_manages_endpoints(
    environ: dict[str, str], db: Database, receiver: Receiver
) -> None:
    refused = run_cli(environ, "webhooks", "add", "https://169.254.169.254/latest")
    assert refused.returncode == 2
    assert "private" in refused.stderr
    allowed = {**environ, "FLAMEL_WEBHOOK_ALLOW_PRIVATE": "on"}
    added = run_cli(allowed, "webhooks", "add", receiver.url, "--event", "credit.depleted")
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert created["secret"].startswith("whsec_")
    assert created["endpoint"]["events"] == ["credit.depleted"]
    endpoint_id = str(created["endpoint"]["id"])
    listed = json.loads(run_cli(allowed, "webhooks", "list").stdout)
    assert listed == {"endpoints": [created["endpoint"]]}
    log = run_cli(allowed, "webhooks", "deliveries", endpoint_id)
    assert json.loads(log.stdout) == {"deliveries": []}
    missing = run_cli(allowed, "webhooks", "redeliver", endpoint_id, "7")
    assert missing.returncode == 2
    assert run_cli(allowed, "webhooks", "remove", endpoint_id).returncode == 0
    assert json.loads(run_cli(allowed, "webhooks", "list").stdout) == {"endpoints": []}
    assert run_cli(allowed, "webhooks", "remove", endpoint_id).returncode == 2


async def test_the_admin_clients_manage_endpoints(
    hook_settings: Settings,
    db: Database,
    now_clock: FakeClock,
    dispatcher: Dispatcher,
    receiver: Receiver,
    hook_factory: Factory,
) -> None:
    transport = httpx.ASGITransport(app=App(hook_settings, db, now_clock))
    async with AsyncAdminClient(
        ADMIN_TOKEN, base_url="http://testserver", transport=transport
    ) as sdk:
        with pytest.raises(InvalidRequest):
            await sdk.create_webhook(receiver.url, ["credit.gone"])
        created = await sdk.create_webhook(receiver.url, ALL_EVENTS, description="alerts")
        assert created.endpoint.events == tuple(ALL_EVENTS)
        assert created.endpoint.description == "alerts"
        assert await sdk.list_webhooks() == [created.endpoint]
        secret = await sdk.rotate_webhook_secret(created.endpoint.id)
        assert secret != created.secret
        user = await hook_factory.user(await hook_factory.plan(credits=1, max_ttp=None))
        await hook_factory.charge(user, "image", "all")
        await drain(dispatcher, now_clock)
        assert len(receiver.received) == 3
        for message in receiver.received:
            verify_webhook(message.body, message.headers, secret)
        log = await sdk.webhook_deliveries(created.endpoint.id)
        assert [entry.status for entry in log] == ["delivered"] * 3
        assert {entry.webhook_id for entry in log} == {m.webhook_id for m in receiver.received}
        again = await sdk.redeliver_webhook(created.endpoint.id, log[0].id)
        assert (again.status, again.webhook_id) == ("pending", log[0].webhook_id)
        with pytest.raises(NotFound):
            await sdk.redeliver_webhook(created.endpoint.id, 999)
        await sdk.delete_webhook(created.endpoint.id)
        assert await sdk.list_webhooks() == []
        with pytest.raises(NotFound):
            await sdk.delete_webhook(created.endpoint.id)

"""Webhooks from real ``flamel-usage serve`` processes to a real receiver on 127.0.0.1.

The dispatcher each worker runs delivers what was committed even when the server is
SIGKILLed between the commit and the send (the outbox is in the database), and two
servers on one PostgreSQL deliver every event, each once (a duplicate only by a retry,
with the same webhook-id). What they send verifies with the ``standardwebhooks``
packages of PyPI and of npm.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import defaultdict
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from flamel_usage.db.gateway import Database
from tests.conftest import ADMIN_TOKEN
from tests.node_packages import INTEROP_DIR, node_with_packages
from tests.processes import http_client, server_process
from tests.webhook_receiver import Received, Receiver

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: What a user on a 2-credit plan with a TTP limit of 2 gets from 2 TTP charges.
FOUR_ALERTS = [
    ("usage.threshold_reached", 80),
    ("usage.threshold_reached", 100),
    ("credit.depleted", None),
    ("limit.reached", None),
]


def _webhook_env(environ: dict[str, str], poll: str) -> dict[str, str]:
    return {
        **environ,
        "FLAMEL_WEBHOOK_ALLOW_PRIVATE": "on",
        "FLAMEL_WEBHOOK_POLL_SECONDS": poll,
        "FLAMEL_WEBHOOK_BACKOFF_SECONDS": "0.2",
    }


def _ok(response: httpx.Response, status: int = 201) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _setup(http: httpx.Client, url: str, plan: str = "Small") -> str:
    """A plan of 2 credits and 2 TTPs, and an endpoint for every event; its secret."""
    _ok(
        http.post(
            "/api/admin/plans",
            json={"name": plan, "periodUnit": "month", "maxCredit": 2, "maxTtpCount": 2},
        )
    )
    events = ["usage.threshold_reached", "credit.depleted", "limit.reached", "credit.expiring"]
    created = _ok(http.post("/api/admin/webhooks", json={"url": url, "events": events}))
    secret: str = created["secret"]
    return secret


def _user(http: httpx.Client, email: str, plan: str = "Small") -> int:
    user_id: int = _ok(http.post("/api/admin/users", json={"email": email, "plan": plan}))["id"]
    return user_id


def _charge(http: httpx.Client, user_id: int, key: str) -> None:
    headers = {"Idempotency-Key": key}
    _ok(http.post("/api/admin/charges", json={"userId": user_id, "kind": "ttp"}, headers=headers))


def _alerts(messages: list[Received]) -> list[tuple[str, int | None]]:
    return [(m.event["type"], m.event["data"].get("threshold")) for m in messages]


def _verify_with_npm(messages: list[Received], secret: str) -> list[dict[str, Any]]:
    node = node_with_packages()
    given = [{"secret": secret, "headers": m.headers, "body": m.body.decode()} for m in messages]
    result = subprocess.run(
        [node, str(INTEROP_DIR / "verify-webhook.js")],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    verified: list[dict[str, Any]] = json.loads(result.stdout)
    return verified


async def test_sigkill_between_commit_and_send_still_delivers_after_restart(
    environ: dict[str, str], db: Database
) -> None:
    receiver = Receiver()  # down: nothing listens on its port yet
    # The first server's dispatcher polls at start, then not for a minute: the events
    # it commits are still unsent when it is killed.
    with server_process(_webhook_env(environ, "60")) as first:
        with http_client(first.base_url, **ADMIN) as http:
            secret = _setup(http, receiver.url)
            user_id = _user(http, "kill@example.com")
            _charge(http, user_id, "one")
            _charge(http, user_id, "two")
        first.kill()
    async with db.read() as conn:
        pending = "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'"
        assert await conn.fetchval(pending) == 4
    with receiver, server_process(_webhook_env(environ, "0.2")):
        messages = receiver.wait_for(4)
    assert _alerts(messages) == FOUR_ALERTS
    assert len({m.webhook_id for m in messages}) == 4
    for message in messages:
        event = Webhook(secret).verify(message.body, message.headers)
        assert event["data"]["userId"] == user_id
    verified = _verify_with_npm(messages, secret)
    assert all(result["ok"] for result in verified), verified
    assert [r["payload"] for r in verified] == [m.event for m in messages]
    forged = _verify_with_npm(messages[:1], "whsec_" + "QUJD" * 8)
    assert forged[0]["ok"] is False


async def test_a_receiver_down_for_a_while_gets_everything_in_order(
    environ: dict[str, str], db: Database
) -> None:
    receiver = Receiver()
    with (
        server_process(_webhook_env(environ, "0.1")) as server,
        http_client(server.base_url, **ADMIN) as http,
    ):
        secret = _setup(http, receiver.url)
        users = [_user(http, f"down{n}@example.com") for n in range(3)]
        for user_id in users:
            _charge(http, user_id, f"{user_id}-a")
            _charge(http, user_id, f"{user_id}-b")
        async with db.read() as conn:
            tried = "SELECT COUNT(*) FROM webhook_deliveries WHERE attempts > 0"
            for _ in range(100):
                if await conn.fetchval(tried) >= 3:
                    break
                await asyncio.sleep(0.05)
            assert await conn.fetchval(tried) == 3  # the head of each user's queue
        with receiver:
            messages = receiver.wait_for(12)
    by_user: dict[int, list[tuple[str, int | None]]] = defaultdict(list)
    for message in messages:
        Webhook(secret).verify(message.body, message.headers)
        by_user[message.event["data"]["userId"]].append(_alerts([message])[0])
    assert dict(by_user) == dict.fromkeys(users, FOUR_ALERTS)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_servers_on_one_postgresql_deliver_each_event(
    environ: dict[str, str], db: Database
) -> None:
    with Receiver() as receiver:
        env = _webhook_env(environ, "0.05")
        with (
            server_process(env) as one,
            server_process(env) as two,
            http_client(one.base_url, **ADMIN) as first,
            http_client(two.base_url, **ADMIN) as second,
        ):
            secret = _setup(first, receiver.url)
            users = [_user(first, f"node{n}@example.com") for n in range(8)]
            for round_ in ("a", "b"):
                for number, user_id in enumerate(users):
                    http = first if number % 2 else second
                    _charge(http, user_id, f"{user_id}-{round_}")
            receiver.wait_for(32)
            await asyncio.sleep(1.0)  # room for a duplicate to show up
            messages = list(receiver.received)
    async with db.read() as conn:
        ids = {row[0] for row in await conn.fetchall("SELECT message_id FROM webhook_events")}
        delivered = await conn.fetchval(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'delivered'"
        )
    assert len(ids) == 32
    assert delivered == 32
    assert {m.webhook_id for m in messages} == ids
    seen: dict[str, bytes] = {}
    for message in messages:  # a duplicate is a retry: same id, same body
        assert seen.setdefault(message.webhook_id, message.body) == message.body
        Webhook(secret).verify(message.body, message.headers)
    by_user: dict[int, list[tuple[str, int | None]]] = defaultdict(list)
    for message in {m.webhook_id: m for m in messages}.values():
        by_user[message.event["data"]["userId"]].append(_alerts([message])[0])
    assert dict(by_user) == dict.fromkeys(users, FOUR_ALERTS)

"""The admin clients against the real service, on both stores.

In process (``httpx.ASGITransport`` on the app, the fake clock): every call and the
refusals a platform's service meets. Then a real ``flamel-usage serve`` behind a TCP
proxy that lets a request reach the server, waits for the server to answer (it answers
after its transaction committed) and cuts the connection before the answer reaches the
client: a charge or a purchase is retried with the same key and replayed, made once.
"""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime

import httpx
import pytest

from flamel_usage.client import (
    AdminClient,
    AlreadyRefunded,
    AsyncAdminClient,
    AsyncClient,
    AuthenticationError,
    ChargeNotFound,
    IdempotencyKeyReused,
    InsufficientCredit,
    InvalidRequest,
    KeyNotFound,
    LimitExceeded,
    NotRefundable,
    PlanNotFound,
    UserExists,
    UserNotFound,
    WrongApiKey,
)
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from tests.conftest import ADMIN_TOKEN
from tests.factories import Factory
from tests.processes import running_server

APP_URL = "http://testserver"
NEXT_YEAR = datetime(2027, 6, 1, tzinfo=UTC)  # after the fake clock's now


@pytest.fixture
async def admin(app: App) -> AsyncIterator[AsyncAdminClient]:
    transport = httpx.ASGITransport(app=app)
    async with AsyncAdminClient(ADMIN_TOKEN, base_url=APP_URL, transport=transport) as client:
        yield client


def as_customer(app: App, key: str) -> AsyncClient:
    return AsyncClient(key, base_url=APP_URL, transport=httpx.ASGITransport(app=app))


async def test_a_user_is_created_moved_keyed_and_credited(
    app: App, admin: AsyncAdminClient, factory: Factory
) -> None:
    await factory.plan(name="Pro", credits=100, max_ttp=10)
    await factory.plan(name="Max", credits=500, max_ttp=None)
    user = await admin.create_user(
        " Ada@Example.com", "Pro", anchor=datetime(2026, 11, 1, tzinfo=UTC)
    )
    assert (user.email, user.plan, user.anchor) == (
        "ada@example.com",
        "Pro",
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert user.external_id is None
    assert await admin.get_user(user.id) == user
    platform_user = await admin.create_user("bo@example.com", "Pro", external_id=42)
    assert platform_user.external_id == "42"
    assert await admin.get_user(platform_user.id) == platform_user

    later = await admin.change_plan(user.id, "Max", effective="next_period")
    assert (later.plan, later.pending_plan, later.usage.max_credit) == ("Pro", "Max", 100)
    now = await admin.change_plan(user.id, "Max")
    assert (now.plan, now.pending_plan, now.usage.max_credit) == ("Max", None, 500)

    key = await admin.create_key(user.id, name="worker", expires_at=NEXT_YEAR)
    assert (key.user_id, key.name, key.expires_at) == (user.id, "worker", NEXT_YEAR)
    assert key.key.startswith(key.prefix)
    bought = await admin.buy_credits(user.id, 2.5, expires_at=NEXT_YEAR)
    assert (bought.purchase.amount, bought.purchase.expires_at) == (2.5, NEXT_YEAR)
    assert bought.usage.additional_credit == 2.5

    async with as_customer(app, key.key) as customer:
        assert await customer.usage() == await admin.user_usage(user.id)
        await admin.revoke_key(key.id)
        await admin.revoke_key(key.id)  # again: nothing changes
        with pytest.raises(WrongApiKey):
            await customer.usage()


async def test_charges_are_made_once_replayed_and_refunded_once(
    admin: AsyncAdminClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=2, max_ttp=1)
    user = await factory.user(plan)
    first = await admin.charge(user.id, "image", cost=1.5, idempotency_key="job-1")
    again = await admin.charge(user.id, "image", cost=1.5, idempotency_key="job-1")
    assert not first.replayed
    assert again.replayed
    assert again.charge == first.charge
    assert (first.charge.cost, first.charge.from_plan_credit, first.usage.current_credit) == (
        1.5,
        1.5,
        0.5,
    )
    generated = await admin.charge(user.id, "ttp", cost=0.25)
    assert uuid.UUID(generated.charge.idempotency_key).version == 4

    with pytest.raises(IdempotencyKeyReused) as reused:
        await admin.charge(user.id, "image", cost=1, idempotency_key="job-1")
    assert reused.value.idempotency_key == "job-1"
    with pytest.raises(InsufficientCredit):
        await admin.charge(user.id, "image", cost=5, idempotency_key="job-2")
    with pytest.raises(InsufficientCredit):  # the refusal is kept under its key
        await admin.charge(user.id, "image", cost=5, idempotency_key="job-2")
    with pytest.raises(LimitExceeded) as limited:
        await admin.charge(user.id, "ttp", cost=0.25)
    assert limited.value.reason == "ttp_limit_exceeded"

    refunded = await admin.refund("job-1")
    assert refunded.charge.refunded_at is not None
    assert refunded.usage.current_credit == 2 - 0.25
    with pytest.raises(AlreadyRefunded):
        await admin.refund("job-1")
    with pytest.raises(NotRefundable):
        await admin.refund("job-2")
    with pytest.raises(ChargeNotFound):
        await admin.refund("never/made")
    assert await factory.reconcile() == []


async def test_the_refusals_a_service_meets(
    app: App, admin: AsyncAdminClient, factory: Factory
) -> None:
    user = await factory.user(await factory.plan(name="Pro"))
    with pytest.raises(UserExists):
        await admin.create_user(user.email, "Pro")
    with pytest.raises(PlanNotFound):
        await admin.create_user("new@example.com", "No such plan")
    unknown_user = [
        lambda: admin.get_user(999_999),
        lambda: admin.user_usage(999_999),
        lambda: admin.create_key(999_999),
        lambda: admin.buy_credits(999_999, 1),
        lambda: admin.charge(999_999, "image"),
    ]
    for call in unknown_user:
        with pytest.raises(UserNotFound):
            await call()
    with pytest.raises(PlanNotFound):
        await admin.change_plan(user.id, "No such plan")
    with pytest.raises(KeyNotFound):
        await admin.revoke_key(999_999)
    with pytest.raises(InvalidRequest) as unknown:
        await admin.charge(user.id, "teleport")
    assert unknown.value.reason == "unknown_kind"
    transport = httpx.ASGITransport(app=app)
    async with AsyncAdminClient("wrong-token", base_url=APP_URL, transport=transport) as wrong:
        with pytest.raises(AuthenticationError) as refused:
            await wrong.user_usage(user.id)
    assert refused.value.reason == "admin_unauthorized"


# --- A real server, and an answer lost on the way back ----------------------------------


class LosingProxy:
    """A TCP proxy on 127.0.0.1 to ``upstream``. On its first ``losses`` connections, the
    request reaches the server, and when the server's answer starts, both connections
    are reset: the client never sees it. Later connections are forwarded both ways."""

    def __init__(self, upstream: str, losses: int) -> None:
        host, port = httpx.URL(upstream).host, httpx.URL(upstream).port
        self.upstream = (host, port or 80)
        self.losses = losses
        self.lost = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self._start(threading.Thread(target=self._accept, daemon=True))

    def _start(self, thread: threading.Thread) -> None:
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                with self.lock:
                    lose = self.lost < self.losses
                    self.lost += lose
                self._start(threading.Thread(target=self._serve, args=(client, lose), daemon=True))

    def _serve(self, client: socket.socket, lose: bool) -> None:
        with client, socket.create_connection(self.upstream, timeout=30) as server:
            request = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            request.start()
            if lose:
                with suppress(OSError):
                    server.recv(1)  # the answer starts: the server has committed
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.shutdown(socket.SHUT_RD)  # ends the request's pump; closing resets
            else:
                self._pump(server, client)
            request.join(timeout=30)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        with suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)


@contextmanager
def losing_proxy(upstream: str, losses: int) -> Iterator[LosingProxy]:
    proxy = LosingProxy(upstream, losses)
    try:
        yield proxy
    finally:
        proxy.close()


async def charges_made(db: Database, key: str) -> tuple[int, int]:
    """How many charges the ledger holds under ``key``, and how many entries they wrote."""
    async with db.read() as conn:
        charges = await conn.fetchval("SELECT COUNT(*) FROM charges WHERE idempotency_key = ?", key)
        entries = await conn.fetchval(
            "SELECT COUNT(*) FROM ledger_entries e JOIN charges c ON c.id = e.charge_id"
            " WHERE c.idempotency_key = ?",
            key,
        )
    return int(charges), int(entries)


async def test_a_charge_whose_answer_is_lost_is_retried_and_charged_once(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    user = await factory.user(await factory.plan(credits=10, max_ttp=None))
    with running_server(environ) as base_url:
        with losing_proxy(base_url, losses=1) as proxy:
            with AdminClient(ADMIN_TOKEN, base_url=proxy.url, backoff=0.05) as admin:
                result = admin.charge(user.id, "ttp", cost=1.5)
            assert proxy.lost == 1
        with losing_proxy(base_url, losses=2) as proxy:
            async with AsyncAdminClient(ADMIN_TOKEN, base_url=proxy.url, backoff=0.05) as aadmin:
                chosen = await aadmin.charge(user.id, "image", cost=2, idempotency_key="render/7")
            assert proxy.lost == 2
        with AdminClient(ADMIN_TOKEN, base_url=base_url) as direct:
            usage = direct.user_usage(user.id)
    assert result.replayed
    assert chosen.replayed
    assert uuid.UUID(result.charge.idempotency_key).version == 4
    assert chosen.charge.idempotency_key == "render/7"
    assert usage.current_credit == 10 - 1.5 - 2
    assert usage.ttp_count == 1
    assert await charges_made(db, result.charge.idempotency_key) == (1, 2)  # plan credit, count
    assert await charges_made(db, "render/7") == (1, 1)
    assert await factory.reconcile() == []


async def test_a_purchase_whose_answer_is_lost_is_retried_and_sold_once(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    user = await factory.user(await factory.plan(credits=10))
    with running_server(environ) as base_url:
        with losing_proxy(base_url, losses=1) as proxy:
            with AdminClient(ADMIN_TOKEN, base_url=proxy.url, backoff=0.05) as admin:
                result = admin.buy_credits(user.id, 3)
            assert proxy.lost == 1
        with losing_proxy(base_url, losses=2) as proxy:
            async with AsyncAdminClient(ADMIN_TOKEN, base_url=proxy.url, backoff=0.05) as aadmin:
                chosen = await aadmin.buy_credits(user.id, 2, idempotency_key="order/7")
            assert proxy.lost == 2
    assert result.replayed
    assert chosen.replayed
    assert result.usage.additional_credit == 3
    assert chosen.usage.additional_credit == 5
    async with db.read() as conn:
        keys = await conn.fetchall("SELECT idempotency_key FROM credit_purchases ORDER BY id")
    first, second = (row["idempotency_key"] for row in keys)  # sold once each
    assert uuid.UUID(first).version == 4
    assert second == "order/7"
    assert await factory.reconcile() == []

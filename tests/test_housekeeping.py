"""Housekeeping, run by each worker once a minute: what has ended is deleted.

Run here through the app's lifespan, as uvicorn runs it, with the minute shortened.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from flamel_usage.db.gateway import Database
from flamel_usage.http import app as app_module
from flamel_usage.http.app import App
from tests.conftest import FakeClock
from tests.factories import Factory

PASSWORD = "correct horse battery staple"


async def _count(db: Database, statement: str, *args: object) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval(statement, *args))


async def _one_pass(app: App, db: Database, now: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the app's lifespan until its housekeeping has deleted the ended throttle
    windows (a few milliseconds; five seconds at most), then stop it."""
    monkeypatch.setattr(app_module, "FLUSH_INTERVAL_SECONDS", 0.01)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    try:
        deadline = time.monotonic() + 5
        ended = "SELECT count(*) FROM auth_failures WHERE window_end <= ?"
        while await _count(db, ended, now):
            assert time.monotonic() < deadline, f"no housekeeping pass: {sent}"
            await asyncio.sleep(0.01)
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, timeout=5)
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_housekeeping_deletes_expired_sessions_and_ended_throttle_windows(
    app: App,
    client: httpx.AsyncClient,
    db: Database,
    factory: Factory,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await factory.user(password=PASSWORD)
    login = {"email": user.email, "password": PASSWORD}
    wrong = {"email": user.email, "password": "not " + PASSWORD}
    ttl = app.services.settings.session_ttl_seconds

    # The window of this failure's account bucket ends long before the pass; that of
    # the last failure goes on.
    unknown = {"email": "nobody@example.com", "password": PASSWORD}
    assert (await client.post("/api/auth/login", json=unknown)).status_code == 401
    assert (await client.post("/api/auth/login", json=login)).status_code == 200
    clock.advance(ttl / 2)
    assert (await client.post("/api/auth/login", json=login)).status_code == 200
    clock.advance(ttl / 2 + 1)  # the first session has expired, the second not
    assert (await client.post("/api/auth/login", json=wrong)).status_code == 401
    assert await _count(db, "SELECT count(*) FROM sessions") == 2

    await _one_pass(app, db, clock(), monkeypatch)

    assert await _count(db, "SELECT count(*) FROM sessions WHERE expires_at <= ?", clock()) == 0
    assert await _count(db, "SELECT count(*) FROM sessions WHERE expires_at > ?", clock()) == 1
    assert await _count(db, "SELECT count(*) FROM auth_failures WHERE window_end > ?", clock()) > 0

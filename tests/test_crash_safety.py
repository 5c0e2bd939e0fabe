"""Crash safety of charges: a real server (two workers) killed or stopped mid-storm.

SIGKILL of the whole process group (server and workers, nothing gets to clean up) in
the middle of several hundred concurrent charges, then a new server on the same
database: every acknowledged charge is in the ledger, nothing is half-applied, and
retrying every request with its idempotency key charges each key exactly once.
SIGTERM to the server process alone (what a supervisor sends) drains the requests in
flight: each answer is complete, each committed charge was answered, the exit code is 0.

Bounded everywhere: a fixed number of requests, each with a timeout, the whole storm
with a deadline, every process start and stop. Only 127.0.0.1. The storm sends all its
requests at once over at most ``CONNECTIONS`` connections, so when the server goes
away after ``STORM // 3`` answers, at least ``STORM - STORM // 3 - CONNECTIONS``
requests cannot have been answered: the interruption always lands mid-storm.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx
import orjson
import pytest

from flamel_usage.db.gateway import Database
from flamel_usage.http.api.admin.metering import charge_answer
from flamel_usage.metering.idempotency import read_record
from tests.conftest import ADMIN_TOKEN
from tests.processes import STOP_TIMEOUT_S, ServerProcess, server_process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STORM = 600
CONNECTIONS = 200
INTERRUPT_AFTER = STORM // 3
PLAN_CREDITS = 1000
MILLI = 1000
STORM_DEADLINE_S = 60.0


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    """The servers of these storms wait longer for the database than the default 3 s.

    Hundreds of charges for one account queue for its row lock, one at a time; on a
    loaded machine (CI beside other work) the last of them can wait more than 3 s for a
    pooled connection and get the 503 that is right for an overloaded server. What
    these tests check is what the ledger keeps, not that bound.
    """
    return {**environ, "FLAMEL_DATABASE_TIMEOUT_SECONDS": "20"}


@dataclass
class Attempt:
    """One charge request and what came back of it."""

    key: str
    status: int | None = None
    body: bytes | None = None
    replayed: bool = False
    error: str | None = None

    @property
    def answered(self) -> bool:
        """A complete response arrived (status, headers and the whole body)."""
        return self.body is not None and self.error is None

    @property
    def truncated(self) -> bool:
        """The status line arrived, the rest of the response did not."""
        return self.status is not None and not self.answered


def _keys(prefix: str) -> list[str]:
    return [f"{prefix}-{n}" for n in range(STORM)]


async def _send(client: httpx.AsyncClient, user_id: int, key: str) -> Attempt:
    attempt = Attempt(key)
    try:
        async with client.stream(
            "POST",
            "/api/admin/charges",
            json={"userId": user_id, "kind": "image", "cost": 1},
            headers={"Idempotency-Key": key},
        ) as response:
            attempt.status = response.status_code
            attempt.replayed = response.headers.get("idempotent-replayed") == "true"
            attempt.body = await response.aread()
    except httpx.TransportError as error:
        attempt.error = type(error).__name__
    return attempt


def _client(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    return httpx.AsyncClient(
        base_url=base_url, headers=ADMIN, limits=limits, timeout=httpx.Timeout(30.0)
    )


async def _storm(
    base_url: str,
    user_id: int,
    keys: Iterable[str],
    *,
    interrupt: Callable[[], object] | None = None,
) -> list[Attempt]:
    """Send a charge for every key at once; call ``interrupt`` at the INTERRUPT_AFTER-th answer."""
    answered = 0
    # A semaphore, not the pool's limit: httpx's pool gets slow with hundreds queued.
    connections = asyncio.Semaphore(CONNECTIONS)

    async def one(client: httpx.AsyncClient, key: str) -> Attempt:
        nonlocal answered
        async with connections:
            attempt = await _send(client, user_id, key)
        if attempt.answered:
            answered += 1
            if answered == INTERRUPT_AFTER and interrupt is not None:
                interrupt()
        return attempt

    async with _client(base_url) as client:
        return await asyncio.wait_for(
            asyncio.gather(*(one(client, key) for key in keys)), STORM_DEADLINE_S
        )


def _admin(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=ADMIN, timeout=10.0)


def _account(base_url: str) -> int:
    """A prepaid user with PLAN_CREDITS of plan credit, no purchases, no limits."""
    with _admin(base_url) as http:
        plan = http.post(
            "/api/admin/plans",
            json={
                "name": "crash",
                "periodUnit": "month",
                "maxCredit": PLAN_CREDITS,
                "maxTtpCount": None,
                "maxEditCount": None,
            },
        )
        assert plan.status_code == 201, plan.text
        user = http.post("/api/admin/users", json={"email": "crash@example.com", "plan": "crash"})
        assert user.status_code == 201, user.text
        return int(user.json()["id"])


def _usage_and_reconcile(
    base_url: str, user_id: int
) -> tuple[dict[str, object], dict[str, object]]:
    with _admin(base_url) as http:
        usage = http.get(f"/api/admin/users/{user_id}/usage")
        reconciled = http.get("/api/admin/reconcile")
    assert usage.status_code == 200, usage.text
    assert reconciled.status_code == 200, reconciled.text
    return usage.json(), reconciled.json()


@dataclass(frozen=True)
class Books:
    """What the database holds: each charge's status and the answer its record replays
    (the outcome it keeps, rendered as the API does), and its entries."""

    charges: dict[str, tuple[int, str]]
    entries: dict[str, list[tuple[str, int]]]


async def _books(db: Database) -> Books:
    async with db.read() as conn:
        rows = await conn.fetchall("SELECT user_id, idempotency_key FROM charges ORDER BY id")
        answers = {}
        for row in rows:
            key = row["idempotency_key"]
            recorded = await read_record(conn, row["user_id"], key)
            assert recorded is not None
            answer = charge_answer(recorded[1])
            answers[key] = (answer.status, answer.body.decode())
        entries = await conn.fetchall(
            "SELECT c.idempotency_key, e.pool, e.amount, e.entry_type"
            " FROM ledger_entries e JOIN charges c ON c.id = e.charge_id ORDER BY e.id"
        )
        orphans = await conn.fetchval(
            "SELECT COUNT(*) FROM ledger_entries WHERE entry_type = 'charge'"
            " AND (charge_id IS NULL OR charge_id NOT IN (SELECT id FROM charges))"
        )
    assert orphans == 0, "charge entries without their charge"
    by_key: dict[str, list[tuple[str, int]]] = {}
    for row in entries:
        assert row["entry_type"] == "charge"
        by_key.setdefault(row["idempotency_key"], []).append((row["pool"], int(row["amount"])))
    return Books(answers, by_key)


def _check_committed(
    books: Books, attempts: list[Attempt], usage: dict[str, object], reconciled: dict[str, object]
) -> None:
    """Every acknowledged charge is in the books, whole; nothing else is half there."""
    # Each charge that exists was applied whole: one plan entry for its one credit, a
    # stored answer (written in the same transaction), and nothing else.
    assert set(books.entries) == set(books.charges)
    for key, (status, response) in books.charges.items():
        assert status == 201, key
        assert books.entries[key] == [("plan", -1 * MILLI)], key
        assert orjson.loads(response)["charge"]["idempotencyKey"] == key
    # Every 201 the client saw is a charge in the books, with exactly the answer given.
    acknowledged = {a.key: a for a in attempts if a.answered}
    assert {a.status for a in acknowledged.values()} <= {201}
    assert set(acknowledged) <= set(books.charges)
    for key, attempt in acknowledged.items():
        assert attempt.body is not None
        assert books.charges[key][1].encode() == attempt.body, key
        assert not attempt.replayed
    # The balance is exactly the number of charges in the books, and the books agree.
    assert usage["currentCredit"] == PLAN_CREDITS - len(books.charges)
    assert usage["additionalCredit"] == 0
    assert reconciled == {"ok": True, "problems": []}


def _figures(name: str, attempts: list[Attempt], committed: int) -> str:
    errors = Counter(a.error for a in attempts if not a.answered)
    return (
        f"{name}: storm {len(attempts)}, acknowledged {sum(a.answered for a in attempts)},"
        f" unanswered {sum(not a.answered for a in attempts)}"
        f" (truncated {sum(a.truncated for a in attempts)}), committed {committed};"
        f" errors {dict(errors)}"
    )


async def test_sigkill_mid_storm_loses_no_acknowledged_charge_and_retries_charge_once(
    db: Database, environ: dict[str, str], record_property: Callable[[str, object], None]
) -> None:
    keys = _keys("crash")
    with server_process(environ, workers=2) as first:
        user_id = _account(first.base_url)
        attempts = await _storm(first.base_url, user_id, keys, interrupt=first.kill)
        assert first.returncode == -signal.SIGKILL

    unanswered = [a for a in attempts if not a.answered]
    assert len(unanswered) >= STORM - INTERRUPT_AFTER - CONNECTIONS > 0
    assert all(a.error is not None for a in unanswered)

    with server_process(environ, workers=2) as second:
        books = await _books(db)
        usage, reconciled = _usage_and_reconcile(second.base_url, user_id)
        _check_committed(books, attempts, usage, reconciled)
        figures = _figures("sigkill", attempts, len(books.charges))
        record_property("figures", figures)
        print(figures)

        # Retry every request, answered or not: each key twice, side by side.
        retries = await _storm(second.base_url, user_id, [k for key in keys for k in (key, key)])
        after = await _books(db)
        usage, reconciled = _usage_and_reconcile(second.base_url, user_id)

    assert all(r.answered and r.status == 201 for r in retries)
    bodies: dict[str, set[bytes]] = {}
    for retry in retries:
        assert retry.body is not None
        bodies.setdefault(retry.key, set()).add(retry.body)
    assert all(len(answers) == 1 for answers in bodies.values())
    # Answered requests replay byte for byte, marked as replays.
    for attempt in attempts:
        if attempt.answered:
            assert bodies[attempt.key] == {attempt.body}
            assert all(r.replayed for r in retries if r.key == attempt.key)
    # Only keys that had not been committed are charged now, each once.
    fresh = Counter(r.key for r in retries if not r.replayed)
    assert set(fresh) == set(keys) - set(books.charges)
    assert set(fresh.values()) <= {1}
    for key, (_, response) in after.charges.items():
        assert bodies[key] == {response.encode()}
    assert len(after.charges) == STORM
    _check_committed(after, attempts, usage, reconciled)
    assert usage["currentCredit"] == PLAN_CREDITS - STORM


async def test_sigterm_mid_storm_drains_every_request_in_flight_and_exits_0(
    db: Database, environ: dict[str, str], record_property: Callable[[str, object], None]
) -> None:
    keys = _keys("drain")
    with server_process(environ, workers=2) as server:
        user_id = _account(server.base_url)
        attempts = await _storm(
            server.base_url,
            user_id,
            keys,
            # As a supervisor does: the server process alone, not its group.
            interrupt=lambda: server.process.send_signal(signal.SIGTERM),
        )
        code = _exit_code(server)
        output = server.output()

    assert code == 0, output
    answered = [a for a in attempts if a.answered]
    assert not [a for a in attempts if a.truncated]
    for attempt in answered:
        assert attempt.status == 201
        assert attempt.body is not None
        assert orjson.loads(attempt.body)["charge"]["idempotencyKey"] == attempt.key
    assert len(answered) >= INTERRUPT_AFTER

    with server_process(environ, workers=2) as restarted:
        books = await _books(db)
        usage, reconciled = _usage_and_reconcile(restarted.base_url, user_id)
    figures = _figures("sigterm", attempts, len(books.charges))
    record_property("figures", figures)
    print(figures)
    _check_committed(books, attempts, usage, reconciled)
    # Drained: no charge was committed without its answer reaching the client.
    assert set(books.charges) == {a.key for a in answered}


def _exit_code(server: ServerProcess) -> int:
    """The server's exit code, waiting at most STOP_TIMEOUT_S for it to stop by itself."""
    try:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the server did not exit within {STOP_TIMEOUT_S} s of SIGTERM: {error!r}")
    return server.stop()

"""Delivering the outbox: each worker's dispatcher sends what is due, at least once.

A delivery is claimed before it is sent: its row gets a lease (``claimed_until``) in a
short transaction, which on PostgreSQL takes the rows ``FOR UPDATE SKIP LOCKED``, so
workers and nodes claim different rows without waiting on each other; on SQLite the
write lock serialises claims. The lease outlives the send (10 s timeout); a worker
killed mid-send leaves a lease that ends, and the delivery is sent again with the same
``webhook-id``: a receiver drops duplicates by it.

Per endpoint and user, only the oldest pending delivery can be claimed: a user's later
event is not sent before an earlier one is delivered or has failed for good.

A failed send is retried with exponential backoff and jitter until a day (by default)
has passed since the event, then marked failed; an endpoint with no success for three
days is disabled. The same loop sweeps for purchased credit about to expire.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from flamel_usage.core.config import Settings
from flamel_usage.core.errors import Refusal
from flamel_usage.core.money import credits_value
from flamel_usage.core.periods import from_micros
from flamel_usage.db.gateway import Connection, Database, DatabaseUnavailable, Row
from flamel_usage.ledger.balances import read_usage
from flamel_usage.webhooks import signing
from flamel_usage.webhooks.addresses import public_target
from flamel_usage.webhooks.events import CREDIT_EXPIRING, Alert, fire

logger = logging.getLogger("flamel_usage.webhooks")

SEND_TIMEOUT_SECONDS = 10.0
#: How long a claim holds: the send's timeout, the lookup before it, and room to record.
LEASE_SECONDS = 30
#: Deliveries claimed per round; each round sends them concurrently.
BATCH = 50
MAX_BACKOFF_SECONDS = 3600
#: The sweep for expiring credit runs once per this many polls.
SWEEP_EVERY = 60
_SECOND = 1_000_000
_DAY = 86_400 * _SECOND

_DUE = (
    "SELECT d.id FROM webhook_deliveries d"
    " JOIN webhook_endpoints p ON p.id = d.endpoint_id AND p.enabled"
    " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
    " AND (d.claimed_until IS NULL OR d.claimed_until <= ?)"
    " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.endpoint_id = d.endpoint_id"
    " AND o.user_id = d.user_id AND o.status = 'pending' AND o.id < d.id)"
    " ORDER BY d.id LIMIT ?"
)
_ANY_DUE = (
    "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1"
)
_JOB = (
    "SELECT d.id, d.endpoint_id, d.attempts, d.created_at, e.message_id, e.body, p.url,"
    " p.secret FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
    " JOIN webhook_endpoints p ON p.id = d.endpoint_id WHERE d.id = ?"
)
_EXPIRING = (
    "SELECT c.id, c.user_id, c.remaining, c.expires_at FROM credit_purchases c"
    " JOIN users u ON u.id = c.user_id AND u.deleted_at IS NULL"
    " WHERE c.remaining > 0 AND c.expires_at > ? AND c.expires_at <= ?"
    " AND NOT EXISTS (SELECT 1 FROM webhook_alerts a WHERE a.user_id = c.user_id"
    " AND a.alert = 'expiring:' || c.id AND a.period_start = 0)"
    " ORDER BY c.expires_at LIMIT 100"
)


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Callable[[], int],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._client = httpx.AsyncClient(
            timeout=SEND_TIMEOUT_SECONDS, follow_redirects=False, transport=transport
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self) -> None:
        """Forever: the sweep now and then, and every delivery due, each poll."""
        polls = 0
        waiting = False  # logged once per outage, not once per poll
        while True:
            try:
                if polls % SWEEP_EVERY == 0:
                    await self.sweep()
                while await self.deliver_due():
                    pass
                waiting = False
            except DatabaseUnavailable:
                if not waiting:
                    logger.warning("database unavailable: webhook deliveries wait for it")
                waiting = True
            except Exception:
                logger.exception("webhook dispatcher round failed")
            polls += 1
            await asyncio.sleep(self._settings.webhook_poll_seconds)

    async def deliver_due(self) -> int:
        """Claim and send the deliveries due now; how many were claimed.

        A read looks first: most polls find nothing, and on SQLite a claim takes the
        write lock that charges wait for.
        """
        async with self._db.read() as conn:
            if await conn.fetchval(_ANY_DUE, self._clock()) is None:
                return 0
        async with self._db.transaction() as conn:
            jobs = await self._claim(conn)
        if jobs:
            attempts = await asyncio.gather(*(self._send(job) for job in jobs))
            async with self._db.transaction() as conn:
                for job, attempt in zip(jobs, attempts, strict=True):
                    await self._record(conn, job, attempt)
        return len(jobs)

    async def _claim(self, conn: Connection) -> list[Row]:
        now = self._clock()
        due = _DUE + conn.for_update("d", skip_locked=True)
        ids = [row["id"] for row in await conn.fetchall(due, now, now, BATCH)]
        jobs = []
        for delivery_id in ids:
            await conn.execute(
                "UPDATE webhook_deliveries SET claimed_until = ? WHERE id = ?",
                now + LEASE_SECONDS * _SECOND,
                delivery_id,
            )
            job = await conn.fetchone(_JOB, delivery_id)
            assert job is not None
            jobs.append(job)
        return jobs

    async def _send(self, job: Row) -> _Attempt:
        """One signed POST, to an address checked just before; never raises."""
        try:
            return await asyncio.wait_for(self._post(job), LEASE_SECONDS - 5)
        except Refusal as refusal:
            return _Attempt(None, refusal.message)
        except (httpx.HTTPError, httpx.InvalidURL, OSError, TimeoutError, ValueError) as error:
            return _Attempt(None, f"{type(error).__name__}: {error}"[:500])

    async def _post(self, job: Row) -> _Attempt:
        allow_private = self._settings.webhook_allow_private
        target = await public_target(job["url"], allow_private=allow_private)
        body = job["body"].encode()
        sent_at = self._clock() // _SECOND
        headers = signing.headers(job["secret"], job["message_id"], sent_at, body)
        headers["content-type"] = "application/json"
        url = httpx.URL(job["url"])
        extensions = {}
        if target.address is not None:
            # Connect to the address that was checked; TLS still names and verifies the host.
            headers["host"] = url.netloc.decode("ascii")
            extensions["sni_hostname"] = target.host
            url = url.copy_with(host=target.address)
        response = await self._client.post(
            url, content=body, headers=headers, extensions=extensions
        )
        await response.aclose()
        status = response.status_code
        return _Attempt(status, None if 200 <= status < 300 else f"answered {status}")

    async def _record(self, conn: Connection, job: Row, attempt: _Attempt) -> None:
        now = self._clock()
        endpoint_id = job["endpoint_id"]
        if attempt.delivered:
            await conn.execute(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,"
                " last_attempt_at = ?, last_status = ?, last_error = NULL, delivered_at = ?,"
                " claimed_until = NULL WHERE id = ? AND status = 'pending'",
                now,
                attempt.status,
                now,
                job["id"],
            )
            await conn.execute(
                "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?", endpoint_id
            )
            return
        deadline = job["created_at"] + self._settings.webhook_retry_seconds * _SECOND
        status = "failed" if now >= deadline else "pending"
        next_at = min(now + self._backoff(job["attempts"] + 1), deadline)
        await conn.execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1,"
            " last_attempt_at = ?, last_status = ?, last_error = ?, next_attempt_at = ?,"
            " claimed_until = NULL WHERE id = ? AND status = 'pending'",
            status,
            now,
            attempt.status,
            attempt.error,
            next_at,
            job["id"],
        )
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, ?) WHERE id = ?",
            now,
            endpoint_id,
        )
        since = await conn.fetchval(
            "SELECT failing_since FROM webhook_endpoints WHERE id = ? AND enabled", endpoint_id
        )
        if since is not None and now - since >= self._settings.webhook_disable_seconds * _SECOND:
            await _disable(conn, endpoint_id, now)

    def _backoff(self, attempts: int) -> int:
        """Microseconds until the next try: doubling from the configured first wait, up
        to an hour, each drawn between half and all of it so retries spread out."""
        first = self._settings.webhook_backoff_seconds
        ceiling = min(first * 2 ** min(attempts - 1, 32), float(MAX_BACKOFF_SECONDS))
        return int(random.uniform(ceiling / 2, ceiling) * _SECOND)

    async def sweep(self) -> int:
        """Fire ``credit.expiring`` for purchased credit left that expires within
        ``FLAMEL_ALERT_EXPIRY_DAYS``, once per purchase (its marker has no period: a
        purchase outlives periods); the number fired. Expiry comes with time passing,
        not with a change anyone makes, so no transaction of a change can raise it."""
        now = self._clock()
        zone = self._settings.timezone
        horizon = now + self._settings.alert_expiry_days * _DAY
        async with self._db.read() as conn:
            expiring = await conn.fetchall(_EXPIRING, now, horizon)
        if not expiring:
            return 0
        fired = 0
        # Another worker may fire the same ones meanwhile: the marker keeps it to one.
        async with self._db.transaction() as conn:
            for purchase in expiring:
                detail = {
                    "purchaseId": purchase["id"],
                    "expiringCredit": credits_value(purchase["remaining"]),
                    "expiresAt": from_micros(purchase["expires_at"]).isoformat(),
                }
                alert = Alert(CREDIT_EXPIRING, f"expiring:{purchase['id']}", detail)
                usage = await read_usage(conn, purchase["user_id"], now, zone)
                fired += await fire(conn, purchase["user_id"], alert, 0, usage, now)
        return fired


async def _disable(conn: Connection, endpoint_id: int, now: int) -> None:
    """Stop sending to an endpoint that has failed for too long; what waited for it is
    marked failed (a redelivery enables it again)."""
    await conn.execute(
        "UPDATE webhook_endpoints SET enabled = FALSE, disabled_at = ? WHERE id = ?",
        now,
        endpoint_id,
    )
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint disabled',"
        " claimed_until = NULL WHERE endpoint_id = ? AND status = 'pending'",
        endpoint_id,
    )

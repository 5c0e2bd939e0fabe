"""The operator's webhook endpoints and their delivery log.

The URL is checked (``addresses.public_target``) before the transaction that stores
it: a DNS lookup must not hold the write lock. The secret is returned by ``create`` and
``rotate`` only; listings never show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Connection, Row
from flamel_usage.webhooks.addresses import Target
from flamel_usage.webhooks.events import EVENT_TYPES
from flamel_usage.webhooks.signing import new_secret

MAX_DESCRIPTION = 200
#: Deliveries a log answer shows at most, newest first.
MAX_LOG = 500


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    url: str
    events: tuple[str, ...]
    description: str | None
    enabled: bool
    created_at: int
    disabled_at: int | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    endpoint_id: int
    message_id: str
    event_type: str
    user_id: int
    status: str
    attempts: int
    created_at: int
    next_attempt_at: int
    last_attempt_at: int | None
    last_status: int | None
    last_error: str | None
    delivered_at: int | None


_ENDPOINT = (
    "SELECT id, url, events, description, enabled, created_at, disabled_at FROM webhook_endpoints"
)
_DELIVERY = (
    "SELECT d.id, d.endpoint_id, e.message_id, e.event_type, d.user_id, d.status, d.attempts,"
    " d.created_at, d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error,"
    " d.delivered_at FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
)


def _endpoint(row: Row) -> Endpoint:
    return Endpoint(
        row["id"],
        row["url"],
        tuple(row["events"].split(",")),
        row["description"],
        bool(row["enabled"]),
        row["created_at"],
        row["disabled_at"],
    )


def _delivery(row: Row) -> Delivery:
    return Delivery(*(row[index] for index in range(13)))


def event_types(events: Sequence[str]) -> tuple[str, ...]:
    """The event types asked for, in the documented order; ``bad_request`` for none, an
    unknown one or a repeat."""
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if not events or unknown or len(set(events)) != len(events):
        raise Refusal(
            "bad_request",
            f"events: one or more distinct of {', '.join(EVENT_TYPES)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
        )
    return tuple(kind for kind in EVENT_TYPES if kind in events)


async def create(
    conn: Connection,
    target: Target,
    events: Sequence[str],
    description: str | None,
    *,
    now: int,
) -> tuple[Endpoint, str]:
    """A new endpoint and its signing secret, which nothing shows again."""
    types = event_types(events)
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise Refusal("bad_request", f"description: at most {MAX_DESCRIPTION} characters")
    secret = new_secret()
    endpoint_id = await conn.fetchval(
        "INSERT INTO webhook_endpoints (url, events, description, secret, created_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        target.url,
        ",".join(types),
        description,
        secret,
        now,
    )
    return await get(conn, endpoint_id), secret


async def get(conn: Connection, endpoint_id: int) -> Endpoint:
    row = await conn.fetchone(_ENDPOINT + " WHERE id = ?", endpoint_id)
    if row is None:
        raise Refusal("not_found", "no webhook endpoint has that id")
    return _endpoint(row)


async def list_all(conn: Connection) -> list[Endpoint]:
    return [_endpoint(row) for row in await conn.fetchall(_ENDPOINT + " ORDER BY id")]


async def remove(conn: Connection, endpoint_id: int) -> None:
    """Delete the endpoint with its delivery log; what was not sent yet is not sent."""
    await get(conn, endpoint_id)
    await conn.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", endpoint_id)
    await conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", endpoint_id)


async def rotate(conn: Connection, endpoint_id: int) -> str:
    """A new secret for the endpoint: every send from now on is signed with it."""
    await get(conn, endpoint_id)
    secret = new_secret()
    await conn.execute("UPDATE webhook_endpoints SET secret = ? WHERE id = ?", secret, endpoint_id)
    return secret


async def deliveries(conn: Connection, endpoint_id: int, *, limit: int = MAX_LOG) -> list[Delivery]:
    """The endpoint's delivery log, newest first."""
    await get(conn, endpoint_id)
    rows = await conn.fetchall(
        _DELIVERY + " WHERE d.endpoint_id = ? ORDER BY d.id DESC LIMIT ?",
        endpoint_id,
        min(max(limit, 1), MAX_LOG),
    )
    return [_delivery(row) for row in rows]


async def redeliver(conn: Connection, endpoint_id: int, delivery_id: int, *, now: int) -> Delivery:
    """Send a delivery again, now, with its ``webhook-id``, and retry it for another day.

    Also enables its endpoint again (an operator asking to send is asking to try): a
    disabled endpoint gets nothing until then.
    """
    row = await conn.fetchone(_DELIVERY + " WHERE d.id = ?", delivery_id)
    if row is None or row["endpoint_id"] != endpoint_id:
        raise Refusal("not_found", "no webhook delivery has that id")
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?,"
        " claimed_until = NULL, created_at = ?, delivered_at = NULL WHERE id = ?",
        now,
        now,
        delivery_id,
    )
    await conn.execute(
        "UPDATE webhook_endpoints SET enabled = TRUE, failing_since = NULL, disabled_at = NULL"
        " WHERE id = ?",
        endpoint_id,
    )
    refreshed = await conn.fetchone(_DELIVERY + " WHERE d.id = ?", delivery_id)
    assert refreshed is not None
    return _delivery(refreshed)

"""The alerts, and the one function that raises them: ``emit_usage_alerts``.

The code that changes an account's numbers calls it inside its transaction with the
numbers before and after the change. It decides in memory which alerts the change
crossed (nothing is read or written for the usual charge, which crosses none), records
each alert it fires under (user, alert, period) so that it fires at most once there,
and writes the event with a delivery row per endpoint that takes its type: the outbox,
committed or rolled back with the change itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from flamel_usage.core.config import ALERT_THRESHOLDS
from flamel_usage.core.periods import from_micros, to_micros
from flamel_usage.db.gateway import Connection
from flamel_usage.webhooks.signing import new_message_id

if TYPE_CHECKING:
    # Only a type here: ``ledger.balances`` calls this module for plan changes.
    from flamel_usage.ledger.balances import Usage

THRESHOLD_REACHED = "usage.threshold_reached"
CREDIT_DEPLETED = "credit.depleted"
LIMIT_REACHED = "limit.reached"
CREDIT_EXPIRING = "credit.expiring"
#: Every event type an endpoint can take, in the order the README lists them.
EVENT_TYPES = (THRESHOLD_REACHED, CREDIT_DEPLETED, LIMIT_REACHED, CREDIT_EXPIRING)
DEFAULT_THRESHOLDS: tuple[int, ...] = ALERT_THRESHOLDS.read({})


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert crossed: its event type, its marker (what "once" is counted by, with
    the user and the period) and what its event's ``data`` adds to the usage."""

    event_type: str
    marker: str
    detail: dict[str, Any]


def _used_reaches(usage: Usage, threshold: int) -> bool:
    """Whether the plan credit used reaches ``threshold`` percent of the allowance."""
    used = usage.max_credit - usage.current_credit
    return usage.max_credit > 0 and used * 100 >= threshold * usage.max_credit


def crossed(before: Usage, after: Usage, thresholds: Sequence[int]) -> list[Alert]:
    """The alerts a change from ``before`` to ``after`` reached; pure, and cheap."""
    alerts = [
        Alert(THRESHOLD_REACHED, f"threshold:{threshold}", {"threshold": threshold})
        for threshold in thresholds
        if _used_reaches(after, threshold) and not _used_reaches(before, threshold)
    ]
    total_before = before.current_credit + before.additional_credit
    total_after = after.current_credit + after.additional_credit
    if after.postpaid_used is None and total_after <= 0 < total_before:
        alerts.append(Alert(CREDIT_DEPLETED, "depleted", {}))
    for limit, count_before, count_after, maximum in (
        ("ttp", before.ttp_count, after.ttp_count, after.max_ttp),
        ("edit", before.edit_count, after.edit_count, after.max_edit),
    ):
        if maximum is not None and count_after >= maximum > count_before:
            alerts.append(Alert(LIMIT_REACHED, f"limit:{limit}", {"limit": limit}))
    return alerts


async def emit_usage_alerts(
    conn: Connection,
    user_id: int,
    before: Usage,
    after: Usage,
    *,
    now: int,
    thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
) -> None:
    """Fire, in ``conn``'s transaction, every alert the change from ``before`` to
    ``after`` reached and that has not fired for this user in this period."""
    alerts = crossed(before, after, thresholds)
    if alerts:
        period = to_micros(after.period.start)
        for alert in alerts:
            await fire(conn, user_id, alert, period, after, now)


_MARK = (
    "INSERT INTO webhook_alerts (user_id, alert, period_start, fired_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)


async def fire(
    conn: Connection, user_id: int, alert: Alert, period: int, usage: Usage, now: int
) -> bool:
    """Record ``alert`` for (user, period) and write its event; False when it had fired
    there already. The marker is kept whether or not an endpoint takes the type: an
    alert is about the account, not about who listens."""
    if not await conn.execute(_MARK, user_id, alert.marker, period, now):
        return False
    endpoints = await conn.fetchall("SELECT id, events FROM webhook_endpoints WHERE enabled")
    takers = [row["id"] for row in endpoints if alert.event_type in row["events"].split(",")]
    if not takers:
        return True
    external_id = await conn.fetchval("SELECT external_id FROM users WHERE id = ?", user_id)
    data: dict[str, Any] = {"userId": user_id}
    if external_id is not None:
        data["externalId"] = external_id
    data.update(usage.to_dto())
    data.update(alert.detail)
    body = {"type": alert.event_type, "timestamp": from_micros(now).isoformat(), "data": data}
    event_id = await conn.fetchval(
        "INSERT INTO webhook_events (message_id, user_id, event_type, body, created_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        new_message_id(),
        user_id,
        alert.event_type,
        orjson.dumps(body).decode(),
        now,
    )
    for endpoint_id in takers:
        await conn.execute(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, user_id, next_attempt_at,"
            " created_at) VALUES (?, ?, ?, ?, ?)",
            event_id,
            endpoint_id,
            user_id,
            now,
            now,
        )
    return True

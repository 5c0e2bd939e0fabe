"""Refunding a charge: reversing exactly the entries it wrote, once.

Each entry goes back to the pool it came from by the rules of ``balances.give_back``
(which holds share): what can no longer be restored (plan credit of an ended period, an
expired purchase) is recorded in the ledger with the reason, at zero. The history's
rollup takes the whole charge back from the hour it was made in (``ledger.rollup``): a
refunded charge counts nowhere in the history. A hold is not refunded: it is settled or
released (``metering.holds``).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Connection
from flamel_usage.ledger.balances import (
    CHARGED,
    TAKEN_PARTS,
    give_back,
    locked_account,
    read_usage,
)
from flamel_usage.ledger.rollup import record_spending
from flamel_usage.metering import idempotency
from flamel_usage.metering.outcomes import Charge, Refunded

CHARGE_BY_KEY = (
    "SELECT id, user_id, kind, cost, status, from_plan, from_purchased, postpaid, refunded_at,"
    " created_at, hold_state FROM charges WHERE idempotency_key = ?"
)


async def refund(conn: Connection, idempotency_key: str, *, now: int, zone: ZoneInfo) -> Refunded:
    """Reverse the charge made under ``idempotency_key``; ``charge_not_found``,
    ``not_refundable`` (it was refused) or ``already_refunded`` change nothing."""
    await idempotency.lock(conn, idempotency_key)
    charged = await conn.fetchone(CHARGE_BY_KEY, idempotency_key)
    if charged is None:
        raise Refusal("charge_not_found", "no charge with this idempotency key")
    if charged["status"] != CHARGED:
        raise Refusal("not_refundable", "this charge was refused: there is nothing to refund")
    if charged["hold_state"] is not None:
        raise Refusal("not_refundable", "this is a hold: settle or release it")
    if charged["refunded_at"] is not None:
        raise Refusal("already_refunded", "this charge was refunded already")
    user_id = charged["user_id"]
    account = await locked_account(conn, user_id, now, zone)
    parts = await conn.fetchall(TAKEN_PARTS, user_id, charged["id"])
    # Marked first: the plan credit due after the refund counts the charges that stand.
    await conn.execute(
        "UPDATE charges SET refunded_at = ? WHERE user_id = ? AND id = ?",
        now,
        user_id,
        charged["id"],
    )
    await record_spending(
        conn,
        user_id,
        charged["created_at"],
        charged["kind"],
        operations=-1,
        plan=-charged["from_plan"],
        purchased=-charged["from_purchased"],
        postpaid=-charged["postpaid"],
        zone=zone,
    )
    for part in parts:
        await give_back(conn, account, part, part["amount"], charge_id=charged["id"], now=now)
    charge = Charge(
        charged["id"],
        idempotency_key,
        user_id,
        charged["kind"],
        charged["cost"],
        charged["from_plan"],
        charged["from_purchased"],
        charged["postpaid"],
        charged["created_at"],
        refunded_at=now,
    )
    return Refunded(charge, await read_usage(conn, user_id, now, zone))

"""Refunding a charge: reversing exactly the entries it wrote, once.

Each entry goes back to the pool it came from; what can no longer be restored (plan
credit of an ended period, an expired purchase) is recorded in the ledger with the
reason, at zero. Plan credit comes back within the current allowance, by the rule of
``plan_credit_due``, so what a refund leaves does not depend on the order of the
period's plan changes.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Connection, Row
from flamel_usage.ledger.balances import append_entry, locked_account, plan_credit_due, read_usage
from flamel_usage.metering import idempotency
from flamel_usage.metering.charges import COUNTED
from flamel_usage.metering.outcomes import Charge, Refunded

CHARGE_BY_KEY = (
    "SELECT id, user_id, kind, cost, status, from_plan, from_purchased, postpaid, refunded_at,"
    " created_at FROM charges WHERE idempotency_key = ?"
)


async def refund(conn: Connection, idempotency_key: str, *, now: int, zone: ZoneInfo) -> Refunded:
    """Reverse the charge made under ``idempotency_key``; ``charge_not_found``,
    ``not_refundable`` (it was refused) or ``already_refunded`` change nothing."""
    await idempotency.lock(conn, idempotency_key)
    charged = await conn.fetchone(CHARGE_BY_KEY, idempotency_key)
    if charged is None:
        raise Refusal("charge_not_found", "no charge with this idempotency key")
    if charged["status"] != idempotency.CHARGED:
        raise Refusal("not_refundable", "this charge was refused: there is nothing to refund")
    if charged["refunded_at"] is not None:
        raise Refusal("already_refunded", "this charge was refunded already")
    user_id = charged["user_id"]
    account = await locked_account(conn, user_id, now, zone)
    parts = await conn.fetchall(
        "SELECT pool, amount, purchase_id, period_start FROM ledger_entries"
        " WHERE user_id = ? AND charge_id = ? AND entry_type = 'charge' ORDER BY id",
        user_id,
        charged["id"],
    )
    # Marked first: the plan credit due after the refund counts the charges that stand.
    await conn.execute(
        "UPDATE charges SET refunded_at = ? WHERE user_id = ? AND id = ?",
        now,
        user_id,
        charged["id"],
    )
    for part in parts:
        await _reverse(conn, account, part, charged["id"], now)
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


async def _reverse(conn: Connection, account: Row, part: Row, charge_id: int, now: int) -> None:
    """Undo one entry of a charge, recording what was restored (and why not all of it)."""
    user_id, current = account["user_id"], account["period_start"]
    pool, amount, period = part["pool"], part["amount"], part["period_start"]
    same_period = period == current
    restored, note = -amount, None
    if pool == "plan":
        if same_period:
            due = await plan_credit_due(conn, account, account["max_credit"])
            restored = due - account["plan_credit"]
            if restored != -amount:
                note = "plan credit restored up to the current allowance"
            await conn.execute(
                "UPDATE accounts SET plan_credit = ? WHERE user_id = ?", due, user_id
            )
        else:
            restored, note = 0, "plan credit of an ended period is not restored"
    elif pool == "purchase":
        expires_at = await conn.fetchval(
            "SELECT expires_at FROM credit_purchases WHERE user_id = ? AND id = ?",
            user_id,
            part["purchase_id"],
        )
        if expires_at is not None and expires_at <= now:
            restored, note = 0, "the purchase has expired since the charge"
        else:
            await conn.execute(
                "UPDATE credit_purchases SET remaining = remaining + ?"
                " WHERE user_id = ? AND id = ?",
                -amount,
                user_id,
                part["purchase_id"],
            )
    elif same_period:
        column = "postpaid_used" if pool == "postpaid" else COUNTED[pool].count_column
        await conn.execute(
            f"UPDATE accounts SET {column} = {column} - ? WHERE user_id = ?",  # noqa: S608
            amount,
            user_id,
        )
    else:
        note = "counted in an ended period: recorded against that period"
    await append_entry(
        conn,
        user_id,
        now,
        "refund",
        pool,
        restored,
        period,
        purchase_id=part["purchase_id"],
        charge_id=charge_id,
        note=note,
    )

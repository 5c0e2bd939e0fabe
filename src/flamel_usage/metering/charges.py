"""Metering: charging an operation against the ledger, atomically and idempotently.

One transaction does everything for a charge: it takes a lock on the idempotency key
(so two requests with one key are applied once, even at the same instant), looks for
the key's first answer, locks and rolls over the account, checks the period limit,
spends plan credit, then purchased credit oldest-expiring first, accrues the rest as
postpaid usage or refuses the whole charge, writes the ledger entries, and records the
answer under the key. A refusal is recorded too, and changes no balance.

A refund reverses exactly the entries its charge wrote, to the pools they came from;
what can no longer be restored (plan credit of an ended period, an expired purchase)
is recorded in the ledger with the reason, at zero. Plan credit comes back within the
current allowance, by the rule of ``plan_credit_due``, so what a refund leaves does not
depend on the order of the period's plan changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from flamel_usage.accounts.users import live_user_id
from flamel_usage.core.errors import (
    BadRequest,
    Conflict,
    InsufficientCredit,
    LimitExceeded,
    NotFound,
    error_body,
)
from flamel_usage.core.money import credits_value
from flamel_usage.core.periods import from_micros
from flamel_usage.db.gateway import Connection, Row
from flamel_usage.ledger.balances import (
    append_entry,
    locked_account,
    plan_credit_due,
    read_usage,
)


class InvalidIdempotencyKey(BadRequest):
    reason = "invalid_idempotency_key"


class UnknownKind(BadRequest):
    reason = "unknown_kind"


class IdempotencyKeyReused(Conflict):
    reason = "idempotency_key_reused"


class AlreadyRefunded(Conflict):
    reason = "already_refunded"


class NotRefundable(Conflict):
    reason = "not_refundable"


class ChargeNotFound(NotFound):
    reason = "charge_not_found"


#: Kinds with a per-period limit: the account column that counts them and the plan
#: column that limits them.
_COUNTED = {"ttp": ("ttp_count", "max_ttp"), "edit": ("edit_count", "max_edit")}


#: 1-255 printable ASCII characters, no space at either end: HTTP servers strip those
#: from header values, so such a key would not be the same key over HTTP and the CLI.
IDEMPOTENCY_KEY_PATTERN = r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def idempotency_key(value: str | None) -> str:
    """``value`` if it is a valid idempotency key, else ``invalid_idempotency_key``."""
    if value is None or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidIdempotencyKey(
            "send an Idempotency-Key of 1-255 printable ASCII characters,"
            " with no space at either end"
        )
    return value


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    user_id: int
    kind: str
    cost: int | None

    def fingerprint(self) -> str:
        """What makes two requests "the same" for an idempotency key: the body as sent."""
        sent = "default" if self.cost is None else str(self.cost)
        return hashlib.sha256(f"{self.user_id}|{self.kind}|{sent}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    """An answer to give: status and body, and whether it repeats an earlier one."""

    status: int
    body: bytes
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Spend:
    from_plan: int
    from_purchases: list[tuple[int, int]]
    postpaid: int

    @property
    def from_purchased(self) -> int:
        return sum(amount for _, amount in self.from_purchases)


#: What a refused charge took: nothing.
_NOTHING = _Spend(0, [], 0)

# The statements of a charge, by name: ``bench/charges.py`` runs them too, without the
# rest of the service, as the raw loop the service's charges are measured against.
FIRST_ANSWER = "SELECT fingerprint, status, response FROM charges WHERE idempotency_key = ?"
#: Oldest-expiring first, never-expiring last.
LIVE_PURCHASES = (
    "SELECT id, remaining FROM credit_purchases"
    " WHERE user_id = ? AND remaining > 0 AND (expires_at IS NULL OR expires_at > ?)"
    " ORDER BY expires_at IS NULL, expires_at, id"
)
SPEND_FROM_ACCOUNT = (
    "UPDATE accounts SET plan_credit = plan_credit - ?, postpaid_used = postpaid_used + ?,"
    " ttp_count = ttp_count + ?, edit_count = edit_count + ? WHERE user_id = ?"
)
SPEND_FROM_PURCHASE = "UPDATE credit_purchases SET remaining = remaining - ? WHERE id = ?"
RECORD_CHARGE = (
    "INSERT INTO charges (idempotency_key, fingerprint, user_id, kind, cost, status, response,"
    " from_plan, from_purchased, postpaid, period_start, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
RECORD_ANSWER = "UPDATE charges SET response = ? WHERE id = ?"


async def charge(
    conn: Connection,
    request: ChargeRequest,
    *,
    idempotency_key: str,
    costs: Mapping[str, int],
    now: int,
    zone: ZoneInfo,
) -> Outcome:
    if request.kind not in costs:
        raise UnknownKind(f"unknown operation kind; known: {', '.join(sorted(costs))}")
    await conn.lock_name(f"charge:{idempotency_key}")
    first = await conn.fetchone(FIRST_ANSWER, idempotency_key)
    if first is not None:
        if first["fingerprint"] != request.fingerprint():
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different charge")
        return Outcome(first["status"], first["response"].encode(), replayed=True)

    cost = costs[request.kind] if request.cost is None else request.cost
    await live_user_id(conn, request.user_id)
    account = await locked_account(conn, request.user_id, now, zone)
    try:
        spend = await _plan_spend(conn, account, request.kind, cost, now)
    except (InsufficientCredit, LimitExceeded) as refusal:
        body = error_body(refusal.status, refusal.reason, refusal.message)
        await _record(
            conn, idempotency_key, request, cost, refusal.status, body, _NOTHING, account, now
        )
        return Outcome(refusal.status, body)

    charge_id = await _record(conn, idempotency_key, request, cost, 201, b"", spend, account, now)
    await _apply(conn, account, request.kind, spend, charge_id, now)
    usage = await read_usage(conn, request.user_id, now, zone)
    body = orjson.dumps(
        {
            "charge": _charge_json(
                charge_id, idempotency_key, request, cost, spend, created_at=now, refunded_at=None
            ),
            "usage": usage.to_dto(),
        }
    )
    await conn.execute(RECORD_ANSWER, body.decode(), charge_id)
    return Outcome(201, body)


async def _plan_spend(conn: Connection, account: Row, kind: str, cost: int, now: int) -> _Spend:
    """Where ``cost`` would come from, or the refusal; writes nothing."""
    if kind in _COUNTED:
        count_column, limit_column = _COUNTED[kind]
        limit = account[limit_column]
        if limit is not None and account[count_column] >= limit:
            raise LimitExceeded(
                f"{kind} limit of {limit} per period reached", reason=f"{kind}_limit_exceeded"
            )
    from_plan = min(account["plan_credit"], cost)
    owed = cost - from_plan
    taken: list[tuple[int, int]] = []
    if owed:
        live = await conn.fetchall(LIVE_PURCHASES, account["user_id"], now)
        for purchase in live:
            part = min(purchase["remaining"], owed)
            taken.append((purchase["id"], part))
            owed -= part
            if not owed:
                break
    if owed and account["billing_mode"] == "prepaid":
        raise InsufficientCredit(f"the charge needs {credits_value(cost)} credits")
    return _Spend(from_plan, taken, owed)


async def _apply(
    conn: Connection, account: Row, kind: str, spend: _Spend, charge_id: int, now: int
) -> None:
    user_id, period = account["user_id"], account["period_start"]
    counted = 1 if kind in _COUNTED else 0
    await conn.execute(
        SPEND_FROM_ACCOUNT,
        spend.from_plan,
        spend.postpaid,
        counted if kind == "ttp" else 0,
        counted if kind == "edit" else 0,
        user_id,
    )
    entries: list[tuple[str, int, int | None]] = [("plan", -spend.from_plan, None)]
    entries += [("purchase", -part, purchase_id) for purchase_id, part in spend.from_purchases]
    entries.append(("postpaid", spend.postpaid, None))
    if counted:
        entries.append((kind, 1, None))
    for taken_from, part in spend.from_purchases:
        await conn.execute(SPEND_FROM_PURCHASE, part, taken_from)
    for pool, amount, purchase_id in entries:
        if amount or pool in _COUNTED:
            await append_entry(
                conn,
                user_id,
                now,
                "charge",
                pool,
                amount,
                period,
                purchase_id=purchase_id,
                charge_id=charge_id,
            )


async def _record(
    conn: Connection,
    idempotency_key: str,
    request: ChargeRequest,
    cost: int,
    status: int,
    body: bytes,
    spend: _Spend,
    account: Row,
    now: int,
) -> int:
    charge_id = await conn.fetchval(
        RECORD_CHARGE,
        idempotency_key,
        request.fingerprint(),
        request.user_id,
        request.kind,
        cost,
        status,
        body.decode(),
        spend.from_plan,
        spend.from_purchased,
        spend.postpaid,
        account["period_start"],
        now,
    )
    return int(charge_id)


def _charge_json(
    charge_id: int,
    idempotency_key: str,
    request: ChargeRequest,
    cost: int,
    spend: _Spend,
    *,
    created_at: int,
    refunded_at: int | None,
) -> dict[str, Any]:
    return {
        "id": charge_id,
        "idempotencyKey": idempotency_key,
        "userId": request.user_id,
        "kind": request.kind,
        "cost": credits_value(cost),
        "fromPlanCredit": credits_value(spend.from_plan),
        "fromPurchasedCredit": credits_value(spend.from_purchased),
        "postpaid": credits_value(spend.postpaid),
        "createdAt": from_micros(created_at).isoformat(),
        "refundedAt": None if refunded_at is None else from_micros(refunded_at).isoformat(),
    }


async def refund(conn: Connection, idempotency_key: str, *, now: int, zone: ZoneInfo) -> bytes:
    """Reverse a successful charge, once; the body of the answer."""
    await conn.lock_name(f"charge:{idempotency_key}")
    charged = await conn.fetchone(
        "SELECT id, user_id, kind, cost, status, refunded_at, created_at FROM charges"
        " WHERE idempotency_key = ?",
        idempotency_key,
    )
    if charged is None:
        raise ChargeNotFound("no charge with this idempotency key")
    if charged["status"] != 201:
        raise NotRefundable("this charge was refused: there is nothing to refund")
    if charged["refunded_at"] is not None:
        raise AlreadyRefunded("this charge was refunded already")
    user_id = charged["user_id"]
    account = await locked_account(conn, user_id, now, zone)
    parts = await conn.fetchall(
        "SELECT pool, amount, purchase_id, period_start FROM ledger_entries"
        " WHERE charge_id = ? AND entry_type = 'charge' ORDER BY id",
        charged["id"],
    )
    # Marked first: the plan credit due after the refund counts the charges that stand.
    await conn.execute("UPDATE charges SET refunded_at = ? WHERE id = ?", now, charged["id"])
    spend = _Spend(0, [], 0)
    for part in parts:
        spend = await _reverse(conn, account, part, charged["id"], now, spend)
    usage = await read_usage(conn, user_id, now, zone)
    request = ChargeRequest(user_id, charged["kind"], charged["cost"])
    return orjson.dumps(
        {
            "charge": _charge_json(
                charged["id"],
                idempotency_key,
                request,
                charged["cost"],
                spend,
                created_at=charged["created_at"],
                refunded_at=now,
            ),
            "usage": usage.to_dto(),
        }
    )


async def _reverse(
    conn: Connection, account: Row, part: Row, charge_id: int, now: int, spend: _Spend
) -> _Spend:
    """Undo one entry of a charge; return ``spend`` with what it took added back.

    The returned ``_Spend`` describes the original charge (what came from where), so the
    refund's answer shows the same split as the charge's.
    """
    user_id, current = account["user_id"], account["period_start"]
    pool, amount, period = part["pool"], part["amount"], part["period_start"]
    same_period = period == current
    restored, note = -amount, None
    if pool == "plan":
        spend = _Spend(spend.from_plan - amount, spend.from_purchases, spend.postpaid)
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
        spend = _Spend(
            spend.from_plan, [*spend.from_purchases, (part["purchase_id"], -amount)], spend.postpaid
        )
        expires_at = await conn.fetchval(
            "SELECT expires_at FROM credit_purchases WHERE id = ?", part["purchase_id"]
        )
        if expires_at is not None and expires_at <= now:
            restored, note = 0, "the purchase has expired since the charge"
        else:
            await conn.execute(
                "UPDATE credit_purchases SET remaining = remaining + ? WHERE id = ?",
                -amount,
                part["purchase_id"],
            )
    else:
        if pool == "postpaid":
            spend = _Spend(spend.from_plan, spend.from_purchases, spend.postpaid + amount)
        if same_period:
            column = "postpaid_used" if pool == "postpaid" else _COUNTED[pool][0]
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
    return spend

"""Holds: credit reserved at the start of a long operation, settled or released at its end.

A hold is made exactly as a charge is (``charges``): under its idempotency key, in one
transaction that locks and rolls over the account, passes the same checks, takes credit
from the same pools in the same order with ``charges.apply_spend`` and counts the
operation, so the usage read is exact while the job runs. It is kept in the charge's
own row (``held``, ``hold_state``, ``expires_at``): plan credit due, the history and
reconcile count a hold like a charge, for what it holds now.

Settling keeps the actual cost and gives the rest back: postpaid usage first (what it
accrued), then purchased credit (it outlives the period, latest taken first), then plan
credit. Releasing gives everything back, and the operation no longer counts; a hold
not settled by its expiry is released by itself (``balances.release_hold``, lazily when
its account is locked, and by ``sweep_expired``), and the usage read shows it released
before that. Both go through ``balances.give_back``, the rules of refunds: what was
taken from a period that has ended stays with it. In the ledger what goes back is a
``refund`` entry of the hold's row (the row's ``hold_state`` says by which call). The
history's rollup (``ledger.rollup``) follows in the same transactions: a hold is added
to its hour when made, a settle takes off what went back, a release or expiry takes the
whole hold off, its operation included.

Every write of a hold (create, settle, release, expiry) goes through ``locked_account``,
``apply_spend``, ``give_back`` and ``append_entry``, the ledger functions charges use:
whatever is hooked there (an outbox, say) covers holds too.

Settle and release are final: the call that finished a hold, repeated, is answered with
its first answer (``finish`` keeps which call and the usage then); any other is
``hold_not_active``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import orjson

from flamel_usage.accounts.users import live_user_id
from flamel_usage.core.errors import Refusal
from flamel_usage.core.money import credits_value
from flamel_usage.db.gateway import Connection, Row
from flamel_usage.ledger.balances import (
    CHARGED,
    TAKEN_PARTS,
    give_back,
    locked_account,
    next_hold_expiry,
    read_usage,
    release_hold,
)
from flamel_usage.ledger.rollup import record_spending
from flamel_usage.metering import charges, idempotency
from flamel_usage.metering.outcomes import Held, Hold, HoldOutcome, Refused
from flamel_usage.webhooks.events import DEFAULT_THRESHOLDS, emit_usage_alerts

#: How long a hold lasts unless asked otherwise, and at most, in seconds.
DEFAULT_TTL_SECONDS = 900
MAX_TTL_SECONDS = 86_400

_SECOND = 1_000_000

_HOLD = (
    "SELECT id, idempotency_key, user_id, kind, cost, held, from_plan, from_purchased,"
    " postpaid, hold_state, expires_at, created_at, finished_at, finish, response"
    " FROM charges WHERE id = ? AND hold_state IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class HoldRequest:
    user_id: int
    kind: str
    cost: int | None
    ttl_seconds: int | None

    def fingerprint(self) -> str:
        """The body as sent, marked as a hold's: a charge's key is never a hold's."""
        cost = "default" if self.cost is None else str(self.cost)
        ttl = "default" if self.ttl_seconds is None else str(self.ttl_seconds)
        text = f"hold|{self.user_id}|{self.kind}|{cost}|{ttl}"
        return hashlib.sha256(text.encode()).hexdigest()


async def create(
    conn: Connection,
    request: HoldRequest,
    *,
    idempotency_key: str,
    costs: Mapping[str, int],
    now: int,
    zone: ZoneInfo,
    thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
) -> HoldOutcome:
    """Hold credit for ``request`` once under ``idempotency_key``: made, refused as a
    charge would be, or the outcome recorded under the key before, replayed; the alerts
    it reaches are written with it, as a charge's are (settling and releasing only give
    back, so they reach none)."""
    if request.kind not in costs:
        message = f"unknown operation kind; known: {', '.join(sorted(costs))}"
        raise Refusal("unknown_kind", message)
    fingerprint = request.fingerprint()
    first = await idempotency.claim(conn, request.user_id, idempotency_key, fingerprint)
    if first is not None:
        return _replayed_creation(first)
    cost = costs[request.kind] if request.cost is None else request.cost
    ttl = DEFAULT_TTL_SECONDS if request.ttl_seconds is None else request.ttl_seconds
    await live_user_id(conn, request.user_id)
    account = await locked_account(conn, request.user_id, now, zone)
    spend = await charges.plan_spend(conn, account, request.kind, cost, now)
    as_charge = charges.ChargeRequest(request.user_id, request.kind, request.cost)
    unrecorded = charges.unrecorded_charge(as_charge, idempotency_key, cost, spend, now)
    period = account["period_start"]
    if isinstance(spend, Refused):
        await idempotency.record(conn, fingerprint, unrecorded, period, refused=spend)
        return spend
    hold_id = await idempotency.record(conn, fingerprint, unrecorded, period)
    await charges.apply_spend(conn, account, request.kind, spend, hold_id, now, zone)
    expires_at = now + ttl * _SECOND
    await conn.execute(
        "UPDATE charges SET held = cost, hold_state = 'active', expires_at = ?"
        " WHERE user_id = ? AND id = ?",
        expires_at,
        request.user_id,
        hold_id,
    )
    await conn.execute(
        "UPDATE accounts SET hold_expiry = ? WHERE user_id = ?"
        " AND (hold_expiry IS NULL OR hold_expiry > ?)",
        expires_at,
        request.user_id,
        expires_at,
    )
    usage = await read_usage(conn, request.user_id, now, zone)
    taken = [unrecorded.from_plan, unrecorded.from_purchased, unrecorded.postpaid]
    response = orjson.dumps({"usage": usage.to_dto(), "taken": taken}).decode()
    await conn.execute(idempotency.RECORD_USAGE, response, request.user_id, hold_id)
    before = charges.usage_before(usage, request.kind, spend)
    await emit_usage_alerts(conn, request.user_id, before, usage, now=now, thresholds=thresholds)
    hold = Hold(
        hold_id,
        idempotency_key,
        request.user_id,
        request.kind,
        cost,
        cost,
        unrecorded.from_plan,
        unrecorded.from_purchased,
        unrecorded.postpaid,
        "active",
        expires_at,
        now,
    )
    return Held(hold, usage)


def _replayed_creation(row: Row) -> HoldOutcome:
    """The first answer of the key: the hold as it was made, whatever befell it since."""
    if row["status"] != CHARGED:
        return idempotency.replayed_refusal(row)
    made = idempotency.replayed_charge(row)
    assert not isinstance(made, Refused)
    charge = made.charge
    hold = Hold(
        charge.id,
        charge.idempotency_key,
        charge.user_id,
        charge.kind,
        row["held"],
        row["held"],
        *_taken_split(row),
        "active",
        row["expires_at"],
        charge.created_at,
    )
    return Held(hold, made.usage, replayed=True)


def _taken_split(row: Row) -> tuple[int, int, int]:
    """What the hold took at creation, per pool, as its first answer recorded it."""
    plan, purchased, postpaid = orjson.loads(row["response"])["taken"]
    return plan, purchased, postpaid


async def settle(conn: Connection, hold_id: int, cost: int, *, now: int, zone: ZoneInfo) -> Held:
    """Keep ``cost`` of the hold (at most what it holds) and give the rest back."""
    return await _finish(conn, hold_id, f"settle:{cost}", cost, now, zone)


async def release(conn: Connection, hold_id: int, *, now: int, zone: ZoneInfo) -> Held:
    """Give back everything the hold took: the operation no longer counts."""
    return await _finish(conn, hold_id, "release", None, now, zone)


async def _finish(
    conn: Connection, hold_id: int, call: str, cost: int | None, now: int, zone: ZoneInfo
) -> Held:
    found = await conn.fetchone(_HOLD, hold_id)
    if found is None:
        raise Refusal("hold_not_found", "no hold has this id")
    if cost is not None and cost > found["held"]:
        held = credits_value(found["held"])
        raise Refusal("bad_request", f"cost is more than the {held} credits held")
    # The account's lock serialises every write of its holds; it also releases this one
    # if it has expired, so what is read next is final.
    account = await locked_account(conn, found["user_id"], now, zone)
    row = await conn.fetchone(_HOLD, hold_id)
    assert row is not None
    if row["hold_state"] != "active":
        recorded = None if row["finish"] is None else orjson.loads(row["finish"])
        if recorded is not None and recorded["call"] == call:
            return Held(_shown(row), idempotency.usage_of(recorded["usage"]), replayed=True)
        raise Refusal("hold_not_active", f"the hold is {row['hold_state']}")
    if cost is None:
        await release_hold(conn, account, row, "released", now, zone)
    else:
        await _settle(conn, account, row, cost, now, zone)
    usage = await read_usage(conn, row["user_id"], now, zone)
    finish = orjson.dumps({"call": call, "usage": usage.to_dto()}).decode()
    await conn.execute(
        "UPDATE charges SET finish = ? WHERE user_id = ? AND id = ?",
        finish,
        row["user_id"],
        hold_id,
    )
    finished = await conn.fetchone(_HOLD, hold_id)
    assert finished is not None
    return Held(_shown(finished), usage)


#: The order a settle gives back in: postpaid usage (what the hold accrued) first, then
#: purchased credit (it outlives the period), then plan credit.
_GIVE_BACK_ORDER = ("postpaid", "purchase", "plan")


async def _settle(
    conn: Connection, account: Row, row: Row, cost: int, now: int, zone: ZoneInfo
) -> None:
    hold_id = row["id"]
    parts = await conn.fetchall(TAKEN_PARTS, row["user_id"], hold_id)
    rest = row["held"] - cost
    returns: list[tuple[Row, int]] = []
    back_by_pool = dict.fromkeys(_GIVE_BACK_ORDER, 0)
    for pool in _GIVE_BACK_ORDER:
        # Latest taken first: of purchases, the ones that expire last.
        for part in reversed([part for part in parts if part["pool"] == pool]):
            back = min(abs(part["amount"]), rest)
            if back:
                rest -= back
                back_by_pool[pool] += back
                returns.append((part, back if pool == "postpaid" else -back))
    # Marked first: the plan credit due after the settle counts what the hold keeps.
    await conn.execute(
        "UPDATE charges SET cost = ?, from_plan = from_plan - ?,"
        " from_purchased = from_purchased - ?, postpaid = postpaid - ?,"
        " hold_state = 'settled', finished_at = ? WHERE user_id = ? AND id = ?",
        cost,
        back_by_pool["plan"],
        back_by_pool["purchase"],
        back_by_pool["postpaid"],
        now,
        row["user_id"],
        hold_id,
    )
    # The history keeps the operation in the hold's own hour and day, for what it kept.
    await record_spending(
        conn,
        row["user_id"],
        row["created_at"],
        row["kind"],
        operations=0,
        plan=-back_by_pool["plan"],
        purchased=-back_by_pool["purchase"],
        postpaid=-back_by_pool["postpaid"],
        zone=zone,
    )
    for part, amount in returns:
        await give_back(conn, account, part, amount, charge_id=hold_id, now=now)
    await next_hold_expiry(conn, account["user_id"])


def _shown(row: Row) -> Hold:
    """A hold as it is now: what it holds (active), kept (settled), or nothing."""
    state = row["hold_state"]
    if state in ("released", "expired"):
        cost = from_plan = from_purchased = postpaid = 0
    else:
        cost, from_plan = row["cost"], row["from_plan"]
        from_purchased, postpaid = row["from_purchased"], row["postpaid"]
    return Hold(
        row["id"],
        row["idempotency_key"],
        row["user_id"],
        row["kind"],
        row["held"],
        cost,
        from_plan,
        from_purchased,
        postpaid,
        state,
        row["expires_at"],
        row["created_at"],
        row["finished_at"],
    )


async def active_holds(conn: Connection, user_id: int, *, now: int) -> list[Hold]:
    """The user's holds that still hold credit (an expired one is released, even before
    a write releases it), oldest first; ``user_not_found`` for no such live user."""
    await live_user_id(conn, user_id)
    rows = await conn.fetchall(
        "SELECT id, idempotency_key, user_id, kind, cost, held, from_plan, from_purchased,"
        " postpaid, hold_state, expires_at, created_at, finished_at FROM charges"
        " WHERE user_id = ? AND hold_state = 'active' AND expires_at > ? ORDER BY id",
        user_id,
        now,
    )
    return [_shown(row) for row in rows]


async def accounts_with_expired_holds(conn: Connection, *, now: int, limit: int) -> list[int]:
    """Users with a hold past its expiry, for the sweep (``sweep_expired``)."""
    rows = await conn.fetchall(
        "SELECT user_id FROM accounts WHERE hold_expiry <= ? ORDER BY hold_expiry LIMIT ?",
        now,
        limit,
    )
    return [row["user_id"] for row in rows]


async def expire(conn: Connection, user_id: int, *, now: int, zone: ZoneInfo) -> None:
    """Release the expired holds of one account: locking it does (``locked_account``)."""
    await locked_account(conn, user_id, now, zone)

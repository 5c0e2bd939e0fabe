"""Charging an operation against the ledger, atomically and idempotently.

One transaction does everything for a charge: it takes the idempotency key's lock (so
two requests with one key are applied once, even at the same instant), looks for the
key's recorded outcome (``idempotency``), locks and rolls over the account, checks the
period limit, spends plan credit, then purchased credit oldest-expiring first, accrues
the rest as postpaid usage or refuses the whole charge, writes the ledger entries and
the history's rollup (``ledger.rollup``), and records the outcome under the key. A
refusal is recorded too, and changes no balance.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from flamel_usage.accounts.users import live_user_id
from flamel_usage.core.errors import Refusal
from flamel_usage.core.money import credits_value
from flamel_usage.db.gateway import Connection, Row
from flamel_usage.ledger.balances import Usage, append_entry, locked_account, read_usage
from flamel_usage.ledger.rollup import record_spending
from flamel_usage.metering import idempotency
from flamel_usage.metering.outcomes import Charge, Charged, ChargeOutcome, Refused
from flamel_usage.webhooks.events import DEFAULT_THRESHOLDS, emit_usage_alerts


class CountedKind(NamedTuple):
    """A kind with a per-period limit: the account column that counts it, the plan
    column that limits it, and the reason a charge past the limit is refused for."""

    count_column: str
    limit_column: str
    refusal: str


COUNTED = {
    "ttp": CountedKind("ttp_count", "max_ttp", "ttp_limit_exceeded"),
    "edit": CountedKind("edit_count", "max_edit", "edit_limit_exceeded"),
}
#: The reasons a charge is refused for with a recorded outcome (``Refused``); any other
#: refusal of a charge request is raised, and records nothing.
REFUSALS = ("insufficient_credit", *(kind.refusal for kind in COUNTED.values()))


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
class Spend:
    from_plan: int
    from_purchases: list[tuple[int, int]]
    postpaid: int

    @property
    def from_purchased(self) -> int:
        return sum(amount for _, amount in self.from_purchases)


# The statements of spending, by name: ``bench/charges.py`` runs them too, without the
# rest of the service, as the raw loop the service's charges are measured against.
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
SPEND_FROM_PURCHASE = (
    "UPDATE credit_purchases SET remaining = remaining - ? WHERE user_id = ? AND id = ?"
)


async def charge(
    conn: Connection,
    request: ChargeRequest,
    *,
    idempotency_key: str,
    costs: Mapping[str, int],
    now: int,
    zone: ZoneInfo,
    thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
) -> ChargeOutcome:
    """Charge ``request`` once under ``idempotency_key``: made, refused, or the outcome
    recorded under the key before, replayed; the alerts it reaches (``thresholds``:
    percentages of plan credit used) are written with it."""
    if request.kind not in costs:
        message = f"unknown operation kind; known: {', '.join(sorted(costs))}"
        raise Refusal("unknown_kind", message)
    fingerprint = request.fingerprint()
    first = await idempotency.first_outcome(conn, request.user_id, idempotency_key, fingerprint)
    if first is not None:
        return first
    cost = costs[request.kind] if request.cost is None else request.cost
    await live_user_id(conn, request.user_id)
    account = await locked_account(conn, request.user_id, now, zone)
    spend = await plan_spend(conn, account, request.kind, cost, now)
    period = account["period_start"]
    unrecorded = unrecorded_charge(request, idempotency_key, cost, spend, now)
    if isinstance(spend, Refused):
        await idempotency.record(conn, fingerprint, unrecorded, period, refused=spend)
        return spend
    charge_id = await idempotency.record(conn, fingerprint, unrecorded, period)
    await apply_spend(conn, account, request.kind, spend, charge_id, now, zone)
    usage = await read_usage(conn, request.user_id, now, zone)
    await idempotency.record_usage(conn, request.user_id, charge_id, usage)
    before = usage_before(usage, request.kind, spend)
    await emit_usage_alerts(conn, request.user_id, before, usage, now=now, thresholds=thresholds)
    return Charged(dataclasses.replace(unrecorded, id=charge_id), usage)


def usage_before(after: Usage, kind: str, spend: Spend) -> Usage:
    """The numbers just before a charge or hold took ``spend``, from those after it: no
    second read."""
    postpaid = None if after.postpaid_used is None else after.postpaid_used - spend.postpaid
    return after._replace(
        current_credit=after.current_credit + spend.from_plan,
        additional_credit=after.additional_credit + spend.from_purchased,
        ttp_count=after.ttp_count - (kind == "ttp"),
        edit_count=after.edit_count - (kind == "edit"),
        postpaid_used=postpaid,
    )


def unrecorded_charge(
    request: ChargeRequest, key: str, cost: int, spend: Spend | Refused, now: int
) -> Charge:
    """The charge as its record will keep it, before the record gives it its id; a
    refused one took nothing."""
    if isinstance(spend, Refused):
        split = (0, 0, 0)
    else:
        split = (spend.from_plan, spend.from_purchased, spend.postpaid)
    return Charge(0, key, request.user_id, request.kind, cost, *split, created_at=now)


async def plan_spend(
    conn: Connection, account: Row, kind: str, cost: int, now: int
) -> Spend | Refused:
    """Where ``cost`` would come from, or why it cannot be charged; writes nothing."""
    counted = COUNTED.get(kind)
    if counted is not None:
        limit = account[counted.limit_column]
        if limit is not None and account[counted.count_column] >= limit:
            return Refused(counted.refusal, f"{kind} limit of {limit} per period reached")
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
        return Refused("insufficient_credit", f"the charge needs {credits_value(cost)} credits")
    return Spend(from_plan, taken, owed)


async def apply_spend(
    conn: Connection,
    account: Row,
    kind: str,
    spend: Spend,
    charge_id: int,
    now: int,
    zone: ZoneInfo,
) -> None:
    """Take ``spend`` and count the operation, each part with its ``charge`` entry and in
    the history's rollup: the one way credit is taken, by charges and holds alike."""
    user_id, period = account["user_id"], account["period_start"]
    counted = 1 if kind in COUNTED else 0
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
        await conn.execute(SPEND_FROM_PURCHASE, part, user_id, taken_from)
    for pool, amount, purchase_id in entries:
        if amount or pool in COUNTED:
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
    await record_spending(
        conn,
        user_id,
        now,
        kind,
        operations=1,
        plan=spend.from_plan,
        purchased=spend.from_purchased,
        postpaid=spend.postpaid,
        zone=zone,
    )

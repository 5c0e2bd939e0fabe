"""Proof that the books agree: every stored balance recomputed from the ledger.

Balances are changed only together with their ledger entries (``ledger.balances``);
this finds any balance, purchase or charge record that differs from the sum of its
entries. Read-only: it runs on a read connection and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from flamel_usage.db.gateway import Connection, Row
from flamel_usage.ledger import rollup
from flamel_usage.ledger.balances import CHARGED


async def reconcile(conn: Connection, zone: ZoneInfo) -> list[str]:
    """Every difference between a stored balance and the sum of its ledger entries.

    Empty means the books agree. Checked: plan credit, counts and postpaid usage of each
    account's stored period, the remaining amount of every purchase, every charge and
    hold against its entries, each account's earliest hold expiry, and the usage
    history's rollups (``ledger.rollup``: its days as days of the billing zone ``zone``).
    """
    problems: list[str] = []
    period_sums = await conn.fetchall(
        "SELECT a.user_id, a.plan_credit, a.ttp_count, a.edit_count, a.postpaid_used,"
        " CAST(COALESCE(SUM(CASE WHEN e.pool = 'plan' THEN e.amount END), 0) AS BIGINT) AS plan,"
        " CAST(COALESCE(SUM(CASE WHEN e.pool = 'ttp' THEN e.amount END), 0) AS BIGINT) AS ttp,"
        " CAST(COALESCE(SUM(CASE WHEN e.pool = 'edit' THEN e.amount END), 0) AS BIGINT) AS edit,"
        " CAST(COALESCE(SUM(CASE WHEN e.pool = 'postpaid' THEN e.amount END), 0) AS BIGINT)"
        " AS postpaid"
        " FROM accounts a LEFT JOIN ledger_entries e"
        " ON e.user_id = a.user_id AND e.period_start = a.period_start"
        " GROUP BY a.user_id, a.plan_credit, a.ttp_count, a.edit_count, a.postpaid_used"
        " ORDER BY a.user_id"
    )
    for row in period_sums:
        for stored, summed in (
            ("plan_credit", "plan"),
            ("ttp_count", "ttp"),
            ("edit_count", "edit"),
            ("postpaid_used", "postpaid"),
        ):
            if row[stored] != row[summed]:
                problems.append(
                    f"user {row['user_id']}: {stored} is {row[stored]}, ledger says {row[summed]}"
                )
    purchase_sums = await conn.fetchall(
        "SELECT c.id, c.user_id, c.remaining,"
        " CAST(COALESCE(SUM(e.amount), 0) AS BIGINT) AS summed"
        " FROM credit_purchases c LEFT JOIN ledger_entries e ON e.purchase_id = c.id"
        " GROUP BY c.id, c.user_id, c.remaining HAVING c.remaining <> COALESCE(SUM(e.amount), 0)"
        " ORDER BY c.id"
    )
    problems.extend(
        f"user {row['user_id']}: purchase {row['id']} has {row['remaining']} left,"
        f" ledger says {row['summed']}"
        for row in purchase_sums
    )
    charges = await conn.fetchall(_CHARGES)
    problems.extend(_charge_problems(charges))
    problems.extend(await rollup.problems(conn, charges, zone))
    stale = await conn.fetchall(
        "SELECT a.user_id, a.hold_expiry, (SELECT MIN(h.expires_at) FROM charges h"
        " WHERE h.user_id = a.user_id AND h.hold_state = 'active') AS earliest"
        " FROM accounts a ORDER BY a.user_id"
    )
    problems.extend(
        f"user {row['user_id']}: hold expiry is {row['hold_expiry']},"
        f" its active holds say {row['earliest']}"
        for row in stale
        if row["hold_expiry"] != row["earliest"]
    )
    return problems


#: Each charge with the sums of its ledger entries: read once for the checks of charges
#: and of the history's rollups, which are recomputed from it.
_CHARGES = (
    "SELECT c.id, c.user_id, c.kind, c.created_at, c.status, c.cost, c.refunded_at,"
    " c.from_plan, c.from_purchased, c.postpaid, c.held, c.hold_state,"
    " CAST(COALESCE(SUM(CASE WHEN e.entry_type = 'charge' AND e.pool = 'plan'"
    " THEN -e.amount END), 0) AS BIGINT) AS plan_entries,"
    " CAST(COALESCE(SUM(CASE WHEN e.entry_type = 'charge' AND e.pool = 'purchase'"
    " THEN -e.amount END), 0) AS BIGINT) AS purchase_entries,"
    " CAST(COALESCE(SUM(CASE WHEN e.entry_type = 'charge' AND e.pool = 'postpaid'"
    " THEN e.amount END), 0) AS BIGINT) AS postpaid_entries,"
    " COUNT(CASE WHEN e.entry_type = 'charge' THEN 1 END) AS charge_entries,"
    " COUNT(CASE WHEN e.entry_type = 'refund' THEN 1 END) AS refund_entries"
    " FROM charges c LEFT JOIN ledger_entries e ON e.charge_id = c.id"
    " GROUP BY c.id, c.user_id, c.kind, c.created_at, c.status, c.cost, c.refunded_at,"
    " c.from_plan, c.from_purchased, c.postpaid, c.held, c.hold_state ORDER BY c.id"
)


def _charge_problems(rows: Sequence[Row]) -> list[str]:
    """Charges whose ledger entries do not match their idempotency record.

    A successful charge's entries cover its cost exactly (plan and purchased credit
    taken, plus postpaid accrued), as its row's split says (the usage history sums the
    split); a refused one has none and a split of zero; a refund exists exactly when the
    record says it was refunded.
    """
    problems = []
    for row in rows:
        where = f"user {row['user_id']}: charge {row['id']}"
        split = (row["from_plan"], row["from_purchased"], row["postpaid"])
        entries = (row["plan_entries"], row["purchase_entries"], row["postpaid_entries"])
        covered = sum(entries)
        if row["hold_state"] is not None:
            problems.extend(_hold_problems(row, entries))
        elif row["status"] != CHARGED:
            if row["charge_entries"] or row["refund_entries"]:
                problems.append(f"{where} was refused but has ledger entries")
        elif covered != row["cost"]:
            problems.append(f"{where} costs {row['cost']}, its entries cover {covered}")
        elif (row["refunded_at"] is None) != (row["refund_entries"] == 0):
            problems.append(f"{where}: refund record and refund entries disagree")
        if split != entries and row["hold_state"] != "settled":
            problems.append(
                f"{where} records plan/purchased/postpaid {split}, its entries say {entries}"
            )
    return problems


def _hold_problems(row: Row, taken: tuple[int, int, int]) -> list[str]:
    """A hold's record against its entries (what went back is ``refund`` entries): it
    took what it held; active, it holds that and nothing went back; settled, it keeps
    its cost, within what it took, and the rest went back; released (or expired), it
    stands no more and what it took went back."""
    where = f"user {row['user_id']}: hold {row['id']}"
    state, split = row["hold_state"], (row["from_plan"], row["from_purchased"], row["postpaid"])
    problems = []
    if sum(taken) != row["held"]:
        problems.append(f"{where} holds {row['held']}, its entries cover {sum(taken)}")
    gone_back = row["refund_entries"]
    if state == "active" and (gone_back or row["cost"] != row["held"]):
        problems.append(f"{where} is active but gave credit back")
    elif state == "settled":
        if sum(split) != row["cost"] or any(
            kept > part for kept, part in zip(split, taken, strict=True)
        ):
            problems.append(f"{where} keeps {split} for a cost of {row['cost']}, took {taken}")
        if row["refunded_at"] is not None or (row["cost"] < row["held"]) != bool(gone_back):
            problems.append(f"{where}: settlement and its entries disagree")
    elif state in ("released", "expired") and (row["refunded_at"] is None or not gone_back):
        problems.append(f"{where}: release record and release entries disagree")
    return problems

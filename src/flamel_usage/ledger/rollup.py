"""The usage history's rollup: spending per user, UTC hour and operation kind.

The history's buckets add up standing charges: each counts whole in the bucket of its
instant, with what it took from plan credit, purchased credit and as postpaid usage. A
user with thousands of charges in a range made that read sum thousands of rows; the
rollup (table ``usage_hours``, migration 0011) keeps those sums per hour, so the read
sums at most one row per hour and kind (``ledger.history``).

UTC hours, not the billing zone's: every bucket boundary of a zone whose offsets are
whole hours falls on one, so the rollup serves days and hours alike and stays right if
the billing zone is changed. (A zone with a half-hour offset cuts UTC hours: the
history reads the charges themselves there.)

The rollup is written in the transaction of every write that changes what stands, by
one call: ``record_spending``, with the charge's numbers when it is made and with
them negated when it is refunded (taken back from the hour the charge was made in, as
the history takes a refund off the charge's own bucket). A hold (``metering.holds``)
is written the same way: added when made (``charges.apply_spend``, shared with
charges), what goes back taken off when it is settled (its operation still counts),
all of it taken off when it is released or expires (``balances.release_hold``, lazily
at the account's lock or by the sweep). An active hold past its expiry stays in the
rollup until then; the history's read takes it off meanwhile, as the usage read does.
Reconcile recomputes the rollup from the ledger (``from_ledger``, ``problems``).
"""

from __future__ import annotations

from collections.abc import Iterable

from flamel_usage.db.gateway import Connection, Row

#: An hour, in microseconds.
HOUR = 3_600_000_000

#: The statement of ``record_spending``, by name: ``bench/charges.py`` runs it too.
RECORD_SPENDING = (
    "INSERT INTO usage_hours"
    " (user_id, hour, kind, operations, from_plan, from_purchased, postpaid)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (user_id, hour, kind) DO UPDATE SET"
    " operations = usage_hours.operations + excluded.operations,"
    " from_plan = usage_hours.from_plan + excluded.from_plan,"
    " from_purchased = usage_hours.from_purchased + excluded.from_purchased,"
    " postpaid = usage_hours.postpaid + excluded.postpaid"
)


def hour_of(instant: int) -> int:
    """The start of the UTC hour ``instant`` (microseconds) is in."""
    return instant - instant % HOUR


async def record_spending(
    conn: Connection,
    user_id: int,
    at: int,
    kind: str,
    *,
    operations: int,
    plan: int,
    purchased: int,
    postpaid: int,
) -> None:
    """Add to ``user_id``'s spending in the hour of ``at``: ``operations`` of ``kind``
    and the credit taken per pool (millicredits). Negative numbers take back, as a
    refund does; call it in the transaction that makes the change."""
    await conn.execute(
        RECORD_SPENDING, user_id, hour_of(at), kind, operations, plan, purchased, postpaid
    )


Numbers = tuple[int, int, int, int]
_STORED = (
    "SELECT user_id, hour, kind, operations, from_plan, from_purchased, postpaid FROM usage_hours"
)


def from_ledger(charges: Iterable[Row]) -> dict[tuple[int, int, str], Numbers]:
    """The rollup recomputed from each charge's ledger entries: per user, hour and kind,
    the charges and holds that stand, their number and what they took per pool.

    A charge, or an active hold, stands when it has charge entries and no refund entry,
    for what its charge entries took; a settled hold stands for what it kept (its row's
    split, which reconcile checks against its entries: what went back may be recorded
    at zero); a released or expired hold, or a refunded charge, not at all. An active
    hold past its expiry still stands here: the rollup counts it until a write releases
    it (the history's read takes it off until then). ``charges`` are the rows reconcile
    reads once for all its checks of charges: each charge's ``user_id``, ``kind``,
    ``created_at``, ``hold_state``, split and its entries' sums (``plan_entries``,
    ``purchase_entries``, ``postpaid_entries``, ``charge_entries``, ``refund_entries``)."""
    found: dict[tuple[int, int, str], Numbers] = {}
    for row in charges:
        if row["hold_state"] == "settled":
            took = (row["from_plan"], row["from_purchased"], row["postpaid"])
        elif row["charge_entries"] and not row["refund_entries"]:
            took = (row["plan_entries"], row["purchase_entries"], row["postpaid_entries"])
        else:
            continue
        where = (row["user_id"], hour_of(row["created_at"]), row["kind"])
        operations, plan, purchased, postpaid = found.get(where, (0, 0, 0, 0))
        found[where] = (operations + 1, plan + took[0], purchased + took[1], postpaid + took[2])
    return found


async def problems(conn: Connection, expected: dict[tuple[int, int, str], Numbers]) -> list[str]:
    """Each user, hour and kind where the rollup differs from ``expected`` (``from_ledger``),
    as one line; a row at zero counts as absent."""
    stored: dict[tuple[int, int, str], Numbers] = {}
    for row in await conn.fetchall(_STORED):
        numbers = (row[3], row[4], row[5], row[6])
        if any(numbers):
            stored[(row[0], row[1], row[2])] = numbers
    none = (0, 0, 0, 0)
    lines = []
    for user_id, hour, kind in sorted(stored.keys() | expected.keys()):
        held, due = (
            stored.get((user_id, hour, kind), none),
            expected.get((user_id, hour, kind), none),
        )
        if held != due:
            lines.append(
                f"user {user_id}: usage_hours at {hour} for {kind} holds"
                f" operations/plan/purchased/postpaid {held}, the ledger says {due}"
            )
    return lines

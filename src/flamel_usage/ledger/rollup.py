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
the history takes a refund off the charge's own bucket). Reconcile recomputes it from
the ledger (``PROBLEMS``).
"""

from __future__ import annotations

from flamel_usage.db.gateway import Connection

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


#: The rollup recomputed from the ledger, in one pass over the entries of charges: per
#: user, hour and kind, the charges whose entries stand (charge entries and no refund
#: entry), their number and what their charge entries took per pool. The hour and the
#: amounts are the entries'; only the kind (an image charge writes no count entry) is the
#: charge row's.
_FROM_LEDGER = (
    "SELECT c.user_id, e.at / 3600000000 * 3600000000 AS hour, c.kind,"
    " COUNT(*) AS operations, CAST(SUM(e.plan) AS BIGINT) AS from_plan,"
    " CAST(SUM(e.purchased) AS BIGINT) AS from_purchased,"
    " CAST(SUM(e.postpaid) AS BIGINT) AS postpaid"
    " FROM charges c JOIN ("
    " SELECT charge_id, MIN(CASE WHEN entry_type = 'charge' THEN at END) AS at,"
    " SUM(CASE WHEN entry_type = 'charge' AND pool = 'plan' THEN -amount ELSE 0 END) AS plan,"
    " SUM(CASE WHEN entry_type = 'charge' AND pool = 'purchase' THEN -amount ELSE 0 END)"
    " AS purchased,"
    " SUM(CASE WHEN entry_type = 'charge' AND pool = 'postpaid' THEN amount ELSE 0 END)"
    " AS postpaid,"
    " SUM(CASE WHEN entry_type = 'refund' THEN 1 ELSE 0 END) AS refunds"
    " FROM ledger_entries WHERE charge_id IS NOT NULL GROUP BY charge_id) e"
    " ON e.charge_id = c.id"
    " WHERE e.refunds = 0"
    " GROUP BY c.user_id, e.at / 3600000000 * 3600000000, c.kind"
)
_COLUMNS = ("operations", "from_plan", "from_purchased", "postpaid")
_SIDES = ", ".join(
    f"CAST(SUM(CASE WHEN side = {number} THEN {column} ELSE 0 END) AS BIGINT) AS {side}_{column}"
    for number, side in ((1, "stored"), (2, "ledger"))
    for column in _COLUMNS
)
_DIFFER = " OR ".join(
    f"SUM(CASE WHEN side = 1 THEN {column} ELSE -{column} END) <> 0" for column in _COLUMNS
)
#: Each user, hour and kind where the rollup (``stored``) and its recomputation from the
#: ledger differ, with both: empty when they agree. A row at zero counts as absent.
PROBLEMS = (
    f"SELECT user_id, hour, kind, {_SIDES} FROM ("  # noqa: S608
    " SELECT 1 AS side, user_id, hour, kind, operations, from_plan, from_purchased, postpaid"
    f" FROM usage_hours UNION ALL SELECT 2 AS side, l.* FROM ({_FROM_LEDGER}) l) d"
    f" GROUP BY user_id, hour, kind HAVING {_DIFFER} ORDER BY user_id, hour, kind"
)


async def problems(conn: Connection) -> list[str]:
    """Each user, hour and kind where the rollup and the ledger disagree, as one line."""
    return [
        f"user {row['user_id']}: usage_hours at {row['hour']} for {row['kind']} holds"
        " operations/plan/purchased/postpaid"
        f" {tuple(row['stored_' + column] for column in _COLUMNS)}, the ledger says"
        f" {tuple(row['ledger_' + column] for column in _COLUMNS)}"
        for row in await conn.fetchall(PROBLEMS)
    ]

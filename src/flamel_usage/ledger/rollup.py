"""The usage history's rollups: spending per user, operation kind and UTC hour, and per
user, kind and local day of the billing zone.

The history's buckets add up standing charges: each counts whole in the bucket of its
instant, with what it took from plan credit, purchased credit and as postpaid usage. A
user with thousands of charges in a range made that read sum thousands of rows; the
rollups keep those sums, so the read sums at most one row per day (``usage_days``,
migration 0014) or hour (``usage_hours``, migration 0011) and kind (``ledger.history``).

Hours are UTC hours, not the billing zone's: every hour boundary of a zone whose offsets
are whole hours falls on one, so they serve the history by hour and the partial days at
a range's ends, and stay right if the billing zone is changed. (A zone with a half-hour
offset cuts UTC hours: the history reads the charges themselves for what the days do not
cover there.) Days are the billing zone's (``day`` is the instant its local midnight
falls on, as ``core.periods.local_midnight`` gives it, so a DST day is 23 or 25 hours
long): they depend on the zone, so the zone they are keyed in is recorded
(``usage_days_zone``), and a server that starts with another zone configured rebuilds
them from the charges first (``key_days``).

Both are written in the transaction of every write that changes what stands, by one
call: ``record_spending``, with the charge's numbers when it is made and with them
negated when it is refunded (taken back from the hour and day the charge was made in,
as the history takes a refund off the charge's own bucket). A hold
(``metering.holds``) is written the same way: added when made (``charges.apply_spend``,
shared with charges), what goes back taken off when it is settled (its operation still
counts), all of it taken off when it is released or expires (``balances.release_hold``,
lazily at the account's lock or by the sweep). An active hold past its expiry stays in
the rollups until then; the history's read takes it off meanwhile, as the usage read
does. Reconcile recomputes both from the ledger (``from_ledger``, ``problems``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import timedelta
from zoneinfo import ZoneInfo

from flamel_usage.core.periods import from_micros, local_midnight
from flamel_usage.db.gateway import Connection, Database, Row

#: An hour, in microseconds.
HOUR = 3_600_000_000

#: Per user, hour or day, and kind: operations, plan, purchased, postpaid.
Numbers = tuple[int, int, int, int]
Rollup = dict[tuple[int, int, str], Numbers]


def _upsert(table: str, column: str) -> str:
    """Add to one row of a rollup, made at zero if there is none."""
    return (
        f"INSERT INTO {table}"  # noqa: S608 (names from this module only)
        f" (user_id, {column}, kind, operations, from_plan, from_purchased, postpaid)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        f" ON CONFLICT (user_id, {column}, kind) DO UPDATE SET"
        f" operations = {table}.operations + excluded.operations,"
        f" from_plan = {table}.from_plan + excluded.from_plan,"
        f" from_purchased = {table}.from_purchased + excluded.from_purchased,"
        f" postpaid = {table}.postpaid + excluded.postpaid"
    )


#: The statements of ``record_spending``, by name: ``bench/charges.py`` runs them too.
RECORD_HOUR = _upsert("usage_hours", "hour")
RECORD_DAY = _upsert("usage_days", "day")


def hour_of(instant: int) -> int:
    """The start of the UTC hour ``instant`` (microseconds) is in."""
    return instant - instant % HOUR


#: Per zone, the last day ``day_of`` found, ``(start, end)``: a worker's charges are
#: made now, so nearly all fall in it, and finding a day in a zone costs ~7 µs of CPU.
_last_days: dict[ZoneInfo, tuple[int, int]] = {}


def day_of(instant: int, zone: ZoneInfo) -> int:
    """The start of the local day of ``zone`` that ``instant`` is in, as the history's
    buckets by day cut it: the last local midnight at or before it. Usually the midnight
    of its own date; the next date's where the clock goes back over midnight (the hour
    after that midnight shows the day before again)."""
    last = _last_days.get(zone)
    if last is not None and last[0] <= instant < last[1]:
        return last[0]
    date = from_micros(instant, zone).date()
    following = local_midnight(date + timedelta(days=1), zone)
    if following <= instant:
        return following
    start = local_midnight(date, zone)
    _last_days[zone] = (start, following)
    return start


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
    zone: ZoneInfo,
) -> None:
    """Add to ``user_id``'s spending in the hour and in the day (of ``zone``, the billing
    zone) of ``at``: ``operations`` of ``kind`` and the credit taken per pool
    (millicredits). Negative numbers take back, as a refund does; call it in the
    transaction that makes the change."""
    numbers = (kind, operations, plan, purchased, postpaid)
    await conn.execute(RECORD_HOUR, user_id, hour_of(at), *numbers)
    await conn.execute(RECORD_DAY, user_id, day_of(at, zone), *numbers)


def slices(bounds: list[int]) -> tuple[int, int]:
    """``(origin, width)``: the widest equal slices of time, counted from ``origin``, that
    no boundary strictly inside ``bounds`` (sorted instants) cuts, so the store can sum
    per slice and each slice falls whole between two boundaries.

    Every boundary inside is ``origin`` plus a multiple of ``width`` (the greatest common
    divisor of their distances: an hour, or a day in a zone without DST; less only in
    zones whose offsets differ by less than an hour). ``origin`` is at or before the
    first bound, so slice numbers are never negative and integer division floors alike
    on both stores.
    """
    start, inside, end = bounds[0], bounds[1:-1], bounds[-1]
    if not inside:
        return start, end - start
    width = math.gcd(*(boundary - inside[0] for boundary in inside)) or end - start
    slices_before = -(-(inside[0] - start) // width)  # rounded up: the first, clipped slice
    return inside[0] - slices_before * width, width


#: The charges that stand, as the rollups count them (migration 0011 backfilled the
#: hours the same way): per user, kind and slice of time.
_STANDING_BY_SLICE = (
    "SELECT user_id, kind, (created_at - ?) / ? AS slice, COUNT(*) AS operations,"
    " CAST(SUM(from_plan) AS BIGINT) AS plan,"
    " CAST(SUM(from_purchased) AS BIGINT) AS purchased,"
    " CAST(SUM(postpaid) AS BIGINT) AS postpaid"
    " FROM charges WHERE status = 201 AND refunded_at IS NULL"
    " GROUP BY user_id, kind, slice"
)
_STANDING_SPAN = (
    "SELECT MIN(created_at), MAX(created_at) FROM charges"
    " WHERE status = 201 AND refunded_at IS NULL"
)


#: The rebuilt days go in this many rows a statement (7 values each: within both stores'
#: limits on parameters), not one round trip each.
_ROWS_PER_INSERT = 1000
_INSERT_DAYS = (
    "INSERT INTO usage_days"
    " (user_id, day, kind, operations, from_plan, from_purchased, postpaid) VALUES "
)


async def days_kept_in(conn: Connection, zone: ZoneInfo) -> bool:
    """Whether ``usage_days`` holds the days of ``zone``: the history reads them only
    then (a server started in another zone, or none since migration 0014, reads its
    days from the hours and the charges until its start has rebuilt them)."""
    return bool(await conn.fetchval("SELECT zone FROM usage_days_zone") == zone.key)


async def key_days(db: Database, zone: ZoneInfo) -> bool:
    """Make ``usage_days`` hold the days of ``zone``: rebuilt from the charges when it was
    kept in another zone, or when none is recorded (migration 0014 records none: a store
    charged before it gets its days at the next start); True when it was rebuilt.

    At a server's start, before it serves. One transaction that holds every writer of
    the rollup off (``Connection.lock_table``): a charge waits for the rebuild and then
    adds to the rebuilt rows, and of several workers or nodes starting at once the first
    rebuilds, the others find the zone recorded."""
    async with db.transaction() as conn:
        await conn.lock_table("usage_days")
        if await days_kept_in(conn, zone):
            return False
        await conn.execute("DELETE FROM usage_days_zone")
        await conn.execute("INSERT INTO usage_days_zone (zone) VALUES (?)", zone.key)
        await conn.execute("DELETE FROM usage_days")
        span = await conn.fetchone(_STANDING_SPAN)
        if span is None or span[0] is None:
            return True
        # Summed in the store per slice no local midnight cuts (``slices``), put in their
        # days here: an hour, or a whole day in a zone without DST.
        midnights = [day_of(span[0], zone)]
        while midnights[-1] <= span[1]:
            date = from_micros(midnights[-1], zone).date()
            midnights.append(local_midnight(date + timedelta(days=1), zone))
        origin, width = slices(midnights)
        days: Rollup = {}
        for row in await conn.fetchall(_STANDING_BY_SLICE, origin, width):
            first = max(midnights[0], origin + row[2] * width)
            day = midnights[bisect_right(midnights, first) - 1]
            where = (row[0], day, row[1])
            operations, plan, purchased, postpaid = days.get(where, (0, 0, 0, 0))
            days[where] = (
                operations + row[3],
                plan + row[4],
                purchased + row[5],
                postpaid + row[6],
            )
        rows = [(*where, *numbers) for where, numbers in days.items()]
        for first in range(0, len(rows), _ROWS_PER_INSERT):
            batch = rows[first : first + _ROWS_PER_INSERT]
            await conn.execute(
                _INSERT_DAYS + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(batch)),
                *(value for row in batch for value in row),
            )
    return True


def from_ledger(charges: Iterable[Row], bucket_of: Callable[[int], int]) -> Rollup:
    """A rollup recomputed from each charge's ledger entries: per user, bucket (the
    hour or day ``bucket_of`` gives the charge's instant) and kind, the charges and holds
    that stand, their number and what they took per pool.

    A charge, or an active hold, stands when it has charge entries and no refund entry,
    for what its charge entries took; a settled hold stands for what it kept (its row's
    split, which reconcile checks against its entries: what went back may be recorded
    at zero); a released or expired hold, or a refunded charge, not at all. An active
    hold past its expiry still stands here: the rollups count it until a write releases
    it (the history's read takes it off until then). ``charges`` are the rows reconcile
    reads once for all its checks of charges: each charge's ``user_id``, ``kind``,
    ``created_at``, ``hold_state``, split and its entries' sums (``plan_entries``,
    ``purchase_entries``, ``postpaid_entries``, ``charge_entries``, ``refund_entries``)."""
    found: Rollup = {}
    for row in charges:
        if row["hold_state"] == "settled":
            took = (row["from_plan"], row["from_purchased"], row["postpaid"])
        elif row["charge_entries"] and not row["refund_entries"]:
            took = (row["plan_entries"], row["purchase_entries"], row["postpaid_entries"])
        else:
            continue
        where = (row["user_id"], bucket_of(row["created_at"]), row["kind"])
        operations, plan, purchased, postpaid = found.get(where, (0, 0, 0, 0))
        found[where] = (operations + 1, plan + took[0], purchased + took[1], postpaid + took[2])
    return found


async def problems(conn: Connection, charges: Iterable[Row], zone: ZoneInfo) -> list[str]:
    """Each user, hour or day, and kind where a rollup differs from the ledger
    (``from_ledger`` of ``charges``), as one line; a row at zero counts as absent. The
    days are checked when they are kept in the billing zone ``zone``: kept in another,
    or before any (``key_days``), the history does not read them."""
    charges = list(charges)
    lines = await _differences(conn, "usage_hours", "hour", from_ledger(charges, hour_of))
    if not await days_kept_in(conn, zone):
        return lines
    days = from_ledger(charges, lambda instant: day_of(instant, zone))
    return lines + await _differences(conn, "usage_days", "day", days)


async def _differences(conn: Connection, table: str, column: str, expected: Rollup) -> list[str]:
    stored: Rollup = {}
    for row in await conn.fetchall(
        f"SELECT user_id, {column}, kind, operations, from_plan, from_purchased, postpaid"  # noqa: S608
        f" FROM {table}"
    ):
        numbers = (row[3], row[4], row[5], row[6])
        if any(numbers):
            stored[(row[0], row[1], row[2])] = numbers
    none = (0, 0, 0, 0)
    lines = []
    for where in sorted(stored.keys() | expected.keys()):
        held, due = stored.get(where, none), expected.get(where, none)
        if held != due:
            user_id, at, kind = where
            lines.append(
                f"user {user_id}: {table} at {at} for {kind} holds"
                f" operations/plan/purchased/postpaid {held}, the ledger says {due}"
            )
    return lines

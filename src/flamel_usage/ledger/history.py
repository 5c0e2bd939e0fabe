"""Where the credit went: a user's spending per day or hour in the billing zone.

The values below are the seam between the history's read (``read_history``) and its
faces (the API's JSON and CSV, the usage page's chart, the terminal, the SDK): each
face renders a ``History`` and never reads the ledger itself.

Buckets are calendar days (or hours) of the billing zone, so a day across a DST change
lasts 23 or 25 hours, clipped to the range asked for: the first and last bucket may be
shorter than a day, and the buckets of a billing period add up to that period exactly.
A charge counts in the bucket of its own instant; what a refund gives back is taken off
that same bucket (spending net of refunds), so a day's figures never go negative.

The rules, exactly:

* A range is ``[start, end)``; by default the current period as the usage read shows it
  (also a period that has rolled over lazily, which holds nothing yet). A range spans at
  most 366 calendar days of buckets by day, 31 by hour: a year, a leap year's included,
  or a month of hours, whatever DST does to their length.
* A charge that stands counts whole in the bucket of ``charges.created_at``: what it
  took from plan credit, from purchased credit and as postpaid usage, and one operation
  of its kind. A refunded charge counts nowhere, its operation included. So the buckets
  of the current period add up to what the usage read shows: the operations to its
  counts, postpaid to ``postpaidUsageCount``, and the plan part ``p`` to its credit by
  the ledger's rule ``max(0, min(maxCredit, maxCredit - p))`` (``plan_credit_due``).
* Every configured operation kind is in every bucket, zero included, followed by any
  other kind the range holds (one no longer configured), so the figures always add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from flamel_usage.db import Connection
from flamel_usage.errors import BadRequest
from flamel_usage.ledger.service import read_usage
from flamel_usage.periods import from_micros, local_instant, local_midnight, to_micros

Granularity = Literal["day", "hour"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "hour")

#: The longest range of each granularity, in calendar days of the billing zone.
MAX_RANGE_DAYS: Mapping[Granularity, int] = {"day": 366, "hour": 31}

_HOUR = 3_600_000_000


class InvalidRange(BadRequest):
    reason = "invalid_range"


class RangeTooLong(BadRequest):
    reason = "range_too_long"


@dataclass(frozen=True, slots=True)
class Bucket:
    """One day or hour ``[start, end)``: credit spent per pool (millicredits) and
    operations per kind (every configured kind present, zero included)."""

    start: datetime
    end: datetime
    plan: int
    purchased: int
    postpaid: int
    operations: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class History:
    """A range ``[start, end)`` of one user's spending, in ``timezone`` (IANA name)."""

    timezone: str
    granularity: Granularity
    start: datetime
    end: datetime
    buckets: tuple[Bucket, ...]


def _next_boundary(instant: int, granularity: Granularity, zone: ZoneInfo) -> int:
    if granularity == "day":
        return local_midnight(from_micros(instant, zone).date() + timedelta(days=1), zone)
    # An hour later, back to the start of its local hour: across a DST change the
    # local hours stay whole hours, 23 or 25 of them in the day.
    later = from_micros(instant + _HOUR, zone)
    return to_micros(later.replace(minute=0, second=0, microsecond=0))


def _boundaries(start: int, end: int, granularity: Granularity, zone: ZoneInfo) -> list[int]:
    """``start``, every bucket boundary strictly inside the range, and ``end``."""
    found = [start]
    while found[-1] < end:
        found.append(min(end, _next_boundary(found[-1], granularity, zone)))
    return found


def check_range(start: int, end: int, granularity: Granularity, zone: ZoneInfo) -> None:
    if start >= end:
        raise InvalidRange("from must be before to")
    days = MAX_RANGE_DAYS[granularity]
    if end > to_micros(from_micros(start, zone) + timedelta(days=days)):
        raise RangeTooLong(f"by {granularity}, a range spans at most {days} days")


def _spent_sql(buckets: int) -> str:
    """Charges that stand, summed per bucket and kind, for one user, in one statement.

    The buckets are a ``VALUES`` list so that the store adds up the rows itself: each
    bucket is one range scan of the ``charges (user_id, created_at)`` index.
    """
    values = ", ".join(["(CAST(? AS BIGINT), CAST(? AS BIGINT))"] * buckets)
    return (
        f"WITH buckets (bucket_start, bucket_end) AS (VALUES {values})"  # noqa: S608
        " SELECT b.bucket_start, c.kind, COUNT(DISTINCT c.id) AS operations,"
        " CAST(COALESCE(SUM(CASE WHEN e.pool = 'plan' THEN -e.amount END), 0) AS BIGINT) AS plan,"
        " CAST(COALESCE(SUM(CASE WHEN e.pool = 'purchase' THEN -e.amount END), 0) AS BIGINT)"
        " AS purchased,"
        " CAST(COALESCE(SUM(CASE WHEN e.pool = 'postpaid' THEN e.amount END), 0) AS BIGINT)"
        " AS postpaid"
        " FROM buckets b JOIN charges c ON c.user_id = ?"
        " AND c.created_at >= b.bucket_start AND c.created_at < b.bucket_end"
        " LEFT JOIN ledger_entries e ON e.charge_id = c.id AND e.entry_type = 'charge'"
        " WHERE c.status = 201 AND c.refunded_at IS NULL"
        " GROUP BY b.bucket_start, c.kind"
    )


async def read_history(
    conn: Connection,
    user_id: int,
    *,
    start: int | None,
    end: int | None,
    granularity: Granularity,
    kinds: Iterable[str],
    now: int,
    zone: ZoneInfo,
) -> History:
    """``user_id``'s spending in ``[start, end)`` (microseconds; each defaults to its end
    of the current period), or ``InvalidRange`` / ``RangeTooLong``."""
    if start is None or end is None:
        period = (await read_usage(conn, user_id, now, zone)).period
        start = to_micros(period.start) if start is None else start
        end = to_micros(period.end) if end is None else end
    check_range(start, end, granularity, zone)
    bounds = _boundaries(start, end, granularity, zone)
    pairs = [edge for pair in pairwise(bounds) for edge in pair]
    rows = await conn.fetchall(_spent_sql(len(bounds) - 1), *pairs, user_id)
    # Holds (reserved credit) join here when they exist: released or settled, they count.
    spent: dict[int, list[int]] = {}
    operations: dict[int, dict[str, int]] = {}
    for row in rows:
        sums = spent.setdefault(row["bucket_start"], [0, 0, 0])
        sums[0] += row["plan"]
        sums[1] += row["purchased"]
        sums[2] += row["postpaid"]
        operations.setdefault(row["bucket_start"], {})[row["kind"]] = row["operations"]
    configured = list(kinds)
    found = {kind for counts in operations.values() for kind in counts}
    every_kind = [*configured, *sorted(found.difference(configured))]
    buckets = []
    for bucket_start, bucket_end in pairwise(bounds):
        plan, purchased, postpaid = spent.get(bucket_start, (0, 0, 0))
        counts = operations.get(bucket_start, {})
        buckets.append(
            Bucket(
                local_instant(bucket_start, zone),
                local_instant(bucket_end, zone),
                plan,
                purchased,
                postpaid,
                {kind: counts.get(kind, 0) for kind in every_kind},
            )
        )
    return History(
        zone.key,
        granularity,
        local_instant(start, zone),
        local_instant(end, zone),
        tuple(buckets),
    )

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
* A hold (``metering.holds``) counts as the charge it is kept as: while active, what it
  holds; settled, what it kept; released, or active past its expiry (the usage read
  shows it released), nowhere.
* Every configured operation kind is in every bucket, zero included, followed by any
  other kind the range holds (one no longer configured), so the figures always add up.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from flamel_usage.core.errors import Refusal
from flamel_usage.core.periods import from_micros, local_instant, local_midnight, to_micros
from flamel_usage.db.gateway import Connection
from flamel_usage.ledger.balances import read_usage

Granularity = Literal["day", "hour"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "hour")

#: The longest range of each granularity, in calendar days of the billing zone.
MAX_RANGE_DAYS: Mapping[Granularity, int] = {"day": 366, "hour": 31}

_HOUR = 3_600_000_000


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
    # local hours stay whole hours, 23 or 25 of them in the day. An hour later is
    # usually a local hour start already (the offset is the same, or changed by whole
    # hours): then it is the answer, with no wall time to convert back.
    later = from_micros(instant + _HOUR, zone)
    if later.minute == later.second == later.microsecond == 0:
        return instant + _HOUR
    return to_micros(later.replace(minute=0, second=0, microsecond=0))


def _boundaries(start: int, end: int, granularity: Granularity, zone: ZoneInfo) -> list[int]:
    """``start``, every bucket boundary strictly inside the range, and ``end``."""
    found = [start]
    while found[-1] < end:
        found.append(min(end, _next_boundary(found[-1], granularity, zone)))
    return found


def check_range(start: int, end: int, granularity: Granularity, zone: ZoneInfo) -> None:
    if start >= end:
        raise Refusal("invalid_range", "from must be before to")
    days = MAX_RANGE_DAYS[granularity]
    if end > to_micros(from_micros(start, zone) + timedelta(days=days)):
        raise Refusal("range_too_long", f"by {granularity}, a range spans at most {days} days")


def _granules(bounds: list[int]) -> tuple[int, int]:
    """``(origin, width)``: the widest equal slices of time, counted from ``origin``, that
    no bucket boundary cuts, so the store can sum per slice and each slice falls whole
    in one bucket.

    Every boundary inside the range is ``origin`` plus a multiple of ``width`` (the
    greatest common divisor of their distances: an hour, or a day in a zone without DST;
    less only in zones whose offsets differ by less than an hour). ``origin`` is at or
    before ``start``, so slice numbers are never negative and integer division floors
    alike on both stores.
    """
    start, inside, end = bounds[0], bounds[1:-1], bounds[-1]
    if not inside:
        return start, end - start
    width = math.gcd(*(boundary - inside[0] for boundary in inside)) or end - start
    slices_before = -(-(inside[0] - start) // width)  # rounded up: the first, clipped bucket
    return inside[0] - slices_before * width, width


#: Charges that stand, summed per slice of time and kind: one range scan of the
#: covering index ``charges_user_spent`` (migrations 0007 and 0009), no join.
_SPENT_SQL = (
    "SELECT (created_at - ?) / ? AS granule, kind, COUNT(*) AS operations,"
    " CAST(SUM(from_plan) AS BIGINT) AS plan,"
    " CAST(SUM(from_purchased) AS BIGINT) AS purchased,"
    " CAST(SUM(postpaid) AS BIGINT) AS postpaid"
    " FROM charges WHERE user_id = ? AND created_at >= ? AND created_at < ?"
    " AND status = 201 AND refunded_at IS NULL"
    " AND (hold_state IS NULL OR hold_state <> 'active' OR expires_at > ?)"
    " GROUP BY granule, kind"
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
    of the current period), or ``invalid_range`` / ``range_too_long``."""
    if start is None or end is None:
        period = (await read_usage(conn, user_id, now, zone)).period
        start = to_micros(period.start) if start is None else start
        end = to_micros(period.end) if end is None else end
    check_range(start, end, granularity, zone)
    bounds = _boundaries(start, end, granularity, zone)
    origin, width = _granules(bounds)
    rows = await conn.fetchall(_SPENT_SQL, origin, width, user_id, start, end, now)
    spent: dict[int, list[int]] = {}
    operations: dict[int, dict[str, int]] = {}
    for row in rows:
        granule_start = max(start, origin + row["granule"] * width)
        bucket = bisect_right(bounds, granule_start) - 1
        sums = spent.setdefault(bucket, [0, 0, 0])
        sums[0] += row["plan"]
        sums[1] += row["purchased"]
        sums[2] += row["postpaid"]
        counts = operations.setdefault(bucket, {})
        counts[row["kind"]] = counts.get(row["kind"], 0) + row["operations"]
    configured = list(kinds)
    found = {kind for counts in operations.values() for kind in counts}
    every_kind = [*configured, *sorted(found.difference(configured))]
    instants = [local_instant(boundary, zone) for boundary in bounds]
    buckets = []
    for bucket, (bucket_start, bucket_end) in enumerate(pairwise(instants)):
        plan, purchased, postpaid = spent.get(bucket, (0, 0, 0))
        counts = operations.get(bucket, {})
        buckets.append(
            Bucket(
                bucket_start,
                bucket_end,
                plan,
                purchased,
                postpaid,
                {kind: counts.get(kind, 0) for kind in every_kind},
            )
        )
    return History(zone.key, granularity, instants[0], instants[-1], tuple(buckets))

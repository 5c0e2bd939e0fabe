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

How it is read: from the rollups (``ledger.rollup``), which hold those sums per user,
kind and local day of the billing zone, and per user, kind and UTC hour. By day, each
whole local day of the range is one row per kind of ``usage_days``; a partial day at
either end (a period starts at its anchor's time of day) is summed from the hours it
holds whole and the charges of the part of an hour left; until ``usage_days`` is kept
in the read's zone (``rollup.days_kept_in``: a server's start rebuilds it), days are read
as hours are. By hour, the hours come from ``usage_hours`` unless the zone's offset is
not whole hours, then from the charges. The active holds past their expiry, which the
rollups still count, are taken off.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from flamel_usage.core.errors import Refusal
from flamel_usage.core.periods import from_micros, local_midnight, to_micros
from flamel_usage.db.gateway import Connection
from flamel_usage.ledger.balances import read_usage
from flamel_usage.ledger.rollup import HOUR, day_of, days_kept_in, slices

Granularity = Literal["day", "hour"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "hour")

#: The longest range of each granularity, in calendar days of the billing zone.
MAX_RANGE_DAYS: Mapping[Granularity, int] = {"day": 366, "hour": 31}


class Bucket(NamedTuple):
    """One day or hour ``[start, end)``: credit spent per pool (millicredits) and
    operations per kind (every configured kind present, zero included).

    A named tuple rather than a frozen dataclass: as immutable, and made several times
    faster (a month of hours is 744 buckets, each read)."""

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


_AN_HOUR = timedelta(hours=1)


def _pinned(instant: int, zone: ZoneInfo, fixed: dict[timedelta, timezone]) -> datetime:
    """``instant`` as ``local_instant`` gives it, in a fixed-offset zone made once per
    offset (``fixed``: a range has two or three offsets, and up to 745 boundaries)."""
    offset = from_micros(instant, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    pinned = fixed.get(offset)
    if pinned is None:
        pinned = fixed[offset] = timezone(offset)
    return from_micros(instant, pinned)


def _edges(
    start: int, end: int, granularity: Granularity, zone: ZoneInfo
) -> tuple[list[int], list[datetime]]:
    """``start``, every bucket boundary strictly inside the range, and ``end``: as
    instants, and as local wall times with their offset pinned (``local_instant``)."""
    fixed: dict[timedelta, timezone] = {}
    bounds, instants = [start], [_pinned(start, zone, fixed)]
    boundary, local = start, instants[0]
    while boundary < end:
        if granularity == "day":
            boundary = min(end, local_midnight(local.date() + timedelta(days=1), zone))
            local = _pinned(boundary, zone, fixed)
        else:
            boundary, local = _next_hour(boundary, local, zone, fixed)
            if boundary >= end:
                boundary, local = end, _pinned(end, zone, fixed)
        bounds.append(boundary)
        instants.append(local)
    return bounds, instants


def _next_hour(
    boundary: int, local: datetime, zone: ZoneInfo, fixed: dict[timedelta, timezone]
) -> tuple[int, datetime]:
    """The start of the local hour after ``boundary`` (``local``, pinned), both ways.

    An hour later, back to the start of its local hour: across a DST change the local
    hours stay whole hours, 23 or 25 of them in the day. An hour later is usually a local
    hour start already (the offset is the same, or changed by whole hours): then it is
    the answer, with no wall time to convert back, and its wall time is ``local`` an
    hour on while the offset stays the same (one zone lookup per boundary, for the 745
    of a month of hours).
    """
    later = from_micros(boundary + HOUR, zone)
    if later.minute or later.second or later.microsecond:
        following = to_micros(later.replace(minute=0, second=0, microsecond=0))
        return following, _pinned(following, zone, fixed)
    if later.utcoffset() == local.utcoffset():
        return boundary + HOUR, local + _AN_HOUR
    return boundary + HOUR, _pinned(boundary + HOUR, zone, fixed)


def check_range(start: int, end: int, granularity: Granularity, zone: ZoneInfo) -> None:
    if start >= end:
        raise Refusal("invalid_range", "from must be before to")
    days = MAX_RANGE_DAYS[granularity]
    if end > to_micros(from_micros(start, zone) + timedelta(days=days)):
        raise Refusal("range_too_long", f"by {granularity}, a range spans at most {days} days")


#: Charges that stand, summed per slice of time and kind: one range scan of the
#: covering index ``charges_user_spent`` (migrations 0007 and 0009), no join. For what
#: the rollups do not hold: the ends of the range inside an hour, or by hour every hour
#: in a zone whose offset is not whole hours.
_CHARGES = (
    "SELECT (created_at - ?) / ? AS granule, kind, COUNT(*) AS operations,"
    " CAST(SUM(from_plan) AS BIGINT) AS plan,"
    " CAST(SUM(from_purchased) AS BIGINT) AS purchased,"
    " CAST(SUM(postpaid) AS BIGINT) AS postpaid"
    " FROM charges WHERE user_id = ? AND created_at >= ? AND created_at < ?"
    " AND status = 201 AND refunded_at IS NULL"
    " AND (hold_state IS NULL OR hold_state <> 'active' OR expires_at > ?)"
    " GROUP BY granule, kind"
)
#: The rollup's whole hours (``ledger.rollup``), one row per hour and kind: when each
#: slice is an hour, summing would only cost a sort.
_HOURS = (
    "SELECT (hour - ?) / ? AS granule, kind, operations,"
    " from_plan AS plan, from_purchased AS purchased, postpaid"
    " FROM usage_hours WHERE user_id = ? AND hour >= ? AND hour < ?"
)
#: The same summed per slice of several hours (a day's partial end).
_HOURS_SUMMED = (
    "SELECT (hour - ?) / ? AS granule, kind, CAST(SUM(operations) AS BIGINT) AS operations,"
    " CAST(SUM(from_plan) AS BIGINT) AS plan,"
    " CAST(SUM(from_purchased) AS BIGINT) AS purchased,"
    " CAST(SUM(postpaid) AS BIGINT) AS postpaid"
    " FROM usage_hours WHERE user_id = ? AND hour >= ? AND hour < ?"
    " GROUP BY granule, kind"
)
#: The rollup's whole days of the billing zone, one row per day and kind.
_DAYS = (
    "SELECT (day - ?) / ? AS granule, kind, operations,"
    " from_plan AS plan, from_purchased AS purchased, postpaid"
    " FROM usage_days WHERE user_id = ? AND day >= ? AND day < ?"
)
#: Taken off the rollups' hours and days: the active holds past their expiry, which the
#: rollups count until a write releases them (the usage read shows them released already).
#: Few rows, found by the partial index ``charges_active_holds`` (migration 0009): the
#: unary plus keeps SQLite from scanning the range's charges by ``charges_user_spent``
#: instead (a covering index with a range on ``created_at`` looks cheaper to it).
_EXPIRED_HOLDS = (
    "SELECT (created_at - ?) / ? AS granule, kind, -COUNT(*) AS operations,"
    " CAST(-SUM(from_plan) AS BIGINT) AS plan,"
    " CAST(-SUM(from_purchased) AS BIGINT) AS purchased,"
    " CAST(-SUM(postpaid) AS BIGINT) AS postpaid"
    " FROM charges WHERE user_id = ? AND hold_state = 'active' AND expires_at <= ?"
    " AND +created_at >= ? AND +created_at < ?"
    " GROUP BY granule, kind"
)


def _spent_query(
    user_id: int,
    bounds: list[int],
    origin: int,
    width: int,
    granularity: Granularity,
    zone: ZoneInfo,
    now: int,
    *,
    days_kept: bool,
) -> tuple[str, list[object]]:
    """One statement for the range's spending per slice (``granule``: ``origin`` and
    ``width`` as ``rollup.slices`` gives them for ``bounds``) and kind; a slice
    and kind may come in more than one row, and a row may take off (negative numbers).

    By day, the day rollup serves the range's whole local days when it is kept in
    ``zone`` (``days_kept``); each partial day at its ends is one bucket, served as a
    range by hour is. Not kept in ``zone`` (before a server's start has rebuilt it, as
    ``rollup.key_days`` does), the days are served as by hour. By hour, the hour rollup
    serves the range's whole UTC hours when no bucket boundary cuts one (a zone whose
    offsets are whole hours); the charges the rest: the ends inside an hour, or the whole
    range. What a rollup serves is less the active holds past their expiry at ``now``.
    """
    start, end = bounds[0], bounds[-1]
    parts: list[str] = []
    args: list[object] = []

    def rollup(sql: str, lower: int, upper: int) -> None:
        parts.extend((sql, _EXPIRED_HOLDS))
        args.extend((origin, width, user_id, lower, upper))
        args.extend((origin, width, user_id, now, lower, upper))

    def hours(lower: int, upper: int, whole: bool) -> None:
        """``[lower, upper)``: the hour rollup's hours in it if ``whole`` (no bucket
        boundary cuts one), the charges for the rest."""
        first_hour, last_hour = -(-lower // HOUR) * HOUR, upper // HOUR * HOUR
        if not whole or first_hour >= last_hour:
            first_hour = last_hour = upper
        if lower < first_hour:
            parts.append(_CHARGES)
            args.extend((origin, width, user_id, lower, first_hour, now))
        if first_hour < last_hour:
            rollup(_HOURS if width == HOUR else _HOURS_SUMMED, first_hour, last_hour)
        if last_hour < upper:
            parts.append(_CHARGES)
            args.extend((origin, width, user_id, last_hour, upper, now))

    if granularity == "hour" or not days_kept:
        hours(start, end, not any(boundary % HOUR for boundary in bounds[1:-1]))
        return " UNION ALL ".join(parts), args
    first_day = start if day_of(start, zone) == start else bounds[1]
    last_day = end if day_of(end, zone) == end else bounds[-2]
    if first_day >= last_day:  # no whole day: at most two partial ones
        first_day = last_day = bounds[1]
    if start < first_day:
        hours(start, first_day, True)
    if first_day < last_day:
        rollup(_DAYS, first_day, last_day)
    if last_day < end:
        hours(last_day, end, True)
    return " UNION ALL ".join(parts), args


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
    bounds, instants = _edges(start, end, granularity, zone)
    origin, width = slices(bounds)
    days_kept = granularity == "day" and await days_kept_in(conn, zone)
    sql, args = _spent_query(
        user_id, bounds, origin, width, granularity, zone, now, days_kept=days_kept
    )
    rows = await conn.fetchall(sql, *args)
    # Per bucket, by its index: credit per pool and operations per kind (a bucket with
    # none shares one empty mapping: few allocations, a month of hours has 744 buckets).
    buckets = len(bounds) - 1
    plan, purchased, postpaid = [0] * buckets, [0] * buckets, [0] * buckets
    nothing: dict[str, int] = {}
    operations = [nothing] * buckets
    last_granule, bucket, counts = None, 0, nothing
    for row in rows:  # by position: (granule, kind, operations, plan, purchased, postpaid)
        count: int = row[2]
        if not count:  # an hour and kind whose charges were all refunded: nothing stands
            continue
        granule: int = row[0]
        if granule != last_granule:  # rows come mostly by slice, a row per kind
            last_granule = granule
            bucket = bisect_right(bounds, max(start, origin + granule * width)) - 1
            counts = operations[bucket]
            if counts is nothing:
                counts = operations[bucket] = {}
        plan[bucket] += row[3]
        purchased[bucket] += row[4]
        postpaid[bucket] += row[5]
        counts[row[1]] = counts.get(row[1], 0) + count
    # A kind whose operations an expired hold took off, to zero, was not in the range.
    for counts in operations:
        for kind in [kind for kind, count in counts.items() if not count]:
            del counts[kind]
    configured = list(kinds)
    found = {kind for counts in operations for kind in counts}
    zero = dict.fromkeys([*configured, *sorted(found.difference(configured))], 0)
    return History(
        zone.key,
        granularity,
        instants[0],
        instants[-1],
        tuple(
            map(
                Bucket,
                instants,
                instants[1:],
                plan,
                purchased,
                postpaid,
                [{**zero, **counts} for counts in operations],
            )
        ),
    )

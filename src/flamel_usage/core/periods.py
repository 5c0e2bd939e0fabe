"""Billing period arithmetic.

A subscription's periods are anchored at its start, like a billing-cycle anchor: every
period starts at the anchor's local wall time in the billing zone, shifted by whole
months or years. Each start is derived from the anchor itself rather than from the
previous period, so a Jan 31 anchor clamps to Feb 28/29 and then returns to Mar 31
instead of drifting to the 28th for ever.

Instants are stored as integer microseconds since the Unix epoch so that SQLite and
PostgreSQL compare and order them identically; the conversions here are exact.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

PeriodUnit = Literal["month", "year"]

_MONTHS_PER_PERIOD: dict[str, int] = {"month": 1, "year": 12}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _require_aware(name: str, value: datetime) -> None:
    # A naive datetime would silently be read as the host's local time (or fail to
    # compare), which makes period maths depend on where the process runs.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _in_zone(instant: datetime, zone: ZoneInfo) -> datetime:
    """``instant`` as the billing zone's wall time, with that moment's offset pinned.

    The result carries a fixed-offset ``timezone`` rather than the ``ZoneInfo``
    itself. Python compares and subtracts two datetimes sharing a ``ZoneInfo`` by
    wall time, ignoring ``fold``, and never reports a fold=1 time equal to the same
    instant in another zone; around a DST overlap that would make boundary checks and
    equality wrong by an hour. With a fixed offset every comparison, equality, hash
    and subtraction is exact, while the wall time and offset are still the billing
    zone's (which is what the API reports).
    """
    local = instant.astimezone(zone)
    offset = local.utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    return local.replace(tzinfo=timezone(offset), fold=0)


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open billing period ``[start, end)``.

    Half-open so that consecutive periods share their boundary instant without
    overlapping: a read exactly at the boundary already sees the new period.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware("start", self.start)
        _require_aware("end", self.end)
        if not self.start.astimezone(UTC) < self.end.astimezone(UTC):
            raise ValueError(f"period start {self.start} is not before its end {self.end}")

    @classmethod
    def of_micros(cls, start: int, end: int, zone: tzinfo = UTC) -> Period:
        """The period between two stored instants (microseconds), as wall times in
        ``zone``. Checked as the integers they are: both ends are aware by construction,
        and the datetime checks of ``__post_init__`` cost a usage read about a microsecond."""
        if not start < end:
            raise ValueError(f"period start {start} is not before its end {end}")
        period = object.__new__(cls)
        object.__setattr__(period, "start", from_micros(start, zone))
        object.__setattr__(period, "end", from_micros(end, zone))
        return period

    def contains(self, instant: datetime) -> bool:
        # Compared in UTC so that an instant given in a ZoneInfo zone is judged by
        # the moment it denotes, not by its wall time (see ``_in_zone``).
        _require_aware("instant", instant)
        return self.start.astimezone(UTC) <= instant.astimezone(UTC) < self.end.astimezone(UTC)

    def iso_interval(self) -> str:
        """ISO 8601 interval as the API reports it.

        Seconds precision with explicit offsets, because the contract's example
        (``2026-11-01T00:00:00+09:00/2026-12-01T00:00:00+09:00``) shows the billing
        zone's offset and clients parse that exact shape.
        """
        start = self.start.isoformat(timespec="seconds")
        end = self.end.isoformat(timespec="seconds")
        return f"{start}/{end}"


def _period_start(anchor: datetime, months: int, zone: ZoneInfo) -> datetime:
    """Start of the period ``months`` months after ``anchor`` (as given by ``_in_zone``).

    The anchor's wall time is moved to the target month with its day clamped to that
    month's last day. A wall time that does not exist (DST gap) or exists twice (DST
    overlap) is resolved as Python's zoneinfo resolves ``fold=0``: in an overlap that
    is the first occurrence (the earlier instant); in a gap it is the instant obtained
    with the offset in force before the transition, which lands after the gap (e.g.
    New York 02:30 on spring-forward day becomes 03:30 EDT). Using one fixed rule
    keeps every process, and every re-computation, agreeing on the same boundaries.

    Period 0 is the anchor instant itself, even when the anchor is the second
    occurrence of an ambiguous wall time: the subscription starts when it started,
    not an hour earlier.
    """
    if months == 0:
        return anchor
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    wall = anchor.replace(year=year, month=month, day=day, tzinfo=zone, fold=0)
    # Going through UTC turns a non-existent wall time into the real local time of
    # the instant fold=0 denotes, so the reported start carries a valid offset.
    return _in_zone(wall.astimezone(UTC), zone)


def period_containing(anchor: datetime, unit: PeriodUnit, at: datetime, zone: ZoneInfo) -> Period:
    """The period of a subscription anchored at ``anchor`` that contains ``at``.

    ``start`` and ``end`` show the billing zone's wall time and offset at those
    instants, as fixed-offset datetimes (see ``_in_zone`` for why).

    When ``at`` is before the anchor, period 0 is returned: a subscription anchored
    in the future (scheduled to start later) is shown its first period rather than an
    invented period before it existed.

    The period index is estimated from the calendar month difference and corrected
    by a step or two, so the cost does not grow with the subscription's age.

    Raises:
        ValueError: ``anchor`` or ``at`` is naive, or ``unit`` is unknown.
    """
    _require_aware("anchor", anchor)
    _require_aware("at", at)
    try:
        step = _MONTHS_PER_PERIOD[unit]
    except KeyError:
        raise ValueError(f"unknown period unit {unit!r}") from None

    # Anchors are whole seconds by contract; dropping stray microseconds keeps every
    # boundary on a whole second, matching the seconds-precision interval we report.
    anchor_local = _in_zone(anchor.replace(microsecond=0), zone)
    at_local = _in_zone(at, zone)
    if at_local < anchor_local:
        return Period(anchor_local, _period_start(anchor_local, step, zone))

    month_diff = (at_local.year - anchor_local.year) * 12 + (at_local.month - anchor_local.month)
    k = month_diff // step
    # Clamping and DST resolution can move a start across the estimate by at most a
    # period, so these loops run only a bounded number of times. Period 0 starts at
    # the anchor and at >= anchor here, so k never goes negative.
    start = _period_start(anchor_local, k * step, zone)
    while start > at_local:
        k -= 1
        start = _period_start(anchor_local, k * step, zone)
    end = _period_start(anchor_local, (k + 1) * step, zone)
    while end <= at_local:
        k += 1
        start, end = end, _period_start(anchor_local, (k + 1) * step, zone)
    return Period(start, end)


def to_micros(instant: datetime) -> int:
    """Microseconds since the Unix epoch, computed with integers only.

    Floats (``timestamp()``) lose microseconds for instants far from 1970, and the
    database compares these values for equality at period boundaries.
    """
    _require_aware("instant", instant)
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def local_instant(us: int, zone: ZoneInfo) -> datetime:
    """The instant ``us`` as the billing zone's wall time with its offset pinned, as
    ``Period`` holds its ends (see ``_in_zone`` for why not the ``ZoneInfo`` itself)."""
    return _in_zone(from_micros(us), zone)


def local_midnight(day: date, zone: ZoneInfo) -> int:
    """The first instant of a calendar day in ``zone``, in microseconds.

    A midnight in a DST gap resolves as period starts do (``fold=0``): to the instant
    the day really starts.
    """
    return to_micros(datetime.combine(day, time(), tzinfo=zone))


def from_micros(us: int, zone: tzinfo = UTC) -> datetime:
    """The instant ``us`` microseconds after the Unix epoch, as wall time in ``zone``
    (inverse of ``to_micros``).

    Whole seconds and microseconds are converted apart, so nothing goes through a
    float; one call, because every usage read converts its period's two ends.
    """
    seconds, micros = divmod(us, 1_000_000)
    instant = datetime.fromtimestamp(seconds, zone)
    return instant.replace(microsecond=micros) if micros else instant

"""Tests for billing period arithmetic (SPEC section 2)."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamel_usage.core import periods
from flamel_usage.core.periods import Period, PeriodUnit, from_micros, period_containing, to_micros

UTC_ZONE = ZoneInfo("UTC")
SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
US = timedelta(microseconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def interval(anchor: datetime, unit: PeriodUnit, at: datetime, zone: ZoneInfo) -> str:
    return period_containing(anchor, unit, at, zone).iso_interval()


def starts(anchor: datetime, unit: PeriodUnit, zone: ZoneInfo, count: int) -> list[str]:
    """The first ``count`` period starts, found by walking boundary to boundary."""
    result = []
    at = anchor
    for _ in range(count):
        period = period_containing(anchor, unit, at, zone)
        result.append(period.start.isoformat())
        at = period.end
    return result


# --- month-end clamping -------------------------------------------------------------


def test_jan_31_anchor_through_leap_february() -> None:
    assert starts(utc(2028, 1, 31, 10, 0, 0), "month", UTC_ZONE, 5) == [
        "2028-01-31T10:00:00+00:00",
        "2028-02-29T10:00:00+00:00",
        "2028-03-31T10:00:00+00:00",
        "2028-04-30T10:00:00+00:00",
        "2028-05-31T10:00:00+00:00",
    ]


def test_jan_31_anchor_through_non_leap_february() -> None:
    assert starts(utc(2027, 1, 31, 23, 59, 59), "month", UTC_ZONE, 4) == [
        "2027-01-31T23:59:59+00:00",
        "2027-02-28T23:59:59+00:00",
        "2027-03-31T23:59:59+00:00",
        "2027-04-30T23:59:59+00:00",
    ]


def test_clamped_day_comes_back_years_later() -> None:
    anchor = utc(2027, 1, 31)
    assert interval(anchor, "month", utc(2031, 2, 10), UTC_ZONE) == (
        "2031-01-31T00:00:00+00:00/2031-02-28T00:00:00+00:00"
    )
    assert interval(anchor, "month", utc(2032, 3, 1), UTC_ZONE) == (
        "2032-02-29T00:00:00+00:00/2032-03-31T00:00:00+00:00"
    )


def test_month_end_clamping_uses_the_billing_zone_calendar() -> None:
    # 2027-01-31T00:00+09:00 is still Jan 30 in UTC; the local day 31 is what clamps.
    anchor = datetime(2027, 1, 31, tzinfo=SEOUL).astimezone(UTC)
    assert anchor.day == 30
    assert interval(anchor, "month", utc(2027, 3, 1), SEOUL) == (
        "2027-02-28T00:00:00+09:00/2027-03-31T00:00:00+09:00"
    )


# --- yearly plans -------------------------------------------------------------------


def test_yearly_plan() -> None:
    anchor = utc(2026, 6, 15, 8, 30, 0)
    assert interval(anchor, "year", utc(2026, 6, 15, 8, 30, 0), UTC_ZONE) == (
        "2026-06-15T08:30:00+00:00/2027-06-15T08:30:00+00:00"
    )
    assert interval(anchor, "year", utc(2029, 1, 1), UTC_ZONE) == (
        "2028-06-15T08:30:00+00:00/2029-06-15T08:30:00+00:00"
    )


def test_yearly_feb_29_anchor_clamps_in_non_leap_years() -> None:
    assert starts(utc(2028, 2, 29, 12, 0, 0), "year", UTC_ZONE, 6) == [
        "2028-02-29T12:00:00+00:00",
        "2029-02-28T12:00:00+00:00",
        "2030-02-28T12:00:00+00:00",
        "2031-02-28T12:00:00+00:00",
        "2032-02-29T12:00:00+00:00",
        "2033-02-28T12:00:00+00:00",
    ]


def test_yearly_estimate_when_at_is_early_in_the_anniversary_year() -> None:
    # Same calendar year as the next anniversary, but before it: still the old period.
    anchor = utc(2026, 12, 20)
    assert interval(anchor, "year", utc(2030, 3, 1), UTC_ZONE) == (
        "2029-12-20T00:00:00+00:00/2030-12-20T00:00:00+00:00"
    )


# --- non-UTC billing zones ----------------------------------------------------------


def test_seoul_interval_carries_the_zone_offset() -> None:
    anchor = datetime(2026, 11, 1, tzinfo=SEOUL).astimezone(UTC)
    assert anchor == utc(2026, 10, 31, 15, 0, 0)
    expected = "2026-11-01T00:00:00+09:00/2026-12-01T00:00:00+09:00"
    assert interval(anchor, "month", utc(2026, 11, 15), SEOUL) == expected
    # Nov 30 20:00 UTC is already Dec 1 in Seoul: the next period.
    assert interval(anchor, "month", utc(2026, 11, 30, 15, 0, 0), SEOUL) == (
        "2026-12-01T00:00:00+09:00/2027-01-01T00:00:00+09:00"
    )


def test_utc_interval_shows_plus_zero_offset() -> None:
    period = period_containing(utc(2026, 1, 1), "month", utc(2026, 1, 2), UTC_ZONE)
    assert period.iso_interval() == "2026-01-01T00:00:00+00:00/2026-02-01T00:00:00+00:00"


def test_period_is_reported_in_billing_zone_whatever_the_input_zones() -> None:
    anchor = datetime(2026, 11, 1, tzinfo=NEW_YORK)
    at = datetime(2026, 11, 15, tzinfo=BERLIN)
    period = period_containing(anchor, "month", at, SEOUL)
    assert period.iso_interval() == "2026-11-01T13:00:00+09:00/2026-12-01T13:00:00+09:00"
    assert period.start.utcoffset() == timedelta(hours=9)
    assert period.start == utc(2026, 11, 1, 4, 0, 0)  # midnight EDT


# --- DST ----------------------------------------------------------------------------


def test_new_york_spring_forward_with_0230_anchor() -> None:
    # 2026-03-08 02:30 does not exist in New York; fold=0 resolves it to 03:30 EDT.
    anchor = datetime(2026, 1, 8, 2, 30, tzinfo=NEW_YORK).astimezone(UTC)
    assert starts(anchor, "month", NEW_YORK, 4) == [
        "2026-01-08T02:30:00-05:00",
        "2026-02-08T02:30:00-05:00",
        "2026-03-08T03:30:00-04:00",
        "2026-04-08T02:30:00-04:00",
    ]


def test_new_york_fall_back_ambiguous_time_takes_first_occurrence() -> None:
    # 2026-11-01 01:30 happens twice in New York; fold=0 is the earlier, EDT one.
    anchor = datetime(2026, 10, 1, 1, 30, tzinfo=NEW_YORK)
    assert starts(anchor, "month", NEW_YORK, 3) == [
        "2026-10-01T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-12-01T01:30:00-05:00",
    ]


def test_anchor_at_second_occurrence_of_ambiguous_time_starts_at_the_anchor() -> None:
    anchor = utc(2026, 11, 1, 6, 30, 0)  # 01:30 EST, the second 01:30 that night
    assert anchor.astimezone(NEW_YORK).fold == 1
    period = period_containing(anchor, "month", anchor, NEW_YORK)
    assert period.start == anchor
    assert period.iso_interval() == "2026-11-01T01:30:00-05:00/2026-12-01T01:30:00-05:00"
    # A year later the same wall time resolves with fold=0 (EDT), an hour earlier.
    assert interval(anchor, "month", utc(2027, 11, 1, 5, 30, 0), NEW_YORK) == (
        "2027-11-01T01:30:00-04:00/2027-12-01T01:30:00-05:00"
    )


def test_instants_in_the_overlap_are_judged_by_instant_not_wall_time() -> None:
    # Python compares two datetimes sharing a ZoneInfo by wall time, ignoring fold:
    # 01:40 EDT would look later than 01:30 EST although it is 50 minutes earlier.
    anchor = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)  # 06:30Z
    first_1h40 = datetime(2026, 11, 1, 1, 40, fold=0, tzinfo=NEW_YORK)  # 05:40Z
    second_1h40 = datetime(2026, 11, 1, 1, 40, fold=1, tzinfo=NEW_YORK)  # 06:40Z
    first = period_containing(anchor, "month", anchor, NEW_YORK)
    assert period_containing(anchor, "month", first_1h40, NEW_YORK) == first
    assert not first.contains(first_1h40)
    assert first.contains(second_1h40)
    assert first.contains(anchor)
    assert not first.contains(anchor - US)


def test_boundary_in_the_overlap_is_exact() -> None:
    # The Nov 1 start resolves to the first 01:30 (EDT); the second 01:30 (EST), an
    # hour later, is inside the new period, and 01:29:59.999999 EDT is not.
    anchor = datetime(2026, 10, 1, 1, 30, tzinfo=NEW_YORK)
    boundary = utc(2026, 11, 1, 5, 30, 0)
    old = period_containing(anchor, "month", boundary - US, NEW_YORK)
    new = period_containing(anchor, "month", boundary, NEW_YORK)
    assert old.end == new.start == boundary
    assert new.contains(datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK))
    assert not new.contains(datetime(2026, 11, 1, 1, 29, 59, 999_999, tzinfo=NEW_YORK))
    assert hash(new.start) == hash(boundary)


def test_berlin_spring_forward_with_0230_anchor() -> None:
    anchor = datetime(2026, 1, 29, 2, 30, tzinfo=BERLIN)
    assert starts(anchor, "month", BERLIN, 4) == [
        "2026-01-29T02:30:00+01:00",
        "2026-02-28T02:30:00+01:00",
        "2026-03-29T03:30:00+02:00",
        "2026-04-29T02:30:00+02:00",
    ]


def test_berlin_fall_back_with_0230_anchor() -> None:
    anchor = datetime(2026, 9, 25, 2, 30, tzinfo=BERLIN)
    assert starts(anchor, "month", BERLIN, 3) == [
        "2026-09-25T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-11-25T02:30:00+01:00",
    ]


def test_berlin_midnight_anchor_keeps_local_midnight_across_dst() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=BERLIN)
    period = period_containing(anchor, "month", utc(2026, 7, 15), BERLIN)
    assert period.iso_interval() == "2026-07-01T00:00:00+02:00/2026-08-01T00:00:00+02:00"
    assert period.start == utc(2026, 6, 30, 22, 0, 0)


def test_periods_across_dst_are_not_whole_days_long() -> None:
    anchor = datetime(2026, 3, 1, tzinfo=NEW_YORK)
    period = period_containing(anchor, "month", anchor, NEW_YORK)
    assert period.end - period.start == timedelta(days=31) - timedelta(hours=1)


# --- boundaries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "unit", "zone", "boundary"),
    [
        (utc(2028, 1, 31, 10, 0, 0), "month", UTC_ZONE, utc(2028, 2, 29, 10, 0, 0)),
        (utc(2028, 2, 29), "year", UTC_ZONE, utc(2029, 2, 28)),
        (utc(2026, 10, 31, 15, 0, 0), "month", SEOUL, utc(2026, 11, 30, 15, 0, 0)),
        (
            datetime(2026, 1, 8, 2, 30, tzinfo=NEW_YORK),
            "month",
            NEW_YORK,
            datetime(2026, 3, 8, 3, 30, tzinfo=NEW_YORK),
        ),
    ],
)
def test_boundary_belongs_to_the_new_period(
    anchor: datetime, unit: PeriodUnit, zone: ZoneInfo, boundary: datetime
) -> None:
    new = period_containing(anchor, unit, boundary, zone)
    old = period_containing(anchor, unit, boundary - US, zone)
    assert new.start == boundary
    assert old.end == boundary
    assert old.contains(boundary - US)
    assert not old.contains(boundary)
    assert new.contains(boundary)
    assert not new.contains(boundary - US)


def test_at_before_anchor_gets_first_period() -> None:
    anchor = utc(2030, 5, 31, 12, 0, 0)
    first = period_containing(anchor, "month", anchor, UTC_ZONE)
    assert first.iso_interval() == "2030-05-31T12:00:00+00:00/2030-06-30T12:00:00+00:00"
    assert period_containing(anchor, "month", anchor - US, UTC_ZONE) == first
    assert period_containing(anchor, "month", utc(2001, 1, 1), UTC_ZONE) == first


def test_anchor_microseconds_are_dropped() -> None:
    anchor = utc(2026, 4, 10, 9, 15, 30).replace(microsecond=999_999)
    period = period_containing(anchor, "month", anchor, UTC_ZONE)
    assert period.start == utc(2026, 4, 10, 9, 15, 30)
    assert period.end == utc(2026, 5, 10, 9, 15, 30)


def test_at_with_microseconds_just_before_the_end() -> None:
    anchor = utc(2026, 4, 10)
    at = utc(2026, 5, 10) - US
    assert interval(anchor, "month", at, UTC_ZONE) == (
        "2026-04-10T00:00:00+00:00/2026-05-10T00:00:00+00:00"
    )


# --- cost ---------------------------------------------------------------------------


def test_far_future_is_computed_without_walking_the_periods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    real: Callable[[datetime, int, ZoneInfo], datetime] = periods._period_start

    def counting(anchor_local: datetime, months: int, zone: ZoneInfo) -> datetime:
        nonlocal calls
        calls += 1
        return real(anchor_local, months, zone)

    monkeypatch.setattr(periods, "_period_start", counting)
    anchor = datetime(2026, 1, 31, 2, 30, tzinfo=NEW_YORK)
    period = period_containing(anchor, "month", utc(2226, 3, 20), NEW_YORK)
    assert period.iso_interval() == "2226-02-28T02:30:00-05:00/2226-03-31T02:30:00-04:00"
    assert calls <= 4
    calls = 0
    period = period_containing(anchor, "year", utc(2226, 1, 1), NEW_YORK)
    assert period.iso_interval() == "2225-01-31T02:30:00-05:00/2226-01-31T02:30:00-05:00"
    assert calls <= 4


# --- validation ---------------------------------------------------------------------


def test_naive_anchor_is_rejected() -> None:
    with pytest.raises(ValueError, match="anchor"):
        period_containing(datetime(2026, 1, 1), "month", utc(2026, 1, 1), UTC_ZONE)


def test_naive_at_is_rejected() -> None:
    with pytest.raises(ValueError, match="at"):
        period_containing(utc(2026, 1, 1), "month", datetime(2026, 1, 1), UTC_ZONE)


def test_unknown_unit_is_rejected() -> None:
    with pytest.raises(ValueError, match="unit"):
        period_containing(utc(2026, 1, 1), "week", utc(2026, 1, 1), UTC_ZONE)  # type: ignore[arg-type]


def test_contains_rejects_naive_instant() -> None:
    period = Period(utc(2026, 1, 1), utc(2026, 2, 1))
    with pytest.raises(ValueError, match="instant"):
        period.contains(datetime(2026, 1, 15))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 1, 1), utc(2026, 2, 1)),
        (utc(2026, 1, 1), datetime(2026, 2, 1)),
        (utc(2026, 2, 1), utc(2026, 1, 1)),
        (utc(2026, 1, 1), utc(2026, 1, 1)),
    ],
)
def test_period_rejects_naive_or_empty_bounds(start: datetime, end: datetime) -> None:
    with pytest.raises(ValueError, match=r"start|end"):
        Period(start, end)


def test_naive_instant_cannot_be_stored() -> None:
    with pytest.raises(ValueError, match="instant"):
        to_micros(datetime(2026, 1, 1))


# --- micros -------------------------------------------------------------------------


def test_micros_known_values() -> None:
    assert to_micros(utc(1970, 1, 1)) == 0
    assert to_micros(utc(1970, 1, 1) + US) == 1
    assert to_micros(utc(1969, 12, 31, 23, 59, 59)) == -1_000_000
    assert to_micros(datetime(2026, 11, 1, tzinfo=SEOUL)) == 1_793_458_800_000_000
    assert from_micros(1_793_458_800_000_000) == utc(2026, 10, 31, 15, 0, 0)
    assert from_micros(0).tzinfo is UTC
    # New York's 01:30 happens twice on 2026-11-01: fold tells the second one.
    first, second = (to_micros(utc(2026, 11, 1, hour, 30)) for hour in (5, 6))
    assert from_micros(first, NEW_YORK).isoformat() == "2026-11-01T01:30:00-04:00"
    assert from_micros(second, NEW_YORK).isoformat() == "2026-11-01T01:30:00-05:00"
    assert from_micros(second + 7, NEW_YORK).microsecond == 7


def test_micros_are_exact_where_floats_are_not() -> None:
    instant = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert to_micros(instant) == 253_402_300_799_999_999
    assert from_micros(253_402_300_799_999_999) == instant
    assert round(instant.timestamp() * 1_000_000) != to_micros(instant)


# --- properties ---------------------------------------------------------------------

MIN_UTC = datetime(1900, 1, 1, tzinfo=UTC)
MAX_UTC = datetime(2300, 1, 1, tzinfo=UTC)
ZONES = (
    st.sampled_from(
        ["UTC", "Asia/Seoul", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]
    ).map(ZoneInfo)
    | st.timezones()
)
UNITS: st.SearchStrategy[PeriodUnit] = st.sampled_from(["month", "year"])


def instants(low: datetime = MIN_UTC, high: datetime = MAX_UTC) -> st.SearchStrategy[datetime]:
    return st.integers(to_micros(low), to_micros(high)).map(from_micros)


ANCHORS = instants().map(lambda d: d.replace(microsecond=0))


@given(anchor=ANCHORS, unit=UNITS, at=instants(), zone=ZONES)
def test_property_periods_contain_at_and_tile_time(
    anchor: datetime, unit: PeriodUnit, at: datetime, zone: ZoneInfo
) -> None:
    period = period_containing(anchor, unit, at, zone)
    assert period.start < period.end
    if at >= anchor:
        assert period.contains(at)
        assert period.start >= anchor
    else:
        assert period.start == anchor
    following = period_containing(anchor, unit, period.end, zone)
    assert following.start == period.end
    if period.start > anchor:
        preceding = period_containing(anchor, unit, period.start - US, zone)
        assert preceding.end == period.start


FIXED_OFFSET_ZONES = st.sampled_from(["UTC", "Asia/Seoul", "Asia/Kolkata", "Etc/GMT+7"]).map(
    ZoneInfo
)


@given(anchor=ANCHORS, unit=UNITS, at=instants(), zone=FIXED_OFFSET_ZONES)
def test_property_start_keeps_anchor_wall_time_and_clamped_day(
    anchor: datetime, unit: PeriodUnit, at: datetime, zone: ZoneInfo
) -> None:
    # Without DST (none of these zones has had a transition since 1990), every start is
    # the anchor's local wall time with the day clamped, a whole number of periods later.
    anchor = max(anchor, datetime(1990, 1, 1, tzinfo=UTC))
    local_anchor = anchor.astimezone(zone)
    start = period_containing(anchor, unit, at, zone).start
    months = (start.year - local_anchor.year) * 12 + start.month - local_anchor.month
    assert months % (12 if unit == "year" else 1) == 0
    last_day = calendar.monthrange(start.year, start.month)[1]
    assert start.day == min(local_anchor.day, last_day)
    assert start.time() == local_anchor.time()


@given(instant=st.datetimes(timezones=st.just(UTC)))
def test_property_micros_round_trip_from_datetime(instant: datetime) -> None:
    assert from_micros(to_micros(instant)) == instant


@given(us=st.integers(to_micros(datetime.min.replace(tzinfo=UTC)), 253_402_300_799_999_999))
def test_property_micros_round_trip_from_int(us: int) -> None:
    assert to_micros(from_micros(us)) == us


@given(instant=instants(), zone=ZONES)
def test_property_micros_in_a_zone_are_that_zones_wall_time(
    instant: datetime, zone: ZoneInfo
) -> None:
    # The usage read converts straight into the billing zone: the same instant, wall
    # time, offset and fold as converting in UTC first, DST overlaps and gaps included.
    local = from_micros(to_micros(instant), zone)
    expected = instant.astimezone(zone)
    assert local == instant
    assert (local.replace(tzinfo=None), local.fold) == (
        expected.replace(tzinfo=None),
        expected.fold,
    )
    assert local.isoformat() == expected.isoformat()


@given(instant=instants(), zone=ZONES)
def test_property_micros_ignore_the_zone_of_the_instant(instant: datetime, zone: ZoneInfo) -> None:
    assert to_micros(instant.astimezone(zone)) == to_micros(instant)


@given(
    st.integers(min_value=0, max_value=4_000_000_000_000_000),
    st.integers(min_value=1, max_value=400 * 86_400_000_000),
    st.sampled_from([UTC_ZONE, SEOUL, NEW_YORK]),
)
def test_a_period_of_stored_instants_is_the_period_of_their_datetimes(
    start: int, length: int, zone: ZoneInfo
) -> None:
    made = Period.of_micros(start, start + length, zone)
    assert made == Period(from_micros(start, zone), from_micros(start + length, zone))
    assert (
        made.iso_interval()
        == Period(from_micros(start, zone), from_micros(start + length, zone)).iso_interval()
    )


@pytest.mark.parametrize("length", [0, -1])
def test_a_period_of_stored_instants_starts_before_it_ends(length: int) -> None:
    with pytest.raises(ValueError, match="not before its end"):
        Period.of_micros(1_000_000, 1_000_000 + length, SEOUL)

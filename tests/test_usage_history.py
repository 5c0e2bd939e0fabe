"""``GET /api/users/me/usage/history``: buckets, their sums, DST days, CSV.

The agreement with the usage read on random ledgers is in
``test_usage_history_properties.py``; bad input in ``test_bad_input.py``; who may call
it in ``test_auth_matrix.py``.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Database
from flamel_usage.ledger.history import Granularity, read_history
from flamel_usage.metering.outcomes import Charged
from tests.conftest import FakeClock
from tests.factories import Factory

HISTORY = "/api/users/me/usage/history"


async def _history(client: httpx.AsyncClient, key: str, **query: str) -> dict[str, Any]:
    response = await client.get(HISTORY, params=query, headers={"X-Api-Key": key})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def _assert_tiles(body: dict[str, Any]) -> None:
    buckets = body["buckets"]
    assert buckets[0]["start"] == body["from"]
    assert buckets[-1]["end"] == body["to"]
    for before, after in pairwise(buckets):
        assert before["end"] == after["start"]


async def test_default_range_is_the_current_period_with_empty_days(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(anchor=datetime(2026, 11, 25, 10, tzinfo=UTC))
    body = await _history(client, await factory.key(user))
    assert body["timezone"] == "UTC"
    assert body["granularity"] == "day"
    assert body["from"] == "2026-11-25T10:00:00+00:00"
    assert body["to"] == "2026-12-25T10:00:00+00:00"
    _assert_tiles(body)
    # Partial first and last days, 29 whole days between.
    assert len(body["buckets"]) == 31
    assert body["buckets"][0]["end"] == "2026-11-26T00:00:00+00:00"
    assert body["buckets"][-1]["start"] == "2026-12-25T00:00:00+00:00"
    zero = {"credit": {"plan": 0, "purchased": 0, "postpaid": 0}}
    for bucket in body["buckets"]:
        assert bucket["credit"] == zero["credit"]
        assert bucket["operations"] == {"ttp": 0, "edit": 0, "image": 0}


async def test_charges_count_in_their_bucket_and_refunded_ones_nowhere(
    client: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=2, max_ttp=None)
    user = await factory.user(plan, anchor=datetime(2026, 11, 25, 10, tzinfo=UTC))
    key = await factory.key(user)
    await factory.purchase(user, 10)
    assert isinstance(await factory.charge(user, "ttp", "a", 1.5), Charged)
    clock.advance(24 * 3600)
    assert isinstance(await factory.charge(user, "image", "b", 2), Charged)  # 0.5 plan, 1.5 bought
    assert isinstance(await factory.charge(user, "edit", "c", 0.25), Charged)
    await factory.refund("c")

    body = await _history(client, key, **{"from": "2026-11-25", "to": "2026-11-28"})
    assert body["from"] == "2026-11-25T00:00:00+00:00"
    assert [bucket["credit"] for bucket in body["buckets"]] == [
        {"plan": 1.5, "purchased": 0, "postpaid": 0},
        {"plan": 0.5, "purchased": 1.5, "postpaid": 0},
        {"plan": 0, "purchased": 0, "postpaid": 0},
    ]
    assert [bucket["operations"] for bucket in body["buckets"]] == [
        {"ttp": 1, "edit": 0, "image": 0},
        {"ttp": 0, "edit": 0, "image": 1},
        {"ttp": 0, "edit": 0, "image": 0},
    ]


async def test_postpaid_is_its_own_pool(
    client: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=1, postpaid=True, max_ttp=None)
    user = await factory.user(plan)
    assert isinstance(await factory.charge(user, "ttp", "a", 3), Charged)
    body = await _history(client, await factory.key(user), granularity="hour")
    assert body["buckets"][0]["credit"] == {"plan": 1, "purchased": 0, "postpaid": 2}
    assert sum(bucket["operations"]["ttp"] for bucket in body["buckets"]) == 1


async def test_instants_and_hours(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    body = await _history(
        client,
        await factory.key(user),
        **{
            "from": "2026-11-25T10:30:00+09:00",
            "to": "2026-11-25T04:00:00Z",
            "granularity": "hour",
        },
    )
    assert body["from"] == "2026-11-25T01:30:00+00:00"
    assert body["to"] == "2026-11-25T04:00:00+00:00"
    assert [bucket["start"][11:16] for bucket in body["buckets"]] == ["01:30", "02:00", "03:00"]


class TestNewYork:
    @pytest.fixture
    def environ(self, environ: dict[str, str]) -> dict[str, str]:
        return {**environ, "FLAMEL_TIMEZONE": "America/New_York"}

    @pytest.mark.parametrize(
        ("day", "hours"), [("2026-03-08", 23), ("2026-11-01", 25), ("2026-11-02", 24)]
    )
    async def test_dst_days_have_23_or_25_hours(
        self, client: httpx.AsyncClient, factory: Factory, day: str, hours: int
    ) -> None:
        user = await factory.user()
        following = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
        key = await factory.key(user)
        by_day = await _history(client, key, **{"from": day, "to": following})
        (bucket,) = by_day["buckets"]
        start, end = (datetime.fromisoformat(bucket[edge]) for edge in ("start", "end"))
        assert end - start == timedelta(hours=hours)
        assert bucket["start"].startswith(f"{day}T00:00:00-0")
        by_hour = await _history(
            client, key, **{"from": day, "to": following, "granularity": "hour"}
        )
        _assert_tiles(by_hour)
        assert len(by_hour["buckets"]) == hours
        for hour in by_hour["buckets"]:
            length = datetime.fromisoformat(hour["end"]) - datetime.fromisoformat(hour["start"])
            assert length == timedelta(hours=1)

    async def test_a_charge_counts_on_its_local_day(
        self, client: httpx.AsyncClient, factory: Factory, clock: FakeClock
    ) -> None:
        user = await factory.user(anchor=datetime(2026, 11, 1, tzinfo=UTC))
        clock.set(datetime(2026, 11, 26, 3, tzinfo=UTC))  # 22:00 on the 25th in New York
        assert isinstance(await factory.charge(user, "ttp", "late"), Charged)
        body = await _history(client, await factory.key(user), **{"from": "2026-11-25"})
        assert body["buckets"][0]["start"] == "2026-11-25T00:00:00-05:00"
        assert body["buckets"][0]["operations"]["ttp"] == 1
        assert body["to"] == "2026-11-30T20:00:00-05:00"  # the period's end: 20:00, as it began


async def test_csv_has_the_json_numbers(
    client: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user()
    key = await factory.key(user)
    assert isinstance(await factory.charge(user, "ttp", "a", 1.25), Charged)
    body = await _history(client, key)
    response = await client.get(HISTORY, params={"format": "csv"}, headers={"X-Api-Key": key})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["start", "end", "plan", "purchased", "postpaid", "ttp", "edit", "image"]
    assert rows[1] == [body["from"], "2026-11-26T00:00:00+00:00", "1.25", "0", "0", "1", "0", "0"]
    assert len(rows) == len(body["buckets"]) + 1


async def test_unknown_query_fields_are_ignored(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    key = await factory.key(user)
    assert await _history(client, key, colour="blue") == await _history(client, key)


async def test_longest_ranges(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    key = await factory.key(user)
    year = await _history(client, key, **{"from": "2028-01-01", "to": "2029-01-01"})
    assert len(year["buckets"]) == 366
    month = {"from": "2026-12-01", "to": "2027-01-01", "granularity": "hour"}
    assert len((await _history(client, key, **month))["buckets"]) == 31 * 24


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Asia/Kathmandu", "2026-11-25"),  # +05:45 all year
        ("Australia/Lord_Howe", "2026-10-04"),  # +10:30 to +11 that night: a 30-minute shift
        ("America/St_Johns", "2026-11-01"),  # -02:30 to -03:30 that night
        ("Australia/Adelaide", "2026-10-04"),  # +09:30 to +10:30 that night: an hour on
        ("America/New_York", "2026-11-01"),  # a whole hour back
    ],
)
@pytest.mark.parametrize("granularity", ["day", "hour"])
async def test_each_charge_counts_in_the_bucket_of_its_instant(
    db: Database, clock: FakeClock, zone: str, day: str, granularity: Granularity
) -> None:
    """Charges a microsecond either side of every local quarter hour, over two days
    around a change of offset, from a start at an odd microsecond: each in its bucket.

    The store sums per slice of time (``rollup.slices``); this proves no slice straddles a
    bucket boundary, whatever the zone's offsets.
    """
    billing_zone = ZoneInfo(zone)
    factory = Factory(db, clock, billing_zone)
    begin = datetime.fromisoformat(day).replace(tzinfo=billing_zone) - timedelta(hours=12)
    clock.set(begin - timedelta(days=3))
    user = await factory.user(await factory.plan(credits=1000, max_ttp=None, postpaid=True))
    instants = []
    quarter = begin.astimezone(UTC)
    while quarter < begin + timedelta(days=2):
        instants += [quarter - timedelta(microseconds=1), quarter]
        quarter += timedelta(minutes=15)
    for number, instant in enumerate(instants):
        clock.set(instant)
        assert isinstance(await factory.charge(user, "ttp", f"q{number}"), Charged)
    start = to_micros(begin) + 1_234_567
    async with db.read() as conn:
        history = await read_history(
            conn,
            user.id,
            start=start,
            end=to_micros(begin + timedelta(days=2)),
            granularity=granularity,
            kinds=["ttp"],
            now=clock(),
            zone=billing_zone,
        )
    for bucket in history.buckets:
        inside = [instant for instant in instants if bucket.start <= instant < bucket.end]
        assert bucket.operations["ttp"] == len(inside), bucket
        if bucket.start != history.start:
            # A local hour (midnight), or where the clock jumps over it (to 2:30 there).
            local = bucket.start.astimezone(billing_zone).replace(tzinfo=None)
            before = (bucket.start - timedelta(microseconds=1)).astimezone(billing_zone)
            jumped = before.replace(tzinfo=None) + timedelta(microseconds=1) != local
            whole = local.time() == time(local.hour) and (granularity == "hour" or local.hour == 0)
            assert whole or jumped, bucket
    assert sum(bucket.operations["ttp"] for bucket in history.buckets) == sum(
        1 for instant in instants if to_micros(instant) >= start
    )

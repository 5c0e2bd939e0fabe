"""``GET /api/users/me/usage`` over HTTP: the body is the seed's ``UsageInfoDto``, exactly.

Every 200 here is validated against the schema as the packaged seed defines it (OpenAPI
3.0 ``nullable`` turned into a JSON Schema type union, and no field beyond the seed's
allowed), and then compared number for number with what the account really holds.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jsonschema
import pytest
import yaml

from flamel_usage.accounts.users import User
from flamel_usage.core.config import Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from tests.conftest import FakeClock
from tests.factories import Factory

USAGE = "/api/users/me/usage"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # the ``clock`` fixture's start
PERIOD = "2026-11-25T10:00:00+00:00/2026-12-25T10:00:00+00:00"
NEXT_PERIOD = "2026-12-25T10:00:00+00:00/2027-01-25T10:00:00+00:00"
DTO_FIELDS = {
    "currentCredit",
    "additionalCredit",
    "maxCredit",
    "period",
    "ttpCount",
    "maxTtpCount",
    "editCount",
    "maxEditCount",
    "postpaidUsageCount",
}
SEOUL = ZoneInfo("Asia/Seoul")


# --- the schema, from the packaged seed ---------------------------------------------------


def _nullable_to_union(node: Any) -> Any:
    """OpenAPI 3.0 ``type: T, nullable: true`` as JSON Schema ``type: [T, "null"]``."""
    if isinstance(node, list):
        return [_nullable_to_union(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_to_union(value) for key, value in node.items()}
    if converted.pop("nullable", False):
        kind = converted.get("type")
        if isinstance(kind, str):
            converted["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            converted["type"] = [*kind, "null"]
    return converted


def _usage_schema() -> dict[str, Any]:
    text = (
        resources.files("flamel_usage.http.openapi")
        .joinpath("openapi-seed.yaml")
        .read_text("utf-8")
    )
    seed = yaml.safe_load(text)
    schema = _nullable_to_union(copy.deepcopy(seed["components"]["schemas"]["UsageInfoDto"]))
    schema["additionalProperties"] = False
    return schema


USAGE_SCHEMA = _usage_schema()
VALIDATOR = jsonschema.Draft202012Validator(USAGE_SCHEMA)


def _valid_dto(**overrides: Any) -> dict[str, Any]:
    dto: dict[str, Any] = {
        "currentCredit": 100,
        "additionalCredit": 0,
        "maxCredit": 100,
        "period": PERIOD,
        "ttpCount": 0,
        "maxTtpCount": 10,
        "editCount": 0,
        "maxEditCount": None,
        "postpaidUsageCount": None,
    }
    dto.update(overrides)
    return dto


def test_schema_is_the_seeds_usage_dto_with_nullable_as_type_unions() -> None:
    jsonschema.Draft202012Validator.check_schema(USAGE_SCHEMA)
    assert set(USAGE_SCHEMA["properties"]) == DTO_FIELDS
    for name in ("maxTtpCount", "maxEditCount", "postpaidUsageCount"):
        assert USAGE_SCHEMA["properties"][name]["type"] == ["number", "null"]
        assert "nullable" not in USAGE_SCHEMA["properties"][name]
    for name in ("currentCredit", "additionalCredit", "maxCredit", "ttpCount", "editCount"):
        assert USAGE_SCHEMA["properties"][name]["type"] == "number"
    assert USAGE_SCHEMA["properties"]["period"]["type"] == "string"
    assert USAGE_SCHEMA["additionalProperties"] is False


@pytest.mark.parametrize(
    "bad",
    [
        _valid_dto(currentCredit="100"),
        _valid_dto(ttpCount=True),
        _valid_dto(currentCredit=None),
        _valid_dto(maxTtpCount="10"),
        _valid_dto(postpaidUsageCount="0"),
        _valid_dto(period=None),
        _valid_dto(extra=1),
        {k: v for k, v in _valid_dto().items() if k != "maxTtpCount"},
        {k: v for k, v in _valid_dto().items() if k != "period"},
    ],
)
def test_schema_rejects_what_the_contract_forbids(bad: dict[str, Any]) -> None:
    """The validator the tests below rely on really catches strings, nulls and strays."""
    assert not VALIDATOR.is_valid(bad)


def test_schema_accepts_nulls_where_the_seed_allows_them() -> None:
    assert VALIDATOR.is_valid(_valid_dto(maxTtpCount=None, maxEditCount=None))
    assert VALIDATOR.is_valid(_valid_dto(postpaidUsageCount=0.5))


# --- helpers -------------------------------------------------------------------------------


async def _usage(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    """The body of a 200 from the usage endpoint, after checking everything but the numbers."""
    response = await client.get(USAGE, headers={"X-Api-Key": key})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    VALIDATOR.validate(body)
    # Every field, including the optional postpaidUsageCount, is present (null or not).
    assert set(body) == DTO_FIELDS
    for name in DTO_FIELDS - {"period"}:
        value = body[name]
        assert value is None or (type(value) in (int, float)), (name, value)
    return body


async def _spend(
    db: Database,
    user: User,
    *,
    credit_milli: int = 0,
    ttp: int = 0,
    edit: int = 0,
    postpaid: int = 0,
) -> None:
    """Leave the account as charges in its current period would (balances only)."""
    async with db.transaction() as conn:
        changed = await conn.execute(
            "UPDATE accounts SET plan_credit = plan_credit - ?, ttp_count = ttp_count + ?,"
            " edit_count = edit_count + ?, postpaid_used = postpaid_used + ? WHERE user_id = ?",
            credit_milli,
            ttp,
            edit,
            postpaid,
            user.id,
        )
    assert changed == 1


# --- exact numbers -------------------------------------------------------------------------


async def test_prepaid_plan_with_limits(client: httpx.AsyncClient, factory: Factory) -> None:
    plan = await factory.plan(credits=100, max_ttp=10, max_edit=5)
    user = await factory.user(plan)
    body = await _usage(client, await factory.key(user))
    assert body == {
        "currentCredit": 100,
        "additionalCredit": 0,
        "maxCredit": 100,
        "period": PERIOD,
        "ttpCount": 0,
        "maxTtpCount": 10,
        "editCount": 0,
        "maxEditCount": 5,
        "postpaidUsageCount": None,
    }


async def test_unlimited_plan_reports_null_limits(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=250, max_ttp=None, max_edit=None)
    user = await factory.user(plan)
    body = await _usage(client, await factory.key(user))
    assert body["maxTtpCount"] is None
    assert body["maxEditCount"] is None
    assert body["currentCredit"] == body["maxCredit"] == 250
    assert body["ttpCount"] == body["editCount"] == 0
    assert body["postpaidUsageCount"] is None


async def test_zero_limits_are_zero_not_null(client: httpx.AsyncClient, factory: Factory) -> None:
    plan = await factory.plan(credits=0, max_ttp=0, max_edit=0)
    user = await factory.user(plan)
    body = await _usage(client, await factory.key(user))
    assert body["maxTtpCount"] == 0
    assert body["maxEditCount"] == 0
    assert body["currentCredit"] == body["maxCredit"] == 0


async def test_postpaid_account_reports_a_numeric_postpaid_count(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    plan = await factory.plan(credits=1000, max_ttp=None, max_edit=None, postpaid=True)
    user = await factory.user(plan)
    key = await factory.key(user)
    response = await client.get(USAGE, headers={"X-Api-Key": key})
    body = await _usage(client, key)
    assert body["postpaidUsageCount"] == 0
    assert type(body["postpaidUsageCount"]) is int
    assert b'"postpaidUsageCount":0' in response.content
    assert body["currentCredit"] == body["maxCredit"] == 1000


async def test_postpaid_usage_in_the_period_is_reported(
    client: httpx.AsyncClient, factory: Factory, db: Database
) -> None:
    plan = await factory.plan(credits=10, max_ttp=None, max_edit=None, postpaid=True)
    user = await factory.user(plan)
    await _spend(db, user, credit_milli=10_000, postpaid=3_500)
    body = await _usage(client, await factory.key(user))
    assert body["currentCredit"] == 0
    assert body["postpaidUsageCount"] == 3.5


async def test_fractional_purchased_credit(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user(await factory.plan(credits=100))
    await factory.purchase(user, 12.5)
    key = await factory.key(user)
    response = await client.get(USAGE, headers={"X-Api-Key": key})
    body = await _usage(client, key)
    assert body["additionalCredit"] == 12.5
    assert type(body["additionalCredit"]) is float
    assert body["currentCredit"] == 100
    assert b'"additionalCredit":12.5' in response.content


async def test_additional_credit_is_the_sum_of_live_purchases(
    client: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=100))
    day = 24 * 3600 * 1_000_000
    await factory.purchase(user, 12.5)
    await factory.purchase(user, 7.25, expires_at=clock.now + 10 * day)
    await factory.purchase(user, 3, expires_at=clock.now + day)  # expires before the read
    await factory.purchase(user, 0.001, expires_at=clock.now + 2 * day + 1)  # 1 µs left
    clock.advance(2 * 24 * 3600)
    body = await _usage(client, await factory.key(user))
    assert body["additionalCredit"] == 19.751
    assert body["currentCredit"] == body["maxCredit"] == 100
    assert body["period"] == PERIOD


async def test_purchase_expiring_exactly_now_no_longer_counts(
    client: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=100))
    key = await factory.key(user)
    await factory.purchase(user, 5, expires_at=clock.now + 1_000_000)
    await factory.purchase(user, 2)
    clock.now += 999_999
    assert (await _usage(client, key))["additionalCredit"] == 7
    clock.now += 1
    assert (await _usage(client, key))["additionalCredit"] == 2


async def test_purchased_credit_survives_the_period_end(
    client: httpx.AsyncClient, factory: Factory, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=100))
    await factory.purchase(user, 12.5)
    clock.set(datetime(2027, 1, 1, tzinfo=UTC))
    body = await _usage(client, await factory.key(user))
    assert body["additionalCredit"] == 12.5
    assert body["period"] == NEXT_PERIOD


async def test_numbers_are_json_numbers_in_the_raw_body(
    client: httpx.AsyncClient, factory: Factory, db: Database
) -> None:
    user = await factory.user(await factory.plan(credits=100, max_ttp=10, max_edit=5))
    await factory.purchase(user, 12.5)
    await _spend(db, user, credit_milli=1_250, ttp=2, edit=1)
    response = await client.get(USAGE, headers={"X-Api-Key": await factory.key(user)})
    assert response.status_code == 200
    raw = response.content
    for fragment in (
        b'"currentCredit":98.75',
        b'"additionalCredit":12.5',
        b'"maxCredit":100',
        b'"ttpCount":2',
        b'"maxTtpCount":10',
        b'"editCount":1',
        b'"maxEditCount":5',
        b'"postpaidUsageCount":null',
    ):
        assert fragment in raw, (fragment, raw)
    VALIDATOR.validate(response.json())


async def test_headers(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    response = await client.get(USAGE, headers={"X-Api-Key": await factory.key(user)})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers


# --- periods -------------------------------------------------------------------------------


@pytest.fixture
async def seoul_client(
    environ: dict[str, str], db: Database, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.from_environ({**environ, "FLAMEL_TIMEZONE": "Asia/Seoul"})
    app = App(settings, db, clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_period_in_billing_time_zone_has_its_offset(
    seoul_client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    seoul = Factory(db, clock, SEOUL)
    user = await seoul.user(
        await seoul.plan(credits=100), anchor=datetime(2026, 11, 1, tzinfo=SEOUL)
    )
    body = await _usage(seoul_client, await seoul.key(user))
    assert body["period"] == "2026-11-01T00:00:00+09:00/2026-12-01T00:00:00+09:00"


async def test_period_rolls_at_local_midnight_in_billing_time_zone(
    seoul_client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    seoul = Factory(db, clock, SEOUL)
    user = await seoul.user(
        await seoul.plan(credits=100), anchor=datetime(2026, 11, 1, tzinfo=SEOUL)
    )
    key = await seoul.key(user)
    await _spend(db, user, credit_milli=40_000, ttp=3)
    # 2026-12-01T00:00+09:00 is 2026-11-30T15:00Z.
    clock.set(datetime(2026, 11, 30, 15, 0, tzinfo=UTC) - timedelta(microseconds=1))
    before = await _usage(seoul_client, key)
    assert before["period"] == "2026-11-01T00:00:00+09:00/2026-12-01T00:00:00+09:00"
    assert (before["currentCredit"], before["ttpCount"]) == (60, 3)
    clock.set(datetime(2026, 11, 30, 15, 0, tzinfo=UTC))
    after = await _usage(seoul_client, key)
    assert after["period"] == "2026-12-01T00:00:00+09:00/2027-01-01T00:00:00+09:00"
    assert (after["currentCredit"], after["ttpCount"]) == (100, 0)


async def test_same_anchor_instant_in_utc_shows_utc_offsets(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """The same subscription start as above (2026-10-31T15:00Z), billed in UTC: the
    period is the UTC month from the 31st, clamped to Nov 30, with +00:00 offsets."""
    user = await factory.user(anchor=datetime(2026, 11, 1, tzinfo=SEOUL))
    body = await _usage(client, await factory.key(user))
    assert body["period"] == "2026-10-31T15:00:00+00:00/2026-11-30T15:00:00+00:00"


async def test_read_one_microsecond_before_period_end_shows_the_old_period(
    client: httpx.AsyncClient, factory: Factory, db: Database, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=100, max_ttp=10, max_edit=5)
    user = await factory.user(plan)
    key = await factory.key(user)
    await _spend(db, user, credit_milli=30_500, ttp=4, edit=2)
    clock.set(datetime(2026, 12, 25, 10, 0, tzinfo=UTC) - timedelta(microseconds=1))
    body = await _usage(client, key)
    assert body == {
        "currentCredit": 69.5,
        "additionalCredit": 0,
        "maxCredit": 100,
        "period": PERIOD,
        "ttpCount": 4,
        "maxTtpCount": 10,
        "editCount": 2,
        "maxEditCount": 5,
        "postpaidUsageCount": None,
    }


async def test_read_exactly_at_period_end_shows_the_next_period_with_full_allowance(
    client: httpx.AsyncClient, factory: Factory, db: Database, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=100, max_ttp=10, max_edit=5)
    user = await factory.user(plan)
    key = await factory.key(user)
    await factory.purchase(user, 12.5)
    await _spend(db, user, credit_milli=30_500, ttp=4, edit=2)
    clock.set(datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    body = await _usage(client, key)
    assert body == {
        "currentCredit": 100,
        "additionalCredit": 12.5,
        "maxCredit": 100,
        "period": NEXT_PERIOD,
        "ttpCount": 0,
        "maxTtpCount": 10,
        "editCount": 0,
        "maxEditCount": 5,
        "postpaidUsageCount": None,
    }


async def test_postpaid_count_resets_at_the_period_end(
    client: httpx.AsyncClient, factory: Factory, db: Database, clock: FakeClock
) -> None:
    plan = await factory.plan(credits=10, max_ttp=None, max_edit=None, postpaid=True)
    user = await factory.user(plan)
    key = await factory.key(user)
    await _spend(db, user, credit_milli=10_000, postpaid=7_000)
    clock.set(datetime(2026, 12, 25, 10, 0, tzinfo=UTC) - timedelta(microseconds=1))
    before = await _usage(client, key)
    assert (before["currentCredit"], before["postpaidUsageCount"]) == (0, 7)
    clock.advance(0.000001)
    after = await _usage(client, key)
    assert (after["currentCredit"], after["postpaidUsageCount"]) == (10, 0)
    assert after["period"] == NEXT_PERIOD


async def test_read_months_later_shows_the_period_containing_now(
    client: httpx.AsyncClient, factory: Factory, db: Database, clock: FakeClock
) -> None:
    user = await factory.user(await factory.plan(credits=100))
    key = await factory.key(user)
    await _spend(db, user, credit_milli=100_000, ttp=10)
    clock.set(datetime(2027, 5, 30, 0, 0, tzinfo=UTC))
    body = await _usage(client, key)
    assert body["period"] == "2027-05-25T10:00:00+00:00/2027-06-25T10:00:00+00:00"
    assert (body["currentCredit"], body["ttpCount"]) == (100, 0)


async def test_reads_do_not_write_the_roll_over(
    client: httpx.AsyncClient, factory: Factory, db: Database, clock: FakeClock
) -> None:
    """Lazy roll-over: reading after the boundary shows the new period but stores nothing."""
    user = await factory.user(await factory.plan(credits=100))
    key = await factory.key(user)
    await _usage(client, key)  # sets last_used_at once, so the next read writes nothing
    async with db.read() as conn:
        before = tuple(await conn.fetchone("SELECT * FROM accounts WHERE user_id = ?", user.id))
        entries = await conn.fetchval("SELECT COUNT(*) FROM ledger_entries")
    clock.set(datetime(2026, 12, 25, 10, 0, 30, tzinfo=UTC))
    assert (await _usage(client, key))["period"] == NEXT_PERIOD
    async with db.read() as conn:
        after = tuple(await conn.fetchone("SELECT * FROM accounts WHERE user_id = ?", user.id))
        assert await conn.fetchval("SELECT COUNT(*) FROM ledger_entries") == entries
    assert after == before

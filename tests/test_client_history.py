"""The SDK's ``history()`` against scripted answers: ``httpx.MockTransport``.

Every scenario runs with ``Client`` and with ``AsyncClient`` (the ``flavor`` parameter),
as in ``test_client_transport``; nothing here opens a socket.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamel_usage.client import (
    AsyncClient,
    Client,
    FlamelError,
    HistoryBucket,
    InvalidRequest,
    InvalidResponse,
    ServerError,
    UsageHistory,
)
from tests.test_client_transport import BASE, JSON, Script, envelope

SEOUL = timezone(timedelta(hours=9))
HISTORY: dict[str, Any] = {
    "timezone": "Asia/Seoul",
    "granularity": "day",
    "from": "2026-11-01T00:00:00+09:00",
    "to": "2026-11-03T12:00:00+09:00",
    "buckets": [
        {
            "start": "2026-11-01T00:00:00+09:00",
            "end": "2026-11-02T00:00:00+09:00",
            "credit": {"plan": 3, "purchased": 0.25, "postpaid": 0},
            "operations": {"ttp": 2, "edit": 1},
        },
        {
            "start": "2026-11-02T00:00:00+09:00",
            "end": "2026-11-03T00:00:00+09:00",
            "credit": {"plan": 0, "purchased": 0, "postpaid": 0},
            "operations": {"ttp": 0, "edit": 0},
        },
        {
            "start": "2026-11-03T00:00:00+09:00",
            "end": "2026-11-03T12:00:00+09:00",
            "credit": {"plan": 0, "purchased": 1.5, "postpaid": 2},
            "operations": {"ttp": 0, "edit": 3},
        },
    ],
}
HISTORY_PATH = "/api/users/me/usage/history"


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def fetch_history(flavor: str, script: Script, *args: Any, **options: Any) -> UsageHistory:
    """``history(*args)`` through ``Client`` or ``AsyncClient`` answered by ``script``."""
    transport = httpx.MockTransport(script)
    if flavor == "sync":
        with Client("flm_test", base_url=BASE, transport=transport, **options) as client:
            client._sleep = script.sleep
            return client.history(*args)
    async with AsyncClient("flm_test", base_url=BASE, transport=transport, **options) as aclient:
        aclient._sleep = script.async_sleep
        return await aclient.history(*args)


async def history_failure(flavor: str, script: Script, **options: Any) -> FlamelError:
    with pytest.raises(FlamelError) as caught:
        await fetch_history(flavor, script, **options)
    return caught.value


def changed(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """``HISTORY`` with the field at ``path`` set to ``value`` (or removed: ``...``)."""
    body = copy.deepcopy(HISTORY)
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return body


async def test_a_valid_history_is_parsed_with_ints_kept(flavor: str) -> None:
    script = Script(httpx.Response(200, json=HISTORY))
    history = await fetch_history(flavor, script)
    assert (history.timezone, history.granularity) == ("Asia/Seoul", "day")
    assert history.start == datetime(2026, 11, 1, tzinfo=SEOUL)
    assert history.end == datetime(2026, 11, 3, 3, tzinfo=UTC)
    assert history.start.utcoffset() == timedelta(hours=9)
    first, empty, last = history.buckets
    assert first == HistoryBucket(
        start=datetime(2026, 11, 1, tzinfo=SEOUL),
        end=datetime(2026, 11, 2, tzinfo=SEOUL),
        plan=3,
        purchased=0.25,
        postpaid=0,
        operations={"ttp": 2, "edit": 1},
    )
    assert type(first.plan) is int
    assert type(first.purchased) is float
    assert (first.spent, empty.spent, last.spent) == (3.25, 0, 3.5)
    assert dict(empty.operations) == {"ttp": 0, "edit": 0}
    assert list(last.operations) == ["ttp", "edit"]  # the server's order is kept
    assert last.end - last.start == timedelta(hours=12)  # clipped to the range
    (request,) = script.requests
    assert request.url.path == HISTORY_PATH
    assert dict(request.url.params) == {"granularity": "day"}
    assert request.headers["x-api-key"] == "flm_test"


def test_a_history_is_frozen_and_its_operations_read_only() -> None:
    history = UsageHistory.from_dto(copy.deepcopy(HISTORY))
    with pytest.raises(dataclasses.FrozenInstanceError):
        history.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        history.buckets[0].plan = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        history.buckets[0].operations["ttp"] = 9  # type: ignore[index]
    assert isinstance(history.buckets, tuple)
    assert history == UsageHistory.from_dto(copy.deepcopy(HISTORY))
    assert hash(history.buckets[0]) == hash(UsageHistory.from_dto(HISTORY).buckets[0])


async def test_the_range_and_granularity_are_sent(flavor: str) -> None:
    script = Script(httpx.Response(200, json=HISTORY))
    start = datetime(2026, 11, 1, 6, 30, tzinfo=SEOUL)
    await fetch_history(flavor, script, start, date(2026, 11, 3), "hour")
    await fetch_history(flavor, script, None, datetime(2026, 11, 2, tzinfo=UTC))
    dated, open_start = (dict(request.url.params) for request in script.requests)
    assert dated == {
        "from": "2026-11-01T06:30:00+09:00",
        "to": "2026-11-03",
        "granularity": "hour",
    }
    assert open_start == {"to": "2026-11-02T00:00:00+00:00", "granularity": "day"}
    assert b"%2B09%3A00" in script.requests[0].url.query  # the offset's + is encoded


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((datetime(2026, 11, 1),), ValueError),  # naive: which zone?
        ((None, datetime(2026, 11, 2)), ValueError),
        ((None, None, "week"), ValueError),
        ((None, None, "DAY"), ValueError),
        (("2026-11-01",), TypeError),
        ((None, 20261102), TypeError),
    ],
    ids=["naive from", "naive to", "week", "DAY", "from as str", "to as int"],
)
async def test_wrong_arguments_are_refused_before_any_request(
    flavor: str, args: tuple[object, ...], error: type[Exception]
) -> None:
    script = Script(httpx.Response(200, json=HISTORY))
    with pytest.raises(error):
        await fetch_history(flavor, script, *args)
    assert script.attempts == 0


async def test_a_refused_range_is_an_invalid_request_with_its_reason(flavor: str) -> None:
    script = Script(envelope(400, "invalid_range", message="from must be before to"))
    error = await history_failure(flavor, script, retries=3)
    assert type(error) is InvalidRequest
    assert (error.status, error.reason) == (400, "invalid_range")
    assert "from must be before to" in str(error)
    assert script.attempts == 1


async def test_history_is_retried_like_usage(flavor: str) -> None:
    script = Script(httpx.Response(503), httpx.Response(200, json=HISTORY))
    history = await fetch_history(flavor, script)
    assert len(history.buckets) == 3
    assert script.sleeps == [0.2]
    gone = Script(httpx.Response(502))
    error = await history_failure(flavor, gone, retries=2, backoff=0.5)
    assert type(error) is ServerError
    assert gone.sleeps == [0.5, 1.0]


MALFORMED: list[tuple[str, object]] = [
    ("a JSON array", [HISTORY]),
    ("the usage DTO", {"currentCredit": 1, "period": "x"}),
    ("timezone missing", changed(("timezone",), ...)),
    ("timezone empty", changed(("timezone",), "")),
    ("timezone a number", changed(("timezone",), 9)),
    ("granularity week", changed(("granularity",), "week")),
    ("from missing", changed(("from",), ...)),
    ("from without offset", changed(("from",), "2026-11-01T00:00:00")),
    ("to not a date", changed(("to",), "soon")),
    ("to as a number", changed(("to",), 1700000000)),
    ("buckets an object", changed(("buckets",), {})),
    ("no buckets", changed(("buckets",), [])),
    ("a bucket a list", changed(("buckets", 1), [])),
    ("a bucket missing", changed(("buckets",), [HISTORY["buckets"][0], HISTORY["buckets"][2]])),
    ("buckets reversed", changed(("buckets",), HISTORY["buckets"][::-1])),
    ("first starts late", changed(("buckets", 0, "start"), "2026-11-01T01:00:00+09:00")),
    ("last ends early", changed(("buckets", 2, "end"), "2026-11-03T11:00:00+09:00")),
    ("from after the first start", changed(("from",), "2026-11-02T00:00:00+09:00")),
    ("start without offset", changed(("buckets", 1, "start"), "2026-11-02T00:00:00")),
    ("credit missing", changed(("buckets", 0, "credit"), ...)),
    ("credit a number", changed(("buckets", 0, "credit"), 3)),
    ("plan missing", changed(("buckets", 0, "credit", "plan"), ...)),
    ("plan a string", changed(("buckets", 0, "credit", "plan"), "3")),
    ("purchased a bool", changed(("buckets", 0, "credit", "purchased"), True)),
    ("postpaid null", changed(("buckets", 0, "credit", "postpaid"), None)),
    ("plan negative", changed(("buckets", 0, "credit", "plan"), -1)),
    ("operations missing", changed(("buckets", 0, "operations"), ...)),
    ("operations a list", changed(("buckets", 0, "operations"), [2, 1])),
    ("a count fractional", changed(("buckets", 0, "operations", "ttp"), 1.5)),
    ("a count a string", changed(("buckets", 0, "operations", "ttp"), "2")),
    ("a count negative", changed(("buckets", 0, "operations", "edit"), -1)),
]


@pytest.mark.parametrize(("case", "body"), MALFORMED, ids=[case for case, _ in MALFORMED])
async def test_a_malformed_history_is_invalid_response(
    flavor: str, case: str, body: object
) -> None:
    script = Script(httpx.Response(200, json=body))
    error = await history_failure(flavor, script, retries=3)
    assert type(error) is InvalidResponse, case
    assert str(error).startswith(f"GET {BASE}{HISTORY_PATH}?granularity=day: invalid usage history")
    assert error.status == 200
    assert error.response is not None
    assert error.body == error.response.text[:500]
    assert script.attempts == 1  # never retried


def test_extra_fields_are_ignored() -> None:
    body = changed(("planName",), "Pro")
    body["buckets"][0]["note"] = "x"
    body["buckets"][0]["credit"]["gift"] = 7
    assert UsageHistory.from_dto(body) == UsageHistory.from_dto(HISTORY)


#: Histories with one top-level field or one bucket field replaced: close to valid.
NEAR_HISTORIES = st.one_of(
    st.builds(lambda name, value: changed((name,), value), st.sampled_from(list(HISTORY)), JSON),
    st.builds(
        lambda index, name, value: changed(("buckets", index, name), value),
        st.integers(0, 2),
        st.sampled_from(["start", "end", "credit", "operations"]),
        JSON,
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON | NEAR_HISTORIES)
def test_any_json_answer_is_a_history_or_invalid_response(body: object) -> None:
    script = Script(httpx.Response(200, json=body))
    with Client("flm_x", base_url=BASE, transport=httpx.MockTransport(script)) as client:
        try:
            history = client.history()
        except InvalidResponse:
            return
    assert history.start < history.end
    assert all(bucket.spent >= 0 for bucket in history.buckets)

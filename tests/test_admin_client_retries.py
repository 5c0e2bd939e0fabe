"""The admin clients' retry policy and error mapping, against scripted answers.

Which calls are sent again after the request may have reached the server (the
idempotent ones, a charge with the same key), which only when it surely did not (no
connection was made) or was refused before anything was done (429); the bounded
backoff and the deadline; and the one table from an envelope's reason to an exception.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

import httpx
import pytest

import flamel_usage.client as sdk
from flamel_usage.client import (
    AuthenticationError,
    ChargeRefused,
    Conflict,
    FlamelError,
    IdempotencyKeyReused,
    InsufficientCredit,
    InvalidRequest,
    InvalidResponse,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
    UserNotFound,
)
from flamel_usage.client._exceptions import ERRORS_BY_REASON, error_class
from tests.test_admin_client import (
    CHARGE_RESULT,
    CREATED_KEY,
    PLAN_CHANGE,
    PURCHASE,
    USER,
    admin_call,
)
from tests.test_client_transport import DTO, Script, envelope

#: Each call, its arguments and its success answer.
SUCCESS: dict[str, tuple[tuple[Any, ...], httpx.Response]] = {
    "create_user": (("a@b.c", "Pro"), httpx.Response(201, json=USER)),
    "create_key": ((7,), httpx.Response(201, json=CREATED_KEY)),
    "buy_credits": ((7, 5), httpx.Response(201, json=PURCHASE)),
    "user_usage": ((7,), httpx.Response(200, json=DTO)),
    "change_plan": ((7, "Pro"), httpx.Response(200, json=PLAN_CHANGE)),
    "revoke_key": ((3,), httpx.Response(204)),
    "charge": ((7, "image"), httpx.Response(201, json=CHARGE_RESULT)),
    "refund": (("job-42",), httpx.Response(200, json=CHARGE_RESULT)),
}
SENT_ONCE = ["create_user", "create_key"]
REPEATABLE = ["user_usage", "change_plan", "revoke_key", "charge", "buy_credits", "refund"]

#: Failures after which the request may have reached the server.
MAYBE_ARRIVED: list[httpx.Response | Exception] = [
    httpx.ReadError("Connection reset by peer"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadTimeout("timed out"),
    httpx.WriteError("Broken pipe"),
    httpx.Response(502),
    envelope(503, "service_unavailable"),
    httpx.Response(504),
]
#: Failures before any connection was made.
NEVER_SENT: list[Exception] = [
    httpx.ConnectError("Connection refused"),
    httpx.ConnectTimeout("timed out"),
    httpx.PoolTimeout("no connection free"),
]


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _name(answer: object) -> str:
    return type(answer).__name__ if isinstance(answer, Exception) else str(answer)


async def run(flavor: str, script: Script, call: str, **options: Any) -> Any:
    args, _ = SUCCESS[call]
    return await admin_call(flavor, script, call, *args, options=options)


# --- Which calls are sent again ---------------------------------------------------------


@pytest.mark.parametrize("failure", MAYBE_ARRIVED, ids=_name)
@pytest.mark.parametrize("call", REPEATABLE)
async def test_repeatable_calls_are_retried_after_any_retryable_failure(
    flavor: str, call: str, failure: httpx.Response | Exception
) -> None:
    script = Script(failure, SUCCESS[call][1])
    await run(flavor, script, call)
    assert script.attempts == 2
    assert script.sleeps == [0.2]


@pytest.mark.parametrize("failure", MAYBE_ARRIVED, ids=_name)
@pytest.mark.parametrize("call", SENT_ONCE)
async def test_calls_that_must_not_apply_twice_are_not_sent_again_once_they_may_have_arrived(
    flavor: str, call: str, failure: httpx.Response | Exception
) -> None:
    script = Script(failure, SUCCESS[call][1])
    with pytest.raises((TransportError, ServerError)):
        await run(flavor, script, call, retries=5)
    assert script.attempts == 1
    assert script.sleeps == []


@pytest.mark.parametrize("failure", NEVER_SENT, ids=_name)
@pytest.mark.parametrize("call", SENT_ONCE + REPEATABLE)
async def test_every_call_is_retried_when_no_connection_was_made(
    flavor: str, call: str, failure: Exception
) -> None:
    script = Script(failure, failure, SUCCESS[call][1])
    await run(flavor, script, call)
    assert script.attempts == 3
    assert script.sleeps == [0.2, 0.4]


@pytest.mark.parametrize("call", SENT_ONCE + REPEATABLE)
async def test_every_call_is_retried_after_a_429_the_server_did_nothing_for(
    flavor: str, call: str
) -> None:
    limited = envelope(429, "too_many_requests")
    limited.headers["Retry-After"] = "2"
    script = Script(limited, SUCCESS[call][1])
    await run(flavor, script, call)
    assert script.sleeps == [2.0]


@pytest.mark.parametrize("call", ["charge", "buy_credits"])
async def test_a_retried_charge_or_purchase_sends_the_same_key_every_time(
    flavor: str, call: str
) -> None:
    args, answer = SUCCESS[call]
    replay = httpx.Response(201, json=answer.json(), headers={"Idempotent-Replayed": "true"})
    lost = [httpx.ReadError("reset"), httpx.Response(502), httpx.ReadTimeout("slow")]
    script = Script(*lost, replay)
    result = await admin_call(flavor, script, call, *args, options={"retries": 3})
    assert result.replayed
    keys = {request.headers["idempotency-key"] for request in script.requests}
    assert len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 4
    assert script.attempts == 4
    assert len({request.content for request in script.requests}) == 1


async def test_a_charge_that_fails_for_good_carries_its_key(flavor: str) -> None:
    script = Script(httpx.ReadError("reset"))
    with pytest.raises(TransportError) as caught:
        await admin_call(flavor, script, "charge", 7, "image", options={"retries": 1})
    sent = {request.headers["idempotency-key"] for request in script.requests}
    assert sent == {caught.value.idempotency_key}
    with pytest.raises(UserNotFound) as other:
        await admin_call(flavor, Script(envelope(404, "user_not_found")), "user_usage", 7)
    assert other.value.idempotency_key is None


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (envelope(402, "insufficient_credit"), InsufficientCredit),
        (envelope(429, "ttp_limit_exceeded"), LimitExceeded),
        (envelope(429, "edit_limit_exceeded"), LimitExceeded),
        (envelope(409, "idempotency_key_reused"), IdempotencyKeyReused),
        (envelope(400, "unknown_kind"), InvalidRequest),
        (envelope(401, "admin_unauthorized"), AuthenticationError),
        (envelope(500, "internal_error"), ServerError),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
async def test_a_charge_refusal_is_raised_at_once(
    flavor: str, answer: httpx.Response, kind: type[FlamelError]
) -> None:
    answer.headers["Retry-After"] = "1"  # a refusal is final, whatever the headers say
    answer.headers["Idempotent-Replayed"] = "true"
    script = Script(answer, httpx.Response(201, json=CHARGE_RESULT))
    with pytest.raises(kind) as caught:
        await admin_call(flavor, script, "charge", 7, "image", idempotency_key="job-1")
    assert script.attempts == 1
    assert caught.value.idempotency_key == "job-1"
    assert not isinstance(caught.value, RateLimited)


# --- Backoff and deadline ---------------------------------------------------------------


class Clock:
    """A monotonic clock that the script's waits move forward."""

    def __init__(self, script: Script) -> None:
        self.now = 1000.0
        self.script = script

    def __call__(self) -> float:
        return self.now + sum(self.script.sleeps)


def _client(flavor: str, script: Script, **options: Any) -> Any:
    transport = httpx.MockTransport(script)
    if flavor == "sync":
        client: Any = sdk.AdminClient("t", base_url="http://x.test", transport=transport, **options)
        client._sleep = script.sleep
    else:
        client = sdk.AsyncAdminClient("t", base_url="http://x.test", transport=transport, **options)
        client._sleep = script.async_sleep
    client._clock = Clock(script)
    return client


async def _usage(flavor: str, client: Any) -> Any:
    if flavor == "sync":
        with client:
            return client.user_usage(7)
    async with client:
        return await client.user_usage(7)


async def test_the_backoff_is_exponential_and_capped(flavor: str) -> None:
    script = Script(httpx.Response(503))
    client = _client(flavor, script, retries=5, backoff=3, deadline=1000)
    with pytest.raises(ServerError):
        await _usage(flavor, client)
    assert script.sleeps == [3.0, 6.0, 10.0, 10.0, 10.0]


async def test_no_wait_goes_past_the_deadline(flavor: str) -> None:
    script = Script(httpx.Response(503))
    client = _client(flavor, script, retries=10, backoff=0.4, deadline=2.0)
    with pytest.raises(ServerError):
        await _usage(flavor, client)
    assert script.sleeps == [0.4, 0.8]  # a third wait, 1.6, would end at 2.8
    assert script.attempts == 3


async def test_each_attempt_times_out_by_the_deadline(flavor: str) -> None:
    script = Script(httpx.ReadTimeout("slow"), httpx.Response(200, json=DTO))
    client = _client(flavor, script, timeout=5, backoff=2, deadline=3)
    await _usage(flavor, client)
    first, second = (request.extensions["timeout"]["read"] for request in script.requests)
    assert first == 3  # the deadline is nearer than the timeout
    assert second == pytest.approx(1)  # 3 s less the 2 s waited


async def test_a_retry_after_past_the_deadline_is_raised_at_once(flavor: str) -> None:
    limited = envelope(429, "too_many_requests")
    limited.headers["Retry-After"] = "30"
    script = Script(limited, httpx.Response(200, json=DTO))
    client = _client(flavor, script, deadline=20)
    with pytest.raises(RateLimited) as caught:
        await _usage(flavor, client)
    assert caught.value.retry_after == 30
    assert script.attempts == 1


@pytest.mark.parametrize("deadline", [0, -1, float("nan"), "10"])
def test_a_bad_deadline_is_refused(deadline: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        sdk.AdminClient("t", deadline=deadline)  # type: ignore[arg-type]
    with pytest.raises((ValueError, TypeError)):
        sdk.Client("flm_x", deadline=deadline)  # type: ignore[arg-type]


# --- From an envelope's reason to an exception ------------------------------------------


@pytest.mark.parametrize(("reason", "entry"), sorted(ERRORS_BY_REASON.items()))
async def test_each_reason_raises_its_exception(
    flavor: str, reason: str, entry: tuple[int, type[FlamelError]]
) -> None:
    status, kind = entry
    script = Script(envelope(status, reason, message="why"))
    with pytest.raises(FlamelError) as caught:
        await admin_call(flavor, script, "refund", "job-1", options={"retries": 0})
    error = caught.value
    assert type(error) is kind
    assert (error.status, error.reason, error.idempotency_key) == (status, reason, "job-1")
    assert f"{status} {reason}: why" in str(error)


def test_every_exception_of_the_table_is_public_and_documented() -> None:
    for status, kind in ERRORS_BY_REASON.values():
        assert getattr(sdk, kind.__name__) is kind
        assert kind.__doc__
        assert kind.__name__ in (sdk.__doc__ or "") or kind is FlamelError
        assert 400 <= status < 600


def test_the_new_exceptions_hang_where_the_tree_says() -> None:
    direct = [PermissionDenied, InvalidRequest, NotFound, Conflict, ChargeRefused]
    for kind in direct:
        assert kind.__bases__ == (FlamelError,), kind.__name__
    for name in ("UserNotFound", "PlanNotFound", "KeyNotFound", "ChargeNotFound"):
        assert getattr(sdk, name).__bases__ == (NotFound,)
    for name in ("UserExists", "TooManyKeys", "IdempotencyKeyReused", "AlreadyRefunded"):
        assert getattr(sdk, name).__bases__ == (Conflict,)
    assert sdk.NotRefundable.__bases__ == (Conflict,)
    assert InsufficientCredit.__bases__ == (ChargeRefused,)
    assert LimitExceeded.__bases__ == (ChargeRefused,)
    assert not issubclass(LimitExceeded, RateLimited)
    exceptions = [v for v in vars(sdk).values() if inspect.isclass(v) and issubclass(v, Exception)]
    assert all(issubclass(kind, FlamelError) for kind in exceptions)


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        (409, "user_not_found", Conflict),  # a known reason with another status
        (404, "insufficient_credit", NotFound),
        (400, "from_the_future", InvalidRequest),  # a reason of a newer server
        (403, "from_the_future", PermissionDenied),
        (404, "from_the_future", NotFound),
        (409, "from_the_future", Conflict),
        (401, "from_the_future", AuthenticationError),
        (429, "from_the_future", RateLimited),
        (402, "from_the_future", FlamelError),
        (418, "from_the_future", FlamelError),
        (503, "from_the_future", ServerError),
        (401, None, AuthenticationError),  # no envelope
        (429, None, RateLimited),
        (502, None, ServerError),
        (402, None, InvalidResponse),
        (404, None, InvalidResponse),
        (409, None, InvalidResponse),
    ],
)
def test_a_reason_out_of_the_table_falls_back_on_the_status(
    status: int, reason: str | None, kind: type[FlamelError]
) -> None:
    assert error_class(status, reason) is kind


async def test_a_thousand_retries_do_not_overflow_the_backoff(flavor: str) -> None:
    script = Script(httpx.ConnectError("refused"))
    client = _client(flavor, script, retries=1030, backoff=0.001, deadline=100_000)
    with pytest.raises(TransportError):
        await _usage(flavor, client)
    assert script.attempts == 1031
    assert max(script.sleeps) == 10.0

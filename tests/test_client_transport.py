"""The SDK (``flamel_usage.client``) against scripted answers: ``httpx.MockTransport``.

Every scenario runs with ``Client`` and with ``AsyncClient`` (the ``flavor`` parameter).
Nothing here opens a socket; the waits between retries go to a recording stub.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flamel_usage
import flamel_usage.client as sdk
from flamel_usage.client import (
    ApiKeyExpired,
    AsyncClient,
    AuthenticationError,
    Client,
    FlamelError,
    InvalidResponse,
    NotFound,
    NotLoggedIn,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
    UsageInfo,
    WrongApiKey,
)

BASE = "http://flamel.test"
PERIOD = "2026-11-01T00:00:00+09:00/2026-12-01T00:00:00+09:00"
DTO: dict[str, Any] = {
    "currentCredit": 75,
    "additionalCredit": 2.5,
    "maxCredit": 100,
    "period": PERIOD,
    "ttpCount": 3,
    "maxTtpCount": 10,
    "editCount": 7,
    "maxEditCount": None,
    "postpaidUsageCount": None,
}
REQUIRED = [name for name in DTO if name != "postpaidUsageCount"]
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

Answer = httpx.Response | Exception


def envelope(status: int, reason: str, **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"success": False, "code": status, "data": reason, **extra})


class Script:
    """A mock server answering each request with the next scripted answer (the last repeats)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        try:
            content = answer.content
        except httpx.ResponseNotRead:  # a streamed answer: used once, as is
            return answer
        # A fresh response each time: one is bound to the request and client it answered.
        return httpx.Response(answer.status_code, headers=answer.headers, content=content)

    @property
    def attempts(self) -> int:
        return len(self.requests)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def fetch(
    flavor: str, script: Script, api_key: str | None = "flm_test", **options: Any
) -> UsageInfo:
    """``usage()`` through ``Client`` or ``AsyncClient`` answered by ``script``."""
    options.setdefault("base_url", BASE)
    transport = httpx.MockTransport(script)
    if flavor == "sync":
        with Client(api_key, transport=transport, **options) as client:
            client._sleep = script.sleep
            return client.usage()
    async with AsyncClient(api_key, transport=transport, **options) as aclient:
        aclient._sleep = script.async_sleep
        return await aclient.usage()


async def failure(flavor: str, script: Script, **options: Any) -> FlamelError:
    with pytest.raises(FlamelError) as caught:
        await fetch(flavor, script, **options)
    return caught.value


# --- The public surface ----------------------------------------------------------------


def test_all_is_pinned() -> None:
    assert sorted(sdk.__all__) == [
        "AdminClient",
        "AlreadyRefunded",
        "ApiKeyExpired",
        "AsyncAdminClient",
        "AsyncClient",
        "AuthenticationError",
        "Charge",
        "ChargeNotFound",
        "ChargeRefused",
        "ChargeResult",
        "Client",
        "Conflict",
        "CreatedKey",
        "CreatedWebhook",
        "CreditPurchase",
        "DEFAULT_BASE_URL",
        "FlamelError",
        "HistoryBucket",
        "Hold",
        "HoldNotActive",
        "HoldNotFound",
        "HoldResult",
        "IdempotencyKeyReused",
        "InsufficientCredit",
        "InvalidRequest",
        "InvalidResponse",
        "InvalidWebhook",
        "KeyNotFound",
        "LimitExceeded",
        "NotFound",
        "NotLoggedIn",
        "NotRefundable",
        "PermissionDenied",
        "PlanChange",
        "PlanNotFound",
        "PurchaseResult",
        "RateLimited",
        "ServerError",
        "TooManyKeys",
        "TransportError",
        "UsageHistory",
        "UsageInfo",
        "User",
        "UserExists",
        "UserNotFound",
        "WebhookDelivery",
        "WebhookEndpoint",
        "WrongApiKey",
        "verify_webhook",
    ]
    assert len(set(sdk.__all__)) == len(sdk.__all__)
    for name in sdk.__all__:
        value = getattr(sdk, name)
        if isinstance(value, type):
            assert value.__module__ == "flamel_usage.client", name
    assert sdk.DEFAULT_BASE_URL == "http://127.0.0.1:4010"
    public = {name for name in vars(sdk) if not name.startswith("_")}
    assert public == set(sdk.__all__)


def test_exception_tree_is_pinned() -> None:
    assert issubclass(FlamelError, Exception)
    children: list[type[Exception]] = [AuthenticationError, NotLoggedIn, RateLimited]
    children += [ServerError, InvalidResponse, TransportError]
    for child in children:
        assert child.__bases__ == (FlamelError,), child.__name__
    assert WrongApiKey.__bases__ == (AuthenticationError,)
    assert ApiKeyExpired.__bases__ == (AuthenticationError,)
    assert issubclass(WrongApiKey, FlamelError)
    assert not issubclass(NotLoggedIn, AuthenticationError)
    leaves = [WrongApiKey, ApiKeyExpired, NotLoggedIn, RateLimited, ServerError]
    leaves += [InvalidResponse, TransportError]
    for index, first in enumerate(leaves):
        for second in leaves[index + 1 :]:
            assert not issubclass(first, second)
            assert not issubclass(second, first)
    for cls in (FlamelError, *leaves, AuthenticationError):
        assert cls.__doc__, f"{cls.__name__} is undocumented"


def test_the_package_documents_itself_with_an_example() -> None:
    doc = sdk.__doc__ or ""
    assert "Example::" in doc
    assert "Client(" in doc
    assert "FLAMEL_API_KEY" in doc  # says the library does not read it


def test_importing_the_sdk_loads_no_server_code_or_dependencies() -> None:
    probe = (
        "import sys, json\n"
        "import flamel_usage.client\n"
        "from flamel_usage.client import Client\n"
        "Client('flm_x').close()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(done.stdout))
    forbidden = {"granian", "uvicorn", "asyncpg", "orjson", "yaml", "swagger_ui_bundle"}
    assert not {name for name in loaded if name.split(".")[0] in forbidden}
    ours = {name for name in loaded if name.split(".")[0] == "flamel_usage"}
    allowed = {"flamel_usage", "flamel_usage.client"}
    assert {
        n for n in ours if n not in allowed and not n.startswith("flamel_usage.client.")
    } == set()


# --- UsageInfo --------------------------------------------------------------------------


async def test_a_valid_answer_is_parsed_to_snake_case_with_ints_kept(flavor: str) -> None:
    info = await fetch(flavor, Script(httpx.Response(200, json=DTO)))
    assert info == UsageInfo(
        current_credit=75,
        additional_credit=2.5,
        max_credit=100,
        period=PERIOD,
        ttp_count=3,
        max_ttp_count=10,
        edit_count=7,
        max_edit_count=None,
        postpaid_usage_count=None,
    )
    assert type(info.current_credit) is int
    assert type(info.max_credit) is int
    assert type(info.additional_credit) is float
    assert dict(info.raw) == DTO
    assert info["currentCredit"] == 75
    assert "maxEditCount" in info
    assert "nope" not in info
    with pytest.raises(KeyError):
        info["nope"]


async def test_helpers(flavor: str) -> None:
    info = await fetch(flavor, Script(httpx.Response(200, json=DTO)))
    assert info.total_credit_left == 77.5
    assert info.fraction_used == 0.25
    assert info.period_start == datetime(2026, 11, 1, tzinfo=timezone(timedelta(hours=9)))
    assert info.period_end == datetime(2026, 11, 30, 15, tzinfo=UTC)
    assert info.period_start.utcoffset() == timedelta(hours=9)
    assert info.ttp_left == 7
    assert info.edits_left is None
    assert not info.is_postpaid


def test_helpers_at_the_edges() -> None:
    over = dict(DTO, maxCredit=0, currentCredit=0, ttpCount=12, maxTtpCount=10, maxEditCount=7)
    info = UsageInfo.from_dto(
        over | {"postpaidUsageCount": 4.5, "period": "2026-11-01T00:00:00Z/2026-12-01T00:00:00Z"}
    )
    assert info.fraction_used == 0.0
    assert info.ttp_left == 0
    assert info.edits_left == 0
    assert info.is_postpaid
    assert info.postpaid_usage_count == 4.5
    assert info.period_start == datetime(2026, 11, 1, tzinfo=UTC)
    spent = UsageInfo.from_dto(dict(DTO, currentCredit=0))
    assert spent.fraction_used == 1.0
    postpaid_zero = UsageInfo.from_dto(dict(DTO, postpaidUsageCount=0))
    assert postpaid_zero.is_postpaid
    assert type(postpaid_zero.postpaid_usage_count) is int


def test_usage_info_is_frozen_and_its_raw_read_only() -> None:
    info = UsageInfo.from_dto(dict(DTO))
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.current_credit = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.raw["currentCredit"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        iter(info)  # type: ignore[call-overload]
    assert not hasattr(info, "__dict__")  # slots
    assert hash(info) == hash(UsageInfo.from_dto(dict(DTO)))


def test_a_usage_info_made_by_hand_has_the_matching_raw() -> None:
    info = UsageInfo(75, 2.5, 100, PERIOD, 3, 10, 7, None, None)
    assert dict(info.raw) == DTO
    assert info == UsageInfo.from_dto(DTO)


async def test_extra_fields_are_ignored_and_postpaid_may_be_absent(flavor: str) -> None:
    body = {k: v for k, v in DTO.items() if k != "postpaidUsageCount"}
    body |= {"planName": "Pro", "nested": {"a": [1, 2]}, "currentcredit": "x"}
    info = await fetch(flavor, Script(httpx.Response(200, json=body)))
    assert info.postpaid_usage_count is None
    assert info["planName"] == "Pro"
    assert info == UsageInfo.from_dto(DTO)


def _wrong(**changes: object) -> dict[str, object]:
    return {**DTO, **changes}


MALFORMED_DTOS: list[tuple[str, object]] = [
    ("credit as a string", _wrong(currentCredit="75")),
    ("credit as a bool", _wrong(additionalCredit=True)),
    ("max credit null", _wrong(maxCredit=None)),
    ("count as a string", _wrong(ttpCount="3")),
    ("count fractional", _wrong(editCount=1.5)),
    ("count as a bool", _wrong(editCount=False)),
    ("limit as a string", _wrong(maxTtpCount="10")),
    ("limit as a list", _wrong(maxEditCount=[5])),
    ("postpaid as a string", _wrong(postpaidUsageCount="1")),
    ("period as a number", _wrong(period=20261101)),
    ("period null", _wrong(period=None)),
    ("period without offsets", _wrong(period="2026-11-01T00:00:00/2026-12-01T00:00:00")),
    ("period one offset", _wrong(period="2026-11-01T00:00:00Z/2026-12-01T00:00:00")),
    ("period a duration", _wrong(period="2026-11-01T00:00:00Z/P1M")),
    ("period a single instant", _wrong(period="2026-11-01T00:00:00Z")),
    ("period three parts", _wrong(period=f"{PERIOD}/2027-01-01T00:00:00Z")),
    ("period backwards", _wrong(period="2026-12-01T00:00:00Z/2026-11-01T00:00:00Z")),
    ("period empty", _wrong(period="")),
    *[(f"missing {name}", {k: v for k, v in DTO.items() if k != name}) for name in REQUIRED],
    ("a JSON array", [DTO]),
    ("a JSON string", "ok"),
    ("JSON null", None),
    ("an envelope with 200", {"success": False, "code": 401, "data": "wrong_api_key"}),
    ("an empty object", {}),
]


@pytest.mark.parametrize(("case", "body"), MALFORMED_DTOS, ids=[c for c, _ in MALFORMED_DTOS])
async def test_a_malformed_usage_dto_is_invalid_response(
    flavor: str, case: str, body: object
) -> None:
    script = Script(httpx.Response(200, json=body))
    error = await failure(flavor, script)
    assert type(error) is InvalidResponse, case
    assert error.status == 200
    assert error.response is not None
    assert error.body == error.response.text[:500]
    assert error.body.startswith("[" if isinstance(body, list) else "")
    assert f"{BASE}/api/users/me/usage" in str(error)
    assert script.attempts == 1  # never retried


MALFORMED_BODIES: list[tuple[str, bytes, str]] = [
    ("empty body", b"", "application/json"),
    ("truncated JSON", json.dumps(DTO).encode()[:-7], "application/json"),
    ("an HTML page", b"<!doctype html><html><body>Login</body></html>", "text/html"),
    ("NaN", json.dumps(_wrong(currentCredit=float("nan"))).encode(), "application/json"),
    ("Infinity", json.dumps(_wrong(maxCredit=float("inf"))).encode(), "application/json"),
    ("huge exponent", json.dumps(DTO).replace("75", "1e999").encode(), "application/json"),
    ("not UTF-8", b'{"currentCredit": "\xff\xfe"}', "application/json"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    ("two documents", json.dumps(DTO).encode() * 2, "application/json"),
]


@pytest.mark.parametrize(
    ("case", "content", "content_type"), MALFORMED_BODIES, ids=[c for c, _, _ in MALFORMED_BODIES]
)
async def test_a_body_that_is_not_json_is_invalid_response(
    flavor: str, case: str, content: bytes, content_type: str
) -> None:
    script = Script(httpx.Response(200, content=content, headers={"content-type": content_type}))
    error = await failure(flavor, script)
    assert type(error) is InvalidResponse, case
    assert error.status == 200
    assert len(error.body) <= InvalidResponse.EXCERPT
    assert error.body == content[:500].decode("utf-8", "replace")[:500] or case == "not UTF-8"


async def test_a_body_that_does_not_decode_is_invalid_response(flavor: str) -> None:
    garbage = httpx.Response(
        200, stream=httpx.ByteStream(b"not gzip"), headers={"content-encoding": "gzip"}
    )
    error = await failure(flavor, Script(garbage))
    assert type(error) is InvalidResponse
    assert isinstance(error.__cause__, httpx.DecodingError)


# --- Error answers ----------------------------------------------------------------------

ERRORS: list[tuple[str, httpx.Response, type[FlamelError], int, str | None]] = [
    ("wrong key", envelope(401, "wrong_api_key"), WrongApiKey, 401, "wrong_api_key"),
    ("expired key", envelope(401, "api_key_expired"), ApiKeyExpired, 401, "api_key_expired"),
    ("other 401", envelope(401, "key_revoked"), AuthenticationError, 401, "key_revoked"),
    (
        "401 without envelope",
        httpx.Response(401, text="Unauthorized"),
        AuthenticationError,
        401,
        None,
    ),
    ("not logged in", envelope(403, "not_logged_in"), NotLoggedIn, 403, "not_logged_in"),
    ("other 403", envelope(403, "forbidden"), PermissionDenied, 403, "forbidden"),
    ("unknown 403", envelope(403, "nope"), PermissionDenied, 403, "nope"),
    ("403 HTML", httpx.Response(403, html="<h1>Forbidden</h1>"), InvalidResponse, 403, None),
    ("not found", envelope(404, "not_found"), NotFound, 404, "not_found"),
    ("405", envelope(405, "method_not_allowed"), FlamelError, 405, "method_not_allowed"),
    ("404 HTML", httpx.Response(404, html="<h1>Not Found</h1>"), InvalidResponse, 404, None),
    ("418 envelope", envelope(418, "im_a_teapot"), FlamelError, 418, "im_a_teapot"),
    ("418 text", httpx.Response(418, text="I'm a teapot"), InvalidResponse, 418, None),
    ("204", httpx.Response(204), InvalidResponse, 204, None),
    ("302", httpx.Response(302, headers={"location": "/login"}), InvalidResponse, 302, None),
    ("429", envelope(429, "too_many_requests"), RateLimited, 429, "too_many_requests"),
    ("500", envelope(500, "internal_error"), ServerError, 500, "internal_error"),
    ("502 HTML", httpx.Response(502, content=HTML_502), ServerError, 502, None),
    ("503 empty", httpx.Response(503), ServerError, 503, None),
    (
        "mismatched code",
        httpx.Response(401, json={"success": False, "code": 403, "data": "wrong_api_key"}),
        AuthenticationError,
        401,
        None,
    ),
    (
        "bool code",
        httpx.Response(404, json={"success": False, "code": True, "data": "not_found"}),
        InvalidResponse,
        404,
        None,
    ),
    (
        "success true",
        httpx.Response(404, json={"success": True, "code": 404, "data": "not_found"}),
        InvalidResponse,
        404,
        None,
    ),
    (
        "data not a string",
        httpx.Response(404, json={"success": False, "code": 404, "data": 1}),
        InvalidResponse,
        404,
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "answer", "kind", "status", "reason"), ERRORS, ids=[case for case, *_ in ERRORS]
)
async def test_error_answers_map_to_the_exception_tree(
    flavor: str,
    case: str,
    answer: httpx.Response,
    kind: type[FlamelError],
    status: int,
    reason: str | None,
) -> None:
    error = await failure(flavor, Script(answer), retries=0)
    assert type(error) is kind, case
    assert (error.status, error.reason) == (status, reason)
    assert error.response is not None
    assert error.response.status_code == status
    assert str(status) in str(error)
    if reason is not None:
        assert reason in str(error)


async def test_the_envelope_message_is_shown(flavor: str) -> None:
    answer = envelope(401, "wrong_api_key", message="The API key is not valid")
    error = await failure(flavor, Script(answer))
    assert isinstance(error, WrongApiKey)
    assert "The API key is not valid" in str(error)


async def test_rate_limited_carries_retry_after(flavor: str) -> None:
    limited = envelope(429, "too_many_requests")
    limited.headers["Retry-After"] = "120"
    error = await failure(flavor, Script(limited))
    assert isinstance(error, RateLimited)
    assert error.retry_after == 120.0
    no_header = await failure(flavor, Script(envelope(429, "too_many_requests")), retries=0)
    assert isinstance(no_header, RateLimited)
    assert no_header.retry_after is None


# --- What is sent -----------------------------------------------------------------------


async def test_an_api_key_is_sent_with_the_user_agent(flavor: str) -> None:
    script = Script(httpx.Response(200, json=DTO))
    await fetch(flavor, script, api_key="flm_abc-DEF_123")
    (request,) = script.requests
    assert request.method == "GET"
    assert str(request.url) == f"{BASE}/api/users/me/usage"
    assert request.headers["x-api-key"] == "flm_abc-DEF_123"
    assert request.headers["user-agent"] == f"flamel-usage-python/{flamel_usage.__version__}"
    assert request.headers["accept"] == "application/json"
    assert "cookie" not in request.headers


async def test_a_session_cookie_is_sent_as_connect_sid(flavor: str) -> None:
    script = Script(httpx.Response(200, json=DTO))
    await fetch(flavor, script, api_key=None, session_cookie="s%3Aabc.def%2Bg")
    (request,) = script.requests
    assert request.headers["cookie"] == "connect.sid=s%3Aabc.def%2Bg"
    assert "x-api-key" not in request.headers


async def test_without_credentials_nothing_is_sent_and_the_server_decides(flavor: str) -> None:
    script = Script(envelope(403, "not_logged_in"))
    error = await failure(flavor, script, api_key=None)
    assert isinstance(error, NotLoggedIn)
    assert "x-api-key" not in script.requests[0].headers
    assert "cookie" not in script.requests[0].headers


async def test_a_base_url_with_a_path_prefix_is_kept(flavor: str) -> None:
    script = Script(httpx.Response(200, json=DTO))
    await fetch(flavor, script, base_url="https://flamel.test/prefix/")
    assert str(script.requests[0].url) == "https://flamel.test/prefix/api/users/me/usage"


def test_the_library_reads_no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAMEL_API_KEY", "flm_from_env")
    script = Script(httpx.Response(200, json=DTO))
    with Client(base_url=BASE, transport=httpx.MockTransport(script)) as client:
        client.usage()
    assert "x-api-key" not in script.requests[0].headers


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"api_key": ""}, ValueError),
        ({"api_key": "flm_x\r\nX-Admin: 1"}, ValueError),
        ({"api_key": "flm x"}, ValueError),
        ({"api_key": 123}, TypeError),
        ({"session_cookie": "a;b"}, ValueError),
        ({"base_url": "ftp://flamel.test"}, ValueError),
        ({"base_url": "flamel.test"}, ValueError),
        ({"base_url": "http://"}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"retries": -1}, ValueError),
        ({"retries": True}, TypeError),
        ({"retries": 1.5}, TypeError),
        ({"backoff": -0.1}, ValueError),
    ],
)
def test_invalid_options_are_refused_at_construction(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Client(**options)
    with pytest.raises(error):
        AsyncClient(**options)


def test_repr_never_shows_the_credentials() -> None:
    with Client("flm_secret_value", session_cookie="s%3Asecret") as client:
        shown = repr(client)
    assert "secret" not in shown
    assert "api_key+session_cookie" in shown


def test_close_and_context_managers_close_the_connections() -> None:
    client = Client("flm_x", transport=httpx.MockTransport(Script(httpx.Response(200, json=DTO))))
    client.close()
    assert client._http.is_closed
    with pytest.raises(RuntimeError):
        client.usage()
    with Client("flm_x") as used:
        pass
    assert used._http.is_closed


async def test_async_close_and_context_manager() -> None:
    aclient = AsyncClient("flm_x")
    await aclient.aclose()
    assert aclient._http.is_closed
    async with AsyncClient("flm_x") as used:
        pass
    assert used._http.is_closed


# --- Retries ----------------------------------------------------------------------------


async def test_a_503_then_a_200_succeeds(flavor: str) -> None:
    script = Script(httpx.Response(503, content=HTML_502), httpx.Response(200, json=DTO))
    info = await fetch(flavor, script)
    assert info.current_credit == 75
    assert script.attempts == 2
    assert script.sleeps == [0.2]


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_errors_are_retried_with_exponential_backoff(
    flavor: str, status: int
) -> None:
    script = Script(httpx.Response(status))
    error = await failure(flavor, script, retries=3, backoff=0.5)
    assert type(error) is ServerError
    assert error.status == status
    assert script.attempts == 4
    assert script.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    "answer",
    [
        envelope(401, "wrong_api_key"),
        envelope(401, "api_key_expired"),
        envelope(403, "not_logged_in"),
        envelope(404, "not_found"),
        envelope(500, "internal_error"),
        httpx.Response(200, json={}),
        httpx.Response(200, content=b"{"),
    ],
    ids=["401-wrong", "401-expired", "403", "404", "500", "200-invalid", "200-truncated"],
)
async def test_other_answers_are_never_retried(flavor: str, answer: httpx.Response) -> None:
    script = Script(answer, httpx.Response(200, json=DTO))
    await failure(flavor, script, retries=5)
    assert script.attempts == 1
    assert script.sleeps == []


async def test_retries_zero_disables_retrying(flavor: str) -> None:
    script = Script(httpx.Response(503), httpx.Response(200, json=DTO))
    error = await failure(flavor, script, retries=0)
    assert isinstance(error, ServerError)
    assert script.attempts == 1
    assert script.sleeps == []


@pytest.mark.parametrize(
    "cause",
    [
        httpx.ConnectError("Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.ReadError("Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=lambda cause: type(cause).__name__,
)
async def test_transport_errors_are_retried_then_raised_with_their_cause(
    flavor: str, cause: httpx.TransportError
) -> None:
    script = Script(cause)
    error = await failure(flavor, script)
    assert type(error) is TransportError
    assert error.__cause__ is cause
    assert (error.status, error.reason, error.response) == (None, None, None)
    assert type(cause).__name__ in str(error)
    assert script.attempts == 3
    assert script.sleeps == [0.2, 0.4]


async def test_a_transport_error_then_a_200_succeeds(flavor: str) -> None:
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json=DTO))
    info = await fetch(flavor, script)
    assert info.max_credit == 100
    assert script.attempts == 2


async def test_a_transport_error_that_cannot_heal_is_not_retried(flavor: str) -> None:
    cause = httpx.UnsupportedProtocol("Request URL has an unsupported protocol")
    script = Script(cause)
    error = await failure(flavor, script)
    assert type(error) is TransportError
    assert error.__cause__ is cause
    assert script.attempts == 1


def _limited(retry_after: str | None, status: int = 429) -> httpx.Response:
    answer = envelope(status, "too_many_requests" if status == 429 else "unavailable")
    if retry_after is not None:
        answer.headers["Retry-After"] = retry_after
    return answer


async def test_retry_after_in_seconds_is_honored(flavor: str) -> None:
    script = Script(_limited("3"), _limited("1.5"), httpx.Response(200, json=DTO))
    info = await fetch(flavor, script, retries=2)
    assert info.ttp_count == 3
    assert script.sleeps == [3.0, 1.5]


async def test_retry_after_as_an_http_date_is_honored(flavor: str) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    script = Script(_limited(when), httpx.Response(200, json=DTO))
    await fetch(flavor, script)
    (slept,) = script.sleeps
    assert 25 <= slept <= 30


async def test_retry_after_on_a_503_is_honored(flavor: str) -> None:
    script = Script(_limited("4", status=503), httpx.Response(200, json=DTO))
    await fetch(flavor, script)
    assert script.sleeps == [4.0]


async def test_a_429_without_retry_after_backs_off(flavor: str) -> None:
    script = Script(_limited(None), _limited("garbage"), _limited(None))
    error = await failure(flavor, script, retries=2, backoff=1)
    assert isinstance(error, RateLimited)
    assert script.sleeps == [1.0, 2.0]
    assert script.attempts == 3


async def test_a_retry_after_beyond_the_cap_is_raised_at_once(flavor: str) -> None:
    script = Script(_limited("3600"), httpx.Response(200, json=DTO))
    error = await failure(flavor, script, retries=5)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3600.0
    assert script.attempts == 1
    assert script.sleeps == []


async def test_the_default_sleep_is_the_real_one() -> None:
    with Client() as client:
        assert client._sleep is time.sleep
    async with AsyncClient() as aclient:
        assert aclient._sleep is asyncio.sleep


# --- Whatever the server sends ----------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
#: DTOs with one field replaced, removed, or left alone: close to valid, to reach deep.
NEAR_DTOS = st.builds(
    lambda name, value, drop: {
        k: v for k, v in {**DTO, name: value}.items() if not (drop and k == name)
    },
    st.sampled_from(list(DTO)),
    JSON,
    st.booleans(),
)


def _outcome(client: Client) -> UsageInfo | FlamelError:
    try:
        return client.usage()
    except FlamelError as error:
        return error


STATUSES = st.sampled_from(
    [200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 418, 429, 500, 502, 503]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=STATUSES,
    body=JSON | NEAR_DTOS,
    headers=st.dictionaries(
        st.sampled_from(["retry-after", "content-type"]), st.text(max_size=20), max_size=2
    ),
)
def test_any_json_answer_is_usage_info_or_a_flamel_error(
    status: int, body: object, headers: dict[str, str]
) -> None:
    printable = {name: value.encode("ascii", "ignore").decode() for name, value in headers.items()}
    script = Script(httpx.Response(status, json=body, headers=printable))
    with Client("flm_x", base_url=BASE, transport=httpx.MockTransport(script)) as client:
        client._sleep = script.sleep
        outcome = _outcome(client)
    if isinstance(outcome, FlamelError):
        assert outcome.status == status
    else:
        assert status == 200
        assert outcome.period_end > outcome.period_start
        assert 0.0 <= outcome.fraction_used <= 1.0


@settings(max_examples=200, deadline=None)
@given(status=STATUSES, content=st.binary(max_size=64))
def test_any_bytes_answer_is_a_flamel_error(status: int, content: bytes) -> None:
    transport = httpx.MockTransport(Script(httpx.Response(status, content=content)))
    with (
        Client("flm_x", base_url=BASE, transport=transport, retries=0) as client,
        pytest.raises(FlamelError),
    ):
        client.usage()

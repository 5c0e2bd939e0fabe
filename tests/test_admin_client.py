"""``AdminClient`` and ``AsyncAdminClient`` against scripted answers (``httpx.MockTransport``):
what each call sends, how its answer is read, and the arguments refused before sending.

Every scenario runs with both clients (the ``flavor`` parameter). Retries and the
mapping of error answers are in ``test_admin_client_retries.py``; the real server in
``test_admin_client_server.py``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import flamel_usage
from flamel_usage.client import (
    AdminClient,
    AsyncAdminClient,
    Charge,
    ChargeResult,
    CreatedKey,
    CreditPurchase,
    InvalidResponse,
    PlanChange,
    PurchaseResult,
    UsageInfo,
    User,
)
from tests.test_client_transport import BASE, DTO, PERIOD, Script

TOKEN = "admin-token-0123456789"
CREATED = "2026-11-25T10:00:00.123456+00:00"
USER: dict[str, Any] = {
    "id": 7,
    "email": "ada@example.com",
    "plan": "Pro",
    "anchor": "2026-11-01T00:00:00+09:00",
}
CREATED_KEY: dict[str, Any] = {
    "id": 3,
    "userId": 7,
    "key": "flm_" + "k" * 43,
    "prefix": "flm_kkkkkkkk",
    "name": "render worker",
    "createdAt": CREATED,
    "expiresAt": None,
}
PURCHASE: dict[str, Any] = {
    "purchase": {
        "id": 2,
        "amount": 2.5,
        "expiresAt": "2027-01-01T00:00:00+00:00",
        "createdAt": CREATED,
    },
    "usage": DTO,
}
PLAN_CHANGE: dict[str, Any] = {"plan": "Pro", "pendingPlan": "Max", "usage": DTO}
CHARGE: dict[str, Any] = {
    "id": 11,
    "idempotencyKey": "job-42",
    "userId": 7,
    "kind": "image",
    "cost": 1.5,
    "fromPlanCredit": 1,
    "fromPurchasedCredit": 0.5,
    "postpaid": 0,
    "createdAt": CREATED,
    "refundedAt": None,
}
CHARGE_RESULT: dict[str, Any] = {"charge": CHARGE, "usage": DTO}
USAGE = UsageInfo.from_dto(DTO)
NOVEMBER = datetime(2026, 11, 1, tzinfo=timezone(timedelta(hours=9)))
CREATED_AT = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def admin_call(
    flavor: str, script: Script, call: str, *args: Any, options: Any = None, **kwargs: Any
) -> Any:
    """``client.<call>(*args, **kwargs)`` through ``AdminClient`` or ``AsyncAdminClient``."""
    settings = {"base_url": BASE, **(options or {})}
    transport = httpx.MockTransport(script)
    if flavor == "sync":
        with AdminClient(TOKEN, transport=transport, **settings) as client:
            client._sleep = script.sleep
            return getattr(client, call)(*args, **kwargs)
    async with AsyncAdminClient(TOKEN, transport=transport, **settings) as aclient:
        aclient._sleep = script.async_sleep
        return await getattr(aclient, call)(*args, **kwargs)


def sent_json(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


# --- What each call sends and how its answer is read ----------------------------------


class Case:
    """One admin call: its arguments, the request it must make, the answer and the result."""

    def __init__(
        self,
        call: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        request: tuple[str, str, Any],
        answer: httpx.Response,
        result: Any,
    ) -> None:
        self.call, self.args, self.kwargs = call, args, kwargs
        self.method, self.path, self.body = request
        self.answer, self.result = answer, result

    def __repr__(self) -> str:
        return self.call


EXPECTED_CHARGE = Charge(
    id=11,
    idempotency_key="job-42",
    user_id=7,
    kind="image",
    cost=1.5,
    from_plan_credit=1,
    from_purchased_credit=0.5,
    postpaid=0,
    created_at=CREATED_AT,
    refunded_at=None,
)
CASES = [
    Case(
        "create_user",
        ("ada@example.com", "Pro"),
        {},
        ("POST", "/api/admin/users", {"email": "ada@example.com", "plan": "Pro"}),
        httpx.Response(201, json=USER),
        User(7, "ada@example.com", "Pro", NOVEMBER, None),
    ),
    Case(
        "create_user",
        ("ada@example.com", "Pro"),
        {"external_id": "u-1", "anchor": NOVEMBER, "password": "correct horse"},
        (
            "POST",
            "/api/admin/users",
            {"email": "ada@example.com", "plan": "Pro", "externalId": "u-1"}
            | {"anchor": "2026-11-01T00:00:00+09:00", "password": "correct horse"},
        ),
        httpx.Response(201, json=USER | {"externalId": "u-1"}),
        User(7, "ada@example.com", "Pro", NOVEMBER, "u-1"),
    ),
    Case(
        "user_usage",
        (7,),
        {},
        ("GET", "/api/admin/users/7/usage", None),
        httpx.Response(200, json=DTO),
        USAGE,
    ),
    Case(
        "change_plan",
        (7, "Max"),
        {"effective": "next_period"},
        ("PUT", "/api/admin/users/7/plan", {"plan": "Max", "effective": "next_period"}),
        httpx.Response(200, json=PLAN_CHANGE),
        PlanChange("Pro", "Max", USAGE),
    ),
    Case(
        "change_plan",
        (7, "Pro"),
        {},
        ("PUT", "/api/admin/users/7/plan", {"plan": "Pro", "effective": "now"}),
        httpx.Response(200, json=PLAN_CHANGE | {"pendingPlan": None}),
        PlanChange("Pro", None, USAGE),
    ),
    Case(
        "create_key",
        (7,),
        {"name": "render worker", "expires_at": datetime(2027, 1, 1, tzinfo=UTC)},
        (
            "POST",
            "/api/admin/users/7/keys",
            {"name": "render worker", "expiresAt": "2027-01-01T00:00:00+00:00"},
        ),
        httpx.Response(201, json=CREATED_KEY),
        CreatedKey(3, 7, "flm_" + "k" * 43, "flm_kkkkkkkk", "render worker", CREATED_AT, None),
    ),
    Case(
        "create_key",
        (7,),
        {},
        ("POST", "/api/admin/users/7/keys", {}),
        httpx.Response(201, json=CREATED_KEY | {"name": None, "expiresAt": CREATED}),
        CreatedKey(3, 7, "flm_" + "k" * 43, "flm_kkkkkkkk", None, CREATED_AT, CREATED_AT),
    ),
    Case(
        "revoke_key",
        (3,),
        {},
        ("POST", "/api/admin/keys/3/revoke", None),
        httpx.Response(204),
        None,
    ),
    Case(
        "buy_credits",
        (7, 2.5),
        {"expires_at": datetime(2027, 1, 1, tzinfo=UTC)},
        (
            "POST",
            "/api/admin/users/7/credits",
            {"amount": 2.5, "expiresAt": "2027-01-01T00:00:00+00:00"},
        ),
        httpx.Response(201, json=PURCHASE),
        PurchaseResult(CreditPurchase(2, 2.5, datetime(2027, 1, 1, tzinfo=UTC), CREATED_AT), USAGE),
    ),
    Case(
        "charge",
        (7, "image"),
        {"cost": 1.5, "idempotency_key": "job-42"},
        ("POST", "/api/admin/charges", {"userId": 7, "kind": "image", "cost": 1.5}),
        httpx.Response(201, json=CHARGE_RESULT),
        ChargeResult(EXPECTED_CHARGE, USAGE, replayed=False),
    ),
    Case(
        "refund",
        ("job-42",),
        {},
        ("POST", "/api/admin/charges/job-42/refund", None),
        httpx.Response(200, json={"charge": CHARGE | {"refundedAt": CREATED}, "usage": DTO}),
        ChargeResult(dataclasses.replace(EXPECTED_CHARGE, refunded_at=CREATED_AT), USAGE),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=repr)
async def test_each_call_sends_its_request_and_reads_its_answer(flavor: str, case: Case) -> None:
    script = Script(case.answer)
    result = await admin_call(flavor, script, case.call, *case.args, **case.kwargs)
    assert result == case.result
    (request,) = script.requests
    assert (request.method, request.url.path) == (case.method, case.path)
    assert str(request.url) == BASE + case.path
    assert sent_json(request) == case.body
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"] == f"flamel-usage-python/{flamel_usage.__version__}"
    assert ("idempotency-key" in request.headers) == (case.call in ("charge", "buy_credits"))
    assert "x-api-key" not in request.headers


async def test_a_charge_sends_its_idempotency_key_and_the_default_cost(flavor: str) -> None:
    script = Script(httpx.Response(201, json=CHARGE_RESULT))
    await admin_call(flavor, script, "charge", 7, "ttp", idempotency_key="job 42/1")
    (request,) = script.requests
    assert request.headers["idempotency-key"] == "job 42/1"
    assert sent_json(request) == {"userId": 7, "kind": "ttp"}


async def test_a_charge_without_a_key_gets_a_new_uuid4(flavor: str) -> None:
    script = Script(httpx.Response(201, json=CHARGE_RESULT))
    await admin_call(flavor, script, "charge", 7, "image")
    await admin_call(flavor, script, "charge", 7, "image")
    first, second = (request.headers["idempotency-key"] for request in script.requests)
    assert first != second
    for key in (first, second):
        assert len(key) == 36
        assert key[14] == "4"  # version 4
        assert key[19] in "89ab"  # the RFC 4122 variant


async def test_a_replayed_charge_says_so(flavor: str) -> None:
    replayed = httpx.Response(201, json=CHARGE_RESULT, headers={"Idempotent-Replayed": "true"})
    result = await admin_call(flavor, Script(replayed), "charge", 7, "image")
    assert result.replayed
    assert result.charge == EXPECTED_CHARGE


async def test_a_refund_key_is_one_path_segment(flavor: str) -> None:
    script = Script(httpx.Response(200, json=CHARGE_RESULT))
    await admin_call(flavor, script, "refund", "job/42?x=1#%")
    (request,) = script.requests
    assert request.url.raw_path == b"/api/admin/charges/job%2F42%3Fx%3D1%23%25/refund"


async def test_an_external_id_number_is_sent_and_read_as_text(flavor: str) -> None:
    script = Script(httpx.Response(201, json=USER | {"externalId": 42}))
    user = await admin_call(flavor, script, "create_user", "a@b.c", "Pro", external_id=42)
    assert sent_json(script.requests[0])["externalId"] == "42"
    assert user.external_id == "42"


async def test_an_older_server_without_external_ids_reads_as_none(flavor: str) -> None:
    for answer in (USER, USER | {"externalId": None}):
        user = await admin_call(
            flavor, Script(httpx.Response(201, json=answer)), "create_user", "a@b.c", "Pro"
        )
        assert user.external_id is None


def test_a_created_key_and_the_clients_never_show_their_secrets() -> None:
    key = CreatedKey.from_json(CREATED_KEY)
    assert CREATED_KEY["key"] not in repr(key)
    assert key.key == CREATED_KEY["key"]
    with AdminClient(TOKEN, base_url=BASE) as client:
        assert TOKEN not in repr(client)
        assert repr(client) == f"<AdminClient base_url='{BASE}' retries=2>"


def test_results_are_frozen() -> None:
    result = ChargeResult.from_json(CHARGE_RESULT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.replayed = True  # type: ignore[misc]
    assert not hasattr(result.charge, "__dict__")  # slots
    assert hash(User.from_json(USER)) == hash(User.from_json(dict(USER)))


# --- Answers that are not the contract's ------------------------------------------------

MALFORMED: list[tuple[str, str, tuple[Any, ...], int, object]] = [
    ("user without email", "create_user", ("a@b.c", "Pro"), 201, USER | {"email": None}),
    ("user id a string", "create_user", ("a@b.c", "Pro"), 201, USER | {"id": "7"}),
    ("user id zero", "create_user", ("a@b.c", "Pro"), 201, USER | {"id": 0}),
    ("naive anchor", "create_user", ("a@b.c", "Pro"), 201, USER | {"anchor": "2026-11-01T00:00"}),
    ("external id a list", "create_user", ("a@b.c", "Pro"), 201, USER | {"externalId": [1]}),
    (
        "key missing secret",
        "create_key",
        (7,),
        201,
        {k: v for k, v in CREATED_KEY.items() if k != "key"},
    ),
    (
        "purchase amount text",
        "buy_credits",
        (7, 1),
        201,
        PURCHASE | {"purchase": {"id": 2, "amount": "1"}},
    ),
    ("plan change bad usage", "change_plan", (7, "Pro"), 200, PLAN_CHANGE | {"usage": {}}),
    (
        "charge cost a bool",
        "charge",
        (7, "image"),
        201,
        {"charge": CHARGE | {"cost": True}, "usage": DTO},
    ),
    ("charge not an object", "charge", (7, "image"), 201, [CHARGE_RESULT]),
    ("refund without usage", "refund", ("k",), 200, {"charge": CHARGE}),
]


@pytest.mark.parametrize(
    ("case", "call", "args", "status", "body"), MALFORMED, ids=[case for case, *_ in MALFORMED]
)
async def test_a_malformed_answer_is_invalid_response_and_never_retried(
    flavor: str, case: str, call: str, args: tuple[Any, ...], status: int, body: object
) -> None:
    script = Script(httpx.Response(status, json=body))
    with pytest.raises(InvalidResponse) as caught:
        await admin_call(flavor, script, call, *args)
    error = caught.value
    assert error.status == status
    assert error.response is not None
    assert error.body == error.response.text[:500]
    assert BASE in str(error), case
    assert script.attempts == 1
    assert (error.idempotency_key is not None) == (call in ("charge", "refund", "buy_credits"))


async def test_a_success_status_other_than_the_calls_is_invalid_response(flavor: str) -> None:
    script = Script(httpx.Response(200, json=USER))  # creating answers 201
    with pytest.raises(InvalidResponse) as caught:
        await admin_call(flavor, script, "create_user", "a@b.c", "Pro")
    assert caught.value.status == 200


# --- Arguments refused before anything is sent ------------------------------------------

NAIVE = datetime(2027, 1, 1)
REFUSED: list[tuple[str, tuple[Any, ...], dict[str, Any], type[Exception]]] = [
    ("create_user", ("", "Pro"), {}, ValueError),
    ("create_user", ("a@b.c", None), {}, TypeError),
    ("create_user", ("a@b.c", "Pro"), {"external_id": True}, TypeError),
    ("create_user", ("a@b.c", "Pro"), {"external_id": " "}, ValueError),
    ("create_user", ("a@b.c", "Pro"), {"anchor": NAIVE}, ValueError),
    ("create_user", ("a@b.c", "Pro"), {"anchor": "2027-01-01"}, TypeError),
    ("user_usage", (0,), {}, ValueError),
    ("user_usage", (True,), {}, TypeError),
    ("user_usage", ("7",), {}, TypeError),
    ("change_plan", (7, "Pro"), {"effective": "later"}, ValueError),
    ("create_key", (-1,), {}, ValueError),
    ("create_key", (7,), {"expires_at": NAIVE}, ValueError),
    ("create_key", (7,), {"name": 5}, TypeError),
    ("revoke_key", (7.0,), {}, TypeError),
    ("buy_credits", (7, 0), {}, ValueError),
    ("buy_credits", (7, float("nan")), {}, ValueError),
    ("buy_credits", (7, float("inf")), {}, ValueError),
    ("buy_credits", (7, "5"), {}, TypeError),
    ("charge", (7, ""), {}, ValueError),
    ("charge", (7, "image"), {"cost": -1}, ValueError),
    ("charge", (7, "image"), {"cost": True}, TypeError),
    ("charge", (7, "image"), {"idempotency_key": ""}, ValueError),
    ("charge", (7, "image"), {"idempotency_key": " padded"}, ValueError),
    ("charge", (7, "image"), {"idempotency_key": "k" * 256}, ValueError),
    ("charge", (7, "image"), {"idempotency_key": "caf\u00e9"}, ValueError),
    ("charge", (7, "image"), {"idempotency_key": "a\r\nX-Admin: 1"}, ValueError),
    ("charge", (7, "image"), {"idempotency_key": 42}, TypeError),
    ("refund", ("",), {}, ValueError),
]


@pytest.mark.parametrize(
    ("call", "args", "kwargs", "error"), REFUSED, ids=[f"{c}-{a}-{k}" for c, a, k, _ in REFUSED]
)
async def test_bad_arguments_are_refused_before_sending(
    flavor: str, call: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    script = Script(httpx.Response(500))
    with pytest.raises(error):
        await admin_call(flavor, script, call, *args, **kwargs)
    assert script.attempts == 0


@pytest.mark.parametrize(
    ("token", "error"),
    [("", ValueError), ("with space", ValueError), ("t\u00f6ken", ValueError), (None, TypeError)],
)
@pytest.mark.parametrize("make", [AdminClient, AsyncAdminClient])
def test_a_bad_token_is_refused_at_construction(
    make: Callable[..., object], token: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        make(token)


def test_the_longest_idempotency_key_is_taken() -> None:
    script = Script(httpx.Response(201, json=CHARGE_RESULT))
    with AdminClient(TOKEN, base_url=BASE, transport=httpx.MockTransport(script)) as client:
        client.charge(7, "image", idempotency_key="k" * 255)
        client.charge(7, "image", idempotency_key="a b")
    assert [r.headers["idempotency-key"] for r in script.requests] == ["k" * 255, "a b"]


def test_a_period_in_the_answer_is_checked_like_the_usage_read() -> None:
    with pytest.raises(InvalidResponse):
        PlanChange.from_json(PLAN_CHANGE | {"usage": DTO | {"period": PERIOD.split("/")[0]}})

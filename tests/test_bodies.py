"""The body declarations of ``http/bodies``: what a refused body is told, what answers
look like byte for byte, and that the declarations are the ones the server uses.

``test_bad_input.py`` holds every operation to the envelope and to changing nothing;
this module pins the words of the messages that msgspec's errors are turned into, so a
client reads the same sentence whichever check refused it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import httpx
import msgspec
import orjson
import pytest

from flamel_usage.auth.credentials import KEY_NAME_PATTERN, key_name
from flamel_usage.core.errors import REASONS, Refusal
from flamel_usage.http.bodies import inbound, outbound
from flamel_usage.http.bodies.fields import decode_value
from flamel_usage.http.openapi.document import openapi_document
from flamel_usage.http.openapi.operations import OPERATIONS
from flamel_usage.http.render import error_body
from tests.factories import Factory

PLAN = {"name": "pro", "periodUnit": "month", "maxCredit": 10}


async def _refusal(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["data"] == "bad_request"
    message: str = body["message"]
    return message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "name must not be empty"),
        ({"name": "x" * 65}, "name is longer than 64 characters"),
        ({"name": 5}, "name must be a string"),
        ({"periodUnit": "week"}, "periodUnit must be one of 'month', 'year'"),
        ({"maxCredit": "10"}, "maxCredit must be a number"),
        ({"maxCredit": -1}, "maxCredit must be zero or more"),
        ({"maxCredit": 0.0001}, "maxCredit has more than 3 decimal places"),
        ({"maxCredit": 10**13}, "maxCredit is too large"),
        ({"maxCredit": None}, "maxCredit must be a number"),
        ({"maxTtpCount": -1}, "maxTtpCount must be at least 0"),
        ({"maxTtpCount": 2**63}, "maxTtpCount must be at most 9223372036854775807"),
        ({"maxTtpCount": 1.5}, "maxTtpCount must be a whole number or null"),
        ({"billingMode": "free"}, "billingMode must be one of 'postpaid', 'prepaid'"),
        ({"billingMode": 1}, "billingMode must be a string or null"),
        ({"extra": 1}, "unknown field 'extra'"),
    ],
)
async def test_a_refused_plan_field_is_named_in_words(
    admin: httpx.AsyncClient, change: dict[str, Any], message: str
) -> None:
    response = await admin.post("/api/admin/plans", json={**PLAN, **change})
    assert await _refusal(response) == message


async def test_missing_fields_and_bodies_that_are_not_objects(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/api/admin/plans", json={"name": "pro", "maxCredit": 1})
    assert await _refusal(response) == "periodUnit is required"
    response = await admin.post("/api/admin/plans", content=b"[1]")
    assert await _refusal(response) == "the body must be a JSON object"
    # Out of range for msgspec and not JSON for orjson: the body's JSON is judged first.
    response = await admin.post("/api/admin/plans", content=b'{"maxCredit": 1e400, "x": 1}')
    assert await _refusal(response) == "the body is not valid JSON"


async def test_the_checks_of_other_bodies_in_words(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    charge = {"Idempotency-Key": "k-1"}
    cases = [
        ("/api/admin/charges", {"userId": 0, "kind": "ttp"}, "userId must be at least 1"),
        (
            "/api/admin/charges",
            {"userId": 1, "kind": "a\x00"},
            "kind must not contain NUL characters",
        ),
        ("/api/admin/charges", {"userId": 1, "kind": "ttp", "cost": None}, "cost must be a number"),
        ("/api/admin/charges", {"userId": 1, "kind": "ttp", "cost": 0}, "cost must be positive"),
        (
            f"/api/admin/users/{user.id}/keys",
            {"expiresAt": 5},
            "expiresAt must be a string (an ISO 8601 date-time)",
        ),
        (
            f"/api/admin/users/{user.id}/keys",
            {"expiresAt": "2027-01-01T00:00:00"},
            "expiresAt needs a UTC offset, e.g. 2026-11-25T10:00:00+00:00",
        ),
        (
            f"/api/admin/users/{user.id}/credits",
            {"amount": 1, "expiresAt": "x" * 65},
            "expiresAt is longer than 64 characters",
        ),
        (
            "/api/admin/users",
            {"email": "a@b.c", "plan": "p", "password": "short"},
            "password is shorter than 8 characters",
        ),
    ]
    for path, body, message in cases:
        response = await admin.post(path, json=body, headers=charge)
        assert await _refusal(response) == message, (path, body)
    response = await admin.patch("/api/admin/keys/1", json={})
    assert (
        await _refusal(response)
        == "expiresAt or name is required (null removes the expiry, the name)"
    )


def test_a_valid_body_is_decoded_into_domain_values() -> None:
    decoder = msgspec.json.Decoder(inbound.BuyCreditsRequest, dec_hook=decode_value)
    body = decoder.decode(b'{"amount": 12.5, "expiresAt": "2027-01-01T00:00:00Z"}')
    assert body.amount == 12_500  # millicredits, exactly
    assert body.expires_at == 1_798_761_600_000_000  # microseconds since the epoch
    patch = msgspec.json.Decoder(inbound.UpdateKeyRequest, dec_hook=decode_value)
    assert patch.decode(b'{"name": null}').expires_at is msgspec.UNSET


# --- answers, byte for byte --------------------------------------------------------------


async def test_answers_keep_their_field_order_and_nulls(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    response = await admin.post(
        "/api/admin/plans", json={**PLAN, "maxCredit": 10.5, "maxEditCount": 3}
    )
    assert response.status_code == 201, response.text
    plan_id = response.json()["id"]
    assert response.content == (
        b'{"id":%d,"name":"pro","periodUnit":"month","maxCredit":10.5,"maxTtpCount":null,'
        b'"maxEditCount":3,"billingMode":"prepaid"}' % plan_id
    )
    user = await factory.user()
    key = await admin.post(f"/api/admin/users/{user.id}/keys", json={})
    assert list(key.json()) == [
        *("id", "userId", "key", "prefix", "name", "createdAt", "expiresAt"),
    ]
    assert key.json()["name"] is None
    assert key.json()["expiresAt"] is None


async def test_charge_and_refund_answers_are_what_the_declaration_says(
    admin: httpx.AsyncClient, factory: Factory
) -> None:
    """The charge's answer is written by the ledger (its bytes are what a replay repeats):
    the declaration the document shows must read it back exactly."""
    user = await factory.user()
    charged = await admin.post(
        "/api/admin/charges",
        json={"userId": user.id, "kind": "ttp"},
        headers={"Idempotency-Key": "decl-1"},
    )
    refunded = await admin.post("/api/admin/charges/decl-1/refund")
    for response in (charged, refunded):
        assert response.status_code in (200, 201), response.text
        result = msgspec.json.decode(response.content, type=outbound.ChargeResult)
        # Equal as JSON, in the same order (a credit read as a float writes as 1.0).
        again = orjson.loads(msgspec.json.encode(result))
        assert again == response.json()
        assert list(again["charge"]) == list(response.json()["charge"])


def test_the_error_envelope_is_what_the_declaration_says() -> None:
    for body in (error_body("bad_request"), error_body("key_not_found", "no key")):
        envelope = msgspec.json.decode(body, type=outbound.ErrorEnvelope)
        assert msgspec.json.encode(envelope) == body


# --- one declaration, used ---------------------------------------------------------------


def _subclasses(base: type) -> set[type]:
    found = set(base.__subclasses__())
    return found | {sub for cls in found for sub in _subclasses(cls)}


def test_every_declared_body_is_an_operations_and_in_the_document() -> None:
    schemas = openapi_document()["components"]["schemas"]
    sent = {operation.body for operation in OPERATIONS}
    assert _subclasses(inbound.RequestBody) == sent - {None}
    answered = {operation.answer.body for operation in OPERATIONS}
    # Answers contain others (a plan list its plans); health is for probes, not clients.
    for body in _subclasses(outbound.ResponseBody) - {outbound.HealthStatus}:
        assert body.__name__ in schemas, body
    assert answered - {None, "UsageInfoDto"} <= _subclasses(outbound.ResponseBody)


def test_error_descriptions_are_the_reason_table() -> None:
    paths = openapi_document()["paths"]
    for operation in OPERATIONS:
        for status, response in paths[operation.path][operation.method.lower()][
            "responses"
        ].items():
            examples = response.get("content", {}).get("application/json", {})
            for name, example in examples.get("examples", {}).items():
                assert example["summary"] == REASONS[name].description
                assert int(status) == REASONS[name].status


NAMES = [
    "laptop",
    "  CI pipeline  ",
    "x" * 64,
    "x" * 65,
    "",
    "   ",
    "a b",
    "lap\u200btop",
    "lap\u202etop",
    "\u2066laptop\u2069",
    "lap\ntop",
    "\x85laptop",
    "노트북",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_documented_key_name_pattern_is_the_servers_rule(name: str) -> None:
    documented = re.fullmatch(KEY_NAME_PATTERN, name) is not None
    try:
        key_name(name)
    except Refusal:
        accepted = False
    else:
        accepted = True
    assert documented == accepted


def test_the_key_name_pattern_refuses_every_invisible_bmp_character() -> None:
    hidden = [
        chr(code) for code in range(0x10000) if unicodedata.category(chr(code)) in ("Cc", "Cf")
    ]
    assert [char for char in hidden if re.fullmatch(KEY_NAME_PATTERN, f"a{char}b")] == []


def test_the_usage_inside_answers_is_the_seeds_schema() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for name in ("BuyCreditsResponse", "ChangePlanResponse", "ChargeResult"):
        assert schemas[name]["properties"]["usage"] == {"$ref": "#/components/schemas/UsageInfoDto"}


def test_orjson_and_the_declarations_write_the_same_bytes() -> None:
    """The usage read's DTO goes out through orjson, every declared body through msgspec:
    an answer that holds a usage must read as if one encoder wrote it all."""
    usage = {"currentCredit": 1.5, "period": "a/b", "maxTtpCount": None}
    body = outbound.ChangePlanResponse("pro", None, msgspec.Raw(orjson.dumps(usage)))
    assert msgspec.json.encode(body) == orjson.dumps(
        {"plan": "pro", "pendingPlan": None, "usage": usage}
    )

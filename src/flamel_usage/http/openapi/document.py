"""The OpenAPI document served at ``GET /api-json`` and the Swagger UI page at ``GET /api``.

The seed contract (``openapi-seed.yaml``, a byte-for-byte copy of the Flamel API's own
document for ``GET /api/users/me/usage``) is the base: clients were generated from it,
so everything it says is served unchanged. This module only *adds* to it: the
``connect.sid`` security scheme that the seed references but never defines, the admin
bearer scheme, the error envelope, and our own auth and admin operations. Adding a key
that the seed already has is an error at build time, so the seed can never be
overwritten by accident.

The human docs work without internet access: the page, its stylesheet, Swagger UI's
script and the small init script all come from this server (``/api/static/...``), read
from the installed ``swagger_ui_bundle`` package. The page has no inline script, so a
strict Content-Security-Policy (``script-src 'self'``) can be put in front of it.

To document a new operation, add a schema to ``_schemas()`` if it needs one, its error
reasons to ``core.errors.REASONS``, and one ``_admin(...)`` or ``_auth(...)`` call to
``_operations()``; path parameters are filled in from ``_PATH_PARAMETERS``, and other
parameters (headers) are passed as ``parameters=``.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from importlib import resources
from typing import Any

import orjson
import yaml
from swagger_ui_bundle import swagger_ui_path

from flamel_usage.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from flamel_usage.core.errors import REASONS
from flamel_usage.core.inputs import MAX_INT
from flamel_usage.core.money import MAX_MILLI, MILLI
from flamel_usage.ledger.history import GRANULARITIES, MAX_RANGE_DAYS
from flamel_usage.metering.charges import IDEMPOTENCY_KEY_PATTERN

JSON = "application/json"
_SEED_RESOURCE = "openapi-seed.yaml"

#: Where the page loads its assets from; the app routes ``/api/static/{name}`` to ``docs_asset``.
STATIC_PREFIX = "/api/static/"
#: The URL the init script points Swagger UI at.
DOCUMENT_URL = "/api-json"

_ERROR_ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"
_INSTANT_EXAMPLE = "2026-11-25T10:00:00+00:00"
#: An expiry a client would send: in the future (a purchase or a new key that expired
#: already is refused).
_EXPIRY_EXAMPLE = "2099-12-31T23:59:59+00:00"

#: An idempotency key, as the server checks it.
_IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": f"^{IDEMPOTENCY_KEY_PATTERN}$",
    "example": "job-8d1f2c/ttp",
}


# --- small schema helpers ---------------------------------------------------------------


def _ref(schema_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{schema_name}"}


#: What every string field of a request body refuses: a NUL character.
_NO_NUL = "^[^\\x00]*$"

#: An instant the server accepts (``datetime.fromisoformat`` plus a range check): RFC 3339
#: with an upper-case ``T`` and ``Z``, seconds 00-59 (no leap second), an offset, and a
#: year from 1970 to 9000.
_INSTANT_PATTERN = (
    "^(?:19[7-9][0-9]|[2-8][0-9]{3}|9000)-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
    "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)


#: Python's whitespace (``str.strip``, ``\\s``) beyond ASCII, spelt out: ECMA-262's ``\\s``,
#: which OpenAPI tools use, is another set (it lacks U+0085, say).
_UNICODE_SPACE = "\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_SPACE = "[\\t-\\r\\x1c-\\x20" + _UNICODE_SPACE + "]"
#: The format characters of the BMP (zero-width, bidirectional controls, byte order mark)
#: and the C1 controls, which the server refuses (``inputs.refuse_invisible``). Those
#: beyond the BMP (tag characters, say) are refused too, but cannot be written in an
#: ECMA-262 class without the u flag, where each is two UTF-16 units: the schema says so
#: in words.
_INVISIBLE = (
    "\\x80-\\x9f\\xad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u180e"
    "\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb"
)
#: A character of an address: not "@", whitespace, a control or an invisible character.
_ADDRESS_CHAR = "[^@\\x00-\\x20\\x7f" + _UNICODE_SPACE + _INVISIBLE + "]"
#: What the server takes as an email (``accounts.normalise_email``): trimmed, at most 64
#: characters before the one "@" and 189 after it.
_EMAIL_PATTERN = f"^{_SPACE}*{_ADDRESS_CHAR}{{1,64}}@{_ADDRESS_CHAR}{{1,189}}{_SPACE}*$"


#: A key name the server takes (``auth.key_name``): at most 64 characters between
#: optional surrounding spaces, the first and last of them not a space, none of them a
#: control or invisible character.
_NAME_CHAR = "[^\\x00-\\x1f\\x7f" + _INVISIBLE + "]"
_NAME_EDGE = "[^\\x00-\\x20\\x7f" + _UNICODE_SPACE + _INVISIBLE + "]"
_KEY_NAME_PATTERN = (
    f"^{_SPACE}*(?:{_NAME_EDGE}|{_NAME_EDGE}{_NAME_CHAR}{{0,62}}{_NAME_EDGE}){_SPACE}*$"
)
#: An external id the server takes (``accounts.external_id_value``): kept exactly, so
#: 1-255 characters with no space at either end, none of them a control or invisible one.
_EXTERNAL_ID_PATTERN = f"^(?:{_NAME_EDGE}|{_NAME_EDGE}{_NAME_CHAR}{{0,253}}{_NAME_EDGE})$"


def _text(max_length: int, **constraints: Any) -> dict[str, Any]:
    """A string request field: at most ``max_length`` characters, no NUL character."""
    return {"type": "string", "maxLength": max_length, "pattern": _NO_NUL, **constraints}


def _instant(
    description: str,
    *,
    nullable: bool = False,
    request: bool = False,
    example: str = _INSTANT_EXAMPLE,
) -> dict[str, Any]:
    """An ISO 8601 instant with offset; the server refuses naive (offset-less) times.

    In a request it is also held to what the server parses: ``_INSTANT_PATTERN``.
    """
    schema: dict[str, Any] = {
        "type": "string",
        "format": "date-time",
        "description": description,
        "example": example,
    }
    if request:
        schema["description"] += " RFC 3339 with an offset (or Z), year 1970 to 9000."
        schema["maxLength"] = 64
        schema["pattern"] = _INSTANT_PATTERN
    if nullable:
        schema["nullable"] = True
    return schema


def _credits(description: str, *, request: bool = False, **constraints: Any) -> dict[str, Any]:
    """A credit amount: a JSON number (never a string) with at most 3 decimals.

    In responses the 3-decimal rule is only stated: binary floats make some validators
    reject valid amounts such as 0.3 under ``multipleOf: 0.001``. A request schema
    carries the keyword (and the largest amount the server takes), so that generators
    and validators of requests know that 0.0001 is refused.
    """
    schema = {
        "type": "number",
        "description": f"{description} (credits, at most 3 decimals)",
        **constraints,
    }
    if request:
        schema["maximum"] = MAX_MILLI // MILLI
        schema["multipleOf"] = 1 / MILLI
    return schema


def _limit(description: str) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_INT,
        "nullable": True,
        "description": description,
    }


def _obj(
    properties: dict[str, Any], *, required: Iterable[str] | None = None, request: bool = False
) -> dict[str, Any]:
    """An object schema; ``required`` defaults to every property.

    Request bodies get ``additionalProperties: false`` because the server refuses unknown
    fields (a typo must not silently fall back to a default). Responses stay open so
    fields can be added later without breaking strict clients' validators.
    """
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }
    if not schema["required"]:
        del schema["required"]  # OpenAPI 3.0 forbids an empty ``required`` list
    if request:
        schema["additionalProperties"] = False
    return schema


# --- components ---------------------------------------------------------------------------

_SECURITY_SCHEMES: dict[str, Any] = {
    # Referenced by the seed operation but missing from the seed's components.
    "connect.sid": {
        "type": "apiKey",
        "in": "cookie",
        "name": "connect.sid",
        "description": "Session cookie in express-session's format: set by POST"
        " /api/auth/login, or by the platform's Express app when the server reads its"
        " session store (FLAMEL_SESSION_STORE). Named connect.sid unless the server sets"
        " FLAMEL_SESSION_COOKIE_NAME.",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's admin token from the server configuration.",
    },
}


def _schemas() -> dict[str, Any]:
    """Our schemas, merged next to the seed's ``UsageInfoDto``."""
    plan_name = {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": "^[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?$",
        "description": "Plan name, unique ignoring case: letters, digits, space, '.', '_' or"
        " '-', starting with a letter or digit and not ending with a space.",
        "example": "Pro Monthly",
    }
    period_unit = {"type": "string", "enum": ["month", "year"]}
    billing_mode = {
        "type": "string",
        "enum": ["prepaid", "postpaid"],
        "description": "prepaid refuses charges beyond the credit; postpaid accrues them.",
    }
    email = {"type": "string", "example": "user@example.com"}
    new_email = {
        **_text(254),
        "pattern": _EMAIL_PATTERN,
        "description": "Stored trimmed, lower-cased and in Unicode NFC; must be unique"
        " (so compared that way). No control or invisible (format) character, such as a"
        " zero-width space or a bidirectional control.",
        "example": "user@example.com",
    }
    password = {"format": "password"}
    plan_ref = _text(64, description="Name of an existing plan.")
    key_id = {"type": "integer", "description": "Key id (not the secret)."}
    key_prefix = {"type": "string", "description": "Recognisable start of the key."}
    new_key_name = {
        **_text(256),
        "pattern": _KEY_NAME_PATTERN,
        "nullable": True,
        "description": "What the key is for, shown with it: 1-64 characters once trimmed,"
        " no control or invisible (format) character, such as a zero-width space or a"
        " bidirectional control; null or absent = no name.",
        "example": "CI pipeline",
    }
    key_name = {"type": "string", "nullable": True, "description": "The key's name; null = none."}
    external_id = {
        **_text(255),
        "pattern": _EXTERNAL_ID_PATTERN,
        "nullable": True,
        "description": "The platform's id of this user, which its sessions carry"
        " (passport.user unless configured; a number there is its decimal digits here):"
        " unique among live users, kept exactly, 1-255 characters with no space at either"
        " end and no control or invisible (format) character; null or absent = none.",
        "example": "64f1c2a9e8",
    }
    key_state = {
        "type": "string",
        "enum": ["active", "expired", "revoked"],
        "description": "revoked: never works again; expired: past expiresAt; else active.",
    }
    return {
        "ErrorEnvelope": {
            "type": "object",
            "description": "The body of every error response.",
            "properties": {
                "success": {"type": "boolean", "enum": [False]},
                "code": {"type": "integer", "description": "The HTTP status, repeated."},
                "data": {
                    "type": "string",
                    "pattern": "^[a-z][a-z0-9_]*$",
                    "description": "snake_case reason a client can branch on.",
                    "example": "bad_request",
                },
                "message": {"type": "string", "description": "Optional human-readable detail."},
            },
            "required": ["success", "code", "data"],
        },
        "LoginRequest": _obj(
            {
                "email": {**_text(254), "example": "user@example.com"},
                "password": {**_text(1024), **password},
            },
            request=True,
        ),
        "LoginResponse": _obj({"expiresAt": _instant("When the session expires.")}),
        "CreatePlanRequest": _obj(
            {
                "name": plan_name,
                "periodUnit": period_unit,
                "maxCredit": _credits("Plan credit per period", request=True, minimum=0),
                "maxTtpCount": _limit("TTP charges per period; null or absent = unlimited."),
                "maxEditCount": _limit("Edit charges per period; null or absent = unlimited."),
                "billingMode": {
                    **billing_mode,
                    "enum": [*billing_mode["enum"], None],
                    "nullable": True,
                    "default": "prepaid",
                    "description": f"{billing_mode['description']} null or absent = prepaid.",
                },
            },
            required=["name", "periodUnit", "maxCredit"],
            request=True,
        ),
        "Plan": _obj(
            {
                "id": {"type": "integer"},
                "name": {
                    "type": "string",
                    "description": "As created. Plans made before names were unique ignoring"
                    " case may have a name outside today's rules (a later namesake got"
                    " ' #<id>' appended).",
                    "example": "Pro Monthly",
                },
                "periodUnit": period_unit,
                "maxCredit": _credits("Plan credit per period"),
                "maxTtpCount": _limit("TTP charges per period; null = unlimited."),
                "maxEditCount": _limit("Edit charges per period; null = unlimited."),
                "billingMode": billing_mode,
            }
        ),
        "PlanList": _obj({"plans": {"type": "array", "items": _ref("Plan")}}),
        "CreateUserRequest": _obj(
            {
                "email": new_email,
                "plan": plan_ref,
                "anchor": _instant(
                    "Subscription start that periods are anchored at; null or absent = now.",
                    nullable=True,
                    request=True,
                ),
                "password": {
                    **_text(MAX_PASSWORD_LENGTH),
                    **password,
                    "minLength": MIN_PASSWORD_LENGTH,
                    "nullable": True,
                    "description": "Lets the user log in; without it (null or absent) the user"
                    " has only API keys.",
                },
                "externalId": external_id,
            },
            required=["email", "plan"],
            request=True,
        ),
        "User": _obj(
            {
                "id": {"type": "integer"},
                "email": email,
                "plan": {"type": "string", "description": "Plan name."},
                "anchor": _instant("Subscription anchor."),
                "externalId": {
                    "type": "string",
                    "nullable": True,
                    "description": "The platform's id of this user; null = none.",
                },
            }
        ),
        "UpdateUserRequest": _obj(
            {"externalId": {**external_id, "description": "New externalId; null = none."}},
            request=True,
        ),
        "CreateKeyRequest": _obj(
            {
                "name": new_key_name,
                "expiresAt": _instant(
                    "Expiry, in the future; null or absent = never.",
                    nullable=True,
                    request=True,
                    example=_EXPIRY_EXAMPLE,
                ),
            },
            required=[],
            request=True,
        ),
        "CreatedKey": _obj(
            {
                "id": key_id,
                "userId": {"type": "integer"},
                "key": {
                    "type": "string",
                    "description": "The secret for X-Api-Key. Shown only in this response.",
                },
                "prefix": key_prefix,
                "name": key_name,
                "createdAt": _instant("Creation time."),
                "expiresAt": _instant("Expiry; null = never.", nullable=True),
            }
        ),
        "KeyInfo": _obj(
            {
                "id": key_id,
                "prefix": key_prefix,
                "name": key_name,
                "state": key_state,
                "createdAt": _instant("Creation time."),
                "expiresAt": _instant("Expiry; null = never.", nullable=True),
                "revokedAt": _instant("Revocation time; null = live.", nullable=True),
                "lastUsedAt": _instant(
                    "Last authenticated use (recorded within a minute); null = never.",
                    nullable=True,
                ),
            }
        ),
        "KeyList": _obj({"keys": {"type": "array", "items": _ref("KeyInfo")}}),
        "UpdateKeyRequest": {
            **_obj(
                {
                    "expiresAt": _instant(
                        "New expiry; null = never; absent = unchanged.",
                        nullable=True,
                        request=True,
                        example=_EXPIRY_EXAMPLE,
                    ),
                    "name": {
                        **new_key_name,
                        "description": "New name; null = none;"
                        " absent = unchanged. " + new_key_name["description"],
                    },
                },
                required=[],
                request=True,
            ),
            "minProperties": 1,
        },
        "BuyCreditsRequest": _obj(
            {
                "amount": _credits("Credit bought", request=True, minimum=0, exclusiveMinimum=True),
                "expiresAt": _instant(
                    "Expiry of this purchase, in the future; null = never.",
                    nullable=True,
                    request=True,
                    example=_EXPIRY_EXAMPLE,
                ),
            },
            required=["amount"],
            request=True,
        ),
        "CreditPurchase": _obj(
            {
                "id": {"type": "integer"},
                "amount": _credits("Credit bought"),
                "expiresAt": _instant("Expiry of this purchase; null = never.", nullable=True),
                "createdAt": _instant("Purchase time."),
            }
        ),
        "BuyCreditsResponse": _obj(
            {"purchase": _ref("CreditPurchase"), "usage": _ref("UsageInfoDto")}
        ),
        "ChangePlanRequest": _obj(
            {
                "plan": _text(64, description="Name of the plan to move to."),
                "effective": {
                    "type": "string",
                    "enum": ["now", "next_period", None],
                    "nullable": True,
                    "default": "now",
                    "description": "now (or null, or absent): new allowance from now, counts"
                    " kept; next_period: from the next period start.",
                },
            },
            required=["plan"],
            request=True,
        ),
        "ChangePlanResponse": _obj(
            {
                "plan": {"type": "string", "description": "The plan in force now."},
                "pendingPlan": {
                    "type": "string",
                    "nullable": True,
                    "description": "The plan that takes over at the next period start.",
                },
                "usage": _ref("UsageInfoDto"),
            }
        ),
        "CreateChargeRequest": _obj(
            {
                "userId": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_INT,
                    "description": "The user to charge.",
                },
                "kind": _text(
                    32,
                    description="An operation kind from the server configuration"
                    " (FLAMEL_OPERATION_COSTS; ttp, edit and image by default).",
                    example="ttp",
                ),
                "cost": _credits(
                    "What this operation costs; default: the kind's configured cost",
                    request=True,
                    minimum=0,
                    exclusiveMinimum=True,
                ),
            },
            required=["userId", "kind"],
            request=True,
        ),
        "Charge": _obj(
            {
                "id": {"type": "integer"},
                "idempotencyKey": {
                    **_IDEMPOTENCY_KEY_SCHEMA,
                    "description": "The Idempotency-Key the charge was made with.",
                },
                "userId": {"type": "integer"},
                "kind": {"type": "string", "example": "ttp"},
                "cost": _credits("What the operation cost"),
                "fromPlanCredit": _credits("Part taken from the period's plan credit"),
                "fromPurchasedCredit": _credits(
                    "Part taken from purchased credit, soonest-expiring first"
                ),
                "postpaid": _credits("Part accrued as postpaid usage (0 on prepaid plans)"),
                "createdAt": _instant("When the charge was made."),
                "refundedAt": _instant("When it was refunded; null = not refunded.", nullable=True),
            }
        ),
        "ChargeResult": _obj({"charge": _ref("Charge"), "usage": _ref("UsageInfoDto")}),
        "UsageHistory": _obj(
            {
                "timezone": {
                    "type": "string",
                    "description": "The billing zone (IANA name) the buckets are days or hours of.",
                    "example": "Asia/Seoul",
                },
                "granularity": {"type": "string", "enum": list(GRANULARITIES)},
                "from": _instant("Start of the range, with the billing zone's offset."),
                "to": _instant("End of the range (excluded), with the billing zone's offset."),
                "buckets": {
                    "type": "array",
                    "items": _ref("UsageHistoryBucket"),
                    "description": "One per calendar day or hour of the billing zone, in"
                    " order, tiling [from, to): the first and last may be partial, a day"
                    " across a DST change has 23 or 25 hours. Empty ones are there, at zero.",
                },
            }
        ),
        "UsageHistoryBucket": _obj(
            {
                "start": _instant("Start of the bucket, with the billing zone's offset."),
                "end": _instant("End of the bucket (excluded)."),
                "credit": _obj(
                    {
                        "plan": _credits("Plan credit spent", minimum=0),
                        "purchased": _credits("Purchased credit spent", minimum=0),
                        "postpaid": _credits("Accrued as postpaid usage", minimum=0),
                    }
                ),
                "operations": {
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 0},
                    "description": "Charges per operation kind: every configured kind,"
                    " zero included.",
                    "example": {"ttp": 3, "edit": 1, "image": 0},
                },
            }
        ),
        "ReconcileReport": _obj(
            {
                "ok": {"type": "boolean", "description": "True when balances match the ledger."},
                "problems": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "One line per account whose stored balance disagrees.",
                },
            }
        ),
    }


# --- operations ---------------------------------------------------------------------------

#: Errors any request can meet: its head (``http/protocol.py``), the database (``http/app.py``).
_ANY_REQUEST_ERRORS = ("request_header_fields_too_large", "service_unavailable")
_BODY_ERRORS = ("payload_too_large", "unsupported_media_type")

#: An id in a path: the server reads up to 18 digits (0 is no one's id: 404).
_ID_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}

_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "userId": {
        "name": "userId",
        "in": "path",
        "required": True,
        "description": "User id.",
        "schema": _ID_SCHEMA,
    },
    "keyId": {
        "name": "keyId",
        "in": "path",
        "required": True,
        "description": "API key id.",
        "schema": _ID_SCHEMA,
    },
    "idempotencyKey": {
        "name": "idempotencyKey",
        "in": "path",
        "required": True,
        "description": "The Idempotency-Key the charge was made with, URL-encoded"
        " (a '/' in it becomes %2F).",
        "schema": _IDEMPOTENCY_KEY_SCHEMA,
    },
}

_IDEMPOTENCY_KEY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "Names this charge: a retry with the same key and body is applied once"
    " and answered with the first answer. Also the key to refund it by.",
    "schema": _IDEMPOTENCY_KEY_SCHEMA,
}

_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "Present, as true, only when this is the first answer for the"
        " Idempotency-Key given again: nothing was charged this time.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

_SET_SESSION_COOKIE = {
    "Set-Cookie": {
        "description": "The session cookie, and flamel_device, which lets this browser"
        " sign in to the account while others' failed sign-ins throttle it (both HttpOnly,"
        " signed).",
        "schema": {"type": "string"},
        "example": "connect.sid=s%3A<session id>.<signature>; Path=/; HttpOnly; SameSite=Lax",
    }
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}

_CLEAR_SESSION_COOKIE = {
    "Set-Cookie": {
        "description": "Clears the session cookie.",
        "schema": {"type": "string"},
        "example": "connect.sid=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
    }
}

_ADMIN_ERRORS = ("bad_request", "admin_unauthorized", "admin_disabled")

Operation = tuple[str, str, dict[str, Any]]
"""(method, path, OpenAPI operation object)."""


def _ok(
    status: int,
    description: str,
    schema: str | None = None,
    headers: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The success response: ``{status: response}`` with a JSON body when ``schema`` is set.

    ``links`` name the operations a client can call next with values from this answer.
    """
    response: dict[str, Any] = {"description": description}
    if headers:
        response["headers"] = dict(headers)
    if schema is not None:
        response["content"] = {JSON: {"schema": _ref(schema)}}
    if links:
        response["links"] = dict(links)
    return {str(status): response}


def _link(operation: str, description: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to one of our operations, its parameters from runtime expressions."""
    return {
        "operationId": operation,
        "description": description,
        "parameters": parameters,
    }


_BODY_ID = "$response.body#/id"


def _links_to_user(expression: str, whose: str) -> dict[str, Any]:
    """Links to every operation on one user, naming them by ``expression``."""
    return {
        name: _link(f"AdminController_{name}", f"{name} for {whose}.", userId=expression)
        for name in (
            "getUserUsage",
            "listKeys",
            "createKey",
            "buyCredits",
            "changePlan",
            "updateUser",
            "deleteUser",
        )
    }


def _errors(
    reasons: Iterable[str], headers: Mapping[int, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Error responses grouped by status, one named example per reason.

    ``headers`` adds response headers to the responses of the given statuses.
    """
    by_status: dict[int, list[str]] = {}
    for reason in reasons:
        status = REASONS[reason].status
        by_status.setdefault(status, []).append(reason)
    responses: dict[str, Any] = {}
    for status, names in sorted(by_status.items()):
        examples = {
            name: {
                "summary": REASONS[name].description,
                "value": {"success": False, "code": status, "data": name},
            }
            for name in names
        }
        response: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if headers and status in headers:
            response["headers"] = dict(headers[status])
        response["content"] = {
            JSON: {"schema": {"$ref": _ERROR_ENVELOPE_REF}, "examples": examples}
        }
        responses[str(status)] = response
    return responses


def _operation(
    method: str,
    path: str,
    operation_id: str,
    *,
    tag: str,
    summary: str,
    ok: dict[str, Any],
    body: str | None = None,
    errors: Iterable[str] = (),
    error_headers: Mapping[int, Mapping[str, Any]] | None = None,
    parameters: Iterable[dict[str, Any]] = (),
    security: list[dict[str, list[str]]],
    description: str | None = None,
) -> Operation:
    """One operation; path parameters come from ``_PATH_PARAMETERS`` by their name.

    ``parameters`` (headers, say) follow the path parameters; ``error_headers`` are
    response headers of error statuses, by status.
    """
    reasons = list(errors)
    if body is not None and "bad_request" not in reasons:
        reasons.insert(0, "bad_request")  # every JSON body can be malformed
    reasons += _ANY_REQUEST_ERRORS
    if body is not None:
        reasons += _BODY_ERRORS
    operation: dict[str, Any] = {"tags": [tag], "summary": summary, "operationId": operation_id}
    if description:
        operation["description"] = description
    names = re.findall(r"\{(\w+)\}", path)
    all_parameters = [*(_PATH_PARAMETERS[name] for name in names), *parameters]
    if all_parameters:
        operation["parameters"] = all_parameters
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": _ref(body)}},
        }
    operation["responses"] = {**ok, **_errors(reasons, error_headers)}
    operation["security"] = security
    return method.lower(), path, operation


def _admin(method: str, path: str, name: str, summary: str, **kwargs: Any) -> Operation:
    """An operator-only operation: bearer admin token, and its 400/401/403 errors."""
    errors = [*_ADMIN_ERRORS, *kwargs.pop("errors", ())]
    return _operation(
        method,
        path,
        f"AdminController_{name}",
        tag="admin",
        summary=summary,
        errors=errors,
        security=[{"adminToken": []}],
        **kwargs,
    )


def _my_keys(method: str, path: str, name: str, summary: str, **kwargs: Any) -> Operation:
    """A self-service key operation: the session cookie only, never an API key."""
    errors = ["session_required", "not_logged_in", *kwargs.pop("errors", ())]
    return _operation(
        method,
        path,
        f"KeysController_{name}",
        tag="keys",
        summary=summary,
        errors=errors,
        security=[{"connect.sid": []}],
        **kwargs,
    )


_MY_KEYS_DESCRIPTION = """\
With the session cookie only: a request that sends X-Api-Key (valid or not; a blank one
counts as absent) is refused with 403 session_required, so that a key never mints or
revokes keys."""

_MY_KEYS_WRITE_DESCRIPTION = (
    _MY_KEYS_DESCRIPTION
    + """ A request whose Origin names another site is refused with 403
origin_not_allowed."""
)


_OWN_SIGN_IN_ONLY = (
    "Only while sessions are the server's own: when it reads the platform's session store"
    " (FLAMEL_SESSION_STORE), the platform signs customers in and out, and this answers 404"
    " not_found."
)


def _auth(method: str, path: str, name: str, summary: str, **kwargs: Any) -> Operation:
    return _operation(method, path, f"AuthController_{name}", tag="auth", summary=summary, **kwargs)


_CHARGE_DESCRIPTION = """\
Charges one operation, atomically: plan credit of the current period first, then
purchased credit (soonest-expiring first), then, on a postpaid plan, postpaid usage.
A prepaid charge that does not fit is refused whole (402 insufficient_credit), and a
TTP or edit charge beyond the plan's per-period limit is refused (429); a refusal
changes nothing.

The Idempotency-Key makes retries safe. The first answer for a key (201, 402 or 429)
is remembered; sending the same key and body again returns that same status and body
(usage as it was then), with the header `Idempotent-Replayed: true`, and charges
nothing. The same key with a different body is refused (409 idempotency_key_reused).
Other errors are not remembered: after fixing the request, sending it again is a
fresh attempt."""

_REFUND_DESCRIPTION = """\
Reverses a successful charge, once. The charge is named by the Idempotency-Key it was
made with, URL-encoded in the path.

The refund restores exactly what the charge took, to the pools it came from: plan
credit, the same purchases, postpaid usage and the TTP/edit count. Purchased credit
that has expired since the charge stays expired, and plan credit of a period that has
ended is not restored; the ledger records such a part at zero, with the reason.
Postpaid usage and counts of an ended period are reversed against that period.

The answer's charge shows the charge's original split and its refundedAt; usage is
the user's usage after the refund."""


_HISTORY_DESCRIPTION = """\
The caller's spending per calendar day or hour of the billing zone, with the same
credentials as GET /api/users/me/usage. Each bucket holds what the charges made in it
took from plan credit, from purchased credit and as postpaid usage, and how many
operations of each kind; a refunded charge counts nowhere. Summed over the current
period, the buckets agree exactly with the usage read: the operations with ttpCount and
editCount, postpaid with postpaidUsageCount, and currentCredit is
max(0, min(maxCredit, maxCredit - plan)). Unknown query fields are ignored."""

#: ``from`` and ``to``: a date, or an instant as the server parses it.
_DAY_OR_INSTANT_PATTERN = (
    "^(?:(?:19[7-9][0-9]|[2-8][0-9]{3}|9000)-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    f"|{_INSTANT_PATTERN[1:-1]})$"
)


def _history_parameters() -> list[dict[str, Any]]:
    def bound(name: str, which: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"{which} of the range: a date YYYY-MM-DD (its midnight in the"
            " billing zone) or an instant with an offset; default: the current period's.",
            "schema": {"type": "string", "maxLength": 64, "pattern": _DAY_OR_INSTANT_PATTERN},
            "example": "2026-11-01" if name == "from" else "2026-11-08T00:00:00+09:00",
        }

    return [
        bound("from", "Start"),
        bound("to", "End (excluded)"),
        {
            "name": "granularity",
            "in": "query",
            "required": False,
            "description": f"day (ranges up to {MAX_RANGE_DAYS['day']} days) or hour (up to"
            f" {MAX_RANGE_DAYS['hour']} days).",
            "schema": {"type": "string", "enum": list(GRANULARITIES), "default": "day"},
        },
        {
            "name": "format",
            "in": "query",
            "required": False,
            "description": "json, or csv: a header row start,end,plan,purchased,postpaid,"
            "<kind>... and one row per bucket.",
            "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
        },
    ]


def _history_ok() -> dict[str, Any]:
    ok = _ok(200, "The buckets of the range", "UsageHistory")
    ok["200"]["content"]["text/csv"] = {
        "schema": {"type": "string"},
        "example": "start,end,plan,purchased,postpaid,ttp,edit,image\r\n"
        "2026-11-01T00:00:00+09:00,2026-11-02T00:00:00+09:00,3,0,0,3,0,0\r\n",
    }
    return ok


def _operations() -> list[Operation]:
    """Our operations, in the order Swagger UI shows them."""
    user = "/api/admin/users/{userId}"
    key = "/api/admin/keys/{keyId}"
    charges = "/api/admin/charges"
    my_keys = "/api/users/me/keys"
    return [
        _operation(
            "GET",
            "/api/users/me/usage/history",
            "UsersApiController_getMyUsageHistory",
            tag="users",
            summary="Get my usage per day or hour",
            description=_HISTORY_DESCRIPTION,
            parameters=_history_parameters(),
            ok=_history_ok(),
            errors=[
                "invalid_range",
                "range_too_long",
                "invalid_granularity",
                "invalid_format",
                "wrong_api_key",
                "api_key_expired",
                "not_logged_in",
                "too_many_requests",
            ],
            error_headers={429: _RETRY_AFTER},
            security=[{"connect.sid": []}, {"apiKey": []}],
        ),
        _my_keys(
            "GET",
            my_keys,
            "listMyKeys",
            "List your API keys (without secrets)",
            description=_MY_KEYS_DESCRIPTION,
            ok=_ok(200, "Your keys, oldest first, revoked and expired ones too", "KeyList"),
        ),
        _my_keys(
            "POST",
            my_keys,
            "createMyKey",
            "Create an API key for yourself",
            description=_MY_KEYS_WRITE_DESCRIPTION
            + " The secret is in this response only. At most 20 live (neither revoked nor"
            " expired) keys per user.",
            body="CreateKeyRequest",
            ok=_ok(
                201,
                "Created",
                "CreatedKey",
                links={
                    "revokeMyKey": _link(
                        "KeysController_revokeMyKey", "Revoke this key.", keyId=_BODY_ID
                    ),
                },
            ),
            errors=["origin_not_allowed", "too_many_keys"],
        ),
        _my_keys(
            "DELETE",
            my_keys + "/{keyId}",
            "revokeMyKey",
            "Revoke one of your API keys",
            description=_MY_KEYS_WRITE_DESCRIPTION
            + " Revoking a key already revoked answers 204 again and keeps its first"
            " revocation time. Another user's key id is 404 key_not_found, as an unknown"
            " one is.",
            ok=_ok(204, "Revoked"),
            errors=["bad_request", "origin_not_allowed", "key_not_found"],
        ),
        _auth(
            "POST",
            "/api/auth/login",
            "login",
            "Log in with email and password",
            description="Sets the connect.sid session cookie that GET /api/users/me/usage"
            " accepts. " + _OWN_SIGN_IN_ONLY,
            body="LoginRequest",
            ok=_ok(200, "Logged in", "LoginResponse", _SET_SESSION_COOKIE),
            errors=["invalid_credentials", "not_found", "too_many_requests"],
            error_headers={429: _RETRY_AFTER},
            security=[],
        ),
        _auth(
            "POST",
            "/api/auth/logout",
            "logout",
            "Log out",
            description="Deletes the session on the server and clears the cookie. "
            + _OWN_SIGN_IN_ONLY,
            ok=_ok(204, "Logged out", headers=_CLEAR_SESSION_COOKIE),
            errors=["not_found"],
            security=[{"connect.sid": []}],
        ),
        _admin(
            "POST",
            "/api/admin/plans",
            "createPlan",
            "Create a plan",
            body="CreatePlanRequest",
            ok=_ok(201, "Created", "Plan"),
            errors=["plan_exists"],
        ),
        _admin(
            "GET", "/api/admin/plans", "listPlans", "List plans", ok=_ok(200, "Plans", "PlanList")
        ),
        _admin(
            "POST",
            "/api/admin/users",
            "createUser",
            "Create a user subscribed to a plan",
            body="CreateUserRequest",
            ok=_ok(201, "Created", "User", links=_links_to_user(_BODY_ID, "this user")),
            errors=["plan_not_found", "user_exists", "external_id_exists"],
        ),
        _admin(
            "PATCH",
            user,
            "updateUser",
            "Change a user's externalId",
            description="The platform's sessions name their user by it (SPEC 7). The"
            " answer is the user as it is now.",
            body="UpdateUserRequest",
            ok=_ok(200, "Updated", "User"),
            errors=["user_not_found", "external_id_exists"],
        ),
        _admin(
            "DELETE",
            user,
            "deleteUser",
            "Delete a user",
            description="Their API keys stop working at once.",
            ok=_ok(
                204,
                "Deleted",
                links={
                    name: _link(
                        f"AdminController_{name}",
                        f"{name} for the deleted user: 404 user_not_found.",
                        userId="$request.path.userId",
                    )
                    for name in ("getUserUsage", "listKeys", "createKey")
                },
            ),
            errors=["user_not_found"],
        ),
        _admin(
            "GET",
            f"{user}/usage",
            "getUserUsage",
            "Get a user's usage",
            description="The same body GET /api/users/me/usage returns to that user.",
            ok=_ok(200, "Usage", "UsageInfoDto"),
            errors=["user_not_found"],
        ),
        _admin(
            "POST",
            f"{user}/keys",
            "createKey",
            "Create an API key",
            description="The secret is in this response only; the server keeps just its hash.",
            body="CreateKeyRequest",
            ok=_ok(
                201,
                "Created",
                "CreatedKey",
                links={
                    "updateKey": _link(
                        "AdminController_updateKey", "Change this key's expiry.", keyId=_BODY_ID
                    ),
                    "revokeKey": _link(
                        "AdminController_revokeKey", "Revoke this key.", keyId=_BODY_ID
                    ),
                    "listKeys": _link(
                        "AdminController_listKeys",
                        "The owner's keys, this one among them.",
                        userId="$response.body#/userId",
                    ),
                },
            ),
            errors=["user_not_found"],
        ),
        _admin(
            "GET",
            f"{user}/keys",
            "listKeys",
            "List a user's API keys (without secrets)",
            ok=_ok(200, "Keys", "KeyList"),
            errors=["user_not_found"],
        ),
        _admin(
            "PATCH",
            key,
            "updateKey",
            "Change an API key's expiry or name",
            body="UpdateKeyRequest",
            ok=_ok(204, "Updated"),
            errors=["key_not_found"],
        ),
        _admin(
            "POST",
            f"{key}/revoke",
            "revokeKey",
            "Revoke an API key",
            ok=_ok(204, "Revoked"),
            errors=["key_not_found"],
        ),
        _admin(
            "POST",
            f"{user}/credits",
            "buyCredits",
            "Add purchased credit",
            description="Purchased credit survives period ends until its own expiry.",
            body="BuyCreditsRequest",
            ok=_ok(201, "Bought; the user's usage after the purchase", "BuyCreditsResponse"),
            errors=["user_not_found"],
        ),
        _admin(
            "PUT",
            f"{user}/plan",
            "changePlan",
            "Move a user to another plan",
            description="Now: the current period and its counts stay; the plan credit"
            " becomes the new allowance less what plan credit already paid for this period."
            " next_period: the change waits for the next period start. A change of period"
            " unit starts the new unit where the current period ends.",
            body="ChangePlanRequest",
            ok=_ok(200, "Changed; the user's usage after the change", "ChangePlanResponse"),
            errors=["user_not_found", "plan_not_found"],
        ),
        _admin(
            "GET",
            "/api/admin/reconcile",
            "reconcile",
            "Check stored balances against the ledger",
            ok=_ok(200, "Report", "ReconcileReport"),
        ),
        _admin(
            "POST",
            charges,
            "createCharge",
            "Charge an operation to a user",
            description=_CHARGE_DESCRIPTION,
            parameters=[_IDEMPOTENCY_KEY_HEADER],
            body="CreateChargeRequest",
            ok=_ok(
                201,
                "Charged; the user's usage after the charge",
                "ChargeResult",
                _REPLAYED,
                links={
                    "refundCharge": _link(
                        "AdminController_refundCharge",
                        "Refund this charge, named by its Idempotency-Key.",
                        idempotencyKey="$request.header.Idempotency-Key",
                    ),
                    "getUserUsage": _link(
                        "AdminController_getUserUsage",
                        "The charged user's usage.",
                        userId="$response.body#/charge/userId",
                    ),
                },
            ),
            errors=[
                "unknown_kind",
                "invalid_idempotency_key",
                "insufficient_credit",
                "user_not_found",
                "idempotency_key_reused",
                "ttp_limit_exceeded",
                "edit_limit_exceeded",
            ],
            error_headers={402: _REPLAYED, 429: _REPLAYED},
        ),
        _admin(
            "POST",
            f"{charges}/{{idempotencyKey}}/refund",
            "refundCharge",
            "Refund a charge",
            description=_REFUND_DESCRIPTION,
            ok=_ok(200, "Refunded; the user's usage after the refund", "ChargeResult"),
            errors=[
                "invalid_idempotency_key",
                "charge_not_found",
                "already_refunded",
                "not_refundable",
            ],
        ),
    ]


# --- the document -------------------------------------------------------------------------


def _add(target: dict[str, Any], additions: Mapping[str, Any], what: str) -> None:
    """Add entries, refusing to replace anything (the seed's parts must stay exact)."""
    for name, value in additions.items():
        if name in target:
            raise RuntimeError(f"OpenAPI {what} {name!r} is already defined")
        target[name] = value


def _load_seed() -> dict[str, Any]:
    text = resources.files("flamel_usage.http.openapi").joinpath(_SEED_RESOURCE).read_text("utf-8")
    seed = yaml.safe_load(text)
    if not isinstance(seed, dict):
        raise RuntimeError(f"{_SEED_RESOURCE} is not a mapping")
    return seed


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The seed plus our additions, built once. Shared: callers must not mutate it."""
    document = _load_seed()
    components = document.setdefault("components", {})
    _add(components.setdefault("securitySchemes", {}), _SECURITY_SCHEMES, "security scheme")
    _add(components.setdefault("schemas", {}), _schemas(), "schema")
    paths = document.setdefault("paths", {})
    for method, path, operation in _operations():
        _add(paths.setdefault(path, {}), {method: operation}, f"operation on {path}:")
    return document


@functools.cache
def openapi_json() -> bytes:
    """The body of ``GET /api-json``."""
    return orjson.dumps(openapi_document())


# --- human docs ---------------------------------------------------------------------------

_INIT_JS = f"""\
// Starts Swagger UI on the /api page. Kept out of the page so that no inline script is
// needed; everything is loaded from this server, so the docs work offline.
window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: "{DOCUMENT_URL}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  }});
}});
"""

_CSS = "text/css; charset=utf-8"
_JS = "text/javascript; charset=utf-8"
_PNG = "image/png"

#: The only names ``/api/static/`` serves, with their content types. ``None`` in the
#: third place means "from the swagger_ui_bundle package"; a string is inline content.
_ASSETS: dict[str, tuple[str, str | None]] = {
    "swagger-ui.css": (_CSS, None),
    "swagger-ui-bundle.js": (_JS, None),
    "favicon-32x32.png": (_PNG, None),
    "favicon-16x16.png": (_PNG, None),
    "init.js": (_JS, _INIT_JS),
}


@functools.cache
def docs_page() -> bytes:
    """The body of ``GET /api``: Swagger UI, every asset from ``/api/static/``."""
    title = html.escape(str(openapi_document()["info"]["title"]))
    s = STATIC_PREFIX
    page = f"""<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{s}swagger-ui.css">
<link rel="icon" type="image/png" sizes="32x32" href="{s}favicon-32x32.png">
<link rel="icon" type="image/png" sizes="16x16" href="{s}favicon-16x16.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{s}swagger-ui-bundle.js"></script>
<script src="{s}init.js"></script>
</body>
</html>
"""
    return page.encode("utf-8")


def docs_asset(name: str) -> tuple[bytes, str] | None:
    """``(content, content type)`` for an allowlisted asset name, else ``None``.

    The name is only ever a key into ``_ASSETS``, never joined to a path unchecked, so
    ``../`` or absolute names cannot reach other files. The allowlist check comes
    before the cache so that arbitrary names cannot grow it.
    """
    if name not in _ASSETS:
        return None
    return _load_asset(name)


@functools.cache
def _load_asset(name: str) -> tuple[bytes, str]:
    content_type, inline = _ASSETS[name]
    if inline is not None:
        return inline.encode("utf-8"), content_type
    return (swagger_ui_path / name).read_bytes(), content_type

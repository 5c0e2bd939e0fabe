"""The parameters of our operations that are not bodies: path ids, headers, query fields.

Each states the rule of the code that reads it, from that code's own constants:
``inputs.parse_id``, ``inputs.parse_day_or_instant`` and the history's granularities;
the idempotency key is the field type the charge's answer declares.
"""

from __future__ import annotations

from typing import Any

from flamel_usage.core.inputs import DAY_OR_INSTANT_PATTERN, MAX_ID_DIGITS, MAX_INSTANT_LENGTH
from flamel_usage.http.api.usage import HISTORY_FORMATS
from flamel_usage.http.bodies.fields import IdempotencyKey
from flamel_usage.http.openapi.schemas import schema_of
from flamel_usage.ledger.history import GRANULARITIES, MAX_RANGE_DAYS

_IDEMPOTENCY_KEY_SCHEMA = schema_of(IdempotencyKey)

#: An id in a path: the server reads up to ``MAX_ID_DIGITS`` digits (0 is no one's id: 404).
_ID_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 10**MAX_ID_DIGITS - 1}

#: Every path parameter, by the name it has in a route's pattern.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
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
    "holdId": {
        "name": "holdId",
        "in": "path",
        "required": True,
        "description": "Hold id (holdId of the hold's answer).",
        "schema": _ID_SCHEMA,
    },
    "webhookId": {
        "name": "webhookId",
        "in": "path",
        "required": True,
        "description": "Webhook endpoint id.",
        "schema": _ID_SCHEMA,
    },
    "deliveryId": {
        "name": "deliveryId",
        "in": "path",
        "required": True,
        "description": "Webhook delivery id.",
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

HOLD_IDEMPOTENCY_KEY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "Names this hold: a retry with the same key and body is applied once"
    " and answered with the first answer. A charge's key is not a hold's.",
    "schema": _IDEMPOTENCY_KEY_SCHEMA,
    "example": "job-8d1f2c/hold",
}

PURCHASE_IDEMPOTENCY_KEY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Names this purchase: a retry with the same key and body sells once and"
    " is answered with the first answer. Optional, but send one: without it a retry after"
    " a lost answer sells the credit again.",
    "schema": _IDEMPOTENCY_KEY_SCHEMA,
    "example": "order-5521/credits",
}

IDEMPOTENCY_KEY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "Names this charge: a retry with the same key and body is applied once"
    " and answered with the first answer. Also the key to refund it by.",
    "schema": _IDEMPOTENCY_KEY_SCHEMA,
}


def _history_bound(name: str, which: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"{which} of the range: a date YYYY-MM-DD (its midnight in the"
        " billing zone) or an instant with an offset; default: the current period's.",
        "schema": {
            "type": "string",
            "maxLength": MAX_INSTANT_LENGTH,
            "pattern": DAY_OR_INSTANT_PATTERN,
        },
        "example": example,
    }


HISTORY_PARAMETERS: tuple[dict[str, Any], ...] = (
    _history_bound("from", "Start", "2026-11-01"),
    _history_bound("to", "End (excluded)", "2026-11-08T00:00:00+09:00"),
    {
        "name": "granularity",
        "in": "query",
        "required": False,
        "description": f"day (ranges up to {MAX_RANGE_DAYS['day']} days) or hour (up to"
        f" {MAX_RANGE_DAYS['hour']} days).",
        "schema": {"type": "string", "enum": list(GRANULARITIES), "default": GRANULARITIES[0]},
    },
    {
        "name": "format",
        "in": "query",
        "required": False,
        "description": "json, or csv: a header row start,end,plan,purchased,postpaid,"
        "<kind>... and one row per bucket.",
        "schema": {"type": "string", "enum": list(HISTORY_FORMATS), "default": HISTORY_FORMATS[0]},
    },
)

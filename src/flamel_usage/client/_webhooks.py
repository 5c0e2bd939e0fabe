"""Webhooks in the SDK: the records of the admin API's webhook answers, and
``verify_webhook``, which a receiver calls on every delivery before trusting it.

The server signs per the Standard Webhooks specification: ``webhook-signature`` holds
``v1,<base64 HMAC-SHA256>`` of ``"{webhook-id}.{webhook-timestamp}.{body}"`` under the
endpoint's secret (``whsec_`` and the base64 of the key). Any Standard Webhooks library
verifies it too; this one needs nothing but the standard library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._admin_models import _id, _optional_instant, _optional_string, _parsed, _string
from ._exceptions import FlamelError
from ._models import _aware, _count, _field, _Malformed

__all__ = [
    "CreatedWebhook",
    "InvalidWebhook",
    "WebhookDelivery",
    "WebhookEndpoint",
    "verify_webhook",
]

#: How far a delivery's ``webhook-timestamp`` may be from now: older ones may be replays.
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidWebhook(FlamelError, ValueError):
    """A delivery that is not signed by the endpoint's secret, or too old or new: drop it.

    A ``FlamelError`` like every error of the SDK (with no status: no call was made),
    and a ``ValueError``: the input was not what it claimed to be."""


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event (``{"type", "timestamp", "data"}``) of a delivery whose signature and
    timestamp check out, else ``InvalidWebhook``.

    ``body`` is the request body exactly as received (not re-encoded JSON); ``headers``
    any mapping of the request's headers (names in any case); ``secret`` the endpoint's
    ``whsec_...``. Deduplicate on ``headers["webhook-id"]``: a retry sends the same id.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id")
    sent_at = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not message_id or not sent_at or not signatures:
        raise InvalidWebhook("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(sent_at)
    except ValueError:
        raise InvalidWebhook("webhook-timestamp is not a whole number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidWebhook("webhook-timestamp is too far from now")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidWebhook("the secret is not whsec_ and base64") from None
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            break
    else:
        raise InvalidWebhook("no signature matches")
    try:
        event = json.loads(raw)
    except ValueError:
        raise InvalidWebhook("the body is not JSON") from None
    if not isinstance(event, dict):
        raise InvalidWebhook("the body is not a JSON object")
    return event


def _strings(data: object, name: str) -> tuple[str, ...]:
    value = _field(data, name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Malformed(f"{name} is not a list of strings")
    return tuple(value)


def _flag(data: object, name: str) -> bool:
    value = _field(data, name)
    if not isinstance(value, bool):
        raise _Malformed(f"{name} is not a boolean")
    return value


@dataclass(frozen=True)
class WebhookEndpoint:
    """A registered endpoint (never its secret); ``enabled`` False after 3 days of
    failures, until a redelivery."""

    id: int
    url: str
    events: tuple[str, ...]
    description: str | None
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def from_json(cls, data: object) -> WebhookEndpoint:
        return _parsed("webhook endpoint", cls._read, data)

    @classmethod
    def _read(cls, data: object) -> WebhookEndpoint:
        return cls(
            _id(data, "id"),
            _string(data, "url"),
            _strings(data, "events"),
            _optional_string(data, "description"),
            _flag(data, "enabled"),
            _aware(data, "createdAt"),
            _optional_instant(data, "disabledAt"),
        )


@dataclass(frozen=True)
class CreatedWebhook:
    """A new endpoint and its signing ``secret``: the one answer that shows it."""

    endpoint: WebhookEndpoint
    secret: str

    @classmethod
    def from_json(cls, data: object) -> CreatedWebhook:
        return _parsed(
            "created webhook",
            lambda body: cls(
                WebhookEndpoint._read(_field(body, "endpoint")), _string(body, "secret")
            ),
            data,
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One event for one endpoint: ``webhook_id`` is the same on every attempt."""

    id: int
    endpoint_id: int
    webhook_id: str
    type: str
    user_id: int
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def from_json(cls, data: object) -> WebhookDelivery:
        return _parsed("webhook delivery", cls._read, data)

    @classmethod
    def _read(cls, data: object) -> WebhookDelivery:
        status = _field(data, "lastStatus")
        return cls(
            _id(data, "id"),
            _id(data, "endpointId"),
            _string(data, "webhookId"),
            _string(data, "type"),
            _id(data, "userId"),
            _string(data, "status"),
            _count(_field_map(data), "attempts"),
            _aware(data, "createdAt"),
            _aware(data, "nextAttemptAt"),
            _optional_instant(data, "lastAttemptAt"),
            None if status is None else _count(_field_map(data), "lastStatus"),
            _optional_string(data, "lastError"),
            _optional_instant(data, "deliveredAt"),
        )


def _field_map(data: object) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise _Malformed("expected a JSON object")
    return data


def endpoint_list(data: object) -> list[WebhookEndpoint]:
    return _parsed(
        "webhook endpoints",
        lambda body: [WebhookEndpoint._read(item) for item in _list(body, "endpoints")],
        data,
    )


def delivery_list(data: object) -> list[WebhookDelivery]:
    return _parsed(
        "webhook deliveries",
        lambda body: [WebhookDelivery._read(item) for item in _list(body, "deliveries")],
        data,
    )


def secret_of(data: object) -> str:
    return _parsed("webhook secret", lambda body: _string(body, "secret"), data)


def _list(data: object, name: str) -> list[object]:
    value = _field(data, name)
    if not isinstance(value, list):
        raise _Malformed(f"{name} is not a list")
    return value

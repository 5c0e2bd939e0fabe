"""The SDK's exceptions: every failure of a call is a ``FlamelError``.

The tree::

    FlamelError                 any failure; .status, .reason, .response, .idempotency_key
    ├── AuthenticationError     401: the credentials (API key, admin token) were refused
    │   ├── WrongApiKey         401 wrong_api_key: unknown, malformed or revoked key
    │   └── ApiKeyExpired       401 api_key_expired: the key's expiry time has passed
    ├── NotLoggedIn             403 not_logged_in: neither a key nor a valid session
    ├── PermissionDenied        403 otherwise: admin_disabled, session_required...
    ├── InvalidRequest          400, 413, 415, 431: the request was refused as sent
    ├── NotFound                404: not_found, or one of:
    │   ├── UserNotFound        404 user_not_found
    │   ├── PlanNotFound        404 plan_not_found
    │   ├── KeyNotFound         404 key_not_found
    │   └── ChargeNotFound      404 charge_not_found: no charge has that idempotency key
    ├── Conflict                409: conflict, plan_exists, or one of:
    │   ├── UserExists          409 user_exists: that email (or external id) is taken
    │   ├── TooManyKeys         409 too_many_keys
    │   ├── IdempotencyKeyReused  409: the key named a different charge
    │   ├── AlreadyRefunded     409 already_refunded
    │   └── NotRefundable       409 not_refundable: the charge was refused, not made
    ├── ChargeRefused           a charge refused for the account's state, kept under its key
    │   ├── InsufficientCredit  402 insufficient_credit (prepaid)
    │   └── LimitExceeded       429 ttp_limit_exceeded, edit_limit_exceeded, limit_exceeded
    ├── RateLimited             429 otherwise: too many requests; .retry_after (seconds)
    ├── ServerError             5xx: the server (or a proxy in front of it) failed
    ├── InvalidResponse         an answer that is not the contract's: .body (excerpt)
    └── TransportError          no answer at all (refused, timeout, DNS...): __cause__

``ERRORS_BY_REASON`` is the one table from the envelope's reason to its exception;
``error_class`` applies it, falling back on the status. A ``FlamelError`` that is none
of its subclasses is an error the SDK knows only by its envelope,
``{"success": false, "code": <status>, "data": "<reason>"}`` (``405
method_not_allowed``, a ``418`` of a newer server...): ``.status`` and ``.reason`` say
which.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ERRORS_BY_REASON",
    "AlreadyRefunded",
    "ApiKeyExpired",
    "AuthenticationError",
    "ChargeNotFound",
    "ChargeRefused",
    "Conflict",
    "FlamelError",
    "HoldNotActive",
    "HoldNotFound",
    "IdempotencyKeyReused",
    "InsufficientCredit",
    "InvalidRequest",
    "InvalidResponse",
    "KeyNotFound",
    "LimitExceeded",
    "NotFound",
    "NotLoggedIn",
    "NotRefundable",
    "PermissionDenied",
    "PlanNotFound",
    "RateLimited",
    "ServerError",
    "TooManyKeys",
    "TransportError",
    "UserExists",
    "UserNotFound",
    "WrongApiKey",
    "error_class",
]


class FlamelError(Exception):
    """Base class of every error the SDK raises for a call.

    ``status`` is the HTTP status of the answer (None when there was no answer),
    ``reason`` the envelope's ``data`` (``"wrong_api_key"``...) when the answer carried
    a valid error envelope, else None, and ``response`` the ``httpx.Response`` when
    there was one (its body is already read). ``idempotency_key`` is the key a failed
    ``charge()`` or ``refund()`` carried (None for other calls): after a
    ``TransportError`` or a ``ServerError`` the charge's fate is unknown, and charging
    again with this key is safe (it is applied at most once).
    """

    idempotency_key: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.response = response

    def __str__(self) -> str:
        return self.message


class AuthenticationError(FlamelError):
    """``401``: the server refused the credentials (whatever the envelope's reason):
    ``admin_unauthorized`` for a wrong admin token, for one."""


class WrongApiKey(AuthenticationError):
    """``401 wrong_api_key``: the key is unknown, malformed, revoked or its user deleted."""


class ApiKeyExpired(AuthenticationError):
    """``401 api_key_expired``: the key exists but its expiry time has passed."""


class NotLoggedIn(FlamelError):
    """``403 not_logged_in``: no ``X-Api-Key`` and no valid ``connect.sid`` session."""


class PermissionDenied(FlamelError):
    """``403`` other than ``not_logged_in``: the credentials do not allow the call
    (``admin_disabled``: the server has no admin token configured; ``session_required``,
    ``origin_not_allowed``, ``forbidden``)."""


class InvalidRequest(FlamelError):
    """``400`` (``bad_request``, ``unknown_kind``, ``invalid_idempotency_key``,
    ``invalid_range``...), ``413``, ``415`` or ``431``: the server refused the request as
    it was sent and changed nothing. Sending it again unchanged gets the same answer."""


class NotFound(FlamelError):
    """``404``: nothing at that path, or no such record (the subclasses say which)."""


class UserNotFound(NotFound):
    """``404 user_not_found``: no (live) user has that id."""


class PlanNotFound(NotFound):
    """``404 plan_not_found``: no plan has that name."""


class KeyNotFound(NotFound):
    """``404 key_not_found``: no API key has that id."""


class ChargeNotFound(NotFound):
    """``404 charge_not_found``: no charge was made with that idempotency key."""


class HoldNotFound(NotFound):
    """``404 hold_not_found``: no hold has that id."""


class Conflict(FlamelError):
    """``409``: the request conflicts with what the server holds (the subclasses say how)."""


class UserExists(Conflict):
    """``409 user_exists``: a user with that email, or that external id, exists already."""


class TooManyKeys(Conflict):
    """``409 too_many_keys``: the user holds the most live keys allowed."""


class IdempotencyKeyReused(Conflict):
    """``409 idempotency_key_reused``: the ``Idempotency-Key`` was used before for a
    different charge (another user, kind or cost). Nothing was charged."""


class AlreadyRefunded(Conflict):
    """``409 already_refunded``: the charge was refunded already. After a ``refund()``
    that was retried, this means an earlier attempt refunded it: it is refunded once."""


class NotRefundable(Conflict):
    """``409 not_refundable``: the charge was refused (402 or 429), so nothing was taken;
    or it is a hold, which is settled or released instead."""


class HoldNotActive(Conflict):
    """``409 hold_not_active``: the hold was settled, released or has expired; only the
    call that finished it may be repeated (it answers its first answer)."""


class ChargeRefused(FlamelError):
    """A charge the account cannot take now. The refusal is kept under the charge's
    idempotency key: charging again with that key answers the same refusal, so retry
    with a new key once the account has changed (credit bought, a new period)."""


class InsufficientCredit(ChargeRefused):
    """``402 insufficient_credit``: a prepaid account's plan and purchased credit together
    do not cover the charge. Nothing was taken."""


class LimitExceeded(ChargeRefused):
    """``429 ttp_limit_exceeded``, ``edit_limit_exceeded`` or ``limit_exceeded``: the
    plan's count for this period is reached. Never retried (unlike ``RateLimited``):
    waiting a few seconds does not help, a new period or plan does."""


class RateLimited(FlamelError):
    """``429`` other than a plan limit: too many requests. ``retry_after`` is the server's
    ``Retry-After`` in seconds when it sent one (None otherwise)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        response: httpx.Response | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, reason=reason, response=response)
        self.retry_after = retry_after


class ServerError(FlamelError):
    """``5xx``: the server, or a proxy in front of it, failed. ``502``, ``503`` and
    ``504`` are retried (for the calls that may be sent twice) before this is raised;
    ``reason`` is None when the body was not the contract's envelope (a proxy's HTML
    page, for one)."""


class InvalidResponse(FlamelError):
    """An answer that is not the contract's: not JSON, truncated, an HTML page, a
    ``UsageInfoDto`` with a missing field or a wrong type, or a status the contract
    does not describe without the error envelope. ``body`` is the start of the body
    as text (at most ``InvalidResponse.EXCERPT`` characters)."""

    EXCERPT = 500

    def __init__(
        self,
        message: str,
        *,
        body: str = "",
        status: int | None = None,
        reason: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, status=status, reason=reason, response=response)
        self.body = body[: self.EXCERPT]


class TransportError(FlamelError):
    """No answer: the connection was refused or reset, a timeout passed, the name did
    not resolve... The ``httpx`` exception is kept as ``__cause__``."""


#: Every reason the server refuses a request for (the envelope's ``data``), the status
#: it comes with, and the exception it raises. The one table of the mapping: a reason
#: that comes with another status raises the exception of that status instead.
ERRORS_BY_REASON: Mapping[str, tuple[int, type[FlamelError]]] = MappingProxyType(
    {
        "bad_request": (400, InvalidRequest),
        "unknown_kind": (400, InvalidRequest),
        "invalid_idempotency_key": (400, InvalidRequest),
        "invalid_range": (400, InvalidRequest),
        "range_too_long": (400, InvalidRequest),
        "invalid_granularity": (400, InvalidRequest),
        "invalid_format": (400, InvalidRequest),
        "invalid_credentials": (401, AuthenticationError),
        "admin_unauthorized": (401, AuthenticationError),
        "unauthorized": (401, AuthenticationError),
        "wrong_api_key": (401, WrongApiKey),
        "api_key_expired": (401, ApiKeyExpired),
        "insufficient_credit": (402, InsufficientCredit),
        "not_logged_in": (403, NotLoggedIn),
        "admin_disabled": (403, PermissionDenied),
        "session_required": (403, PermissionDenied),
        "origin_not_allowed": (403, PermissionDenied),
        "forbidden": (403, PermissionDenied),
        "not_found": (404, NotFound),
        "user_not_found": (404, UserNotFound),
        "plan_not_found": (404, PlanNotFound),
        "key_not_found": (404, KeyNotFound),
        "charge_not_found": (404, ChargeNotFound),
        "hold_not_found": (404, HoldNotFound),
        "method_not_allowed": (405, FlamelError),
        "conflict": (409, Conflict),
        "plan_exists": (409, Conflict),
        "user_exists": (409, UserExists),
        "too_many_keys": (409, TooManyKeys),
        "idempotency_key_reused": (409, IdempotencyKeyReused),
        "already_refunded": (409, AlreadyRefunded),
        "not_refundable": (409, NotRefundable),
        "hold_not_active": (409, HoldNotActive),
        "payload_too_large": (413, InvalidRequest),
        "unsupported_media_type": (415, InvalidRequest),
        "ttp_limit_exceeded": (429, LimitExceeded),
        "edit_limit_exceeded": (429, LimitExceeded),
        "limit_exceeded": (429, LimitExceeded),
        "too_many_requests": (429, RateLimited),
        "request_header_fields_too_large": (431, InvalidRequest),
        "internal_error": (500, ServerError),
        "service_unavailable": (503, ServerError),
    }
)

#: The exception of an answer whose reason is unknown or missing, by its status. Only
#: these hold without the error envelope: anything else without it is not the contract's.
_BY_STATUS_ALONE: Mapping[int, type[FlamelError]] = {401: AuthenticationError, 429: RateLimited}
#: ... and these when the answer carries the envelope.
_BY_STATUS: Mapping[int, type[FlamelError]] = {
    **_BY_STATUS_ALONE,
    400: InvalidRequest,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    431: InvalidRequest,
}


def error_class(status: int, reason: str | None) -> type[FlamelError]:
    """The exception for an error answer: by its envelope's ``reason`` when the reason
    comes with its own status, else by the status; ``reason`` None means no envelope."""
    known = ERRORS_BY_REASON.get(reason) if reason is not None else None
    if known is not None and known[0] == status:
        return known[1]
    if status >= 500:
        return ServerError
    if reason is None:
        return _BY_STATUS_ALONE.get(status, InvalidResponse)
    return _BY_STATUS.get(status, FlamelError)

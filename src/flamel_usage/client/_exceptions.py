"""The SDK's exceptions: every failure of a call is a ``FlamelError``.

The tree::

    FlamelError                 any failure; .status, .reason, .response
    ├── AuthenticationError     401: the credentials were refused
    │   ├── WrongApiKey         401 wrong_api_key: unknown, malformed or revoked key
    │   └── ApiKeyExpired       401 api_key_expired: the key's expiry time has passed
    ├── NotLoggedIn             403 not_logged_in: neither a key nor a valid session
    ├── RateLimited             429: too many requests; .retry_after (seconds) if known
    ├── ServerError             5xx: the server (or a proxy in front of it) failed
    ├── InvalidResponse         an answer that is not the contract's: .body (excerpt)
    └── TransportError          no answer at all (refused, timeout, DNS...): __cause__

A ``FlamelError`` that is none of its subclasses is an error the contract describes
only by its envelope, ``{"success": false, "code": <status>, "data": "<reason>"}``
(``404 not_found``, ``405 method_not_allowed``...): ``.status`` and ``.reason`` say
which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ApiKeyExpired",
    "AuthenticationError",
    "FlamelError",
    "InvalidResponse",
    "NotLoggedIn",
    "RateLimited",
    "ServerError",
    "TransportError",
    "WrongApiKey",
]


class FlamelError(Exception):
    """Base class of every error the SDK raises for a call.

    ``status`` is the HTTP status of the answer (None when there was no answer),
    ``reason`` the envelope's ``data`` (``"wrong_api_key"``...) when the answer carried
    a valid error envelope, else None, and ``response`` the ``httpx.Response`` when
    there was one (its body is already read).
    """

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
    """``401``: the server refused the credentials (whatever the envelope's reason)."""


class WrongApiKey(AuthenticationError):
    """``401 wrong_api_key``: the key is unknown, malformed, revoked or its user deleted."""


class ApiKeyExpired(AuthenticationError):
    """``401 api_key_expired``: the key exists but its expiry time has passed."""


class NotLoggedIn(FlamelError):
    """``403 not_logged_in``: no ``X-Api-Key`` and no valid ``connect.sid`` session."""


class RateLimited(FlamelError):
    """``429``: too many requests. ``retry_after`` is the server's ``Retry-After`` in
    seconds when it sent one (None otherwise)."""

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
    ``504`` are retried before this is raised; ``reason`` is None when the body was
    not the contract's envelope (a proxy's HTML page, for one)."""


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


#: The exception of each (status, reason) that has a class of its own. Every pair is the
#: server's (its table ``flamel_usage.core.errors.REASONS``, which a test checks this
#: against); the SDK reads none of the server's code.
_BY_REASON: Mapping[tuple[int, str], type[FlamelError]] = {
    (401, "wrong_api_key"): WrongApiKey,
    (401, "api_key_expired"): ApiKeyExpired,
    (403, "not_logged_in"): NotLoggedIn,
}
#: The exception of any other reason of these statuses.
_BY_STATUS: Mapping[int, type[FlamelError]] = {401: AuthenticationError, 429: RateLimited}


def exception_class(status: int, reason: str | None) -> type[FlamelError]:
    """The exception for an answer of ``status`` whose envelope says ``reason`` (None
    without a valid envelope): the reason's own class, else the status's, else
    ``ServerError`` for 5xx, else ``FlamelError``, or ``InvalidResponse`` when a status
    the SDK has no class for came without the envelope."""
    if reason is not None and (status, reason) in _BY_REASON:
        return _BY_REASON[status, reason]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return FlamelError if reason is not None else InvalidResponse

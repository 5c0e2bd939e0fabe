"""Errors that reach a client, and the one function that writes their body.

Domain code raises ``ApiError`` subclasses; the web layer turns any of them into the
``{"success": false, "code": <status>, "data": "<reason>"}`` envelope that the Flamel
API uses for every failure. Nothing else writes an error body, so no stack trace, SQL
or secret can reach a client by another path.
"""

from __future__ import annotations

import orjson


class ApiError(Exception):
    """A failure with a fixed HTTP status and a snake_case reason a client can branch on.

    ``message`` is optional human-readable detail (which field, which limit); it never
    carries secrets or internals.
    """

    status: int = 400
    reason: str = "bad_request"
    #: Response headers that belong to this error, such as ``Retry-After``.
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, message: str | None = None, *, reason: str | None = None) -> None:
        super().__init__(message or reason or self.reason)
        self.message = message
        if reason is not None:
            self.reason = reason


class BadRequest(ApiError):
    status, reason = 400, "bad_request"


class Unauthorized(ApiError):
    status, reason = 401, "unauthorized"


class WrongApiKey(Unauthorized):
    reason = "wrong_api_key"


class ApiKeyExpired(Unauthorized):
    reason = "api_key_expired"


class Forbidden(ApiError):
    status, reason = 403, "forbidden"


class NotLoggedIn(Forbidden):
    reason = "not_logged_in"


class NotFound(ApiError):
    status, reason = 404, "not_found"


class Conflict(ApiError):
    status, reason = 409, "conflict"


class InsufficientCredit(ApiError):
    status, reason = 402, "insufficient_credit"


class LimitExceeded(ApiError):
    status, reason = 429, "limit_exceeded"


class ServiceUnavailable(ApiError):
    """``503``: the database cannot be reached or did not answer in time; retry shortly.

    Sent with ``Retry-After`` (``headers``), so a client backs off a little and retries.
    """

    status, reason = 503, "service_unavailable"
    headers = ((b"retry-after", b"1"),)


def error_body(status: int, reason: str, message: str | None = None) -> bytes:
    """The envelope of every error response; ``message`` is added only when there is one."""
    body: dict[str, object] = {"success": False, "code": status, "data": reason}
    if message:
        body["message"] = message
    return orjson.dumps(body)

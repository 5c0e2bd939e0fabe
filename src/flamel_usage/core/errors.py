"""Why a request is refused: the one table of reasons, and the one exception that names them.

Domain code raises ``Refusal("insufficient_credit", ...)``: a reason from ``REASONS``,
never a status. The HTTP edge (``http/render.py``) turns a refusal into its status,
headers and the ``{"success": false, "code": <status>, "data": "<reason>"}`` envelope,
by this table; nothing else writes an error body, so no stack trace, SQL or secret can
reach a client by another path. The OpenAPI document's errors, the metrics' reason
labels and the SDK's exceptions are derived from the table or tested against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple


class Reason(NamedTuple):
    """One reason a request is refused: the ``data`` of the error envelope, and its status.

    ``retry_after`` is the ``Retry-After`` (seconds) every refusal for this reason gets
    unless it names its own.
    """

    name: str
    status: int
    description: str
    retry_after: int | None = None


#: Every reason the service refuses a request for, declared once: the OpenAPI document's
#: error descriptions, the metrics' reason labels and the SDK's exceptions are checked
#: against this table.
REASONS: Mapping[str, Reason] = {
    reason.name: reason
    for reason in (
        Reason(
            "bad_request",
            400,
            "Malformed JSON, a missing or unknown field, or a value out of range.",
        ),
        Reason("invalid_credentials", 401, "Unknown email or wrong password."),
        Reason("admin_unauthorized", 401, "Missing or wrong admin bearer token."),
        Reason("admin_disabled", 403, "The server has no admin token configured."),
        Reason("plan_not_found", 404, "No plan has that name."),
        Reason("user_not_found", 404, "No user has that id."),
        Reason("key_not_found", 404, "No key has that id."),
        Reason(
            "not_logged_in",
            403,
            "No live session cookie, nor an X-Api-Key where one is taken: sign in first (POST"
            " /api/auth/login).",
        ),
        Reason(
            "session_required",
            403,
            "An X-Api-Key was sent: keys are managed with the session cookie only, never with"
            " a key.",
        ),
        Reason("origin_not_allowed", 403, "The request's Origin is another site than this server."),
        Reason("too_many_keys", 409, "The user holds 20 live keys already: revoke one first."),
        Reason("plan_exists", 409, "A plan with that name exists."),
        Reason("user_exists", 409, "A user with that email, or that externalId, exists."),
        Reason("unknown_kind", 400, "kind is not an operation kind the server is configured with."),
        Reason(
            "invalid_idempotency_key",
            400,
            "The idempotency key is missing or not 1-255 printable ASCII characters.",
        ),
        Reason(
            "insufficient_credit",
            402,
            "The prepaid charge does not fit the user's credit; nothing changed.",
        ),
        Reason("ttp_limit_exceeded", 429, "The plan's TTP limit for this period is reached."),
        Reason("edit_limit_exceeded", 429, "The plan's edit limit for this period is reached."),
        Reason("charge_not_found", 404, "No charge was made with that idempotency key."),
        Reason(
            "idempotency_key_reused", 409, "The Idempotency-Key was used for a different charge."
        ),
        Reason("already_refunded", 409, "The charge was refunded already."),
        Reason(
            "not_refundable",
            409,
            "The charge was refused (402 or 429): nothing to refund; or it is a hold, which is"
            " settled or released instead.",
        ),
        Reason("hold_not_found", 404, "No hold has that id."),
        Reason(
            "hold_not_active",
            409,
            "The hold was settled, released or has expired: only the call that finished it"
            " may be repeated.",
        ),
        Reason(
            "too_many_requests",
            429,
            "Too many failed sign-ins from this client or browser, or for this account: wait "
            "for the Retry-After seconds (the right password is refused too until then).",
        ),
        Reason("wrong_api_key", 401, "The X-Api-Key is not a live key."),
        Reason("api_key_expired", 401, "The X-Api-Key has expired."),
        Reason(
            "invalid_range",
            400,
            "from or to is neither a date (YYYY-MM-DD) nor an instant with an offset, or from"
            " is not before to.",
        ),
        Reason(
            "range_too_long",
            400,
            "The range spans more days than the granularity allows (see the granularity "
            "parameter).",
        ),
        Reason("invalid_granularity", 400, "granularity is neither day nor hour."),
        Reason("invalid_format", 400, "format is neither json nor csv."),
        Reason("payload_too_large", 413, "The request body is larger than 64 KiB."),
        Reason(
            "unsupported_media_type", 415, "The body was sent with a Content-Type other than JSON."
        ),
        Reason(
            "request_header_fields_too_large",
            431,
            "The request head is larger than the server takes (16 KiB or 100 header lines by "
            "default); the connection is closed.",
        ),
        Reason(
            "service_unavailable",
            503,
            "The database or the platform's session store is unreachable or did not answer"
            " in time: retry after the Retry-After seconds.",
            retry_after=1,
        ),
        Reason("unauthorized", 401, "Credentials are missing or wrong."),
        Reason("forbidden", 403, "The credentials do not allow this."),
        Reason("not_found", 404, "Nothing is at that path."),
        Reason(
            "method_not_allowed",
            405,
            "The path does not take that method; Allow lists those it takes.",
        ),
        Reason("conflict", 409, "The request conflicts with the current state."),
        Reason("limit_exceeded", 429, "A limit of the plan for this period is reached."),
        Reason("internal_error", 500, "The server failed; nothing the request changed was kept."),
    )
}


class Refusal(Exception):
    """A request refused for ``reason``, a name in ``REASONS``; nothing it asked for changed.

    ``message`` is optional human-readable detail (which field, which limit); it never
    carries secrets or internals. ``retry_after`` (seconds) and ``allowed`` (the methods
    a path takes) are what the answer's ``Retry-After`` and ``Allow`` say.

    A reason missing from the table is refused here, at construction: a typo never
    reaches a client as an undocumented reason, it fails loudly (a 500, logged).
    """

    def __init__(
        self,
        reason: str,
        message: str | None = None,
        *,
        retry_after: int | None = None,
        allowed: Iterable[str] = (),
    ) -> None:
        if reason not in REASONS:
            raise LookupError(f"{reason!r} is not a reason of core.errors.REASONS")
        super().__init__(message or reason)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.allowed = tuple(sorted(allowed))

"""The one place a refusal becomes an HTTP answer: status, headers and envelope bytes.

The status of each reason is read from ``core.errors.REASONS``, so no other module states
one for a refusal. Every error the service answers leaves through ``error_response``:
the API's handlers and the app's edge, the protocol's 431 and a replayed refused charge.
"""

from __future__ import annotations

import orjson

from flamel_usage.core.errors import REASONS, Refusal
from flamel_usage.http.routing import JSON_HEADERS, Response


def error_body(reason: str, message: str | None = None) -> bytes:
    """The envelope of every error answer; ``message`` is added only when there is one."""
    body: dict[str, object] = {"success": False, "code": REASONS[reason].status, "data": reason}
    if message:
        body["message"] = message
    return orjson.dumps(body)


def refusal_headers(refusal: Refusal) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` (the refusal's, else its reason's) and ``Allow``, when they apply."""
    headers = []
    retry_after = refusal.retry_after
    if retry_after is None:
        retry_after = REASONS[refusal.reason].retry_after
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    if refusal.allowed:
        headers.append((b"allow", ", ".join(refusal.allowed).encode()))
    return headers


def error_response(refusal: Refusal) -> Response:
    return Response(
        REASONS[refusal.reason].status,
        error_body(refusal.reason, refusal.message),
        [*JSON_HEADERS, *refusal_headers(refusal)],
    )

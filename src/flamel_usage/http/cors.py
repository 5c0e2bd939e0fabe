"""Cross-origin reads of ``GET /api/users/me/usage`` from allowlisted browser origins.

Off unless ``FLAMEL_CORS_ORIGINS`` names origins: then, and for that one route only, a
request whose ``Origin`` is on the list (exactly) gets ``Access-Control-Allow-Origin``
with that origin, and a preflight ``OPTIONS`` from it is answered. Credentials are never
allowed, so a page elsewhere can send an ``X-Api-Key`` it holds but never ride on a
signed-in user's ``connect.sid`` cookie. Every response of the route then says
``Vary: Origin``, so caches keep the answers to different origins apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from flamel_usage.core.errors import Refusal
from flamel_usage.http import guards
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response, empty_response

ROUTE = "/api/users/me/usage"
ALLOWED_METHODS = b"GET"
ALLOWED_HEADERS = b"X-Api-Key, Content-Type, X-Request-Id"
EXPOSED_HEADERS = b"Retry-After, X-Request-Id"
PREFLIGHT_MAX_AGE = b"600"
_VARY = (b"vary", b"Origin")
_METHODS = ("GET", "HEAD", "OPTIONS")


def origin_of(raw_headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in raw_headers:
        if name.lower() == b"origin":
            return value
    return None


def response_headers(allowed: frozenset[str], origin: bytes | None) -> list[tuple[bytes, bytes]]:
    """What every response of ``ROUTE`` adds while CORS is on."""
    if origin is None or origin.decode("latin-1") not in allowed:
        return [_VARY]
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-expose-headers", EXPOSED_HEADERS),
        _VARY,
    ]


async def preflight(request: Request, services: Services) -> Response:
    """``OPTIONS`` of ``ROUTE``, registered only while CORS is on."""
    origin = request.headers.get("origin")
    if origin is None or "access-control-request-method" not in request.headers:
        # Not a CORS preflight: OPTIONS is not a method of this route otherwise.
        raise Refusal("method_not_allowed", "OPTIONS is not allowed here", allowed=_METHODS)
    if origin not in services.settings.cors_origins:
        raise Refusal("origin_not_allowed", "this origin may not call the API from a browser")
    return empty_response(
        204,
        [
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-allow-headers", ALLOWED_HEADERS),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE),
        ],
    )


#: ``OPTIONS`` of ``ROUTE``, added to the app's routes only while CORS is on; public, for
#: a browser sends no credential with a preflight.
PREFLIGHT = guards.public("OPTIONS", ROUTE, preflight)

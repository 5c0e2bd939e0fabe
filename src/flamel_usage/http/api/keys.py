"""Self-service API keys: a signed-in user lists, makes and revokes their own keys.

The browser session (``connect.sid``) is the only credential here. A key cannot manage
keys: a stolen key must not mint itself successors or revoke its owner's other keys, so
a request that sends ``X-Api-Key`` (valid or not) is refused with ``session_required``;
a blank one counts as absent, as on ``GET /api/users/me/usage``.

Cross-site request forgery, as for the session's other writes (``/api/auth/login``,
``logout``): the cookie is ``SameSite=Lax``, so a browser sends it on no cross-site
POST or DELETE; POST takes ``application/json`` only, which no HTML form can send; a
cross-origin DELETE or JSON POST needs a CORS preflight that this server never grants
for these routes; and a request whose ``Origin`` names another site is refused with
``origin_not_allowed`` before it changes anything.
"""

from __future__ import annotations

from flamel_usage.auth import credentials as auth
from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import parse_id
from flamel_usage.http import security
from flamel_usage.http.api import usage as public
from flamel_usage.http.bodies.inbound import CreateKeyRequest
from flamel_usage.http.bodies.outbound import CreatedKey, KeyList, body_response
from flamel_usage.http.bodies.reading import read_body
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response, empty_response

ROUTE = "/api/users/me/keys"


async def session_user(request: Request, services: Services) -> int:
    """The signed-in user (our session or the platform's), refusing any request that
    carries an API key."""
    if request.headers.get("x-api-key", "").strip(" \t"):
        raise Refusal("session_required")
    signed_in = await public.signed_in_user(request, services)
    if signed_in is None:
        raise Refusal("not_logged_in")
    return signed_in[1]


async def _writer(request: Request, services: Services) -> int:
    """``session_user`` for a request that changes something: from our own origin only."""
    user_id = await session_user(request, services)
    if not security.same_origin(request):
        raise Refusal("origin_not_allowed", "keys can be changed from this site only")
    return user_id


async def list_my_keys(request: Request, services: Services) -> Response:
    user_id = await session_user(request, services)
    await services.last_used.flush(services.db)
    now = services.clock()
    async with services.db.read() as conn:
        found = await auth.list_keys(conn, user_id)
    return body_response(KeyList.of(found, now))


async def create_my_key(request: Request, services: Services) -> Response:
    user_id = await _writer(request, services)
    body = await read_body(request, CreateKeyRequest)
    async with services.db.transaction() as conn:
        issued = await auth.issue_key(
            conn,
            user_id,
            name=body.name,
            expires_at=body.expires_at,
            now=services.clock(),
            max_live=auth.MAX_LIVE_KEYS,
        )
    return body_response(CreatedKey.of(issued), 201)


async def revoke_my_key(request: Request, services: Services) -> Response:
    """Revoke one of the caller's keys; 204 again for a key already revoked."""
    user_id = await _writer(request, services)
    key_id = parse_id(request.params["keyId"], "keyId")
    async with services.db.transaction() as conn:
        await auth.revoke_key(conn, key_id, services.clock(), owner=user_id)
    return empty_response()


ROUTES = [
    ("GET", ROUTE, list_my_keys),
    ("POST", ROUTE, create_my_key),
    ("DELETE", ROUTE + "/{keyId}", revoke_my_key),
]

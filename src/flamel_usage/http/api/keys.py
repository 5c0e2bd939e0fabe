"""Self-service API keys: a signed-in user lists, makes and revokes their own keys.

The browser session (``connect.sid``) is the only credential here: the routes are
``session`` routes (``http/guards.py``), so a request that sends ``X-Api-Key`` is refused
with ``session_required`` before a handler runs.

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
from flamel_usage.http import guards, security
from flamel_usage.http.bodies.inbound import CreateKeyRequest
from flamel_usage.http.bodies.outbound import CreatedKey, KeyList, body_response
from flamel_usage.http.bodies.reading import read_body
from flamel_usage.http.context import Services
from flamel_usage.http.guards import Caller
from flamel_usage.http.routing import Request, Response, empty_response

ROUTE = "/api/users/me/keys"


def _require_same_origin(request: Request) -> None:
    """A request that changes something comes from our own origin only."""
    if not security.same_origin(request):
        raise Refusal("origin_not_allowed", "keys can be changed from this site only")


async def list_my_keys(request: Request, services: Services, caller: Caller) -> Response:
    await services.last_used.flush(services.db)
    async with services.db.read() as conn:
        found = await auth.list_keys(conn, caller.user_id)
    return body_response(KeyList.of(found, caller.now))


async def create_my_key(request: Request, services: Services, caller: Caller) -> Response:
    _require_same_origin(request)
    body = await read_body(request, CreateKeyRequest)
    async with services.db.transaction() as conn:
        issued = await auth.issue_key(
            conn,
            caller.user_id,
            name=body.name,
            expires_at=body.expires_at,
            now=caller.now,
            max_live=auth.MAX_LIVE_KEYS,
        )
    return body_response(CreatedKey.of(issued), 201)


async def revoke_my_key(request: Request, services: Services, caller: Caller) -> Response:
    """Revoke one of the caller's keys; 204 again for a key already revoked."""
    _require_same_origin(request)
    key_id = parse_id(request.params["keyId"], "keyId")
    async with services.db.transaction() as conn:
        await auth.revoke_key(conn, key_id, caller.now, owner=caller.user_id)
    return empty_response()


ROUTES = [
    guards.session("GET", ROUTE, list_my_keys),
    guards.session("POST", ROUTE, create_my_key),
    guards.session("DELETE", ROUTE + "/{keyId}", revoke_my_key),
]

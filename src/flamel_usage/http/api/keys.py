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
from flamel_usage.core.inputs import JsonObject, parse_id
from flamel_usage.http import guards, security
from flamel_usage.http.api.admin.accounts import created_key_json, key_json
from flamel_usage.http.context import Services
from flamel_usage.http.cors import OriginNotAllowed
from flamel_usage.http.guards import Caller
from flamel_usage.http.routing import Request, Response, empty_response, json_response

ROUTE = "/api/users/me/keys"


def _require_same_origin(request: Request) -> None:
    """A request that changes something comes from our own origin only."""
    if not security.same_origin(request):
        raise OriginNotAllowed("keys can be changed from this site only")


async def list_my_keys(request: Request, services: Services, caller: Caller) -> Response:
    await services.last_used.flush(services.db)
    async with services.db.read() as conn:
        found = await auth.list_keys(conn, caller.user_id)
    return json_response({"keys": [key_json(key, caller.now) for key in found]})


async def create_my_key(request: Request, services: Services, caller: Caller) -> Response:
    _require_same_origin(request)
    body = JsonObject(await request.json(), {"name", "expiresAt"})
    name = body.string("name", required=False, max_length=auth.MAX_KEY_NAME * 4)
    expires_at = body.instant("expiresAt")
    async with services.db.transaction() as conn:
        issued = await auth.issue_key(
            conn,
            caller.user_id,
            name=name,
            expires_at=expires_at,
            now=caller.now,
            max_live=auth.MAX_LIVE_KEYS,
        )
    return json_response(created_key_json(issued), 201)


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

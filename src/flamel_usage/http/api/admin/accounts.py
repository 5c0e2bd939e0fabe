"""The operator API under ``/api/admin/``: plans, users, keys, purchased credit, reconcile.

Every route is an ``admin`` route (``http/guards.py``): the router checks the bearer
token before a handler runs.
"""

from __future__ import annotations

from msgspec import UNSET

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.passwords import hash_new_password
from flamel_usage.core.inputs import parse_id
from flamel_usage.core.periods import from_micros
from flamel_usage.http import guards
from flamel_usage.http.bodies import inbound, outbound
from flamel_usage.http.bodies.outbound import body_response
from flamel_usage.http.bodies.reading import read_body
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response, empty_response, json_response
from flamel_usage.ledger import balances as ledger
from flamel_usage.ledger.reconcile import reconcile as reconcile_books
from flamel_usage.metering import idempotency, purchases

_REPLAYED = (b"idempotent-replayed", b"true")


async def create_plan(request: Request, services: Services) -> Response:
    body = await read_body(request, inbound.CreatePlanRequest)
    async with services.db.transaction() as conn:
        plan = await accounts.create_plan(
            conn,
            name=body.name,
            period_unit=body.period_unit,
            max_credit=body.max_credit,
            max_ttp=body.max_ttp_count,
            max_edit=body.max_edit_count,
            billing_mode=body.billing_mode or "prepaid",
            now=services.clock(),
        )
    return body_response(outbound.Plan.of(plan), 201)


async def list_plans(request: Request, services: Services) -> Response:
    async with services.db.read() as conn:
        plans = await accounts.list_plans(conn)
    return body_response(outbound.PlanList([outbound.Plan.of(plan) for plan in plans]))


async def create_user(request: Request, services: Services) -> Response:
    body = await read_body(request, inbound.CreateUserRequest)
    password = body.password
    password_hash = None if password is None else await hash_new_password(password)
    async with services.db.transaction() as conn:
        user = await accounts.create_user(
            conn,
            email=body.email,
            plan_name=body.plan,
            anchor=None if body.anchor is None else from_micros(body.anchor),
            password_hash=password_hash,
            now=services.clock(),
            zone=services.settings.timezone,
            external_id=accounts.external_id_value(body.external_id),
        )
    return body_response(outbound.User.of(user), 201)


async def get_user(request: Request, services: Services) -> Response:
    user_id = parse_id(request.params["userId"], "userId")
    async with services.db.read() as conn:
        user = await accounts.user_by_id(conn, user_id)
    return body_response(outbound.User.of(user))


async def update_user(request: Request, services: Services) -> Response:
    """Change the user's externalId (null takes it away); the user as it is now."""
    user_id = parse_id(request.params["userId"], "userId")
    body = await read_body(request, inbound.UpdateUserRequest)
    external_id = accounts.external_id_value(body.external_id)
    async with services.db.transaction() as conn:
        await accounts.set_external_id(conn, user_id, external_id)
        user = await accounts.user_by_id(conn, user_id)
    return body_response(outbound.User.of(user))


async def delete_user(request: Request, services: Services) -> Response:
    user_id = parse_id(request.params["userId"], "userId")
    async with services.db.transaction() as conn:
        await accounts.delete_user(conn, user_id, services.clock())
    return empty_response()


async def user_usage(request: Request, services: Services) -> Response:
    user_id = parse_id(request.params["userId"], "userId")
    now = services.clock()
    async with services.db.read() as conn:
        await accounts.live_user_id(conn, user_id)
        usage = await ledger.read_usage(conn, user_id, now, services.settings.timezone)
    return json_response(usage.to_dto())


async def create_key(request: Request, services: Services) -> Response:
    user_id = parse_id(request.params["userId"], "userId")
    body = await read_body(request, inbound.CreateKeyRequest)
    async with services.db.transaction() as conn:
        issued = await auth.issue_key(
            conn, user_id, expires_at=body.expires_at, name=body.name, now=services.clock()
        )
    return body_response(outbound.CreatedKey.of(issued), 201)


async def list_keys(request: Request, services: Services) -> Response:
    user_id = parse_id(request.params["userId"], "userId")
    await services.last_used.flush(services.db)
    now = services.clock()
    async with services.db.read() as conn:
        found = await auth.list_keys(conn, user_id)
    return body_response(outbound.KeyList.of(found, now))


async def update_key(request: Request, services: Services) -> Response:
    """Change the expiry, the name or both; a field left out stays as it is."""
    key_id = parse_id(request.params["keyId"], "keyId")
    body = await read_body(request, inbound.UpdateKeyRequest)
    async with services.db.transaction() as conn:
        if body.expires_at is not UNSET:
            await auth.set_key_expiry(conn, key_id, body.expires_at)
        if body.name is not UNSET:
            await auth.rename_key(conn, key_id, body.name)
    return empty_response()


async def revoke_key(request: Request, services: Services) -> Response:
    key_id = parse_id(request.params["keyId"], "keyId")
    async with services.db.transaction() as conn:
        await auth.revoke_key(conn, key_id, services.clock())
    return empty_response()


async def buy_credits(request: Request, services: Services) -> Response:
    """Sold once per ``Idempotency-Key`` when one is sent (optional, so that clients
    from before keys still buy); a replay answers the first answer, marked."""
    user_id = parse_id(request.params["userId"], "userId")
    sent_key = request.headers.get("idempotency-key")
    key = None if sent_key is None else idempotency.idempotency_key(sent_key)
    body = await read_body(request, inbound.BuyCreditsRequest)
    purchase_request = purchases.PurchaseRequest(user_id, body.amount, body.expires_at)
    async with services.db.transaction() as conn:
        bought = await purchases.buy_credits(
            conn,
            purchase_request,
            idempotency_key=key,
            now=services.clock(),
            zone=services.settings.timezone,
        )
    response = body_response(outbound.BuyCreditsResponse.of(bought.purchase, bought.usage), 201)
    if bought.replayed:
        response.headers.append(_REPLAYED)
    return response


async def change_plan(request: Request, services: Services) -> Response:
    user_id = parse_id(request.params["userId"], "userId")
    body = await read_body(request, inbound.ChangePlanRequest)
    now = services.clock()
    zone = services.settings.timezone
    async with services.db.transaction() as conn:
        await ledger.change_plan(
            conn,
            user_id,
            body.plan,
            at_next_period=body.effective == "next_period",
            now=now,
            zone=zone,
            thresholds=services.settings.alert_thresholds,
        )
        subscription = await accounts.subscription(conn, user_id)
        usage = await ledger.read_usage(conn, user_id, now, zone)
    return body_response(outbound.ChangePlanResponse.of(subscription, usage))


async def reconcile(request: Request, services: Services) -> Response:
    async with services.db.read() as conn:
        problems = await reconcile_books(conn, services.settings.timezone)
    return body_response(outbound.ReconcileReport(not problems, problems))


ROUTES = [
    guards.admin("POST", "/api/admin/plans", create_plan),
    guards.admin("GET", "/api/admin/plans", list_plans),
    guards.admin("POST", "/api/admin/users", create_user),
    guards.admin("GET", "/api/admin/users/{userId}", get_user),
    guards.admin("PATCH", "/api/admin/users/{userId}", update_user),
    guards.admin("DELETE", "/api/admin/users/{userId}", delete_user),
    guards.admin("GET", "/api/admin/users/{userId}/usage", user_usage),
    guards.admin("POST", "/api/admin/users/{userId}/keys", create_key),
    guards.admin("GET", "/api/admin/users/{userId}/keys", list_keys),
    guards.admin("PATCH", "/api/admin/keys/{keyId}", update_key),
    guards.admin("POST", "/api/admin/keys/{keyId}/revoke", revoke_key),
    guards.admin("POST", "/api/admin/users/{userId}/credits", buy_credits),
    guards.admin("PUT", "/api/admin/users/{userId}/plan", change_plan),
    guards.admin("GET", "/api/admin/reconcile", reconcile),
]

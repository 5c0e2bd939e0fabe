"""The operator API under ``/api/admin/``: plans, users, keys, purchased credit, reconcile.

Guarded by one bearer token. With no token configured every call is refused, so a
service started without thinking about it never exposes the books.
"""

from __future__ import annotations

import hmac

from flamel_usage.accounts import users as accounts
from flamel_usage.accounts.users import Plan
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.passwords import hash_new_password
from flamel_usage.core.errors import ApiError
from flamel_usage.core.inputs import JsonObject, parse_id
from flamel_usage.core.money import credits_value
from flamel_usage.core.periods import from_micros
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response, empty_response, json_response
from flamel_usage.ledger import balances as ledger


class AdminUnauthorized(ApiError):
    status, reason = 401, "admin_unauthorized"


class AdminDisabled(ApiError):
    status, reason = 403, "admin_disabled"


def require_admin(request: Request, services: Services) -> None:
    token = services.settings.admin_token
    if token is None:
        raise AdminDisabled("no admin token is configured on this server")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.reveal().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise AdminUnauthorized("send Authorization: Bearer <admin token>")


def _instant(us: int | None) -> str | None:
    return None if us is None else from_micros(us).isoformat()


def plan_json(plan: Plan) -> dict[str, object]:
    return {
        "id": plan.id,
        "name": plan.name,
        "periodUnit": plan.period_unit,
        "maxCredit": credits_value(plan.max_credit),
        "maxTtpCount": plan.max_ttp,
        "maxEditCount": plan.max_edit,
        "billingMode": plan.billing_mode,
    }


async def create_plan(request: Request, services: Services) -> Response:
    require_admin(request, services)
    body = JsonObject(
        await request.json(),
        {"name", "periodUnit", "maxCredit", "maxTtpCount", "maxEditCount", "billingMode"},
    )
    fields = {
        "name": body.required_string("name", max_length=64),
        "period_unit": body.required_string("periodUnit", max_length=16),
        "max_credit": body.credits("maxCredit", allow_zero=True),
        "max_ttp": body.count_limit("maxTtpCount"),
        "max_edit": body.count_limit("maxEditCount"),
        "billing_mode": body.string("billingMode", required=False, max_length=16) or "prepaid",
    }
    async with services.db.transaction() as conn:
        plan = await accounts.create_plan(conn, now=services.clock(), **fields)  # type: ignore[arg-type]
    return json_response(plan_json(plan), 201)


async def list_plans(request: Request, services: Services) -> Response:
    require_admin(request, services)
    async with services.db.read() as conn:
        plans = await accounts.list_plans(conn)
    return json_response({"plans": [plan_json(plan) for plan in plans]})


def user_json(user: accounts.User) -> dict[str, object]:
    return {
        "id": user.id,
        "email": user.email,
        "plan": user.plan_name,
        "anchor": user.anchor.isoformat(),
        "externalId": user.external_id,
    }


async def create_user(request: Request, services: Services) -> Response:
    require_admin(request, services)
    body = JsonObject(await request.json(), {"email", "plan", "anchor", "password", "externalId"})
    email = body.required_string("email", max_length=254)
    plan = body.required_string("plan", max_length=64)
    anchor = body.instant("anchor")
    external_id = accounts.external_id_value(body.value("externalId"))
    password = body.string("password", required=False)
    password_hash = None if password is None else await hash_new_password(password)
    async with services.db.transaction() as conn:
        user = await accounts.create_user(
            conn,
            email=email,
            plan_name=plan,
            anchor=None if anchor is None else from_micros(anchor),
            password_hash=password_hash,
            now=services.clock(),
            zone=services.settings.timezone,
            external_id=external_id,
        )
    return json_response(user_json(user), 201)


async def update_user(request: Request, services: Services) -> Response:
    """Change the user's externalId (null takes it away); the user as it is now."""
    require_admin(request, services)
    user_id = parse_id(request.params["userId"], "userId")
    body = JsonObject(await request.json(), {"externalId"})
    if not body.has("externalId"):
        raise ApiError("externalId is required (null removes it)")
    external_id = accounts.external_id_value(body.value("externalId"))
    async with services.db.transaction() as conn:
        await accounts.set_external_id(conn, user_id, external_id)
        user = await accounts.user_by_id(conn, user_id)
    return json_response(user_json(user))


async def delete_user(request: Request, services: Services) -> Response:
    require_admin(request, services)
    user_id = parse_id(request.params["userId"], "userId")
    async with services.db.transaction() as conn:
        await accounts.delete_user(conn, user_id, services.clock())
    return empty_response()


async def user_usage(request: Request, services: Services) -> Response:
    require_admin(request, services)
    user_id = parse_id(request.params["userId"], "userId")
    now = services.clock()
    async with services.db.read() as conn:
        await accounts.live_user_id(conn, user_id)
        usage = await ledger.read_usage(conn, user_id, now, services.settings.timezone)
    return json_response(usage.to_dto())


def created_key_json(issued: auth.IssuedKey) -> dict[str, object]:
    """A new key, with its secret: the one answer that ever shows it."""
    return {
        "id": issued.id,
        "userId": issued.user_id,
        "key": issued.key,
        "prefix": issued.prefix,
        "name": issued.name,
        "createdAt": _instant(issued.created_at),
        "expiresAt": _instant(issued.expires_at),
    }


def key_json(key: auth.KeyInfo, now: int) -> dict[str, object]:
    """A key in a listing, the operator's and its owner's alike: never the secret."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "state": key.state(now),
        "createdAt": _instant(key.created_at),
        "expiresAt": _instant(key.expires_at),
        "revokedAt": _instant(key.revoked_at),
        "lastUsedAt": _instant(key.last_used_at),
    }


async def create_key(request: Request, services: Services) -> Response:
    require_admin(request, services)
    user_id = parse_id(request.params["userId"], "userId")
    body = JsonObject(await request.json(), {"expiresAt", "name"})
    expires_at = body.instant("expiresAt")
    name = body.string("name", required=False, max_length=auth.MAX_KEY_NAME * 4)
    async with services.db.transaction() as conn:
        issued = await auth.issue_key(
            conn, user_id, expires_at=expires_at, name=name, now=services.clock()
        )
    return json_response(created_key_json(issued), 201)


async def list_keys(request: Request, services: Services) -> Response:
    require_admin(request, services)
    user_id = parse_id(request.params["userId"], "userId")
    await services.last_used.flush(services.db)
    now = services.clock()
    async with services.db.read() as conn:
        found = await auth.list_keys(conn, user_id)
    return json_response({"keys": [key_json(key, now) for key in found]})


async def update_key(request: Request, services: Services) -> Response:
    """Change the expiry, the name or both; a field left out stays as it is."""
    require_admin(request, services)
    key_id = parse_id(request.params["keyId"], "keyId")
    body = JsonObject(await request.json(), {"expiresAt", "name"})
    if not body.has("expiresAt") and not body.has("name"):
        raise ApiError("expiresAt or name is required (null removes the expiry, the name)")
    expires_at = body.instant("expiresAt")
    name = body.string("name", required=False, max_length=auth.MAX_KEY_NAME * 4)
    async with services.db.transaction() as conn:
        if body.has("expiresAt"):
            await auth.set_key_expiry(conn, key_id, expires_at)
        if body.has("name"):
            await auth.rename_key(conn, key_id, name)
    return empty_response()


async def revoke_key(request: Request, services: Services) -> Response:
    require_admin(request, services)
    key_id = parse_id(request.params["keyId"], "keyId")
    async with services.db.transaction() as conn:
        await auth.revoke_key(conn, key_id, services.clock())
    return empty_response()


async def buy_credits(request: Request, services: Services) -> Response:
    require_admin(request, services)
    user_id = parse_id(request.params["userId"], "userId")
    body = JsonObject(await request.json(), {"amount", "expiresAt"})
    amount = body.credits("amount")
    expires_at = body.instant("expiresAt")
    now = services.clock()
    zone = services.settings.timezone
    async with services.db.transaction() as conn:
        purchase = await ledger.buy_credits(
            conn, user_id, amount, expires_at=expires_at, now=now, zone=zone
        )
        usage = await ledger.read_usage(conn, user_id, now, zone)
    return json_response(
        {
            "purchase": {
                "id": purchase.id,
                "amount": credits_value(purchase.amount),
                "expiresAt": _instant(purchase.expires_at),
                "createdAt": _instant(purchase.created_at),
            },
            "usage": usage.to_dto(),
        },
        201,
    )


async def change_plan(request: Request, services: Services) -> Response:
    require_admin(request, services)
    user_id = parse_id(request.params["userId"], "userId")
    body = JsonObject(await request.json(), {"plan", "effective"})
    plan = body.required_string("plan", max_length=64)
    effective = body.string("effective", required=False, max_length=16) or "now"
    if effective not in ("now", "next_period"):
        raise ApiError("effective must be 'now' or 'next_period'")
    now = services.clock()
    zone = services.settings.timezone
    async with services.db.transaction() as conn:
        await ledger.change_plan(
            conn, user_id, plan, at_next_period=effective == "next_period", now=now, zone=zone
        )
        subscription = await accounts.subscription(conn, user_id)
        usage = await ledger.read_usage(conn, user_id, now, zone)
    return json_response(
        {
            "plan": subscription.plan,
            "pendingPlan": subscription.pending_plan,
            "usage": usage.to_dto(),
        }
    )


async def reconcile(request: Request, services: Services) -> Response:
    require_admin(request, services)
    async with services.db.read() as conn:
        problems = await ledger.reconcile(conn)
    return json_response({"ok": not problems, "problems": problems})


ROUTES = [
    ("POST", "/api/admin/plans", create_plan),
    ("GET", "/api/admin/plans", list_plans),
    ("POST", "/api/admin/users", create_user),
    ("PATCH", "/api/admin/users/{userId}", update_user),
    ("DELETE", "/api/admin/users/{userId}", delete_user),
    ("GET", "/api/admin/users/{userId}/usage", user_usage),
    ("POST", "/api/admin/users/{userId}/keys", create_key),
    ("GET", "/api/admin/users/{userId}/keys", list_keys),
    ("PATCH", "/api/admin/keys/{keyId}", update_key),
    ("POST", "/api/admin/keys/{keyId}/revoke", revoke_key),
    ("POST", "/api/admin/users/{userId}/credits", buy_credits),
    ("PUT", "/api/admin/users/{userId}/plan", change_plan),
    ("GET", "/api/admin/reconcile", reconcile),
]

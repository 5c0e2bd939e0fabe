"""Every operation of ours, declared once: the table the document's paths are built from.

A row names its method and path, what Swagger UI shows (summary, tag, description),
who may call it (its ``Audience``: security scheme and the refusals that come with it),
its body and answer declarations (``http/bodies``), and the other reasons it can be
refused (``core.errors.REASONS``). Path parameters come from ``parameters``.
``tests/test_openapi.py`` holds the table to the routes the app serves, both ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flamel_usage.http.bodies import inbound, outbound
from flamel_usage.http.openapi import texts
from flamel_usage.http.openapi.parameters import (
    HISTORY_PARAMETERS,
    HOLD_IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    PURCHASE_IDEMPOTENCY_KEY_HEADER,
)
from flamel_usage.http.openapi.responses import (
    BODY_ID,
    CLEAR_SESSION_COOKIE,
    HISTORY_CSV,
    REPLAYED,
    RETRY_AFTER,
    SET_SESSION_COOKIE,
    Answer,
    link,
)

#: The schemes of our audiences; ``apiKey`` (the X-Api-Key header) is the seed's.
SECURITY_SCHEMES: dict[str, Any] = {
    # Referenced by the seed operation but missing from the seed's components.
    "connect.sid": {
        "type": "apiKey",
        "in": "cookie",
        "name": "connect.sid",
        "description": "Session cookie in express-session's format: set by POST"
        " /api/auth/login, or by the platform's Express app when the server reads its"
        " session store (FLAMEL_SESSION_STORE). Named connect.sid unless the server sets"
        " FLAMEL_SESSION_COOKIE_NAME.",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's admin token from the server configuration.",
    },
}


class Audience(NamedTuple):
    """Who calls a group of operations: its tag and operationId prefix, the credentials
    it sends, and the refusals every operation of the group can answer."""

    tag: str
    controller: str
    security: list[dict[str, list[str]]]
    refusals: tuple[str, ...] = ()


ADMIN = Audience(
    "admin",
    "AdminController",
    [{"adminToken": []}],
    ("bad_request", "admin_unauthorized", "admin_disabled"),
)
#: The self-service keys: the session cookie only, never an API key.
KEY_OWNER = Audience(
    "keys", "KeysController", [{"connect.sid": []}], ("session_required", "not_logged_in")
)
#: A customer, with the usage read's credentials.
CUSTOMER = Audience("users", "UsersApiController", [{"connect.sid": []}, {"apiKey": []}])
SIGNING_IN = Audience("auth", "AuthController", [])
SIGNED_IN = Audience("auth", "AuthController", [{"connect.sid": []}])


@dataclass(frozen=True)
class Operation:
    """One row of the table. ``error_headers`` are response headers of error statuses;
    ``parameters`` (headers, query fields) follow the path parameters."""

    method: str
    path: str
    name: str
    summary: str
    audience: Audience
    answer: Answer
    body: type[inbound.RequestBody] | None = None
    refusals: tuple[str, ...] = ()
    error_headers: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    parameters: tuple[Mapping[str, Any], ...] = ()
    description: str | None = None

    @property
    def operation_id(self) -> str:
        return f"{self.audience.controller}_{self.name}"


_USER = "/api/admin/users/{userId}"
_KEY = "/api/admin/keys/{keyId}"
_CHARGES = "/api/admin/charges"
_HOLDS = "/api/admin/holds"
_MY_KEYS = "/api/users/me/keys"
_USAGE = "UsageInfoDto"
_WEBHOOKS = "/api/admin/webhooks"
_WEBHOOK = "/api/admin/webhooks/{webhookId}"


def _links_to_user(expression: str, whose: str) -> dict[str, Any]:
    """Links to every operation on one user, naming them by ``expression``."""
    return {
        name: link(f"AdminController_{name}", f"{name} for {whose}.", userId=expression)
        for name in (
            "getUser",
            "getUserUsage",
            "listKeys",
            "createKey",
            "buyCredits",
            "changePlan",
            "updateUser",
            "deleteUser",
        )
    }


_CREATED_KEY_LINKS = {
    "updateKey": link("AdminController_updateKey", "Change this key's expiry.", keyId=BODY_ID),
    "revokeKey": link("AdminController_revokeKey", "Revoke this key.", keyId=BODY_ID),
    "listKeys": link(
        "AdminController_listKeys",
        "The owner's keys, this one among them.",
        userId="$response.body#/userId",
    ),
}
_DELETED_USER_LINKS = {
    name: link(
        f"AdminController_{name}",
        f"{name} for the deleted user: 404 user_not_found.",
        userId="$request.path.userId",
    )
    for name in ("getUser", "getUserUsage", "listKeys", "createKey")
}
_HOLD_LINKS = {
    name: link(
        f"AdminController_{name}", f"{name} this hold.", holdId="$response.body#/hold/holdId"
    )
    for name in ("settleHold", "releaseHold")
}

_CHARGE_LINKS = {
    "refundCharge": link(
        "AdminController_refundCharge",
        "Refund this charge, named by its Idempotency-Key.",
        idempotencyKey="$request.header.Idempotency-Key",
    ),
    "getUserUsage": link(
        "AdminController_getUserUsage",
        "The charged user's usage.",
        userId="$response.body#/charge/userId",
    ),
}

#: Our operations, in the order Swagger UI shows them.
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/api/users/me/usage/history",
        "getMyUsageHistory",
        "Get my usage per day or hour",
        CUSTOMER,
        Answer(200, "The buckets of the range", outbound.UsageHistory, other_media=HISTORY_CSV),
        refusals=(
            *("invalid_range", "range_too_long", "invalid_granularity", "invalid_format"),
            *("wrong_api_key", "api_key_expired", "not_logged_in", "too_many_requests"),
        ),
        error_headers={429: RETRY_AFTER},
        parameters=HISTORY_PARAMETERS,
        description=texts.HISTORY,
    ),
    Operation(
        "GET",
        _MY_KEYS,
        "listMyKeys",
        "List your API keys (without secrets)",
        KEY_OWNER,
        Answer(200, "Your keys, oldest first, revoked and expired ones too", outbound.KeyList),
        description=texts.MY_KEYS,
    ),
    Operation(
        "POST",
        _MY_KEYS,
        "createMyKey",
        "Create an API key for yourself",
        KEY_OWNER,
        Answer(
            201,
            "Created",
            outbound.CreatedKey,
            links={
                "revokeMyKey": link("KeysController_revokeMyKey", "Revoke this key.", keyId=BODY_ID)
            },
        ),
        body=inbound.CreateKeyRequest,
        refusals=("origin_not_allowed", "too_many_keys"),
        description=texts.CREATE_MY_KEY,
    ),
    Operation(
        "DELETE",
        _MY_KEYS + "/{keyId}",
        "revokeMyKey",
        "Revoke one of your API keys",
        KEY_OWNER,
        Answer(204, "Revoked"),
        refusals=("bad_request", "origin_not_allowed", "key_not_found"),
        description=texts.REVOKE_MY_KEY,
    ),
    Operation(
        "POST",
        "/api/auth/login",
        "login",
        "Log in with email and password",
        SIGNING_IN,
        Answer(200, "Logged in", outbound.LoginResponse, headers=SET_SESSION_COOKIE),
        body=inbound.LoginRequest,
        refusals=("invalid_credentials", "not_found", "too_many_requests"),
        error_headers={429: RETRY_AFTER},
        description="Sets the connect.sid session cookie that GET /api/users/me/usage accepts. "
        + texts.OWN_SIGN_IN_ONLY,
    ),
    Operation(
        "POST",
        "/api/auth/logout",
        "logout",
        "Log out",
        SIGNED_IN,
        Answer(204, "Logged out", headers=CLEAR_SESSION_COOKIE),
        refusals=("not_found",),
        description="Deletes the session on the server and clears the cookie. "
        + texts.OWN_SIGN_IN_ONLY,
    ),
    Operation(
        "POST",
        "/api/admin/plans",
        "createPlan",
        "Create a plan",
        ADMIN,
        Answer(201, "Created", outbound.Plan),
        body=inbound.CreatePlanRequest,
        refusals=("plan_exists",),
    ),
    Operation(
        "GET",
        "/api/admin/plans",
        "listPlans",
        "List plans",
        ADMIN,
        Answer(200, "Plans", outbound.PlanList),
    ),
    Operation(
        "POST",
        "/api/admin/users",
        "createUser",
        "Create a user subscribed to a plan",
        ADMIN,
        Answer(201, "Created", outbound.User, links=_links_to_user(BODY_ID, "this user")),
        body=inbound.CreateUserRequest,
        refusals=("plan_not_found", "user_exists"),
    ),
    Operation(
        "GET",
        _USER,
        "getUser",
        "Read a user: email, plan, anchor and externalId",
        ADMIN,
        Answer(200, "The user", outbound.User),
        refusals=("user_not_found",),
    ),
    Operation(
        "PATCH",
        _USER,
        "updateUser",
        "Change a user's externalId",
        ADMIN,
        Answer(200, "Updated", outbound.User),
        body=inbound.UpdateUserRequest,
        refusals=("user_not_found", "user_exists"),
        description="The platform's sessions name their user by it (FLAMEL_SESSION_STORE)."
        " The answer is the user as it is now.",
    ),
    Operation(
        "DELETE",
        _USER,
        "deleteUser",
        "Delete a user",
        ADMIN,
        Answer(204, "Deleted", links=_DELETED_USER_LINKS),
        refusals=("user_not_found",),
        description="Their API keys stop working at once.",
    ),
    Operation(
        "GET",
        f"{_USER}/usage",
        "getUserUsage",
        "Get a user's usage",
        ADMIN,
        Answer(200, "Usage", _USAGE),
        refusals=("user_not_found",),
        description="The same body GET /api/users/me/usage returns to that user.",
    ),
    Operation(
        "POST",
        f"{_USER}/keys",
        "createKey",
        "Create an API key",
        ADMIN,
        Answer(201, "Created", outbound.CreatedKey, links=_CREATED_KEY_LINKS),
        body=inbound.CreateKeyRequest,
        refusals=("user_not_found",),
        description="The secret is in this response only; the server keeps just its hash.",
    ),
    Operation(
        "GET",
        f"{_USER}/keys",
        "listKeys",
        "List a user's API keys (without secrets)",
        ADMIN,
        Answer(200, "Keys", outbound.KeyList),
        refusals=("user_not_found",),
    ),
    Operation(
        "PATCH",
        _KEY,
        "updateKey",
        "Change an API key's expiry or name",
        ADMIN,
        Answer(204, "Updated"),
        body=inbound.UpdateKeyRequest,
        refusals=("key_not_found",),
    ),
    Operation(
        "POST",
        f"{_KEY}/revoke",
        "revokeKey",
        "Revoke an API key",
        ADMIN,
        Answer(204, "Revoked"),
        refusals=("key_not_found",),
    ),
    Operation(
        "POST",
        f"{_USER}/credits",
        "buyCredits",
        "Add purchased credit",
        ADMIN,
        Answer(
            201,
            "Bought; the user's usage after the purchase",
            outbound.BuyCreditsResponse,
            headers=REPLAYED,
        ),
        body=inbound.BuyCreditsRequest,
        refusals=("user_not_found", "invalid_idempotency_key", "idempotency_key_reused"),
        parameters=(PURCHASE_IDEMPOTENCY_KEY_HEADER,),
        description=texts.BUY_CREDITS,
    ),
    Operation(
        "PUT",
        f"{_USER}/plan",
        "changePlan",
        "Move a user to another plan",
        ADMIN,
        Answer(200, "Changed; the user's usage after the change", outbound.ChangePlanResponse),
        body=inbound.ChangePlanRequest,
        refusals=("user_not_found", "plan_not_found"),
        description=texts.CHANGE_PLAN,
    ),
    Operation(
        "GET",
        "/api/admin/reconcile",
        "reconcile",
        "Check stored balances against the ledger",
        ADMIN,
        Answer(200, "Report", outbound.ReconcileReport),
    ),
    Operation(
        "POST",
        _CHARGES,
        "createCharge",
        "Charge an operation to a user",
        ADMIN,
        Answer(
            201,
            "Charged; the user's usage after the charge",
            outbound.ChargeResult,
            headers=REPLAYED,
            links=_CHARGE_LINKS,
        ),
        body=inbound.CreateChargeRequest,
        refusals=(
            *("unknown_kind", "invalid_idempotency_key", "insufficient_credit"),
            *("user_not_found", "idempotency_key_reused"),
            *("ttp_limit_exceeded", "edit_limit_exceeded"),
        ),
        error_headers={402: REPLAYED, 429: REPLAYED},
        parameters=(IDEMPOTENCY_KEY_HEADER,),
        description=texts.CHARGE,
    ),
    Operation(
        "POST",
        f"{_CHARGES}/{{idempotencyKey}}/refund",
        "refundCharge",
        "Refund a charge",
        ADMIN,
        Answer(200, "Refunded; the user's usage after the refund", outbound.ChargeResult),
        refusals=(
            *("invalid_idempotency_key", "charge_not_found"),
            *("already_refunded", "not_refundable"),
        ),
        description=texts.REFUND,
    ),
    Operation(
        "POST",
        _HOLDS,
        "createHold",
        "Hold credit for a long operation",
        ADMIN,
        Answer(
            201,
            "Held; the user's usage with the hold taken",
            outbound.HoldResult,
            headers=REPLAYED,
            links=_HOLD_LINKS,
        ),
        body=inbound.CreateHoldRequest,
        refusals=(
            *("unknown_kind", "invalid_idempotency_key", "insufficient_credit"),
            *("user_not_found", "idempotency_key_reused"),
            *("ttp_limit_exceeded", "edit_limit_exceeded"),
        ),
        error_headers={402: REPLAYED, 429: REPLAYED},
        parameters=(HOLD_IDEMPOTENCY_KEY_HEADER,),
        description=texts.HOLD,
    ),
    Operation(
        "POST",
        f"{_HOLDS}/{{holdId}}/settle",
        "settleHold",
        "Settle a hold with the actual cost",
        ADMIN,
        Answer(200, "Settled; the user's usage after", outbound.HoldResult, headers=REPLAYED),
        body=inbound.SettleHoldRequest,
        refusals=("hold_not_found", "hold_not_active"),
        description=texts.SETTLE_HOLD,
    ),
    Operation(
        "POST",
        f"{_HOLDS}/{{holdId}}/release",
        "releaseHold",
        "Release a hold: everything goes back",
        ADMIN,
        Answer(200, "Released; the user's usage after", outbound.HoldResult, headers=REPLAYED),
        refusals=("hold_not_found", "hold_not_active"),
        description=texts.RELEASE_HOLD,
    ),
    Operation(
        "GET",
        f"{_USER}/holds",
        "listHolds",
        "List a user's active holds",
        ADMIN,
        Answer(200, "Active holds", outbound.HoldList),
        refusals=("user_not_found",),
    ),
    Operation(
        "POST",
        _WEBHOOKS,
        "createWebhook",
        "Register a webhook endpoint",
        ADMIN,
        Answer(
            201, "Registered; the secret is in this answer only", outbound.CreatedWebhookEndpoint
        ),
        body=inbound.CreateWebhookRequest,
        description=texts.CREATE_WEBHOOK,
    ),
    Operation(
        "GET",
        _WEBHOOKS,
        "listWebhooks",
        "List webhook endpoints (without secrets)",
        ADMIN,
        Answer(200, "Endpoints", outbound.WebhookEndpointList),
    ),
    Operation(
        "DELETE",
        _WEBHOOK,
        "deleteWebhook",
        "Delete a webhook endpoint and its delivery log",
        ADMIN,
        Answer(204, "Deleted"),
        refusals=("not_found",),
    ),
    Operation(
        "POST",
        f"{_WEBHOOK}/rotate",
        "rotateWebhookSecret",
        "Give a webhook endpoint a new signing secret",
        ADMIN,
        Answer(200, "The new secret, shown in this answer only", outbound.WebhookSecret),
        refusals=("not_found",),
        description="Every send from now on, retries included, is signed with the new secret.",
    ),
    Operation(
        "GET",
        f"{_WEBHOOK}/deliveries",
        "listWebhookDeliveries",
        "A webhook endpoint's delivery log, newest first",
        ADMIN,
        Answer(200, "Deliveries (the latest 500)", outbound.WebhookDeliveryList),
        refusals=("not_found",),
    ),
    Operation(
        "POST",
        f"{_WEBHOOK}/deliveries/{{deliveryId}}/redeliver",
        "redeliverWebhook",
        "Send a delivery again",
        ADMIN,
        Answer(202, "Queued to be sent now", outbound.WebhookDelivery),
        refusals=("not_found",),
        description="Same webhook-id and body, retried for another day; enables the endpoint"
        " again if it was disabled.",
    ),
)

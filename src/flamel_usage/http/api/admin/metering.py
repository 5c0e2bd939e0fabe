"""Metering over HTTP: what the platform's services call to charge and refund operations."""

from __future__ import annotations

from msgspec import UNSET

from flamel_usage.http.api.admin.accounts import require_admin
from flamel_usage.http.bodies.inbound import CreateChargeRequest
from flamel_usage.http.bodies.reading import read_body
from flamel_usage.http.context import Services
from flamel_usage.http.metrics import charge_outcome
from flamel_usage.http.routing import JSON_HEADERS, Request, Response
from flamel_usage.metering import charges


async def create_charge(request: Request, services: Services) -> Response:
    require_admin(request, services)
    key = charges.idempotency_key(request.headers.get("idempotency-key"))
    body = await read_body(request, CreateChargeRequest)
    charge_request = charges.ChargeRequest(
        user_id=body.user_id, kind=body.kind, cost=None if body.cost is UNSET else body.cost
    )
    async with services.db.transaction() as conn:
        outcome = await charges.charge(
            conn,
            charge_request,
            idempotency_key=key,
            costs=services.settings.operation_costs,
            now=services.clock(),
            zone=services.settings.timezone,
        )
    services.metrics.charge(charge_request.kind, charge_outcome(outcome))
    replayed = [(b"idempotent-replayed", b"true")] if outcome.replayed else []
    return Response(outcome.status, outcome.body, [*JSON_HEADERS, *replayed])


async def refund_charge(request: Request, services: Services) -> Response:
    require_admin(request, services)
    key = charges.idempotency_key(request.params["idempotencyKey"])
    async with services.db.transaction() as conn:
        body = await charges.refund(
            conn, key, now=services.clock(), zone=services.settings.timezone
        )
    return Response(200, body, list(JSON_HEADERS))


ROUTES = [
    ("POST", "/api/admin/charges", create_charge),
    ("POST", "/api/admin/charges/{idempotencyKey}/refund", refund_charge),
]

"""Metering over HTTP: what the platform's services call to charge and refund operations.

The one place a charge's or refund's outcome becomes an answer: ``charge_answer`` and
``refund_answer`` render it (the CLI prints the same rendering). A replayed outcome is
rendered like the first, so a replay answers byte for byte what the first request got.
"""

from __future__ import annotations

from typing import Any

import orjson

from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import JsonObject
from flamel_usage.core.money import credits_value
from flamel_usage.core.periods import from_micros
from flamel_usage.http.api.admin.accounts import require_admin
from flamel_usage.http.context import Services
from flamel_usage.http.metrics import charge_outcome
from flamel_usage.http.render import error_response
from flamel_usage.http.routing import JSON_HEADERS, Request, Response
from flamel_usage.metering import charges, idempotency, refunds
from flamel_usage.metering.outcomes import Charge, Charged, ChargeOutcome, Refunded

_REPLAYED = (b"idempotent-replayed", b"true")


async def create_charge(request: Request, services: Services) -> Response:
    require_admin(request, services)
    key = idempotency.idempotency_key(request.headers.get("idempotency-key"))
    body = JsonObject(await request.json(), {"userId", "kind", "cost"})
    charge_request = charges.ChargeRequest(
        user_id=body.positive_int("userId"),
        kind=body.required_string("kind", max_length=32),
        cost=body.credits("cost") if body.has("cost") else None,
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
    return charge_answer(outcome)


async def refund_charge(request: Request, services: Services) -> Response:
    require_admin(request, services)
    key = idempotency.idempotency_key(request.params["idempotencyKey"])
    async with services.db.transaction() as conn:
        refunded = await refunds.refund(
            conn, key, now=services.clock(), zone=services.settings.timezone
        )
    return refund_answer(refunded)


def charge_answer(outcome: ChargeOutcome) -> Response:
    """``201`` with the charge and the usage after it, or the refusal's error answer;
    ``Idempotent-Replayed: true`` when the outcome is the key's recorded one."""
    if isinstance(outcome, Charged):
        body = _charge_body(outcome.charge, outcome.usage.to_dto())
        response = Response(201, body, list(JSON_HEADERS))
    else:
        response = error_response(Refusal(outcome.reason, outcome.message))
    if outcome.replayed:
        response.headers.append(_REPLAYED)
    return response


def refund_answer(refunded: Refunded) -> Response:
    body = _charge_body(refunded.charge, refunded.usage.to_dto())
    return Response(200, body, list(JSON_HEADERS))


def _charge_body(charge: Charge, usage: dict[str, Any]) -> bytes:
    def instant(us: int | None) -> str | None:
        return None if us is None else from_micros(us).isoformat()

    return orjson.dumps(
        {
            "charge": {
                "id": charge.id,
                "idempotencyKey": charge.idempotency_key,
                "userId": charge.user_id,
                "kind": charge.kind,
                "cost": credits_value(charge.cost),
                "fromPlanCredit": credits_value(charge.from_plan),
                "fromPurchasedCredit": credits_value(charge.from_purchased),
                "postpaid": credits_value(charge.postpaid),
                "createdAt": instant(charge.created_at),
                "refundedAt": instant(charge.refunded_at),
            },
            "usage": usage,
        }
    )


ROUTES = [
    ("POST", "/api/admin/charges", create_charge),
    ("POST", "/api/admin/charges/{idempotencyKey}/refund", refund_charge),
]

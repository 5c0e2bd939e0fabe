"""Metering over HTTP: what the platform's services call to charge and refund operations.

The one place a charge's or refund's outcome becomes an answer: ``charge_answer`` and
``refund_answer`` render it (the CLI prints the same rendering). A replayed outcome is
rendered like the first, so a replay answers byte for byte what the first request got.
"""

from __future__ import annotations

from msgspec import UNSET

from flamel_usage.core.errors import Refusal
from flamel_usage.core.money import credits_value
from flamel_usage.core.periods import from_micros
from flamel_usage.http import guards
from flamel_usage.http.bodies import outbound
from flamel_usage.http.bodies.inbound import CreateChargeRequest
from flamel_usage.http.bodies.outbound import body_response, usage_dto
from flamel_usage.http.bodies.reading import read_body
from flamel_usage.http.context import Services
from flamel_usage.http.metrics import charge_outcome
from flamel_usage.http.render import error_response
from flamel_usage.http.routing import Request, Response
from flamel_usage.ledger.balances import Usage
from flamel_usage.metering import charges, idempotency, refunds
from flamel_usage.metering.outcomes import Charge, Charged, ChargeOutcome, Refunded

_REPLAYED = (b"idempotent-replayed", b"true")


async def create_charge(request: Request, services: Services) -> Response:
    key = idempotency.idempotency_key(request.headers.get("idempotency-key"))
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
            thresholds=services.settings.alert_thresholds,
        )
    services.metrics.charge(charge_request.kind, charge_outcome(outcome))
    return charge_answer(outcome)


async def refund_charge(request: Request, services: Services) -> Response:
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
        response = body_response(_result(outcome.charge, outcome.usage), 201)
    else:
        response = error_response(Refusal(outcome.reason, outcome.message))
    if outcome.replayed:
        response.headers.append(_REPLAYED)
    return response


def refund_answer(refunded: Refunded) -> Response:
    return body_response(_result(refunded.charge, refunded.usage))


def _result(charge: Charge, usage: Usage) -> outbound.ChargeResult:
    refunded_at = None if charge.refunded_at is None else from_micros(charge.refunded_at)
    shown = outbound.Charge(
        charge.id,
        charge.idempotency_key,
        charge.user_id,
        charge.kind,
        credits_value(charge.cost),
        credits_value(charge.from_plan),
        credits_value(charge.from_purchased),
        credits_value(charge.postpaid),
        from_micros(charge.created_at).isoformat(),
        None if refunded_at is None else refunded_at.isoformat(),
    )
    return outbound.ChargeResult(shown, usage_dto(usage))


ROUTES = [
    guards.admin("POST", "/api/admin/charges", create_charge),
    guards.admin("POST", "/api/admin/charges/{idempotencyKey}/refund", refund_charge),
]

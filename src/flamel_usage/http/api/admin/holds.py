"""Holds over HTTP: reserve credit for a long operation, then settle or release it.

``hold_answer`` renders every hold outcome (the CLI prints the same rendering); a
replayed outcome is rendered like the first, with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

from msgspec import UNSET

from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import parse_id
from flamel_usage.http import guards
from flamel_usage.http.bodies import outbound
from flamel_usage.http.bodies.inbound import CreateHoldRequest, SettleHoldRequest
from flamel_usage.http.bodies.outbound import body_response, usage_dto
from flamel_usage.http.bodies.reading import read_body
from flamel_usage.http.context import Services
from flamel_usage.http.render import error_response
from flamel_usage.http.routing import Request, Response
from flamel_usage.metering import holds, idempotency
from flamel_usage.metering.outcomes import Held, HoldOutcome

_REPLAYED = (b"idempotent-replayed", b"true")


async def create_hold(request: Request, services: Services) -> Response:
    key = idempotency.idempotency_key(request.headers.get("idempotency-key"))
    body = await read_body(request, CreateHoldRequest)
    hold_request = holds.HoldRequest(
        user_id=body.user_id,
        kind=body.kind,
        cost=None if body.cost is UNSET else body.cost,
        ttl_seconds=None if body.ttl_seconds is UNSET else body.ttl_seconds,
    )
    async with services.db.transaction() as conn:
        outcome = await holds.create(
            conn,
            hold_request,
            idempotency_key=key,
            costs=services.settings.operation_costs,
            now=services.clock(),
            zone=services.settings.timezone,
            thresholds=services.settings.alert_thresholds,
        )
    return hold_answer(outcome, 201)


async def settle_hold(request: Request, services: Services) -> Response:
    hold_id = parse_id(request.params["holdId"], "holdId")
    body = await read_body(request, SettleHoldRequest)
    async with services.db.transaction() as conn:
        settled = await holds.settle(
            conn, hold_id, body.cost, now=services.clock(), zone=services.settings.timezone
        )
    return hold_answer(settled)


async def release_hold(request: Request, services: Services) -> Response:
    hold_id = parse_id(request.params["holdId"], "holdId")
    async with services.db.transaction() as conn:
        released = await holds.release(
            conn, hold_id, now=services.clock(), zone=services.settings.timezone
        )
    return hold_answer(released)


async def list_holds(request: Request, services: Services) -> Response:
    user_id = parse_id(request.params["userId"], "userId")
    async with services.db.read() as conn:
        active = await holds.active_holds(conn, user_id, now=services.clock())
    return body_response(outbound.HoldList([outbound.Hold.of(hold) for hold in active]))


def hold_answer(outcome: HoldOutcome, status: int = 200) -> Response:
    """``status`` with the hold and the usage after it, or the refusal's error answer;
    ``Idempotent-Replayed: true`` when the outcome is a recorded one."""
    if isinstance(outcome, Held):
        result = outbound.HoldResult(outbound.Hold.of(outcome.hold), usage_dto(outcome.usage))
        response = body_response(result, status)
    else:
        response = error_response(Refusal(outcome.reason, outcome.message))
    if outcome.replayed:
        response.headers.append(_REPLAYED)
    return response


ROUTES = [
    guards.admin("POST", "/api/admin/holds", create_hold),
    guards.admin("POST", "/api/admin/holds/{holdId}/settle", settle_hold),
    guards.admin("POST", "/api/admin/holds/{holdId}/release", release_hold),
    guards.admin("GET", "/api/admin/users/{userId}/holds", list_holds),
]

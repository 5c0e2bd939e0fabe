"""The operator's webhook endpoints and their delivery log (SPEC 9)."""

from __future__ import annotations

from flamel_usage.core.inputs import parse_id
from flamel_usage.http import guards
from flamel_usage.http.bodies import inbound, outbound
from flamel_usage.http.bodies.outbound import body_response
from flamel_usage.http.bodies.reading import read_body
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response, empty_response
from flamel_usage.webhooks import endpoints
from flamel_usage.webhooks.addresses import public_target


async def create_webhook(request: Request, services: Services) -> Response:
    body = await read_body(request, inbound.CreateWebhookRequest)
    allow_private = services.settings.webhook_allow_private
    target = await public_target(body.url, allow_private=allow_private)
    async with services.db.transaction() as conn:
        endpoint, secret = await endpoints.create(
            conn, target, body.events, body.description, now=services.clock()
        )
    created = outbound.CreatedWebhookEndpoint(outbound.WebhookEndpoint.of(endpoint), secret)
    return body_response(created, 201)


async def list_webhooks(request: Request, services: Services) -> Response:
    async with services.db.read() as conn:
        found = await endpoints.list_all(conn)
    return body_response(
        outbound.WebhookEndpointList([outbound.WebhookEndpoint.of(e) for e in found])
    )


async def delete_webhook(request: Request, services: Services) -> Response:
    endpoint_id = parse_id(request.params["webhookId"], "webhookId")
    async with services.db.transaction() as conn:
        await endpoints.remove(conn, endpoint_id)
    return empty_response()


async def rotate_secret(request: Request, services: Services) -> Response:
    endpoint_id = parse_id(request.params["webhookId"], "webhookId")
    async with services.db.transaction() as conn:
        secret = await endpoints.rotate(conn, endpoint_id)
    return body_response(outbound.WebhookSecret(endpoint_id, secret))


async def list_deliveries(request: Request, services: Services) -> Response:
    endpoint_id = parse_id(request.params["webhookId"], "webhookId")
    async with services.db.read() as conn:
        found = await endpoints.deliveries(conn, endpoint_id)
    return body_response(
        outbound.WebhookDeliveryList([outbound.WebhookDelivery.of(d) for d in found])
    )


async def redeliver(request: Request, services: Services) -> Response:
    endpoint_id = parse_id(request.params["webhookId"], "webhookId")
    delivery_id = parse_id(request.params["deliveryId"], "deliveryId")
    async with services.db.transaction() as conn:
        delivery = await endpoints.redeliver(conn, endpoint_id, delivery_id, now=services.clock())
    return body_response(outbound.WebhookDelivery.of(delivery), 202)


_WEBHOOK = "/api/admin/webhooks/{webhookId}"
ROUTES = [
    guards.admin("POST", "/api/admin/webhooks", create_webhook),
    guards.admin("GET", "/api/admin/webhooks", list_webhooks),
    guards.admin("DELETE", _WEBHOOK, delete_webhook),
    guards.admin("POST", f"{_WEBHOOK}/rotate", rotate_secret),
    guards.admin("GET", f"{_WEBHOOK}/deliveries", list_deliveries),
    guards.admin("POST", f"{_WEBHOOK}/deliveries/{{deliveryId}}/redeliver", redeliver),
]

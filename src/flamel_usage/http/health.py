"""What operators and orchestrators call: liveness, readiness, metrics.

``/healthz`` answers as long as the process serves HTTP, without touching the database:
restart the process when it fails. ``/readyz`` answers ``200`` only when the node is not
draining (``http/drain.py``), the database answers, every migration this version ships
is applied and, with the platform's session store configured, that store answers too:
send it traffic only then.
``/metrics`` is the server's counters, summed over its workers (``http/metrics.py``).
"""

from __future__ import annotations

from flamel_usage.auth.platform_sessions import SessionStoreUnavailable
from flamel_usage.core.errors import Refusal
from flamel_usage.db.migrate import MigrationEdited
from flamel_usage.http import guards, metrics
from flamel_usage.http.bodies.outbound import HealthStatus, body_response
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response


async def healthz(request: Request, services: Services) -> Response:
    return body_response(HealthStatus("ok"))


async def readyz(request: Request, services: Services) -> Response:
    if services.drain.raised():
        raise Refusal("service_unavailable", "this node is stopping: send traffic elsewhere")
    # DatabaseUnavailable (also for a store that is not open) becomes the 503 in the app.
    try:
        pending = await services.db.pending_migrations()
    except MigrationEdited as error:
        raise Refusal("service_unavailable", str(error)) from error
    if pending:
        message = f"migrations not applied yet: {', '.join(map(str, pending))}"
        raise Refusal("service_unavailable", message)
    try:
        await services.sessions.ping()
    except SessionStoreUnavailable:
        raise Refusal("service_unavailable", "the session store does not answer") from None
    return body_response(HealthStatus("ready"))


async def metrics_page(request: Request, services: Services) -> Response:
    return Response(
        200,
        services.metrics.render(),
        [(b"content-type", metrics.CONTENT_TYPE), (b"cache-control", b"no-store")],
    )


ROUTES = [
    guards.public("GET", "/healthz", healthz),
    guards.public("GET", "/readyz", readyz),
    guards.public("GET", "/metrics", metrics_page),
]

"""What operators and orchestrators call: liveness, readiness, metrics.

``/healthz`` answers as long as the process serves HTTP, without touching the database:
restart the process when it fails. ``/readyz`` answers ``200`` only when the database
answers, every migration this version ships is applied and, with the platform's session
store configured, that store answers too: send it traffic only then.
``/metrics`` is this worker's counters (``http/metrics.py``).
"""

from __future__ import annotations

from flamel_usage.auth.platform_sessions import SessionStoreUnavailable
from flamel_usage.core.errors import ServiceUnavailable
from flamel_usage.http import metrics
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response, json_response


async def healthz(request: Request, services: Services) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request, services: Services) -> Response:
    # DatabaseUnavailable (also for a store that is not open) becomes the 503 in the app.
    pending = await services.db.pending_migrations()
    if pending:
        raise ServiceUnavailable(f"migrations not applied yet: {', '.join(map(str, pending))}")
    try:
        await services.sessions.ping()
    except SessionStoreUnavailable:
        raise ServiceUnavailable("the session store does not answer") from None
    return json_response({"status": "ready"})


async def metrics_page(request: Request, services: Services) -> Response:
    return Response(
        200,
        services.metrics.render(),
        [(b"content-type", metrics.CONTENT_TYPE), (b"cache-control", b"no-store")],
    )


ROUTES = [
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics_page),
]

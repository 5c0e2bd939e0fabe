"""The ASGI application: its routes, its lifespan, and the one place errors become responses."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from contextlib import suppress

from flamel_usage.auth import credentials as auth
from flamel_usage.auth import throttle
from flamel_usage.auth.last_used import FLUSH_INTERVAL_SECONDS
from flamel_usage.auth.platform_sessions import SessionStoreUnavailable
from flamel_usage.core.config import Settings
from flamel_usage.core.errors import Refusal
from flamel_usage.core.logs import ACCESS_LOGGER, REQUEST_ID
from flamel_usage.db.gateway import Database, DatabaseUnavailable
from flamel_usage.http import cors, health
from flamel_usage.http.api import keys, usage
from flamel_usage.http.api.admin import accounts as admin_accounts
from flamel_usage.http.api.admin import holds as admin_holds
from flamel_usage.http.api.admin import metering as admin_metering
from flamel_usage.http.api.admin import webhooks as admin_webhooks
from flamel_usage.http.context import Clock, Services, system_clock
from flamel_usage.http.metrics import UNMATCHED
from flamel_usage.http.openapi import docs
from flamel_usage.http.pages import routes as pages
from flamel_usage.http.render import error_response
from flamel_usage.http.routing import Receive, Request, Response, Route, Router, Scope, Send
from flamel_usage.http.security import NOSNIFF
from flamel_usage.ledger import rollup
from flamel_usage.metering import holds, idempotency
from flamel_usage.webhooks.dispatcher import Dispatcher

logger = logging.getLogger("flamel_usage")
#: Logged by each worker once its lifespan has started.
WORKER_READY = "worker ready"
access_logger = logging.getLogger(ACCESS_LOGGER)

#: Every route the service answers, each with its guard (``http/guards.py``), except the
#: CORS preflight, added while CORS is on. ``tests/test_route_guards.py`` walks it; the
#: OpenAPI test checks each is documented.
ROUTES: list[Route] = [
    *usage.ROUTES,
    *keys.ROUTES,
    *docs.ROUTES,
    *admin_accounts.ROUTES,
    *admin_metering.ROUTES,
    *admin_holds.ROUTES,
    *admin_webhooks.ROUTES,
    *pages.ROUTES,
    *health.ROUTES,
]


class App:
    """The service as an ASGI callable.

    Built without touching the database; the lifespan opens it and applies migrations
    (under a lock, so several workers can start at once). Tests hand in an open
    database and a clock instead.
    """

    def __init__(
        self, settings: Settings, db: Database | None = None, clock: Clock = system_clock
    ) -> None:
        self._owns_db = db is None
        db = db or Database.from_url(
            settings.database_url,
            timeout=settings.database_timeout_seconds,
            allow_async_commit=settings.allow_async_commit,
        )
        self.services = Services(settings, db, clock)
        self._cors_origins = settings.cors_origins
        self.router = Router([*ROUTES, cors.PREFLIGHT] if self._cors_origins else ROUTES)
        self._forwarded_header = settings.client_address_header
        self._request_ids = _RequestIds()
        self._max_headers = settings.max_headers
        self._max_header_bytes = settings.max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One request: its id, its answer with the headers every answer gets, its count
        and duration in the metrics, its access log line."""
        started = time.perf_counter()
        request = Request(scope, receive, self._forwarded_header)
        request_id = self._request_ids.for_request(request.headers.get("x-request-id"))
        request_id_text = request_id.decode("ascii")
        token = REQUEST_ID.set(request_id_text)
        try:
            too_large = self._head_over_limit(request)
            if too_large is None:
                route, response = await self.handle(scope, request)
            else:
                route, response = UNMATCHED, error_response(too_large)
                response.headers.append(CLOSE)
            extra = [(b"x-request-id", request_id), NOSNIFF]
            if self.services.drain.raised_lately():
                extra.append(CLOSE)
            if self._cors_origins and route == cors.ROUTE:
                origin = cors.origin_of(scope["headers"])
                extra += cors.response_headers(self._cors_origins, origin)
            await response.send(send, extra)
            seconds = time.perf_counter() - started
            self.services.metrics.request(route, scope["method"], response.status, seconds)
            if access_logger.isEnabledFor(logging.INFO):
                _log_access(scope["method"], route, response.status, seconds, request_id_text)
        finally:
            REQUEST_ID.reset(token)

    def _head_over_limit(self, request: Request) -> Refusal | None:
        """The complete head against FLAMEL_MAX_HEADERS and FLAMEL_MAX_HEADER_BYTES, before
        anything of it is acted on: the server bounds the head while it arrives, this
        holds one that arrived whole to the same limits."""
        if request.header_lines > self._max_headers:
            message = f"more than {self._max_headers} header lines"
            return Refusal("request_header_fields_too_large", message)
        if request.head_bytes > self._max_header_bytes:
            message = f"the request head exceeds {self._max_header_bytes} bytes"
            return Refusal("request_header_fields_too_large", message)
        return None

    async def handle(self, scope: Scope, request: Request) -> tuple[str, Response]:
        """The route (its pattern, or ``unmatched``) and the response; never raises."""
        route = UNMATCHED
        try:
            path = request.path
            raw_path = scope.get("raw_path") or path.encode()
            route, methods, request.params = self.router.resolve(path, raw_path)
            handler = self.router.handler(methods, request.method)
            return route, await handler(request, self.services)
        except Refusal as refusal:
            self.services.metrics.auth_failure(refusal.reason)
            return route, error_response(refusal)
        except DatabaseUnavailable as outage:
            store = "session store" if isinstance(outage, SessionStoreUnavailable) else "database"
            message = f"the {store} is unavailable: retry shortly"
            unavailable = Refusal("service_unavailable", message)
            return route, error_response(unavailable)
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], route)
            return route, error_response(Refusal("internal_error"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                keying: asyncio.Task[None] | None = None
                try:
                    if self._owns_db:
                        # Starts while PostgreSQL is down too (503 until it is back).
                        await self.services.db.start()
                        try:
                            await self._key_days()
                        except DatabaseUnavailable:
                            keying = asyncio.create_task(self._key_days_when_back())
                    await self.services.sessions.open()  # connects on demand, as the db
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                flusher = asyncio.create_task(self._housekeeping())
                sweeper = asyncio.create_task(self._sweep_holds())
                services = self.services
                dispatcher = Dispatcher(services.db, services.settings, services.clock)
                dispatching = asyncio.create_task(dispatcher.run())
                await send({"type": "lifespan.startup.complete"})
                # Whichever server runs it: supervisors and tests wait for each worker's.
                logger.info("%s (pid %d)", WORKER_READY, os.getpid())
            elif message["type"] == "lifespan.shutdown":
                if keying is not None:
                    keying.cancel()
                flusher.cancel()
                sweeper.cancel()
                dispatching.cancel()
                with suppress(asyncio.CancelledError):
                    await dispatching
                await dispatcher.close()
                await self._record_last_used()
                await self.services.sessions.close()
                if self._owns_db:
                    await self.services.db.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _key_days(self) -> None:
        """The history's day rollup in the billing zone, rebuilt before serving if it
        was kept in another (``rollup.key_days``: the zone is a setting)."""
        zone = self.services.settings.timezone
        if await rollup.key_days(self.services.db, zone):
            logger.warning("usage_days rebuilt for the billing zone %s", zone.key)

    async def _key_days_when_back(self) -> None:
        """``_key_days`` once the store answers: PostgreSQL was down at the start, and
        its first connection applies the migrations first."""
        while True:
            await asyncio.sleep(1)
            with suppress(DatabaseUnavailable):
                await self._key_days()
                return

    async def _housekeeping(self) -> None:
        """Every minute: record keys' last use, delete ended throttle windows and
        expired sessions."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            await self._record_last_used()
            try:
                async with self.services.db.transaction() as conn:
                    now = self.services.clock()
                    await throttle.delete_ended(conn, now)
                    await auth.delete_expired_sessions(conn, now)
            except Exception:
                logger.warning(
                    "could not delete ended throttle windows and expired sessions", exc_info=True
                )
            await self._prune_idempotency_records()

    async def _prune_idempotency_records(self) -> None:
        """Records older than the retention go, in small batches between charges."""
        days = self.services.settings.idempotency_retention_days
        try:
            await idempotency.prune(self.services.db, self.services.clock(), days)
        except Exception:
            logger.warning("could not prune idempotency records", exc_info=True)

    async def _sweep_holds(self) -> None:
        """Every ``FLAMEL_HOLD_SWEEP_SECONDS``: release the holds that expired unsettled,
        one account per transaction (every worker sweeps; the account's lock makes the
        second one find nothing to do)."""
        services = self.services
        while True:
            await asyncio.sleep(services.settings.hold_sweep_seconds)
            try:
                async with services.db.read() as conn:
                    due = await holds.accounts_with_expired_holds(
                        conn, now=services.clock(), limit=_SWEEP_BATCH
                    )
                for user_id in due:
                    async with services.db.transaction() as conn:
                        await holds.expire(
                            conn, user_id, now=services.clock(), zone=services.settings.timezone
                        )
            except Exception:
                logger.warning("could not release expired holds", exc_info=True)

    async def _record_last_used(self) -> None:
        try:
            await self.services.last_used.flush(self.services.db)
        except DatabaseUnavailable:
            logger.warning("database unavailable: key last-use times not recorded")
        except Exception:
            logger.exception("could not record when API keys were last used")


#: A response that ends its connection: the rest of a refused request is never read.
CLOSE = (b"connection", b"close")
#: Accounts a sweep releases holds of at most; the next sweep takes the rest.
_SWEEP_BATCH = 500
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class _RequestIds:
    """The client's ``X-Request-Id`` when it is 1-128 of ``A-Za-z0-9._-``, else a new one.

    A new id is 16 hex digits: 8 drawn at random when the process starts, so that
    workers and restarts do not repeat each other's ids, then a counter; a read of the
    OS's random source on every request cost more than the rest of the id.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count()

    def for_request(self, sent: str | None) -> bytes:
        """``sent``: the request's first ``X-Request-Id`` line, if any."""
        if sent is not None and _REQUEST_ID.fullmatch(sent):
            return sent.encode("ascii")
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFF:08x}".encode()


def _log_access(method: str, route: str, status: int, seconds: float, request_id: str) -> None:
    """The access line: method, route pattern, status, duration; nothing the client sent."""
    duration_ms = round(seconds * 1000, 3)
    access_logger.info(
        "%s %s %d %.3fms",
        method,
        route,
        status,
        duration_ms,
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            "request_id": request_id,
        },
    )


def create_app(environ: Mapping[str, str] | None = None) -> App:
    """The app configured from the environment: the factory the server workers call."""
    return App(Settings.from_environ(environ))

"""The ASGI application: its routes, its lifespan, and the one place errors become responses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from flamel_usage.auth import throttle
from flamel_usage.auth.last_used import FLUSH_INTERVAL_SECONDS
from flamel_usage.config import Settings
from flamel_usage.db import Database, DatabaseUnavailable
from flamel_usage.errors import ApiError, ServiceUnavailable
from flamel_usage.web import admin, charges, docs, pages, public
from flamel_usage.web.http import (
    InternalError,
    Receive,
    Request,
    Response,
    Router,
    Scope,
    Send,
    error_response,
)
from flamel_usage.web.services import Clock, Services, system_clock

logger = logging.getLogger("flamel_usage")

_HANDLERS = [*public.ROUTES, *docs.ROUTES, *admin.ROUTES, *charges.ROUTES, *pages.ROUTES]
#: Every (method, path) the service answers; the OpenAPI test checks each is documented.
ROUTES: list[tuple[str, str]] = [(method, path) for method, path, _ in _HANDLERS]


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
            settings.database_url, timeout=settings.database_timeout_seconds
        )
        self.services = Services(settings, db, clock)
        self.router = Router(_HANDLERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            response = await self.handle(scope, receive)
            await response.send(send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def handle(self, scope: Scope, receive: Receive) -> Response:
        try:
            path = scope["path"]
            raw_path = scope.get("raw_path") or path.encode()
            handler, params = self.router.match(scope["method"], path, raw_path)
            return await handler(Request(scope, receive, params), self.services)
        except ApiError as error:
            return error_response(error)
        except DatabaseUnavailable:
            return error_response(ServiceUnavailable("the database is unavailable: retry shortly"))
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            return error_response(InternalError())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._owns_db:
                        # Starts while PostgreSQL is down too (503 until it is back).
                        await self.services.db.start()
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                flusher = asyncio.create_task(self._housekeeping())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                flusher.cancel()
                await self._record_last_used()
                if self._owns_db:
                    await self.services.db.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _housekeeping(self) -> None:
        """Every few seconds: record keys' last use, forget ended throttle windows."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            await self._record_last_used()
            try:
                async with self.services.db.transaction() as conn:
                    await throttle.delete_ended(conn, self.services.clock())
            except Exception:
                logger.warning("could not delete ended throttle windows", exc_info=True)

    async def _record_last_used(self) -> None:
        try:
            await self.services.last_used.flush(self.services.db)
        except DatabaseUnavailable:
            logger.warning("database unavailable: key last-use times not recorded")
        except Exception:
            logger.exception("could not record when API keys were last used")


def create_app(environ: Mapping[str, str] | None = None) -> App:
    """The app configured from the environment: the factory the server workers call."""
    return App(Settings.from_environ(environ))

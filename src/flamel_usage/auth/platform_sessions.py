"""Whose session a cookie carries: ours, or the platform's express-session (SPEC 7).

By default (``FLAMEL_SESSION_STORE=local``) sessions are our own sign-in's, in our
database. In production the customer signs in on the platform's Express app instead,
which keeps the session in connect-redis or connect-pg-simple and sets the cookie; this
service then reads that store, and only reads it: no save, no touch, no destroy. The
platform alone decides when its sessions end.

A platform session signs its user in while the store holds it, it has not expired (the
store's own expiry, and ``sess.cookie.expires``), and the user field it carries
(``passport.user`` by default) names a live user here by its external id. Anything else
is no session: ``not_logged_in``. A store that does not answer within the database
timeout is ``SessionStoreUnavailable``, a 503, never "no session": a 403 would sign the
customer out of the pages for an outage.

Two steps, so that the store's round trip never holds a database connection (on SQLite,
the worker's only one): ``Sessions.claim`` reads the store, ``SessionClaim.user_id``
maps the claim to our user on a connection.

How the two stores keep a session, as their sources write it:

- connect-redis: the key ``<prefix><sid>`` (prefix ``sess:`` unless configured), its
  value ``JSON.stringify(sess)``, its TTL the session's lifetime (``EX``): Redis drops
  the key when it ends, so a key that is there has not expired.
- connect-pg-simple: the table ``"<schema>"."<table>"`` (``session``: ``sid`` primary
  key, ``sess json``, ``expire timestamp without time zone``). It writes
  ``expire = to_timestamp(<unix seconds>)`` and reads ``expire >= to_timestamp(<now in
  unix seconds, rounded up>)``: both convert in the connection's ``TimeZone``, so a
  comparison in SQL exactly like its own is right whatever that zone is (the server's
  default, for both its connections and ours), where one in Python would be off by the
  zone's offset.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import itertools
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

import asyncpg
import orjson
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from flamel_usage.accounts.users import MAX_EXTERNAL_ID, user_id_by_external_id
from flamel_usage.auth.credentials import user_for_session
from flamel_usage.core.config import Secret, Settings
from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Connection, Database, DatabaseUnavailable

logger = logging.getLogger("flamel_usage.auth.platform_sessions")
_T = TypeVar("_T")


class SessionStoreUnavailable(DatabaseUnavailable):
    """The platform's session store did not answer in time, or not as a store should.

    A ``DatabaseUnavailable``, so that every path that turns an outage into a 503 (the
    API's envelope, the pages' own 503 page) does the same for this one.
    """


def session_tag(session_id: str) -> str:
    """A session as logs name it: a short hash, never the id, which would sign anyone in."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


class SessionClaim(abc.ABC):
    """What a correctly signed cookie's session says, before our database is asked."""

    __slots__ = ()
    session_id: str

    @abc.abstractmethod
    async def user_id(self, conn: Connection, now: int) -> int | None:
        """The live user signed in, else None."""


@dataclass(frozen=True, slots=True)
class _OwnSession(SessionClaim):
    session_id: str

    async def user_id(self, conn: Connection, now: int) -> int | None:
        return await user_for_session(conn, self.session_id, now)


@dataclass(frozen=True, slots=True)
class _PlatformSession(SessionClaim):
    session_id: str
    platform_user: str

    async def user_id(self, conn: Connection, now: int) -> int | None:
        found = await user_id_by_external_id(conn, self.platform_user)
        if found is None:
            # Info, not a warning: a customer of the platform without a user here yet is
            # the operator's to-do, and their cue to create one with this externalId.
            logger.info(
                "session %s: platform user %r has no user here with that externalId",
                session_tag(self.session_id),
                self.platform_user[:64],
            )
        return found


class Sessions(Protocol):
    """The configured session store, as the web layer asks it."""

    #: True for the platform's store: this service then has no sign-in of its own.
    external: bool

    async def open(self) -> None:
        """Get ready to read; called in the app's lifespan (connects nothing yet)."""

    async def close(self) -> None:
        """Let go of every connection; called at shutdown."""

    async def ping(self) -> None:
        """``SessionStoreUnavailable`` unless the store answers now (for ``/readyz``)."""

    async def claim(self, session_id: str, now: int) -> SessionClaim | None:
        """The session ``session_id`` names, if it may sign anyone in."""


class OwnSessions:
    """Our own sign-in's sessions, in our database: nothing to read before the query."""

    external = False

    async def open(self) -> None:
        """Nothing to open: the database is the app's."""

    async def close(self) -> None:
        """Nothing to close."""

    async def ping(self) -> None:
        """The database is ``/readyz``'s own check."""

    async def claim(self, session_id: str, now: int) -> SessionClaim | None:
        return _OwnSession(session_id)


class StoreReader(Protocol):
    """One store of the platform's, read by session id."""

    #: What the reader's client raises when the store is down or refuses a read.
    failures: tuple[type[BaseException], ...]

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def read(self, session_id: str, now: int) -> str | bytes | None:
        """The session's JSON while the store holds it unexpired, else None."""


class PlatformSessions:
    """The platform's express-session store, read through ``reader``."""

    external = True

    def __init__(self, reader: StoreReader, user_field: tuple[str, ...], timeout: float) -> None:
        self._reader = reader
        self._user_field = user_field
        self._timeout = timeout
        #: The timeout's own error, and what the reader's client raises.
        self._failures: tuple[type[BaseException], ...] = (TimeoutError, *reader.failures)
        self._down = False

    async def open(self) -> None:
        await self._reader.open()

    async def close(self) -> None:
        await self._reader.close()

    async def ping(self) -> None:
        await self._bounded(self._reader.ping())

    async def claim(self, session_id: str, now: int) -> SessionClaim | None:
        raw = await self._bounded(self._reader.read(session_id, now))
        if raw is None:
            return None
        platform_user = session_user(raw, self._user_field, now)
        return None if platform_user is None else _PlatformSession(session_id, platform_user)

    async def _bounded(self, work: Awaitable[_T]) -> _T:
        """``work``, within the database timeout; ``SessionStoreUnavailable`` when the
        store fails it. An outage is logged when it starts and when it ends, not per
        request."""
        try:
            async with asyncio.timeout(self._timeout):
                result = await work
        except self._failures as error:
            if not self._down:
                self._down = True
                logger.warning(
                    "session store unavailable (%s): answering 503 until it is back",
                    type(error).__name__,
                )
            raise SessionStoreUnavailable(f"session store: {type(error).__name__}") from error
        if self._down:
            self._down = False
            logger.warning("session store available again")
        return result


def session_user(raw: str | bytes, user_field: tuple[str, ...], now: int) -> str | None:
    """The platform's user id in the session JSON ``raw``, unless the session's cookie
    has expired; None when there is none, or it is neither a string nor a whole number.

    A number stands for its decimal digits: the externalId to give that user here.
    """
    try:
        session = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(session, dict) or _cookie_expired(session.get("cookie"), now):
        return None
    value: object = session
    for name in user_field:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and 1 <= len(value) <= MAX_EXTERNAL_ID:
        return value
    return None


def _cookie_expired(cookie: object, now: int) -> bool:
    """Whether express-session's ``cookie.expires`` (an ISO instant, or null for a
    cookie that ends with the browser) has passed. One that cannot be read counts as
    passed: a session is trusted only as far as it can be checked."""
    expires = cookie.get("expires") if isinstance(cookie, dict) else None
    if expires is None:
        return False
    if not isinstance(expires, str):
        return True
    try:
        moment = datetime.fromisoformat(expires)
    except ValueError:
        return True
    return moment.tzinfo is None or to_micros(moment) <= now


class RedisReader:
    """connect-redis's store: the key ``<prefix><sid>``, the reads that arrive together
    (in one turn of the event loop) sent as one ``MGET``.

    Under load many requests wait for Redis at once; one command for all of them costs
    one round trip and one pass through redis-py instead of one each, which is what
    keeps a session read near a key read's speed. A lone read waits one turn more.
    """

    failures: tuple[type[BaseException], ...] = (RedisError, OSError)

    def __init__(self, url: Secret, prefix: str, timeout: float) -> None:
        self._url = url
        self._prefix = prefix.encode()
        self._timeout = timeout
        self._client: aioredis.Redis | None = None
        self._waiting: dict[bytes, list[asyncio.Future[str | bytes | None]]] = {}
        self._batches: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        # No retries, and no timeout of each socket read or write: a batch is bounded
        # as a whole (redis-py drops a connection whose command was cancelled), and a
        # timeout of its own per socket operation costs redis-py a task per write.
        self._client = aioredis.Redis.from_url(
            self._url.reveal(),
            socket_timeout=None,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _require_client(self) -> aioredis.Redis:
        if self._client is None:
            raise ConnectionError("the session store is not open")
        return self._client

    async def ping(self) -> None:
        await self._require_client().ping()

    async def read(self, session_id: str, now: int) -> str | bytes | None:
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._send_batch)
        waiter: asyncio.Future[str | bytes | None] = loop.create_future()
        self._waiting.setdefault(self._prefix + session_id.encode(), []).append(waiter)
        return await waiter

    def _send_batch(self) -> None:
        waiting, self._waiting = self._waiting, {}
        batch = asyncio.create_task(self._mget(waiting))
        self._batches.add(batch)  # a task nobody holds may be collected before it ends
        batch.add_done_callback(self._batches.discard)

    async def _mget(self, waiting: dict[bytes, list[asyncio.Future[str | bytes | None]]]) -> None:
        """One ``MGET`` for ``waiting``, its answers (or its failure) to each waiter.

        Bounded by the timeout itself, not only by its waiters' patience: a store that
        accepts connections and never answers must not keep a connection forever."""
        try:
            async with asyncio.timeout(self._timeout):
                values = await self._require_client().mget(list(waiting))
        except Exception as error:
            for waiter in itertools.chain.from_iterable(waiting.values()):
                if not waiter.done():  # else its request gave up already
                    waiter.set_exception(error)
            return
        for waiters, value in zip(waiting.values(), values, strict=True):
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(value)


def _quoted(identifier: str) -> str:
    """An SQL identifier quoted as connect-pg-simple quotes it."""
    return '"' + identifier.replace('"', '""') + '"'


class PostgresReader:
    """connect-pg-simple's table, with its own query (see the module's docstring)."""

    #: ``DatabaseUnavailable`` for the server; ``PostgresError`` for a table that is not
    #: there or not readable, which a misconfigured store shows up as.
    failures: tuple[type[BaseException], ...] = (DatabaseUnavailable, asyncpg.PostgresError)

    def __init__(self, url: Secret, schema: str | None, table: str, timeout: float) -> None:
        self._db = Database.from_url(url, timeout=timeout)
        name = _quoted(table) if schema is None else f"{_quoted(schema)}.{_quoted(table)}"
        self._select = f"SELECT sess FROM {name} WHERE sid = ? AND expire >= to_timestamp(?)"  # noqa: S608
        self._probe = f"SELECT 1 FROM {name} WHERE false"  # noqa: S608

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        async with self._db.read() as conn:
            await conn.fetchone(self._probe)

    async def read(self, session_id: str, now: int) -> str | bytes | None:
        # connect-pg-simple's now: whole seconds, rounded up.
        seconds = float(math.ceil(now / 1_000_000))
        async with self._db.read() as conn:
            found: str | None = await conn.fetchval(self._select, session_id, seconds)
        return found


def sessions_for(settings: Settings) -> Sessions:
    """The store ``FLAMEL_SESSION_STORE`` names; nothing is connected yet."""
    store = settings.session_store
    if store is None:
        return OwnSessions()
    timeout = settings.database_timeout_seconds
    reader: StoreReader
    if store.reveal().lower().startswith(("redis://", "rediss://")):
        reader = RedisReader(store, settings.session_store_prefix, timeout)
    else:
        reader = PostgresReader(
            store, settings.session_store_schema, settings.session_store_table, timeout
        )
    return PlatformSessions(reader, settings.session_user_field, timeout)

"""PostgreSQL: an asyncpg pool that needs no live server to start.

The pool connects on demand, drops connections the server closed, and reconnects when
it is back; a server started while PostgreSQL is down applies the migrations on its
first connection.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit

import asyncpg

from flamel_usage.core.config import DEFAULT_DATABASE_TIMEOUT_SECONDS, Secret
from flamel_usage.db import migrate
from flamel_usage.db.gateway import (
    Connection,
    Database,
    DatabaseNotReady,
    DatabaseUnavailable,
    Dialect,
    DurabilityOff,
    Row,
    UniqueViolation,
)

logger = logging.getLogger("flamel_usage.db.postgres")

_REFUSED = "PostgreSQL store refused: an applied migration was edited"
_NOT_DURABLE = "PostgreSQL store refused: synchronous_commit or fsync is off"
_PLACEHOLDER = re.compile(r"\?")
#: What decides whether a COMMIT PostgreSQL acknowledged survives a crash of its machine,
#: as this database and role see them (each can be set per database or role).
_DURABILITY = "SELECT current_setting('synchronous_commit'), current_setting('fsync')"

#: What asyncpg raises when the server cannot be reached or did not answer in time, as
#: opposed to an error in a statement: socket errors and timeouts (``TimeoutError`` is
#: an ``OSError``), a lost connection (08xxx), a server shutting down, starting up or
#: cancelling (57xxx), one out of connections, memory or disk (53xxx), and the client's
#: side of a closed connection or pool (``InterfaceError``; ``InternalClientError`` when
#: the server ended the connection while a statement, a COMMIT say, was being sent).
_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
#: Of those, the ones that say nothing about the connections themselves.
_NOT_LOST: tuple[type[BaseException], ...] = (
    TimeoutError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


async def _keep_session(raw: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing beyond asyncpg's own.

    asyncpg always rolls back a transaction left open. Its default reset also sends
    ``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL`` and ``pg_advisory_unlock_all()``: a
    round trip on every release, about a quarter of a usage read's time on
    PostgreSQL. The service never leaves any of that behind: it sets no session
    variable, listens to nothing, keeps no cursor past a transaction and takes only
    transaction-scoped advisory locks (``lock_name``).
    """


class _PostgresConnection(Connection):
    dialect: Dialect = "postgresql"

    def __init__(self, raw: asyncpg.Connection, db: PostgresDatabase) -> None:
        self._raw = raw
        self._db = db

    def _sql(self, sql: str) -> str:
        translate = self._db._translate
        translated = translate.get(sql)
        if translated is None:
            translated = translate[sql] = _numbered(sql)
        return translated

    async def fetchall(self, sql: str, *args: object) -> Sequence[Row]:
        try:
            rows: Sequence[Row] = await self._raw.fetch(self._sql(sql), *args)
        except asyncpg.UniqueViolationError as error:
            raise UniqueViolation(str(error)) from error
        except _PG_UNAVAILABLE as error:
            raise await self._db._unavailable(error) from error
        return rows

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: object) -> int:
        try:
            status: str = await self._raw.execute(self._sql(sql), *args)
        except asyncpg.UniqueViolationError as error:
            raise UniqueViolation(str(error)) from error
        except _PG_UNAVAILABLE as error:
            raise await self._db._unavailable(error) from error
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def run_script(self, script: str) -> None:
        # Without arguments asyncpg sends the text as one simple query: PostgreSQL's own
        # parser splits it, and every statement runs in the open transaction.
        try:
            await self._raw.execute(script)
        except asyncpg.UniqueViolationError as error:
            raise UniqueViolation(str(error)) from error
        except _PG_UNAVAILABLE as error:
            raise await self._db._unavailable(error) from error


class PostgresDatabase(Database):
    """An asyncpg pool that needs no live server to open.

    Connections are made on demand (none at open), each bounded by ``timeout``, as are
    acquiring one from a full pool and every statement. A connection that failed is
    dropped, one the server closed is replaced on its next acquire, and a lost connection
    retires the pool's others, so that none that went stale is handed out again.
    """

    dialect: Dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 10,
        timeout: float = DEFAULT_DATABASE_TIMEOUT_SECONDS,
        allow_async_commit: bool = False,
    ) -> None:
        self._url = Secret(url)
        self._allow_async_commit = allow_async_commit
        self._pool: asyncpg.Pool | None = None
        self._translate: dict[str, str] = {}
        self._max_size = max_size
        self.timeout = timeout
        #: Set when the server was down at ``start``: the first connection migrates.
        self._migrate_on_connect = False
        #: Why the deferred start refused the store (an applied migration edited, commits
        #: not durable): never served until a restart.
        self._refused: str | None = None
        self._down = False

    def __repr__(self) -> str:
        parts = urlsplit(self._url.reveal())
        return f"PostgresDatabase('{parts.hostname}:{parts.port or 5432}{parts.path}')"

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._url.reveal(),
            min_size=0,
            max_size=self._max_size,
            timeout=self.timeout,
            command_timeout=self.timeout,
            init=self._init_connection,
            reset=_keep_session,
        )

    async def _open_existing(self) -> None:
        await self.open()
        try:
            async with self.read():
                pass  # the first connection: made now, kept by the pool for what follows
        except asyncpg.InvalidCatalogNameError as error:
            raise DatabaseNotReady(f"{self!r} does not exist") from error

    async def start(self) -> None:
        """Open, and migrate now if the server answers, else on the first connection.

        A server started while PostgreSQL is down thus starts anyway, answers 503 until
        PostgreSQL is back, then applies the migrations (under the same lock, so several
        workers still apply each once) before its first statement.
        """
        self.log_outages = True
        await self.open()
        try:
            await self.migrate()
            async with self._connection() as raw:
                await self._refuse_async_commit(raw)
        except DurabilityOff:
            await self.close()  # never served: no connection is kept either
            raise
        except DatabaseUnavailable:
            self._migrate_on_connect = True
            logger.warning("PostgreSQL unavailable at start: migrations wait for it")

    async def _refuse_async_commit(self, raw: asyncpg.Connection) -> None:
        """``DurabilityOff`` unless a COMMIT this server acknowledges is on disk, or the
        operator said that need not be so."""
        if self._allow_async_commit:
            return
        try:
            synchronous_commit, fsync = await raw.fetchrow(_DURABILITY)
        except _PG_UNAVAILABLE as error:
            raise await self._unavailable(error) from error
        if synchronous_commit == "off" or fsync == "off":
            raise DurabilityOff(
                f"{self!r} has synchronous_commit={synchronous_commit} and fsync={fsync}: a"
                " charge acknowledged could be lost if its machine crashes. Turn both on"
                " (ALTER DATABASE ... SET synchronous_commit = on), or set"
                " FLAMEL_ALLOW_ASYNC_COMMIT=on if losing the last commits is intended"
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    async def _init_connection(self, raw: asyncpg.Connection) -> None:
        """Run on each new connection: the deferred migrations, until they succeed once.

        A store whose applied migrations were edited stays unavailable (503, and
        ``/readyz`` not ready): this version cannot serve it.
        """
        if not self._migrate_on_connect:
            return
        if self._refused is not None:
            raise DatabaseUnavailable(self._refused)
        try:
            applied = await migrate.apply(
                lambda: self._raw_transaction(raw), migrate.packaged(self.dialect)
            )
            await self._refuse_async_commit(raw)
        except migrate.MigrationEdited as error:
            self._refused = _REFUSED
            logger.error("PostgreSQL store refused until a restart: %s", error)
            raise DatabaseUnavailable(_REFUSED) from error
        except DurabilityOff as error:
            self._refused = _NOT_DURABLE
            logger.error("PostgreSQL store refused until a restart: %s", error)
            raise DatabaseUnavailable(_NOT_DURABLE) from error
        except DatabaseUnavailable:
            raise
        except _PG_UNAVAILABLE as error:
            raise await self._unavailable(error) from error
        self._migrate_on_connect = False
        logger.warning("PostgreSQL available: migrations applied: %s", applied or "none pending")

    @asynccontextmanager
    async def _raw_transaction(self, raw: asyncpg.Connection) -> AsyncIterator[Connection]:
        """A transaction on ``raw``, a connection the pool is still making."""
        async with raw.transaction():
            yield _PostgresConnection(raw, self)

    async def _unavailable(self, error: BaseException) -> DatabaseUnavailable:
        """``error`` as ``DatabaseUnavailable``; logged once per outage, not per request.

        A lost connection (not a timeout, which an overloaded but live server also
        causes) retires the pool's other connections too: made before the loss, they
        may be as dead, and each would otherwise fail one more request to show it.
        """
        if not self._down:
            self._down = True
            if self.log_outages:
                logger.warning(
                    "PostgreSQL unavailable (%s): answering 503 until it is back",
                    type(error).__name__,
                )
        if self._pool is not None and not isinstance(error, _NOT_LOST):
            await self._pool.expire_connections()
        return DatabaseUnavailable(f"PostgreSQL unavailable: {type(error).__name__}")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._require_pool()
        try:
            raw = await pool.acquire(timeout=self.timeout)
        except DatabaseUnavailable:
            raise
        except _PG_UNAVAILABLE as error:
            raise await self._unavailable(error) from error
        try:
            yield raw
        except DatabaseUnavailable:
            # Never reused, nor waited for: the server, if it is there at all, rolls back
            # what it had of the transaction when the connection goes. (A connection
            # that closed itself is already back in the pool: nothing to terminate.)
            with suppress(asyncpg.InterfaceError):
                raw.terminate()
            raise
        except BaseException:
            await self._release(pool, raw)
            raise
        await self._release(pool, raw)
        if self._down:
            self._down = False
            if self.log_outages:
                # As loud as the outage it ends, so that the two show up together.
                logger.warning("PostgreSQL available again")

    async def _release(self, pool: asyncpg.Pool, raw: asyncpg.Connection) -> None:
        # A connection that fails its reset is terminated by the pool, which makes a new
        # one on demand: nothing to report to the request.
        with suppress(*_PG_UNAVAILABLE):
            await pool.release(raw, timeout=self.timeout)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        async with self._connection() as raw:
            yield _PostgresConnection(raw, self)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """Committed on exit, else rolled back. When COMMIT fails the caller gets
        ``DatabaseUnavailable``, never a result: nothing is acknowledged uncommitted."""
        async with self._connection() as raw:
            transaction = raw.transaction()
            try:
                await transaction.start()
            except _PG_UNAVAILABLE as error:
                raise await self._unavailable(error) from error
            try:
                yield _PostgresConnection(raw, self)
            except DatabaseUnavailable:
                raise  # the connection is dropped, which rolls back
            except BaseException:
                with suppress(*_PG_UNAVAILABLE):
                    await transaction.rollback()
                raise
            try:
                await transaction.commit()
            except _PG_UNAVAILABLE as error:
                raise await self._unavailable(error) from error

    async def write_in_background(self, sql: str, *args: object) -> None:
        async with self.transaction() as conn:
            await conn.execute(sql, *args)

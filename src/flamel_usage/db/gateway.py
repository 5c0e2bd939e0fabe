"""The one gateway to the database: SQLite (embedded default) or PostgreSQL.

Domain services write their SQL once, with ``?`` placeholders, and run it through a
``Connection`` from ``Database.read()`` or ``Database.transaction()``. The gateway
turns the placeholders into the store's own, opens transactions the way each store
needs for atomic check-and-debit (``BEGIN IMMEDIATE`` on SQLite, row locks on
PostgreSQL), and applies the migrations under a lock so that several workers starting
at once apply each exactly once.

When the store cannot be reached, or does not answer within the configured timeout
(``FLAMEL_DATABASE_TIMEOUT_SECONDS``), the gateway raises ``DatabaseUnavailable`` and
nothing else: services never see a driver's exception, and the web layer answers
``503 service_unavailable``. PostgreSQL needs no live server to start: the pool connects
on demand, drops connections the server closed, and reconnects when it is back.

SQLite is driven synchronously on the event loop: its statements take microseconds, and
a thread hop would cost more than the query. One connection per process is guarded by
an ``asyncio.Lock`` so that a transaction is never interleaved with another task's
statements.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote, unquote, urlsplit

import asyncpg

from flamel_usage.core.config import DEFAULT_DATABASE_TIMEOUT_SECONDS, Secret

Dialect = Literal["sqlite", "postgresql"]

logger = logging.getLogger("flamel_usage.db.gateway")

#: SQLite's wait for its single write lock never goes below this, whatever the timeout:
#: under contention, charges queue for the lock rather than fail.
SQLITE_MIN_BUSY_SECONDS = 10.0
#: How often a transaction tries again for SQLite's write lock while another process
#: holds it (about the event loop's timer resolution).
_WRITE_LOCK_RETRY_SECONDS = 0.001


class UniqueViolation(Exception):
    """An insert or update hit a unique constraint: the same thing exists already.

    Raised by both stores alike, so services can answer "exists" (409) for a race that
    a check before the insert cannot rule out on PostgreSQL.
    """


class DatabaseUnavailable(OSError):
    """The store could not be reached or did not answer in time.

    Raised for a connection that could not be made or was lost, a server shutting down
    or refusing connections, and an acquire or statement that exceeded the timeout. The
    transaction in progress was rolled back, except in the one case no client can rule
    out: the connection died after COMMIT was sent; an idempotent retry tells which.
    An ``OSError``, like the socket errors and timeouts it stands for. Its message names
    the cause's type only, never the URL or a credential.
    """


class DatabaseNotReady(Exception):
    """The store does not exist or lacks migrations, and the caller must not fix that.

    Raised by ``open_migrated`` only. Its message names the store as ``repr`` does
    (a path, or PostgreSQL's host, port and database), never a credential.
    """


class Row(Protocol):
    def __getitem__(self, key: str | int, /) -> Any: ...


class Connection(abc.ABC):
    dialect: Dialect

    def for_update(self, alias: str) -> str:
        """Suffix that locks the rows of ``alias`` until commit, where the store has row locks.

        SQLite needs none: ``BEGIN IMMEDIATE`` already holds the write lock for the
        whole transaction.
        """
        return f" FOR UPDATE OF {alias}" if self.dialect == "postgresql" else ""

    async def lock_name(self, name: str) -> None:
        """Hold a lock on ``name`` until this transaction ends, where the store needs one.

        Serialises work that no row lock can cover yet, such as two requests with one
        idempotency key whose charge row does not exist. SQLite needs none: its write
        transaction already excludes every other writer.
        """
        if self.dialect == "postgresql":
            await self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", name)

    @abc.abstractmethod
    async def fetchall(self, sql: str, *args: object) -> Sequence[Row]: ...

    @abc.abstractmethod
    async def fetchone(self, sql: str, *args: object) -> Row | None: ...

    @abc.abstractmethod
    async def execute(self, sql: str, *args: object) -> int:
        """Run a statement; return the number of rows it changed."""

    async def fetchval(self, sql: str, *args: object) -> Any:
        row = await self.fetchone(sql, *args)
        return None if row is None else row[0]


class Database(abc.ABC):
    dialect: Dialect

    #: Bound on connecting, acquiring a connection and each statement, in seconds.
    timeout: float = DEFAULT_DATABASE_TIMEOUT_SECONDS
    #: Log the store going away and coming back (once each, not per request). Set by
    #: ``start``, for a server; a one-shot command reports the error it gets instead.
    log_outages: bool = False

    @staticmethod
    def from_url(
        url: Secret | str, *, timeout: float = DEFAULT_DATABASE_TIMEOUT_SECONDS
    ) -> Database:
        raw = url.reveal() if isinstance(url, Secret) else url
        scheme = urlsplit(raw).scheme
        if scheme == "sqlite":
            return SQLiteDatabase(_sqlite_path(raw), timeout=timeout)
        if scheme in ("postgresql", "postgres"):
            return PostgresDatabase(raw, timeout=timeout)
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://"
        )

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the store, creating a SQLite file that does not exist yet."""

    async def open_migrated(self) -> None:
        """Open a store that exists and has every migration applied, else raise
        ``DatabaseNotReady``; never create or migrate it.

        For work that only reads: a store created or migrated for it would be empty and
        consistent, and would report a mistyped URL as "all clear".
        """
        try:
            await self._open_existing()
            pending = await self.pending_migrations()
            if pending:
                raise DatabaseNotReady(f"{self!r} lacks migrations {pending}")
        except BaseException:
            await self.close()
            raise

    @abc.abstractmethod
    async def _open_existing(self) -> None:
        """``open``, but ``DatabaseNotReady`` when the store does not exist."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> AbstractAsyncContextManager[Connection]:
        """A connection whose every statement sees everything committed before it."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A write transaction: committed on exit, rolled back on any exception."""

    @abc.abstractmethod
    async def write_in_background(self, sql: str, *args: object) -> None:
        """Run one statement in a transaction of its own, without holding up requests.

        For bulk bookkeeping such as keys' last-use times, tens of thousands of rows
        in one statement: SQLite runs it in a thread on a connection of its own (the
        statement runs in SQLite's C code without the GIL, so reads on the event loop
        go on meanwhile, as WAL lets them); PostgreSQL runs it on a pool connection.
        """

    async def start(self) -> None:
        """Open the store for a server and apply pending migrations.

        Any failure is raised: a server does not start on a store it cannot open.
        PostgreSQL overrides this to start while its server is down.
        """
        self.log_outages = True
        await self.open()
        await self.migrate()

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied by this call."""
        async with self.transaction() as conn:
            return await _apply_migrations(conn)

    async def pending_migrations(self) -> list[int]:
        """The versions of the packaged migrations not applied to this store yet.

        Reads only. ``DatabaseUnavailable`` when the store does not answer, and also
        when it is not open (before ``open`` or after ``close``).
        """
        try:
            async with self.read() as conn:
                applied = await _applied_versions(conn)
        except RuntimeError as error:  # "database is not open"
            raise DatabaseUnavailable("the database is not open") from error
        return [version for version in _packaged_versions() if version not in applied]


# --- SQLite -------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
    if not path:
        raise ValueError("a SQLite URL names a file: sqlite:///path/to/file.sqlite3")
    return Path(path)


class _SQLiteConnection(Connection):
    dialect: Dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection, *, log_outages: bool = False) -> None:
        self._raw = raw
        self._log_outages = log_outages

    def _run(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            return self._raw.execute(sql, args)
        except sqlite3.IntegrityError as error:
            if "UNIQUE" in str(error):
                raise UniqueViolation(str(error)) from error
            raise
        except sqlite3.OperationalError as error:
            _raise_if_sqlite_unavailable(error, log=self._log_outages)
            raise

    def begin_immediate_or_busy(self, busy_ms: int) -> bool:
        """``BEGIN IMMEDIATE`` without waiting: False when another connection writes.
        ``busy_ms`` is the connection's usual busy timeout, put back afterwards."""
        self._raw.execute("PRAGMA busy_timeout=0")
        try:
            self._raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if str(error).lower().startswith("database is locked"):
                return False
            _raise_if_sqlite_unavailable(error, log=self._log_outages)
            raise
        finally:
            self._raw.execute(f"PRAGMA busy_timeout={busy_ms}")
        return True

    async def fetchall(self, sql: str, *args: object) -> Sequence[Row]:
        return self._run(sql, args).fetchall()

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        row: Row | None = self._run(sql, args).fetchone()
        return row

    async def execute(self, sql: str, *args: object) -> int:
        return self._run(sql, args).rowcount


class SQLiteDatabase(Database):
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, timeout: float = DEFAULT_DATABASE_TIMEOUT_SECONDS) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: _SQLiteConnection | None = None
        self._lock = asyncio.Lock()
        self._busy_ms = round(max(timeout, SQLITE_MIN_BUSY_SECONDS) * 1000)
        self._batch: sqlite3.Connection | None = None
        self._batch_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({str(self.path)!r})"

    async def open(self) -> None:
        # For its owner alone, whatever the umask: it holds emails, password hashes and
        # the ledger. SQLite gives the WAL and SHM files the database file's permissions.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.touch(mode=0o600)
        self._open_file()
        # Kept in the file: every later connection, in any process, finds it in WAL mode.
        self._connection()._raw.execute("PRAGMA journal_mode=WAL")

    async def _open_existing(self) -> None:
        if not self.path.is_file():
            raise DatabaseNotReady(f"no SQLite database at {self.path}")
        self._open_file()

    def _open_file(self) -> None:
        _owner_only(self.path)
        raw = self._connect()
        raw.row_factory = sqlite3.Row
        self._conn = _SQLiteConnection(raw, log_outages=self.log_outages)

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: SQLite never creates the file (``open`` does), so a store checked to
        # exist is not created anew should it be deleted in the meantime.
        raw = sqlite3.connect(
            f"file:{quote(str(self.path))}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        raw.execute("PRAGMA foreign_keys=ON")
        # PostgreSQL's normalize(text), to NFC, so that a migration is written once.
        raw.create_function("normalize", 1, _nfc, deterministic=True)
        return raw

    async def close(self) -> None:
        if self._conn is not None:
            self._conn._raw.close()
            self._conn = None
        with self._batch_lock:
            if self._batch is not None:
                self._batch.close()
                self._batch = None

    async def write_in_background(self, sql: str, *args: object) -> None:
        self._connection()  # raises when the database is not open
        await asyncio.to_thread(self._write_blocking, sql, args)

    def _write_blocking(self, sql: str, args: tuple[object, ...]) -> None:
        with self._batch_lock:
            if self._batch is None:
                self._batch = self._connect()
            batch = self._batch
            try:
                batch.execute("BEGIN IMMEDIATE")
                batch.execute(sql, args)
                batch.execute("COMMIT")
            except sqlite3.OperationalError as error:
                if batch.in_transaction:
                    batch.execute("ROLLBACK")
                _raise_if_sqlite_unavailable(error, log=self.log_outages)
                raise

    def _connection(self) -> _SQLiteConnection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    def read(self) -> _SQLiteRead:
        return _SQLiteRead(self)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        conn = await self._begin()
        try:
            yield conn
            conn._run("COMMIT", ())
        except BaseException:
            if conn._raw.in_transaction:
                conn._raw.execute("ROLLBACK")
            raise
        finally:
            self._lock.release()

    async def _begin(self) -> _SQLiteConnection:
        """This process's connection, holding ``self._lock`` and SQLite's write lock.

        While another process writes, this one waits with its event loop free and its
        connection released (reads go on), trying again every millisecond: SQLite's own
        busy handler would freeze the whole loop, sleeping up to 100 ms at a time.
        """
        deadline = time.monotonic() + self._busy_ms / 1000
        while True:
            await self._lock.acquire()
            try:
                conn = self._connection()
                if conn.begin_immediate_or_busy(self._busy_ms):
                    return conn
            except BaseException:
                self._lock.release()
                raise
            self._lock.release()
            if time.monotonic() >= deadline:
                busy = sqlite3.OperationalError("database is locked")
                _raise_if_sqlite_unavailable(busy, log=self.log_outages)
            await asyncio.sleep(_WRITE_LOCK_RETRY_SECONDS)


def _owner_only(path: Path) -> None:
    """Make the database file at ``path`` and its WAL and SHM files readable by their
    owner alone: older versions left them readable by every local user."""
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


class _SQLiteRead:
    """``SQLiteDatabase.read()``: this process's connection, under the lock.

    A class rather than a generator-based context manager: every usage read passes
    through here, and the generator machinery cost more than the lock itself.
    """

    __slots__ = ("_db",)

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def __aenter__(self) -> Connection:
        await self._db._lock.acquire()
        try:
            return self._db._connection()
        except BaseException:
            self._db._lock.release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._db._lock.release()


def _nfc(text: str | None) -> str | None:
    return None if text is None else unicodedata.normalize("NFC", text)


#: SQLite's words for a store that is busy or cannot be reached, rather than a bad query.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")


def _raise_if_sqlite_unavailable(error: sqlite3.OperationalError, *, log: bool) -> None:
    if str(error).lower().startswith(_SQLITE_UNAVAILABLE):
        if log:
            logger.warning("SQLite database unavailable: %s", error)
        raise DatabaseUnavailable(f"SQLite: {error}") from error


# --- PostgreSQL ---------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\?")

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


class PostgresDatabase(Database):
    """An asyncpg pool that needs no live server to open.

    Connections are made on demand (none at open), each bounded by ``timeout``, as are
    acquiring one from a full pool and every statement. A connection that failed is
    dropped, one the server closed is replaced on its next acquire, and a lost connection
    retires the pool's others, so that none that went stale is handed out again.
    """

    dialect: Dialect = "postgresql"

    def __init__(
        self, url: str, *, max_size: int = 10, timeout: float = DEFAULT_DATABASE_TIMEOUT_SECONDS
    ) -> None:
        self._url = Secret(url)
        self._pool: asyncpg.Pool | None = None
        self._translate: dict[str, str] = {}
        self._max_size = max_size
        self.timeout = timeout
        #: Set when the server was down at ``start``: the first connection migrates.
        self._migrate_on_connect = False
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
        except DatabaseUnavailable:
            self._migrate_on_connect = True
            logger.warning("PostgreSQL unavailable at start: migrations wait for it")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    async def _init_connection(self, raw: asyncpg.Connection) -> None:
        """Run on each new connection: the deferred migrations, until they succeed once."""
        if not self._migrate_on_connect:
            return
        try:
            async with raw.transaction():
                applied = await _apply_migrations(_PostgresConnection(raw, self))
        except DatabaseUnavailable:
            raise
        except _PG_UNAVAILABLE as error:
            raise await self._unavailable(error) from error
        self._migrate_on_connect = False
        logger.warning("PostgreSQL available: migrations applied: %s", applied or "none pending")

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


# --- Migrations ---------------------------------------------------------------------------

_MIGRATION_LOCK = "flamel_usage.db.migrations"


async def _apply_migrations(conn: Connection) -> list[int]:
    """Apply, in ``conn``'s transaction, the migrations not yet applied; return them."""
    applied: list[int] = []
    await conn.lock_name(_MIGRATION_LOCK)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
    )
    done = {row[0] for row in await conn.fetchall("SELECT version FROM schema_migrations")}
    for version, statements in _migrations(conn.dialect):
        if version in done:
            continue
        for statement in statements:
            await conn.execute(statement)
        await conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            version,
            time.time_ns() // 1000,
        )
        applied.append(version)
    return applied


_MIGRATIONS_TABLE = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    "postgresql": "SELECT 1 WHERE to_regclass('schema_migrations') IS NOT NULL",
}


async def _applied_versions(conn: Connection) -> set[int]:
    """Versions recorded in ``schema_migrations``; none when the table is not there."""
    if await conn.fetchone(_MIGRATIONS_TABLE[conn.dialect]) is None:
        return set()
    return {int(row[0]) for row in await conn.fetchall("SELECT version FROM schema_migrations")}


@functools.cache
def _packaged_versions() -> tuple[int, ...]:
    return tuple(version for version, _ in _migrations("sqlite"))


_IDENTITY = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
}


def _migrations(dialect: Dialect) -> list[tuple[int, list[str]]]:
    """The numbered ``migrations/NNNN_name.sql`` files, as statements for ``dialect``.

    One file serves both stores: the only difference in our schema is how an
    auto-numbered key is spelt, written ``{{IDENTITY}}`` in the files.
    """
    found: list[tuple[int, list[str]]] = []
    for entry in resources.files("flamel_usage.db.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text().replace("{{IDENTITY}}", _IDENTITY[dialect])
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
        statements = [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
        found.append((int(entry.name.split("_", 1)[0]), statements))
    return sorted(found)

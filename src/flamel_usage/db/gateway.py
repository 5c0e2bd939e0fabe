"""The one gateway to the database: what services see of SQLite and PostgreSQL alike.

Domain services write their SQL once, with ``?`` placeholders, and run it through a
``Connection`` from ``Database.read()`` or ``Database.transaction()``. Each store
(``db/sqlite.py``, ``db/postgres.py``) turns the placeholders into its own and opens
transactions the way it needs for atomic check-and-debit (``BEGIN IMMEDIATE`` on
SQLite, row locks on PostgreSQL); ``db/migrate.py`` applies the schema.

When the store cannot be reached, or does not answer within the configured timeout
(``FLAMEL_DATABASE_TIMEOUT_SECONDS``), a store raises ``DatabaseUnavailable`` and
nothing else: services never see a driver's exception, and the web layer answers
``503 service_unavailable``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from flamel_usage.core.config import DEFAULT_DATABASE_TIMEOUT_SECONDS, Secret
from flamel_usage.db import migrate

Dialect = Literal["sqlite", "postgresql"]


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


class DurabilityOff(Exception):
    """The store may lose a commit it has acknowledged: PostgreSQL with
    ``synchronous_commit`` or ``fsync`` off. A charge answered 2xx must survive a crash,
    so a server refuses to start there unless the operator says it is intended
    (``FLAMEL_ALLOW_ASYNC_COMMIT``)."""


class Row(Protocol):
    def __getitem__(self, key: str | int, /) -> Any: ...


class Connection(abc.ABC):
    dialect: Dialect

    def for_update(self, alias: str, *, skip_locked: bool = False) -> str:
        """Suffix that locks the rows of ``alias`` until commit, where the store has row locks.

        ``skip_locked``: rows another transaction holds are left out rather than waited
        for, so that several workers claim different rows of a queue at once.
        SQLite needs none: ``BEGIN IMMEDIATE`` already holds the write lock for the
        whole transaction.
        """
        if self.dialect != "postgresql":
            return ""
        return f" FOR UPDATE OF {alias}" + (" SKIP LOCKED" if skip_locked else "")

    async def lock_name(self, name: str) -> None:
        """Hold a lock on ``name`` until this transaction ends, where the store needs one.

        Serialises work that no row lock can cover yet, such as two requests with one
        idempotency key whose charge row does not exist. SQLite needs none: its write
        transaction already excludes every other writer.
        """
        if self.dialect == "postgresql":
            await self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", name)

    async def lock_table(self, table: str) -> None:
        """Hold every other writer of ``table`` off until this transaction ends (readers
        go on), where the store needs it: for rebuilding a table that other transactions
        add to, so that none adds to a row the rebuild is about to replace. SQLite needs
        none: its write transaction already excludes every other writer."""
        if self.dialect == "postgresql":
            await self.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")

    @abc.abstractmethod
    async def fetchall(self, sql: str, *args: object) -> Sequence[Row]: ...

    @abc.abstractmethod
    async def fetchone(self, sql: str, *args: object) -> Row | None: ...

    @abc.abstractmethod
    async def execute(self, sql: str, *args: object) -> int:
        """Run a statement; return the number of rows it changed."""

    @abc.abstractmethod
    async def run_script(self, script: str) -> None:
        """Run a file of statements (a migration) in this connection's transaction.

        Written in the store's own SQL, without placeholders: the text is sent as it is.
        """

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
        url: Secret | str,
        *,
        timeout: float = DEFAULT_DATABASE_TIMEOUT_SECONDS,
        allow_async_commit: bool = False,
    ) -> Database:
        # Imported here: each store's module builds on this one.
        from flamel_usage.db.postgres import PostgresDatabase
        from flamel_usage.db.sqlite import SQLiteDatabase, sqlite_path

        raw = url.reveal() if isinstance(url, Secret) else url
        scheme = urlsplit(raw).scheme
        if scheme == "sqlite":
            return SQLiteDatabase(sqlite_path(raw), timeout=timeout)
        if scheme in ("postgresql", "postgres"):
            return PostgresDatabase(raw, timeout=timeout, allow_async_commit=allow_async_commit)
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

        Any failure is raised: a server does not start on a store it cannot open, nor
        on one whose applied migrations were edited (``migrate.MigrationEdited``).
        PostgreSQL overrides this to start while its server is down.
        """
        self.log_outages = True
        await self.open()
        await self.migrate()

    async def migrate(self) -> list[int]:
        """Apply pending migrations, each in a transaction of its own; return the
        versions applied by this call. ``migrate.MigrationEdited`` for a store whose
        applied migrations differ from the packaged files, before anything is applied."""
        return await migrate.apply(self.transaction, migrate.packaged(self.dialect))

    async def pending_migrations(self) -> list[int]:
        """The versions of the packaged migrations not applied to this store yet.

        Reads only. ``DatabaseUnavailable`` when the store does not answer, and also
        when it is not open (before ``open`` or after ``close``);
        ``migrate.MigrationEdited`` when an applied one differs from its file.
        """
        try:
            async with self.read() as conn:
                return await migrate.pending(conn, migrate.packaged(self.dialect))
        except RuntimeError as error:  # "database is not open"
            raise DatabaseUnavailable("the database is not open") from error

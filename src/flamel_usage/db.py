"""The one gateway to the database: SQLite (embedded default) or PostgreSQL.

Domain services write their SQL once, with ``?`` placeholders, and run it through a
``Connection`` from ``Database.read()`` or ``Database.transaction()``. The gateway
turns the placeholders into the store's own, opens transactions the way each store
needs for atomic check-and-debit (``BEGIN IMMEDIATE`` on SQLite, row locks on
PostgreSQL), and applies the migrations under a lock so that several workers starting
at once apply each exactly once.

SQLite is driven synchronously on the event loop: its statements take microseconds, and
a thread hop would cost more than the query. One connection per process is guarded by
an ``asyncio.Lock`` so that a transaction is never interleaved with another task's
statements.
"""

from __future__ import annotations

import abc
import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import asyncpg

from flamel_usage.config import Secret

Dialect = Literal["sqlite", "postgresql"]


class UniqueViolation(Exception):
    """An insert or update hit a unique constraint: the same thing exists already.

    Raised by both stores alike, so services can answer "exists" (409) for a race that
    a check before the insert cannot rule out on PostgreSQL.
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

    @staticmethod
    def from_url(url: Secret | str) -> Database:
        raw = url.reveal() if isinstance(url, Secret) else url
        scheme = urlsplit(raw).scheme
        if scheme == "sqlite":
            return SQLiteDatabase(_sqlite_path(raw))
        if scheme in ("postgresql", "postgres"):
            return PostgresDatabase(raw)
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://"
        )

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> AbstractAsyncContextManager[Connection]:
        """A connection whose every statement sees everything committed before it."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A write transaction: committed on exit, rolled back on any exception."""

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied by this call."""
        applied: list[int] = []
        async with self.transaction() as conn:
            await conn.lock_name("flamel_usage.migrations")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            done = {row[0] for row in await conn.fetchall("SELECT version FROM schema_migrations")}
            for version, statements in _migrations(self.dialect):
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


# --- SQLite -------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
    if not path:
        raise ValueError("a SQLite URL names a file: sqlite:///path/to/file.sqlite3")
    return Path(path)


class _SQLiteConnection(Connection):
    dialect: Dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    def _run(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            return self._raw.execute(sql, args)
        except sqlite3.IntegrityError as error:
            if "UNIQUE" in str(error):
                raise UniqueViolation(str(error)) from error
            raise

    async def fetchall(self, sql: str, *args: object) -> Sequence[Row]:
        return self._run(sql, args).fetchall()

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        row: Row | None = self._run(sql, args).fetchone()
        return row

    async def execute(self, sql: str, *args: object) -> int:
        return self._run(sql, args).rowcount


class SQLiteDatabase(Database):
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({str(self.path)!r})"

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        raw.row_factory = sqlite3.Row
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA busy_timeout=10000")
        raw.execute("PRAGMA foreign_keys=ON")
        self._raw = raw

    async def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def _connection(self) -> _SQLiteConnection:
        if self._raw is None:
            raise RuntimeError("database is not open")
        return _SQLiteConnection(self._raw)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        async with self._lock:
            yield self._connection()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._lock:
            conn = self._connection()
            conn._raw.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn._raw.execute("ROLLBACK")
                raise
            conn._raw.execute("COMMIT")


# --- PostgreSQL ---------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\?")


def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class _PostgresConnection(Connection):
    dialect: Dialect = "postgresql"

    def __init__(self, raw: asyncpg.Connection, translate: dict[str, str]) -> None:
        self._raw = raw
        self._translate = translate

    def _sql(self, sql: str) -> str:
        translated = self._translate.get(sql)
        if translated is None:
            translated = self._translate[sql] = _numbered(sql)
        return translated

    async def fetchall(self, sql: str, *args: object) -> Sequence[Row]:
        try:
            rows: Sequence[Row] = await self._raw.fetch(self._sql(sql), *args)
        except asyncpg.UniqueViolationError as error:
            raise UniqueViolation(str(error)) from error
        return rows

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: object) -> int:
        try:
            status: str = await self._raw.execute(self._sql(sql), *args)
        except asyncpg.UniqueViolationError as error:
            raise UniqueViolation(str(error)) from error
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0


class PostgresDatabase(Database):
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._url = Secret(url)
        self._pool: asyncpg.Pool | None = None
        self._translate: dict[str, str] = {}
        self._sizes = (min_size, max_size)

    def __repr__(self) -> str:
        parts = urlsplit(self._url.reveal())
        return f"PostgresDatabase('{parts.hostname}:{parts.port or 5432}{parts.path}')"

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._url.reveal(), min_size=self._sizes[0], max_size=self._sizes[1]
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        async with self._require_pool().acquire() as raw:
            yield _PostgresConnection(raw, self._translate)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._require_pool().acquire() as raw, raw.transaction():
            yield _PostgresConnection(raw, self._translate)


# --- Migrations ---------------------------------------------------------------------------

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
    for entry in resources.files("flamel_usage.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text().replace("{{IDENTITY}}", _IDENTITY[dialect])
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
        statements = [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
        found.append((int(entry.name.split("_", 1)[0]), statements))
    return sorted(found)

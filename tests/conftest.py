"""Fixtures: every test that takes ``db`` runs once on SQLite and once on PostgreSQL.

SQLite gets a fresh file per test, a copy of one migrated once per session. PostgreSQL
gets one database per test session (migrated once) that is truncated before each test,
so no test sees another's rows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from flamel_usage.core.config import Settings
from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Database
from flamel_usage.db.sqlite import SQLiteDatabase
from flamel_usage.http.app import App
from tests.factories import Factory
from tests.store import copy_store, truncate_all

POSTGRES_URL = os.environ.get(
    "FLAMEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ADMIN_TOKEN = "test-admin-token-0123456789"
SESSION_SECRET = "test-session-secret-of-32-bytes-or-more"


class FakeClock:
    """A settable clock in integer microseconds, the unit the service keeps time in."""

    def __init__(self, start: datetime) -> None:
        self.now = to_micros(start)

    def __call__(self) -> int:
        return self.now

    def set(self, instant: datetime) -> None:
        self.now = to_micros(instant)

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1_000_000)


def _database_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


class _EveryLogLine(logging.Handler):
    """Every log record of the service during the whole suite, formatted with its trace."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


#: What must never reach a log: an API key, a signed session cookie, the test secrets.
_SECRET_SHAPES = re.compile(
    rf"flm_[A-Za-z0-9_-]{{43}}|s%3A[A-Za-z0-9_-]{{32}}\.|s:[A-Za-z0-9_-]{{32}}\."
    rf"|{re.escape(ADMIN_TOKEN)}|{re.escape(SESSION_SECRET)}"
)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log() -> Iterator[None]:
    """The logs of the whole suite, every test's included, never carry a secret."""
    handler = _EveryLogLine()
    service = logging.getLogger("flamel_usage")
    level = service.level
    service.setLevel(logging.DEBUG)
    service.addHandler(handler)
    yield
    service.removeHandler(handler)
    service.setLevel(level)
    leaked = [line for line in handler.lines if _SECRET_SHAPES.search(line)]
    assert not leaked, f"secrets in the service's logs: {leaked[:3]}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A private database on the test server for this session, dropped at the end."""
    name = f"flamel_test_{os.getpid()}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def migrate(url: str) -> None:
        db = Database.from_url(url)
        await db.open()
        try:
            await db.migrate()
        finally:
            await db.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as error:
        reason = f"no PostgreSQL answers at FLAMEL_TEST_POSTGRES_URL ({type(error).__name__})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the PostgreSQL tests")
        pytest.skip(reason)
    url = _database_url(POSTGRES_URL, name)
    asyncio.run(migrate(url))
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store migrated once for the session, which each test's store copies.

    Migrating is a write transaction per migration, each synced to disk and committed
    off the event loop: paid by every SQLite test, it was most of a short test's time.
    The migrations themselves keep their tests (tests/test_migrations.py, and those that
    migrate a store of their own).
    """
    path = tmp_path_factory.mktemp("migrated") / "migrated.sqlite3"

    async def migrate() -> None:
        database = Database.from_url(f"sqlite:///{path}")
        await database.open()
        try:
            await database.migrate()
        finally:
            await database.close()

    asyncio.run(migrate())
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
async def db(database_url: str, migrated_sqlite: Path) -> AsyncIterator[Database]:
    """A migrated store with no rows, open."""
    database = Database.from_url(database_url)
    if isinstance(database, SQLiteDatabase):
        copy_store(migrated_sqlite, database.path)
    await database.open()
    if database.dialect == "postgresql":
        await truncate_all(database)
    yield database
    await database.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))


@pytest.fixture
def environ(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "FLAMEL_DATA_DIR": str(tmp_path / "data"),
        "FLAMEL_DATABASE_URL": database_url,
        "FLAMEL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLAMEL_SESSION_SECRET": SESSION_SECRET,
        "FLAMEL_TIMEZONE": "UTC",
        # On, so that the suite's check of every server's log sees a line per request.
        "FLAMEL_ACCESS_LOG": "on",
    }


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_environ(environ)


@pytest.fixture
def app(settings: Settings, db: Database, clock: FakeClock) -> App:
    return App(settings, db, clock)


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same client, sending the admin token."""
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return client


@pytest.fixture
def factory(db: Database, clock: FakeClock, settings: Settings) -> Factory:
    return Factory(db, clock, settings.timezone)

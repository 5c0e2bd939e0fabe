"""Durable at acknowledgement: a charge answered 2xx survives a power loss.

SQLite syncs the WAL at every commit (``synchronous=FULL``) on every connection that
writes; a server refuses a PostgreSQL whose ``synchronous_commit`` or ``fsync`` is off
unless ``FLAMEL_ALLOW_ASYNC_COMMIT`` says that is intended.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from flamel_usage.db.gateway import Database, DurabilityOff
from flamel_usage.db.sqlite import SQLiteDatabase
from tests.conftest import POSTGRES_URL, _database_url
from tests.processes import ServerProcess

FULL = 2  # PRAGMA synchronous's answer for FULL


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The servers here are given their PostgreSQL URL; the rest of ``environ`` stays."""
    return f"sqlite:///{tmp_path / 'unused.sqlite3'}"


async def test_every_sqlite_connection_syncs_at_commit(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "d.sqlite3")
    await db.start()
    try:
        async with db.transaction() as conn:
            assert await conn.fetchval("PRAGMA synchronous") == FULL
        await db.write_in_background("DELETE FROM auth_failures WHERE window_end < ?", 0)
        assert db._batch is not None
        assert db._batch.execute("PRAGMA synchronous").fetchone()[0] == FULL
    finally:
        await db.close()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def asynchronous_database(postgres_database: str) -> Iterator[str]:
    """A database of its own whose sessions commit without waiting for the disk."""
    name = f"flamel_async_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    asyncio.run(_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    try:
        yield _database_url(POSTGRES_URL, name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_postgresql_with_synchronous_commit_off_is_refused(
    asynchronous_database: str,
) -> None:
    db = Database.from_url(asynchronous_database)
    try:
        with pytest.raises(DurabilityOff, match="synchronous_commit=off"):
            await db.start()
    finally:
        await db.close()
    allowed = Database.from_url(asynchronous_database, allow_async_commit=True)
    try:
        await allowed.start()
        async with allowed.read() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
    finally:
        await allowed.close()


async def test_postgresql_with_its_defaults_starts(postgres_database: str) -> None:
    db = Database.from_url(postgres_database)
    try:
        await db.start()
        async with db.read() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await db.close()


def test_the_server_refuses_to_start_and_says_why(
    environ: dict[str, str], asynchronous_database: str
) -> None:
    server = ServerProcess({**environ, "FLAMEL_DATABASE_URL": asynchronous_database})
    try:
        assert server.process.wait(timeout=30) != 0
        output = server.output()
        assert "synchronous_commit=off" in output
        assert "FLAMEL_ALLOW_ASYNC_COMMIT=on" in output
        assert asynchronous_database not in output
    finally:
        server.close()
    allowed = {
        **environ,
        "FLAMEL_DATABASE_URL": asynchronous_database,
        "FLAMEL_ALLOW_ASYNC_COMMIT": "on",
    }
    server = ServerProcess(allowed)
    try:
        server.wait_until_ready()
    finally:
        server.close()

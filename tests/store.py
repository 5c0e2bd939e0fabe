"""The store read and written directly by tests: to set up a state, or to prove that
nothing at all changed (every row of every table, tables found in the database itself,
so a table added by a later migration is covered without editing a list).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from flamel_usage.db.gateway import Connection, Database

_TABLE_NAMES = {
    "postgresql": (
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename <> 'schema_migrations' ORDER BY tablename"
    ),
    "sqlite": (
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name <> 'schema_migrations' ORDER BY name"
    ),
}

Rows = dict[str, list[tuple[Any, ...]]]


async def table_names(conn: Connection) -> list[str]:
    return [str(row[0]) for row in await conn.fetchall(_TABLE_NAMES[conn.dialect])]


async def table_rows(db: Database) -> Rows:
    """Every row of every table of ours, in a stable order."""
    async with db.read() as conn:
        return {
            table: [tuple(row) for row in await conn.fetchall(f"SELECT * FROM {table} ORDER BY 1")]
            for table in await table_names(conn)
        }


async def truncate_all(db: Database) -> None:
    async with db.transaction() as conn:
        tables = ", ".join(await table_names(conn))
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def copy_store(source: Path, target: Path) -> None:
    """A new SQLite store at ``target`` holding what the closed one at ``source`` holds.

    Closed, ``source`` is its one file: its last connection moved the WAL into it and
    removed the WAL. A file for its owner alone, as the service makes its own.
    """
    if source.with_name(f"{source.name}-wal").exists():
        raise RuntimeError(f"{source} has a WAL: close every connection to it before a copy")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(0o600)


def _with_database(database_url: str, work: Any) -> Any:
    async def run() -> Any:
        db = Database.from_url(database_url)
        await db.open()
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(run())


def sql(database_url: str, statement: str, *args: object) -> list[tuple[object, ...]]:
    """Run one statement (``?`` placeholders) in its own transaction; return its rows."""

    async def run(db: Database) -> list[tuple[object, ...]]:
        async with db.transaction() as conn:
            return [tuple(row) for row in await conn.fetchall(statement, *args)]

    result: list[tuple[object, ...]] = _with_database(database_url, run)
    return result


def snapshot(database_url: str) -> Rows:
    """``table_rows`` for code that has a URL and no event loop (CLI and process tests)."""
    rows: Rows = _with_database(database_url, table_rows)
    return rows


def reset_database(database_url: str) -> None:
    """Empty every table of a (migrated) PostgreSQL database; a SQLite file starts fresh."""
    if database_url.startswith("postgres"):
        _with_database(database_url, truncate_all)

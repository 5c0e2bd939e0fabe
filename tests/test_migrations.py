"""Migrations on both stores: files per store, each applied once in a transaction of its
own with its checksum, an edited one refused, several migrators at once, and stores made
before checksums were recorded upgraded in place."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from flamel_usage.core.config import Settings
from flamel_usage.db import migrate
from flamel_usage.db.gateway import Database
from flamel_usage.db.migrate import Migration, MigrationEdited
from flamel_usage.db.sqlite import script_statements
from flamel_usage.http.app import App
from tests.conftest import ADMIN_TOKEN, POSTGRES_URL, SESSION_SECRET
from tests.processes import ServerProcess, child_env, cli_command, run_cli, single_line

ALL = [migration.version for migration in migrate.packaged("sqlite")]
#: The version tampered with in the tests of an edited migration.
EDITED = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a store that exists and was never migrated."""
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite3"
        path.touch()
        yield f"sqlite:///{path}"
        return
    base = str(request.getfixturevalue("postgres_database")).rsplit("/", 1)[0]
    name = f"flamel_migrations_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Database]:
    db = Database.from_url(url)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def recorded(db: Database) -> dict[int, str | None]:
    async with db.read() as conn:
        rows = await conn.fetchall("SELECT version, checksum FROM schema_migrations")
    return {int(row[0]): row[1] for row in rows}


async def table_exists(db: Database, table: str) -> bool:
    query = {
        "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        "postgresql": "SELECT 1 WHERE to_regclass(?) IS NOT NULL",
    }[db.dialect]
    async with db.read() as conn:
        return await conn.fetchone(query, table) is not None


async def edit_applied(db: Database, version: int) -> None:
    """What an edit of the packaged file looks like from the store: another checksum."""
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE schema_migrations SET checksum = ? WHERE version = ?", "0" * 64, version
        )


# --- the files ---------------------------------------------------------------------------


def test_both_stores_ship_the_same_migrations_in_order() -> None:
    names = {
        dialect: [m.name for m in migrate.packaged(dialect)] for dialect in ("sqlite", "postgresql")
    }
    assert names["sqlite"] == names["postgresql"]
    assert list(range(1, len(ALL) + 1)) == ALL
    for name in names["sqlite"]:
        assert re.fullmatch(r"[0-9]{4}_[a-z0-9_]+\.sql", name), name


def test_each_checksum_is_the_sha256_of_its_file() -> None:
    for dialect in ("sqlite", "postgresql"):
        folder = Path(migrate.__file__).parent / "migrations" / dialect
        for migration in migrate.packaged(dialect):
            raw = (folder / migration.name).read_bytes()
            assert migration.checksum == hashlib.sha256(raw).hexdigest()
            assert migration.sql == raw.decode("utf-8")


def test_sqlite_scripts_split_where_sqlite_ends_a_statement() -> None:
    script = (
        "-- a comment; not the end of anything\n"
        "CREATE TABLE a (x TEXT DEFAULT ';');\n"
        "/* another; */ INSERT INTO a VALUES ('1;2'); INSERT INTO a VALUES ('3');\n"
        "-- the last word\n"
    )
    assert script_statements(script) == [
        "-- a comment; not the end of anything\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "/* another; */ INSERT INTO a VALUES ('1;2');",
        "INSERT INTO a VALUES ('3');",
        "-- the last word",
    ]
    assert script_statements("SELECT 1") == ["SELECT 1"]
    assert script_statements("  \n") == []


# --- applying them -------------------------------------------------------------------------


async def test_a_new_store_records_each_migration_with_its_checksum(store_url: str) -> None:
    async with opened(store_url) as db:
        assert await db.pending_migrations() == ALL
        assert await db.migrate() == ALL
        assert await db.migrate() == []
        assert await db.pending_migrations() == []
        checksums = {m.version: m.checksum for m in migrate.packaged(db.dialect)}
        assert await recorded(db) == checksums


async def test_a_failing_migration_leaves_the_ones_before_it_applied_and_itself_not(
    store_url: str,
) -> None:
    def migration(version: int, sql: str) -> Migration:
        return Migration(version, f"{version:04d}_test.sql", sql, f"{version:064x}")

    good = migration(100, "CREATE TABLE applied_whole (x INTEGER);")
    bad = migration(101, "CREATE TABLE never_seen (x INTEGER);\nSELECT * FROM no_such_table;")
    after = migration(102, "CREATE TABLE never_reached (x INTEGER);")
    migrations = (*migrate.packaged(Database.from_url(store_url).dialect), good, bad, after)
    async with opened(store_url) as db:
        with pytest.raises((sqlite3.OperationalError, asyncpg.UndefinedTableError)):
            await migrate.apply(db.transaction, migrations)
        assert sorted(await recorded(db)) == [*ALL, 100]
        assert await table_exists(db, "applied_whole")
        assert not await table_exists(db, "never_seen")
        assert not await table_exists(db, "never_reached")
        # Fixed, it applies from where it stopped.
        fixed = migration(101, "CREATE TABLE now_seen (x INTEGER);")
        assert await migrate.apply(db.transaction, (*migrations[:-2], fixed, after)) == [101, 102]


async def test_migrators_at_once_apply_each_migration_exactly_once(store_url: str) -> None:
    """Four connections of their own, as four workers or nodes starting together."""
    databases = [Database.from_url(store_url, timeout=10) for _ in range(4)]
    for db in databases:
        await db.open()
    try:
        applied = await asyncio.gather(*(db.migrate() for db in databases))
    finally:
        for db in databases:
            await db.close()
    assert sorted(version for versions in applied for version in versions) == ALL
    async with opened(store_url) as db:
        assert sorted(await recorded(db)) == ALL


def test_migrate_processes_at_once_apply_each_migration_exactly_once(
    store_url: str, tmp_path: Path
) -> None:
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data"), "FLAMEL_DATABASE_URL": store_url}
    processes = [  # all started before any is waited for
        subprocess.Popen(
            [*cli_command(), "migrate"],
            env=child_env(environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    applied: list[int] = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        shown = out.strip().removeprefix("applied: ")
        applied += [] if shown == "nothing" else [int(v) for v in shown.strip("[]").split(", ")]
    assert sorted(applied) == ALL


# --- an edited migration -------------------------------------------------------------------


async def test_an_edited_migration_is_refused_before_anything_is_applied(store_url: str) -> None:
    async with opened(store_url) as db:
        await db.migrate()
        await edit_applied(db, EDITED)
        async with db.transaction() as conn:
            await conn.execute("DELETE FROM schema_migrations WHERE version = ?", ALL[-1])
        with pytest.raises(MigrationEdited, match=rf"migration {EDITED} \(0003_\w+\.sql\)"):
            await db.migrate()
        assert sorted(await recorded(db)) == ALL[:-1]  # the pending one was not applied
        with pytest.raises(MigrationEdited) as raised:
            await db.pending_migrations()
        assert raised.value.version == EDITED


async def test_readyz_is_not_ready_on_a_store_with_an_edited_migration(
    store_url: str, tmp_path: Path
) -> None:
    async with opened(store_url) as db:
        await db.migrate()
        await edit_applied(db, EDITED)
        settings = Settings.from_environ({"FLAMEL_DATA_DIR": str(tmp_path / "data")})
        transport = httpx.ASGITransport(app=App(settings, db))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert (body["success"], body["code"], body["data"]) == (False, 503, "service_unavailable")
    assert f"migration {EDITED} " in body["message"]


def _environ(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "FLAMEL_DATA_DIR": str(tmp_path / "data"),
        "FLAMEL_DATABASE_URL": url,
        "FLAMEL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLAMEL_SESSION_SECRET": SESSION_SECRET,
    }


async def _migrated_then_edited(url: str) -> None:
    async with opened(url) as db:
        await db.migrate()
        await edit_applied(db, EDITED)


def test_the_cli_and_the_server_refuse_a_store_with_an_edited_migration(
    store_url: str, tmp_path: Path
) -> None:
    asyncio.run(_migrated_then_edited(store_url))
    environ = _environ(store_url, tmp_path)
    for command in ("migrate", "reconcile"):
        done = run_cli(environ, command)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        line = single_line(done.stderr)
        assert line.startswith(f"flamel-usage: migration_edited: migration {EDITED} "), line

    server = ServerProcess(environ)
    try:
        with pytest.raises(RuntimeError, match="exited with"):
            server.wait_until_ready()
        assert server.stop() != 0
        assert f"migration {EDITED} (0003_" in server.output()
    finally:
        server.close()


# --- stores from before checksums ----------------------------------------------------------


async def _store_before_checksums(db: Database, versions: list[int]) -> None:
    """What the versions before checksums made: their table, without the checksum
    column, and the schema of ``versions`` (from the same SQL)."""
    async with db.transaction() as conn:
        await conn.execute(
            "CREATE TABLE schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        for migration in migrate.packaged(db.dialect):
            if migration.version in versions:
                await conn.run_script(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)",
                    migration.version,
                )


async def test_a_store_from_before_checksums_is_upgraded_in_place(store_url: str) -> None:
    async with opened(store_url) as db:
        await _store_before_checksums(db, ALL[:-1])
        assert await db.pending_migrations() == ALL[-1:]  # read as it is, nothing written
        assert await db.migrate() == ALL[-1:]
        checksums = {m.version: m.checksum for m in migrate.packaged(db.dialect)}
        assert await recorded(db) == checksums
        assert await db.migrate() == []
        # And from now on an edit is seen.
        await edit_applied(db, 1)
        with pytest.raises(MigrationEdited, match="migration 1 "):
            await db.migrate()


async def test_a_record_an_older_node_makes_meanwhile_gets_its_checksum(store_url: str) -> None:
    """During a rolling upgrade a node of the older version may still record one
    migration without a checksum: the next start fills it in."""
    async with opened(store_url) as db:
        await db.migrate()
        async with db.transaction() as conn:
            await conn.execute("UPDATE schema_migrations SET checksum = NULL WHERE version = 2")
        assert await db.pending_migrations() == []
        assert await db.migrate() == []
        assert (await recorded(db))[2] == migrate.packaged(db.dialect)[1].checksum

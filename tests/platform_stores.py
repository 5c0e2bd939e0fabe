"""The platform's session stores for tests: a Redis key prefix and a PostgreSQL database
of their own per test session, removed at its end.

Redis is this machine's (``FLAMEL_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``;
``.ci/run`` starts one where there is none); every key a run writes starts with a
prefix unique to that run, so parallel runs never see each other's sessions. The
PostgreSQL database stands for the platform's own: its default ``TimeZone`` is Seoul's,
not UTC, so that a comparison of connect-pg-simple's ``expire`` (a local time of the
connection's zone) made any other way than its own is caught.

``write_session`` puts a session where connect-redis or connect-pg-simple would, in
their formats, for tests that need a state the real Express app cannot make (a cookie
expiry that disagrees with the store's, a user field of the wrong type).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import orjson
import pytest
import redis
from redis import asyncio as aioredis

from tests.conftest import POSTGRES_URL

REDIS_URL = os.environ.get("FLAMEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PLATFORM_ZONE = "Asia/Seoul"
SCHEMA = "platform"
TABLE = "user_sessions"
#: connect-pg-simple's table.sql, in the schema and table the tests configure.
_TABLE_SQL = f"""
CREATE TABLE {SCHEMA}.{TABLE} (
    sid varchar NOT NULL COLLATE "default" PRIMARY KEY,
    sess json NOT NULL,
    expire timestamp(6) NOT NULL
);
CREATE INDEX "IDX_session_expire" ON {SCHEMA}.{TABLE} (expire);
"""


def _missing(what: str, error: BaseException) -> None:
    reason = f"no {what} answers ({type(error).__name__})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the platform session tests")
    pytest.skip(reason)


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of this run's own; every key under it is deleted at the end."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        client.close()
        _missing(f"Redis at {REDIS_URL}", error)
    prefix = f"flamel-test-{os.getpid()}-{secrets.token_hex(4)}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _create_schema(url: str, *, with_table: bool) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
        if with_table:
            await conn.execute(_TABLE_SQL)
    finally:
        await conn.close()


@contextmanager
def platform_database(*, with_table: bool = True) -> Iterator[str]:
    """The URL of a new database in Seoul's time zone, dropped at the end, with the
    schema ``SCHEMA`` and in it connect-pg-simple's table ``TABLE``, unless the Express
    app is to create that itself."""
    name = f"flamel_platform_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError) as error:
        _missing("PostgreSQL at FLAMEL_TEST_POSTGRES_URL", error)
    try:
        asyncio.run(_admin(f"ALTER DATABASE {name} SET timezone TO '{PLATFORM_ZONE}'"))
        url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
        asyncio.run(_create_schema(url, with_table=with_table))
        yield url
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def write_session(
    store: str, where: str, session_id: str, session: Any, *, ttl_seconds: int, now: int
) -> None:
    """Store ``session`` as connect-redis (``where``: the key prefix) or connect-pg-simple
    (``where``: the database URL) does, to live ``ttl_seconds`` from ``now`` (µs; Redis
    counts its TTL in real time whatever ``now`` is)."""
    value = session if isinstance(session, bytes) else orjson.dumps(session)
    if store == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await client.set(f"{where}{session_id}", value, ex=ttl_seconds)
        finally:
            await client.aclose()
        return
    conn = await asyncpg.connect(where, timeout=10)
    try:
        # connect-pg-simple's own statement: expire = to_timestamp(unix seconds).
        await conn.execute(
            f"INSERT INTO {SCHEMA}.{TABLE} (sess, expire, sid)"
            " SELECT $1, to_timestamp($2), $3"
            " ON CONFLICT (sid) DO UPDATE SET sess = $1, expire = to_timestamp($2)",
            value.decode(),
            float(now // 1_000_000 + ttl_seconds),
            session_id,
        )
    finally:
        await conn.close()


async def stored_session(store: str, where: str, session_id: str) -> tuple[Any, ...]:
    """What the store holds for ``session_id``: value and expiry, to show nothing changed."""
    if store == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            key = f"{where}{session_id}"
            return (await client.get(key), await client.expiretime(key))
        finally:
            await client.aclose()
    conn = await asyncpg.connect(where, timeout=10)
    try:
        row = await conn.fetchrow(
            f"SELECT sess, expire FROM {SCHEMA}.{TABLE} WHERE sid = $1", session_id
        )
    finally:
        await conn.close()
    return () if row is None else tuple(row)

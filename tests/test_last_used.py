"""Last-use times of API keys: buffered per process, written in batches, never backwards."""

from __future__ import annotations

import httpx
import pytest

from flamel_usage.auth.last_used import LastUsed
from flamel_usage.db.gateway import Database
from tests.factories import Factory
from tests.processes import server_process


async def _last_used(db: Database, key_id: int) -> int | None:
    async with db.read() as conn:
        value = await conn.fetchval("SELECT last_used_at FROM api_keys WHERE id = ?", key_id)
    return None if value is None else int(value)


async def _key_id(db: Database) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval("SELECT MAX(id) FROM api_keys"))


async def test_a_flush_writes_the_latest_time_and_never_moves_it_back(
    db: Database, factory: Factory
) -> None:
    await factory.key(await factory.user())
    key_id = await _key_id(db)
    buffer = LastUsed()
    buffer.note(key_id, 2_000)
    buffer.note(key_id, 1_000)
    await buffer.flush(db)
    assert await _last_used(db, key_id) == 2_000

    buffer.note(key_id, 1_500)
    await buffer.flush(db)
    assert await _last_used(db, key_id) == 2_000
    await buffer.flush(db)  # nothing pending: nothing written


async def test_one_flush_writes_each_key_its_own_time(db: Database, factory: Factory) -> None:
    user = await factory.user()
    for _ in range(3):
        await factory.key(user)
    newest = await _key_id(db)
    ids = [newest - 2, newest - 1, newest]
    earlier = LastUsed()
    earlier.note(ids[2], 9_000_000_000_000_000)  # already later than the next flush
    await earlier.flush(db)
    buffer = LastUsed()
    for offset, key_id in enumerate(ids):
        buffer.note(key_id, 1_700_000_000_000_000 + offset)
    await buffer.flush(db)
    assert [await _last_used(db, key_id) for key_id in ids] == [
        1_700_000_000_000_000,
        1_700_000_000_000_001,
        9_000_000_000_000_000,
    ]


async def test_a_stopping_server_writes_what_it_noted(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    key = await factory.key(await factory.user())
    key_id = await _key_id(db)
    with server_process(environ) as server:
        response = httpx.get(
            f"{server.base_url}/api/users/me/usage", headers={"X-Api-Key": key}, timeout=10
        )
        assert response.status_code == 200
        assert server.stop() == 0
    assert await _last_used(db, key_id) is not None


async def test_times_noted_during_an_outage_are_written_after_it(
    db: Database, factory: Factory
) -> None:
    await factory.key(await factory.user())
    key_id = await _key_id(db)
    buffer = LastUsed()
    buffer.note(key_id, 3_000)
    await db.close()
    with pytest.raises(Exception):  # noqa: B017, PT011  (whatever a closed store raises)
        await buffer.flush(db)
    await db.open()
    await buffer.flush(db)
    assert await _last_used(db, key_id) == 3_000

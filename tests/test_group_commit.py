"""Group commit on SQLite: concurrent write transactions of a process share one COMMIT.

Each transaction stays atomic and isolated (it runs in a savepoint of the group's write
transaction, and fails alone), and durable before its caller goes on (it returns after
the COMMIT that synced its writes). Reads, on their own connection, never see a group
before its commit. The interleavings here are made with events, not timing: a group is
held open by a writer queued behind its member.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from flamel_usage.db.gateway import Database, DatabaseUnavailable, UniqueViolation
from flamel_usage.db.sqlite import GROUP_COMMIT_LIMIT, SQLiteDatabase, _SQLiteConnection
from flamel_usage.metering.outcomes import Charged
from tests.factories import Factory

INSERT = "INSERT INTO written (n) VALUES (?)"
#: Every storm here is bounded by this many seconds.
BOUND = 10


class Refusal(Exception):
    """A transaction's own failure, raised after its writes."""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'group.sqlite3'}"


@pytest.fixture
async def store(db: Database) -> SQLiteDatabase:
    assert isinstance(db, SQLiteDatabase)
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE written (n INTEGER PRIMARY KEY)")
    return db


@pytest.fixture
def commits(store: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One item per COMMIT the store's writing connection makes from now on."""
    made: list[None] = []
    commit = _SQLiteConnection.commit

    def counted(self: _SQLiteConnection) -> None:
        commit(self)
        made.append(None)

    monkeypatch.setattr(_SQLiteConnection, "commit", counted)
    return made


async def write(db: Database, n: int, *, fail: bool = False) -> None:
    async with db.transaction() as conn:
        await conn.execute(INSERT, n)
        if fail:
            raise Refusal(n)


async def write_and_wait(db: Database, n: int, inside: asyncio.Event, go: asyncio.Event) -> None:
    """Write ``n``, then wait in the transaction until ``go``."""
    async with db.transaction() as conn:
        await conn.execute(INSERT, n)
        inside.set()
        await go.wait()


async def written(db: Database) -> list[int]:
    async with db.read() as conn:
        return [row[0] for row in await conn.fetchall("SELECT n FROM written ORDER BY n")]


def written_seen_by_another_process(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as other:
        return [row[0] for row in other.execute("SELECT n FROM written ORDER BY n")]


class HeldOpen:
    """Writer 1 done and waiting for its group's commit, writer 2 writing in that group.

    Writer 2 queues for the write lock while writer 1 is inside its transaction, so
    writer 1 leaves the group open for it; writer 2 then waits inside its transaction
    until ``release``.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.first_inside, self.first_go = asyncio.Event(), asyncio.Event()
        self.second_inside, self.second_go = asyncio.Event(), asyncio.Event()
        self.first: asyncio.Task[None]
        self.second: asyncio.Task[None]

    async def second_queued(self) -> None:
        """Writer 1 inside its transaction, writer 2 queued for the write lock."""
        self.first = asyncio.create_task(
            write_and_wait(self.db, 1, self.first_inside, self.first_go)
        )
        await self.first_inside.wait()
        self.second = asyncio.create_task(
            write_and_wait(self.db, 2, self.second_inside, self.second_go)
        )
        await asyncio.sleep(0)  # writer 2 runs up to its wait for the write lock

    async def open(self) -> None:
        await self.second_queued()
        self.first_go.set()
        await asyncio.wait_for(self.second_inside.wait(), BOUND)

    async def release(self) -> None:
        self.second_go.set()
        await asyncio.wait_for(asyncio.gather(self.first, self.second), BOUND)


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, BOUND)


# --- grouping -----------------------------------------------------------------------------


async def test_concurrent_charges_share_few_commits(
    store: SQLiteDatabase, factory: Factory, commits: list[None]
) -> None:
    plan = await factory.plan(credits=100, max_ttp=None)
    user = await factory.user(plan)
    before = len(commits)
    storm = 2 * GROUP_COMMIT_LIMIT
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(factory.charge(user, "ttp", f"group-{n}") for n in range(storm))),
        BOUND,
    )
    assert all(isinstance(outcome, Charged) for outcome in outcomes)
    # The first alone (nobody queued yet), the others in groups of at most the limit.
    assert len(commits) - before == 1 + math.ceil((storm - 1) / GROUP_COMMIT_LIMIT)
    usage = await factory.usage(user)
    assert usage.ttp_count == storm
    assert usage.current_credit == (100 - storm) * 1000
    assert await factory.reconcile() == []


async def test_each_acknowledged_write_is_read_at_once(store: SQLiteDatabase) -> None:
    async def write_then_read(n: int) -> None:
        await write(store, n)
        assert n in await written(store)
        assert n in written_seen_by_another_process(store.path)

    await asyncio.wait_for(asyncio.gather(*(write_then_read(n) for n in range(40))), BOUND)
    assert await written(store) == list(range(40))


async def test_a_failing_transaction_loses_its_own_writes_alone(
    store: SQLiteDatabase, commits: list[None]
) -> None:
    results = await asyncio.wait_for(
        asyncio.gather(
            *(write(store, n, fail=n % 3 == 0) for n in range(30)), return_exceptions=True
        ),
        BOUND,
    )
    assert [n for n, result in enumerate(results) if isinstance(result, Refusal)] == list(
        range(0, 30, 3)
    )
    assert [n for n, result in enumerate(results) if result is None] == await written(store)
    assert await written(store) == [n for n in range(30) if n % 3]
    assert len(commits) <= 2


async def test_a_unique_violation_caught_inside_a_member_keeps_the_group(
    store: SQLiteDatabase,
) -> None:
    async def insert_twice(n: int) -> None:
        async with store.transaction() as conn:
            await conn.execute(INSERT, n)
            with pytest.raises(UniqueViolation):
                await conn.execute(INSERT, n)
            await conn.execute(INSERT, n + 100)

    await asyncio.wait_for(asyncio.gather(*(insert_twice(n) for n in range(5))), BOUND)
    assert await written(store) == [*range(5), *range(100, 105)]


# --- isolation and durability -------------------------------------------------------------


async def test_a_group_is_seen_by_nobody_before_its_commit(
    store: SQLiteDatabase, commits: list[None]
) -> None:
    held = HeldOpen(store)
    await held.open()
    assert not held.first.done()  # not acknowledged: its commit is the group's
    assert await written(store) == []
    assert written_seen_by_another_process(store.path) == []
    await held.release()
    assert await written(store) == [1, 2]
    assert written_seen_by_another_process(store.path) == [1, 2]
    assert len(commits) == 1


async def test_a_failed_commit_fails_every_member_and_keeps_nothing(
    store: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(self: _SQLiteConnection) -> None:
        self._raw.execute("ROLLBACK")  # as SQLite does on an I/O error at commit
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patched:
        patched.setattr(_SQLiteConnection, "commit", failing)
        results = await asyncio.wait_for(
            asyncio.gather(*(write(store, n) for n in range(20)), return_exceptions=True),
            BOUND,
        )
    assert all(isinstance(result, DatabaseUnavailable) for result in results)
    assert await written(store) == []
    await write(store, 7)  # the store is usable again
    assert await written(store) == [7]


async def test_a_commit_refused_by_sqlite_fails_every_member_and_keeps_nothing(
    store: SQLiteDatabase,
) -> None:
    """A COMMIT that SQLite refuses and leaves open (here: a deferred foreign key broken
    by one member) is rolled back: nothing of the group is kept."""
    async with store.transaction() as conn:
        await conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await conn.execute(
            "CREATE TABLE child (parent_id INTEGER"
            " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )

    async def orphan() -> None:
        async with store.transaction() as conn:
            await conn.execute("INSERT INTO child (parent_id) VALUES (42)")

    results = await asyncio.wait_for(
        asyncio.gather(
            *(write(store, n) for n in range(5)),
            orphan(),
            *(write(store, n) for n in range(5, 10)),
            return_exceptions=True,
        ),
        BOUND,
    )
    # The first committed alone, before the others queued; the orphan's group failed whole.
    assert results[0] is None
    assert all(isinstance(result, DatabaseUnavailable) for result in results[1:])
    assert await written(store) == [0]
    await write(store, 99)
    assert 99 in await written(store)


async def test_a_transaction_rolled_back_whole_by_sqlite_fails_the_group(
    store: SQLiteDatabase,
) -> None:
    """SQLite rolls back the whole transaction on some errors (a full disk, an I/O
    error): the members before, waiting for the commit, are told nothing was kept."""
    held = HeldOpen(store)
    await held.second_queued()

    async def rolled_back_whole() -> None:
        async with store.transaction() as conn:
            await conn.execute(INSERT, 3)
            await conn.execute("ROLLBACK")
            raise Refusal(3)

    third = asyncio.create_task(rolled_back_whole())
    await asyncio.sleep(0)  # queued behind writer 2
    held.first_go.set()
    held.second_go.set()
    results = await asyncio.wait_for(
        asyncio.gather(held.first, held.second, third, return_exceptions=True), BOUND
    )
    assert [type(result) for result in results] == [
        DatabaseUnavailable,
        DatabaseUnavailable,
        Refusal,
    ]
    assert await written(store) == []
    await write(store, 4)
    assert await written(store) == [4]


# --- cancellation and close -----------------------------------------------------------


async def test_cancelled_while_its_group_commits_its_writes_go_with_the_group(
    store: SQLiteDatabase,
) -> None:
    held = HeldOpen(store)
    await held.open()
    await cancel(held.first)
    held.second_go.set()
    await asyncio.wait_for(held.second, BOUND)
    assert await written(store) == [1, 2]


async def test_cancelled_in_its_own_statements_its_writes_alone_are_rolled_back(
    store: SQLiteDatabase,
) -> None:
    held = HeldOpen(store)
    await held.second_queued()
    await cancel(held.first)
    await asyncio.wait_for(held.second_inside.wait(), BOUND)
    held.second_go.set()
    await asyncio.wait_for(held.second, BOUND)
    assert await written(store) == [2]


async def test_a_group_left_open_for_a_writer_then_cancelled_still_commits(
    store: SQLiteDatabase,
) -> None:
    held = HeldOpen(store)
    await held.second_queued()
    held.first_go.set()
    await asyncio.sleep(0)  # writer 1 leaves the group open for writer 2
    await cancel(held.second)
    await asyncio.wait_for(held.first, BOUND)
    assert await written(store) == [1]


async def test_close_commits_the_group_waiting_for_it(store: SQLiteDatabase) -> None:
    held = HeldOpen(store)
    await held.second_queued()
    held.first_go.set()
    await asyncio.sleep(0)  # writer 1 leaves the group open for writer 2
    held.second.cancel()
    await store.close()
    await asyncio.wait_for(held.first, BOUND)
    assert written_seen_by_another_process(store.path) == [1]


async def test_close_waits_for_the_writers_before_it(store: SQLiteDatabase) -> None:
    held = HeldOpen(store)
    await held.open()
    closing_task = asyncio.create_task(store.close())
    await asyncio.sleep(0)
    assert not closing_task.done()
    await held.release()
    await asyncio.wait_for(closing_task, BOUND)
    assert written_seen_by_another_process(store.path) == [1, 2]
    with pytest.raises(RuntimeError, match="not open"):
        await write(store, 3)

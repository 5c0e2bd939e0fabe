"""SQLite, the embedded default store.

SQLite is driven synchronously on the event loop: its statements take microseconds, and
a thread hop would cost more than the query. Each process has two connections. Reads
use one of their own, under its own ``asyncio.Lock``: in WAL mode it sees only committed
data, so a usage read never shows a charge that could still be lost, and never waits
for a commit. Writes share the other, under the write lock, with group commit (see
``SQLiteDatabase.transaction``): every commit syncs the WAL to disk (``synchronous=FULL``)
and costs far more than a charge's statements, so the writers that queue meanwhile share
the next one. Several processes share the file: a group holds SQLite's one write lock
(``BEGIN IMMEDIATE``) from its start to its commit, and waits for it with the loop free.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager, closing, suppress
from pathlib import Path
from urllib.parse import quote, unquote

from flamel_usage.core.config import DEFAULT_DATABASE_TIMEOUT_SECONDS
from flamel_usage.db.gateway import (
    Connection,
    Database,
    DatabaseNotReady,
    DatabaseUnavailable,
    Dialect,
    Row,
    UniqueViolation,
)

logger = logging.getLogger("flamel_usage.db.sqlite")

#: SQLite's wait for its single write lock never goes below this, whatever the timeout:
#: under contention, charges queue for the lock rather than fail.
SQLITE_MIN_BUSY_SECONDS = 10.0
#: How often a transaction tries again for SQLite's write lock while another process
#: holds it (about the event loop's timer resolution).
_WRITE_LOCK_RETRY_SECONDS = 0.001
#: The most transactions one commit makes durable. A group holds SQLite's write lock
#: until it commits: the bound keeps another process's writers from waiting long.
GROUP_COMMIT_LIMIT = 32
#: The savepoint each transaction of a group runs in, so that it can fail alone.
_MEMBER = "group_member"


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///path`` URL names."""
    path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
    if not path:
        raise ValueError("a SQLite URL names a file: sqlite:///path/to/file.sqlite3")
    return Path(path)


def script_statements(script: str) -> list[str]:
    """The statements of ``script``, each with the comments before it.

    A statement ends at a ``;`` that SQLite's own tokenizer calls the end of one
    (``sqlite3.complete_statement``), so a ``;`` in a comment or a string splits
    nothing. ``executescript`` would split as well, but it commits first: a migration
    must run in the transaction that records it.
    """
    statements: list[str] = []
    start = 0
    for end, char in enumerate(script, start=1):
        if char == ";" and sqlite3.complete_statement(script[start:end]):
            statements.append(script[start:end].strip())
            start = end
    rest = script[start:].strip()
    if rest:  # comments, or a last statement without its ";": SQLite judges which
        statements.append(rest)
    return statements


class DataDirInUse(Exception):
    """``restore`` while a server uses the database, or a server start during a restore."""

    reason = "database_in_use"


def _lock_path(path: Path) -> Path:
    """The file servers hold a shared lock on while they use ``path``, and ``restore`` an
    exclusive one while it replaces the database's contents."""
    return path.with_name(f"{path.name}.lock")


def _take_lock(path: Path, mode: int) -> int:
    """A descriptor holding ``mode`` (``fcntl.LOCK_SH`` or ``LOCK_EX``) on ``path``'s lock
    file; ``BlockingIOError`` when another process holds the other kind."""
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def backup(source: Path, target: Path) -> None:
    """Copy the database at ``source`` to a new file ``target`` while servers write to it.

    SQLite's backup API copies every page in one step under one read transaction: the
    copy is the database as of one commit (charges committed after it began are not in
    it, none is half in it), and in WAL mode writers go on meanwhile. It is written to a
    temporary file beside ``target``, synced, checked, then renamed: ``target`` is a whole
    backup or absent, even after a crash.
    """
    if not source.is_file():
        raise DatabaseNotReady(f"no SQLite database at {source}")
    if target.exists():
        raise ValueError(f"{target} exists: a backup never overwrites a file")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        # mode=rw, not ro: a reader of a WAL database needs its SHM file, made if missing.
        live = sqlite3.connect(f"file:{quote(str(source))}?mode=rw", uri=True)
        with closing(live), closing(sqlite3.connect(partial, isolation_level=None)) as copy:
            live.backup(copy)
            # A file of its own, in no journal: copied, moved and opened alone.
            copy.execute("PRAGMA journal_mode=DELETE")
            _check_whole(copy, partial)
        _fsync(partial)
        partial.rename(target)
        _fsync(target.parent)
    finally:
        partial.unlink(missing_ok=True)


def restore(source: Path, target: Path) -> None:
    """Replace the contents of the database at ``target`` with the backup at ``source``.

    Refused (``DataDirInUse``) while a server uses ``target``: servers hold a shared lock
    on its lock file, and this takes it exclusively for the whole restore, so no server
    starts meanwhile either. The pages go in through SQLite's backup API, into the live
    file and its WAL, so that no stale WAL is ever replayed over the restored pages.
    """
    if not source.is_file():
        raise ValueError(f"no backup at {source}")
    with closing(sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True)) as src:
        _check_whole(src, source)
        if src.execute(_HAS_MIGRATIONS).fetchone() is None:
            raise ValueError(f"{source} is not a flamel-usage database: no schema_migrations")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.touch(mode=0o600)
        try:
            lock = _take_lock(target, fcntl.LOCK_EX)
        except BlockingIOError:
            raise DataDirInUse(
                f"a server is using {target}: stop every server of this data dir first"
            ) from None
        try:
            with closing(sqlite3.connect(target, isolation_level=None)) as live:
                live.execute("PRAGMA synchronous=FULL")
                src.backup(live)
                live.execute("PRAGMA journal_mode=WAL")
                live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            os.close(lock)
    _owner_only(target)


_HAS_MIGRATIONS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"


def _check_whole(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise ValueError(f"{path} fails SQLite's quick_check: {result}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    def commit(self) -> None:
        """``COMMIT``; on failure, ``ROLLBACK`` if SQLite left the transaction open."""
        try:
            self._raw.execute("COMMIT")
        except sqlite3.Error:
            if self._raw.in_transaction:
                self._raw.execute("ROLLBACK")
            raise

    # Each cursor is closed at once, even when fetching fails: an open one would keep its
    # connection's read snapshot, and the reads after it would miss newer commits. By
    # try/finally rather than ``contextlib.closing``: the usage read makes two fetches, and
    # the context manager's calls were 3% of its instructions.

    async def fetchall(self, sql: str, *args: object) -> Sequence[Row]:
        cursor = self._run(sql, args)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    async def fetchone(self, sql: str, *args: object) -> Row | None:
        cursor = self._run(sql, args)
        try:
            row: Row | None = cursor.fetchone()
        finally:
            cursor.close()
        return row

    async def execute(self, sql: str, *args: object) -> int:
        return self._run(sql, args).rowcount

    async def run_script(self, script: str) -> None:
        for statement in script_statements(script):
            self._run(statement, ())


class _Group:
    """The transactions sharing one SQLite write transaction, and so one commit."""

    __slots__ = ("committer", "kept", "members", "outcome")

    def __init__(self, outcome: asyncio.Future[BaseException | None]) -> None:
        #: Everything that ran in the group, kept or rolled back: bounded by the limit.
        self.members = 0
        #: The members whose writes the commit keeps, each waiting for ``outcome``.
        self.kept = 0
        #: None once committed, else why nothing of the group was kept.
        self.outcome = outcome
        #: The task that commits the group after the writers queued when it was left open.
        self.committer: asyncio.Task[None] | None = None


class SQLiteDatabase(Database):
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, timeout: float = DEFAULT_DATABASE_TIMEOUT_SECONDS) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: _SQLiteConnection | None = None
        self._write_lock = asyncio.Lock()
        #: Tasks inside ``transaction()`` waiting for the write lock: a group stays open
        #: for them.
        self._writers_waiting = 0
        #: The group whose write transaction is open on ``_conn``, if any.
        self._group: _Group | None = None
        #: Commits under way or queued, kept here as asyncio holds tasks weakly.
        self._commits: set[asyncio.Task[None]] = set()
        self._reader: _SQLiteConnection | None = None
        self._read_lock = asyncio.Lock()
        self._busy_ms = round(max(timeout, SQLITE_MIN_BUSY_SECONDS) * 1000)
        self._batch: sqlite3.Connection | None = None
        self._batch_lock = threading.Lock()
        #: A server's shared lock on the lock file (``restore`` waits for none to hold it).
        self._server_lock: int | None = None

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

    async def start(self) -> None:
        """``Database.start``, holding the server's shared lock until ``close``."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._server_lock = _take_lock(self.path, fcntl.LOCK_SH)
        except BlockingIOError:
            raise DataDirInUse(
                f"a restore is putting a backup in place at {self.path}: start when it is done"
            ) from None
        await super().start()

    async def _open_existing(self) -> None:
        if not self.path.is_file():
            raise DatabaseNotReady(f"no SQLite database at {self.path}")
        self._open_file()

    def _open_file(self) -> None:
        _owner_only(self.path)
        self._conn = self._wrap(self._connect())
        self._reader = self._wrap(self._connect())

    def _wrap(self, raw: sqlite3.Connection) -> _SQLiteConnection:
        raw.row_factory = sqlite3.Row
        return _SQLiteConnection(raw, log_outages=self.log_outages)

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: SQLite never creates the file (``open`` does), so a store checked to
        # exist is not created anew should it be deleted in the meantime.
        raw = sqlite3.connect(
            f"file:{quote(str(self.path))}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        # FULL: every commit syncs the WAL to disk before it returns, so a charge answered
        # 2xx survives a power loss or an OS crash (NORMAL could lose the last ones).
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        raw.execute("PRAGMA foreign_keys=ON")
        # PostgreSQL's normalize(text), to NFC, so that SQL using it (migration 0005) runs
        # on both stores.
        raw.create_function("normalize", 1, _nfc, deterministic=True)
        return raw

    async def close(self) -> None:
        """Close the store: after the writers already queued, and the open group's commit,
        which its members wait for."""
        if self._conn is not None:
            async with self._write_lock:
                if self._group is not None:
                    await self._commit(self._group)
                if self._conn is not None:
                    self._conn._raw.close()
                    self._conn = None
            # Those queued behind the lock find their group settled, and end.
            await asyncio.gather(*self._commits)
        if self._reader is not None:
            self._reader._raw.close()
            self._reader = None
        if self._server_lock is not None:
            os.close(self._server_lock)
            self._server_lock = None
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
        """A write transaction, in a group that commits once for its members.

        The caller's statements run in a savepoint of the group's write transaction: an
        exception rolls back that savepoint alone and is raised at once. On success the
        group stays open while other writers queue (up to ``GROUP_COMMIT_LIMIT``
        transactions), and the caller returns only once the commit that made its writes
        durable is done: a charge is never answered before it is on disk. Statements see
        the writes of the group's earlier members, which commit or fail with them. When
        the commit fails, nothing of the group is kept and every member raises
        ``DatabaseUnavailable``.

        A caller cancelled while it waits for the group's commit gets ``CancelledError``
        and its writes commit or fail with the group's: the cancellation rolls back
        nobody's, its own included. Cancelled before or while its own statements run, its
        writes are rolled back as for any exception.
        """
        group, conn = await self._join()
        try:
            conn._raw.execute(f"SAVEPOINT {_MEMBER}")
            yield conn
            conn._raw.execute(f"RELEASE {_MEMBER}")
        except BaseException as error:
            self._leave_rolled_back(group, conn, error)
            raise
        failure = await asyncio.shield(self._leave(group, kept=True))
        if failure is not None:
            raise DatabaseUnavailable(
                f"SQLite: this transaction's group was not committed ({failure})"
            ) from failure

    async def _join(self) -> tuple[_Group, _SQLiteConnection]:
        """The open group and the writing connection, holding the write lock: a new
        group, holding SQLite's write lock too, when none is open."""
        self._writers_waiting += 1
        try:
            await self._write_lock.acquire()
        finally:
            self._writers_waiting -= 1
        try:
            conn = self._connection()
            if self._group is None:
                await self._begin(conn)
                self._group = _Group(asyncio.get_running_loop().create_future())
        except BaseException:
            self._write_lock.release()
            raise
        return self._group, conn

    def _leave(self, group: _Group, *, kept: bool) -> asyncio.Future[BaseException | None]:
        """After a member's savepoint ended, holding the write lock: leave the group open
        for the writers queued, else commit it; either way the lock is handed on."""
        group.members += 1
        group.kept += kept
        if self._writers_waiting and group.members < GROUP_COMMIT_LIMIT:
            if group.committer is None:
                # Queued behind those writers: commits the group once they have joined
                # it, whatever becomes of them.
                group.committer = self._spawn(self._commit_in_turn(group))
            self._write_lock.release()
        else:
            self._spawn(self._commit_and_release(group))
        return group.outcome

    def _leave_rolled_back(
        self, group: _Group, conn: _SQLiteConnection, error: BaseException
    ) -> None:
        """After a member's exception, holding the write lock: roll back its savepoint and
        leave the group. Should SQLite have rolled back the whole transaction (as it does
        for some I/O errors), or the savepoint fail, the group is abandoned."""
        if conn._raw.in_transaction:
            try:
                conn._raw.execute(f"ROLLBACK TO {_MEMBER}")
                conn._raw.execute(f"RELEASE {_MEMBER}")
            except sqlite3.Error as failed:
                error = failed
            else:
                self._leave(group, kept=False)
                return
        self._abandon(group, conn, error)

    def _abandon(self, group: _Group, conn: _SQLiteConnection, error: BaseException) -> None:
        """Keep nothing of ``group``: roll back what is left of its transaction, tell its
        members why, and release the write lock."""
        self._group = None
        try:
            if conn._raw.in_transaction:
                conn._raw.execute("ROLLBACK")
        finally:
            group.outcome.set_result(error)
            self._write_lock.release()

    def _spawn(self, commit: Coroutine[None, None, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(commit)
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)
        return task

    async def _commit_in_turn(self, group: _Group) -> None:
        async with self._write_lock:
            if self._group is group:
                await self._commit(group)

    async def _commit_and_release(self, group: _Group) -> None:
        """Commit ``group``, then release the write lock its last member handed on."""
        try:
            await self._commit(group)
        finally:
            self._write_lock.release()

    async def _commit(self, group: _Group) -> None:
        """Commit ``group`` and tell its members, holding the write lock.

        The COMMIT, with its sync to disk, runs in a thread: the loop serves reads on
        their own connection meanwhile, and the lock keeps every other statement off this
        one until it is done.
        """
        self._group = None
        conn = self._connection()
        try:
            await asyncio.to_thread(conn.commit)
        except sqlite3.Error as error:
            if self.log_outages:
                logger.warning("SQLite commit failed: %s", error)
            group.outcome.set_result(error)
        else:
            group.outcome.set_result(None)

    async def _begin(self, conn: _SQLiteConnection) -> None:
        """``BEGIN IMMEDIATE`` on ``conn``, holding the write lock.

        While another process writes, this one waits with its event loop free (reads go
        on, on their own connection; writers queue to join the group), trying again every
        millisecond: SQLite's own busy handler would freeze the whole loop, sleeping up to
        100 ms at a time.
        """
        deadline = time.monotonic() + self._busy_ms / 1000
        while not conn.begin_immediate_or_busy(self._busy_ms):
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
    """``SQLiteDatabase.read()``: this process's reading connection, under its lock.

    A class rather than a generator-based context manager: every usage read passes
    through here, and the generator machinery cost more than the lock itself.
    """

    __slots__ = ("_db",)

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def __aenter__(self) -> Connection:
        await self._db._read_lock.acquire()
        reader = self._db._reader
        if reader is None:
            self._db._read_lock.release()
            raise RuntimeError("database is not open")
        return reader

    async def __aexit__(self, *exc_info: object) -> None:
        self._db._read_lock.release()


def _nfc(text: str | None) -> str | None:
    return None if text is None else unicodedata.normalize("NFC", text)


#: SQLite's words for a store that is busy or cannot be reached, rather than a bad query.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")


def _raise_if_sqlite_unavailable(error: sqlite3.OperationalError, *, log: bool) -> None:
    if str(error).lower().startswith(_SQLITE_UNAVAILABLE):
        if log:
            logger.warning("SQLite database unavailable: %s", error)
        raise DatabaseUnavailable(f"SQLite: {error}") from error

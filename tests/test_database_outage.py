"""Database outage: bounded ``503 service_unavailable``, nothing acknowledged uncommitted,
and recovery by itself when the database is back.

The PostgreSQL tests own a private PostgreSQL instance (``initdb`` into a temporary
directory, its own port and socket directory), so they can stop, freeze and restart it
without touching the shared test server. They skip, with the reason, only when the
PostgreSQL server binaries are not installed, and fail instead in CI.
"""

from __future__ import annotations

import asyncio
import glob
import html
import logging
import os
import pwd
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest

from flamel_usage.auth import cookies
from flamel_usage.core.config import ConfigError, Settings
from flamel_usage.db import migrate
from flamel_usage.db.gateway import Connection, Database, DatabaseUnavailable
from flamel_usage.http.app import App
from flamel_usage.http.pages.forms import session_form_token
from flamel_usage.http.pages.strings import STRINGS
from flamel_usage.metering import charges as metering
from tests.conftest import ADMIN_TOKEN, SESSION_SECRET
from tests.processes import free_port, http_client, server_process
from tests.store import sql

TIMEOUT_S = 2.0
#: What the issue allows for one answer while the database is away.
BOUND_S = TIMEOUT_S + 1.0
RECOVERY_S = 15.0
PG_START_TIMEOUT_S = 30
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Accepted and ignored by the private instance (trust authentication): it must never
#: show up in the server's output.
DB_PASSWORD = "outage-password-do-not-log"
EMAIL = "outage@example.com"
PASSWORD = "outage-password-123"
USAGE = "/api/users/me/usage"


# --- A private PostgreSQL instance ----------------------------------------------------------


def _postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries with ``initdb`` and ``pg_ctl``."""
    found = [
        Path(path).parent
        for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if Path(path).with_name("pg_ctl").exists()
    ]
    found.sort(key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _skip_or_fail(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the database outage tests")
    pytest.skip(reason)


class PrivatePostgres:
    """One PostgreSQL instance owned by a test: initialised, started, stopped, frozen.

    PostgreSQL refuses to run as root, so under root every command runs as the
    ``postgres`` user, which then owns the temporary directory.
    """

    def __init__(self, bin_dir: Path, run_as: list[str], owner: str | None) -> None:
        self.bin_dir = bin_dir
        self.run_as = run_as
        self.root = Path(tempfile.mkdtemp(prefix="flamel-pg-"))
        if owner is not None:
            shutil.chown(self.root, owner, owner)
        self.data = self.root / "data"
        self.port = free_port()

    def _pg(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.run_as, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )

    def _check(self, *args: str) -> None:
        done = self._pg(*args)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n{self.log()}"
            )

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def init(self) -> None:
        initdb = str(self.bin_dir / "initdb")
        self._check(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off"
        )
        pg_ctl = str(self.bin_dir / "pg_ctl")
        log = str(self.root / "postgres.log")
        self._check(
            pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "30", "start"
        )

    def stop(self) -> None:
        """An abrupt stop (``-m immediate``): every connection is cut, nothing waits."""
        self._check(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def _pids(self) -> list[int]:
        """The postmaster and its children: the processes to freeze."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with suppress(OSError, ValueError, IndexError):
                # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(stat.parent.name))
        return pids

    def freeze(self) -> None:
        """The server hangs, as behind a dead network: connects and queries get no answer."""
        for pid in self._pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def url(self, database: str) -> str:
        return f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{self.port}/{database}"

    async def create_database_async(self, name: str) -> str:
        conn = await asyncpg.connect(self.url("postgres"), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    def create_database(self, name: str) -> str:
        return asyncio.run(self.create_database_async(name))

    def destroy(self) -> None:
        with suppress(OSError, ValueError, IndexError):
            self.thaw()
        if (self.data / "postmaster.pid").exists():
            with suppress(subprocess.TimeoutExpired):
                self._pg(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
                )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    """A running private PostgreSQL, stopped and deleted afterwards whatever happened."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        _skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            _skip_or_fail("running as root without runuser or a postgres user to run PostgreSQL")
        run_as, owner = [str(runuser), "-u", "postgres", "--"], "postgres"
    instance = PrivatePostgres(bin_dir, run_as, owner)
    try:
        instance.init()
        instance.start()
        yield instance
    finally:
        instance.destroy()


# --- Helpers --------------------------------------------------------------------------------


def _environ(tmp_path: Path, url: str) -> dict[str, str]:
    return {
        "FLAMEL_DATA_DIR": str(tmp_path / "data"),
        "FLAMEL_DATABASE_URL": url,
        "FLAMEL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLAMEL_SESSION_SECRET": SESSION_SECRET,
        "FLAMEL_TIMEZONE": "UTC",
        "FLAMEL_DATABASE_TIMEOUT_SECONDS": str(TIMEOUT_S),
        # The private PostgreSQL runs with fsync off, for speed: intended here.
        "FLAMEL_ALLOW_ASYNC_COMMIT": "on",
    }


@dataclass
class Account:
    user_id: int
    key: str


def _seed(http: httpx.Client) -> Account:
    plan = http.post(
        "/api/admin/plans",
        headers=ADMIN,
        json={"name": "Outage", "periodUnit": "month", "maxCredit": 100, "maxTtpCount": 50},
    )
    assert plan.status_code == 201, plan.text
    user = http.post(
        "/api/admin/users",
        headers=ADMIN,
        json={"email": EMAIL, "plan": "Outage", "password": PASSWORD},
    )
    assert user.status_code == 201, user.text
    user_id = user.json()["id"]
    key = http.post(f"/api/admin/users/{user_id}/keys", headers=ADMIN, json={})
    assert key.status_code == 201, key.text
    return Account(user_id, key.json()["key"])


def _charge(http: httpx.Client, account: Account, key: str) -> httpx.Response:
    return http.post(
        "/api/admin/charges",
        headers={**ADMIN, "Idempotency-Key": key},
        json={"userId": account.user_id, "kind": "ttp"},
    )


def _usage(http: httpx.Client, account: Account) -> httpx.Response:
    return http.get("/api/users/me/usage", headers={"X-Api-Key": account.key})


def _probes(account: Account) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    """Every kind of endpoint that needs the database: reads, writes, charges, admin."""
    return {
        "usage (API key)": lambda http: _usage(http, account),
        "login": lambda http: http.post(
            "/api/auth/login", json={"email": EMAIL, "password": PASSWORD}
        ),
        "admin create plan": lambda http: http.post(
            "/api/admin/plans",
            headers=ADMIN,
            json={"name": "During outage", "periodUnit": "month", "maxCredit": 1},
        ),
        "admin list plans": lambda http: http.get("/api/admin/plans", headers=ADMIN),
        "admin user usage": lambda http: http.get(
            f"/api/admin/users/{account.user_id}/usage", headers=ADMIN
        ),
        "charge": lambda http: _charge(http, account, "outage-charge"),
        "refund": lambda http: http.post("/api/admin/charges/before-1/refund", headers=ADMIN),
        "reconcile": lambda http: http.get("/api/admin/reconcile", headers=ADMIN),
    }


def _timed(
    probe: Callable[[httpx.Client], httpx.Response], http: httpx.Client
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = probe(http)
    return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response, name: str) -> None:
    assert response.status_code == 503, f"{name}: {response.status_code} {response.text}"
    assert response.json() == {
        "success": False,
        "code": 503,
        "data": "service_unavailable",
        "message": "the database is unavailable: retry shortly",
    }, name
    assert response.headers["retry-after"] == "1", name
    assert response.headers["content-type"].startswith("application/json"), name


def _assert_all_unavailable(http: httpx.Client, account: Account, rounds: int) -> list[float]:
    """Each probe ``rounds`` times (spread over the workers): 503 within the bound."""
    elapsed: list[float] = []
    for _ in range(rounds):
        for name, probe in _probes(account).items():
            response, seconds = _timed(probe, http)
            _assert_unavailable(response, name)
            assert seconds < BOUND_S, f"{name} took {seconds:.2f} s"
            elapsed.append(seconds)
        # Needs no database: the API description is still served.
        docs, seconds = _timed(lambda client: client.get("/api-json"), http)
        assert docs.status_code == 200
        assert seconds < BOUND_S
    return elapsed


def _wait_for_recovery(http: httpx.Client, account: Account) -> float:
    """Seconds until usage answers 200 on several requests in a row (every worker)."""
    started = time.monotonic()
    in_a_row = 0
    while time.monotonic() - started < RECOVERY_S:
        if _usage(http, account).status_code == 200:
            in_a_row += 1
            if in_a_row >= 6:
                return time.monotonic() - started
        else:
            in_a_row = 0
            time.sleep(0.1)
    raise AssertionError(f"the service did not recover within {RECOVERY_S} s")


def _report(label: str, elapsed: list[float]) -> None:
    ordered = sorted(elapsed)
    print(
        f"\n{label}: {len(ordered)} answers, min {ordered[0] * 1000:.0f} ms,"
        f" median {ordered[len(ordered) // 2] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
    )


def _charges_with_key(url: str, key: str) -> int:
    rows = sql(url, "SELECT count(*) FROM charges WHERE idempotency_key = ?", key)
    return int(str(rows[0][0]))


async def _charges_with_key_async(url: str, key: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM charges WHERE idempotency_key = $1", key)
        )
    finally:
        await conn.close()


# --- Settings and the gateway without a server ----------------------------------------------


def test_timeout_setting_defaults_to_3_s_and_is_validated() -> None:
    assert Settings.from_environ({}).database_timeout_seconds == 3.0
    settings = Settings.from_environ({"FLAMEL_DATABASE_TIMEOUT_SECONDS": "0.5"})
    assert settings.database_timeout_seconds == 0.5
    for bad in ("0", "-1", "soon", "nan", "inf", "3601"):
        with pytest.raises(ConfigError, match="FLAMEL_DATABASE_TIMEOUT_SECONDS"):
            Settings.from_environ({"FLAMEL_DATABASE_TIMEOUT_SECONDS": bad})


async def test_postgres_opens_without_a_server_and_reports_it_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://flamel:{DB_PASSWORD}@127.0.0.1:{free_port()}/nothing"
    database = Database.from_url(url, timeout=1.0, allow_async_commit=True)
    with caplog.at_level(logging.DEBUG):
        await database.start()  # no server: starts anyway, migrations wait for it
        try:
            for use in (database.read, database.transaction):
                started = time.monotonic()
                with pytest.raises(DatabaseUnavailable) as raised:
                    async with use() as conn:
                        await conn.fetchval("SELECT 1")
                assert time.monotonic() - started < 1.5
                assert DB_PASSWORD not in str(raised.value)
                assert isinstance(raised.value, OSError)  # what the CLI reports as unavailable
        finally:
            await database.close()
    assert DB_PASSWORD not in caplog.text
    assert "PostgreSQL unavailable" in caplog.text


async def test_pages_answer_a_503_page_in_their_language_the_api_its_envelope(
    tmp_path: Path,
) -> None:
    """A browser gets a page it can show, not the API's JSON; the API keeps its envelope."""
    url = f"postgresql://flamel:{DB_PASSWORD}@127.0.0.1:{free_port()}/nothing"
    database = Database.from_url(url, timeout=1.0, allow_async_commit=True)
    await database.start()  # no server: every statement is DatabaseUnavailable
    session_id = cookies.new_session_id()
    cookie = cookies.session_cookie_value(session_id, SESSION_SECRET)
    signed_in = {"Cookie": f"connect.sid={cookie}"}
    logout_form = {"csrf": session_form_token(session_id, SESSION_SECRET)}
    try:
        app = App(Settings.from_environ(_environ(tmp_path, url)), database)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            login = await http.get("/")  # needs no database: the form and its token
            assert login.status_code == 200
            found = re.search(r'name="csrf" value="([A-Za-z0-9_-]{43})"', login.text)
            assert found is not None
            login_form = {"email": EMAIL, "password": PASSWORD, "csrf": found[1]}
            page_requests: list[tuple[str, str, dict[str, Any]]] = [
                ("POST", "/login", {"data": login_form}),
                ("GET", "/", {"headers": signed_in}),
                ("GET", "/usage", {"headers": signed_in}),
                ("POST", "/logout", {"data": logout_form, "headers": signed_in}),
            ]
            for language, accept in (("en", "en-GB,en"), ("ko", "ko-KR,ko")):
                for method, path, sent in page_requests:
                    headers = {**sent.get("headers", {}), "Accept-Language": accept}
                    response = await http.request(
                        method, path, data=sent.get("data"), headers=headers
                    )
                    name = f"{method} {path} ({language})"
                    assert response.status_code == 503, (name, response.text)
                    assert response.headers["content-type"] == "text/html; charset=utf-8"
                    assert response.headers["retry-after"] == "1"
                    assert response.headers["cache-control"] == "no-store"
                    assert f'<html lang="{language}">' in response.text, name
                    heading = html.escape(STRINGS[language]["unavailable_heading"])
                    assert heading in response.text, name
            chosen = await http.get("/usage?lang=ko", headers=signed_in)
            assert chosen.status_code == 503
            assert '<html lang="ko">' in chosen.text
            wrong_key = {"X-Api-Key": "flm_" + "k" * 43}
            _assert_unavailable(await http.get(USAGE, headers=wrong_key), "usage, key")
            _assert_unavailable(await http.get(USAGE, headers=signed_in), "usage, session")
            login_json = {"email": EMAIL, "password": PASSWORD}
            _assert_unavailable(await http.post("/api/auth/login", json=login_json), "login")
    finally:
        await database.close()


async def test_sqlite_write_lock_timeout_is_a_503_and_leaves_the_store_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The floor keeps real charges waiting 10 s for the lock; lowered here to test quickly.
    monkeypatch.setattr("flamel_usage.db.sqlite.SQLITE_MIN_BUSY_SECONDS", 0.0)
    path = tmp_path / "store.sqlite3"
    settings = Settings.from_environ(_environ(tmp_path, f"sqlite:///{path}"))
    database = Database.from_url(settings.database_url, timeout=0.2, allow_async_commit=True)
    await database.start()
    try:
        app = App(settings, database)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            with closing(sqlite3.connect(path, isolation_level=None)) as other:
                other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
                started = time.monotonic()
                response = await http.post(
                    "/api/admin/plans",
                    headers=ADMIN,
                    json={"name": "Locked", "periodUnit": "month", "maxCredit": 1},
                )
                assert time.monotonic() - started < 1.0
                _assert_unavailable(response, "create plan on a locked SQLite")
                other.execute("ROLLBACK")
            again = await http.post(
                "/api/admin/plans",
                headers=ADMIN,
                json={"name": "Locked", "periodUnit": "month", "maxCredit": 1},
            )
            assert again.status_code == 201, again.text
    finally:
        await database.close()


async def test_a_transaction_waiting_for_another_writer_leaves_the_loop_and_reads_free(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    database = Database.from_url(f"sqlite:///{path}", timeout=5)
    await database.start()

    async def write() -> None:
        async with database.transaction() as conn:
            await conn.execute("CREATE TABLE written_after_the_wait (x INTEGER)")

    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            waiting = asyncio.create_task(write())
            await asyncio.sleep(0.05)  # returns: the loop is not frozen in a busy wait
            assert not waiting.done()
            async with database.read() as conn:  # the connection is not held meanwhile
                assert await conn.fetchval("SELECT COUNT(*) FROM schema_migrations") >= 1
            other.execute("COMMIT")
            await asyncio.wait_for(waiting, 2)
        async with database.read() as conn:
            assert await conn.fetchval("SELECT COUNT(*) FROM written_after_the_wait") == 0
    finally:
        await database.close()


# --- A real server, a real PostgreSQL going away and coming back ---------------------------


def test_outage_answers_503_in_bounded_time_and_recovers_by_itself(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    url = postgres.create_database("flamel")
    with server_process(_environ(tmp_path, url), workers=2) as server:
        http = http_client(server.base_url)
        account = _seed(http)
        assert _charge(http, account, "before-1").status_code == 201
        assert _charge(http, account, "before-2").status_code == 201
        before = _usage(http, account)
        assert before.status_code == 200
        assert before.json()["ttpCount"] == 2

        postgres.stop()
        elapsed = _assert_all_unavailable(http, account, rounds=3)
        _report("PostgreSQL stopped: 503 answers", elapsed)
        # A 503'd charge was not recorded: nothing to refund, nothing replayed later.
        outage_keys = [f"outage-{n}" for n in range(3)]
        for key in outage_keys:
            _assert_unavailable(_charge(http, account, key), f"charge {key}")

        postgres.start()
        recovered = _wait_for_recovery(http, account)
        print(f"PostgreSQL started: usage 200 again after {recovered:.2f} s")

        # The same numbers as before the outage: no 503'd charge or refund took effect.
        assert _usage(http, account).json() == before.json()
        assert _charges_with_key(url, "outage-charge") == 0
        # The keys of the 503'd charges can be retried, and charge exactly once.
        for key in outage_keys:
            first = _charge(http, account, key)
            assert first.status_code == 201, first.text
            assert "idempotent-replayed" not in first.headers
            replay = _charge(http, account, key)
            assert replay.status_code == 201
            assert replay.headers["idempotent-replayed"] == "true"
            assert _charges_with_key(url, key) == 1
        after = _usage(http, account).json()
        assert after["ttpCount"] == before.json()["ttpCount"] + 3
        assert after["currentCredit"] == before.json()["currentCredit"] - 3
        # The refund refused during the outage works once now.
        assert http.post("/api/admin/charges/before-1/refund", headers=ADMIN).status_code == 200
        assert http.post("/api/admin/charges/before-1/refund", headers=ADMIN).status_code == 409
        reconcile = http.get("/api/admin/reconcile", headers=ADMIN)
        assert reconcile.json() == {"ok": True, "problems": []}

        # A second outage recovers as well (the pool is not left with dead connections).
        postgres.stop()
        _assert_all_unavailable(http, account, rounds=1)
        postgres.start()
        _wait_for_recovery(http, account)
        for name, probe in _probes(account).items():
            assert probe(http).status_code < 500, name
        http.close()
        output = server.output()
    assert DB_PASSWORD not in output
    assert "PostgreSQL unavailable" in output


def test_a_frozen_database_answers_503_within_the_timeout(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """No answer at all (as behind a dead network): the timeout alone bounds the wait."""
    url = postgres.create_database("flamel")
    with server_process(_environ(tmp_path, url), workers=2) as server:
        http = http_client(server.base_url)
        account = _seed(http)
        # Warm each worker's pool, so both paths are taken: a pooled connection whose
        # statement gets no answer, and a new connection whose start-up gets none.
        for _ in range(6):
            assert _usage(http, account).status_code == 200
        before = _usage(http, account).json()

        postgres.freeze()
        try:
            elapsed = _assert_all_unavailable(http, account, rounds=1)
            _report("PostgreSQL frozen: 503 answers", elapsed)
            assert max(elapsed) >= TIMEOUT_S * 0.9  # it did wait for the database
        finally:
            postgres.thaw()
        recovered = _wait_for_recovery(http, account)
        print(f"PostgreSQL thawed: usage 200 again after {recovered:.2f} s")
        assert _usage(http, account).json() == before
        assert _charges_with_key(url, "outage-charge") == 0
        first = _charge(http, account, "outage-charge")
        assert first.status_code == 201
        assert "idempotent-replayed" not in first.headers
        reconcile = http.get("/api/admin/reconcile", headers=ADMIN)
        assert reconcile.json() == {"ok": True, "problems": []}
        http.close()
        assert DB_PASSWORD not in server.output()


def test_a_server_started_while_the_database_is_down_serves_once_it_is_up(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    url = postgres.create_database("flamel")  # empty: no migration applied yet
    postgres.stop()
    with server_process(_environ(tmp_path, url), workers=2) as server:
        http = http_client(server.base_url)
        assert http.get("/api-json").status_code == 200
        for _ in range(4):
            response, seconds = _timed(
                lambda client: client.get("/api/admin/plans", headers=ADMIN), http
            )
            _assert_unavailable(response, "list plans before PostgreSQL started")
            assert seconds < BOUND_S

        postgres.start()
        started = time.monotonic()
        while (listed := http.get("/api/admin/plans", headers=ADMIN)).status_code != 200:
            assert listed.status_code == 503, listed.text
            assert time.monotonic() - started < RECOVERY_S, "no recovery"
            time.sleep(0.1)
        print(f"started while down: first 200 after {time.monotonic() - started:.2f} s")
        account = _seed(http)  # migrations were applied, by one worker, once
        assert _usage(http, account).status_code == 200
        versions = sql(url, "SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in versions] == [
            migration.version for migration in migrate.packaged("postgresql")
        ]
        # The day rollup's zone, recorded by the lifespan's retry once the store answers.
        while not (keyed := sql(url, "SELECT zone FROM usage_days_zone")):
            assert time.monotonic() - started < RECOVERY_S, "the day rollup was never keyed"
            time.sleep(0.1)
        assert keyed == [("UTC",)]
        http.close()
        assert DB_PASSWORD not in server.output()


async def test_a_store_with_an_edited_migration_found_after_a_start_while_down_is_never_served(
    postgres: PrivatePostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The migrations deferred to the first connection find an applied one edited: the
    service answers 503 (``/readyz`` not ready) rather than serve a schema it does not
    know, and says why once."""
    url = await postgres.create_database_async("flamel")
    migrated = Database.from_url(url)
    await migrated.open()
    try:
        await migrated.migrate()
        async with migrated.transaction() as conn:
            await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2")
    finally:
        await migrated.close()
    postgres.stop()
    settings = Settings.from_environ(_environ(tmp_path, url))
    database = Database.from_url(settings.database_url, timeout=TIMEOUT_S, allow_async_commit=True)
    await database.start()  # no server: starts anyway, migrations wait for it
    try:
        postgres.start()
        transport = httpx.ASGITransport(app=App(settings, database))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for _ in range(3):
                _assert_unavailable(await http.get("/readyz"), "readyz, edited migration")
                plans = await http.get("/api/admin/plans", headers=ADMIN)
                _assert_unavailable(plans, "list plans, edited migration")
    finally:
        await database.close()
    refusals = [r for r in caplog.records if "migration 2 (0002_charges.sql)" in r.getMessage()]
    assert len(refusals) == 1, caplog.text


# --- COMMIT fails: the charge is not acknowledged ------------------------------------------


@pytest.fixture
async def outage_app(
    postgres: PrivatePostgres, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    url = await postgres.create_database_async("flamel")
    settings = Settings.from_environ(_environ(tmp_path, url))
    database = Database.from_url(settings.database_url, timeout=TIMEOUT_S, allow_async_commit=True)
    await database.start()
    try:
        transport = httpx.ASGITransport(app=App(settings, database))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, url
    finally:
        await database.close()


async def test_a_charge_whose_commit_fails_is_answered_503_and_not_recorded(
    outage_app: tuple[httpx.AsyncClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, url = outage_app
    plan = await http.post(
        "/api/admin/plans",
        headers=ADMIN,
        json={"name": "Commit", "periodUnit": "month", "maxCredit": 10},
    )
    assert plan.status_code == 201
    user = await http.post(
        "/api/admin/users", headers=ADMIN, json={"email": EMAIL, "plan": "Commit"}
    )
    user_id = user.json()["id"]
    charge_body = {"userId": user_id, "kind": "ttp"}
    original = metering.charge

    async def charge_then_lose_the_connection(conn: Connection, *args: Any, **kw: Any) -> Any:
        """Every statement of the charge runs; then the server ends the connection, so
        the COMMIT that follows cannot succeed."""
        outcome = await original(conn, *args, **kw)
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        killer = await asyncpg.connect(url, timeout=5)
        try:
            await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
            while await killer.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                await asyncio.sleep(0.01)
        finally:
            await killer.close()
        return outcome

    monkeypatch.setattr(metering, "charge", charge_then_lose_the_connection)
    lost = await http.post(
        "/api/admin/charges", headers={**ADMIN, "Idempotency-Key": "commit-1"}, json=charge_body
    )
    _assert_unavailable(lost, "charge whose COMMIT failed")
    monkeypatch.setattr(metering, "charge", original)

    assert await _charges_with_key_async(url, "commit-1") == 0
    usage = await http.get(f"/api/admin/users/{user_id}/usage", headers=ADMIN)
    assert usage.status_code == 200  # the pool replaced the lost connection
    assert usage.json()["ttpCount"] == 0
    assert usage.json()["currentCredit"] == 10
    retried = await http.post(
        "/api/admin/charges", headers={**ADMIN, "Idempotency-Key": "commit-1"}, json=charge_body
    )
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert await _charges_with_key_async(url, "commit-1") == 1
    reconcile = await http.get("/api/admin/reconcile", headers=ADMIN)
    assert reconcile.json() == {"ok": True, "problems": []}

"""``flamel-usage backup`` and ``restore``: a consistent copy of the SQLite database taken
while a real server (two workers) takes a storm of charges, and put back once every
server is stopped; on PostgreSQL both say which tools to use instead.

Bounded: a fixed number of charges, each with a timeout, the storm with a deadline, every
process start, stop and CLI call. Only 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.processes import run_cli, server_process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STORM = 400
CONNECTIONS = 32
BACKUP_AFTER = STORM // 4
STORM_DEADLINE_S = 90.0


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'flamel-usage.sqlite3'}"


def _account(base_url: str) -> int:
    with httpx.Client(base_url=base_url, headers=ADMIN, timeout=10.0) as http:
        plan = {"name": "backup", "periodUnit": "month", "maxCredit": 100000}
        assert http.post("/api/admin/plans", json=plan).status_code == 201
        user = http.post("/api/admin/users", json={"email": "b@example.com", "plan": "backup"})
        assert user.status_code == 201, user.text
        return int(user.json()["id"])


async def _storm_with_backup(
    base_url: str, user_id: int, environ: dict[str, str], target: Path
) -> tuple[set[str], set[str], str]:
    """The keys acknowledged before the backup started, all keys acknowledged, and the
    backup's output; the backup starts at the BACKUP_AFTER-th acknowledgement."""
    acknowledged: set[str] = set()
    before_backup: set[str] = set()
    started = asyncio.Event()
    slots = asyncio.Semaphore(CONNECTIONS)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)

    async def charge(client: httpx.AsyncClient, key: str) -> None:
        async with slots:
            answer = await client.post(
                "/api/admin/charges",
                json={"userId": user_id, "kind": "image", "cost": 1},
                headers={"Idempotency-Key": key},
            )
        assert answer.status_code == 201, answer.text
        acknowledged.add(key)
        if len(acknowledged) == BACKUP_AFTER:
            started.set()

    async def backup() -> str:
        await started.wait()
        before_backup.update(acknowledged)  # no await between: the set as it started
        done = await asyncio.to_thread(run_cli, environ, "backup", str(target))
        assert done.returncode == 0, done.stderr
        return done.stdout

    async with httpx.AsyncClient(
        base_url=base_url, headers=ADMIN, limits=limits, timeout=30.0
    ) as client:
        storm = asyncio.gather(*(charge(client, f"k{n}") for n in range(STORM)))
        _, output = await asyncio.wait_for(asyncio.gather(storm, backup()), STORM_DEADLINE_S)
    return before_backup, acknowledged, output


def _keys(path: Path) -> set[str]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {row[0] for row in conn.execute("SELECT idempotency_key FROM charges")}


async def test_a_backup_mid_storm_is_consistent_and_restores(
    environ: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "backups" / "mid-storm.sqlite3"
    target.parent.mkdir()
    with server_process(environ, workers=2) as server:
        user_id = _account(server.base_url)
        before, acknowledged, output = await _storm_with_backup(
            server.base_url, user_id, environ, target
        )
        assert "backup:" in output
        restored_live = run_cli(environ, "restore", str(target))
        assert restored_live.returncode == 2
        assert "database_in_use" in restored_live.stderr
        assert "stop every server" in restored_live.stderr
    assert len(acknowledged) == STORM

    copied = _keys(target)
    assert before <= copied  # every charge acknowledged before the backup started
    assert copied <= acknowledged | {None}
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    checked = run_cli({**environ, "FLAMEL_DATABASE_URL": f"sqlite:///{target}"}, "reconcile")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "reconcile: clean" in checked.stdout

    # Every server stopped: the backup goes back in place of the later database.
    restored = run_cli(environ, "restore", str(target))
    assert restored.returncode == 0, restored.stderr
    live = Path(environ["FLAMEL_DATABASE_URL"].removeprefix("sqlite:///"))
    assert _keys(live) == copied
    checked = run_cli(environ, "reconcile")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with (
        server_process(environ) as server,
        httpx.Client(base_url=server.base_url, headers=ADMIN, timeout=10.0) as http,
    ):
        usage = http.get(f"/api/admin/users/{user_id}/usage").json()
        assert usage["currentCredit"] == 100000 - len(copied)


def test_a_backup_never_overwrites_a_file(environ: dict[str, str], tmp_path: Path) -> None:
    assert run_cli(environ, "migrate").returncode == 0
    target = tmp_path / "exists.sqlite3"
    target.write_text("keep me")
    done = run_cli(environ, "backup", str(target))
    assert done.returncode == 2
    assert "never overwrites" in done.stderr
    assert target.read_text() == "keep me"


def test_restore_refuses_what_is_not_a_backup(environ: dict[str, str], tmp_path: Path) -> None:
    assert run_cli(environ, "migrate").returncode == 0
    missing = run_cli(environ, "restore", str(tmp_path / "missing.sqlite3"))
    assert missing.returncode == 2
    assert "no backup at" in missing.stderr
    other = tmp_path / "other.sqlite3"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")
    refused = run_cli(environ, "restore", str(other))
    assert refused.returncode == 2
    assert "not a flamel-usage database" in refused.stderr


def test_backup_on_postgresql_gives_the_tools_instead(
    environ: dict[str, str], tmp_path: Path, postgres_database: str
) -> None:
    environ = {**environ, "FLAMEL_DATABASE_URL": postgres_database}
    for command in ("backup", "restore"):
        done = run_cli(environ, command, str(tmp_path / "dump"))
        assert done.returncode == 2
        assert "backup_not_embedded" in done.stderr
        assert "pg_dump" in done.stderr
        assert "point-in-time" in done.stderr
        assert postgres_database not in done.stderr
    assert not (tmp_path / "dump").exists()

"""What the service keeps on disk is for its owner alone: directories 700, files 600.

Under the usual umask (022) files would come out 644 and directories 755: every local
user could read the emails, password hashes and ledger in SQLite's database, WAL and
SHM files, and the session secret. Each test runs under that umask.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamel_usage.cli.demo import ensure_demo
from flamel_usage.core.config import Settings
from flamel_usage.db.gateway import Database
from tests.processes import run_cli

NAME = "flamel-usage.sqlite3"
#: The usual default, under which files come out 644 and directories 755.
UMASK = 0o022
SQLITE_FILES = (NAME, f"{NAME}-wal", f"{NAME}-shm")


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):o}"


def _modes(directory: Path) -> dict[str, str]:
    """The permissions, in octal, of ``directory`` (as ``.``) and of each file in it."""
    return {".": _mode(directory)} | {path.name: _mode(path) for path in directory.iterdir()}


def _file_modes(directory: Path) -> dict[str, str]:
    return {name: mode for name, mode in _modes(directory).items() if name != "."}


async def test_a_new_sqlite_store_its_directory_wal_and_shm_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / NAME
    db = Database.from_url(f"sqlite:///{path}")
    await db.open()
    try:
        await db.migrate()
        await db.write_in_background("DELETE FROM auth_failures WHERE window_end < ?", 0)
        # Both connections are open: the WAL and SHM files exist.
        assert _modes(path.parent) == {".": "700", **dict.fromkeys(SQLITE_FILES, "600")}
    finally:
        await db.close()


async def test_the_files_of_a_store_an_older_version_made_are_tightened_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / NAME
    older = sqlite3.connect(path)  # as an older version made it: 644, and so its WAL and SHM
    try:
        older.execute("PRAGMA journal_mode=WAL")
        older.execute("CREATE TABLE notes (body TEXT)")
        older.commit()
        assert _file_modes(tmp_path) == dict.fromkeys(SQLITE_FILES, "644")
        db = Database.from_url(f"sqlite:///{path}")
        await db.open()
        try:
            assert _file_modes(tmp_path) == dict.fromkeys(SQLITE_FILES, "600")
        finally:
            await db.close()
    finally:
        older.close()


def test_the_data_dir_and_the_session_secret_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    Settings.from_environ({"FLAMEL_DATA_DIR": str(data_dir)}).resolved_session_secret()
    assert _modes(data_dir) == {".": "700", "session-secret": "600"}


def test_migrate_makes_a_private_data_dir_and_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = run_cli({"FLAMEL_DATA_DIR": str(data_dir)}, "migrate")
    assert done.returncode == 0, done.stderr
    assert _modes(data_dir) == {".": "700", NAME: "600"}


async def test_the_demo_key_file_and_its_directory_are_private(
    tmp_path: Path, db: Database
) -> None:
    data_dir = tmp_path / "demo"
    settings = Settings.from_environ({"FLAMEL_DATA_DIR": str(data_dir)})
    await ensure_demo(db, settings)
    assert _modes(data_dir) == {".": "700", "demo-api-key": "600"}

"""Settings: typed, validated, and never showing a secret."""

from __future__ import annotations

import logging
import multiprocessing
import subprocess
import sys
from collections.abc import Iterator, Mapping
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from flamel_usage.core.config import SETTINGS, ConfigError, Settings, settings_table
from flamel_usage.db.gateway import Database
from tests.processes import ServerProcess

SECRETS = {
    "FLAMEL_ADMIN_TOKEN": "admin-token-do-not-show",
    "FLAMEL_SESSION_SECRET": "session-secret-do-not-show-0123456789",
    "FLAMEL_DATABASE_URL": "postgresql://flamel:db-password-do-not-show@127.0.0.1:5432/prod",
}


def test_no_secret_appears_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_environ(SECRETS)
    database = Database.from_url(settings.database_url)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("flamel_usage").info("settings: %s %r", settings, database)
    shown = f"{settings!r} {settings!s} {database!r} {caplog.text}"
    assert "do-not-show" not in shown
    assert "127.0.0.1:5432/prod" in repr(database)


def test_secrets_are_revealed_only_on_request() -> None:
    settings = Settings.from_environ(SECRETS)
    assert settings.admin_token is not None
    assert settings.admin_token.reveal() == SECRETS["FLAMEL_ADMIN_TOKEN"]


def test_defaults() -> None:
    settings = Settings.from_environ({})
    assert settings.admin_token is None
    assert settings.database_url.reveal().startswith("sqlite:///")
    assert settings.database_url.reveal().endswith("/data/flamel-usage.sqlite3")
    assert settings.timezone.key == "UTC"
    assert dict(settings.operation_costs) == {"ttp": 1000, "edit": 1000, "image": 1000}
    assert (settings.max_header_bytes, settings.max_headers) == (16384, 100)
    assert settings.header_timeout_seconds == 10


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLAMEL_TIMEZONE", "Mars/Olympus"),
        ("FLAMEL_SESSION_TTL_SECONDS", "0"),
        ("FLAMEL_SESSION_TTL_SECONDS", "soon"),
        ("FLAMEL_OPERATION_COSTS", "ttp=1,ttp=2"),
        ("FLAMEL_OPERATION_COSTS", "TTP=1"),
        ("FLAMEL_OPERATION_COSTS", "ttp=-1"),
        ("FLAMEL_OPERATION_COSTS", "ttp"),
        ("FLAMEL_MAX_HEADER_BYTES", "0"),
        ("FLAMEL_MAX_HEADERS", "many"),
        ("FLAMEL_HEADER_TIMEOUT_SECONDS", "-1"),
    ],
)
def test_bad_settings_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: value})


def test_operation_costs_are_configurable() -> None:
    settings = Settings.from_environ({"FLAMEL_OPERATION_COSTS": "ttp=2, image=0.5, upscale=3"})
    assert dict(settings.operation_costs) == {"ttp": 2000, "image": 500, "upscale": 3000}


# --- The session secret ---------------------------------------------------------------------

#: Processes started together, as a server's workers are, and how many times.
RACERS = 6
RACES = 100


def _read_secrets(barrier: Barrier, data_dirs: list[str], found: Queue[list[str]]) -> None:
    """One racer: for each data dir, read (or make) its secret together with the others."""
    secrets = []
    for data_dir in data_dirs:
        settings = Settings.from_environ({"FLAMEL_DATA_DIR": data_dir})
        barrier.wait(timeout=10)
        secrets.append(settings.resolved_session_secret().reveal())
    found.put(secrets)


def test_processes_starting_together_all_get_the_same_whole_secret(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    data_dirs = [str(tmp_path / f"start-{race}") for race in range(RACES)]
    barrier = context.Barrier(RACERS)
    found: Queue[list[str]] = context.Queue()
    racers = [
        context.Process(target=_read_secrets, args=(barrier, data_dirs, found))
        for _ in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    try:
        seen = [found.get(timeout=30) for _ in racers]
    finally:
        for racer in racers:
            racer.join(timeout=10)
            racer.kill()
            racer.close()
        found.close()
    for race, data_dir in enumerate(data_dirs):
        kept = (Path(data_dir) / "session-secret").read_text()
        assert len(kept.encode()) >= 32, race
        assert {secrets[race] for secrets in seen} == {kept}, race


@pytest.mark.parametrize("secret", ["x", "a-secret-of-31-bytes-is-refused", "é" * 15])
def test_a_short_session_secret_is_refused_without_being_shown(secret: str) -> None:
    with pytest.raises(ConfigError, match="FLAMEL_SESSION_SECRET") as refused:
        Settings.from_environ({"FLAMEL_SESSION_SECRET": secret})
    assert "32 bytes" in str(refused.value)
    assert secret not in str(refused.value)


def test_a_secret_of_32_bytes_is_accepted() -> None:
    secret = "é" * 16  # 16 characters, 32 bytes
    settings = Settings.from_environ({"FLAMEL_SESSION_SECRET": secret})
    assert settings.resolved_session_secret().reveal() == secret


@pytest.mark.parametrize("kept", ["", "\n", "too-short\n"])
def test_a_short_secret_file_is_refused_and_left_alone(tmp_path: Path, kept: str) -> None:
    """An empty file, say, left by an older version that crashed while writing it."""
    (tmp_path / "session-secret").write_text(kept)
    settings = Settings.from_environ({"FLAMEL_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="session-secret") as refused:
        settings.resolved_session_secret()
    assert "32 bytes" in str(refused.value)
    assert (tmp_path / "session-secret").read_text() == kept


def test_serve_refuses_a_short_session_secret_in_one_line(tmp_path: Path) -> None:
    environ = {
        "FLAMEL_DATA_DIR": str(tmp_path / "data"),
        "FLAMEL_SESSION_SECRET": "tiny-secret",
    }
    server = ServerProcess(environ)
    try:
        assert server.process.wait(timeout=15) == 2
        output = server.output()
    finally:
        server.close()
    assert output.startswith("flamel-usage: invalid: FLAMEL_SESSION_SECRET"), output
    assert output.count("\n") == 1, output
    assert "tiny-secret" not in output, output


# --- The registry ---------------------------------------------------------------------------


class _Recording(Mapping[str, str]):
    """An empty environment that notes every variable asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_settings_read_every_registered_variable_and_no_other() -> None:
    environ = _Recording()
    Settings.from_environ(environ)
    assert environ.asked == {setting.name for setting in SETTINGS}


def test_the_readme_table_is_the_registry() -> None:
    """Regenerate it with ``python -m flamel_usage.core.config`` after changing a setting."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("| name | default | meaning |")
    table = readme[start:].split("\n\n", 1)[0].strip()
    assert table == settings_table()


def test_the_table_is_printed_by_the_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flamel_usage.core.config"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == settings_table() + "\n"
    assert done.stderr == ""

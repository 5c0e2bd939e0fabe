"""Settings: typed, validated, and never showing a secret."""

from __future__ import annotations

import logging

import pytest

from flamel_usage.config import ConfigError, Settings
from flamel_usage.db import Database

SECRETS = {
    "FLAMEL_ADMIN_TOKEN": "admin-token-do-not-show",
    "FLAMEL_SESSION_SECRET": "session-secret-do-not-show",
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

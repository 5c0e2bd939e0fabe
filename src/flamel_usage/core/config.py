"""Settings, read once from the environment into a typed, immutable object.

Nothing is read at import time: the CLI, the server workers and the tests each build
their own ``Settings`` from the mapping they are given, so a test can never leak its
configuration into another. Every setting is listed in ``SETTINGS`` with its meaning,
which the README's table is written from.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flamel_usage.core.errors import Refusal
from flamel_usage.core.logs import LogFormat
from flamel_usage.core.money import parse_credits


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names it."""


class Secret:
    """A string that never shows itself in ``repr``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(
            self._value.encode(), other._value.encode()
        )

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class SettingDoc:
    name: str
    default: str
    meaning: str


SETTINGS: tuple[SettingDoc, ...] = (
    SettingDoc(
        "FLAMEL_DATA_DIR",
        "./data",
        "Directory of the embedded SQLite database and the generated session secret,"
        " created for its owner alone (700, files 600; the files of an existing database"
        " are made 600 when it is opened).",
    ),
    SettingDoc(
        "FLAMEL_DATABASE_URL",
        "sqlite:///<data dir>/flamel-usage.sqlite3",
        "`sqlite:///PATH` or `postgresql://user@host:port/db`.",
    ),
    SettingDoc(
        "FLAMEL_ADMIN_TOKEN",
        "(none: every admin call is refused)",
        "Bearer token of the operator API under `/api/admin/`.",
    ),
    SettingDoc(
        "FLAMEL_SESSION_SECRET",
        "(generated once into the data dir)",
        "Secret that signs the session cookie, shared with an Express front end; at least 32"
        " bytes. A comma-separated list rotates it, as express-session's array does: the"
        " first signs, any of them is accepted.",
    ),
    SettingDoc("FLAMEL_TIMEZONE", "UTC", "IANA zone in which billing periods start and end."),
    SettingDoc("FLAMEL_SESSION_TTL_SECONDS", "1209600", "Lifetime of a login session (14 days)."),
    SettingDoc(
        "FLAMEL_OPERATION_COSTS",
        "ttp=1,edit=1,image=1",
        "Operation kinds that can be charged and their default cost in credits.",
    ),
    SettingDoc(
        "FLAMEL_DATABASE_TIMEOUT_SECONDS",
        "3",
        "Longest wait for PostgreSQL (to connect, get a pooled connection, run one"
        " statement) before answering `503 service_unavailable`. SQLite waits for its"
        " write lock at least 10 s, or this long if longer.",
    ),
    SettingDoc(
        "FLAMEL_KEY_FAILURE_BUDGET",
        "50",
        "Wrong API keys one client may send per window before its wrong keys are refused"
        " with `429 too_many_requests` (a valid key never is).",
    ),
    SettingDoc(
        "FLAMEL_LOGIN_FAILURE_BUDGET",
        "10",
        "Failed logins per window before logins are refused: per browser that signed in to"
        " the account before, else per client and per account.",
    ),
    SettingDoc("FLAMEL_THROTTLE_WINDOW_SECONDS", "300", "The window of both budgets."),
    SettingDoc(
        "FLAMEL_CLIENT_ADDRESS_HEADER",
        "(none: the peer address)",
        "Header a trusted proxy sets with the client address, e.g. `X-Forwarded-For`"
        " (its last address is used, over all its lines: the one the proxy added, also on"
        " a line of its own). Set it only behind such a proxy.",
    ),
    SettingDoc(
        "FLAMEL_MAX_HEADER_BYTES",
        "16384",
        "Largest request head (request line and headers) in bytes; a larger one is answered"
        " `431 request_header_fields_too_large` and its connection closed, as soon as that"
        " many bytes have arrived.",
    ),
    SettingDoc(
        "FLAMEL_MAX_HEADERS",
        "100",
        "Most header lines in one request; more are answered the same way.",
    ),
    SettingDoc(
        "FLAMEL_HEADER_TIMEOUT_SECONDS",
        "10",
        "Longest time a request's head may take to arrive, from when its connection opens or"
        " the previous response was sent; past it the connection is closed, so idle and"
        " slow connections do not pile up.",
    ),
    SettingDoc(
        "FLAMEL_LOG_FORMAT",
        "text",
        "`text` (a line per record) or `json` (one JSON object per line) on stderr.",
    ),
    SettingDoc(
        "FLAMEL_ACCESS_LOG",
        "off",
        "`on`: one INFO line per request (method, route pattern, status, duration, request"
        " id); `off`: none (the default: a line costs a worker about a third of a usage"
        " read's time, and `/metrics` counts every request anyway).",
    ),
    SettingDoc(
        "FLAMEL_CORS_ORIGINS",
        "(none: CORS off)",
        "Comma-separated browser origins (`https://app.example.com`) allowed to read"
        " `GET /api/users/me/usage` cross-origin with an `X-Api-Key`; never with cookies.",
    ),
    # --- the platform's sessions (SPEC 7) ---
    SettingDoc(
        "FLAMEL_SESSION_STORE",
        "local",
        "Where sessions live: `local` (our own sign-in), `redis://host:port/db` (the"
        " platform's connect-redis store) or `postgresql://...` (its connect-pg-simple"
        " table). An external store is only read, never written.",
    ),
    SettingDoc(
        "FLAMEL_SESSION_STORE_PREFIX",
        "sess:",
        "connect-redis's key prefix (set but empty: no prefix).",
    ),
    SettingDoc(
        "FLAMEL_SESSION_STORE_SCHEMA",
        "(none: the search path)",
        "connect-pg-simple's `schemaName`.",
    ),
    SettingDoc("FLAMEL_SESSION_STORE_TABLE", "session", "connect-pg-simple's `tableName`."),
    SettingDoc(
        "FLAMEL_SESSION_USER_FIELD",
        "passport.user",
        "Dotted path to the platform's user id (a string or a whole number) in the session"
        " JSON; it names the user whose `externalId` it is.",
    ),
    SettingDoc(
        "FLAMEL_SESSION_COOKIE_NAME",
        "connect.sid",
        "Name of the session cookie (express-session's `name`).",
    ),
    SettingDoc(
        "FLAMEL_LOGIN_URL",
        "(none; required with an external store)",
        "Where the pages send a signed-out visitor when sessions are the platform's: its"
        " sign-in page (`https://...` or a path on this host).",
    ),
)

#: The shortest session secret accepted: a key shorter than HMAC-SHA256's 32-byte output
#: makes every signature weaker, and a short one can be guessed offline from any cookie.
MIN_SESSION_SECRET_BYTES = 32
DEFAULT_OPERATION_COSTS = "ttp=1,edit=1,image=1"
DEFAULT_DATABASE_TIMEOUT_SECONDS = 3.0
#: express-session's own default name for its cookie.
DEFAULT_SESSION_COOKIE_NAME = "connect.sid"
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ORIGIN = re.compile(
    r"https?://[a-z0-9.-]+(?::[0-9]{1,5})?|https?://\[[0-9a-f:.]+\](?::[0-9]{1,5})?"
)
_SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
_SESSION_STORE_SCHEMES = ("redis", "rediss", "postgresql", "postgres")
#: RFC 6265's cookie-name token: visible ASCII but separators.
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
_LOGIN_URL = re.compile(r"(?:https?://[^\s/?#]+)?/[^\s\x00-\x1f\x7f]*")


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: Secret
    admin_token: Secret | None
    session_secret: Secret | None
    timezone: ZoneInfo
    session_ttl_seconds: int = 14 * 24 * 3600
    operation_costs: Mapping[str, int] = field(
        default_factory=lambda: _operation_costs(DEFAULT_OPERATION_COSTS)
    )
    database_timeout_seconds: float = DEFAULT_DATABASE_TIMEOUT_SECONDS
    key_failure_budget: int = 50
    login_failure_budget: int = 10
    throttle_window_seconds: int = 300
    client_address_header: str | None = None
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout_seconds: float = 10.0
    log_format: LogFormat = "text"
    access_log: bool = False
    cors_origins: frozenset[str] = frozenset()
    # The platform's sessions (SPEC 7); ``session_store`` None is our own ("local").
    session_store: Secret | None = None
    session_store_prefix: str = "sess:"
    session_store_schema: str | None = None
    session_store_table: str = "session"
    session_user_field: tuple[str, ...] = ("passport", "user")
    session_cookie_name: str = DEFAULT_SESSION_COOKIE_NAME
    login_url: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("FLAMEL_DATA_DIR") or "data").resolve()
        url = env.get("FLAMEL_DATABASE_URL") or f"sqlite:///{data_dir / 'flamel-usage.sqlite3'}"
        return cls(
            data_dir=data_dir,
            database_url=Secret(url),
            admin_token=_optional_secret(env.get("FLAMEL_ADMIN_TOKEN")),
            session_secret=_session_secret(env.get("FLAMEL_SESSION_SECRET")),
            timezone=_zone(env.get("FLAMEL_TIMEZONE") or "UTC"),
            session_ttl_seconds=_positive_int(env, "FLAMEL_SESSION_TTL_SECONDS", 14 * 24 * 3600),
            operation_costs=_operation_costs(
                env.get("FLAMEL_OPERATION_COSTS") or DEFAULT_OPERATION_COSTS
            ),
            database_timeout_seconds=_positive_seconds(
                env, "FLAMEL_DATABASE_TIMEOUT_SECONDS", DEFAULT_DATABASE_TIMEOUT_SECONDS
            ),
            key_failure_budget=_positive_int(env, "FLAMEL_KEY_FAILURE_BUDGET", 50),
            login_failure_budget=_positive_int(env, "FLAMEL_LOGIN_FAILURE_BUDGET", 10),
            throttle_window_seconds=_positive_int(env, "FLAMEL_THROTTLE_WINDOW_SECONDS", 300),
            client_address_header=(env.get("FLAMEL_CLIENT_ADDRESS_HEADER") or "").lower() or None,
            max_header_bytes=_positive_int(env, "FLAMEL_MAX_HEADER_BYTES", 16 * 1024),
            max_headers=_positive_int(env, "FLAMEL_MAX_HEADERS", 100),
            header_timeout_seconds=_positive_seconds(env, "FLAMEL_HEADER_TIMEOUT_SECONDS", 10.0),
            log_format=_log_format(env.get("FLAMEL_LOG_FORMAT") or "text"),
            access_log=_switch(env, "FLAMEL_ACCESS_LOG", default=False),
            cors_origins=_cors_origins(env.get("FLAMEL_CORS_ORIGINS") or ""),
            **_platform_sessions(env),
        )

    def resolved_session_secret(self) -> Secret:
        """The secret that signs: the first of ``resolved_session_secrets``."""
        return self.resolved_session_secrets()[0]

    def resolved_session_secrets(self) -> tuple[Secret, ...]:
        """The configured secrets, or one generated once and kept in the data dir.

        Several, in the configured order, to rotate the secret as express-session does:
        cookies are signed with the first and accepted when any of them signed them, so
        a new secret goes first and an old one stays listed until its cookies are gone.
        Kept on disk rather than in memory so that every worker process and every
        restart signs and verifies cookies with the same key.
        """
        if self.session_secret is not None:
            return tuple(map(Secret, self.session_secret.reveal().split(",")))
        path = self.data_dir / "session-secret"
        if not path.exists():
            _publish_new_secret(path)
        secret = path.read_text().strip()
        if len(secret.encode()) < MIN_SESSION_SECRET_BYTES:
            raise ConfigError(
                f"{path}: the session secret must be at least {MIN_SESSION_SECRET_BYTES}"
                " bytes: delete the file to have a new one generated"
            )
        return (Secret(secret),)


def _publish_new_secret(path: Path) -> None:
    """Put a new secret at ``path``, unless another process got there first.

    Written and flushed to a temporary file, then linked into place: ``path`` appears
    whole or not at all, so a process starting meanwhile never reads a partial secret.
    A link, unlike a rename, never replaces a secret that another process already
    published and may be signing cookies with.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
            handle.flush()
            os.fsync(handle.fileno())
        with suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _optional_secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


def _session_secret(value: str | None) -> Secret | None:
    """The secret, or comma-separated secrets, each taken exactly as written."""
    parts = value.split(",") if value else []
    for place, part in enumerate(parts, 1):
        if len(part.encode()) < MIN_SESSION_SECRET_BYTES:
            which = f"secret {place} of {len(parts)}" if len(parts) > 1 else "must be"
            raise ConfigError(
                f"FLAMEL_SESSION_SECRET: {which} at least {MIN_SESSION_SECRET_BYTES} bytes,"
                f" got {len(part.encode())}"
            )
    return _optional_secret(value)


class _PlatformSessionFields(TypedDict):
    session_store: Secret | None
    session_store_prefix: str
    session_store_schema: str | None
    session_store_table: str
    session_user_field: tuple[str, ...]
    session_cookie_name: str
    login_url: str | None


def _platform_sessions(env: Mapping[str, str]) -> _PlatformSessionFields:
    """The settings of the platform's session store, checked together (SPEC 7).

    An external store needs ``FLAMEL_LOGIN_URL``: this service has no sign-in of its own
    then, and a signed-out visitor of the pages must be sent somewhere to sign in.
    """
    store = env.get("FLAMEL_SESSION_STORE") or "local"
    scheme = store.partition("://")[0].lower() if "://" in store else store
    if store != "local" and scheme not in _SESSION_STORE_SCHEMES:
        raise ConfigError(
            "FLAMEL_SESSION_STORE: 'local', redis://host:port/db or postgresql://..., got"
            f" a value of scheme {scheme[:16]!r}"
        )
    login_url = env.get("FLAMEL_LOGIN_URL") or None
    if login_url is not None and not _LOGIN_URL.fullmatch(login_url):
        raise ConfigError(
            "FLAMEL_LOGIN_URL: an http(s) URL or a path starting with '/', without spaces"
        )
    if store != "local" and login_url is None:
        raise ConfigError(
            "FLAMEL_LOGIN_URL: required with an external FLAMEL_SESSION_STORE: the platform's"
            " sign-in page, where the pages send a signed-out visitor"
        )
    cookie_name = env.get("FLAMEL_SESSION_COOKIE_NAME") or DEFAULT_SESSION_COOKIE_NAME
    if not _COOKIE_NAME.fullmatch(cookie_name):
        raise ConfigError(
            f"FLAMEL_SESSION_COOKIE_NAME: not a cookie name (1-64 of RFC 6265's token"
            f" characters): {cookie_name[:64]!r}"
        )
    field_path = env.get("FLAMEL_SESSION_USER_FIELD") or "passport.user"
    if not all(field_path.split(".")):
        raise ConfigError(
            f"FLAMEL_SESSION_USER_FIELD: a dotted path such as passport.user, got {field_path!r}"
        )
    return {
        "session_store": None if store == "local" else Secret(store),
        "session_store_prefix": env.get("FLAMEL_SESSION_STORE_PREFIX", "sess:"),
        "session_store_schema": env.get("FLAMEL_SESSION_STORE_SCHEMA") or None,
        "session_store_table": env.get("FLAMEL_SESSION_STORE_TABLE") or "session",
        "session_user_field": tuple(field_path.split(".")),
        "session_cookie_name": cookie_name,
        "login_url": login_url,
    }


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"FLAMEL_TIMEZONE: unknown time zone {name!r}") from exc


def _operation_costs(text: str) -> Mapping[str, int]:
    """``kind=credits,...`` as kind -> millicredits, read-only."""
    costs: dict[str, int] = {}
    for item in text.split(","):
        kind, _, cost = item.strip().partition("=")
        if not _KIND.fullmatch(kind) or kind in costs:
            raise ConfigError(f"FLAMEL_OPERATION_COSTS: bad or repeated kind {kind!r}")
        try:
            costs[kind] = parse_credits(cost, kind)
        except Refusal as exc:
            raise ConfigError(f"FLAMEL_OPERATION_COSTS: {exc}") from None
    return MappingProxyType(costs)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: not a whole number: {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name}: must be positive, got {value}")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A duration in seconds, decimals allowed (``0.5``), above zero and at most an hour."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: not a number of seconds: {raw!r}") from exc
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise ConfigError(f"{name}: must be above 0 and at most 3600 seconds, got {raw!r}")
    return value


def _log_format(value: str) -> LogFormat:
    if value == "text":
        return "text"
    if value == "json":
        return "json"
    raise ConfigError(f"FLAMEL_LOG_FORMAT: 'text' or 'json', got {value!r}")


def _switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return _SWITCH[raw.strip().lower()]
    except KeyError:
        raise ConfigError(f"{name}: 'on' or 'off', got {raw!r}") from None


def _cors_origins(text: str) -> frozenset[str]:
    """Exact origins (scheme, host, optional port; no path, no ``*``), lower-cased."""
    origins = set()
    for item in text.split(","):
        origin = item.strip().lower()
        if not origin:
            continue
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"FLAMEL_CORS_ORIGINS: {item.strip()!r} is not an origin like"
                " https://app.example.com (scheme and host, no path, no wildcard)"
            )
        origins.add(origin)
    return frozenset(origins)

"""Settings, read once from the environment into a typed, immutable object.

Nothing is read at import time: the CLI, the server workers and the tests each build
their own ``Settings`` from the mapping they are given, so a test can never leak its
configuration into another.

Each setting is declared once, in ``SETTINGS``: its variable, its default, its meaning
and how its text is read. ``Settings.from_environ`` reads every one of them, and the
README's table of settings is printed from them (``python -m flamel_usage.core.config``);
``tests/test_config.py`` checks both.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flamel_usage.core.errors import Refusal
from flamel_usage.core.logs import LogFormat
from flamel_usage.core.money import parse_credits


class ConfigError(ValueError):
    "''A setting has a value the service cannot run with; the message names it.''"


class Secret:
    "''A string that never shows itself in ``repr``, logs or tracebacks.''"

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


#: The shortest session secret accepted: a key shorter than HMAC-SHA256's 32-byte output
#: makes every signature weaker, and a short one can be guessed offline from any cookie.
MIN_SESSION_SECRET_BYTES = 32
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ORIGIN = re.compile(
    r"https?://[a-z0-9.-]+(?::[0-9]{1,5})?|https?://\[[0-9a-f:.]+\](?::[0-9]{1,5})?"
)
_SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
_SESSION_STORE_SCHEMES = ("redis", "rediss", "postgresql", "postgres")
#: RFC 6265's cookie-name token: visible ASCII but separators.
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
_LOGIN_URL = re.compile(r"(?:https?://[^\s/?#]+)?/[^\s\x00-\x1f\x7f]*")
T = TypeVar("T")


# --- How a setting's text is read: each raises ConfigError, which ``Setting`` names -----


def _directory(text: str) -> Path:
    return Path(text).resolve()


def _text_or_none(text: str) -> str | None:
    return text or None


def _header_name(text: str) -> str | None:
    return text.lower() or None


def _optional_secret(text: str) -> Secret | None:
    return Secret(text) if text else None


def _session_secret(text: str) -> Secret | None:
    """The secret, or comma-separated secrets, each taken exactly as written."""
    parts = text.split(",") if text else []
    for place, part in enumerate(parts, 1):
        if len(part.encode()) < MIN_SESSION_SECRET_BYTES:
            which = f"secret {place} of {len(parts)}" if len(parts) > 1 else "must be"
            raise ConfigError(
                f"{which} at least {MIN_SESSION_SECRET_BYTES} bytes, got {len(part.encode())}"
            )
    return _optional_secret(text)


def _session_store(text: str) -> Secret | None:
    """None for our own sessions (``local``), else the platform's store's URL, kept secret
    (it may carry a password)."""
    if text == "local":
        return None
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in _SESSION_STORE_SCHEMES:
        raise ConfigError(
            "'local', redis://host:port/db or postgresql://..., got a value of scheme"
            f" {scheme[:16]!r}"
        )
    return Secret(text)


def _cookie_name(text: str) -> str:
    if not _COOKIE_NAME.fullmatch(text):
        raise ConfigError(f"not a cookie name (1-64 of RFC 6265's token characters): {text[:64]!r}")
    return text


def _user_field(text: str) -> tuple[str, ...]:
    path = tuple(text.split("."))
    if not all(path):
        raise ConfigError(f"a dotted path such as passport.user, got {text!r}")
    return path


def _login_url(text: str) -> str | None:
    if text and not _LOGIN_URL.fullmatch(text):
        raise ConfigError("an http(s) URL or a path starting with '/', without spaces")
    return text or None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}") from None


def _operation_costs(text: str) -> Mapping[str, int]:
    "''``kind=credits,...`` as kind -> millicredits, read-only.''"
    costs: dict[str, int] = {}
    for item in text.split(","):
        kind, _, cost = item.strip().partition("=")
        if not _KIND.fullmatch(kind) or kind in costs:
            raise ConfigError(f"bad or repeated kind {kind!r}")
        try:
            costs[kind] = parse_credits(cost, kind)
        except Refusal as exc:
            raise ConfigError(str(exc)) from None
    return MappingProxyType(costs)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise ConfigError(f"must be positive, got {value}")
    return value


def _thresholds(text: str) -> tuple[int, ...]:
    "''Percentages of plan credit used, 1-100, ascending and distinct.''"
    try:
        values = tuple(sorted({int(item) for item in text.split(",") if item.strip()}))
    except ValueError:
        raise ConfigError(
            f"comma-separated whole percentages such as 80,100, got {text!r}"
        ) from None
    if not values or not all(1 <= value <= 100 for value in values):
        raise ConfigError(f"percentages from 1 to 100, got {text!r}")
    return values


def _positive_seconds(text: str) -> float:
    "''A duration in seconds, decimals allowed (``0.5``), above zero and at most an hour.''"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise ConfigError(f"must be above 0 and at most 3600 seconds, got {text!r}")
    return value


def _drain_seconds(text: str) -> float:
    "''A duration in seconds, decimals allowed, from 0 (no drain) to an hour.''"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 3600:  # also refuses nan and inf
        raise ConfigError(f"must be from 0 to 3600 seconds, got {text!r}")
    return value


def _log_format(text: str) -> LogFormat:
    if text == "text":
        return "text"
    if text == "json":
        return "json"
    raise ConfigError(f"'text' or 'json', got {text!r}")


def _switch(text: str) -> bool:
    try:
        return _SWITCH[text.strip().lower()]
    except KeyError:
        raise ConfigError(f"'on' or 'off', got {text!r}") from None


def _cors_origins(text: str) -> frozenset[str]:
    "''Exact origins (scheme, host, optional port; no path, no ``*``), lower-cased.''"
    origins = set()
    for item in text.split(","):
        origin = item.strip().lower()
        if not origin:
            continue
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"{item.strip()!r} is not an origin like https://app.example.com"
                " (scheme and host, no path, no wildcard)"
            )
        origins.add(origin)
    return frozenset(origins)


# --- The registry -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One environment variable: its default and meaning as the README shows them, and
    how its text is read. Unset and empty are the same: the default is read."""

    name: str
    #: The text read when the variable is unset; "" when the setting has no value then.
    default: str
    meaning: str
    parse: Callable[[str], T]
    #: What the README says the default is, when it is no text ("none: CORS off").
    shown: str = ""

    def read(self, environ: Mapping[str, str]) -> T:
        try:
            return self.parse(environ.get(self.name) or self.default)
        except ConfigError as error:
            raise ConfigError(f"{self.name}: {error}") from None

    def table_row(self) -> str:
        default = f"`{self.default}`" if self.default else self.shown
        return f"| `{self.name}` | {default} | {self.meaning} |"


DATA_DIR: Setting[Path] = Setting(
    "FLAMEL_DATA_DIR",
    "./data",
    "Directory of the embedded SQLite database and the generated session secret, created for its"
    " owner alone (700, files 600; the files of an existing database, WAL and SHM included, are"
    " made 600 when it is opened).",
    _directory,
)
DATABASE_URL: Setting[str | None] = Setting(
    "FLAMEL_DATABASE_URL",
    "",
    "`sqlite:///PATH` or `postgresql://user@host:port/db`.",
    _text_or_none,
    shown="`sqlite:///<data dir>/flamel-usage.sqlite3`",
)
ADMIN_TOKEN: Setting[Secret | None] = Setting(
    "FLAMEL_ADMIN_TOKEN",
    "",
    "Bearer token of the operator API.",
    _optional_secret,
    shown="none: every admin call is refused",
)
SESSION_SECRET: Setting[Secret | None] = Setting(
    "FLAMEL_SESSION_SECRET",
    "",
    "Signs `connect.sid`; share it with an Express front end. At least 32 bytes: a shorter one is"
    " refused (exit 2). A comma-separated list rotates it as express-session's secret array does:"
    " the first signs, any listed is accepted (each taken exactly as written, so no spaces around"
    " the commas; each at least 32 bytes).",
    _session_secret,
    shown="generated once into the data dir",
)
TIMEZONE: Setting[ZoneInfo] = Setting(
    "FLAMEL_TIMEZONE",
    "UTC",
    "IANA zone in which billing periods start and end.",
    _zone,
)
SESSION_TTL_SECONDS: Setting[int] = Setting(
    "FLAMEL_SESSION_TTL_SECONDS",
    "1209600",
    "Lifetime of a login session (14 days).",
    _positive_int,
)
OPERATION_COSTS: Setting[Mapping[str, int]] = Setting(
    "FLAMEL_OPERATION_COSTS",
    "ttp=1,edit=1,image=1",
    "Operation kinds that can be charged and their default cost in credits.",
    _operation_costs,
)
HOLD_SWEEP_SECONDS: Setting[float] = Setting(
    "FLAMEL_HOLD_SWEEP_SECONDS",
    "30",
    "How often each worker releases the holds that expired unsettled (above 0, at most 3600"
    " seconds). A read or write of the account sees them released at once anyway: the sweep"
    " only writes down what the reads already show.",
    _positive_seconds,
)
DATABASE_TIMEOUT_SECONDS: Setting[float] = Setting(
    "FLAMEL_DATABASE_TIMEOUT_SECONDS",
    "3",
    "Longest wait for PostgreSQL (connecting, getting a pooled connection, each statement); past"
    " it, or with PostgreSQL down, every endpoint that needs the database answers `503"
    " service_unavailable` with `Retry-After: 1` (the sign-in and usage pages: a 503 page in the"
    " reader's language), and recovers by itself when PostgreSQL is back (a server may even start"
    " while it is down). SQLite waits for its write lock at least 10 s, or this long if longer, so"
    " that charges under contention queue rather than fail.",
    _positive_seconds,
)
KEY_FAILURE_BUDGET: Setting[int] = Setting(
    "FLAMEL_KEY_FAILURE_BUDGET",
    "50",
    "Wrong API keys one client may send per window; past it its wrong keys get `429"
    " too_many_requests` with `Retry-After` (a valid key never does).",
    _positive_int,
)
LOGIN_FAILURE_BUDGET: Setting[int] = Setting(
    "FLAMEL_LOGIN_FAILURE_BUDGET",
    "10",
    "Failed sign-ins per window before sign-ins are refused the same way: per browser that signed"
    " in to the account before (its `flamel_device` cookie), else per client and per account.",
    _positive_int,
)
THROTTLE_WINDOW_SECONDS: Setting[int] = Setting(
    "FLAMEL_THROTTLE_WINDOW_SECONDS",
    "300",
    "The window of both budgets (counted in the database, so across workers).",
    _positive_int,
)
CLIENT_ADDRESS_HEADER: Setting[str | None] = Setting(
    "FLAMEL_CLIENT_ADDRESS_HEADER",
    "",
    "Header a trusted proxy sets with the client address (e.g. `X-Forwarded-For`; its last"
    " address counts, over all its lines: the one the proxy added, also on a line of its own as"
    " HAProxy's `option forwardfor` adds it). Set it only behind such a proxy.",
    _header_name,
    shown="none: the peer address",
)
MAX_HEADER_BYTES: Setting[int] = Setting(
    "FLAMEL_MAX_HEADER_BYTES",
    "16384",
    "Largest request head (request line and headers) in bytes. A larger one gets `431"
    " request_header_fields_too_large` and its connection closed, so a huge header never fills a"
    " worker's memory: under granian (the default server) a head up to twice this size gets the"
    " API's envelope and a larger one a bare `431` once that much has arrived; under `--server"
    " uvicorn` the envelope, as soon as this much has arrived.",
    _positive_int,
)
MAX_HEADERS: Setting[int] = Setting(
    "FLAMEL_MAX_HEADERS",
    "100",
    "Most header lines in one request; more get the same `431`. Under granian at most 100 (its"
    " parser's cap, whose `431` is bare); `serve` refuses a larger value there (`--server uvicorn`"
    " takes any).",
    _positive_int,
)
HEADER_TIMEOUT_SECONDS: Setting[float] = Setting(
    "FLAMEL_HEADER_TIMEOUT_SECONDS",
    "10",
    "Longest time a request's head may take to arrive, counted from when its connection opens or"
    " the previous response went out (bytes trickling in do not restart it); past it the"
    " connection is closed, so idle and slow connections do not pile up. Under granian in"
    " milliseconds, at most 60 s.",
    _positive_seconds,
)
SHUTDOWN_DRAIN_SECONDS: Setting[float] = Setting(
    "FLAMEL_SHUTDOWN_DRAIN_SECONDS",
    "5",
    "On SIGTERM (or SIGINT), how long `serve` keeps serving while `/readyz` answers `503` and"
    " every answer closes its connection, so that a load balancer moves the traffic away; then it"
    " stops taking connections, finishes the requests in flight, records keys' last use and exits"
    " 0. `0`: stop at once. Give a supervisor more than this to wait (systemd's"
    " `TimeoutStopSec`).",
    _drain_seconds,
)
LOG_FORMAT: Setting[LogFormat] = Setting(
    "FLAMEL_LOG_FORMAT",
    "text",
    "`text`: `<time> <LEVEL> <logger>: <message> request_id=…` per line; `json`: one JSON object"
    " per line (`time`, `level`, `logger`, `message`, `pid`, and `request_id`, `exc_info` when"
    " there are), the server's (granian's, uvicorn's) lines included. Both on stderr.",
    _log_format,
)
ACCESS_LOG: Setting[bool] = Setting(
    "FLAMEL_ACCESS_LOG",
    "off",
    "`on`: one INFO line per request (`method`, `route` pattern, `status`, `duration_ms`,"
    " `request_id`; never a header, cookie, key, query or body); `off`: none. Off by default"
    " because a line costs a worker about 20 µs, a third of a usage read, and `/metrics` counts"
    " every request by route and status anyway; errors are logged either way, with the request id.",
    _switch,
)
CORS_ORIGINS: Setting[frozenset[str]] = Setting(
    "FLAMEL_CORS_ORIGINS",
    "",
    "Comma-separated exact origins (`https://app.example.com`) whose pages may read `GET"
    " /api/users/me/usage` cross-origin with an `X-Api-Key` (preflight answered, `Vary: Origin`;"
    " never with cookies). Other routes and origins get no `Access-Control-*` header.",
    _cors_origins,
    shown="none: CORS off",
)
# --- The platform's sessions (SPEC 7; README "Beside the platform") ---
SESSION_STORE: Setting[Secret | None] = Setting(
    "FLAMEL_SESSION_STORE",
    "local",
    "Where sessions live: `local`, our own sign-in's, in our database; `redis://host:port/db`"
    " (or `rediss://`), the platform's connect-redis store; `postgresql://...`, its"
    " connect-pg-simple table. An external store is only read, never written.",
    _session_store,
)
SESSION_STORE_PREFIX: Setting[str] = Setting(
    "FLAMEL_SESSION_STORE_PREFIX", "sess:", "connect-redis's `prefix`.", str
)
SESSION_STORE_SCHEMA: Setting[str | None] = Setting(
    "FLAMEL_SESSION_STORE_SCHEMA",
    "",
    "connect-pg-simple's `schemaName`.",
    _text_or_none,
    shown="none: the search path",
)
SESSION_STORE_TABLE: Setting[str] = Setting(
    "FLAMEL_SESSION_STORE_TABLE", "session", "connect-pg-simple's `tableName`.", str
)
SESSION_USER_FIELD: Setting[tuple[str, ...]] = Setting(
    "FLAMEL_SESSION_USER_FIELD",
    "passport.user",
    "Dotted path to the platform's user id in the session JSON (a string, or a whole number,"
    " which stands for its decimal digits): the user here whose `externalId` it is.",
    _user_field,
)
SESSION_COOKIE_NAME: Setting[str] = Setting(
    "FLAMEL_SESSION_COOKIE_NAME",
    "connect.sid",
    "The session cookie's name (express-session's `name`).",
    _cookie_name,
)
LOGIN_URL: Setting[str | None] = Setting(
    "FLAMEL_LOGIN_URL",
    "",
    "The platform's sign-in page (`https://...` or a path on this host), where the pages send a"
    " signed-out visitor when sessions are the platform's.",
    _login_url,
    shown="none; required with an external store (else exit 2)",
)
IDEMPOTENCY_RETENTION_DAYS: Setting[int] = Setting(
    "FLAMEL_IDEMPOTENCY_RETENTION_DAYS",
    "30",
    "Days an idempotency key's record is kept: a retry within them gets the first outcome back;"
    " older records are deleted in the background (a few hundred rows at a time, without holding"
    " up charges) and their key may be used again. The charge or purchase and its ledger entries"
    " stay forever; a refund needs the record, so a charge can be refunded within these days."
    " Keep it longer than any client retries.",
    _positive_int,
)
ALLOW_ASYNC_COMMIT: Setting[bool] = Setting(
    "FLAMEL_ALLOW_ASYNC_COMMIT",
    "off",
    "`on`: start against a PostgreSQL whose `synchronous_commit` or `fsync` is off. Off by"
    " default: the server refuses to start there, because a charge it acknowledged"
    " could be lost in a crash of PostgreSQL's machine.",
    _switch,
)

# --- Webhooks (SPEC 9; README "Webhooks") ---
WEBHOOK_ALLOW_PRIVATE: Setting[bool] = Setting(
    "FLAMEL_WEBHOOK_ALLOW_PRIVATE",
    "off",
    "`on`: webhook URLs may use plain `http` and point at private, loopback and link-local"
    " addresses (tests, private networks). `off`: `https` only, and a host resolving to such an"
    " address is refused when the endpoint is registered and again before every send.",
    _switch,
)
ALERT_THRESHOLDS: Setting[tuple[int, ...]] = Setting(
    "FLAMEL_ALERT_THRESHOLDS",
    "80,100",
    "Percentages of the period's plan credit used at which `usage.threshold_reached` fires, once"
    " each per user and period.",
    _thresholds,
)
ALERT_EXPIRY_DAYS: Setting[int] = Setting(
    "FLAMEL_ALERT_EXPIRY_DAYS",
    "7",
    "`credit.expiring` fires, once per purchase, when purchased credit left expires within this"
    " many days.",
    _positive_int,
)
WEBHOOK_POLL_SECONDS: Setting[float] = Setting(
    "FLAMEL_WEBHOOK_POLL_SECONDS",
    "1",
    "How often each worker's dispatcher looks for webhook deliveries due (and, every 60 polls,"
    " for purchased credit about to expire).",
    _positive_seconds,
)
WEBHOOK_BACKOFF_SECONDS: Setting[float] = Setting(
    "FLAMEL_WEBHOOK_BACKOFF_SECONDS",
    "10",
    "Wait before the first retry of a failed delivery; each next wait doubles (with jitter), up"
    " to an hour.",
    _positive_seconds,
)
WEBHOOK_RETRY_SECONDS: Setting[int] = Setting(
    "FLAMEL_WEBHOOK_RETRY_SECONDS",
    "86400",
    "How long a delivery is retried before it is marked failed (a day).",
    _positive_int,
)
WEBHOOK_DISABLE_SECONDS: Setting[int] = Setting(
    "FLAMEL_WEBHOOK_DISABLE_SECONDS",
    "259200",
    "An endpoint whose deliveries have failed without a success for this long (3 days) is"
    " disabled; its pending deliveries are marked failed.",
    _positive_int,
)

#: Every setting, in the README's order.
SETTINGS: tuple[Setting[Any], ...] = (
    DATA_DIR,
    DATABASE_URL,
    ADMIN_TOKEN,
    SESSION_SECRET,
    TIMEZONE,
    SESSION_TTL_SECONDS,
    OPERATION_COSTS,
    HOLD_SWEEP_SECONDS,
    DATABASE_TIMEOUT_SECONDS,
    KEY_FAILURE_BUDGET,
    LOGIN_FAILURE_BUDGET,
    THROTTLE_WINDOW_SECONDS,
    CLIENT_ADDRESS_HEADER,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    HEADER_TIMEOUT_SECONDS,
    SHUTDOWN_DRAIN_SECONDS,
    LOG_FORMAT,
    ACCESS_LOG,
    CORS_ORIGINS,
    SESSION_STORE,
    SESSION_STORE_PREFIX,
    SESSION_STORE_SCHEMA,
    SESSION_STORE_TABLE,
    SESSION_USER_FIELD,
    SESSION_COOKIE_NAME,
    LOGIN_URL,
    IDEMPOTENCY_RETENTION_DAYS,
    ALLOW_ASYNC_COMMIT,
    WEBHOOK_ALLOW_PRIVATE,
    ALERT_THRESHOLDS,
    ALERT_EXPIRY_DAYS,
    WEBHOOK_POLL_SECONDS,
    WEBHOOK_BACKOFF_SECONDS,
    WEBHOOK_RETRY_SECONDS,
    WEBHOOK_DISABLE_SECONDS,
)

DEFAULT_DATABASE_TIMEOUT_SECONDS = DATABASE_TIMEOUT_SECONDS.read({})


def settings_table() -> str:
    "''The README's table of settings, in Markdown.''"
    rows = [setting.table_row() for setting in SETTINGS]
    return "\n".join(["| name | default | meaning |", "| --- | --- | --- |", *rows])


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: Secret
    admin_token: Secret | None
    session_secret: Secret | None
    timezone: ZoneInfo
    session_ttl_seconds: int
    operation_costs: Mapping[str, int]
    hold_sweep_seconds: float
    database_timeout_seconds: float
    key_failure_budget: int
    login_failure_budget: int
    throttle_window_seconds: int
    client_address_header: str | None
    max_header_bytes: int
    max_headers: int
    header_timeout_seconds: float
    shutdown_drain_seconds: float
    log_format: LogFormat
    access_log: bool
    cors_origins: frozenset[str]
    #: None: our own sessions; else the platform's store (``auth.platform_sessions``).
    session_store: Secret | None
    session_store_prefix: str
    session_store_schema: str | None
    session_store_table: str
    session_user_field: tuple[str, ...]
    session_cookie_name: str
    login_url: str | None
    idempotency_retention_days: int
    allow_async_commit: bool
    webhook_allow_private: bool
    alert_thresholds: tuple[int, ...]
    alert_expiry_days: int
    webhook_poll_seconds: float
    webhook_backoff_seconds: float
    webhook_retry_seconds: int
    webhook_disable_seconds: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = DATA_DIR.read(env)
        url = DATABASE_URL.read(env) or f"sqlite:///{data_dir / 'flamel-usage.sqlite3'}"
        session_store, login_url = SESSION_STORE.read(env), LOGIN_URL.read(env)
        if session_store is not None and login_url is None:
            # No sign-in of ours then: a signed-out visitor of the pages must go somewhere.
            raise ConfigError(
                "FLAMEL_LOGIN_URL: required with an external FLAMEL_SESSION_STORE: the"
                " platform's sign-in page, where the pages send a signed-out visitor"
            )
        return cls(
            data_dir=data_dir,
            database_url=Secret(url),
            admin_token=ADMIN_TOKEN.read(env),
            session_secret=SESSION_SECRET.read(env),
            timezone=TIMEZONE.read(env),
            session_ttl_seconds=SESSION_TTL_SECONDS.read(env),
            operation_costs=OPERATION_COSTS.read(env),
            hold_sweep_seconds=HOLD_SWEEP_SECONDS.read(env),
            database_timeout_seconds=DATABASE_TIMEOUT_SECONDS.read(env),
            key_failure_budget=KEY_FAILURE_BUDGET.read(env),
            login_failure_budget=LOGIN_FAILURE_BUDGET.read(env),
            throttle_window_seconds=THROTTLE_WINDOW_SECONDS.read(env),
            client_address_header=CLIENT_ADDRESS_HEADER.read(env),
            max_header_bytes=MAX_HEADER_BYTES.read(env),
            max_headers=MAX_HEADERS.read(env),
            header_timeout_seconds=HEADER_TIMEOUT_SECONDS.read(env),
            shutdown_drain_seconds=SHUTDOWN_DRAIN_SECONDS.read(env),
            log_format=LOG_FORMAT.read(env),
            access_log=ACCESS_LOG.read(env),
            cors_origins=CORS_ORIGINS.read(env),
            session_store=session_store,
            session_store_prefix=SESSION_STORE_PREFIX.read(env),
            session_store_schema=SESSION_STORE_SCHEMA.read(env),
            session_store_table=SESSION_STORE_TABLE.read(env),
            session_user_field=SESSION_USER_FIELD.read(env),
            session_cookie_name=SESSION_COOKIE_NAME.read(env),
            login_url=login_url,
            idempotency_retention_days=IDEMPOTENCY_RETENTION_DAYS.read(env),
            allow_async_commit=ALLOW_ASYNC_COMMIT.read(env),
            webhook_allow_private=WEBHOOK_ALLOW_PRIVATE.read(env),
            alert_thresholds=ALERT_THRESHOLDS.read(env),
            alert_expiry_days=ALERT_EXPIRY_DAYS.read(env),
            webhook_poll_seconds=WEBHOOK_POLL_SECONDS.read(env),
            webhook_backoff_seconds=WEBHOOK_BACKOFF_SECONDS.read(env),
            webhook_retry_seconds=WEBHOOK_RETRY_SECONDS.read(env),
            webhook_disable_seconds=WEBHOOK_DISABLE_SECONDS.read(env),
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


if __name__ == "__main__":
    print(settings_table())

"""``flamel-usage`` commands as an operator runs them: a real process, on both stores.

Each command is run with ``tests.processes.run_cli`` and checked on what it prints (one
value alone on stdout, or one clear line on stderr), its exit code, and what it did to
the store, read back directly. A refused command must leave every table as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shlex
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.passwords import verify_password
from flamel_usage.cli.parser import build_parser
from flamel_usage.core.periods import to_micros
from flamel_usage.db.gateway import Database
from flamel_usage.http.context import system_clock
from flamel_usage.metering import purchases
from tests.conftest import POSTGRES_URL
from tests.processes import run_cli, single_line
from tests.store import reset_database, snapshot, sql

KEY_SHAPE = re.compile(r"^flm_[A-Za-z0-9_-]{43}$")
ANN = "ann@example.com"
#: The exit code of a command that only reads, given a store missing or not migrated
#: (README and ``--help``); 2 is bad input, bad settings or a store that does not answer.
NOT_READY_EXIT = 5
#: The exit code of bad arguments or input (``--help``), a bad key name among them.
BAD_INPUT_EXIT = 2


@pytest.fixture
def clean_environ(environ: dict[str, str], database_url: str) -> dict[str, str]:
    """``environ`` on an empty store (the session's PostgreSQL database is shared)."""
    reset_database(database_url)
    return environ


def _ok(environ: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """stdout of a command that must succeed and say nothing on stderr."""
    done = run_cli(environ, *args, stdin=stdin)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
    assert done.stderr == "", done.stderr
    return done.stdout


def _printed_id(environ: dict[str, str], *args: str) -> int:
    """The id a create command prints, which must be alone on stdout."""
    out = _ok(environ, *args)
    assert re.fullmatch(r"[1-9][0-9]*\n", out), f"{args} printed {out!r}"
    return int(out)


def _one(database_url: str, statement: str, *params: object) -> tuple[object, ...]:
    rows = sql(database_url, statement, *params)
    assert len(rows) == 1, rows
    return rows[0]


def _micros(text: str) -> int:
    return to_micros(datetime.fromisoformat(text))


def test_operator_commands_do_what_they_print(
    clean_environ: dict[str, str], database_url: str
) -> None:
    env = clean_environ
    plan_id = _printed_id(
        env,
        *shlex.split("plans create Basic --credits 100 --period month --max-ttp 10 --max-edit 5"),
    )
    assert _one(
        database_url,
        "SELECT name, period_unit, max_credit, max_ttp, max_edit, billing_mode"
        " FROM plans WHERE id = ?",
        plan_id,
    ) == ("Basic", "month", 100_000, 10, 5, "prepaid")
    postpaid_id = _printed_id(
        env, *shlex.split("plans create 'Pay as you go' --credits 0.5 --period year --postpaid")
    )
    assert _one(
        database_url,
        "SELECT max_credit, max_ttp, max_edit, billing_mode FROM plans WHERE id = ?",
        postpaid_id,
    ) == (500, None, None, "postpaid")

    anchor = "2026-01-31T09:30:00+01:00"
    ann_id = _printed_id(
        env, "users", "create", "Ann@Example.com", "--plan", "Basic", "--anchor", anchor
    )
    assert _one(
        database_url,
        "SELECT u.email, u.password_hash, a.plan_id, a.anchor_at"
        " FROM users u JOIN accounts a ON a.user_id = u.id WHERE u.id = ?",
        ann_id,
    ) == (ANN, None, plan_id, _micros(anchor))

    password = "correct horse battery staple"
    bob = run_cli(
        env,
        "users",
        "create",
        "bob@example.com",
        "--plan",
        "Pay as you go",
        "--password-stdin",
        stdin=password + "\n",
    )
    assert bob.returncode == 0, bob.stderr
    assert bob.stderr == ""
    bob_id = int(single_line(bob.stdout))
    (stored_hash,) = _one(database_url, "SELECT password_hash FROM users WHERE id = ?", bob_id)
    assert isinstance(stored_hash, str)
    assert password not in stored_hash
    assert verify_password(password, stored_hash)

    key = single_line(_ok(env, "keys", "create", ANN))
    assert KEY_SHAPE.fullmatch(key), key
    digest = hashlib.sha256(key.encode()).hexdigest()
    key_id, key_user, key_expiry, revoked = _one(
        database_url,
        "SELECT id, user_id, expires_at, revoked_at FROM api_keys WHERE key_hash = ?",
        digest,
    )
    assert (key_user, key_expiry, revoked) == (ann_id, None, None)

    expires = "2031-06-30T12:00:00+02:00"
    expiring = single_line(_ok(env, "keys", "create", ANN, "--expires", expires))
    assert KEY_SHAPE.fullmatch(expiring)
    assert expiring != key
    assert _one(
        database_url,
        "SELECT user_id, expires_at FROM api_keys WHERE key_hash = ?",
        hashlib.sha256(expiring.encode()).hexdigest(),
    ) == (ann_id, _micros(expires))

    assert _ok(env, "keys", "revoke", str(key_id)) == ""
    (revoked_at,) = _one(database_url, "SELECT revoked_at FROM api_keys WHERE id = ?", key_id)
    assert isinstance(revoked_at, int)
    (others_revoked,) = _one(
        database_url, "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL"
    )
    assert others_revoked == 1

    credit_expiry = "2031-01-01T00:00:00+00:00"
    purchase_id = _printed_id(env, "credits", "buy", ANN, "12.5", "--expires", credit_expiry)
    assert _one(
        database_url,
        "SELECT user_id, amount, remaining, expires_at FROM credit_purchases WHERE id = ?",
        purchase_id,
    ) == (ann_id, 12_500, 12_500, _micros(credit_expiry))
    keyed = ("credits", "buy", ANN, "2", "--idempotency-key", "order-1")
    keyed_id = _printed_id(env, *keyed)
    assert _printed_id(env, *keyed) == keyed_id  # the retry sells nothing
    assert _one(
        database_url, "SELECT count(*) FROM credit_purchases WHERE user_id = ?", ann_id
    ) == (2,)

    clean = _ok(env, "reconcile")
    assert clean.splitlines() == ["reconcile: clean"]

    sql(database_url, "UPDATE accounts SET plan_credit = plan_credit + 1 WHERE user_id = ?", ann_id)
    tampered = run_cli(env, "reconcile")
    assert tampered.returncode == 1, tampered.stderr
    lines = tampered.stdout.splitlines()
    assert lines[-1] != "reconcile: clean"
    problems = lines[:-1]
    assert problems, tampered.stdout
    assert all(re.search(rf"\buser {ann_id}\b", line) for line in problems), problems
    assert any("plan_credit" in line for line in problems), problems
    assert not any(re.search(rf"\buser {bob_id}\b", line) for line in problems), problems


async def test_keys_create_names_the_key_in_the_admin_listing(
    clean_environ: dict[str, str], admin: httpx.AsyncClient
) -> None:
    env = clean_environ
    _printed_id(env, *shlex.split("plans create Basic --credits 1 --period month"))
    ann_id = _printed_id(env, "users", "create", ANN, "--plan", "Basic")
    named = single_line(_ok(env, "keys", "create", ANN, "--name", "  CI deploy 한  "))
    unnamed = single_line(_ok(env, "keys", "create", ANN))
    assert KEY_SHAPE.fullmatch(named), named

    response = await admin.get(f"/api/admin/users/{ann_id}/keys")
    assert response.status_code == 200, response.text
    listed = {key["prefix"]: key["name"] for key in response.json()["keys"]}
    # Trimmed, as the API stores it; the secret itself is never listed.
    assert listed == {named[:12]: "CI deploy 한", unnamed[:12]: None}
    assert named not in response.text


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("x" * 65, id="too-long"),
        pytest.param("lap\u202etop", id="right-to-left-override"),
        pytest.param("lap\u200btop", id="zero-width-space"),
        pytest.param("lap\ttop", id="tab"),
    ],
)
def test_keys_create_refuses_a_bad_name_and_creates_nothing(
    clean_environ: dict[str, str], database_url: str, name: str
) -> None:
    _seed(database_url)
    before = snapshot(database_url)
    done = run_cli(clean_environ, "keys", "create", ANN, "--name", name)
    _assert_refused(done)
    assert done.returncode == BAD_INPUT_EXIT, done.stderr
    assert single_line(done.stderr).startswith("flamel-usage: bad_request: name "), done.stderr
    assert snapshot(database_url) == before


def test_database_url_option_overrides_the_environment(
    clean_environ: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    _seed(database_url)
    before = snapshot(database_url)
    other = f"sqlite:///{tmp_path / 'other' / 'override.sqlite3'}"

    plan_id = _printed_id(
        clean_environ,
        "plans",
        "create",
        "Elsewhere",
        "--credits",
        "1",
        "--period",
        "month",
        "--database-url",
        other,
    )
    assert sql(other, "SELECT id, name FROM plans") == [(plan_id, "Elsewhere")]
    assert snapshot(database_url) == before
    assert _ok(clean_environ, "reconcile", "--database-url", other).splitlines() == [
        "reconcile: clean"
    ]


# --- Refused input ------------------------------------------------------------------------


def _seed(database_url: str) -> None:
    """Plan ``Basic``, user ``ann`` with a key and a purchase, made through the services."""

    async def run() -> None:
        db = Database.from_url(database_url)
        await db.open()
        try:
            await db.migrate()
            now = system_clock()
            async with db.transaction() as conn:
                await accounts.create_plan(
                    conn,
                    name="Basic",
                    period_unit="month",
                    max_credit=100_000,
                    max_ttp=10,
                    max_edit=None,
                    billing_mode="prepaid",
                    now=now,
                )
                user = await accounts.create_user(
                    conn,
                    email=ANN,
                    plan_name="Basic",
                    anchor=datetime(2026, 1, 31, tzinfo=UTC),
                    password_hash=None,
                    now=now,
                    zone=ZoneInfo("UTC"),
                )
                await auth.issue_key(conn, user.id, expires_at=None, now=now)
                await purchases.buy_credits(
                    conn,
                    purchases.PurchaseRequest(user.id, 5_000, None),
                    idempotency_key="seeded",
                    now=now,
                    zone=ZoneInfo("UTC"),
                )
        finally:
            await db.close()

    asyncio.run(run())


_NEW = ("users", "create", "new@example.com", "--plan", "Basic")

REFUSED = [
    pytest.param(("users", "create", "new@example.com", "--plan", "Nope"), None, id="unknown-plan"),
    pytest.param((*_NEW, "--anchor", "31/01/2026"), None, id="anchor-not-iso"),
    pytest.param((*_NEW, "--anchor", "2026-01-31T00:00:00"), None, id="anchor-no-offset"),
    pytest.param((*_NEW, "--anchor", "2026-02-30T00:00:00+00:00"), None, id="anchor-no-such-day"),
    pytest.param(("users", "create", "not-an-email", "--plan", "Basic"), None, id="bad-email"),
    pytest.param(("users", "create", ANN, "--plan", "Basic"), None, id="email-taken"),
    pytest.param(
        ("users", "create", "new\u200b@example.com", "--plan", "Basic"), None, id="email-zero-width"
    ),
    pytest.param((*_NEW, "--password-stdin"), "short\n", id="password-too-short"),
    pytest.param((*_NEW, "--password-stdin"), "\n", id="password-empty"),
    pytest.param(
        ("plans", "create", "Basic", "--credits", "5", "--period", "month"),
        None,
        id="plan-name-taken",
    ),
    pytest.param(
        ("plans", "create", "BASIC", "--credits", "5", "--period", "month"),
        None,
        id="plan-name-taken-in-other-case",
    ),
    pytest.param(
        ("plans", "create", "Other ", "--credits", "5", "--period", "month"),
        None,
        id="plan-name-trailing-space",
    ),
    pytest.param(
        ("plans", "create", "Other", "--credits", "abc", "--period", "month"),
        None,
        id="plan-credits-abc",
    ),
    pytest.param(
        ("plans", "create", "Other", "--credits", "0.0001", "--period", "month"),
        None,
        id="plan-credits-too-fine",
    ),
    pytest.param(
        ("plans", "create", "Other", "--credits", "-5", "--period", "month"),
        None,
        id="plan-credits-negative",
    ),
    pytest.param(
        ("plans", "create", "Bad/Name", "--credits", "5", "--period", "month"),
        None,
        id="plan-bad-name",
    ),
    pytest.param(
        ("plans", "create", "Other", "--credits", "5", "--period", "month", "--max-ttp", "-1"),
        None,
        id="plan-max-ttp-negative",
    ),
    pytest.param(
        (
            "plans",
            "create",
            "Other",
            "--credits",
            "5",
            "--period",
            "month",
            "--max-edit",
            str(2**63),
        ),
        None,
        id="plan-max-edit-too-large",
    ),
    pytest.param(("keys", "create", "nobody@example.com"), None, id="key-unknown-email"),
    pytest.param(("keys", "create", ANN, "--expires", "next week"), None, id="key-expiry-not-iso"),
    pytest.param(
        ("keys", "create", ANN, "--expires", "2020-01-01T00:00:00+00:00"), None, id="key-expired"
    ),
    pytest.param(("keys", "revoke", "999999"), None, id="revoke-unknown-key"),
    pytest.param(("keys", "revoke", "abc"), None, id="revoke-key-id-abc"),
    pytest.param(("credits", "buy", ANN, "abc"), None, id="amount-abc"),
    pytest.param(("credits", "buy", ANN, "0.0001"), None, id="amount-too-fine"),
    pytest.param(("credits", "buy", ANN, "-5"), None, id="amount-negative"),
    pytest.param(("credits", "buy", ANN, "0"), None, id="amount-zero"),
    pytest.param(("credits", "buy", ANN, "NaN"), None, id="amount-nan"),
    pytest.param(("credits", "buy", ANN, "1e300"), None, id="amount-too-large"),
    pytest.param(("credits", "buy", "nobody@example.com", "5"), None, id="buy-unknown-email"),
    pytest.param(
        ("credits", "buy", ANN, "5", "--expires", "2031-13-01T00:00:00+00:00"),
        None,
        id="buy-expiry-not-iso",
    ),
    pytest.param(("credits", "buy", ANN, "5", "--idempotency-key", ""), None, id="buy-key-empty"),
    pytest.param(
        ("credits", "buy", ANN, "5", "--idempotency-key", "k" * 256), None, id="buy-key-256"
    ),
    pytest.param(
        ("credits", "buy", ANN, "6", "--idempotency-key", "seeded"), None, id="buy-key-reused"
    ),
]


def _assert_refused(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode != 0, f"accepted: stdout {done.stdout!r}"
    assert done.returncode != 1, "exit 1 is reconcile's 'books differ' (or a crash)"
    assert "Traceback" not in done.stderr, done.stderr
    line = single_line(done.stderr)
    assert line.startswith("flamel-usage: "), line
    assert done.stdout == ""


@pytest.mark.parametrize(("args", "stdin"), REFUSED)
def test_refused_input_says_why_in_one_line_and_changes_nothing(
    clean_environ: dict[str, str], database_url: str, args: tuple[str, ...], stdin: str | None
) -> None:
    _seed(database_url)
    before = snapshot(database_url)
    _assert_refused(run_cli(clean_environ, *args, stdin=stdin))
    assert snapshot(database_url) == before


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param({"FLAMEL_TIMEZONE": "Mars/Olympus_Mons"}, id="unknown-zone"),
        pytest.param({"FLAMEL_DATABASE_URL": "mysql://127.0.0.1/x"}, id="unsupported-scheme"),
        pytest.param(
            {"FLAMEL_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nothing"},
            id="unreachable-postgresql",
        ),
    ],
)
def test_bad_settings_are_one_line_on_stderr(tmp_path: Path, setting: dict[str, str]) -> None:
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data"), **setting}
    _assert_refused(run_cli(environ, "reconcile"))


def test_serve_runs_one_worker_per_core_where_affinity_is_unknown_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workers = build_parser().parse_args(["serve"]).workers
    assert workers == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert build_parser().parse_args(["serve"]).workers == 3


# --- A store that is not there, or not migrated -------------------------------------------


def _refused_as_not_ready(done: subprocess.CompletedProcess[str]) -> str:
    """The one line on stderr of a command refused because its store is not ready."""
    assert done.returncode == NOT_READY_EXIT, (done.returncode, done.stdout, done.stderr)
    _assert_refused(done)
    line = single_line(done.stderr)
    assert line.startswith("flamel-usage: database_not_ready: "), line
    return line


@pytest.mark.parametrize("mistyped_url", [True, False], ids=["mistyped-url", "empty-data-dir"])
def test_reconcile_refuses_a_missing_sqlite_database_and_creates_nothing(
    tmp_path: Path, mistyped_url: bool
) -> None:
    path = tmp_path / "dta" / "flamel-usage.sqlite3"
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data")}
    if mistyped_url:
        environ["FLAMEL_DATABASE_URL"] = f"sqlite:///{path}"
    else:
        path = tmp_path / "data" / "flamel-usage.sqlite3"

    line = _refused_as_not_ready(run_cli(environ, "reconcile"))
    assert str(path) in line
    assert "migrate" in line
    assert list(tmp_path.iterdir()) == []

    # Creating it stays one command away, as does every command that writes.
    assert _ok(environ, "migrate").startswith("applied: [1, 2, 3,")
    assert _ok(environ, "migrate").strip() == "applied: nothing"
    assert _ok(environ, "reconcile").splitlines() == ["reconcile: clean"]


@pytest.fixture
def empty_postgres_url(postgres_database: str) -> Iterator[str]:
    """A PostgreSQL database that exists and has never been migrated (no table at all)."""
    name = f"flamel_unmigrated_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_database.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _sqlite_file(tmp_path: Path, make: Callable[[Path], None]) -> str:
    path = tmp_path / "store.sqlite3"
    make(path)
    return f"sqlite:///{path}"


def _other_application(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()


def _one_migration_short(path: Path) -> None:
    """A store an older version migrated: the newest migration is not applied."""

    async def migrate() -> None:
        db = Database.from_url(f"sqlite:///{path}")
        await db.open()
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(migrate())
    conn = sqlite3.connect(path)
    newest = "SELECT max(version) FROM schema_migrations"
    conn.execute(f"DELETE FROM schema_migrations WHERE version = ({newest})")
    conn.commit()
    conn.close()


def _state(url: str) -> object:
    """What a refused command must leave as it was: the file's bytes, or the tables."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).read_bytes()
    return sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")


@pytest.mark.parametrize(
    "store",
    [
        "sqlite-empty-file",
        "sqlite-other-application",
        "sqlite-one-migration-short",
        "postgresql-empty",
    ],
)
def test_reconcile_refuses_a_store_that_is_not_migrated_and_leaves_it_so(
    tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    if store == "postgresql-empty":
        url = str(request.getfixturevalue("empty_postgres_url"))
    elif store == "sqlite-empty-file":
        url = _sqlite_file(tmp_path, Path.touch)
    elif store == "sqlite-other-application":
        url = _sqlite_file(tmp_path, _other_application)
    else:
        url = _sqlite_file(tmp_path, _one_migration_short)
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data"), "FLAMEL_DATABASE_URL": url}
    before = _state(url)

    line = _refused_as_not_ready(run_cli(environ, "reconcile"))
    assert "flamel-usage migrate" in line
    assert _state(url) == before


def test_reconcile_refuses_a_postgresql_database_that_does_not_exist(
    postgres_database: str, tmp_path: Path
) -> None:
    url = postgres_database.rsplit("/", 1)[0] + "/flamel_no_such_database"
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data"), "FLAMEL_DATABASE_URL": url}
    line = _refused_as_not_ready(run_cli(environ, "reconcile"))
    assert "flamel_no_such_database" in line


def test_help_documents_the_exit_codes() -> None:
    shown = run_cli({}, "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "exit codes" in text.lower()
    assert re.search(r"\b5\b[^.;]*not migrated", text), text

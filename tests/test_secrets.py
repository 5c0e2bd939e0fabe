"""No secret is kept or written in clear: not in the database, not in any log.

The secrets: API keys (whole, and the part that is never shown again after creation),
passwords (right and wrong), session ids, the ``connect.sid`` values that carry them
(encoded and decoded, and their signatures), the admin token and the session secret.
One realistic session creates and uses all of them through the HTTP API (admin set-up,
keys used, right and wrong, charges, logins by the API and by the sign-in page, logouts,
and server errors while secrets are in hand); then every row of every table, the raw
database files (SQLite: the database and its WAL; PostgreSQL: ``pg_dump``), the
captured log records of the in-process app and the whole output of a real server
process are searched for each of them.
"""

from __future__ import annotations

import glob
import inspect
import logging
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from flamel_usage.auth import cookies
from flamel_usage.auth import credentials as auth_service
from flamel_usage.core.config import SESSION_COOKIE_NAME
from flamel_usage.db.gateway import Database
from flamel_usage.http import guards
from flamel_usage.http.pages.forms import CSRF_COOKIE, CSRF_FIELD
from tests.conftest import ADMIN_TOKEN, SESSION_SECRET
from tests.processes import WORKER_READY, server_process
from tests.store import table_rows

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SESSION_COOKIE = SESSION_COOKIE_NAME.default
#: Characters of a key stored in clear as its prefix (``flm_`` and 8 more).
SHOWN_KEY_CHARS = 12


@dataclass
class Secrets:
    """Every secret the session handled, by a label that says what it is."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, label: str, value: str) -> None:
        assert value, label
        self.values[label] = value

    def add_key(self, label: str, key: str) -> None:
        self.add(label, key)
        self.add(f"{label} (the part never shown again)", key[SHOWN_KEY_CHARS:])

    def add_cookie(self, label: str, value: str) -> None:
        """A ``connect.sid`` value: itself, decoded, its session id and its signature."""
        decoded = unquote(value)
        assert decoded.startswith("s:"), value
        session_id, _, mac = decoded.removeprefix("s:").rpartition(".")
        self.add(f"{label} cookie value", value)
        self.add(f"{label} cookie value, decoded", decoded)
        self.add(f"{label} session id", session_id)
        self.add(f"{label} cookie signature", mac)

    def found_in(self, text: str | bytes) -> list[str]:
        """The labels of the secrets that occur in ``text``."""
        if isinstance(text, bytes):
            return [label for label, value in self.values.items() if value.encode() in text]
        return [label for label, value in self.values.items() if value in text]


def _set_cookie(response: httpx.Response, name: str) -> str:
    """The value ``response`` sets for cookie ``name``."""
    for header in response.headers.get_list("set-cookie"):
        cookie_name, _, rest = header.partition("=")
        if cookie_name.strip() == name:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers}")


def _hidden_field(html: str) -> str:
    found = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


async def _rename(db: Database, table: str, new_name: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(f"ALTER TABLE {table} RENAME TO {new_name}")


async def _realistic_session(
    http: httpx.AsyncClient, db: Database, *, server_errors: bool
) -> Secrets:
    """Create and use every kind of secret through ``http``; return them all.

    Cookies are sent explicitly (``Cookie`` header) and the client's jar is emptied
    after each answer that sets one, so every request carries exactly what it says.
    With ``server_errors``, tables are renamed away for a moment so that requests
    carrying a password, a cookie and a key fail with a 5xx (an unhandled error that
    gets logged), then put back.
    """
    found = Secrets()
    found.add("admin token", ADMIN_TOKEN)
    found.add("session secret", SESSION_SECRET)

    async def call(method: str, path: str, status: int, **kwargs: object) -> httpx.Response:
        response = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
        http.cookies.clear()
        assert response.status_code == status, (method, path, response.text)
        return response

    # The operator sets up a plan, two users with passwords and their keys.
    plan = {"name": "pro", "periodUnit": "month", "maxCredit": 100, "maxTtpCount": 10}
    await call("POST", "/api/admin/plans", 201, json=plan, headers=ADMIN)
    user_ids: dict[str, int] = {}
    passwords: dict[str, str] = {}
    for name in ("alice", "bob"):
        passwords[name] = f"pw-{name}-{secrets.token_urlsafe(18)}"
        found.add(f"{name}'s password", passwords[name])
        body = {"email": f"{name}@example.com", "plan": "pro", "password": passwords[name]}
        created = await call("POST", "/api/admin/users", 201, json=body, headers=ADMIN)
        user_ids[name] = created.json()["id"]
    keys: dict[str, str] = {}
    key_ids: dict[str, int] = {}
    for label, owner in (("alice", "alice"), ("alice-2", "alice"), ("bob", "bob")):
        path = f"/api/admin/users/{user_ids[owner]}/keys"
        issued = (await call("POST", path, 201, json={}, headers=ADMIN)).json()
        keys[label], key_ids[label] = issued["key"], issued["id"]
        found.add_key(f"{label}'s API key", issued["key"])
    await call("POST", f"/api/admin/keys/{key_ids['alice-2']}/revoke", 204, headers=ADMIN)

    # The keys are used; charges are made; the operator lists the keys.
    for label in ("alice", "bob"):
        await call("GET", "/api/users/me/usage", 200, headers={"X-Api-Key": keys[label]})
    charge = {"userId": user_ids["alice"], "kind": "ttp"}
    for status in (201, 201):  # the second is a replay
        headers = {**ADMIN, "Idempotency-Key": "secrets-charge-1"}
        await call("POST", "/api/admin/charges", status, json=charge, headers=headers)
    listed = await call("GET", f"/api/admin/users/{user_ids['alice']}/keys", 200, headers=ADMIN)
    assert found.found_in(listed.text) == []

    # Logins through the API: a wrong password, then the right one; the cookie is used.
    wrong_password = f"wrong-{secrets.token_urlsafe(18)}"
    found.add("a wrong password", wrong_password)
    login = "/api/auth/login"
    await call("POST", login, 401, json={"email": "alice@example.com", "password": wrong_password})
    alice = {"email": "alice@example.com", "password": passwords["alice"]}
    first = _set_cookie(await call("POST", login, 200, json=alice), SESSION_COOKIE)
    found.add_cookie("alice's first session", first)
    await call("GET", "/api/users/me/usage", 200, headers={"Cookie": f"{SESSION_COOKIE}={first}"})
    tampered = first[:-2] + ("AA" if not first.endswith("AA") else "BB")
    await call(
        "GET", "/api/users/me/usage", 403, headers={"Cookie": f"{SESSION_COOKIE}={tampered}"}
    )

    # Logins through the sign-in page (a form post with its CSRF token), and sign-out.
    page = await call("GET", "/", 200)
    token = _set_cookie(page, CSRF_COOKIE)
    form = {CSRF_FIELD: _hidden_field(page.text), "email": "bob@example.com"}
    form["password"] = passwords["bob"]
    signed_in = await call(
        "POST", "/login", 303, data=form, headers={"Cookie": f"{CSRF_COOKIE}={token}"}
    )
    bob = _set_cookie(signed_in, SESSION_COOKIE)
    found.add_cookie("bob's page session", bob)
    bob_cookie = {"Cookie": f"{SESSION_COOKIE}={bob}"}
    usage_page = await call("GET", "/usage", 200, headers=bob_cookie)
    logout_form = {CSRF_FIELD: _hidden_field(usage_page.text)}
    await call("POST", "/logout", 303, data=logout_form, headers=bob_cookie)
    await call("GET", "/api/users/me/usage", 403, headers=bob_cookie)

    # Logout through the API, then a new login whose session stays live.
    first_cookie = {"Cookie": f"{SESSION_COOKIE}={first}"}
    await call("POST", "/api/auth/logout", 204, headers=first_cookie)
    await call("GET", "/api/users/me/usage", 403, headers=first_cookie)
    live = _set_cookie(await call("POST", login, 200, json=alice), SESSION_COOKIE)
    found.add_cookie("alice's live session", live)
    live_cookie = {"Cookie": f"{SESSION_COOKIE}={live}"}
    await call("GET", "/api/users/me/usage", 200, headers=live_cookie)

    if server_errors:
        await _rename(db, "sessions", "sessions_away")
        try:
            failed = await http.post(login, json=alice)
            assert failed.status_code >= 500, failed.text
            failed = await http.get("/api/users/me/usage", headers=live_cookie)
            assert failed.status_code >= 500, failed.text
        finally:
            await _rename(db, "sessions_away", "sessions")
        http.cookies.clear()
        await _rename(db, "api_keys", "api_keys_away")
        try:
            failed = await http.get("/api/users/me/usage", headers={"X-Api-Key": keys["alice"]})
            assert failed.status_code >= 500, failed.text
        finally:
            await _rename(db, "api_keys_away", "api_keys")
        await call("GET", "/api/users/me/usage", 200, headers=live_cookie)

    # Wrong keys last (a throttle may refuse this client's keys after a few): unknown,
    # malformed, revoked, and a wrong key sent with a valid cookie.
    unknown = "flm_" + secrets.token_urlsafe(32)
    malformed = "flm-" + secrets.token_urlsafe(20)
    found.add("an unknown key", unknown)
    found.add("a malformed key", malformed)
    for key, cookie in (
        (unknown, {}),
        (malformed, {}),
        (keys["alice-2"], {}),
        (unknown, live_cookie),
    ):
        refused = await http.get("/api/users/me/usage", headers={"X-Api-Key": key, **cookie})
        assert refused.status_code in (401, 429), refused.text
    return found


def _rows_text(rows: dict[str, list[tuple[object, ...]]]) -> str:
    return "\n".join(
        f"{table}: " + " | ".join(str(value) for value in row)
        for table, table_rows_ in rows.items()
        for row in table_rows_
    )


def _pg_dump() -> str | None:
    candidates = ["/usr/bin/pg_dump", *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))]
    return next((path for path in candidates if Path(path).exists()), shutil.which("pg_dump"))


async def test_the_database_holds_no_secret_in_clear(
    client: httpx.AsyncClient, db: Database, database_url: str
) -> None:
    found = await _realistic_session(client, db, server_errors=False)
    rows = await table_rows(db)
    # The dump is of a store that saw it all: three keys, the live session, two users.
    assert len(rows["api_keys"]) == 3
    assert len(rows["sessions"]) == 1
    assert len(rows["users"]) == 2
    assert found.found_in(_rows_text(rows)) == []

    if db.dialect == "sqlite":
        path = Path(database_url.removeprefix("sqlite:///"))
        files = [path, *path.parent.glob(path.name + "-*")]  # -wal, -shm
        assert any(f.name.endswith("-wal") for f in files), files
        for file in files:
            assert found.found_in(file.read_bytes()) == [], file.name
        return
    pg_dump = _pg_dump()
    if pg_dump is None:
        return  # the rows above are the whole database
    dumped = subprocess.run(
        [pg_dump, "--no-owner", "--dbname", database_url],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if dumped.returncode != 0 and b"version mismatch" in dumped.stderr:
        return  # a client older than the server cannot dump it: the rows above stand
    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")
    assert b"CREATE TABLE public.api_keys" in dumped.stdout
    assert found.found_in(dumped.stdout) == []


async def test_the_app_logs_no_secret(
    client: httpx.AsyncClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    found = await _realistic_session(client, db, server_errors=True)
    # The server errors were logged, tracebacks and all: the check covers that path.
    assert any(record.levelno >= logging.ERROR for record in caplog.records)
    logged = caplog.text + "\n".join(
        f"{record.args!r} {record.exc_info!r} {record.__dict__!r}" for record in caplog.records
    )
    assert found.found_in(logged) == []


async def test_a_server_process_writes_no_secret_to_its_output(
    db: Database, environ: dict[str, str]
) -> None:
    with server_process(environ, workers=1) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
            found = await _realistic_session(http, db, server_errors=True)
        assert server.stop() == 0
        output = server.output()
    assert WORKER_READY in output
    assert found.found_in(output) == []


def test_key_cookie_and_admin_token_checks_compare_in_constant_time() -> None:
    """Structural: each check that compares a secret goes through ``hmac.compare_digest``."""
    assert "hmac.compare_digest(" in inspect.getsource(auth_service.user_for_api_key)
    assert "hmac.compare_digest(" in inspect.getsource(cookies.unsign)
    assert "hmac.compare_digest(" in inspect.getsource(guards.check_admin_token)

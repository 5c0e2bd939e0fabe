"""Who may read ``GET /api/users/me/usage``: every credential case, through HTTP only.

``GET /api/users/me/usage/history`` takes the same credentials: the last section sends
it each case and expects the usage read's answer (the same error, or a 200).

Keys are issued, revoked and their users deleted through the admin API; sessions are
opened and closed through ``/api/auth/login`` and ``/logout``. Each error is compared as
the whole JSON body, so a stray ``message`` (or anything else) would be caught: the
contract's three auth reasons carry no message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from flamel_usage.auth.cookies import session_cookie_value, sign
from flamel_usage.core.config import Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import ROUTES, App
from flamel_usage.http.routing import Guard
from tests.conftest import SESSION_SECRET, FakeClock

USAGE = "/api/users/me/usage"
PASSWORD = "correct horse battery staple"
NOW_ISO = "2026-11-25T10:00:00+00:00"  # the ``clock`` fixture's start

WRONG_API_KEY = {"success": False, "code": 401, "data": "wrong_api_key"}
API_KEY_EXPIRED = {"success": False, "code": 401, "data": "api_key_expired"}
NOT_LOGGED_IN = {"success": False, "code": 403, "data": "not_logged_in"}
INVALID_CREDENTIALS = {"success": False, "code": 401, "data": "invalid_credentials"}
EXPECTED_USAGE = {
    "currentCredit": 100,
    "additionalCredit": 12.5,
    "maxCredit": 100,
    "period": "2026-11-25T10:00:00+00:00/2026-12-25T10:00:00+00:00",
    "ttpCount": 0,
    "maxTtpCount": 10,
    "editCount": 0,
    "maxEditCount": None,
    "postpaidUsageCount": None,
}


@dataclass
class Account:
    user_id: int
    email: str
    key_id: int
    key: str


async def _create_user(
    admin: httpx.AsyncClient, email: str = "ada@example.com", password: str | None = PASSWORD
) -> int:
    plans = (await admin.get("/api/admin/plans")).json()["plans"]
    if not any(plan["name"] == "pro" for plan in plans):
        response = await admin.post(
            "/api/admin/plans",
            json={"name": "pro", "periodUnit": "month", "maxCredit": 100, "maxTtpCount": 10},
        )
        assert response.status_code == 201, response.text
    body: dict[str, Any] = {"email": email, "plan": "pro"}
    if password is not None:
        body["password"] = password
    response = await admin.post("/api/admin/users", json=body)
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    response = await admin.post(f"/api/admin/users/{user_id}/credits", json={"amount": 12.5})
    assert response.status_code == 201, response.text
    return int(user_id)


async def _issue_key(
    admin: httpx.AsyncClient, user_id: int, expires_at: str | None = None
) -> tuple[int, str]:
    response = await admin.post(f"/api/admin/users/{user_id}/keys", json={"expiresAt": expires_at})
    assert response.status_code == 201, response.text
    body = response.json()
    if expires_at is None:
        assert body["expiresAt"] is None
    else:  # the same instant, reported in UTC
        assert body["expiresAt"].endswith("+00:00")
        assert datetime.fromisoformat(body["expiresAt"]) == datetime.fromisoformat(expires_at)
    return int(body["id"]), str(body["key"])


async def _expired_key(admin: httpx.AsyncClient, user_id: int) -> str:
    """A key whose expiry is now: issued live, then expired by the operator (a key cannot
    be issued already expired)."""
    key_id, key = await _issue_key(admin, user_id)
    response = await admin.patch(f"/api/admin/keys/{key_id}", json={"expiresAt": NOW_ISO})
    assert response.status_code == 204, response.text
    return key


@pytest.fixture
async def account(admin: httpx.AsyncClient) -> Account:
    user_id = await _create_user(admin)
    key_id, key = await _issue_key(admin, user_id)
    return Account(user_id, "ada@example.com", key_id, key)


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    # The tests send every cookie explicitly; the client's jar must not add any.
    client.cookies.clear()
    return response


def _session_cookie(response: httpx.Response) -> str:
    """The raw (still URL-encoded) ``connect.sid`` value a login set."""
    assert response.status_code == 200, response.text
    header = response.headers["set-cookie"]
    pair = header.split(";", 1)[0]
    name, _, value = pair.partition("=")
    assert name == "connect.sid"
    assert value
    return value


async def _read(
    client: httpx.AsyncClient, *, key: str | bytes | None = None, cookie: str | None = None
) -> httpx.Response:
    headers: dict[str, str | bytes] = {}
    if key is not None:
        headers["X-Api-Key"] = key
    if cookie is not None:
        headers["Cookie"] = cookie
    return await client.get(USAGE, headers=headers)


def _assert_error(response: httpx.Response, expected: dict[str, Any]) -> None:
    assert response.status_code == expected["code"], response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == expected


def _tamper(text: str, index: int) -> str:
    """``text`` with the character at ``index`` replaced by another of the same alphabet."""
    index %= len(text)
    old = text[index]
    new = "B" if old == "A" else "A"
    return text[:index] + new + text[index + 1 :]


# --- API keys ------------------------------------------------------------------------------


async def test_valid_key(admin: httpx.AsyncClient, account: Account) -> None:
    response = await _read(admin, key=account.key)
    assert response.status_code == 200
    assert response.json() == EXPECTED_USAGE


async def test_key_header_name_is_case_insensitive(
    admin: httpx.AsyncClient, account: Account
) -> None:
    response = await admin.get(USAGE, headers={"x-api-key": account.key})
    assert response.status_code == 200
    response = await admin.get(USAGE, headers={"X-API-KEY": account.key})
    assert response.status_code == 200


async def test_unknown_well_formed_key(admin: httpx.AsyncClient, account: Account) -> None:
    wrong = _tamper(account.key, len(account.key) - 1)
    assert len(wrong) == len(account.key)
    assert wrong.startswith("flm_")
    _assert_error(await _read(admin, key=wrong), WRONG_API_KEY)


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda key: "not-a-key", id="garbage"),
        pytest.param(lambda key: "flm_", id="prefix-only"),
        pytest.param(lambda key: key[:-1], id="one-char-short"),
        pytest.param(lambda key: key + "A", id="one-char-long"),
        pytest.param(lambda key: "FLM_" + key[4:], id="upper-case-prefix"),
        pytest.param(lambda key: "flx_" + key[4:], id="other-prefix"),
        pytest.param(lambda key: key[4:], id="no-prefix"),
        pytest.param(lambda key: key[:10] + "." + key[11:], id="bad-character"),
        pytest.param(lambda key: key + "," + key, id="two-keys-joined"),
        pytest.param(lambda key: "Bearer " + key, id="bearer-scheme"),
        pytest.param(lambda key: "flm_" + "A" * 43, id="all-A"),
    ],
)
async def test_malformed_key(admin: httpx.AsyncClient, account: Account, make_key: Any) -> None:
    _assert_error(await _read(admin, key=make_key(account.key)), WRONG_API_KEY)


async def test_revoked_key(admin: httpx.AsyncClient, account: Account) -> None:
    assert (await _read(admin, key=account.key)).status_code == 200
    response = await admin.post(f"/api/admin/keys/{account.key_id}/revoke")
    assert response.status_code == 204, response.text
    _assert_error(await _read(admin, key=account.key), WRONG_API_KEY)
    # Revoking again is harmless and does not bring the key back.
    assert (await admin.post(f"/api/admin/keys/{account.key_id}/revoke")).status_code == 204
    _assert_error(await _read(admin, key=account.key), WRONG_API_KEY)


async def test_revoking_one_key_leaves_the_others(
    admin: httpx.AsyncClient, account: Account
) -> None:
    _, other = await _issue_key(admin, account.user_id)
    assert (await admin.post(f"/api/admin/keys/{account.key_id}/revoke")).status_code == 204
    _assert_error(await _read(admin, key=account.key), WRONG_API_KEY)
    response = await _read(admin, key=other)
    assert response.status_code == 200
    assert response.json() == EXPECTED_USAGE


async def test_revoked_key_that_also_expired_is_wrong_not_expired(
    admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A revoked key says nothing about itself, not even that it expired."""
    user_id = await _create_user(admin)
    key_id, key = await _issue_key(admin, user_id, "2026-11-25T11:00:00+00:00")
    assert (await admin.post(f"/api/admin/keys/{key_id}/revoke")).status_code == 204
    clock.advance(7200)
    _assert_error(await _read(admin, key=key), WRONG_API_KEY)


async def test_key_of_deleted_user(admin: httpx.AsyncClient, account: Account) -> None:
    assert (await _read(admin, key=account.key)).status_code == 200
    response = await admin.delete(f"/api/admin/users/{account.user_id}")
    assert response.status_code == 204, response.text
    _assert_error(await _read(admin, key=account.key), WRONG_API_KEY)


async def test_expired_key_of_deleted_user_is_wrong_not_expired(
    admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    user_id = await _create_user(admin)
    key = await _expired_key(admin, user_id)
    assert (await admin.delete(f"/api/admin/users/{user_id}")).status_code == 204
    _assert_error(await _read(admin, key=key), WRONG_API_KEY)


async def test_key_expiring_exactly_now(admin: httpx.AsyncClient) -> None:
    user_id = await _create_user(admin)
    key = await _expired_key(admin, user_id)
    _assert_error(await _read(admin, key=key), API_KEY_EXPIRED)


async def test_expired_key(admin: httpx.AsyncClient, clock: FakeClock) -> None:
    user_id = await _create_user(admin)
    _, key = await _issue_key(admin, user_id, "2026-11-26T10:00:00+00:00")
    assert (await _read(admin, key=key)).status_code == 200
    clock.set(datetime(2026, 11, 27, tzinfo=UTC))
    _assert_error(await _read(admin, key=key), API_KEY_EXPIRED)


async def test_key_expiring_one_microsecond_later(
    admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    user_id = await _create_user(admin)
    _, key = await _issue_key(admin, user_id, "2026-11-25T10:00:00.000001+00:00")
    response = await _read(admin, key=key)
    assert response.status_code == 200
    assert response.json() == EXPECTED_USAGE
    clock.advance(0.000001)
    _assert_error(await _read(admin, key=key), API_KEY_EXPIRED)


async def test_expiry_in_another_offset_is_the_same_instant(
    admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    user_id = await _create_user(admin)
    _, key = await _issue_key(admin, user_id, "2026-11-25T19:00:00.000001+09:00")
    assert (await _read(admin, key=key)).status_code == 200
    clock.advance(0.000001)
    _assert_error(await _read(admin, key=key), API_KEY_EXPIRED)


async def test_patching_the_expiry_takes_effect(admin: httpx.AsyncClient, account: Account) -> None:
    response = await admin.patch(f"/api/admin/keys/{account.key_id}", json={"expiresAt": NOW_ISO})
    assert response.status_code == 204, response.text
    _assert_error(await _read(admin, key=account.key), API_KEY_EXPIRED)
    response = await admin.patch(f"/api/admin/keys/{account.key_id}", json={"expiresAt": None})
    assert response.status_code == 204, response.text
    assert (await _read(admin, key=account.key)).status_code == 200


async def test_no_credentials(admin: httpx.AsyncClient, account: Account) -> None:
    _assert_error(await _read(admin), NOT_LOGGED_IN)


async def test_no_credentials_without_any_header(
    client: httpx.AsyncClient, account: Account
) -> None:
    client.headers.pop("Authorization", None)
    _assert_error(await client.get(USAGE), NOT_LOGGED_IN)


# --- last_used_at ---------------------------------------------------------------------------


async def _last_used(admin: httpx.AsyncClient, account: Account) -> str | None:
    response = await admin.get(f"/api/admin/users/{account.user_id}/keys")
    assert response.status_code == 200, response.text
    (key,) = [key for key in response.json()["keys"] if key["id"] == account.key_id]
    assert "key" not in key  # the secret is never shown again
    assert account.key.startswith(key["prefix"])
    return key["lastUsedAt"]  # type: ignore[no-any-return]


async def test_last_used_at_is_set_by_a_successful_use(
    admin: httpx.AsyncClient, account: Account, clock: FakeClock
) -> None:
    assert await _last_used(admin, account) is None
    clock.advance(5)
    assert (await _read(admin, key=account.key)).status_code == 200
    assert await _last_used(admin, account) == "2026-11-25T10:00:05+00:00"
    clock.set(datetime(2026, 11, 26, 8, 30, tzinfo=UTC))
    assert (await _read(admin, key=account.key)).status_code == 200
    assert await _last_used(admin, account) == "2026-11-26T08:30:00+00:00"


async def test_failed_uses_do_not_set_last_used_at(
    admin: httpx.AsyncClient, account: Account
) -> None:
    response = await admin.patch(f"/api/admin/keys/{account.key_id}", json={"expiresAt": NOW_ISO})
    assert response.status_code == 204
    _assert_error(await _read(admin, key=account.key), API_KEY_EXPIRED)
    assert await _last_used(admin, account) is None
    assert (await admin.post(f"/api/admin/keys/{account.key_id}/revoke")).status_code == 204
    _assert_error(await _read(admin, key=account.key), WRONG_API_KEY)
    assert await _last_used(admin, account) is None


# --- sessions ------------------------------------------------------------------------------


async def test_valid_session_sees_the_same_numbers_as_the_key(
    admin: httpx.AsyncClient, account: Account
) -> None:
    by_key = await _read(admin, key=account.key)
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    by_session = await _read(admin, cookie=f"connect.sid={cookie}")
    assert by_session.status_code == 200, by_session.text
    assert by_session.headers["cache-control"] == "no-store"
    assert by_session.json() == by_key.json() == EXPECTED_USAGE


async def test_login_response_and_cookie_attributes(
    admin: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    response = await _login(admin, account.email, PASSWORD)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    expires = datetime(2026, 11, 25, 10, tzinfo=UTC) + timedelta(
        seconds=settings.session_ttl_seconds
    )
    assert response.json() == {"expiresAt": expires.isoformat()}
    header = response.headers["set-cookie"]
    pair, *attributes = [part.strip() for part in header.split(";")]
    assert pair.startswith("connect.sid=s%3A")
    lowered = {attribute.lower() for attribute in attributes}
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "path=/" in lowered
    assert f"max-age={settings.session_ttl_seconds}" in lowered
    assert "secure" not in lowered  # plain http: a Secure cookie would never come back
    # The value is express-session's: s:<id>.<signature>, URL-encoded.
    session_id, _, signature = unquote(pair.split("=", 1)[1]).removeprefix("s:").rpartition(".")
    assert sign(session_id, SESSION_SECRET) == f"{session_id}.{signature}"


async def test_login_behind_https_proxy_sets_a_secure_cookie(
    admin: httpx.AsyncClient, account: Account
) -> None:
    response = await admin.post(
        "/api/auth/login",
        json={"email": account.email, "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 200
    attributes = {part.strip().lower() for part in response.headers["set-cookie"].split(";")}
    assert "secure" in attributes
    assert "httponly" in attributes


async def test_login_email_is_case_and_space_insensitive(
    admin: httpx.AsyncClient, account: Account
) -> None:
    cookie = _session_cookie(await _login(admin, "  ADA@Example.COM ", PASSWORD))
    assert (await _read(admin, cookie=f"connect.sid={cookie}")).status_code == 200


async def test_session_expires_after_its_ttl(
    admin: httpx.AsyncClient, account: Account, clock: FakeClock, settings: Settings
) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    clock.now += settings.session_ttl_seconds * 1_000_000 - 1
    assert (await _read(admin, cookie=f"connect.sid={cookie}")).status_code == 200
    clock.now += 1
    _assert_error(await _read(admin, cookie=f"connect.sid={cookie}"), NOT_LOGGED_IN)
    clock.advance(3600)
    _assert_error(await _read(admin, cookie=f"connect.sid={cookie}"), NOT_LOGGED_IN)


async def test_short_session_ttl_from_settings(
    environ: dict[str, str],
    admin: httpx.AsyncClient,
    account: Account,
    clock: FakeClock,
    db: Database,
) -> None:
    settings = Settings.from_environ({**environ, "FLAMEL_SESSION_TTL_SECONDS": "60"})
    transport = httpx.ASGITransport(app=App(settings, db, clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as short:
        response = await _login(short, account.email, PASSWORD)
        assert "max-age=60" in response.headers["set-cookie"].lower()
        cookie = _session_cookie(response)
        clock.advance(59)
        assert (await _read(short, cookie=f"connect.sid={cookie}")).status_code == 200
        clock.advance(1)
        _assert_error(await _read(short, cookie=f"connect.sid={cookie}"), NOT_LOGGED_IN)


async def test_logout_then_reuse(admin: httpx.AsyncClient, account: Account) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    assert (await _read(admin, cookie=f"connect.sid={cookie}")).status_code == 200
    response = await admin.post("/api/auth/logout", headers={"Cookie": f"connect.sid={cookie}"})
    admin.cookies.clear()
    assert response.status_code == 204
    cleared = response.headers["set-cookie"].lower()
    assert cleared.startswith("connect.sid=;")
    assert "max-age=0" in cleared
    _assert_error(await _read(admin, cookie=f"connect.sid={cookie}"), NOT_LOGGED_IN)


async def test_logout_ends_only_its_own_session(admin: httpx.AsyncClient, account: Account) -> None:
    first = _session_cookie(await _login(admin, account.email, PASSWORD))
    second = _session_cookie(await _login(admin, account.email, PASSWORD))
    assert first != second
    await admin.post("/api/auth/logout", headers={"Cookie": f"connect.sid={first}"})
    admin.cookies.clear()
    _assert_error(await _read(admin, cookie=f"connect.sid={first}"), NOT_LOGGED_IN)
    assert (await _read(admin, cookie=f"connect.sid={second}")).status_code == 200


async def test_session_of_deleted_user(admin: httpx.AsyncClient, account: Account) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    assert (await admin.delete(f"/api/admin/users/{account.user_id}")).status_code == 204
    _assert_error(await _read(admin, cookie=f"connect.sid={cookie}"), NOT_LOGGED_IN)
    response = await _login(admin, account.email, PASSWORD)
    _assert_error(response, INVALID_CREDENTIALS)


def _tampered_cookies(cookie: str) -> dict[str, str]:
    decoded = unquote(cookie)
    assert decoded.startswith("s:")
    session_id, _, signature = decoded[2:].rpartition(".")

    def encode(text: str) -> str:
        return quote(text, safe="")

    return {
        "signature-char": encode(f"s:{session_id}.{_tamper(signature, 5)}"),
        "signature-last-char": encode(f"s:{session_id}.{_tamper(signature, -1)}"),
        "id-char": encode(f"s:{_tamper(session_id, 3)}.{signature}"),
        "signature-dropped": encode(f"s:{session_id}"),
        "signature-empty": encode(f"s:{session_id}."),
        "signature-padded": encode(f"s:{session_id}.{signature}="),
        "unsigned-with-signature": encode(f"{session_id}.{signature}"),
        "unsigned-bare-id": session_id,
        "other-secret": session_cookie_value(session_id, "another-secret"),
        "signed-unknown-id": session_cookie_value("no-such-session", SESSION_SECRET),
        "not-url-encoded-garbage": "%%%",
        "garbage": "garbage",
        "empty": "",
        "prefix-only": "s%3A",
    }


TAMPERED_CASES = list(_tampered_cookies(session_cookie_value("x" * 32, SESSION_SECRET)))


@pytest.mark.parametrize("case", TAMPERED_CASES)
async def test_tampered_cookie(admin: httpx.AsyncClient, account: Account, case: str) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    assert (await _read(admin, cookie=f"connect.sid={cookie}")).status_code == 200
    tampered = _tampered_cookies(cookie)[case]
    assert tampered != cookie
    _assert_error(await _read(admin, cookie=f"connect.sid={tampered}"), NOT_LOGGED_IN)


async def test_unencoded_signed_cookie_is_accepted(
    admin: httpx.AsyncClient, account: Account
) -> None:
    """``s:`` sent without URL-encoding decodes to itself, as in express-session."""
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    response = await _read(admin, cookie=f"connect.sid={unquote(cookie)}")
    assert response.status_code == 200


async def test_session_cookie_among_other_cookies(
    admin: httpx.AsyncClient, account: Account
) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    header = f"theme=dark; connect.sid={cookie}; _ga=GA1.2.3"
    assert (await _read(admin, cookie=header)).status_code == 200


async def test_session_cookie_under_another_name_is_ignored(
    admin: httpx.AsyncClient, account: Account
) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    _assert_error(await _read(admin, cookie=f"sid={cookie}"), NOT_LOGGED_IN)
    _assert_error(await _read(admin, cookie=f"Connect.sid={cookie}"), NOT_LOGGED_IN)


# --- both credentials ------------------------------------------------------------------------


async def test_wrong_key_with_valid_session_is_401(
    admin: httpx.AsyncClient, account: Account
) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    wrong = _tamper(account.key, 20)
    _assert_error(await _read(admin, key=wrong, cookie=f"connect.sid={cookie}"), WRONG_API_KEY)


@pytest.mark.parametrize("blank", ["", " ", "\t  "], ids=["empty", "space", "tab-spaces"])
async def test_a_blank_key_counts_as_absent_so_the_session_decides(
    admin: httpx.AsyncClient, account: Account, blank: str
) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    response = await _read(admin, key=blank, cookie=f"connect.sid={cookie}")
    assert response.status_code == 200, response.text
    assert response.json() == EXPECTED_USAGE
    _assert_error(await _read(admin, key=blank), NOT_LOGGED_IN)


async def test_expired_key_with_valid_session_is_expired(
    admin: httpx.AsyncClient, account: Account
) -> None:
    cookie = _session_cookie(await _login(admin, account.email, PASSWORD))
    expired = await _expired_key(admin, account.user_id)
    _assert_error(await _read(admin, key=expired, cookie=f"connect.sid={cookie}"), API_KEY_EXPIRED)


async def test_valid_key_with_garbage_cookie_is_200(
    admin: httpx.AsyncClient, account: Account
) -> None:
    response = await _read(admin, key=account.key, cookie="connect.sid=s%3Agarbage.garbage")
    assert response.status_code == 200
    assert response.json() == EXPECTED_USAGE


async def test_key_wins_over_another_users_session(
    admin: httpx.AsyncClient, account: Account
) -> None:
    """With a key and another user's session, the key's user is the one answered for."""
    other_id = await _create_user(admin, "bob@example.com")
    await admin.post(f"/api/admin/users/{other_id}/credits", json={"amount": 1})
    cookie = _session_cookie(await _login(admin, "bob@example.com", PASSWORD))
    by_session = await _read(admin, cookie=f"connect.sid={cookie}")
    assert by_session.json()["additionalCredit"] == 13.5
    response = await _read(admin, key=account.key, cookie=f"connect.sid={cookie}")
    assert response.json() == EXPECTED_USAGE


# --- login failures --------------------------------------------------------------------------


async def test_wrong_password(admin: httpx.AsyncClient, account: Account) -> None:
    response = await _login(admin, account.email, PASSWORD + "!")
    _assert_error(response, INVALID_CREDENTIALS)
    assert "set-cookie" not in response.headers


async def test_unknown_email(admin: httpx.AsyncClient, account: Account) -> None:
    response = await _login(admin, "nobody@example.com", PASSWORD)
    _assert_error(response, INVALID_CREDENTIALS)
    assert "set-cookie" not in response.headers


async def test_malformed_email_is_invalid_credentials(
    admin: httpx.AsyncClient, account: Account
) -> None:
    _assert_error(await _login(admin, "not an email", PASSWORD), INVALID_CREDENTIALS)


async def test_user_without_password_cannot_log_in(admin: httpx.AsyncClient) -> None:
    await _create_user(admin, "keyonly@example.com", password=None)
    _assert_error(await _login(admin, "keyonly@example.com", ""), INVALID_CREDENTIALS)
    _assert_error(await _login(admin, "keyonly@example.com", PASSWORD), INVALID_CREDENTIALS)


async def test_failed_logins_open_no_session(
    admin: httpx.AsyncClient, account: Account, db: Database
) -> None:
    await _login(admin, account.email, "wrong password")
    await _login(admin, "nobody@example.com", PASSWORD)
    async with db.read() as conn:
        assert await conn.fetchval("SELECT COUNT(*) FROM sessions") == 0


# --- the history read: the same credentials --------------------------------------------------

HISTORY = "/api/users/me/usage/history"


async def _both(
    client: httpx.AsyncClient, *, key: str | None = None, cookie: str | None = None
) -> tuple[httpx.Response, httpx.Response]:
    headers: dict[str, str] = {}
    if key is not None:
        headers["X-Api-Key"] = key
    if cookie is not None:
        headers["Cookie"] = cookie
    return await client.get(USAGE, headers=headers), await client.get(HISTORY, headers=headers)


def _assert_same_answer(usage: httpx.Response, history: httpx.Response) -> None:
    assert history.status_code == usage.status_code, history.text
    if usage.status_code == 200:
        assert history.json()["buckets"]
    else:
        _assert_error(history, usage.json())


@pytest.mark.parametrize(
    "case",
    [
        "valid-key",
        "unknown-key",
        "malformed-key",
        "revoked-key",
        "expired-key",
        "deleted-user-key",
        "nothing",
        "session",
        "tampered-session",
        "logged-out-session",
        "blank-key-and-session",
        "wrong-key-and-session",
        "key-and-garbage-cookie",
    ],
)
async def test_history_takes_the_usage_reads_credentials(
    admin: httpx.AsyncClient, account: Account, clock: FakeClock, case: str
) -> None:
    session = _session_cookie(await _login(admin, account.email, PASSWORD))
    cookie = f"connect.sid={session}"
    sends: dict[str, Any] = {
        "valid-key": {"key": account.key},
        "unknown-key": {"key": "flm_" + "A" * 43},
        "malformed-key": {"key": "not a key"},
        "nothing": {},
        "session": {"cookie": cookie},
        "tampered-session": {"cookie": f"connect.sid={_tamper(session, -1)}"},
        "logged-out-session": {"cookie": cookie},
        "blank-key-and-session": {"key": " ", "cookie": cookie},
        "wrong-key-and-session": {"key": "flm_" + "B" * 43, "cookie": cookie},
        "key-and-garbage-cookie": {"key": account.key, "cookie": "connect.sid=%%%"},
    }
    if case == "revoked-key":
        response = await admin.post(f"/api/admin/keys/{account.key_id}/revoke")
        assert response.status_code == 204
        sends[case] = {"key": account.key}
    elif case == "expired-key":
        _, key = await _issue_key(admin, account.user_id, "2026-11-26T10:00:00+00:00")
        clock.set(datetime(2026, 11, 27, tzinfo=UTC))
        sends[case] = {"key": key}
    elif case == "deleted-user-key":
        assert (await admin.delete(f"/api/admin/users/{account.user_id}")).status_code == 204
        sends[case] = {"key": account.key}
    elif case == "logged-out-session":
        await admin.post("/api/auth/logout", headers={"Cookie": cookie})
    usage, history = await _both(admin, **sends[case])
    _assert_same_answer(usage, history)


# --- self-service keys: the session only ------------------------------------------------------

SESSION_REQUIRED = {"success": False, "code": 403, "data": "session_required"}
#: Every session-only route of the app's table: the self-service keys.
MY_KEYS_ROUTES = [(route.method, route.path) for route in ROUTES if route.guard is Guard.SESSION]


@pytest.mark.parametrize(("method", "path"), MY_KEYS_ROUTES)
async def test_my_keys_take_the_session_and_never_a_key(
    admin: httpx.AsyncClient, account: Account, method: str, path: str
) -> None:
    """A valid, wrong, revoked or expired key is refused with session_required, with or
    without a session beside it; no credential is not_logged_in; the session alone works."""
    cookie = f"connect.sid={_session_cookie(await _login(admin, account.email, PASSWORD))}"
    url = path.replace("{keyId}", str(account.key_id))
    expired = await _expired_key(admin, account.user_id)
    for key in (account.key, _tamper(account.key, 20), expired, "garbage"):
        for with_cookie in (True, False):
            headers = {"X-Api-Key": key, **({"Cookie": cookie} if with_cookie else {})}
            response = await admin.request(method, url, json={}, headers=headers)
            _assert_error(response, SESSION_REQUIRED)
    _assert_error(await admin.request(method, url, json={}), NOT_LOGGED_IN)
    response = await admin.request(method, url, json={}, headers={"Cookie": cookie})
    assert response.status_code in (200, 201, 204), response.text

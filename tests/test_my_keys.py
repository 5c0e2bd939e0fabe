"""Self-service API keys through HTTP: ``/api/users/me/keys`` with the session cookie,
and the ``/keys`` page's forms."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from flamel_usage.auth.credentials import MAX_LIVE_KEYS
from tests.conftest import FakeClock
from tests.factories import Factory

KEYS = "/api/users/me/keys"
USAGE = "/api/users/me/usage"
PASSWORD = "correct horse battery staple"
NOW = "2026-11-25T10:00:00+00:00"  # the clock fixture's start


async def _sign_in(client: httpx.AsyncClient, factory: Factory, email: str) -> str:
    """A user with a password, signed in: the ``Cookie`` header of their session."""
    plan = await factory.plan(name=f"plan-{email.split('@')[0]}", credits=100)
    await factory.user(plan, password=PASSWORD, email=email)
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return "connect.sid=" + response.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]


@pytest.fixture
async def ada(client: httpx.AsyncClient, factory: Factory) -> str:
    return await _sign_in(client, factory, "ada@example.com")


def _error(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) <= {"success", "code", "data", "message"}
    assert (body["success"], body["code"], body["data"]) == (False, status, reason)


async def _create(client: httpx.AsyncClient, cookie: str, **body: Any) -> httpx.Response:
    return await client.post(KEYS, json=body, headers={"Cookie": cookie})


async def test_create_list_use_revoke(client: httpx.AsyncClient, ada: str) -> None:
    response = await _create(client, ada, name=" laptop ", expiresAt="2027-01-01T00:00:00Z")
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    key = created["key"]
    assert created["name"] == "laptop"
    assert created["expiresAt"] == "2027-01-01T00:00:00+00:00"
    assert (await client.get(USAGE, headers={"X-Api-Key": key})).status_code == 200

    listed = await client.get(KEYS, headers={"Cookie": ada})
    assert listed.status_code == 200, listed.text
    assert key not in listed.text  # never the key again
    assert listed.json() == {
        "keys": [
            {
                "id": created["id"],
                "prefix": key[:12],
                "name": "laptop",
                "state": "active",
                "createdAt": NOW,
                "expiresAt": "2027-01-01T00:00:00+00:00",
                "revokedAt": None,
                "lastUsedAt": NOW,
            }
        ]
    }

    revoked = await client.delete(f"{KEYS}/{created['id']}", headers={"Cookie": ada})
    assert revoked.status_code == 204, revoked.text
    _error(await client.get(USAGE, headers={"X-Api-Key": key}), 401, "wrong_api_key")
    # Revoking again is the same answer and keeps the first revocation.
    again = await client.delete(f"{KEYS}/{created['id']}", headers={"Cookie": ada})
    assert again.status_code == 204
    [listed_key] = (await client.get(KEYS, headers={"Cookie": ada})).json()["keys"]
    assert (listed_key["state"], listed_key["revokedAt"]) == ("revoked", NOW)


async def test_expired_keys_are_listed_as_expired(
    client: httpx.AsyncClient, ada: str, clock: FakeClock
) -> None:
    response = await _create(client, ada, expiresAt="2026-11-25T11:00:00Z")
    assert response.status_code == 201, response.text
    clock.advance(3600)
    [listed] = (await client.get(KEYS, headers={"Cookie": ada})).json()["keys"]
    assert listed["state"] == "expired"


async def test_an_expiry_not_in_the_future_is_refused(client: httpx.AsyncClient, ada: str) -> None:
    for past in (NOW, "2020-01-01T00:00:00Z"):
        _error(await _create(client, ada, expiresAt=past), 400, "bad_request")
    assert (await client.get(KEYS, headers={"Cookie": ada})).json() == {"keys": []}


async def test_at_most_20_live_keys(client: httpx.AsyncClient, ada: str, clock: FakeClock) -> None:
    created = [(await _create(client, ada)).json() for _ in range(MAX_LIVE_KEYS - 1)]
    expiring = await _create(client, ada, expiresAt="2026-11-25T10:00:01Z")
    assert expiring.status_code == 201
    _error(await _create(client, ada), 409, "too_many_keys")
    # A revoked key and an expired key no longer count.
    await client.delete(f"{KEYS}/{created[0]['id']}", headers={"Cookie": ada})
    assert (await _create(client, ada)).status_code == 201
    _error(await _create(client, ada), 409, "too_many_keys")
    clock.advance(1)
    assert (await _create(client, ada)).status_code == 201
    listed = (await client.get(KEYS, headers={"Cookie": ada})).json()["keys"]
    assert len(listed) == MAX_LIVE_KEYS + 2


async def test_another_users_key_is_not_found_as_an_unknown_one(
    client: httpx.AsyncClient, factory: Factory, ada: str
) -> None:
    bob = await _sign_in(client, factory, "bob@example.com")
    bobs = (await _create(client, bob, name="bob's")).json()
    for key_id in (bobs["id"], 999_999):
        response = await client.delete(f"{KEYS}/{key_id}", headers={"Cookie": ada})
        assert response.json() == {
            "success": False,
            "code": 404,
            "data": "key_not_found",
            "message": "no such key",
        }
    assert (await client.get(USAGE, headers={"X-Api-Key": bobs["key"]})).status_code == 200
    assert (await client.get(KEYS, headers={"Cookie": ada})).json() == {"keys": []}


@pytest.mark.parametrize(
    ("method", "path"), [("GET", KEYS), ("POST", KEYS), ("DELETE", KEYS + "/1")]
)
async def test_a_key_cannot_manage_keys(
    client: httpx.AsyncClient, factory: Factory, ada: str, method: str, path: str
) -> None:
    """With X-Api-Key, valid or not, and with or without a session: session_required."""
    own = (await _create(client, ada)).json()["key"]
    for key in (own, "flm_" + "A" * 43, "garbage"):
        for cookie in (ada, None):
            headers = {"X-Api-Key": key, **({"Cookie": cookie} if cookie else {})}
            response = await client.request(method, path, json={}, headers=headers)
            _error(response, 403, "session_required")
    listed = (await client.get(KEYS, headers={"Cookie": ada})).json()["keys"]
    assert [key["state"] for key in listed] == ["active"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", KEYS), ("POST", KEYS), ("DELETE", KEYS + "/1")]
)
async def test_without_a_session_not_logged_in(
    client: httpx.AsyncClient, ada: str, method: str, path: str
) -> None:
    for cookie in (None, "connect.sid=s%3Agarbage.garbage", " "):
        headers = {"Cookie": cookie} if cookie else {}
        response = await client.request(method, path, json={}, headers=headers)
        _error(response, 403, "not_logged_in")
    # a blank key is as good as none: the session decides
    response = await client.get(KEYS, headers={"Cookie": ada, "X-Api-Key": " "})
    assert response.status_code == 200


async def test_writes_from_another_origin_are_refused(client: httpx.AsyncClient, ada: str) -> None:
    key_id = (await _create(client, ada)).json()["id"]
    evil = {"Cookie": ada, "Origin": "https://evil.example"}
    _error(await client.post(KEYS, json={}, headers=evil), 403, "origin_not_allowed")
    _error(await client.delete(f"{KEYS}/{key_id}", headers=evil), 403, "origin_not_allowed")
    same = {"Cookie": ada, "Origin": "http://testserver"}
    assert (await client.post(KEYS, json={}, headers=same)).status_code == 201
    listed = (await client.get(KEYS, headers={"Cookie": ada})).json()["keys"]
    assert [key["state"] for key in listed] == ["active", "active"]


async def test_a_form_post_cannot_create_a_key(client: httpx.AsyncClient, ada: str) -> None:
    """What a cross-site HTML form can send (urlencoded) is refused: 415."""
    response = await client.post(
        KEYS,
        content=b"name=x",
        headers={"Cookie": ada, "Content-Type": "application/x-www-form-urlencoded"},
    )
    _error(response, 415, "unsupported_media_type")
    assert (await client.get(KEYS, headers={"Cookie": ada})).json() == {"keys": []}


# --- the /keys page ----------------------------------------------------------------------


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found is not None
    return found.group(1)


async def _form(client: httpx.AsyncClient, path: str, cookie: str, **fields: str) -> httpx.Response:
    response = await client.post(path, data=fields, headers={"Cookie": cookie})
    client.cookies.clear()
    return response


async def test_keys_page_create_shows_the_key_once_then_revoke(
    client: httpx.AsyncClient, ada: str
) -> None:
    page = await client.get("/keys", headers={"Cookie": ada})
    assert page.status_code == 200
    assert 'href="/keys"' in page.text
    assert 'href="/usage"' in page.text
    csrf = _csrf(page.text)
    created = await _form(client, "/keys", ada, csrf=csrf, name="CI", expires="2030-01-31")
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    key = re.search(r'<code id="new-key">(flm_[A-Za-z0-9_-]{43})</code>', created.text)
    assert key is not None
    assert "will not be shown again" in created.text
    assert (await client.get(USAGE, headers={"X-Api-Key": key.group(1)})).status_code == 200
    [listed] = (await client.get(KEYS, headers={"Cookie": ada})).json()["keys"]
    assert listed["name"] == "CI"
    assert listed["expiresAt"] == "2030-02-01T00:00:00+00:00"  # the end of that day (UTC)

    again = await client.get("/keys", headers={"Cookie": ada})
    assert key.group(1) not in again.text
    confirm = await client.get(f"/keys/{listed['id']}/revoke", headers={"Cookie": ada})
    assert confirm.status_code == 200
    assert "Revoke this key?" in confirm.text
    done = await _form(client, f"/keys/{listed['id']}/revoke", ada, csrf=_csrf(confirm.text))
    assert (done.status_code, done.headers["location"]) == (303, "/keys")
    _error(await client.get(USAGE, headers={"X-Api-Key": key.group(1)}), 401, "wrong_api_key")


async def test_keys_page_forms_need_the_token_and_our_origin(
    client: httpx.AsyncClient, ada: str
) -> None:
    csrf = _csrf((await client.get("/keys", headers={"Cookie": ada})).text)
    assert (await _form(client, "/keys", ada, name="x")).status_code == 403
    assert (await _form(client, "/keys", ada, csrf="0" * 64, name="x")).status_code == 403
    response = await client.post(
        "/keys", data={"csrf": csrf}, headers={"Cookie": ada, "Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert (await client.get(KEYS, headers={"Cookie": ada})).json() == {"keys": []}


@pytest.mark.parametrize(
    ("fields", "status", "text"),
    [
        ({"name": "a\u202eb"}, 400, "The name must be 1 to 64 characters"),
        ({"name": "x" * 65}, 400, "The name must be 1 to 64 characters"),
        ({"expires": "2020-01-01"}, 400, "The expiry must be a date from today on."),
        ({"expires": "soon"}, 400, "The expiry must be a date from today on."),
    ],
)
async def test_keys_page_bad_input_is_explained(
    client: httpx.AsyncClient, ada: str, fields: dict[str, str], status: int, text: str
) -> None:
    csrf = _csrf((await client.get("/keys", headers={"Cookie": ada})).text)
    response = await _form(client, "/keys", ada, csrf=csrf, **fields)
    assert response.status_code == status
    assert text in response.text
    assert 'aria-invalid="true"' in response.text
    assert (await client.get(KEYS, headers={"Cookie": ada})).json() == {"keys": []}


async def test_keys_page_in_korean_and_signed_out(client: httpx.AsyncClient, ada: str) -> None:
    page = await client.get("/keys?lang=ko", headers={"Cookie": ada})
    assert '<html lang="ko">' in page.text
    assert "키 만들기" in page.text
    signed_out = await client.get("/keys")
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/")

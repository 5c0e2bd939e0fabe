"""The operator API under /api/admin/, through HTTP (plans, users, keys, credit, reconcile)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from flamel_usage.db.gateway import Database
from tests.conftest import FakeClock

NOW = "2026-11-25T10:00:00+00:00"  # the clock fixture's start


def error(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == status
    assert body["data"] == reason
    assert set(body) <= {"success", "code", "data", "message"}


async def make_plan(admin: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Pro", "periodUnit": "month", "maxCredit": 100, **fields}
    response = await admin.post("/api/admin/plans", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def make_user(admin: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"email": "alice@example.com", "plan": "Pro", **fields}
    response = await admin.post("/api/admin/users", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def make_key(admin: httpx.AsyncClient, user_id: int, **fields: Any) -> dict[str, Any]:
    response = await admin.post(f"/api/admin/users/{user_id}/keys", json=fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def my_usage(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.get("/api/users/me/usage", headers={"X-Api-Key": key})


# --- plans ---------------------------------------------------------------------------


async def test_create_plan_with_every_field(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/api/admin/plans",
        json={
            "name": "Enterprise Yearly",
            "periodUnit": "year",
            "maxCredit": 12.5,
            "maxTtpCount": 30,
            "maxEditCount": 0,
            "billingMode": "postpaid",
        },
    )
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "id": 1,
        "name": "Enterprise Yearly",
        "periodUnit": "year",
        "maxCredit": 12.5,
        "maxTtpCount": 30,
        "maxEditCount": 0,
        "billingMode": "postpaid",
    }


async def test_create_plan_defaults(admin: httpx.AsyncClient) -> None:
    created = await make_plan(admin, name="Basic", maxCredit=0)
    assert created == {
        "id": created["id"],
        "name": "Basic",
        "periodUnit": "month",
        "maxCredit": 0,
        "maxTtpCount": None,
        "maxEditCount": None,
        "billingMode": "prepaid",
    }
    assert isinstance(created["id"], int)


async def test_duplicate_plan_is_a_conflict(admin: httpx.AsyncClient) -> None:
    await make_plan(admin)
    response = await admin.post(
        "/api/admin/plans", json={"name": "Pro", "periodUnit": "year", "maxCredit": 5}
    )
    error(response, 409, "plan_exists")
    listed = (await admin.get("/api/admin/plans")).json()["plans"]
    assert [plan["periodUnit"] for plan in listed] == ["month"]


async def test_invalid_plans_are_bad_requests(admin: httpx.AsyncClient) -> None:
    for body in (
        {"name": "X", "periodUnit": "week", "maxCredit": 1},
        {"name": "X", "periodUnit": "month", "maxCredit": -1},
        {"name": "X", "periodUnit": "month", "maxCredit": 1, "billingMode": "credit"},
        {"name": "X", "periodUnit": "month", "maxCredit": 1, "maxTtpCount": -1},
        {"name": "X", "periodUnit": "month", "maxCredit": 1, "maxTtpCunt": 3},
        {"periodUnit": "month", "maxCredit": 1},
    ):
        error(await admin.post("/api/admin/plans", json=body), 400, "bad_request")
    assert (await admin.get("/api/admin/plans")).json() == {"plans": []}


async def test_list_plans_in_creation_order(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/api/admin/plans")).json() == {"plans": []}
    pro = await make_plan(admin)
    team = await make_plan(
        admin, name="Team", periodUnit="year", maxCredit=1000.5, maxTtpCount=5, maxEditCount=7
    )
    response = await admin.get("/api/admin/plans")
    assert response.status_code == 200
    assert response.json() == {"plans": [pro, team]}


async def test_admin_calls_need_the_token(client: httpx.AsyncClient) -> None:
    error(await client.get("/api/admin/plans"), 401, "admin_unauthorized")
    response = await client.get("/api/admin/plans", headers={"Authorization": "Bearer nope"})
    error(response, 401, "admin_unauthorized")
    response = await client.post(
        "/api/admin/plans", json={"name": "Pro", "periodUnit": "month", "maxCredit": 1}
    )
    error(response, 401, "admin_unauthorized")


# --- users ---------------------------------------------------------------------------


async def test_create_user_without_anchor_or_password(admin: httpx.AsyncClient) -> None:
    await make_plan(admin)
    response = await admin.post(
        "/api/admin/users", json={"email": "  Alice@Example.COM ", "plan": "Pro"}
    )
    assert response.status_code == 201
    created = response.json()
    assert created == {
        "id": created["id"],
        "email": "alice@example.com",
        "plan": "Pro",
        "anchor": NOW,
        "externalId": None,
    }
    # No password: nobody can log in as this user.
    login = await admin.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": "whatever-123"}
    )
    error(login, 401, "invalid_credentials")


async def test_create_user_with_anchor_and_password(
    admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    await make_plan(admin)
    clock.set(datetime(2028, 2, 10, tzinfo=UTC))
    created = await make_user(
        admin,
        email="Bob@Example.com",
        anchor="2028-01-31T09:00:00.750+09:00",
        password="correct horse",
    )
    assert created["email"] == "bob@example.com"
    assert created["anchor"] == "2028-01-31T00:00:00+00:00"  # UTC, whole seconds

    usage = (await admin.get(f"/api/admin/users/{created['id']}/usage")).json()
    assert usage["period"] == "2028-01-31T00:00:00+00:00/2028-02-29T00:00:00+00:00"
    login = await admin.post(
        "/api/auth/login", json={"email": "BOB@example.com", "password": "correct horse"}
    )
    assert login.status_code == 200, login.text
    assert "connect.sid=" in login.headers["set-cookie"]


async def test_duplicate_user_is_a_conflict(admin: httpx.AsyncClient) -> None:
    await make_plan(admin)
    await make_user(admin)
    response = await admin.post(
        "/api/admin/users", json={"email": "ALICE@example.com", "plan": "Pro"}
    )
    error(response, 409, "user_exists")


async def test_user_on_an_unknown_plan_is_not_found(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/api/admin/users", json={"email": "alice@example.com", "plan": "Nope"}
    )
    error(response, 404, "plan_not_found")


async def test_invalid_users_are_bad_requests(admin: httpx.AsyncClient) -> None:
    await make_plan(admin)
    for body in (
        {"email": "not-an-address", "plan": "Pro"},
        {"email": "a@example.com", "plan": "Pro", "anchor": "2028-01-31T00:00:00"},
        {"email": "a@example.com", "plan": "Pro", "anchor": "yesterday"},
        {"email": "a@example.com", "plan": "Pro", "password": "short"},
        {"email": "a@example.com"},
    ):
        error(await admin.post("/api/admin/users", json=body), 400, "bad_request")


async def test_admin_usage_of_a_new_user(admin: httpx.AsyncClient) -> None:
    await make_plan(admin, maxTtpCount=10, billingMode="postpaid")
    user = await make_user(admin, anchor="2026-11-01T00:00:00+00:00")
    response = await admin.get(f"/api/admin/users/{user['id']}/usage")
    assert response.status_code == 200
    assert response.json() == {
        "currentCredit": 100,
        "additionalCredit": 0,
        "maxCredit": 100,
        "period": "2026-11-01T00:00:00+00:00/2026-12-01T00:00:00+00:00",
        "ttpCount": 0,
        "maxTtpCount": 10,
        "editCount": 0,
        "maxEditCount": None,
        "postpaidUsageCount": 0,
    }
    error(await admin.get("/api/admin/users/999/usage"), 404, "user_not_found")


# --- keys ----------------------------------------------------------------------------


async def test_create_key_is_shown_once(
    admin: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    created = await make_key(admin, user["id"])
    key = created["key"]
    assert created == {
        "id": created["id"],
        "userId": user["id"],
        "key": key,
        "prefix": key[:12],
        "name": None,
        "createdAt": NOW,
        "expiresAt": None,
    }
    assert key.startswith("flm_")
    assert created["prefix"].startswith("flm_")
    assert len(key) > len(created["prefix"])

    response = await admin.get(f"/api/admin/users/{user['id']}/keys")
    assert response.status_code == 200
    assert key not in response.text
    assert response.json() == {
        "keys": [
            {
                "id": created["id"],
                "prefix": created["prefix"],
                "name": None,
                "state": "active",
                "createdAt": NOW,
                "expiresAt": None,
                "revokedAt": None,
                "lastUsedAt": None,
            }
        ]
    }

    assert (await my_usage(client, key)).status_code == 200
    [listed] = (await admin.get(f"/api/admin/users/{user['id']}/keys")).json()["keys"]
    assert listed["lastUsedAt"] == NOW
    assert key not in str(listed)


async def test_key_names_set_listed_changed_and_removed(admin: httpx.AsyncClient) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    created = await make_key(admin, user["id"], name="  CI pipeline ")
    assert created["name"] == "CI pipeline"  # trimmed
    listed_url = f"/api/admin/users/{user['id']}/keys"
    [listed] = (await admin.get(listed_url)).json()["keys"]
    assert listed["name"] == "CI pipeline"

    patched = await admin.patch(f"/api/admin/keys/{created['id']}", json={"name": "버킷 동기화"})
    assert patched.status_code == 204, patched.text
    [listed] = (await admin.get(listed_url)).json()["keys"]
    assert (listed["name"], listed["expiresAt"]) == ("버킷 동기화", None)  # expiry untouched

    patched = await admin.patch(f"/api/admin/keys/{created['id']}", json={"name": None})
    assert patched.status_code == 204, patched.text
    [listed] = (await admin.get(listed_url)).json()["keys"]
    assert listed["name"] is None


async def test_bad_key_names_are_refused_and_change_nothing(admin: httpx.AsyncClient) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    created = await make_key(admin, user["id"], name="kept")
    for bad in ("", "   ", "x" * 65, "a\u200bb", "evil\u202etxt.exe", "tab\there", 5):
        response = await admin.post(f"/api/admin/users/{user['id']}/keys", json={"name": bad})
        error(response, 400, "bad_request")
        response = await admin.patch(f"/api/admin/keys/{created['id']}", json={"name": bad})
        error(response, 400, "bad_request")
    listed = (await admin.get(f"/api/admin/users/{user['id']}/keys")).json()["keys"]
    assert [key["name"] for key in listed] == ["kept"]
    assert (await make_key(admin, user["id"], name="x" * 64))["name"] == "x" * 64


async def test_the_operator_is_not_held_to_the_live_key_limit(admin: httpx.AsyncClient) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    for _ in range(21):
        await make_key(admin, user["id"])


async def test_keys_are_distinct(admin: httpx.AsyncClient) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    first = await make_key(admin, user["id"])
    second = await make_key(admin, user["id"])
    assert first["key"] != second["key"]
    assert first["id"] != second["id"]
    listed = (await admin.get(f"/api/admin/users/{user['id']}/keys")).json()["keys"]
    assert [key["id"] for key in listed] == [first["id"], second["id"]]


async def test_key_with_expiry(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    created = await make_key(admin, user["id"], expiresAt="2026-11-26T00:00:00+09:00")
    assert created["expiresAt"] == "2026-11-25T15:00:00+00:00"
    [listed] = (await admin.get(f"/api/admin/users/{user['id']}/keys")).json()["keys"]
    assert listed["expiresAt"] == "2026-11-25T15:00:00+00:00"

    clock.set(datetime(2026, 11, 25, 14, 59, 59, 999_999, tzinfo=UTC))
    assert (await my_usage(client, created["key"])).status_code == 200
    clock.set(datetime(2026, 11, 25, 15, tzinfo=UTC))
    error(await my_usage(client, created["key"]), 401, "api_key_expired")


async def test_a_key_cannot_be_created_already_expired(
    admin: httpx.AsyncClient, db: Database
) -> None:
    """As for purchased credit: an expiry at or before now would make a key that never works."""
    await make_plan(admin)
    user = await make_user(admin)
    for expiry in (NOW, "2026-11-25T09:59:59+00:00", "2020-01-01T00:00:00+00:00"):
        response = await admin.post(
            f"/api/admin/users/{user['id']}/keys", json={"expiresAt": expiry}
        )
        error(response, 400, "bad_request")
        assert "expiresAt" in response.json()["message"]
    async with db.read() as conn:
        assert await conn.fetchval("SELECT COUNT(*) FROM api_keys") == 0
    await make_key(admin, user["id"], expiresAt="2026-11-25T10:00:01+00:00")


async def test_key_for_an_unknown_user_is_not_found(admin: httpx.AsyncClient) -> None:
    error(await admin.post("/api/admin/users/999/keys", json={}), 404, "user_not_found")
    error(await admin.get("/api/admin/users/999/keys"), 404, "user_not_found")


async def test_patch_key_expiry_sets_and_clears_it(
    admin: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    created = await make_key(admin, user["id"])
    key, key_id = created["key"], created["id"]
    assert (await my_usage(client, key)).status_code == 200

    response = await admin.patch(f"/api/admin/keys/{key_id}", json={"expiresAt": NOW})
    assert response.status_code == 204
    assert response.content == b""
    error(await my_usage(client, key), 401, "api_key_expired")
    [listed] = (await admin.get(f"/api/admin/users/{user['id']}/keys")).json()["keys"]
    assert listed["expiresAt"] == NOW

    response = await admin.patch(f"/api/admin/keys/{key_id}", json={"expiresAt": None})
    assert response.status_code == 204
    assert (await my_usage(client, key)).status_code == 200
    [listed] = (await admin.get(f"/api/admin/users/{user['id']}/keys")).json()["keys"]
    assert listed["expiresAt"] is None

    later = "2027-01-01T00:00:00+00:00"
    response = await admin.patch(f"/api/admin/keys/{key_id}", json={"expiresAt": later})
    assert response.status_code == 204
    assert (await my_usage(client, key)).status_code == 200

    error(await admin.patch(f"/api/admin/keys/{key_id}", json={}), 400, "bad_request")
    error(await admin.patch("/api/admin/keys/999", json={"expiresAt": None}), 404, "key_not_found")


async def test_revoke_key(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    revoked = await make_key(admin, user["id"])
    kept = await make_key(admin, user["id"])

    clock.advance(30)
    response = await admin.post(f"/api/admin/keys/{revoked['id']}/revoke")
    assert response.status_code == 204
    assert response.content == b""
    error(await my_usage(client, revoked["key"]), 401, "wrong_api_key")
    assert (await my_usage(client, kept["key"])).status_code == 200

    listed = (await admin.get(f"/api/admin/users/{user['id']}/keys")).json()["keys"]
    assert [key["revokedAt"] for key in listed] == ["2026-11-25T10:00:30+00:00", None]

    clock.advance(30)  # revoking again keeps the first revocation time
    assert (await admin.post(f"/api/admin/keys/{revoked['id']}/revoke")).status_code == 204
    listed = (await admin.get(f"/api/admin/users/{user['id']}/keys")).json()["keys"]
    assert listed[0]["revokedAt"] == "2026-11-25T10:00:30+00:00"

    error(await admin.post("/api/admin/keys/999/revoke"), 404, "key_not_found")


# --- purchased credit ----------------------------------------------------------------


async def test_buy_credits(admin: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    await make_plan(admin)
    user = await make_user(admin, anchor="2026-11-01T00:00:00+00:00")
    key = (await make_key(admin, user["id"]))["key"]

    response = await admin.post(f"/api/admin/users/{user['id']}/credits", json={"amount": 12.5})
    assert response.status_code == 201
    body = response.json()
    expected_usage = {
        "currentCredit": 100,
        "additionalCredit": 12.5,
        "maxCredit": 100,
        "period": "2026-11-01T00:00:00+00:00/2026-12-01T00:00:00+00:00",
        "ttpCount": 0,
        "maxTtpCount": None,
        "editCount": 0,
        "maxEditCount": None,
        "postpaidUsageCount": None,
    }
    assert body == {
        "purchase": {
            "id": body["purchase"]["id"],
            "amount": 12.5,
            "expiresAt": None,
            "createdAt": NOW,
        },
        "usage": expected_usage,
    }
    mine = await my_usage(client, key)
    assert mine.json() == expected_usage
    assert (await admin.get(f"/api/admin/users/{user['id']}/usage")).json() == expected_usage


async def test_buy_credits_with_expiry(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    key = (await make_key(admin, user["id"]))["key"]
    url = f"/api/admin/users/{user['id']}/credits"

    response = await admin.post(url, json={"amount": 3, "expiresAt": "2026-12-01T09:00:00+09:00"})
    assert response.status_code == 201
    body = response.json()
    assert body["purchase"]["amount"] == 3
    assert body["purchase"]["expiresAt"] == "2026-12-01T00:00:00+00:00"
    assert body["usage"]["additionalCredit"] == 3
    assert (await admin.post(url, json={"amount": 0.25})).status_code == 201

    assert (await my_usage(client, key)).json()["additionalCredit"] == 3.25
    clock.set(datetime(2026, 12, 1, tzinfo=UTC))
    assert (await my_usage(client, key)).json()["additionalCredit"] == 0.25
    response = await admin.post(url, json={"amount": 1})  # closes the expired purchase
    assert response.json()["usage"]["additionalCredit"] == 1.25
    assert (await admin.get("/api/admin/reconcile")).json() == {"ok": True, "problems": []}


async def test_buy_credits_refuses_bad_amounts_and_unknown_users(
    admin: httpx.AsyncClient,
) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    url = f"/api/admin/users/{user['id']}/credits"
    for body in ({"amount": 0}, {"amount": -1}, {"amount": 0.0001}, {"amount": "x"}, {}):
        error(await admin.post(url, json=body), 400, "bad_request")
    usage = (await admin.get(f"/api/admin/users/{user['id']}/usage")).json()
    assert usage["additionalCredit"] == 0
    error(
        await admin.post("/api/admin/users/999/credits", json={"amount": 1}),
        404,
        "user_not_found",
    )


# --- deleted users -------------------------------------------------------------------


async def test_deleted_user_is_gone_for_admin_calls(
    admin: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await make_plan(admin)
    user = await make_user(admin)
    other = await make_user(admin, email="carol@example.com")
    key = await make_key(admin, user["id"])
    await admin.post(f"/api/admin/users/{user['id']}/credits", json={"amount": 5})

    response = await admin.delete(f"/api/admin/users/{user['id']}")
    assert response.status_code == 204
    assert response.content == b""

    base = f"/api/admin/users/{user['id']}"
    error(await admin.get(f"{base}/usage"), 404, "user_not_found")
    error(await admin.get(f"{base}/keys"), 404, "user_not_found")
    error(await admin.post(f"{base}/keys", json={}), 404, "user_not_found")
    error(await admin.post(f"{base}/credits", json={"amount": 1}), 404, "user_not_found")
    error(await admin.delete(base), 404, "user_not_found")
    error(await my_usage(client, key["key"]), 401, "wrong_api_key")

    # The email stays taken (the rows, and the ledger, are kept).
    response = await admin.post(
        "/api/admin/users", json={"email": "alice@example.com", "plan": "Pro"}
    )
    error(response, 409, "user_exists")
    assert (await admin.get(f"/api/admin/users/{other['id']}/usage")).status_code == 200
    assert (await admin.get("/api/admin/reconcile")).json() == {"ok": True, "problems": []}
    error(await admin.delete("/api/admin/users/999"), 404, "user_not_found")


# --- usage and reconcile -------------------------------------------------------------


async def test_admin_usage_equals_what_the_key_sees(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await make_plan(admin, maxTtpCount=3, maxEditCount=4, billingMode="postpaid", maxCredit=7.5)
    user = await make_user(admin, anchor="2026-01-31T00:00:00+00:00")
    key = (await make_key(admin, user["id"]))["key"]
    await admin.post(f"/api/admin/users/{user['id']}/credits", json={"amount": 0.125})
    for at in (
        datetime(2026, 11, 25, 10, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
        datetime(2027, 2, 28, 23, 59, 59, tzinfo=UTC),
    ):
        clock.set(at)
        mine = await my_usage(client, key)
        theirs = await admin.get(f"/api/admin/users/{user['id']}/usage")
        assert mine.status_code == theirs.status_code == 200
        assert mine.json() == theirs.json()
        assert theirs.headers["cache-control"] == "no-store"
    assert mine.json() == {
        "currentCredit": 7.5,
        "additionalCredit": 0.125,
        "maxCredit": 7.5,
        "period": "2027-02-28T00:00:00+00:00/2027-03-31T00:00:00+00:00",
        "ttpCount": 0,
        "maxTtpCount": 3,
        "editCount": 0,
        "maxEditCount": 4,
        "postpaidUsageCount": 0,
    }


async def test_reconcile_endpoint(admin: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    response = await admin.get("/api/admin/reconcile")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "problems": []}

    await make_plan(admin)
    user = await make_user(admin, anchor="2026-10-01T00:00:00+00:00")
    url = f"/api/admin/users/{user['id']}/credits"
    await admin.post(url, json={"amount": 2, "expiresAt": "2026-12-15T00:00:00+00:00"})
    clock.set(datetime(2027, 3, 2, tzinfo=UTC))
    await admin.post(url, json={"amount": 1})
    assert (await admin.get("/api/admin/reconcile")).json() == {"ok": True, "problems": []}

    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE accounts SET plan_credit = plan_credit + 1 WHERE user_id = ?", user["id"]
        )
    body = (await admin.get("/api/admin/reconcile")).json()
    assert body["ok"] is False
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith(f"user {user['id']}: plan_credit")


async def test_concurrent_duplicate_creates_answer_409_not_500(admin: httpx.AsyncClient) -> None:
    plans = await asyncio.gather(
        *(
            admin.post(
                "/api/admin/plans", json={"name": "Race", "periodUnit": "month", "maxCredit": 1}
            )
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in plans) == [201, 409, 409, 409, 409]
    users = await asyncio.gather(
        *(
            admin.post("/api/admin/users", json={"email": "race@x.io", "plan": "Race"})
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in users) == [201, 409, 409, 409, 409]
    assert {r.json()["data"] for r in users if r.status_code == 409} == {"user_exists"}

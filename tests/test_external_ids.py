"""Users' external ids (the platform's ids, which its sessions carry): the admin API and
the CLI set them, they are unique among live users, and bad input changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flamel_usage.db.gateway import Database
from tests.processes import run_cli
from tests.store import reset_database, sql, table_rows

USERS = "/api/admin/users"


def _error(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["success"], body["code"], body["data"]) == (False, status, reason)
    assert set(body) <= {"success", "code", "data", "message"}


@pytest.fixture
async def plan(admin: httpx.AsyncClient) -> str:
    body = {"name": "Pro", "periodUnit": "month", "maxCredit": 100}
    assert (await admin.post("/api/admin/plans", json=body)).status_code == 201
    return "Pro"


async def _create(admin: httpx.AsyncClient, email: str, **fields: Any) -> httpx.Response:
    return await admin.post(USERS, json={"email": email, "plan": "Pro", **fields})


async def test_a_user_is_created_with_an_external_id_and_shows_it(
    admin: httpx.AsyncClient, plan: str
) -> None:
    created = await _create(admin, "ada@example.com", externalId="u-Ada 7")
    assert created.status_code == 201, created.text
    assert created.json()["externalId"] == "u-Ada 7"
    without = await _create(admin, "bob@example.com")
    assert without.json()["externalId"] is None
    also_none = await _create(admin, "cy@example.com", externalId=None)
    assert also_none.json()["externalId"] is None


async def test_a_user_is_read_back_by_id_as_created_and_a_deleted_one_is_404(
    admin: httpx.AsyncClient, plan: str
) -> None:
    created = (await _create(admin, "dee@example.com", externalId="p-42")).json()
    read = await admin.get(f"{USERS}/{created['id']}")
    assert read.status_code == 200, read.text
    assert read.json() == created
    assert (await admin.delete(f"{USERS}/{created['id']}")).status_code == 204
    _error(await admin.get(f"{USERS}/{created['id']}"), 404, "user_not_found")
    _error(await admin.get(f"{USERS}/0"), 404, "user_not_found")
    _error(await admin.get(f"{USERS}/x"), 400, "bad_request")


async def test_an_external_id_is_one_live_users(
    admin: httpx.AsyncClient, plan: str, db: Database
) -> None:
    ada = (await _create(admin, "ada@example.com", externalId="42")).json()
    before = await table_rows(db)
    _error(await _create(admin, "bob@example.com", externalId="42"), 409, "user_exists")
    _error(await _create(admin, "ada@example.com", externalId="43"), 409, "user_exists")
    bob = (await _create(admin, "bob@example.com")).json()
    before = await table_rows(db)
    taken = await admin.patch(f"{USERS}/{bob['id']}", json={"externalId": "42"})
    _error(taken, 409, "user_exists")
    assert await table_rows(db) == before
    # Once its holder is deleted, the id is free again.
    assert (await admin.delete(f"{USERS}/{ada['id']}")).status_code == 204
    moved = await admin.patch(f"{USERS}/{bob['id']}", json={"externalId": "42"})
    assert moved.status_code == 200, moved.text


async def test_the_external_id_is_changed_and_removed(admin: httpx.AsyncClient, plan: str) -> None:
    ada = (await _create(admin, "ada@example.com", externalId="old")).json()
    changed = await admin.patch(f"{USERS}/{ada['id']}", json={"externalId": "new"})
    assert changed.status_code == 200, changed.text
    assert changed.json() == {**ada, "externalId": "new"}
    removed = await admin.patch(f"{USERS}/{ada['id']}", json={"externalId": None})
    assert removed.json() == {**ada, "externalId": None}
    again = await admin.patch(f"{USERS}/{ada['id']}", json={"externalId": None})
    assert again.status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "",
        " u-1",
        "u-1 ",
        "u\u200b1",  # a zero-width space: looks like "u1", never matches a session
        "u\x001",
        "u\n1",
        "x" * 256,
        42,
        True,
        ["u-1"],
        {"id": "u-1"},
    ],
    ids=repr,
)
async def test_a_bad_external_id_is_400_and_changes_nothing(
    admin: httpx.AsyncClient, plan: str, db: Database, value: object
) -> None:
    ada = (await _create(admin, "ada@example.com", externalId="u-ada")).json()
    before = await table_rows(db)
    _error(await _create(admin, "bob@example.com", externalId=value), 400, "bad_request")
    patched = await admin.patch(f"{USERS}/{ada['id']}", json={"externalId": value})
    _error(patched, 400, "bad_request")
    assert await table_rows(db) == before


@pytest.mark.parametrize(
    "body",
    [{}, {"externalId": "u-1", "email": "x@example.com"}, ["u-1"], "u-1"],
    ids=repr,
)
async def test_a_bad_change_body_is_400_and_changes_nothing(
    admin: httpx.AsyncClient, plan: str, db: Database, body: object
) -> None:
    ada = (await _create(admin, "ada@example.com", externalId="u-ada")).json()
    before = await table_rows(db)
    _error(await admin.patch(f"{USERS}/{ada['id']}", json=body), 400, "bad_request")
    assert await table_rows(db) == before


async def test_changing_an_unknown_or_deleted_user_is_404(
    admin: httpx.AsyncClient, plan: str
) -> None:
    _error(await admin.patch(f"{USERS}/999", json={"externalId": "x"}), 404, "user_not_found")
    ada = (await _create(admin, "ada@example.com")).json()
    assert (await admin.delete(f"{USERS}/{ada['id']}")).status_code == 204
    gone = await admin.patch(f"{USERS}/{ada['id']}", json={"externalId": "x"})
    _error(gone, 404, "user_not_found")


async def test_changing_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    _error(await client.patch(f"{USERS}/1", json={"externalId": "x"}), 401, "admin_unauthorized")


def test_the_cli_creates_a_user_with_an_external_id(
    environ: dict[str, str], database_url: str
) -> None:
    reset_database(database_url)
    plan = run_cli(environ, "plans", "create", "Pro", "--credits", "10", "--period", "month")
    assert plan.returncode == 0, plan.stderr
    done = run_cli(
        environ, "users", "create", "ada@example.com", "--plan", "Pro", "--external-id", "u-7"
    )
    assert done.returncode == 0, done.stderr
    rows = sql(database_url, "SELECT external_id FROM users WHERE id = ?", int(done.stdout))
    assert rows == [("u-7",)]
    clash = run_cli(
        environ, "users", "create", "bob@example.com", "--plan", "Pro", "--external-id", "u-7"
    )
    assert clash.returncode == 2
    assert clash.stderr.startswith("flamel-usage: user_exists: "), clash.stderr
    blank = run_cli(
        environ, "users", "create", "cy@example.com", "--plan", "Pro", "--external-id", " u-8"
    )
    assert blank.returncode == 2
    assert blank.stderr.startswith("flamel-usage: bad_request: "), blank.stderr
    assert sql(database_url, "SELECT COUNT(*) FROM users") == [(1,)]

"""Look-alike identities: an address or a plan name is one identity however it is spelt
(composed or decomposed, upper or lower case), and characters that cannot be seen
(zero-width, bidirectional controls, other format and control characters) are refused.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import httpx
import pytest

from flamel_usage.auth import throttle
from flamel_usage.db.gateway import Database, UniqueViolation
from flamel_usage.http.openapi.document import openapi_document
from tests.store import table_rows

PASSWORD = "correct horse battery staple"
COMPOSED = "josé@bücher.de"
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)
#: Zero-width, joiners, bidirectional overrides and isolates, byte order mark, soft
#: hyphen, a C1 control, an invisible tag character.
INVISIBLE = [
    "\u200b", "\u200c", "\u200d", "\u202a", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
    "\u2060", "\ufeff", "\u00ad", "\u0080", "\u009b", "\U000e0041",
]  # fmt: skip
#: The version of the migration that makes stored look-alikes unambiguous.
LOOKALIKES_MIGRATION = 5


def error(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["code"] == status
    assert body["data"] == reason
    return body


async def make_plan(admin: httpx.AsyncClient, name: str) -> httpx.Response:
    return await admin.post(
        "/api/admin/plans", json={"name": name, "periodUnit": "month", "maxCredit": 10}
    )


# --- emails -------------------------------------------------------------------------------


async def test_composed_decomposed_and_upper_case_spellings_are_one_user(
    admin: httpx.AsyncClient,
) -> None:
    assert COMPOSED != DECOMPOSED
    assert (await make_plan(admin, "Basic")).status_code == 201
    created = await admin.post(
        "/api/admin/users", json={"email": DECOMPOSED, "plan": "Basic", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    assert created.json()["email"] == COMPOSED  # stored in NFC
    for spelling in (COMPOSED, DECOMPOSED, COMPOSED.upper(), f" {DECOMPOSED.upper()} "):
        again = await admin.post("/api/admin/users", json={"email": spelling, "plan": "Basic"})
        error(again, 409, "user_exists")
        login = await admin.post("/api/auth/login", json={"email": spelling, "password": PASSWORD})
        assert login.status_code == 200, (spelling, login.text)
    listed = await admin.get(f"/api/admin/users/{created.json()['id']}/usage")
    assert listed.status_code == 200


async def test_invisible_and_control_characters_in_emails_are_refused(
    admin: httpx.AsyncClient, db: Database
) -> None:
    assert (await make_plan(admin, "Basic")).status_code == 201
    before = await table_rows(db)
    for char in INVISIBLE:
        for email in (f"ada{char}@example.com", f"{char}ada@example.com", f"ada@ex{char}.com"):
            response = await admin.post("/api/admin/users", json={"email": email, "plan": "Basic"})
            body = error(response, 400, "bad_request")
            assert body["message"].startswith("email contains an invisible or control"), body
            assert f"U+{ord(char):04X}" in body["message"]
    assert await table_rows(db) == before


def test_one_address_is_one_throttle_bucket_however_it_is_spelt() -> None:
    """Otherwise each spelling of an address would get its own budget of guesses."""
    buckets = {throttle.login_buckets("203.0.113.7", spelling, None)[1] for spelling in (
        COMPOSED, DECOMPOSED, COMPOSED.upper(), f" {DECOMPOSED} "
    )}  # fmt: skip
    assert len(buckets) == 1


def test_the_documented_email_pattern_refuses_what_the_server_refuses() -> None:
    """In the BMP: beyond it, the document says it in words (see ``openapi._INVISIBLE``)."""
    schemas = openapi_document()["components"]["schemas"]
    pattern = schemas["CreateUserRequest"]["properties"]["email"]["pattern"]
    assert re.fullmatch(pattern, COMPOSED)
    assert re.fullmatch(pattern, DECOMPOSED)
    hidden = [
        chr(code) for code in range(0x10000) if unicodedata.category(chr(code)) in ("Cc", "Cf")
    ]
    accepted = [char for char in hidden if re.fullmatch(pattern, f"ada{char}@example.com")]
    assert accepted == []


# --- plan names ---------------------------------------------------------------------------


async def test_plan_names_are_unique_ignoring_case(admin: httpx.AsyncClient) -> None:
    assert (await make_plan(admin, "Basic")).status_code == 201
    for name in ("basic", "BASIC", "bAsIc"):
        body = error(await make_plan(admin, name), 409, "plan_exists")
        assert name in body["message"]
    for name in ("Basic ", "Basic  ", " Basic"):
        body = error(await make_plan(admin, name), 400, "bad_request")
        assert "space" in body["message"]
    listed = (await admin.get("/api/admin/plans")).json()["plans"]
    assert [plan["name"] for plan in listed] == ["Basic"]
    # Looked up the same way: any case, surrounding spaces ignored; shown as created.
    for n, spelling in enumerate(("basic", " BASIC ")):
        user = await admin.post(
            "/api/admin/users", json={"email": f"u{n}@example.com", "plan": spelling}
        )
        assert user.status_code == 201, user.text
        assert user.json()["plan"] == "Basic"


async def test_invisible_characters_in_plan_names_are_refused(
    admin: httpx.AsyncClient, db: Database
) -> None:
    before = await table_rows(db)
    for char in INVISIBLE:
        body = error(await make_plan(admin, f"Ba{char}sic"), 400, "bad_request")
        assert body["message"].startswith("plan name contains an invisible or control"), body
    assert await table_rows(db) == before


def test_the_documented_plan_name_pattern_refuses_surrounding_spaces() -> None:
    schemas = openapi_document()["components"]["schemas"]
    pattern = schemas["CreatePlanRequest"]["properties"]["name"]["pattern"]
    assert re.fullmatch(pattern, "Pro Monthly")
    assert re.fullmatch(pattern, "x")
    for refused in ("Basic ", " Basic", "Ba\u200bsic", ""):
        assert not re.fullmatch(pattern, refused), refused


# --- what was stored before ---------------------------------------------------------------


async def test_the_migration_makes_stored_lookalikes_unambiguous(db: Database) -> None:
    """A store written before the rules: duplicate plan names and emails not in NFC."""
    twin = unicodedata.normalize("NFD", "zoë@example.com")
    async with db.transaction() as conn:
        await conn.execute("DROP INDEX plans_name_ignoring_case")
        await conn.execute("DELETE FROM schema_migrations WHERE version = ?", LOOKALIKES_MIGRATION)
        for name in ("Basic", "basic", "Pro", "Basic ", "BASIC"):
            await conn.execute(
                "INSERT INTO plans (name, period_unit, max_credit, billing_mode, created_at)"
                " VALUES (?, 'month', 0, 'prepaid', 0)",
                name,
            )
        for email in (DECOMPOSED, "zoë@example.com", twin, "ada@example.com"):
            await conn.execute("INSERT INTO users (email, created_at) VALUES (?, 0)", email)
        ids = {row[1]: row[0] for row in await conn.fetchall("SELECT id, name FROM plans")}

    assert await db.migrate() == [LOOKALIKES_MIGRATION]

    async with db.read() as conn:
        names = [row[0] for row in await conn.fetchall("SELECT name FROM plans ORDER BY id")]
        emails = [row[0] for row in await conn.fetchall("SELECT email FROM users ORDER BY id")]
    # The first of each name keeps it; the later ones are told apart by their id.
    assert names == [
        "Basic",
        f"basic #{ids['basic']}",
        "Pro",
        f"Basic #{ids['Basic ']}",
        f"BASIC #{ids['BASIC']}",
    ]
    # Rewritten in NFC where no other user has that spelling; the twin is left as it was
    # (no longer reachable by its email: its keys still work).
    assert emails == [COMPOSED, "zoë@example.com", twin, "ada@example.com"]
    with pytest.raises(UniqueViolation):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO plans (name, period_unit, max_credit, billing_mode, created_at)"
                " VALUES ('pro ', 'month', 0, 'prepaid', 0)"
            )

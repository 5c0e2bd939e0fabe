"""Bad input anywhere it is parsed, generated: always an answer in the envelope (or the
normal answer), never a 500, and a refused request changes nothing.

Covers what the example-based tests in test_bad_input.py cannot enumerate: any cookie
header, idempotency key, path id and JSON body on every admin route, and any query string
on every route.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import hypothesis
from hypothesis import strategies as st

from flamel_usage.db.gateway import Database
from flamel_usage.http.app import ROUTES
from flamel_usage.http.routing import Guard
from tests.conftest import ADMIN_TOKEN
from tests.factories import Factory
from tests.store import table_rows

FEW = hypothesis.settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
USAGE = "/api/users/me/usage"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=10,
)
#: Bodies shaped like ours, with any values: reach the field checks, not just the shape.
FIELDS = [
    "name", "periodUnit", "maxCredit", "maxTtpCount", "maxEditCount", "billingMode",
    "email", "plan", "anchor", "password", "expiresAt", "amount", "userId", "kind", "cost",
    "effective",
]  # fmt: skip
SHAPED = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)
WRITES = [(r.method, r.path) for r in ROUTES if r.guard is Guard.ADMIN and r.method != "GET"]
#: Any query string: any characters, and any number of fields (from 17 on, the pages
#: once answered 500).
QUERIES = st.text(max_size=200).map(lambda text: quote(text, safe="=&")) | st.lists(
    st.tuples(st.text(max_size=6), st.text(max_size=6)), max_size=60
).map(urlencode)


def _is_envelope(response: httpx.Response) -> bool:
    body = response.json()
    return (
        isinstance(body, dict)
        and body.get("success") is False
        and body.get("code") == response.status_code
        and isinstance(body.get("data"), str)
    )


def _answered(response: httpx.Response) -> None:
    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        assert _is_envelope(response), response.text


def _answered_in_its_kind(response: httpx.Response) -> None:
    """A page answers with a page, anything else as ``_answered`` says."""
    if response.headers.get("content-type", "").startswith("text/html"):
        assert response.status_code != 500, response.text
    else:
        _answered(response)


def _without_throttle_counts(rows: dict[str, Any]) -> dict[str, Any]:
    rows.pop("auth_failures", None)
    return rows


@FEW
@hypothesis.given(cookie=st.text(max_size=300))
async def test_any_cookie_header(client: httpx.AsyncClient, cookie: str) -> None:
    raw = cookie.encode("utf-8", "surrogatepass")
    response = await client.get(USAGE, headers=[(b"cookie", raw)])
    _answered(response)
    assert response.status_code == 403
    assert response.json()["data"] == "not_logged_in"


@FEW
@hypothesis.given(query=st.text(max_size=200))
async def test_any_query_string_is_ignored(
    client: httpx.AsyncClient, factory: Factory, query: str
) -> None:
    key = await factory.key(await factory.user())
    response = await client.get(f"{USAGE}?{quote(query, safe='=&')}", headers={"X-Api-Key": key})
    assert response.status_code == 200, response.text


@FEW
@hypothesis.given(query=QUERIES)
@hypothesis.example(query="&".join(f"field{n}=x" for n in range(17)))
async def test_any_query_string_on_every_route_is_answered(
    admin: httpx.AsyncClient, factory: Factory, query: str
) -> None:
    user = await factory.user()
    for method, pattern, *_ in ROUTES:
        path = (
            pattern.replace("{userId}", str(user.id))
            .replace("{keyId}", "1")
            .replace("{idempotencyKey}", "k")
            .replace("{name}", "pages.css")
        )
        response = await admin.request(method, f"{path}?{query}", json={})
        _answered_in_its_kind(response)


@FEW
@hypothesis.given(key=st.text(max_size=300))
async def test_any_idempotency_key(
    admin: httpx.AsyncClient, factory: Factory, db: Database, key: str
) -> None:
    user = await factory.user()
    before = await table_rows(db)
    response = await admin.post(
        "/api/admin/charges",
        json={"userId": user.id, "kind": "image"},
        headers=[(b"idempotency-key", key.encode("utf-8", "surrogatepass"))],
    )
    _answered(response)
    if response.status_code != 201:
        assert response.json()["data"] == "invalid_idempotency_key"
        assert await table_rows(db) == before


@FEW
@hypothesis.given(segment=st.text(min_size=1, max_size=40), index=st.integers(min_value=0))
async def test_any_path_id(
    admin: httpx.AsyncClient, db: Database, segment: str, index: int
) -> None:
    patterned = [(r.method, r.path) for r in ROUTES if "{" in r.path and r.guard is Guard.ADMIN]
    method, pattern = patterned[index % len(patterned)]
    path = pattern.split("{", 1)[0] + quote(segment, safe="") + pattern.split("}", 1)[1]
    before = _without_throttle_counts(await table_rows(db))
    response = await admin.request(method, path, json={})
    _answered(response)
    if response.status_code >= 400:
        assert _without_throttle_counts(await table_rows(db)) == before


@FEW
@hypothesis.given(body=JSON | SHAPED, index=st.integers(min_value=0))
async def test_any_json_body_on_every_admin_write(
    admin: httpx.AsyncClient, factory: Factory, db: Database, body: object, index: int
) -> None:
    user = await factory.user()
    method, pattern = WRITES[index % len(WRITES)]
    path = pattern.replace("{userId}", str(user.id)).replace("{keyId}", "1")
    path = path.replace("{idempotencyKey}", "k")
    before = await table_rows(db)
    response = await admin.request(
        method, path, content=json.dumps(body), headers={"Idempotency-Key": "k", **ADMIN}
    )
    _answered(response)
    if response.status_code >= 400:
        assert await table_rows(db) == before

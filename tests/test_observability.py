"""Operating the service: liveness and readiness, metrics, request ids, logs.

In-process through the ``client``/``admin`` fixtures (both stores), except the JSON
logs, read from a real ``flamel-usage serve`` process's output, and the metrics of
several workers, scraped from a real server with two.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from flamel_usage.core.config import Settings
from flamel_usage.core.logs import REQUEST_ID, JsonFormatter, TextFormatter
from flamel_usage.db.gateway import Database
from flamel_usage.http import guards
from flamel_usage.http.app import ROUTES, App
from flamel_usage.http.context import Services
from flamel_usage.http.metrics import BUCKETS
from flamel_usage.http.routing import Request, Response
from tests.conftest import ADMIN_TOKEN, POSTGRES_URL, FakeClock
from tests.factories import Factory
from tests.processes import WORKER_READY, ServerProcess, free_port, http_client, server_process
from tests.store import reset_database

USAGE = "/api/users/me/usage"
CHARGES = "/api/admin/charges"
PASSWORD = "correct horse battery staple"


@asynccontextmanager
async def app_client(
    environ: dict[str, str], db: Database, clock: FakeClock, **extra: str
) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    """An app over ``db`` with ``environ`` plus ``extra`` settings, and a client of it."""
    app = App(Settings.from_environ({**environ, **extra}), db, clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield app, http


def is_envelope(response: httpx.Response, status: int, reason: str) -> bool:
    body = response.json()
    return response.status_code == status and (body["success"], body["code"], body["data"]) == (
        False,
        status,
        reason,
    )


# --- liveness and readiness ---------------------------------------------------------------


async def test_healthz_and_readyz_on_a_migrated_store(client: httpx.AsyncClient) -> None:
    for path, status in (("/healthz", "ok"), ("/readyz", "ready")):
        response = await client.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": status}
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"


async def test_readyz_is_503_while_a_migration_is_pending(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with db.transaction() as conn:
        latest = await conn.fetchone(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version DESC LIMIT 1"
        )
        assert latest is not None
        await conn.execute("DELETE FROM schema_migrations WHERE version = ?", latest[0])
    try:
        response = await client.get("/readyz")
        assert is_envelope(response, 503, "service_unavailable")
        assert str(latest[0]) in response.json()["message"]
        assert response.headers["retry-after"] == "1"
        assert response.headers["cache-control"] == "no-store"
        assert (await client.get("/healthz")).status_code == 200  # alive all the same
    finally:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", *latest
            )
    assert (await client.get("/readyz")).status_code == 200


@asynccontextmanager
async def fresh_store(kind: str, tmp_path: Any) -> AsyncIterator[str]:
    """The URL of a store that exists but was never migrated."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    name = f"flamel_fresh_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_readyz_is_503_on_a_store_never_migrated(
    database_url: str, environ: dict[str, str], clock: FakeClock, tmp_path: Any
) -> None:
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    async with fresh_store(kind, tmp_path) as url:
        database = Database.from_url(url)
        await database.open()
        try:
            assert await database.pending_migrations() != []
            async with app_client(environ, database, clock) as (_, http):
                assert is_envelope(await http.get("/readyz"), 503, "service_unavailable")
                await database.migrate()
                assert (await http.get("/readyz")).json() == {"status": "ready"}
            assert await database.pending_migrations() == []
        finally:
            await database.close()


async def test_readyz_is_503_when_the_store_is_closed(
    database_url: str, environ: dict[str, str], clock: FakeClock
) -> None:
    database = Database.from_url(database_url)
    await database.open()
    await database.close()
    async with app_client(environ, database, clock) as (_, http):
        assert is_envelope(await http.get("/readyz"), 503, "service_unavailable")
        assert (await http.get("/healthz")).json() == {"status": "ok"}


async def test_readyz_is_503_within_the_timeout_when_postgresql_does_not_answer(
    tmp_path: Any, clock: FakeClock
) -> None:
    environ = {
        "FLAMEL_DATA_DIR": str(tmp_path / "data"),
        "FLAMEL_DATABASE_URL": f"postgresql://flamel@127.0.0.1:{free_port()}/nothing",
        "FLAMEL_DATABASE_TIMEOUT_SECONDS": "0.5",
    }
    settings = Settings.from_environ(environ)
    database = Database.from_url(settings.database_url, timeout=0.5)
    await database.open()  # connects on demand: nothing is listening
    try:
        async with app_client(environ, database, clock) as (_, http):
            started = time.monotonic()
            response = await http.get("/readyz")
            assert time.monotonic() - started < 2.0
            assert is_envelope(response, 503, "service_unavailable")
            assert response.headers["retry-after"] == "1"
            assert (await http.get("/healthz")).json() == {"status": "ok"}
    finally:
        await database.close()


# --- metrics ------------------------------------------------------------------------------

_SAMPLE = re.compile(
    r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*",?)*)\})?'
    r" (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|Inf|NaN))"
)
_LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\\n]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, checking its syntax line by line:
    each family is announced by ``# HELP`` and ``# TYPE`` before its samples."""
    samples: Samples = {}
    typed: set[str] = set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            typed.add(name)
            continue
        found = _SAMPLE.fullmatch(line)
        assert found, f"not a sample line: {line!r}"
        name = found["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"sample before its # TYPE: {line!r}"
        labels = frozenset(_LABEL.findall(found["labels"] or ""))
        key = (name, labels)
        assert key not in samples, f"repeated sample: {line!r}"
        samples[key] = float(found["value"])
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (found, labels) in samples if found == name]


async def metrics_of(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    return parse_metrics(response.text)


async def charge(
    http: httpx.AsyncClient, key: str, user_id: int, kind: str, cost: float | None = None
) -> httpx.Response:
    body: dict[str, object] = {"userId": user_id, "kind": kind}
    if cost is not None:
        body["cost"] = cost
    return await http.post(CHARGES, json=body, headers={"Idempotency-Key": key})


async def test_metrics_count_requests_charges_and_auth_failures_exactly(
    environ: dict[str, str], db: Database, clock: FakeClock, factory: Factory
) -> None:
    plan = await factory.plan(credits=2, max_ttp=1)
    user = await factory.user(plan, password=PASSWORD)
    key = await factory.key(user)
    expired = await factory.expired_key(user)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with app_client(environ, db, clock, FLAMEL_KEY_FAILURE_BUDGET="2") as (_app, http):
        assert value(await metrics_of(http), "flamel_http_requests_total") == 0
        for _ in range(2):
            assert (await http.get(USAGE, headers={"X-Api-Key": key})).status_code == 200
        assert (await http.get(USAGE, headers={"X-Api-Key": expired})).status_code == 401
        assert (await http.get(USAGE)).status_code == 403
        wrong = [await http.get(USAGE, headers={"X-Api-Key": "flm_wrong"}) for _ in range(3)]
        assert [response.status_code for response in wrong] == [401, 401, 429]
        login = await http.post("/api/auth/login", json={"email": user.email, "password": "no"})
        assert is_envelope(login, 401, "invalid_credentials")
        assert (
            await http.get("/api/admin/plans", headers={"Authorization": "Bearer no"})
        ).status_code == 401

        for _ in range(2):
            keys = await http.get(f"/api/admin/users/{user.id}/keys", headers=admin)
            assert keys.status_code == 200
        http.headers.update(admin)
        assert (await charge(http, "first", user.id, "ttp")).status_code == 201
        assert (await charge(http, "first", user.id, "ttp")).headers[
            "idempotent-replayed"
        ] == "true"
        assert is_envelope(await charge(http, "second", user.id, "ttp"), 429, "ttp_limit_exceeded")
        assert is_envelope(
            await charge(http, "big", user.id, "image", 5), 402, "insufficient_credit"
        )
        assert (await charge(http, "small", user.id, "image", 1)).status_code == 201
        assert (await http.post(f"{CHARGES}/first/refund")).status_code == 200
        assert (await http.get("/no/such/route/42")).status_code == 404
        assert (await http.request("BREW", "/healthz")).status_code == 405
        assert (await http.delete("/healthz")).status_code == 405

        samples = await metrics_of(http)
        text = (await http.get("/metrics")).text

    def requests(route: str, method: str, status: int) -> float:
        return value(
            samples, "flamel_http_requests_total", route=route, method=method, status=str(status)
        )

    assert requests(USAGE, "GET", 200) == 2
    assert requests(USAGE, "GET", 401) == 3
    assert requests(USAGE, "GET", 403) == 1
    assert requests(USAGE, "GET", 429) == 1
    assert requests("/api/auth/login", "POST", 401) == 1
    assert requests("/api/admin/plans", "GET", 401) == 1
    assert requests("/api/admin/users/{userId}/keys", "GET", 200) == 2
    assert requests(CHARGES, "POST", 201) == 3  # charged, replayed, charged
    assert requests(CHARGES, "POST", 429) == 1
    assert requests(CHARGES, "POST", 402) == 1
    assert requests("/api/admin/charges/{idempotencyKey}/refund", "POST", 200) == 1
    assert requests("unmatched", "GET", 404) == 1
    assert requests("/healthz", "other", 405) == 1
    assert requests("/healthz", "DELETE", 405) == 1
    assert requests("/metrics", "GET", 200) == 1  # the first scrape; this one counts later
    total = sum(v for (name, _), v in samples.items() if name == "flamel_http_requests_total")
    assert total == 21

    # Route labels are the patterns of routes (or "unmatched"), never a path as sent.
    patterns = {route.path for route in ROUTES} | {"unmatched"}
    assert {labels["route"] for labels in series(samples, "flamel_http_requests_total")} <= patterns
    assert f"/api/admin/users/{user.id}/keys" not in text
    assert "/no/such/route" not in text
    assert "first" not in text  # an idempotency key sent in a path

    assert {
        (labels["kind"], labels["outcome"]): value(samples, "flamel_charges_total", **labels)
        for labels in series(samples, "flamel_charges_total")
    } == {
        ("ttp", "charged"): 1,
        ("ttp", "replayed"): 1,
        ("ttp", "ttp_limit_exceeded"): 1,
        ("image", "insufficient_credit"): 1,
        ("image", "charged"): 1,
    }
    assert {
        labels["reason"]: value(samples, "flamel_auth_failures_total", **labels)
        for labels in series(samples, "flamel_auth_failures_total")
    } == {
        "wrong_api_key": 2,
        "api_key_expired": 1,
        "not_logged_in": 1,
        "invalid_credentials": 1,
        "too_many_requests": 1,
        "admin_unauthorized": 1,
    }


async def test_latency_histogram_is_cumulative_and_agrees_with_the_counts(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        await client.get("/healthz")
    await client.get("/api-json")
    samples = await metrics_of(client)
    name = "flamel_http_request_duration_seconds"
    for route, requests in (("/healthz", 3), ("/api-json", 1)):
        buckets = [
            value(samples, f"{name}_bucket", route=route, le=repr(bound)) for bound in BUCKETS
        ]
        infinite = value(samples, f"{name}_bucket", route=route, le="+Inf")
        assert buckets == sorted(buckets)
        assert infinite == requests == value(samples, f"{name}_count", route=route)
        assert 0 < value(samples, f"{name}_sum", route=route) < 10
    assert value(samples, "flamel_process_start_time_seconds") <= time.time()
    assert len(series(samples, "flamel_process_info")) == 1


async def test_metrics_are_per_app_and_start_at_zero(
    environ: dict[str, str], db: Database, clock: FakeClock
) -> None:
    async with app_client(environ, db, clock) as (_, first):
        await first.get("/healthz")
    async with app_client(environ, db, clock) as (_, second):
        samples = await metrics_of(second)
    assert series(samples, "flamel_http_requests_total") == []
    reasons = series(samples, "flamel_auth_failures_total")
    assert all(value(samples, "flamel_auth_failures_total", **labels) == 0 for labels in reasons)


def _scrape(base_url: str) -> Samples:
    """One scrape on a connection of its own, so that either worker may answer it."""
    response = httpx.get(f"{base_url}/metrics", timeout=10.0)
    assert response.status_code == 200
    return parse_metrics(response.text)


def _live_workers(samples: Samples) -> set[str]:
    return {labels["pid"] for labels in series(samples, "flamel_process_info")}


def _wait_for_workers_started(server: ServerProcess, count: int) -> None:
    deadline = time.monotonic() + 20
    while server.output().count(WORKER_READY) < count:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


def test_metrics_of_two_workers_add_up_and_outlive_a_worker_that_dies(tmp_path: Any) -> None:
    """Requests answered by either of two workers, each on a new connection, are counted
    once in every scrape, whichever worker answers it; a worker killed and replaced
    leaves its counts in the sums and its pid out of the live ones. The counts live in
    one private directory of the server run, gone when the server stops."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(scratch)}
    with server_process(environ, workers=2) as server:
        [shared] = list(scratch.glob("flamel-metrics-*"))
        assert shared.stat().st_mode & 0o777 == 0o700
        answered_by: set[bytes] = set()
        sent = 0
        # Until both workers have answered (a new id's first 8 digits name its worker).
        while len(answered_by) < 2 or sent < 40:
            assert sent < 2000, "one worker answered every request"
            response = httpx.get(f"{server.base_url}/healthz", timeout=10.0)
            assert response.status_code == 200
            answered_by.add(response.headers["x-request-id"][:8].encode())
            sent += 1
        healthz = {"route": "/healthz", "method": "GET", "status": "200"}
        for _ in range(4):
            samples = _scrape(server.base_url)
            assert value(samples, "flamel_http_requests_total", **healthz) == sent
            count = value(samples, "flamel_http_request_duration_seconds_count", route="/healthz")
            assert count == sent
            assert len(_live_workers(samples)) == 2
        assert any(shared.glob("counter_*.db"))

        dead = sorted(_live_workers(samples))[0]
        os.kill(int(dead), signal.SIGKILL)
        _wait_for_workers_started(server, 3)  # the server replaced it
        samples = _scrape(server.base_url)
        assert dead not in _live_workers(samples)
        assert len(_live_workers(samples)) == 2
        assert value(samples, "flamel_http_requests_total", **healthz) == sent
        assert server.stop() == 0
    assert list(scratch.iterdir()) == []


# --- request ids --------------------------------------------------------------------------

_GENERATED = re.compile(r"[0-9a-f]{16}")


@pytest.mark.parametrize(
    "sent", ["abc-DEF_1.2", "x" * 128, "0", "01HZY3J5Q7ZK8V2B6R4M9N0P1Q", "a.b.c"]
)
async def test_a_valid_request_id_is_echoed(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["x-request-id"] == sent


@pytest.mark.parametrize(
    "sent",
    ["", "x" * 129, "has space", "a/b", "semi;colon", 'quote"d', "percent%20", "ünïcode"],
)
async def test_an_invalid_request_id_is_replaced(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get("/healthz", headers=[(b"x-request-id", sent.encode("utf-8"))])
    assert _GENERATED.fullmatch(response.headers["x-request-id"])


async def test_every_response_gets_a_fresh_request_id_errors_included(
    client: httpx.AsyncClient,
) -> None:
    responses = [
        await client.get("/healthz"),
        await client.get(USAGE),  # 403
        await client.get(USAGE, headers={"X-Api-Key": "flm_wrong"}),  # 401
        await client.get("/nothing"),  # 404
        await client.post("/healthz"),  # 405
        await client.post("/api/auth/login", content=b"{"),  # 400
        await client.get("/"),  # a page
    ]
    ids = [response.headers["x-request-id"] for response in responses]
    assert all(_GENERATED.fullmatch(found) for found in ids)
    assert len(set(ids)) == len(ids)
    assert all(len(response.headers.get_list("x-request-id")) == 1 for response in responses)


async def test_an_unhandled_error_is_a_500_with_the_request_id_in_header_and_log(
    app: App, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(request: Request, services: Services) -> Response:
        raise RuntimeError("secret internals")

    app.router.add(guards.public("GET", "/boom/{id}", boom))
    with caplog.at_level(logging.ERROR, logger="flamel_usage"):
        response = await client.get("/boom/7", headers={"X-Request-Id": "trace-me-500"})
    assert is_envelope(response, 500, "internal_error")
    assert "secret internals" not in response.text
    assert response.headers["x-request-id"] == "trace-me-500"
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "unhandled error on GET /boom/{id}"
    line = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: secret internals" in line["exc_info"]  # in the log, not the answer


# --- logs ---------------------------------------------------------------------------------


async def test_one_access_record_per_request_with_the_route_pattern(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="flamel_usage.access"):
        response = await client.get(
            "/api/admin/users/12/keys?token=sekrit",
            headers={"X-Request-Id": "req-1", "X-Api-Key": "flm_sekrit", "Cookie": "a=sekrit"},
        )
    assert response.status_code == 401
    [record] = [r for r in caplog.records if r.name == "flamel_usage.access"]
    assert record.levelno == logging.INFO
    line = json.loads(JsonFormatter().format(record))
    assert line["route"] == "/api/admin/users/{userId}/keys"
    assert (line["method"], line["status"], line["request_id"]) == ("GET", 401, "req-1")
    assert isinstance(line["duration_ms"], float)
    assert line["message"].startswith("GET /api/admin/users/{userId}/keys 401 ")
    assert "sekrit" not in json.dumps(line)
    assert "12" not in line["message"].split()[1]


def test_json_formatter_writes_one_object_per_line_with_the_request_id() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("broken\nover lines")
    except ValueError:
        record = logging.getLogger("flamel_usage.test").makeRecord(
            "flamel_usage.test", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info()
        )
    token = REQUEST_ID.set("abc123")
    try:
        text = formatter.format(record)
    finally:
        REQUEST_ID.reset(token)
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "failed: x"
    assert (line["level"], line["logger"], line["request_id"]) == (
        "ERROR",
        "flamel_usage.test",
        "abc123",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert "Traceback" in line["exc_info"]
    assert "ValueError: broken" in line["exc_info"]
    assert isinstance(line["pid"], int)
    assert "request_id" not in json.loads(formatter.format(record))  # outside a request


def test_text_formatter_appends_the_request_id_to_the_first_line() -> None:
    record = logging.makeLogRecord(
        {"name": "flamel_usage", "levelno": 20, "levelname": "INFO", "msg": "hello"}
    )
    token = REQUEST_ID.set("rid-9")
    try:
        text = TextFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    assert text.endswith(" INFO flamel_usage: hello request_id=rid-9")
    assert TextFormatter().format(record).endswith(" INFO flamel_usage: hello")


def test_a_json_server_logs_only_json_lines_that_carry_each_request_id_and_no_secret(
    environ: dict[str, str], database_url: str
) -> None:
    reset_database(database_url)  # the session's PostgreSQL database is shared
    secrets_sent: list[str] = [ADMIN_TOKEN, PASSWORD]
    answered: list[tuple[str, str, int]] = []  # (request id, route, status)

    def record(response: httpx.Response, route: str) -> httpx.Response:
        answered.append((response.headers["x-request-id"], route, response.status_code))
        return response

    with server_process({**environ, "FLAMEL_LOG_FORMAT": "json"}) as server:
        with http_client(server.base_url) as http:
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            plan = {"name": "Basic", "periodUnit": "month", "maxCredit": 100, "maxTtpCount": 10}
            record(
                http.post(
                    "/api/admin/plans", headers={**admin, "X-Request-Id": "setup-1"}, json=plan
                ),
                "/api/admin/plans",
            )
            user = record(
                http.post(
                    "/api/admin/users",
                    headers={**admin, "X-Request-Id": "setup-2"},
                    json={"email": "ada@example.com", "plan": "Basic", "password": PASSWORD},
                ),
                "/api/admin/users",
            ).json()
            issued = record(
                http.post(f"/api/admin/users/{user['id']}/keys", headers=admin, json={}),
                "/api/admin/users/{userId}/keys",
            ).json()
            key = issued["key"]
            secrets_sent.append(key)
            record(http.get(USAGE, headers={"X-Api-Key": key}), USAGE)
            login = record(
                http.post(
                    "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
                ),
                "/api/auth/login",
            )
            cookie = login.cookies["connect.sid"]
            secrets_sent.append(cookie)
            record(http.get(USAGE, headers={"Cookie": f"connect.sid={cookie}"}), USAGE)
            wrong_key = key[:-4] + "zzzz"
            secrets_sent.append(wrong_key)
            record(http.get(USAGE, headers={"X-Api-Key": wrong_key}), USAGE)
            record(http.get("/nothing/here", headers={"X-Request-Id": "mine.42"}), "unmatched")
        server.stop()
        output = server.output()

    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert len(lines) == len(output.splitlines())
    for line in lines:
        assert {"time", "level", "logger", "message", "pid"} <= set(line), line
    access = {line["request_id"]: line for line in lines if line["logger"] == "flamel_usage.access"}
    assert [status for _, _, status in answered] == [201, 201, 201, 200, 200, 200, 401, 404]
    assert ("mine.42", "unmatched", 404) in answered
    for request_id, route, status in answered:
        line = access[request_id]
        assert (line["route"], line["status"], line["level"]) == (route, status, "INFO")
    ours = {request_id for request_id, _, _ in answered}
    others = {line["route"] for request_id, line in access.items() if request_id not in ours}
    assert others == {"/api-json"}  # the helper's readiness check: nothing else was asked
    for secret in secrets_sent:
        assert secret not in output
    assert WORKER_READY in output

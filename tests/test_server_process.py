"""``flamel-usage serve`` as a real process: the README's demo, workers, stores, signals.

Everything here talks HTTP to a server started by ``tests.processes`` on 127.0.0.1;
nothing runs in-process, so these tests see what an operator would.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.processes import ServerProcess, http_client, running_server, server_process
from tests.store import reset_database

CURL_TIMEOUT_S = 20
DEMO_USAGE = {
    "currentCredit": 1000,
    "additionalCredit": 250,
    "maxCredit": 1000,
    "ttpCount": 0,
    "maxTtpCount": 100,
    "editCount": 0,
    "maxEditCount": 50,
    "postpaidUsageCount": None,
}
_CURL_LINE = re.compile(
    r"^\s*(curl -s -H 'X-Api-Key: (flm_[A-Za-z0-9_-]{43})'"
    r" http://127\.0\.0\.1:(\d+)/api/users/me/usage)\s*$",
    re.MULTILINE,
)


@pytest.fixture
def clean_environ(environ: dict[str, str], database_url: str) -> dict[str, str]:
    """``environ`` on an empty store (the session's PostgreSQL database is shared)."""
    reset_database(database_url)
    return environ


def _curl() -> str:
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed to check the README's curl line as pasted"
    return curl


def _demo_curl_line(server: ServerProcess) -> tuple[str, str]:
    found = _CURL_LINE.findall(server.output())
    assert len(found) == 1, f"expected one curl line in:\n{server.output()}"
    line, key, port = found[0]
    assert int(port) == server.port
    return line, key


def _run_shell(line: str) -> subprocess.CompletedProcess[str]:
    """The line exactly as a user would paste it into a POSIX shell."""
    return subprocess.run(
        ["/bin/sh", "-c", line],
        capture_output=True,
        text=True,
        timeout=CURL_TIMEOUT_S,
        check=False,
    )


def _assert_demo_numbers(line: str) -> None:
    pasted = _run_shell(line)
    assert pasted.returncode == 0, pasted.stderr
    usage = httpx.Response(200, content=pasted.stdout).json()
    assert {name: usage.get(name) for name in DEMO_USAGE} == DEMO_USAGE
    status = _run_shell(line + " -o /dev/null -w '%{http_code}'")
    assert status.returncode == 0, status.stderr
    assert status.stdout == "200"


def _demo_rows(data_dir: Path) -> tuple[int, int, int]:
    """(demo users, demo plans, purchases) in the demo's SQLite file."""
    path = data_dir / "flamel-usage.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        users = conn.execute("SELECT count(*) FROM users WHERE email = 'demo@flamel.local'")
        plans = conn.execute("SELECT count(*) FROM plans WHERE name = 'Demo'")
        purchases = conn.execute("SELECT count(*) FROM credit_purchases")
        return users.fetchone()[0], plans.fetchone()[0], purchases.fetchone()[0]


def test_demo_prints_a_curl_line_that_works_as_pasted_and_is_stable(tmp_path: Path) -> None:
    curl = _curl()
    data_dir = tmp_path / "data"
    environ = {"FLAMEL_DATA_DIR": str(data_dir)}  # no database URL: embedded SQLite

    with server_process(environ, extra_args=["--demo"], cwd=tmp_path) as server:
        line, key = _demo_curl_line(server)
        assert line.startswith(f"{Path(curl).name} ")
        _assert_demo_numbers(line)
    assert (data_dir / "flamel-usage.sqlite3").is_file()
    assert _demo_rows(data_dir) == (1, 1, 1)

    with server_process(environ, extra_args=["--demo"], cwd=tmp_path) as again:
        line_again, key_again = _demo_curl_line(again)
        assert key_again == key
        _assert_demo_numbers(line_again)
    assert _demo_rows(data_dir) == (1, 1, 1)
    assert not (tmp_path / "data" / "data").exists()


def _admin_setup(http: httpx.Client, email: str) -> tuple[int, str]:
    """A plan, a user on it and a key, through the admin API; (user id, key)."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    plan = http.post(
        "/api/admin/plans",
        headers=admin,
        json={"name": "Basic", "periodUnit": "month", "maxCredit": 100, "maxTtpCount": 10},
    )
    assert plan.status_code in (201, 409), plan.text  # 409: another server made it first
    user = http.post("/api/admin/users", headers=admin, json={"email": email, "plan": "Basic"})
    assert user.status_code == 201, user.text
    user_id = user.json()["id"]
    key = http.post(f"/api/admin/users/{user_id}/keys", headers=admin, json={})
    assert key.status_code == 201, key.text
    return user_id, key.json()["key"]


def _buy(http: httpx.Client, user_id: int, amount: float) -> None:
    bought = http.post(
        f"/api/admin/users/{user_id}/credits",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"amount": amount},
    )
    assert bought.status_code == 201, bought.text


def _usage(http: httpx.Client, key: str) -> dict[str, object]:
    response = http.get("/api/users/me/usage", headers={"X-Api-Key": key})
    assert response.status_code == 200, response.text
    usage: dict[str, object] = response.json()
    return usage


def test_two_workers_answer_every_request_and_read_their_writes(
    clean_environ: dict[str, str],
) -> None:
    with running_server(clean_environ, workers=2) as base_url, http_client(base_url) as http:
        user_id, key = _admin_setup(http, "ann@example.com")
        first = _usage(http, key)
        assert first["currentCredit"] == 100
        assert first["additionalCredit"] == 0
        statuses = [
            http.get("/api/users/me/usage", headers={"X-Api-Key": key}).status_code
            for _ in range(50)
        ]
        assert statuses == [200] * 50

        # Each request is a new connection, so writes and reads land on either worker.
        for bought in range(1, 9):
            _buy(http, user_id, 1.5)
            assert _usage(http, key)["additionalCredit"] == 1.5 * bought


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_servers_on_one_postgresql_see_each_others_writes(
    clean_environ: dict[str, str],
) -> None:
    with (
        running_server(clean_environ) as url_a,
        running_server(clean_environ) as url_b,
        http_client(url_a) as server_a,
        http_client(url_b) as server_b,
    ):
        assert url_a != url_b
        user_id, key = _admin_setup(server_a, "ann@example.com")
        assert _usage(server_b, key)["additionalCredit"] == 0
        for bought in range(1, 4):
            _buy(server_a, user_id, 2)
            assert _usage(server_b, key)["additionalCredit"] == 2.5 * bought - 0.5
            _buy(server_b, user_id, 0.5)
            assert _usage(server_a, key)["additionalCredit"] == 2.5 * bought


@pytest.mark.parametrize(
    "workers",
    [
        1,
        2,
    ],
)
def test_sigterm_stops_the_server_with_exit_code_0(tmp_path: Path, workers: int) -> None:
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data")}
    with server_process(environ, workers=workers, cwd=tmp_path) as server:
        with http_client(server.base_url) as http:
            assert http.get("/api-json").status_code == 200
        assert server.stop() == 0
        assert "Traceback" not in server.output()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One server process for the read-only checks below."""
    home = tmp_path_factory.mktemp("served")
    environ = {"FLAMEL_DATA_DIR": str(home / "data")}
    with server_process(environ, cwd=home) as server, http_client(server.base_url) as http:
        yield http


def test_openapi_document_and_docs_are_served_offline(served: httpx.Client) -> None:
    document = served.get("/api-json")
    assert document.status_code == 200
    assert document.headers["content-type"].startswith("application/json")
    spec = document.json()
    assert "openapi" in spec
    assert "/api/users/me/usage" in spec["paths"]

    page = served.get("/api")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "swagger-ui-bundle.js" in page.text
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page.text)
    assert external == [], "the docs page must load nothing from the internet"

    bundle = served.get("/api/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["content-type"]
    assert len(bundle.content) > 100_000
    css = served.get("/api/static/swagger-ui.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    ["/nope", "/api/users/me/usages", "/api/admin/nothing", "/api/static/nope.js"],
)
def test_unknown_route_is_a_404_envelope(served: httpx.Client, path: str) -> None:
    response = served.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert {name: body[name] for name in ("success", "code", "data")} == {
        "success": False,
        "code": 404,
        "data": "not_found",
    }
    assert set(body) <= {"success", "code", "data", "message"}

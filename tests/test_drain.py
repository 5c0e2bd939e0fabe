"""A graceful stop: SIGTERM drains the node, finishes what is in flight, flushes, exits 0.

A real ``flamel-usage serve`` on SQLite with two workers (each must see the drain), told
to drain for three seconds. A charge is in flight across the whole stop: its head and half
its body are sent before the SIGTERM, the rest only once the server no longer takes
connections; it must still be answered, and the stop must wait for it.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from contextlib import ExitStack, closing
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.processes import http_client, server_process

DRAIN_SECONDS = 3.0


def _setup(http: httpx.Client) -> tuple[int, str]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    plan = http.post(
        "/api/admin/plans",
        headers=admin,
        json={"name": "Basic", "periodUnit": "month", "maxCredit": 100, "maxTtpCount": 10},
    )
    assert plan.status_code == 201, plan.text
    user = http.post(
        "/api/admin/users", headers=admin, json={"email": "d@example.com", "plan": "Basic"}
    )
    assert user.status_code == 201, user.text
    key = http.post(f"/api/admin/users/{user.json()['id']}/keys", headers=admin, json={})
    assert key.status_code == 201, key.text
    return user.json()["id"], key.json()["key"]


def _refuses_connections(port: int) -> bool:
    with closing(socket.socket()) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_drains_finishes_in_flight_flushes_and_exits_0(
    environ: dict[str, str], tmp_path: Path
) -> None:
    environ = {**environ, "FLAMEL_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS)}
    with server_process(environ, workers=2, cwd=tmp_path) as server, ExitStack() as sockets:
        with http_client(server.base_url) as http:
            user_id, key = _setup(http)
            assert http.get("/readyz").status_code == 200
            assert http.get("/api/users/me/usage", headers={"X-Api-Key": key}).status_code == 200

            body = orjson.dumps({"userId": user_id, "kind": "ttp"})
            head = (
                "POST /api/admin/charges HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {ADMIN_TOKEN}\r\nIdempotency-Key: in-flight\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            sockets.enter_context(closing(in_flight))
            in_flight.sendall(head + body[:5])
            time.sleep(0.3)  # the request has reached a worker and waits for its body

            stopped_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            # At once: every worker's /readyz says 503, while requests are still served,
            # each telling the client to open its next connection afresh.
            deadline = stopped_at + 1.5
            while http.get("/readyz").status_code != 503:
                assert time.monotonic() < deadline, "/readyz did not turn 503 at once"
            assert [http.get("/readyz").status_code for _ in range(10)] == [503] * 10
            usage = http.get("/api/users/me/usage", headers={"X-Api-Key": key})
            assert usage.status_code == 200
            assert usage.headers["connection"] == "close"
            assert time.monotonic() - stopped_at < DRAIN_SECONDS

        while not _refuses_connections(server.port):
            assert time.monotonic() - stopped_at < DRAIN_SECONDS + 5, "never stopped listening"
            time.sleep(0.05)
        assert time.monotonic() - stopped_at >= DRAIN_SECONDS
        assert server.process.poll() is None, "exited with a request in flight"

        in_flight.sendall(body[5:])
        answer = in_flight.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201 "), answer[:200]
        assert server.process.wait(timeout=10) == 0
        assert "Traceback" not in server.output()

    path = environ["FLAMEL_DATABASE_URL"].removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as db:
        charges = db.execute("SELECT idempotency_key FROM charges").fetchall()
        last_used = db.execute("SELECT last_used_at FROM api_keys").fetchall()
    assert charges == [("in-flight",)]
    assert last_used[0][0] is not None, "keys' last use was not recorded on the way out"

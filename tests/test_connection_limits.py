"""What a connection may cost the server before its request is parsed: the head's size,
its number of lines, and the time it takes to arrive.

These limits live in the server (granian's HTTP/1 settings, or our uvicorn protocol)
and, for a head that arrived whole, in the app, so every test talks raw HTTP/1.1 over a
socket to a real ``flamel-usage serve`` process on 127.0.0.1, under each server, with a
header timeout of one second so that the timeouts show quickly.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.processes import ServerProcess, run_cli, server_process

HEADER_TIMEOUT_S = 1.0
#: Long enough for any closing the server does after HEADER_TIMEOUT_S; never waited in full
#: when the server behaves.
WAIT_S = 5.0
USAGE = "/api/users/me/usage"
CHUNK = b"a" * 65_536


@pytest.fixture(scope="module", params=["granian", "uvicorn"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server with one worker for the whole module, under each server."""
    home = tmp_path_factory.mktemp("limits")
    environ = {
        "FLAMEL_DATA_DIR": str(home / "data"),
        "FLAMEL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLAMEL_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
    }
    with server_process(environ, extra_args=["--server", request.param], cwd=home) as running:
        yield running


def _head(method: str, path: str, *lines: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *lines, "", ""]).encode()


Response = tuple[int, dict[str, str], bytes]


class Connection:
    """One raw HTTP/1.1 connection to the server: bytes out, responses in, in order."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self.sock.makefile("rb")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> Response:
        status_line = self._file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), f"no response, got {status_line!r}"
        headers: dict[str, str] = {}
        while (line := self._file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._file.readline(), 16):
                body += self._file.read(size)
                self._file.readline()
            self._file.readline()
        else:
            body = self._file.read(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        """Whether the server closes the connection (within WAIT_S) without a word more."""
        try:
            return self._file.read(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def _envelope(response: Response, status: int, reason: str) -> None:
    code, headers, body = response
    assert code == status, body
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    envelope: dict[str, Any] = orjson.loads(body)
    assert set(envelope) <= {"success", "code", "data", "message"}
    assert (envelope["success"], envelope["code"], envelope["data"]) == (False, status, reason)


def _rss_bytes(pid: int) -> int:
    """The resident memory of ``pid`` and its children (granian's worker is a child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 + sum(_rss_bytes(int(c)) for c in children)
    raise AssertionError(f"no VmRSS for process {pid}")


def _bytes_sent_before_refusal(server: ServerProcess, total: int) -> int | None:
    """Sends a request whose one header is ``total`` bytes long, a chunk at a time, until
    the server answers, closes or resets; the bytes sent by then, or None if it took it all."""
    deadline = time.monotonic() + WAIT_S
    with Connection(server) as connection:
        # A small send buffer, so that what was sent is about what the server took in.
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, len(CHUNK))
        sent = 0
        try:
            connection.send(_head("GET", USAGE).removesuffix(b"\r\n") + b"X-Filler: ")
            while sent < total and time.monotonic() < deadline:
                if select.select([connection.sock], [], [], 0)[0]:
                    return sent
                connection.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                connection.send(CHUNK)
                sent += len(CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        except TimeoutError:
            return None
    return None


def test_a_header_far_over_the_limit_is_refused_while_it_arrives(server: ServerProcess) -> None:
    """Four connections each try to send a 64 MB header: each is stopped after a small
    part of it, and the worker's memory does not grow with what they sent."""
    total = 64 * 1024 * 1024
    before = _rss_bytes(server.process.pid)
    sent = [_bytes_sent_before_refusal(server, total) for _ in range(4)]
    grown = _rss_bytes(server.process.pid) - before

    assert all(count is not None and count < total // 8 for count in sent), sent
    assert grown < 8 * 1024 * 1024, f"the worker grew by {grown} bytes"


def test_a_complete_head_over_the_limit_is_answered_431_and_changes_nothing(
    server: ServerProcess,
) -> None:
    plan = orjson.dumps({"name": "big", "periodUnit": "month", "maxCredit": 1})
    admin = f"Authorization: Bearer {ADMIN_TOKEN}"
    with Connection(server) as connection:
        connection.send(
            _head(
                "POST",
                "/api/admin/plans",
                admin,
                "Content-Type: application/json",
                f"Content-Length: {len(plan)}",
                f"X-Filler: {'d' * 20_480}",
            )
            + plan
        )
        response = connection.response()
        _envelope(response, 431, "request_header_fields_too_large")
        assert response[1]["connection"] == "close"
        assert connection.closed_by_server()
    with Connection(server) as connection:
        connection.send(_head("GET", "/api/admin/plans", admin))
        status, _, body = connection.response()
    assert status == 200
    assert "big" not in {plan["name"] for plan in orjson.loads(body)["plans"]}


def test_headers_just_under_the_limit_are_read(server: ServerProcess) -> None:
    with Connection(server) as connection:
        connection.send(_head("GET", USAGE, f"X-Filler: {'e' * 15_000}"))
        _envelope(connection.response(), 403, "not_logged_in")


def test_more_than_100_header_lines_are_refused(
    server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    """The Host line and 99 others are read; one line more is refused: by our limit under
    uvicorn, in the envelope; by granian's parser, whose cap is the same 100 lines, with
    a bare 431 and the connection closed."""
    with Connection(server) as connection:
        connection.send(_head("GET", USAGE, *(f"X-Line-{n}: {n}" for n in range(99))))
        _envelope(connection.response(), 403, "not_logged_in")
        connection.send(_head("GET", USAGE, *(f"X-Line-{n}: {n}" for n in range(100))))
        response = connection.response()
        if request.node.callspec.params["server"] == "granian":
            assert response[0] == 431
            assert response[1]["connection"] == "close"
            assert connection.closed_by_server()
        else:
            _envelope(response, 431, "request_header_fields_too_large")


def test_fewer_header_lines_than_granians_cap_are_refused_in_the_envelope(
    tmp_path: Path,
) -> None:
    """Under granian a FLAMEL_MAX_HEADERS below its parser's cap is the app's, in the
    envelope; one above it is refused at start, as granian could not read that many."""
    environ = {"FLAMEL_DATA_DIR": str(tmp_path / "data"), "FLAMEL_MAX_HEADERS": "20"}
    with server_process(environ, cwd=tmp_path) as server, Connection(server) as connection:
        connection.send(_head("GET", USAGE, *(f"X-Line-{n}: {n}" for n in range(19))))
        _envelope(connection.response(), 403, "not_logged_in")
        connection.send(_head("GET", USAGE, *(f"X-Line-{n}: {n}" for n in range(20))))
        _envelope(connection.response(), 431, "request_header_fields_too_large")
    refused = run_cli({**environ, "FLAMEL_MAX_HEADERS": "101"}, "serve", "--port", "1")
    assert refused.returncode != 0
    assert "--server uvicorn" in refused.stderr


def test_an_idle_new_connection_is_closed_after_the_header_timeout(server: ServerProcess) -> None:
    with Connection(server) as connection:
        assert connection.closed_by_server()


def test_a_half_sent_head_is_closed_after_the_header_timeout(server: ServerProcess) -> None:
    with Connection(server) as connection:
        connection.send(b"GET /api/users/me/usage HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-")
        assert connection.closed_by_server()


def test_a_head_sent_a_byte_at_a_time_is_closed_after_the_header_timeout(
    server: ServerProcess,
) -> None:
    """Bytes arriving do not restart the clock: the whole head must arrive in time."""
    head = _head("GET", USAGE, f"X-Filler: {'f' * 100}")
    with Connection(server) as connection:
        for byte in head[: int(WAIT_S / 0.1)]:
            try:
                connection.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return
            if select.select([connection.sock], [], [], 0.1)[0]:
                assert connection.closed_by_server()
                return
    pytest.fail(f"still open after {WAIT_S} s of a byte every 0.1 s")


def test_a_keep_alive_connection_serves_requests_and_times_out_a_half_sent_next_head(
    server: ServerProcess,
) -> None:
    """Each request has its own header timeout: a connection may live longer than one,
    but the head that follows a response must arrive in time too."""
    with Connection(server) as connection:
        started = time.monotonic()
        for _ in range(4):
            connection.send(_head("GET", USAGE))
            _envelope(connection.response(), 403, "not_logged_in")
            time.sleep(HEADER_TIMEOUT_S / 2)
        assert time.monotonic() - started > HEADER_TIMEOUT_S
        connection.send(b"GET /api/users/me/usage HTTP/1.1\r\nHos")
        assert connection.closed_by_server()


def test_a_large_body_and_pipelined_requests_are_not_taken_for_a_large_head(
    server: ServerProcess,
) -> None:
    """A head followed by 60 KB of body in one write, then two requests in another."""
    plan = orjson.dumps({"name": "padded", "periodUnit": "month", "maxCredit": 1})
    body = plan + b" " * 60_000
    with Connection(server) as connection:
        connection.send(
            _head(
                "POST",
                "/api/admin/plans",
                f"Authorization: Bearer {ADMIN_TOKEN}",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
            )
            + body
        )
        assert connection.response()[0] == 201
        connection.send(_head("GET", USAGE) + _head("GET", "/healthz"))
        _envelope(connection.response(), 403, "not_logged_in")
        assert connection.response()[0] == 200

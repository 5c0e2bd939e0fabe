"""The webhook part of ``bench/run.py``: charges/s with one webhook endpoint registered
next to none (target: at least 80%).

The endpoint takes every event type and points at ``Receiver``, an HTTP server in the
bench process on 127.0.0.1 that answers 204 to every POST (the server runs with
``FLAMEL_WEBHOOK_ALLOW_PRIVATE=on`` for it, in both measurements alike), so the
server's dispatchers really send what the charges fire.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

EVENTS = ["usage.threshold_reached", "credit.depleted", "limit.reached", "credit.expiring"]
#: The server settings of both measurements: only the registered endpoint differs.
SERVER_ENV = {"FLAMEL_WEBHOOK_ALLOW_PRIVATE": "on"}


class Receiver:
    """Counts the webhooks it is sent; ``url`` while started."""

    def __init__(self) -> None:
        self.received = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.received += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def register(base_url: str, token: str, url: str) -> int:
    """An endpoint for every event at ``url``; its id."""
    response = httpx.post(
        f"{base_url}/api/admin/webhooks",
        json={"url": url, "events": EVENTS},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    response.raise_for_status()
    endpoint_id: int = response.json()["endpoint"]["id"]
    return endpoint_id


def remove(base_url: str, token: str, endpoint_id: int) -> None:
    response = httpx.delete(
        f"{base_url}/api/admin/webhooks/{endpoint_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()

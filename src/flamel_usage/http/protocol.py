"""uvicorn's HTTP/1.1 protocol (``flamel-usage serve --server uvicorn``): its httptools
one, with what a request may cost before the app sees it bounded.

uvicorn hands a request to the app only once its whole head has arrived, and until then
keeps every byte of it (httptools joins each header's pieces as they come) for as long
as the client takes. So the limits are enforced here, while the bytes arrive: the size
of the head (``FLAMEL_MAX_HEADER_BYTES``) and the time it may take
(``FLAMEL_HEADER_TIMEOUT_SECONDS``). The complete head (its size, its number of lines)
is checked by the app, under either server; granian brings limits of its own in place
of this module (``cli/serve.py``).
"""

from __future__ import annotations

import asyncio
import functools
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from flamel_usage.core.config import Settings
from flamel_usage.core.errors import Refusal
from flamel_usage.http.render import error_response
from flamel_usage.http.security import NOSNIFF


@functools.cache
def _worker_settings() -> Settings:
    """Read once per worker process, from the environment, as the app's (``create_app``)."""
    return Settings.from_environ()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One connection. Its head timer runs from when the connection opens, and again from
    when a response is sent until the next head is complete: bytes trickling in do not
    restart it. A head over a limit is answered 431 in the API's envelope, and nothing
    after it is read.

    A head's size is counted while it arrives: every read that holds nothing but this
    head, so the parser never holds more than the limit plus one read. One that arrived
    in a single read is held to the limit by the app, once complete.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._settings = _worker_settings()
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_begun = 0
        self._in_head = False
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        head_before = self._heads_begun if self._in_head else None
        super().data_received(data)
        all_of_one_head = self._in_head and self._heads_begun == head_before
        if all_of_one_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self._settings.max_header_bytes:
                self._refuse(self._too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._heads_begun += 1
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # uvicorn now waits for the next request
            self._start_head_timer()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer when the parser stops; none when a refusal already went out."""
        if not self.transport.is_closing():
            super().send_400_response(msg)

    def _too_large(self) -> Refusal:
        message = f"the request head exceeds {self._settings.max_header_bytes} bytes"
        return Refusal("request_header_fields_too_large", message)

    def _refuse(self, error: Refusal) -> None:
        """Answer ``error`` and close, not waiting for the rest of the request."""
        response = error_response(error)
        status = f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}".encode()
        headers = [
            *self.server_state.default_headers,
            *response.headers,
            NOSNIFF,
            (b"content-length", str(len(response.body)).encode()),
            (b"connection", b"close"),
        ]
        lines = [status, *(name + b": " + value for name, value in headers), b"", response.body]
        self.transport.write(b"\r\n".join(lines))
        self.transport.close()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(
            self._settings.header_timeout_seconds, self._head_timed_out
        )

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

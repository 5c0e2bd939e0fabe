"""The few HTTP pieces the service needs, on bare ASGI.

The router is hand-written on purpose: measured against a framework's router and
request objects, it is the faster on the usage read's hot path (``scripts/bench``
compares the service with a bare ASGI ceiling). A route is declared with its guard
(``Route``, made by ``http/guards.py``), and the router holds only the guarded
endpoint, so no handler can be reached without its guard.

No framework sits on the hot path of ``GET /api/users/me/usage``: a request is one
dict lookup to route, one handler, one response. Every failure, ours or the client's,
is a ``Refusal`` that leaves through ``render.error_response``, so each is in the
contract's envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple
from urllib.parse import unquote, unquote_plus

import orjson

from flamel_usage.core.errors import Refusal
from flamel_usage.http.context import Services

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024

JSON_HEADERS = (
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"no-store"),
)


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def send(self, send: Send, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Send it, with ``extra_headers`` (the ones every response gets) after its own."""
        headers = [*self.headers, *extra_headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(
    data: object, status: int = 200, headers: Iterable[tuple[bytes, bytes]] = ()
) -> Response:
    return Response(status, orjson.dumps(data), [*JSON_HEADERS, *headers])


def empty_response(status: int = 204, headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    return Response(status, b"", [(b"cache-control", b"no-store"), *headers])


class Request:
    """One HTTP request: method, path, headers (lower-case names), read from the scope
    once for everything the app asks of them (the request id, the head's limits, the
    guard's credential), and its route's ``params`` once routed.

    Of a header sent on several lines the first line wins, except two that are joined
    in order: ``Cookie`` with ``"; "``, as Node does before Express reads it, so that a
    session cookie on any line is found; and ``forwarded_header`` (the trusted proxy's
    client address list) with ``", "``, so that its last address is the one the proxy
    added, also when it added a line of its own.
    """

    __slots__ = (
        "_receive",
        "head_bytes",
        "header_lines",
        "headers",
        "method",
        "params",
        "path",
        "peer",
        "query_string",
        "scheme",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        forwarded_header: str | None = None,
    ) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query_string: bytes = scope.get("query_string", b"")
        self.params: dict[str, str] = {}
        self.scheme: str = scope.get("scheme", "http")
        self._receive = receive
        client = scope.get("client")
        self.peer: str = client[0] if client else "unknown"
        headers: dict[str, str] = {}
        raw_headers = scope["headers"]
        #: The head's size as FLAMEL_MAX_HEADER_BYTES counts it: target, names, values.
        size = len(scope.get("raw_path") or b"") + len(self.query_string)
        for raw_name, raw_value in raw_headers:
            size += len(raw_name) + len(raw_value)
            name = raw_name.decode("latin-1").lower()
            if name not in headers:
                headers[name] = raw_value.decode("latin-1")
            elif name == "cookie":
                headers[name] += "; " + raw_value.decode("latin-1")
            elif name == forwarded_header:
                headers[name] += ", " + raw_value.decode("latin-1")
        self.headers = headers
        self.head_bytes = size
        self.header_lines = len(raw_headers)

    async def body(self) -> bytes:
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise Refusal("payload_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Refusal("payload_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def query_value(self, name: str) -> str | None:
        """The first value of ``name`` in the query string, if it is there.

        Read field by field, never parsed whole into a dict: any query string, of any
        length and any number of fields, gets an answer (a cap on the number of fields
        made 17 of them an error).
        """
        for pair in self.query_string.split(b"&"):
            key, _, value = pair.partition(b"=")
            if unquote_plus(key.decode("latin-1")) == name:
                return unquote_plus(value.decode("latin-1"))
        return None

    @property
    def is_https(self) -> bool:
        """Served over HTTPS: directly, or behind a proxy that says so in X-Forwarded-Proto."""
        forwarded = self.headers.get("x-forwarded-proto", "").split(",", 1)[0].strip().lower()
        return self.scheme == "https" or forwarded == "https"

    async def json_bytes(self) -> bytes:
        """The body, refused unless it is sent as JSON; ``http/bodies`` decodes it."""
        content_type = self.headers.get("content-type", "application/json")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise Refusal("unsupported_media_type", "send the body as application/json")
        return await self.body()


Handler = Callable[[Request, Services], Awaitable[Response]]


class Guard(Enum):
    """Who may call a route; enforced before its handler runs."""

    #: Anyone: the handler decides alone (sign-in, docs, health, the pages).
    PUBLIC = "public"
    #: A customer by ``X-Api-Key`` or by the session cookie.
    CUSTOMER = "customer"
    #: A customer by the session cookie only: a request carrying a key is refused.
    SESSION = "session"
    #: The operator, by ``Authorization: Bearer <FLAMEL_ADMIN_TOKEN>``.
    ADMIN = "admin"


class Route(NamedTuple):
    """One method and path pattern, its guard, and the endpoint: the guard, then the handler."""

    method: str
    path: str
    guard: Guard
    endpoint: Handler


class Router:
    """Exact paths in a dict, patterned paths (``/users/{userId}/keys``) by segments."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._patterns: list[tuple[tuple[str, ...], str, dict[str, Handler]]] = []
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        method, path, _, endpoint = route
        if "{" not in path:
            self._exact.setdefault(path, {})[method] = endpoint
            return
        segments = tuple(path.strip("/").split("/"))
        for known, _, methods in self._patterns:
            if known == segments:
                methods[method] = endpoint
                return
        self._patterns.append((segments, path, {method: endpoint}))

    def resolve(self, path: str, raw_path: bytes) -> tuple[str, dict[str, Handler], dict[str, str]]:
        """The route (its pattern, e.g. ``/users/{userId}/keys``), its endpoints by method
        and the path parameters, decoded per segment (so a parameter may hold an encoded
        ``/``: an idempotency key, say); ``not_found`` when no route has this path."""
        methods = self._exact.get(path)
        if methods is not None:
            return path, methods, {}
        return self._match_pattern(raw_path.decode("latin-1"))

    @staticmethod
    def handler(methods: dict[str, Handler], method: str) -> Handler:
        """The route's endpoint (guard and handler) for ``method`` (``HEAD`` falls back
        to ``GET``)."""
        handler = methods.get(method)
        if handler is None:
            if method == "HEAD" and "GET" in methods:
                return methods["GET"]
            allowed = {*methods, *(["HEAD"] if "GET" in methods else [])}
            raise Refusal("method_not_allowed", f"{method} is not allowed here", allowed=allowed)
        return handler

    def _match_pattern(self, path: str) -> tuple[str, dict[str, Handler], dict[str, str]]:
        segments = path.strip("/").split("/")
        for pattern, route, methods in self._patterns:
            if len(pattern) != len(segments):
                continue
            params: dict[str, str] = {}
            for expected, actual in zip(pattern, segments, strict=True):
                if expected.startswith("{"):
                    if not actual:
                        break
                    try:
                        params[expected[1:-1]] = unquote(actual, errors="strict")
                    except UnicodeDecodeError:
                        raise Refusal("bad_request", "the path is not valid UTF-8") from None
                elif expected != actual:
                    break
            else:
                return route, methods, params
        raise Refusal("not_found", "no such route")

"""``Client`` and ``AsyncClient``: the usage read and its history over httpx, with retries."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any, Literal, NoReturn, Protocol, Self, TypeVar

import httpx

from .. import __version__
from ._exceptions import (
    FlamelError,
    InvalidResponse,
    RateLimited,
    TransportError,
    exception_class,
)
from ._models import UsageHistory, UsageInfo

__all__ = ["DEFAULT_BASE_URL", "USER_AGENT", "AsyncClient", "Client"]

#: The contract's "Local" server, where ``flamel-usage serve`` listens by default.
DEFAULT_BASE_URL = "http://127.0.0.1:4010"
USER_AGENT = f"flamel-usage-python/{__version__}"
USAGE_PATH = "/api/users/me/usage"
HISTORY_PATH = "/api/users/me/usage/history"

#: Statuses worth another try: the server or a proxy is briefly unable to answer.
_RETRY_STATUSES = frozenset({502, 503, 504})
#: httpx failures worth another try (not, e.g., an unsupported scheme or a bad header).
_RETRY_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
#: Header values the SDK sends as given: visible ASCII, no separators a cookie forbids.
_TOKEN = re.compile(r"[!#-+\--:<-\[\]-~]+")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _check_token(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not _TOKEN.fullmatch(value):
        raise ValueError(f'{name} must be non-empty visible ASCII without ; , \\ " or spaces')
    return value


def _check_base_url(base_url: object) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, not {type(base_url).__name__}")
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as error:
        raise ValueError(f"base_url is not a URL: {base_url!r} ({error})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http:// or https:// URL: {base_url!r}")
    return base_url


def _check_day_or_instant(value: object, name: str) -> str | None:
    """The query value of a range bound: a date as ``YYYY-MM-DD`` (a day of the billing
    zone, as the server reads it) or an aware datetime as ISO 8601."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be an aware datetime (with tzinfo) or a date")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{name} must be a date, a datetime or None, not {type(value).__name__}")


def _history_query(from_: object, to: object, granularity: object) -> dict[str, str]:
    """The query of ``history()``; the bounds left out are the server's to choose."""
    if granularity not in ("day", "hour"):
        raise ValueError(f"granularity must be 'day' or 'hour', not {granularity!r:.40}")
    bounds = {"from": _check_day_or_instant(from_, "from_"), "to": _check_day_or_instant(to, "to")}
    query = {name: value for name, value in bounds.items() if value is not None}
    query["granularity"] = str(granularity)
    return query


def _check_number(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite {'positive' if positive else 'non-negative'}")
    return float(value)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _json(response: httpx.Response) -> Any:
    """The decoded body; ValueError (or RecursionError) when it is not strict JSON."""
    return json.loads(response.content, parse_constant=_reject_constant)


def _text(response: httpx.Response) -> str:
    try:
        return response.text[: InvalidResponse.EXCERPT]
    except (LookupError, ValueError):
        return response.content[: InvalidResponse.EXCERPT].decode("utf-8", "replace")


def _envelope(response: httpx.Response) -> tuple[str | None, str | None]:
    """``(reason, message)`` of the contract's error envelope, (None, None) without one."""
    try:
        data = _json(response)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict) or data.get("success") is not False:
        return None, None
    code, reason, message = data.get("code"), data.get("data"), data.get("message")
    if type(code) is not int or code != response.status_code or not isinstance(reason, str):
        return None, None
    return reason, message if isinstance(message, str) else None


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delay or HTTP date), None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _error(response: httpx.Response) -> FlamelError:
    """The exception for an answer that is not ``200``."""
    status = response.status_code
    reason, message = _envelope(response)
    where = f"{response.request.method} {response.request.url}"
    text = f"{where}: {status} {reason or response.reason_phrase or 'error'}"
    if message:
        text += f": {message}"
    common: dict[str, Any] = {"status": status, "reason": reason, "response": response}
    kind = exception_class(status, reason)
    if kind is RateLimited:
        return RateLimited(text, retry_after=_retry_after(response), **common)
    if kind is InvalidResponse:
        return InvalidResponse(
            f"{where}: unexpected {status} without the error envelope",
            body=_text(response),
            **common,
        )
    return kind(text, **common)


_Record = TypeVar("_Record", UsageInfo, UsageHistory)
_Parsed = TypeVar("_Parsed", UsageInfo, UsageHistory, covariant=True)
_Granularity = Literal["day", "hour"]


class _Parse(Protocol[_Parsed]):
    """A record's ``from_dto``: the decoded body in, the record out."""

    def __call__(self, data: object, *, body: str | None = None) -> _Parsed: ...


def _record(response: httpx.Response, parse: _Parse[_Record]) -> _Record:
    """The record (``parse`` of the JSON) of a ``200``, else the error the answer stands for."""
    if response.status_code != 200:
        raise _error(response)
    where = f"{response.request.method} {response.request.url}"
    body = _text(response)
    try:
        data = _json(response)
    except (ValueError, RecursionError):
        raise InvalidResponse(
            f"{where}: 200 with a body that is not JSON",
            body=body,
            status=200,
            response=response,
        ) from None
    try:
        return parse(data, body=body)
    except InvalidResponse as error:
        error.message = f"{where}: {error.message}"
        error.status, error.response = 200, response
        raise


def _request_error(error: httpx.HTTPError, request: str) -> FlamelError:
    if isinstance(error, httpx.DecodingError):  # a Content-Encoding that does not decode
        return InvalidResponse(f"{request}: body could not be decoded: {error}")
    detail = str(error) or "no detail"
    return TransportError(f"{request}: {type(error).__name__}: {detail}")


class _BaseClient:
    #: The longest ``Retry-After`` waited for; a longer one raises at once.
    _max_retry_after = 60.0

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str,
        session_cookie: str | None,
        timeout: float,
        retries: int,
        backoff: float,
    ) -> None:
        self._base_url = _check_base_url(base_url)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key is not None:
            headers["X-Api-Key"] = _check_token(api_key, "api_key")
        if session_cookie is not None:
            headers["Cookie"] = f"connect.sid={_check_token(session_cookie, 'session_cookie')}"
        self._headers = headers
        self._timeout = _check_number(timeout, "timeout", positive=True)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"retries must be an int, not {type(retries).__name__}")
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self._retries = retries
        self._backoff = _check_number(backoff, "backoff")
        self._credentials = (
            "api_key+session_cookie"
            if api_key is not None and session_cookie is not None
            else "api_key"
            if api_key is not None
            else "session_cookie"
            if session_cookie is not None
            else "none"
        )

    @property
    def base_url(self) -> str:
        return self._base_url

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} base_url={self._base_url!r}"
            f" credentials={self._credentials} retries={self._retries}>"
        )

    def _where(self, path: str) -> str:
        return f"GET {self._base_url.rstrip('/')}{path}"

    def _retry_delay(self, attempt: int, error: FlamelError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None: raise ``error``."""
        if attempt >= self._retries:
            return None
        delay = self._backoff * 2.0**attempt
        if isinstance(error, TransportError):
            return delay if isinstance(error.__cause__, _RETRY_TRANSPORT) else None
        if isinstance(error, RateLimited) or error.status in _RETRY_STATUSES:
            told = None if error.response is None else _retry_after(error.response)
            if told is None:
                return delay
            return told if told <= self._max_retry_after else None
        return None


class Client(_BaseClient):
    """A synchronous client of ``GET /api/users/me/usage`` and its history. See the
    package docs."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session_cookie: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url=base_url,
            session_cookie=session_cookie,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        #: How the client waits between attempts (tests replace it).
        self._sleep: Callable[[float], object] = time.sleep
        self._http = httpx.Client(
            base_url=self._base_url,
            headers=self._headers,
            timeout=self._timeout,
            transport=transport,
            follow_redirects=False,
        )

    def usage(self) -> UsageInfo:
        """The caller's usage; raises a ``FlamelError`` subclass on any failure."""
        return self._read(USAGE_PATH, {}, UsageInfo.from_dto)

    def history(
        self,
        from_: date | datetime | None = None,
        to: date | datetime | None = None,
        granularity: _Granularity = "day",
    ) -> UsageHistory:
        """The caller's spending per day or hour over ``[from_, to)``, by default the
        current period; raises a ``FlamelError`` subclass on any failure."""
        query = _history_query(from_, to, granularity)
        return self._read(HISTORY_PATH, query, UsageHistory.from_dto)

    def _read(self, path: str, query: dict[str, str], parse: _Parse[_Record]) -> _Record:
        """An idempotent ``GET``, tried again as the package docs say."""
        attempt = 0
        while True:
            try:
                return self._attempt(path, query, parse)
            except FlamelError as error:
                delay = self._retry_delay(attempt, error)
                if delay is None:
                    raise
            self._sleep(delay)
            attempt += 1

    def _attempt(self, path: str, query: dict[str, str], parse: _Parse[_Record]) -> _Record:
        try:
            response = self._http.get(path, params=query)
        except httpx.HTTPError as error:
            raise _request_error(error, self._where(path)) from error
        return _record(response, parse)

    def close(self) -> None:
        """Close the connections (and the transport). The client cannot be used after."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """The asyncio twin of ``Client``: ``await client.usage()``, ``await client.history()``,
    ``await client.aclose()``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session_cookie: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url=base_url,
            session_cookie=session_cookie,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        #: How the client waits between attempts (tests replace it).
        self._sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers=self._headers,
            timeout=self._timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def usage(self) -> UsageInfo:
        """The caller's usage; raises a ``FlamelError`` subclass on any failure."""
        return await self._read(USAGE_PATH, {}, UsageInfo.from_dto)

    async def history(
        self,
        from_: date | datetime | None = None,
        to: date | datetime | None = None,
        granularity: _Granularity = "day",
    ) -> UsageHistory:
        """The caller's spending per day or hour over ``[from_, to)``, by default the
        current period; raises a ``FlamelError`` subclass on any failure."""
        query = _history_query(from_, to, granularity)
        return await self._read(HISTORY_PATH, query, UsageHistory.from_dto)

    async def _read(self, path: str, query: dict[str, str], parse: _Parse[_Record]) -> _Record:
        """An idempotent ``GET``, tried again as the package docs say."""
        attempt = 0
        while True:
            try:
                return await self._attempt(path, query, parse)
            except FlamelError as error:
                delay = self._retry_delay(attempt, error)
                if delay is None:
                    raise
            await self._sleep(delay)
            attempt += 1

    async def _attempt(self, path: str, query: dict[str, str], parse: _Parse[_Record]) -> _Record:
        try:
            response = await self._http.get(path, params=query)
        except httpx.HTTPError as error:
            raise _request_error(error, self._where(path)) from error
        return _record(response, parse)

    async def aclose(self) -> None:
        """Close the connections (and the transport). The client cannot be used after."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

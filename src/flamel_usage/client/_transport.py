"""What every client of the SDK shares: the options, one call's request, and the retry
loop (sync and async).

A client method describes its request as a ``Call``: the method and path, the body, the
status that means success, how to read that answer, and whether the request may reach
the server twice. The loop sends it, retries what may be retried within the deadline,
and raises the ``FlamelError`` an answer or a failure stands for.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import httpx

from .. import __version__
from ._answers import error_for, retry_after
from ._exceptions import FlamelError, InvalidResponse, RateLimited, TransportError

#: The contract's "Local" server, where ``flamel-usage serve`` listens by default.
DEFAULT_BASE_URL = "http://127.0.0.1:4010"
USER_AGENT = f"flamel-usage-python/{__version__}"

#: Statuses worth another try: the server or a proxy is briefly unable to answer.
_RETRY_STATUSES = frozenset({502, 503, 504})
#: httpx failures worth another try (not, e.g., an unsupported scheme or a bad header).
_RETRY_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
#: httpx failures before any byte of the request left: no connection was made.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: The longest wait between two attempts when the server does not say how long.
_MAX_BACKOFF = 10.0
#: The longest ``Retry-After`` waited for; a longer one raises at once.
_MAX_RETRY_AFTER = 60.0
#: Header values the SDK sends as given: visible ASCII, no separators a cookie forbids.
_TOKEN = re.compile(r"[!#-+\--:<-\[\]-~]+")

_T = TypeVar("_T")


def check_token(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not _TOKEN.fullmatch(value):
        raise ValueError(f'{name} must be non-empty visible ASCII without ; , \\ " or spaces')
    return value


def check_number(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite {'positive' if positive else 'non-negative'}")
    return float(value)


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


def _check_retries(retries: object) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries must be an int, not {type(retries).__name__}")
    if retries < 0:
        raise ValueError("retries must be 0 or more")
    return retries


@dataclass(frozen=True, slots=True)
class Call(Generic[_T]):
    """One call of the API: its request, the status that means success and how to read
    that answer (any other is an error), and whether the request may reach the server
    twice (``idempotent``): only then is it sent again after it may have arrived."""

    method: str
    path: str
    read: Callable[[httpx.Response], _T]
    expect: int = 200
    params: Mapping[str, str] = field(default_factory=dict)
    json: Mapping[str, object] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = True
    #: The charge's key, attached to any error of the call (``FlamelError.idempotency_key``).
    idempotency_key: str | None = None


class BaseClient:
    """The options every client takes, and the rule of when to try a call again."""

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        shown: str,
        base_url: str,
        timeout: float,
        retries: int,
        backoff: float,
        deadline: float,
    ) -> None:
        self._base_url = _check_base_url(base_url)
        #: What ``repr`` shows besides the URL and the retries: never a credential.
        self._shown = shown
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **headers}
        self._timeout = check_number(timeout, "timeout", positive=True)
        self._retries = _check_retries(retries)
        self._backoff = check_number(backoff, "backoff")
        self._deadline = check_number(deadline, "deadline", positive=True)
        #: Where the deadline's time is read (tests replace it).
        self._clock: Callable[[], float] = time.monotonic

    @property
    def base_url(self) -> str:
        return self._base_url

    def __repr__(self) -> str:
        parts = [f"base_url={self._base_url!r}", self._shown, f"retries={self._retries}"]
        return f"<{type(self).__name__} {' '.join(part for part in parts if part)}>"

    def _where(self, call: Call[Any]) -> str:
        return f"{call.method} {self._base_url.rstrip('/')}{call.path}"

    def _attempt_timeout(self, started: float) -> float:
        """Each attempt's timeout, cut short so the call ends by its deadline."""
        return max(min(self._timeout, self._deadline - (self._clock() - started)), 0.001)

    def _retry_delay(
        self, call: Call[Any], attempt: int, error: FlamelError, started: float
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None: raise ``error``."""
        if attempt >= self._retries:
            return None
        delay = self._wait(call, attempt, error)
        if delay is None or self._clock() - started + delay >= self._deadline:
            return None
        return delay

    def _wait(self, call: Call[Any], attempt: int, error: FlamelError) -> float | None:
        """How long to wait before trying ``error``'s call again, None if it may not be.

        A call that is not idempotent is sent again only when it surely did not reach
        the server (no connection was made) or the server refused it before doing
        anything (``429``).
        """
        delay = min(self._backoff * 2.0 ** min(attempt, 32), _MAX_BACKOFF)  # 2**1024 overflows
        if isinstance(error, TransportError):
            healing = _RETRY_TRANSPORT if call.idempotent else _NOT_SENT
            return delay if isinstance(error.__cause__, healing) else None
        if isinstance(error, RateLimited) or (call.idempotent and error.status in _RETRY_STATUSES):
            told = None if error.response is None else retry_after(error.response)
            if told is None:
                return delay
            return told if told <= _MAX_RETRY_AFTER else None
        return None

    def _failure(self, call: Call[Any], error: httpx.HTTPError) -> FlamelError:
        if isinstance(error, httpx.DecodingError):  # a Content-Encoding that does not decode
            return InvalidResponse(f"{self._where(call)}: body could not be decoded: {error}")
        detail = str(error) or "no detail"
        return TransportError(f"{self._where(call)}: {type(error).__name__}: {detail}")


def _answer(call: Call[_T], response: httpx.Response) -> httpx.Response:
    if response.status_code != call.expect:
        raise error_for(response)
    return response


class SyncBase(BaseClient):
    """A client over ``httpx.Client``: ``_send`` runs a ``Call`` with its retries."""

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        shown: str,
        base_url: str,
        timeout: float,
        retries: int,
        backoff: float,
        deadline: float,
        transport: httpx.BaseTransport | None,
    ) -> None:
        super().__init__(
            headers,
            shown=shown,
            base_url=base_url,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            deadline=deadline,
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

    def _send(self, call: Call[_T]) -> _T:
        """The call's answer, read; its ``FlamelError`` (with the call's idempotency key)."""
        try:
            return call.read(self._retried(call))
        except FlamelError as error:
            error.idempotency_key = call.idempotency_key
            raise

    def _retried(self, call: Call[Any]) -> httpx.Response:
        started, attempt = self._clock(), 0
        while True:
            try:
                return _answer(call, self._attempt(call, self._attempt_timeout(started)))
            except FlamelError as error:
                delay = self._retry_delay(call, attempt, error, started)
                if delay is None:
                    raise
            self._sleep(delay)
            attempt += 1

    def _attempt(self, call: Call[Any], timeout: float) -> httpx.Response:
        try:
            return self._http.request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                headers=call.headers,
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            raise self._failure(call, error) from error

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


class AsyncBase(BaseClient):
    """The asyncio twin of ``SyncBase``, over ``httpx.AsyncClient``."""

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        shown: str,
        base_url: str,
        timeout: float,
        retries: int,
        backoff: float,
        deadline: float,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        super().__init__(
            headers,
            shown=shown,
            base_url=base_url,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            deadline=deadline,
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

    async def _send(self, call: Call[_T]) -> _T:
        """The call's answer, read; its ``FlamelError`` (with the call's idempotency key)."""
        try:
            return call.read(await self._retried(call))
        except FlamelError as error:
            error.idempotency_key = call.idempotency_key
            raise

    async def _retried(self, call: Call[Any]) -> httpx.Response:
        started, attempt = self._clock(), 0
        while True:
            try:
                return _answer(call, await self._attempt(call, self._attempt_timeout(started)))
            except FlamelError as error:
                delay = self._retry_delay(call, attempt, error, started)
                if delay is None:
                    raise
            await self._sleep(delay)
            attempt += 1

    async def _attempt(self, call: Call[Any], timeout: float) -> httpx.Response:
        try:
            return await self._http.request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                headers=call.headers,
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            raise self._failure(call, error) from error

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

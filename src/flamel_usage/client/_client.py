"""``Client`` and ``AsyncClient``: a customer's usage read and its history, with retries."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import httpx

from ._answers import json_record
from ._models import UsageHistory, UsageInfo
from ._transport import DEFAULT_BASE_URL, USER_AGENT, AsyncBase, Call, SyncBase, check_token

__all__ = ["DEFAULT_BASE_URL", "USER_AGENT", "AsyncClient", "Client"]

USAGE_PATH = "/api/users/me/usage"
HISTORY_PATH = "/api/users/me/usage/history"

_Granularity = Literal["day", "hour"]


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


def _credentials(api_key: str | None, session_cookie: str | None) -> dict[str, str]:
    """The headers of the caller's credentials: ``X-Api-Key``, the session cookie, both."""
    headers = {}
    if api_key is not None:
        headers["X-Api-Key"] = check_token(api_key, "api_key")
    if session_cookie is not None:
        headers["Cookie"] = f"connect.sid={check_token(session_cookie, 'session_cookie')}"
    return headers


def _credentials_shown(api_key: str | None, session_cookie: str | None) -> str:
    """Which credentials a client holds, for ``repr``: never their values."""
    held = [
        name
        for name, value in (("api_key", api_key), ("session_cookie", session_cookie))
        if value is not None
    ]
    return "+".join(held) or "none"


_USAGE = Call("GET", USAGE_PATH, json_record(UsageInfo.from_dto))


def _history_call(from_: object, to: object, granularity: object) -> Call[UsageHistory]:
    query = _history_query(from_, to, granularity)
    return Call("GET", HISTORY_PATH, json_record(UsageHistory.from_dto), params=query)


class Client(SyncBase):
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
        deadline: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            _credentials(api_key, session_cookie),
            shown=f"credentials={_credentials_shown(api_key, session_cookie)}",
            base_url=base_url,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            deadline=deadline,
            transport=transport,
        )

    def usage(self) -> UsageInfo:
        """The caller's usage; raises a ``FlamelError`` subclass on any failure."""
        return self._send(_USAGE)

    def history(
        self,
        from_: date | datetime | None = None,
        to: date | datetime | None = None,
        granularity: _Granularity = "day",
    ) -> UsageHistory:
        """The caller's spending per day or hour over ``[from_, to)``, by default the
        current period; raises a ``FlamelError`` subclass on any failure."""
        return self._send(_history_call(from_, to, granularity))


class AsyncClient(AsyncBase):
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
        deadline: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            _credentials(api_key, session_cookie),
            shown=f"credentials={_credentials_shown(api_key, session_cookie)}",
            base_url=base_url,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            deadline=deadline,
            transport=transport,
        )

    async def usage(self) -> UsageInfo:
        """The caller's usage; raises a ``FlamelError`` subclass on any failure."""
        return await self._send(_USAGE)

    async def history(
        self,
        from_: date | datetime | None = None,
        to: date | datetime | None = None,
        granularity: _Granularity = "day",
    ) -> UsageHistory:
        """The caller's spending per day or hour over ``[from_, to)``, by default the
        current period; raises a ``FlamelError`` subclass on any failure."""
        return await self._send(_history_call(from_, to, granularity))

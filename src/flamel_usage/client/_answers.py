"""Reading an answer: the record a success carries, or the ``FlamelError`` an error
answer stands for (through ``error_class``, the one mapping of reasons to exceptions)."""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import httpx

from ._exceptions import FlamelError, InvalidResponse, RateLimited, error_class

__all__ = ["error_for", "json_record", "no_content", "retry_after"]

_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")

_T = TypeVar("_T")


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


def retry_after(response: httpx.Response) -> float | None:
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


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url}"


def error_for(response: httpx.Response) -> FlamelError:
    """The exception for an answer other than the call's success."""
    status = response.status_code
    reason, message = _envelope(response)
    kind = error_class(status, reason)
    common: dict[str, Any] = {"status": status, "reason": reason, "response": response}
    if kind is InvalidResponse:
        return InvalidResponse(
            f"{_where(response)}: unexpected {status} without the error envelope",
            body=_text(response),
            **common,
        )
    text = f"{_where(response)}: {status} {reason or response.reason_phrase or 'error'}"
    if message:
        text += f": {message}"
    if kind is RateLimited:
        return RateLimited(text, retry_after=retry_after(response), **common)
    return kind(text, **common)


def json_record(parse: Callable[[object], _T]) -> Callable[[httpx.Response], _T]:
    """A reader of a JSON answer: ``parse`` of the decoded body, or ``InvalidResponse``
    naming the request, with the body's excerpt."""

    def read(response: httpx.Response) -> _T:
        status, body = response.status_code, _text(response)
        try:
            data = _json(response)
        except (ValueError, RecursionError):
            raise InvalidResponse(
                f"{_where(response)}: {status} with a body that is not JSON",
                body=body,
                status=status,
                response=response,
            ) from None
        try:
            return parse(data)
        except InvalidResponse as error:
            error.message = f"{_where(response)}: {error.message}"
            error.status, error.response, error.body = status, response, body
            raise

    return read


def no_content(response: httpx.Response) -> None:
    """The reader of a ``204``: there is nothing to read."""

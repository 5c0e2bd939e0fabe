"""``UsageInfo``: the contract's ``UsageInfoDto``, parsed strictly into Python values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar

from ._exceptions import InvalidResponse

__all__ = ["UsageInfo"]

_REQUIRED = (
    "currentCredit",
    "additionalCredit",
    "maxCredit",
    "period",
    "ttpCount",
    "maxTtpCount",
    "editCount",
    "maxEditCount",
)


def _fail(message: str, body: str) -> InvalidResponse:
    return InvalidResponse(f"invalid UsageInfoDto: {message}", body=body)


def _number(data: Mapping[str, Any], name: str, body: str) -> int | float:
    value = data[name]
    # bool is an int in Python, never a number in the contract.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{name} is not a number: {value!r:.80}", body)
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(f"{name} is not a finite number: {value!r}", body)
    return value


def _count(data: Mapping[str, Any], name: str, body: str) -> int:
    value = _number(data, name, body)
    if isinstance(value, float):
        if not value.is_integer():
            raise _fail(f"{name} is not a whole number: {value!r}", body)
        return int(value)
    return value


def _optional_count(data: Mapping[str, Any], name: str, body: str) -> int | None:
    return None if data[name] is None else _count(data, name, body)


def _instant(text: str) -> datetime | None:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None


def _interval(value: object) -> tuple[datetime, datetime] | None:
    """``(start, end)`` of an ISO 8601 ``<start>/<end>`` with offsets, else None."""
    if not isinstance(value, str) or value.count("/") != 1:
        return None
    start, end = (_instant(part) for part in value.split("/"))
    if start is None or end is None or not start < end:
        return None
    return start, end


@dataclass(frozen=True, slots=True)
class UsageInfo:
    """What ``GET /api/users/me/usage`` answered, with the contract's fields in snake_case.

    Credit amounts are ``int`` when the server sent a whole number and ``float``
    otherwise (``100``, ``2.5``); counts are ``int``. ``max_ttp_count`` and
    ``max_edit_count`` are None when the plan has no limit, ``postpaid_usage_count`` is
    None for prepaid accounts. ``raw`` is the body as sent (a read-only mapping with the
    contract's camelCase names, including any field this SDK does not know), and
    ``info["currentCredit"]`` reads it.
    """

    current_credit: float
    additional_credit: float
    max_credit: float
    period: str
    ttp_count: int
    max_ttp_count: int | None
    edit_count: int
    max_edit_count: int | None
    postpaid_usage_count: float | None
    raw: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )

    #: Not iterable: it is a record, ``raw`` is the mapping.
    __iter__: ClassVar[None] = None

    def __post_init__(self) -> None:
        if not self.raw:  # made by hand: the DTO these fields stand for
            dto = {
                "currentCredit": self.current_credit,
                "additionalCredit": self.additional_credit,
                "maxCredit": self.max_credit,
                "period": self.period,
                "ttpCount": self.ttp_count,
                "maxTtpCount": self.max_ttp_count,
                "editCount": self.edit_count,
                "maxEditCount": self.max_edit_count,
                "postpaidUsageCount": self.postpaid_usage_count,
            }
            object.__setattr__(self, "raw", MappingProxyType(dto))

    @classmethod
    def from_dto(cls, data: object, *, body: str | None = None) -> UsageInfo:
        """Parse a decoded ``UsageInfoDto``; ``InvalidResponse`` when it is not one.

        Every required field must be present with its type (numbers are JSON numbers,
        never strings or booleans; counts are whole); ``period`` must be
        ``<start>/<end>``, both ISO 8601 with an offset, start before end. Fields the
        contract does not define are ignored (kept in ``raw``).
        """
        text = repr(data) if body is None else body
        if not isinstance(data, dict):
            raise _fail(f"expected a JSON object, got {type(data).__name__}", text)
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise _fail(f"missing {', '.join(missing)}", text)
        if _interval(data["period"]) is None:
            raise _fail(
                f"period is not an ISO 8601 <start>/<end> with offsets: {data['period']!r:.80}",
                text,
            )
        postpaid = data.get("postpaidUsageCount")
        return cls(
            current_credit=_number(data, "currentCredit", text),
            additional_credit=_number(data, "additionalCredit", text),
            max_credit=_number(data, "maxCredit", text),
            period=data["period"],
            ttp_count=_count(data, "ttpCount", text),
            max_ttp_count=_optional_count(data, "maxTtpCount", text),
            edit_count=_count(data, "editCount", text),
            max_edit_count=_optional_count(data, "maxEditCount", text),
            postpaid_usage_count=(
                None if postpaid is None else _number(data, "postpaidUsageCount", text)
            ),
            raw=MappingProxyType(dict(data)),
        )

    def __getitem__(self, name: str) -> Any:
        """The raw field ``name`` (camelCase, as the contract spells it)."""
        return self.raw[name]

    def __contains__(self, name: object) -> bool:
        return name in self.raw

    @property
    def total_credit_left(self) -> float:
        """Plan credit left plus purchased credit left: what can still be spent."""
        return self.current_credit + self.additional_credit

    @property
    def fraction_used(self) -> float:
        """The share of this period's plan credit already used, from 0.0 to 1.0
        (0.0 when the plan grants no credit)."""
        if self.max_credit == 0:
            return 0.0
        used = (self.max_credit - self.current_credit) / self.max_credit
        return min(max(float(used), 0.0), 1.0)

    @property
    def period_start(self) -> datetime:
        """The start of the current period (an aware datetime, with the server's offset)."""
        return self._bounds()[0]

    @property
    def period_end(self) -> datetime:
        """The end of the current period (exclusive; an aware datetime)."""
        return self._bounds()[1]

    @property
    def ttp_left(self) -> int | None:
        """TTP operations left in this period (never negative), None when unlimited."""
        if self.max_ttp_count is None:
            return None
        return max(self.max_ttp_count - self.ttp_count, 0)

    @property
    def edits_left(self) -> int | None:
        """Edits left in this period (never negative), None when unlimited."""
        if self.max_edit_count is None:
            return None
        return max(self.max_edit_count - self.edit_count, 0)

    @property
    def is_postpaid(self) -> bool:
        """True for a postpaid (enterprise) account: one with ``postpaidUsageCount``."""
        return self.postpaid_usage_count is not None

    def _bounds(self) -> tuple[datetime, datetime]:
        bounds = _interval(self.period)
        if bounds is None:
            raise ValueError(f"period is not an ISO 8601 interval: {self.period!r}")
        return bounds

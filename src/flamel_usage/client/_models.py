"""The answers' records, parsed strictly into Python values: ``UsageInfo`` (the
contract's ``UsageInfoDto``) and ``UsageHistory`` (``GET /api/users/me/usage/history``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar

from ._exceptions import InvalidResponse

__all__ = ["HistoryBucket", "UsageHistory", "UsageInfo"]

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


class _Malformed(ValueError):
    """What is wrong with a body; each record's ``from_dto`` turns it into
    ``InvalidResponse`` under its own name."""


def _number(data: Mapping[str, Any], name: str) -> int | float:
    value = data[name]
    # bool is an int in Python, never a number in the contract.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed(f"{name} is not a number: {value!r:.80}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Malformed(f"{name} is not a finite number: {value!r}")
    return value


def _count(data: Mapping[str, Any], name: str) -> int:
    value = _number(data, name)
    if isinstance(value, float):
        if not value.is_integer():
            raise _Malformed(f"{name} is not a whole number: {value!r}")
        return int(value)
    return value


def _optional_count(data: Mapping[str, Any], name: str) -> int | None:
    return None if data[name] is None else _count(data, name)


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
        try:
            return cls._parse(data)
        except _Malformed as error:
            raise InvalidResponse(f"invalid UsageInfoDto: {error}", body=text) from None

    @classmethod
    def _parse(cls, data: object) -> UsageInfo:
        if not isinstance(data, dict):
            raise _Malformed(f"expected a JSON object, got {type(data).__name__}")
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise _Malformed(f"missing {', '.join(missing)}")
        if _interval(data["period"]) is None:
            raise _Malformed(
                f"period is not an ISO 8601 <start>/<end> with offsets: {data['period']!r:.80}"
            )
        postpaid = data.get("postpaidUsageCount")
        return cls(
            current_credit=_number(data, "currentCredit"),
            additional_credit=_number(data, "additionalCredit"),
            max_credit=_number(data, "maxCredit"),
            period=data["period"],
            ttp_count=_count(data, "ttpCount"),
            max_ttp_count=_optional_count(data, "maxTtpCount"),
            edit_count=_count(data, "editCount"),
            max_edit_count=_optional_count(data, "maxEditCount"),
            postpaid_usage_count=(
                None if postpaid is None else _number(data, "postpaidUsageCount")
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


_GRANULARITIES = ("day", "hour")
_POOLS = ("plan", "purchased", "postpaid")


def _field(data: object, name: str) -> Any:
    if not isinstance(data, dict):
        raise _Malformed(f"expected a JSON object, got {type(data).__name__}")
    if name not in data:
        raise _Malformed(f"missing {name}")
    return data[name]


def _aware(data: object, name: str) -> datetime:
    value = _field(data, name)
    instant = _instant(value) if isinstance(value, str) else None
    if instant is None:
        raise _Malformed(f"{name} is not an ISO 8601 instant with an offset: {value!r:.80}")
    return instant


def _amount(data: Mapping[str, Any], name: str) -> int | float:
    value = _number(data, name)
    if value < 0:
        raise _Malformed(f"{name} is negative: {value!r}")
    return value


def _operations(value: object) -> Mapping[str, int]:
    if not isinstance(value, dict):
        raise _Malformed(f"operations is not an object: {value!r:.80}")
    counts = {kind: _count(value, kind) for kind in value}
    if any(count < 0 for count in counts.values()):
        raise _Malformed(f"an operation count is negative: {value!r:.80}")
    return MappingProxyType(counts)


@dataclass(frozen=True, slots=True)
class HistoryBucket:
    """One day or hour ``[start, end)`` of the billing zone: credit spent from each pool
    (net of refunds, never negative) and operations per kind.

    Amounts are ``int`` when the server sent a whole number and ``float`` otherwise, as
    in ``UsageInfo``. ``operations`` is a read-only mapping of kind to count, every
    configured kind present (zero included).
    """

    start: datetime
    end: datetime
    plan: float
    purchased: float
    postpaid: float
    operations: Mapping[str, int] = field(hash=False)

    @property
    def spent(self) -> float:
        """Credit spent from all pools together: the height of the bucket's bar."""
        return self.plan + self.purchased + self.postpaid

    @classmethod
    def _parse(cls, data: object) -> HistoryBucket:
        start, end = _aware(data, "start"), _aware(data, "end")
        if not start < end:
            raise _Malformed(f"a bucket ends before it starts: {start} / {end}")
        credit = _field(data, "credit")
        for pool in _POOLS:
            _field(credit, pool)
        return cls(
            start=start,
            end=end,
            plan=_amount(credit, "plan"),
            purchased=_amount(credit, "purchased"),
            postpaid=_amount(credit, "postpaid"),
            operations=_operations(_field(data, "operations")),
        )


@dataclass(frozen=True, slots=True)
class UsageHistory:
    """What ``GET /api/users/me/usage/history`` answered: the range ``[start, end)``
    (aware datetimes with the billing zone's offset; the JSON's ``from`` and ``to``),
    the zone's IANA name, the granularity (``"day"`` or ``"hour"``) and its buckets,
    which follow one another from ``start`` to ``end`` without gap or overlap.
    """

    timezone: str
    granularity: str
    start: datetime
    end: datetime
    buckets: tuple[HistoryBucket, ...]

    @classmethod
    def from_dto(cls, data: object, *, body: str | None = None) -> UsageHistory:
        """Parse a decoded history; ``InvalidResponse`` when it is not one.

        Every field must be present with its type (credit amounts are non-negative JSON
        numbers, operation counts whole), instants ISO 8601 with an offset, and the
        buckets must tile the range exactly, as a chart of them assumes. Fields the API
        does not define are ignored.
        """
        text = repr(data) if body is None else body
        try:
            return cls._parse(data)
        except _Malformed as error:
            raise InvalidResponse(f"invalid usage history: {error}", body=text) from None

    @classmethod
    def _parse(cls, data: object) -> UsageHistory:
        timezone, granularity = _field(data, "timezone"), _field(data, "granularity")
        if not isinstance(timezone, str) or not timezone:
            raise _Malformed(f"timezone is not a zone name: {timezone!r:.80}")
        if granularity not in _GRANULARITIES:
            raise _Malformed(f"granularity is not day or hour: {granularity!r:.80}")
        start, end = _aware(data, "from"), _aware(data, "to")
        listed = _field(data, "buckets")
        if not isinstance(listed, list):
            raise _Malformed(f"buckets is not an array: {listed!r:.80}")
        buckets = tuple(HistoryBucket._parse(bucket) for bucket in listed)
        # Each bucket starts where the one before it ends (the first at from), and the
        # last ends at to.
        starts = [*(bucket.start for bucket in buckets), end]
        ends = [start, *(bucket.end for bucket in buckets)]
        if not start < end or starts != ends:
            raise _Malformed("the buckets do not cover from..to one after another")
        return cls(
            timezone=timezone, granularity=granularity, start=start, end=end, buckets=buckets
        )

"""The admin API's answers, parsed strictly into frozen records: ``User``, ``CreatedKey``,
``PurchaseResult``, ``PlanChange`` and ``ChargeResult``.

As for ``UsageInfo``: the contract's camelCase fields become snake_case, credit amounts
stay ``int`` when whole, instants are aware datetimes, and an answer with a missing
field or a wrong type is ``InvalidResponse``; fields the SDK does not know are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ._exceptions import InvalidResponse
from ._models import UsageInfo, _aware, _count, _field, _Malformed, _number

__all__ = [
    "Charge",
    "ChargeResult",
    "CreatedKey",
    "CreditPurchase",
    "Hold",
    "HoldResult",
    "PlanChange",
    "PurchaseResult",
    "User",
]

_Record = TypeVar("_Record")


def _parsed(what: str, parse: Callable[[object], _Record], data: object) -> _Record:
    """``parse(data)``, or ``InvalidResponse`` saying what the body was meant to be."""
    try:
        return parse(data)
    except _Malformed as error:
        raise InvalidResponse(f"invalid {what}: {error}", body=repr(data)) from None


def _object(data: object, name: str) -> Mapping[str, Any]:
    """``data`` when it is a JSON object with the field ``name``, else ``_Malformed``."""
    if not isinstance(data, dict):
        raise _Malformed(f"expected a JSON object, got {type(data).__name__}")
    if name not in data:
        raise _Malformed(f"missing {name}")
    return data


def _id(data: object, name: str) -> int:
    value = _count(_object(data, name), name)
    if value <= 0:
        raise _Malformed(f"{name} is not a positive id: {value!r}")
    return value


def _string(data: object, name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str):
        raise _Malformed(f"{name} is not a string: {value!r:.80}")
    return value


def _optional_string(data: object, name: str) -> str | None:
    return None if _field(data, name) is None else _string(data, name)


def _optional_instant(data: object, name: str) -> datetime | None:
    return None if _field(data, name) is None else _aware(data, name)


def _credits(data: object, name: str) -> float:
    return _number(_object(data, name), name)


def _external_id(data: object) -> str | None:
    """The platform's user id: absent (an older server) or null is None; a JSON number
    is read as its decimal text, as the server compares it."""
    if not isinstance(data, dict) or data.get("externalId") is None:
        return None
    value = data["externalId"]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _string(data, "externalId")


def _usage(data: object) -> UsageInfo:
    return UsageInfo._parse(_field(data, "usage"))


@dataclass(frozen=True, slots=True)
class User:
    """A user as the admin API shows it: ``id`` (what the other admin calls take),
    ``email``, the ``plan``'s name, the ``anchor`` its periods start from, and
    ``external_id``, the platform's id for the user (None when it has none)."""

    id: int
    email: str
    plan: str
    anchor: datetime
    external_id: str | None = None

    @classmethod
    def from_json(cls, data: object) -> User:
        """Parse the admin API's user; ``InvalidResponse`` when it is not one."""
        return _parsed("user", cls._parse, data)

    @classmethod
    def _parse(cls, data: object) -> User:
        return cls(
            id=_id(data, "id"),
            email=_string(data, "email"),
            plan=_string(data, "plan"),
            anchor=_aware(data, "anchor"),
            external_id=_external_id(data),
        )


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new API key. ``key`` is its secret, shown by this answer only (the server keeps
    a hash): hand it to its owner, never log it. ``repr`` leaves it out."""

    id: int
    user_id: int
    key: str = field(repr=False)
    prefix: str
    name: str | None
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def from_json(cls, data: object) -> CreatedKey:
        """Parse the answer of a key's creation; ``InvalidResponse`` when it is not one."""
        return _parsed("created key", cls._parse, data)

    @classmethod
    def _parse(cls, data: object) -> CreatedKey:
        return cls(
            id=_id(data, "id"),
            user_id=_id(data, "userId"),
            key=_string(data, "key"),
            prefix=_string(data, "prefix"),
            name=_optional_string(data, "name"),
            created_at=_aware(data, "createdAt"),
            expires_at=_optional_instant(data, "expiresAt"),
        )


@dataclass(frozen=True, slots=True)
class CreditPurchase:
    """Purchased credit: ``amount`` credits, spent after the plan's, until ``expires_at``
    (None: never)."""

    id: int
    amount: float
    expires_at: datetime | None
    created_at: datetime

    @classmethod
    def _parse(cls, data: object) -> CreditPurchase:
        return cls(
            id=_id(data, "id"),
            amount=_credits(data, "amount"),
            expires_at=_optional_instant(data, "expiresAt"),
            created_at=_aware(data, "createdAt"),
        )


@dataclass(frozen=True, slots=True)
class PurchaseResult:
    """What ``buy_credits()`` answers: the ``purchase``, the user's ``usage`` after it,
    and ``replayed``: True when the server answered a purchase it had already made with
    this idempotency key (a retry), so nothing was sold this time."""

    purchase: CreditPurchase
    usage: UsageInfo
    replayed: bool = False

    @classmethod
    def from_json(cls, data: object, *, replayed: bool = False) -> PurchaseResult:
        """Parse the answer of a purchase; ``InvalidResponse`` when it is not one."""
        return _parsed("purchase", lambda body: cls._parse(body, replayed), data)

    @classmethod
    def _parse(cls, data: object, replayed: bool) -> PurchaseResult:
        return cls(CreditPurchase._parse(_field(data, "purchase")), _usage(data), replayed)


@dataclass(frozen=True, slots=True)
class PlanChange:
    """What ``change_plan()`` answers: the ``plan`` in force, the ``pending_plan`` that
    starts with the next period (None when there is none), and the ``usage`` after it."""

    plan: str
    pending_plan: str | None
    usage: UsageInfo

    @classmethod
    def from_json(cls, data: object) -> PlanChange:
        """Parse the answer of a plan change; ``InvalidResponse`` when it is not one."""
        return _parsed("plan change", cls._parse, data)

    @classmethod
    def _parse(cls, data: object) -> PlanChange:
        return cls(
            plan=_string(data, "plan"),
            pending_plan=_optional_string(data, "pendingPlan"),
            usage=_usage(data),
        )


@dataclass(frozen=True, slots=True)
class Charge:
    """One charge, named by its ``idempotency_key``: the ``cost`` of an operation of
    ``kind`` and where it came from (plan credit, purchased credit, postpaid accrual;
    they add up to ``cost``). ``refunded_at`` is None while it stands."""

    id: int
    idempotency_key: str
    user_id: int
    kind: str
    cost: float
    from_plan_credit: float
    from_purchased_credit: float
    postpaid: float
    created_at: datetime
    refunded_at: datetime | None

    @classmethod
    def _parse(cls, data: object) -> Charge:
        return cls(
            id=_id(data, "id"),
            idempotency_key=_string(data, "idempotencyKey"),
            user_id=_id(data, "userId"),
            kind=_string(data, "kind"),
            cost=_credits(data, "cost"),
            from_plan_credit=_credits(data, "fromPlanCredit"),
            from_purchased_credit=_credits(data, "fromPurchasedCredit"),
            postpaid=_credits(data, "postpaid"),
            created_at=_aware(data, "createdAt"),
            refunded_at=_optional_instant(data, "refundedAt"),
        )


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """What ``charge()`` and ``refund()`` answer: the ``charge``, the user's ``usage``
    after it, and ``replayed``: True when the server answered a charge it had already
    made with this idempotency key (a retry, or the same key sent again), so nothing
    was charged this time."""

    charge: Charge
    usage: UsageInfo
    replayed: bool = False

    @classmethod
    def from_json(cls, data: object, *, replayed: bool = False) -> ChargeResult:
        """Parse the answer of a charge or a refund; ``InvalidResponse`` when it is not one."""
        return _parsed("charge", lambda body: cls._parse(body, replayed), data)

    @classmethod
    def _parse(cls, data: object, replayed: bool) -> ChargeResult:
        return cls(Charge._parse(_field(data, "charge")), _usage(data), replayed)


@dataclass(frozen=True, slots=True)
class Hold:
    """Credit reserved for a long job, named by ``hold_id``: ``held`` is what it reserved;
    ``cost`` and the split (plan credit, purchased credit, postpaid accrual; they add up
    to ``cost``) are what it holds while ``state`` is ``active``, what it kept when
    ``settled``, and 0 when ``released`` or ``expired`` (released by itself at
    ``expires_at``)."""

    hold_id: int
    idempotency_key: str
    user_id: int
    kind: str
    state: str
    held: float
    cost: float
    from_plan_credit: float
    from_purchased_credit: float
    postpaid: float
    expires_at: datetime
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def _parse(cls, data: object) -> Hold:
        return cls(
            hold_id=_id(data, "holdId"),
            idempotency_key=_string(data, "idempotencyKey"),
            user_id=_id(data, "userId"),
            kind=_string(data, "kind"),
            state=_string(data, "state"),
            held=_credits(data, "held"),
            cost=_credits(data, "cost"),
            from_plan_credit=_credits(data, "fromPlanCredit"),
            from_purchased_credit=_credits(data, "fromPurchasedCredit"),
            postpaid=_credits(data, "postpaid"),
            expires_at=_aware(data, "expiresAt"),
            created_at=_aware(data, "createdAt"),
            finished_at=_optional_instant(data, "finishedAt"),
        )

    @classmethod
    def list_from_json(cls, data: object) -> list[Hold]:
        """Parse ``{"holds": [...]}``; ``InvalidResponse`` when it is not that."""

        def parse(body: object) -> list[Hold]:
            holds = _field(body, "holds")
            if not isinstance(holds, list):
                raise _Malformed(f"holds is not a list: {holds!r:.80}")
            return [cls._parse(hold) for hold in holds]

        return _parsed("hold list", parse, data)


@dataclass(frozen=True, slots=True)
class HoldResult:
    """What ``hold()``, ``settle_hold()`` and ``release_hold()`` answer: the ``hold``, the
    user's ``usage`` after it, and ``replayed``: True when the server answered with the
    first answer of the same call (the same idempotency key, the same settle or
    release), so nothing changed this time."""

    hold: Hold
    usage: UsageInfo
    replayed: bool = False

    @classmethod
    def from_json(cls, data: object, *, replayed: bool = False) -> HoldResult:
        """Parse a hold's answer; ``InvalidResponse`` when it is not one."""
        return _parsed(
            "hold",
            lambda body: cls(Hold._parse(_field(body, "hold")), _usage(body), replayed),
            data,
        )

"""The field types our bodies are made of: what each takes, and how the document states it.

Constraints msgspec checks itself (types, lengths, ranges, choices) are ``Meta`` on the
type. Rules the domain owns, because the CLI and the pages must follow them too (a plan
name's pattern, an email's, a key name's), are stated here from the domain's own
constant (``extra_json_schema``) and checked by the domain, so that every way in gives
the same answer.

Two kinds of value are decoded into domain values on the way in, by ``decode_value``:
credit amounts into millicredits (exactly, refusing a fourth decimal rather than
rounding) and instants into microseconds. Their checks raise ``ValueError`` with a predicate ("must
be positive"), which ``reading`` puts after the field's name.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from flamel_usage.core.inputs import INSTANT_PATTERN, MAX_INSTANT_LENGTH, MAX_INT, to_instant
from flamel_usage.core.money import DECIMALS, MAX_CREDITS, MILLI, to_millicredits
from flamel_usage.core.periods import to_micros
from flamel_usage.metering.idempotency import IDEMPOTENCY_KEY_PATTERN

#: What every free-text request field refuses: a NUL character.
NO_NUL = "^[^\\x00]*$"
#: An instant as answers write it, and a typical request would.
INSTANT_EXAMPLE = "2026-11-25T10:00:00+00:00"
#: An expiry a client would send: in the future (a purchase or a new key that expired
#: already is refused).
EXPIRY_EXAMPLE = "2099-12-31T23:59:59+00:00"


class CreditAmount(int):
    """A positive credit amount, in millicredits; sent as a JSON number of credits."""


class CreditAllowance(int):
    """A credit amount of zero or more, in millicredits; sent as a JSON number of credits."""


class Instant(int):
    """An instant, in microseconds since the epoch; sent as RFC 3339 with an offset."""


def decode_value(kind: type, value: Any) -> Any:
    """msgspec's ``dec_hook``: the domain value of a field of one of the types above."""
    if kind is Instant:
        if not isinstance(value, str):
            raise TypeError("must be a string (an ISO 8601 date-time)")
        return Instant(to_micros(to_instant(value)))
    if kind is CreditAmount or kind is CreditAllowance:
        if isinstance(value, str):  # the CLI takes decimal strings; the JSON API does not
            raise TypeError("must be a number")
        return kind(to_millicredits(value, allow_zero=kind is CreditAllowance))
    raise NotImplementedError(kind)


def value_schema(kind: type) -> dict[str, Any]:
    """msgspec's ``schema_hook``: the JSON Schema of a field of one of the types above.

    ``multipleOf`` is only written for requests: binary floats make some validators
    reject valid amounts such as 0.3 under it, which a generator of requests can live
    with, a validator of answers cannot.
    """
    if kind is Instant:
        return {
            "type": "string",
            "format": "date-time",
            "maxLength": MAX_INSTANT_LENGTH,
            "pattern": INSTANT_PATTERN,
        }
    if kind is CreditAmount or kind is CreditAllowance:
        lower = "exclusiveMinimum" if kind is CreditAmount else "minimum"
        return {"type": "number", lower: 0, "maximum": MAX_CREDITS, "multipleOf": 1 / MILLI}
    raise NotImplementedError(kind)


def sent_instant(description: str, example: str = INSTANT_EXAMPLE) -> Meta:
    """The ``Meta`` of an ``Instant`` a client sends."""
    return Meta(
        description=f"{description} RFC 3339 with an offset (or Z), year 1970 to 9000.",
        examples=[example],
    )


def shown_instant(description: str) -> Meta:
    """The ``Meta`` of an instant in an answer (a ``str``): ISO 8601 with its offset."""
    return Meta(
        description=description,
        examples=[INSTANT_EXAMPLE],
        extra_json_schema={"format": "date-time"},
    )


def credits(description: str, **constraints: Any) -> Meta:
    """The ``Meta`` of a credit amount: sent as ``CreditAmount`` or ``CreditAllowance``,
    shown as a ``float`` (an integer when whole: ``money.credits_value``)."""
    return Meta(description=f"{description} (credits, at most {DECIMALS} decimals)", **constraints)


#: A whole number of operations per period; the type's ``None`` means no limit.
CountLimit = Annotated[int, Meta(ge=0, le=MAX_INT)]

#: An idempotency key, as ``charges.idempotency_key`` checks it (the header, the refund's
#: path, the charge's answer).
IdempotencyKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=f"^{IDEMPOTENCY_KEY_PATTERN}$",
        examples=["job-8d1f2c/ttp"],
    ),
]

"""Credit amounts as exact integers.

Credits are money: they are stored and added as whole millicredits (1 credit = 1000),
never as floats, so that no sum drifts. A client may send or read fractional credits
with at most three decimals; anything finer, non-finite or out of range is refused
rather than rounded, because rounding a charge silently changes what a customer pays.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flamel_usage.core.errors import Refusal

#: Decimal places a credit amount may have: amounts are whole millicredits.
DECIMALS = 3
MILLI: int = 10**DECIMALS
#: Largest amount accepted anywhere (a trillion credits): far above any real balance,
#: and small enough that sums of many of them stay inside a signed 64-bit column.
MAX_CREDITS = 10**12
MAX_MILLI = MAX_CREDITS * MILLI


def parse_credits(value: object, field: str, *, allow_zero: bool = False) -> int:
    """Millicredits from a JSON number or a decimal string (CLI), or ``bad_request``
    naming ``field``."""
    try:
        return to_millicredits(value, allow_zero=allow_zero)
    except ValueError as error:
        raise Refusal("bad_request", f"{field} {error}") from None


def to_millicredits(value: object, *, allow_zero: bool = False) -> int:
    """Millicredits, or ``ValueError`` saying what is wrong as a predicate ("must be
    positive"), for the caller to put after the field's name.

    The range is checked on the decimal before any conversion to ``int``, so an absurd
    exponent costs nothing.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number")
    try:
        credits = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not credits.is_finite():
        raise ValueError("must be a finite number")
    if credits < 0 or (credits == 0 and not allow_zero):
        raise ValueError(f"must be {'zero or more' if allow_zero else 'positive'}")
    if credits > MAX_CREDITS:
        raise ValueError("is too large")
    if credits == 0:
        return 0
    return _exact_milli(credits)


def _exact_milli(credits: Decimal) -> int:
    """``credits * 1000`` computed on the digits, so nothing is rounded by a context."""
    _, digits, exponent = credits.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    trailing_zeros = len(text) - len(text.rstrip("0"))
    dropped = max(0, min(trailing_zeros, -DECIMALS - exponent))
    if exponent + dropped < -DECIMALS:
        raise ValueError(f"has more than {DECIMALS} decimal places")
    significant = int(text[: len(text) - dropped] or "0")
    shift: int = exponent + dropped + DECIMALS
    return significant * int(10**shift)


def credits_value(milli: int) -> int | float:
    """The JSON number for an amount: an integer when whole, else the float nearest the
    exact decimal. Python's ``int / int`` rounds the exact quotient once, to nearest, as
    ``float(Decimal(milli) / MILLI)`` does (exact below 10**28 millicredits, far above
    any amount), at a tenth of its cost: a month of hourly history writes 2,232."""
    whole, rest = divmod(milli, MILLI)
    if rest == 0:
        return whole
    return milli / MILLI

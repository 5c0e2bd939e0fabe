"""Credit amounts as exact integers.

Credits are money: they are stored and added as whole millicredits (1 credit = 1000),
never as floats, so that no sum drifts. A client may send or read fractional credits
with at most three decimals; anything finer, non-finite or out of range is refused
rather than rounded, because rounding a charge silently changes what a customer pays.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flamel_usage.core.errors import Refusal

MILLI = 1000  # 10**3: _exact_milli shifts by three decimal places
#: Largest amount accepted anywhere (a trillion credits): far above any real balance,
#: and small enough that sums of many of them stay inside a signed 64-bit column.
MAX_MILLI = 10**12 * MILLI


def parse_credits(value: object, field: str, *, allow_zero: bool = False) -> int:
    """Millicredits from a JSON number or a decimal string (CLI), or ``bad_request``.

    The range is checked on the decimal before any conversion to ``int``, so an absurd
    exponent costs nothing.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Refusal("bad_request", f"{field} must be a number")
    try:
        credits = Decimal(str(value).strip())
    except InvalidOperation:
        raise Refusal("bad_request", f"{field} must be a number") from None
    if not credits.is_finite():
        raise Refusal("bad_request", f"{field} must be a finite number")
    if credits < 0 or (credits == 0 and not allow_zero):
        raise Refusal(
            "bad_request", f"{field} must be {'zero or more' if allow_zero else 'positive'}"
        )
    if credits > MAX_MILLI // MILLI:
        raise Refusal("bad_request", f"{field} is too large")
    if credits == 0:
        return 0
    return _exact_milli(credits, field)


def _exact_milli(credits: Decimal, field: str) -> int:
    """``credits * 1000`` computed on the digits, so nothing is rounded by a context."""
    _, digits, exponent = credits.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    trailing_zeros = len(text) - len(text.rstrip("0"))
    dropped = max(0, min(trailing_zeros, -3 - exponent))
    if exponent + dropped < -3:
        raise Refusal("bad_request", f"{field} has more than 3 decimal places")
    significant = int(text[: len(text) - dropped] or "0")
    shift: int = exponent + dropped + 3
    return significant * int(10**shift)


def credits_value(milli: int) -> int | float:
    """The JSON number for an amount: an integer when whole, else the exact decimal."""
    whole, rest = divmod(milli, MILLI)
    if rest == 0:
        return whole
    return float(Decimal(milli) / MILLI)

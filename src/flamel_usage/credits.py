"""Credit amounts as exact integers.

Credits are money: they are stored and added as whole millicredits (1 credit = 1000),
never as floats, so that no sum drifts. A client may send or read fractional credits
with at most three decimals; anything finer, non-finite or out of range is refused
rather than rounded, because rounding a charge silently changes what a customer pays.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flamel_usage.errors import BadRequest

MILLI = 1000
#: Largest amount accepted anywhere (a trillion credits): far above any real balance,
#: and small enough that sums of many of them stay inside a signed 64-bit column.
MAX_MILLI = 10**12 * MILLI


def parse_credits(value: object, field: str, *, allow_zero: bool = False) -> int:
    """Millicredits from a JSON number or a decimal string (CLI), or ``BadRequest``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"{field} must be a number")
    try:
        amount = Decimal(str(value).strip()) * MILLI
    except InvalidOperation as exc:
        raise BadRequest(f"{field} must be a number") from exc
    if not amount.is_finite():
        raise BadRequest(f"{field} must be a finite number")
    if amount != amount.to_integral_value():
        raise BadRequest(f"{field} has more than 3 decimal places")
    milli = int(amount)
    if milli < 0 or (milli == 0 and not allow_zero):
        raise BadRequest(f"{field} must be {'zero or more' if allow_zero else 'positive'}")
    if milli > MAX_MILLI:
        raise BadRequest(f"{field} is too large")
    return milli


def credits_value(milli: int) -> int | float:
    """The JSON number for an amount: an integer when whole, else the exact decimal."""
    whole, rest = divmod(milli, MILLI)
    if rest == 0:
        return whole
    return float(Decimal(milli) / MILLI)

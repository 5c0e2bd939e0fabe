"""Credit amounts: exact to the millicredit, refused rather than rounded."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamel_usage.core.errors import Refusal
from flamel_usage.core.money import MAX_MILLI, credits_value, parse_credits


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_an_amount_is_exact_or_refused(value: Decimal) -> None:
    try:
        milli = parse_credits(str(value), "amount", allow_zero=True)
    except Refusal:
        exact = Fraction(value) * 1000 if value.is_finite() else None
        assert exact is None or exact.denominator != 1 or not 0 <= exact <= MAX_MILLI
    else:
        assert Fraction(milli) == Fraction(value) * 1000


@pytest.mark.parametrize(
    "text", ["1e999999999", "-1e999999999", "1e-999999999", "0e999999999", "9" * 5000]
)
def test_absurd_exponents_answer_at_once(text: str) -> None:
    if Decimal(text) == 0:
        assert parse_credits(text, "amount", allow_zero=True) == 0
    else:
        with pytest.raises(Refusal):
            parse_credits(text, "amount")


@given(st.integers(min_value=0, max_value=MAX_MILLI))
def test_the_json_number_round_trips(milli: int) -> None:
    assert parse_credits(credits_value(milli), "amount", allow_zero=True) == milli


@given(st.integers(min_value=-MAX_MILLI, max_value=MAX_MILLI))
def test_the_json_number_is_the_float_nearest_the_exact_decimal(milli: int) -> None:
    assert credits_value(milli) == float(Decimal(milli) / 1000)

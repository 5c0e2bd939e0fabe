"""How close an account is to its limits: the one rule the usage page and the terminal
both warn with, so that a person sees the same warning wherever they look."""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

#: The share of a limit used from which it is "near the limit": 80 %. A fraction, not a
#: float, so that 8 of 10 is near exactly, with no rounding at the boundary.
NEAR_LIMIT = Fraction(4, 5)

LimitState = Literal["ok", "near", "reached", "unlimited"]


def credit_state(left: int, maximum: int) -> LimitState:
    """``ok``, ``near`` or ``reached`` for ``left`` of a period's ``maximum`` credit
    (millicredits); a plan that grants none has reached it."""
    if left <= 0 or maximum <= 0:
        return "reached"
    used = maximum - min(left, maximum)
    return "near" if used >= maximum * NEAR_LIMIT else "ok"


def count_state(count: int, maximum: int | None) -> LimitState:
    """``unlimited`` (no maximum), ``reached``, ``near`` or ``ok`` for ``count`` uses."""
    if maximum is None:
        return "unlimited"
    if count >= maximum:
        return "reached"
    return "near" if count >= maximum * NEAR_LIMIT else "ok"

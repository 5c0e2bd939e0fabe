"""What metering answers: the outcomes of a charge and of a refund, as domain values.

Credit in millicredits, instants in microseconds, a refusal by its reason in
``core.errors.REASONS``: no status and no bytes. The HTTP edge
(``http/api/admin/metering.py``) renders an outcome, the CLI prints that rendering, and
the metrics count outcomes by kind (``charged``, ``replayed`` or the refusal's reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flamel_usage.ledger.balances import Usage


@dataclass(frozen=True, slots=True)
class Charge:
    """One charge as recorded: what it cost, where the credit came from, and when."""

    id: int
    idempotency_key: str
    user_id: int
    kind: str
    cost: int
    from_plan: int
    from_purchased: int
    postpaid: int
    created_at: int
    refunded_at: int | None = None


@dataclass(frozen=True, slots=True)
class Charged:
    """The charge was made: the charge, and the user's usage right after it.

    ``replayed``: this is the outcome recorded under the key by an earlier request, and
    nothing changed now; it is that request's outcome whole, usage included.
    """

    charge: Charge
    usage: Usage
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """The charge did not fit (credit, or a limit of the period) and nothing changed.

    Recorded under the key like a charge, so that a retry gets the same refusal even
    after credit or a slot has freed up; ``replayed`` as for ``Charged``.
    """

    reason: str
    message: str | None = None
    replayed: bool = False


ChargeOutcome = Charged | Refused


@dataclass(frozen=True, slots=True)
class Refunded:
    """The charge was reversed: the charge (its ``refunded_at`` set, its split as charged)
    and the user's usage right after the refund."""

    charge: Charge
    usage: Usage


HoldState = Literal["active", "settled", "released", "expired"]


@dataclass(frozen=True, slots=True)
class Hold:
    """One hold as its answer shows it: ``held`` is what it reserved; ``cost`` and the
    split are what it holds now (active), what it kept (settled) or zero (released or
    expired). ``state`` is ``active``, ``settled``, ``released`` or ``expired``."""

    id: int
    idempotency_key: str
    user_id: int
    kind: str
    held: int
    cost: int
    from_plan: int
    from_purchased: int
    postpaid: int
    state: HoldState
    expires_at: int
    created_at: int
    finished_at: int | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """A hold made, settled or released: the hold, and the user's usage right after.

    ``replayed``: the outcome recorded by an earlier request (the same key at creation,
    the same settle or release call after), and nothing changed now.
    """

    hold: Hold
    usage: Usage
    replayed: bool = False


HoldOutcome = Held | Refused

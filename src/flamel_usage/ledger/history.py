"""Where the credit went: a user's spending per day or hour in the billing zone.

The values below are the seam between the history's read (``read_history``) and its
faces (the API's JSON and CSV, the usage page's chart, the terminal, the SDK): each
face renders a ``History`` and never reads the ledger itself.

Buckets are calendar days (or hours) of the billing zone, so a day across a DST change
lasts 23 or 25 hours, clipped to the range asked for: the first and last bucket may be
shorter than a day, and the buckets of a billing period add up to that period exactly.
A charge counts in the bucket of its own instant; what a refund gives back is taken off
that same bucket (spending net of refunds), so a day's figures never go negative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Granularity = Literal["day", "hour"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One day or hour ``[start, end)``: credit spent per pool (millicredits) and
    operations per kind (every configured kind present, zero included)."""

    start: datetime
    end: datetime
    plan: int
    purchased: int
    postpaid: int
    operations: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class History:
    """A range ``[start, end)`` of one user's spending, in ``timezone`` (IANA name)."""

    timezone: str
    granularity: Granularity
    start: datetime
    end: datetime
    buckets: tuple[Bucket, ...]

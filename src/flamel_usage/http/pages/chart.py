"""The geometry of the usage page's chart of daily spending: where each bar, gridline and
day number goes, in the SVG's user units.

This module only measures; the markup is the template's (``templates/history.html``),
so every value reaches the SVG through the template engine's escaping, and the numbers
can be checked here without reading markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flamel_usage.ledger.history import Bucket, History

#: The chart's drawing box (SVG user units; CSS scales it to the card's width) and its plot
#: area inside, which leaves room for the credit axis on the left and the days below.
CHART_WIDTH, CHART_HEIGHT = 720, 240
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 64, 712, 12, 212
#: Where the day numbers stand: under the plot.
DAY_LABEL_Y = PLOT_BOTTOM + 18
#: The pools from the bottom of a bar's stack up (the order credit is spent in), each with
#: the key of its label in the page's strings.
POOLS = (("plan", "plan_credit"), ("purchased", "purchased_credit"), ("postpaid", "postpaid"))
HISTORY_CSV = "/api/users/me/usage/history?format=csv"
#: Most day numbers under the bars; beyond, every second (third...) day is named.
MAX_DAY_LABELS = 16
#: The share of its slot a bar fills; the rest is the gap between days.
BAR_SHARE = 0.7


@dataclass(frozen=True, slots=True)
class Bar:
    """One pool's part of a day's stack."""

    pool: str
    y: float
    height: float


@dataclass(frozen=True, slots=True)
class Column:
    """One bucket: its amounts per pool (millicredits, in ``POOLS`` order), its bars from
    the baseline up, and whether its day number is written under it."""

    start: datetime
    amounts: tuple[int, int, int]
    x: float
    width: float
    bars: tuple[Bar, ...]
    labelled: bool

    @property
    def spent(self) -> int:
        return sum(self.amounts)

    @property
    def center(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True, slots=True)
class Gridline:
    """A horizontal line at ``milli`` credits, labelled with it."""

    milli: int
    y: float


@dataclass(frozen=True, slots=True)
class Chart:
    """The measured chart of a history, and what its title and description tell."""

    timezone: str
    columns: tuple[Column, ...]
    gridlines: tuple[Gridline, ...]
    first: datetime
    last: datetime
    total: int
    largest: int
    busiest: datetime | None


def axis_top(largest: int) -> int:
    """The credit axis' top (millicredits): the smallest 1, 2 or 5 times a power of ten at
    or above the largest day, so its gridlines read as round numbers; 1 credit when
    nothing was spent."""
    if largest <= 0:
        return 1000
    power = 1
    while True:
        for multiple in (1, 2, 5):
            if multiple * power >= largest:
                return multiple * power
        power *= 10


def _amounts(bucket: Bucket) -> tuple[int, int, int]:
    return bucket.plan, bucket.purchased, bucket.postpaid


def _columns(history: History, top: int) -> tuple[Column, ...]:
    """One column a bucket, its pools stacked from the baseline, each bar's height
    proportional to the credit (a day without spending has no bar)."""
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(len(history.buckets), 1)
    width = slot * BAR_SHARE
    scale = (PLOT_BOTTOM - PLOT_TOP) / top
    every = -(-len(history.buckets) // MAX_DAY_LABELS)
    columns = []
    for index, bucket in enumerate(history.buckets):
        amounts = _amounts(bucket)
        bars = []
        base = float(PLOT_BOTTOM)
        for (pool, _), milli in zip(POOLS, amounts, strict=True):
            if milli:
                height = milli * scale
                base -= height
                bars.append(Bar(pool, base, height))
        x = PLOT_LEFT + index * slot + (slot - width) / 2
        columns.append(Column(bucket.start, amounts, x, width, tuple(bars), index % every == 0))
    return tuple(columns)


def _gridlines(top: int) -> tuple[Gridline, ...]:
    """Lines at nothing, half the axis and its top."""
    return tuple(
        Gridline(milli, PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * milli / top)
        for milli in (0, top // 2, top)
    )


def measure(history: History) -> Chart:
    spent = [sum(_amounts(bucket)) for bucket in history.buckets]
    largest = max(spent, default=0)
    top = axis_top(largest)
    first = history.buckets[0].start if history.buckets else history.start
    last = history.buckets[-1].start if history.buckets else history.start
    busiest = history.buckets[spent.index(largest)].start if largest else None
    return Chart(
        timezone=history.timezone,
        columns=_columns(history, top),
        gridlines=_gridlines(top),
        first=first,
        last=last,
        total=sum(spent),
        largest=largest,
        busiest=busiest,
    )

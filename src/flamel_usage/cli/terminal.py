"""``flamel-usage usage``: a customer's usage in the terminal, through the SDK;
``--history``: where the credit went, one bar a day of the current period.

Bars in colour when the output is a terminal that has colours (and ``NO_COLOR`` is not
set), plain text when piped, so the same command serves a person and a script. Exit
codes tell failures apart for scripts: 3 for a credential the server refused, 4 when
the server cannot be reached, 1 for anything else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

import orjson

from flamel_usage.client import (
    AuthenticationError,
    Client,
    FlamelError,
    NotLoggedIn,
    TransportError,
    UsageHistory,
    UsageInfo,
)
from flamel_usage.ledger.limits import NEAR_LIMIT

EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_OTHER = 1
BAR_WIDTH = 24
HISTORY_BAR_WIDTH = 40

_RESET, _GREEN, _YELLOW, _RED, _DIM, _BOLD, _CYAN, _MAGENTA = (
    "\033[0m",
    "\033[32m",
    "\033[33m",
    "\033[31m",
    "\033[2m",
    "\033[1m",
    "\033[36m",
    "\033[35m",
)
#: The history's pools, bottom of the stack first: name, colour, character when plain.
_POOLS = (("plan", _GREEN, "#"), ("purchased", _CYAN, "="), ("postpaid", _MAGENTA, "~"))


def wants_colour(stream: TextIO) -> bool:
    return (
        stream.isatty()
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM", "") not in ("", "dumb")
    )


def _amount(value: float) -> str:
    """Credits as the API writes them: whole numbers bare, else to the millicredit."""
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _remaining(until: datetime, now: datetime) -> str:
    left = max(until - now, timedelta(0))
    days, seconds = left.days, left.seconds
    if days:
        return f"{days}d {seconds // 3600}h"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


class _Painter:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def paint(self, text: str, *styles: str) -> str:
        return f"{''.join(styles)}{text}{_RESET}" if self.colour and styles and text else text

    def bar(self, used: float, *, fill_left: bool = False) -> str:
        """A bar of the used share, or of what is left (credit, as on the usage page);
        its colour warns near and at the limit either way."""
        share = min(max(used, 0.0), 1.0)
        filled = round((1 - share if fill_left else share) * BAR_WIDTH)
        full, empty = ("█", "░") if self.colour else ("#", ".")
        style = _RED if share >= 1 else _YELLOW if share >= NEAR_LIMIT else _GREEN
        return "[" + self.paint(full * filled, style) + empty * (BAR_WIDTH - filled) + "]"


def render(info: UsageInfo, *, colour: bool, now: datetime) -> str:
    """The usage as lines of text; ``now`` decides the time left in the period."""
    painter = _Painter(colour)
    label = "{:<17}".format
    lines = [
        painter.paint(label("Period"), _BOLD)
        + f"{info.period_start:%Y-%m-%d %H:%M} → {info.period_end:%Y-%m-%d %H:%M}"
        f" ({info.period_end:%z}), resets in {_remaining(info.period_end, now)}",
        label("Plan credit")
        + painter.bar(info.fraction_used, fill_left=True)
        + f" {_amount(info.current_credit)} of {_amount(info.max_credit)} left",
        label("Purchased credit") + f"{_amount(info.additional_credit)} left",
    ]
    for name, used, limit in (
        ("TTP", info.ttp_count, info.max_ttp_count),
        ("Edits", info.edit_count, info.max_edit_count),
    ):
        if limit is None:
            lines.append(label(name) + painter.paint("unlimited", _DIM) + f" ({used} used)")
        else:
            share = used / limit if limit else 1.0
            state = " limit reached" if used >= limit else ""
            lines.append(
                label(name)
                + painter.bar(share)
                + f" {used} of {limit} used"
                + painter.paint(state, _RED)
            )
    if info.postpaid_usage_count is not None:
        lines.append(
            label("Postpaid usage") + f"{_amount(info.postpaid_usage_count)} credits this period"
        )
    return "\n".join(lines)


def render_history(history: UsageHistory, *, colour: bool) -> str:
    """One line a bucket: its date, a bar stacked by pool and scaled to the largest
    bucket, the credit it took; then the totals per pool and the bar's legend."""
    painter = _Painter(colour)
    largest = max((bucket.spent for bucket in history.buckets), default=0)
    lines = [
        painter.paint("Spent per day", _BOLD)
        + f"  {history.start:%Y-%m-%d %H:%M} → {history.end:%Y-%m-%d %H:%M}"
        f" ({history.timezone})"
    ]
    for bucket in history.buckets:
        bar, drawn = "", 0
        reached: float = 0
        for name, style, plain in _POOLS:
            reached += getattr(bucket, name)
            # Rounded where each pool ends, so the stack never outgrows the largest day.
            ends_at = round(reached / largest * HISTORY_BAR_WIDTH) if largest else 0
            bar += painter.paint(("█" if colour else plain) * (ends_at - drawn), style)
            drawn = ends_at
        padding = " " * (HISTORY_BAR_WIDTH - drawn)
        lines.append(f"{bucket.start:%Y-%m-%d %a} {bar}{padding} {_amount(bucket.spent):>9}")
    totals = {
        name: sum(getattr(bucket, name) for bucket in history.buckets) for name, _, _ in _POOLS
    }
    lines.append(
        painter.paint("Total", _BOLD)
        + f" {_amount(sum(totals.values()))} ("
        + ", ".join(f"{name} {_amount(total)}" for name, total in totals.items())
        + ")"
    )
    lines.append(
        "  ".join(
            painter.paint("█" if colour else plain, style) + f" {name}"
            for name, style, plain in _POOLS
        )
    )
    return "\n".join(lines)


def show_usage(
    api_key: str | None,
    base_url: str,
    *,
    as_json: bool,
    history: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    if not api_key:
        print("flamel-usage: no API key: pass --api-key or set FLAMEL_API_KEY", file=err)
        return EXIT_AUTH
    colour = wants_colour(out)
    try:
        with Client(api_key, base_url=base_url) as client:
            if history:
                text = render_history(client.history(), colour=colour)
            elif as_json:
                text = orjson.dumps(dict(client.usage().raw)).decode()
            else:
                text = render(client.usage(), colour=colour, now=now())
    except (AuthenticationError, NotLoggedIn) as error:
        print(f"flamel-usage: {error.reason or 'unauthorized'}: {error}", file=err)
        return EXIT_AUTH
    except TransportError as error:
        print(f"flamel-usage: cannot reach {base_url}: {error}", file=err)
        return EXIT_UNREACHABLE
    except FlamelError as error:
        print(f"flamel-usage: {error}", file=err)
        return EXIT_OTHER
    out.write(text + "\n")
    return 0

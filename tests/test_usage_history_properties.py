"""The history agrees with the usage read on random ledgers, on both stores.

Random sequences of charges (random kinds and costs, some refused), refunds, purchases,
immediate plan changes (prepaid and postpaid, bigger and smaller allowances) and clock
moves (minutes, hours, days, across New York's DST change and period ends). Then, over
the current period: the buckets tile [from, to) with no gap, by day and by hour; their
operations equal ttpCount and editCount, their postpaid equals postpaidUsageCount, and
currentCredit is max(0, min(maxCredit, maxCredit - plan)); the CSV carries the JSON's
numbers; and reconcile is clean, the history's hourly rollup included. Each example
gets its own user in one database per store.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamel_usage.core.config import Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.app import App
from flamel_usage.ledger import balances as ledger
from flamel_usage.metering.outcomes import Charged
from tests.conftest import ADMIN_TOKEN, SESSION_SECRET, FakeClock
from tests.factories import Factory
from tests.store import truncate_all

HISTORY = "/api/users/me/usage/history"
#: A week before New York leaves DST (2026-11-01), the subscription a few days older.
START = datetime(2026, 10, 25, 12, tzinfo=UTC)
ANCHOR = datetime(2026, 10, 20, 4, 30, tzinfo=UTC)
KINDS = ("ttp", "edit", "image")
#: (credits, postpaid) of the plans a user moves among.
PLANS = ((5, False), (2, False), (3, True))

steps = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), st.sampled_from(KINDS), st.sampled_from([0.5, 1, 2.25, 4])),
        st.tuples(st.just("refund"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("purchase"), st.sampled_from([1, 3.5]), st.just(0)),
        st.tuples(st.just("change"), st.integers(0, len(PLANS) - 1), st.just(0)),
        st.tuples(st.just("advance"), st.sampled_from([0.2, 1, 7, 25, 24 * 3, 24 * 9]), st.just(0)),
    ),
    max_size=16,
)


class _Store:
    """One database and app per store, driven from hypothesis's sync examples."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(START)
        self.db = Database.from_url(url)
        environ = {
            "FLAMEL_DATA_DIR": str(data_dir),
            "FLAMEL_DATABASE_URL": url,
            "FLAMEL_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLAMEL_SESSION_SECRET": SESSION_SECRET,
            "FLAMEL_TIMEZONE": "America/New_York",
        }
        self.settings = Settings.from_environ(environ)
        self.factory = Factory(self.db, self.clock, self.settings.timezone)
        self.app = App(self.settings, self.db, self.clock)
        self.runs = itertools.count()
        self.loop.run_until_complete(self._open())

    async def _open(self) -> None:
        await self.db.open()
        if self.db.dialect == "postgresql":
            await truncate_all(self.db)
        else:
            await self.db.migrate()

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.db.close())
        finally:
            self.loop.close()

    def play(self, sequence: list[tuple[str, Any, Any]]) -> None:
        self.loop.run_until_complete(self._play(sequence))

    async def _play(self, sequence: list[tuple[str, Any, Any]]) -> None:
        run = next(self.runs)
        self.clock.set(START)
        plans = [
            await self.factory.plan(credits=credits, postpaid=postpaid, name=f"h{run}-{index}")
            for index, (credits, postpaid) in enumerate(PLANS)
        ]
        user = await self.factory.user(plans[0], anchor=ANCHOR)
        key = await self.factory.key(user)
        charged: list[str] = []
        for number, (step, first, second) in enumerate(sequence):
            if step == "charge":
                name = f"h{run}-{number}"
                if isinstance(await self.factory.charge(user, first, name, second), Charged):
                    charged.append(name)
            elif step == "refund" and charged:
                await self.factory.refund(charged.pop(first % len(charged)))
            elif step == "purchase":
                await self.factory.purchase(user, first)
            elif step == "change":
                async with self.db.transaction() as conn:
                    await ledger.change_plan(
                        conn,
                        user.id,
                        plans[first].name,
                        at_next_period=False,
                        now=self.clock(),
                        zone=self.factory.zone,
                    )
            elif step == "advance":
                self.clock.advance(first * 3600)
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            http.headers["X-Api-Key"] = key
            usage = (await http.get("/api/users/me/usage")).json()
            by_day = (await http.get(HISTORY)).json()
            by_hour = (await http.get(HISTORY, params={"granularity": "hour"})).json()
            as_csv = (await http.get(HISTORY, params={"format": "csv"})).text
        for history in (by_day, by_hour):
            _assert_agrees(usage, history)
        assert _csv_rows(by_day) == list(csv.reader(io.StringIO(as_csv)))
        # The history's hourly rollup, which the read above summed, is the ledger's.
        assert await self.factory.reconcile() == []


def _assert_agrees(usage: dict[str, Any], history: dict[str, Any]) -> None:
    buckets = history["buckets"]
    assert f"{history['from']}/{history['to']}" == usage["period"]
    assert buckets[0]["start"] == history["from"]
    assert buckets[-1]["end"] == history["to"]
    longest = timedelta(hours=25 if history["granularity"] == "day" else 1)
    for bucket, following in pairwise(buckets):
        assert bucket["end"] == following["start"]
    for bucket in buckets:
        length = datetime.fromisoformat(bucket["end"]) - datetime.fromisoformat(bucket["start"])
        assert timedelta(0) < length <= longest
        assert min(bucket["credit"].values()) >= 0
    operations = {kind: sum(bucket["operations"][kind] for bucket in buckets) for kind in KINDS}
    assert operations["ttp"] == usage["ttpCount"]
    assert operations["edit"] == usage["editCount"]
    spent = {
        pool: sum(Decimal(str(bucket["credit"][pool])) for bucket in buckets)
        for pool in ("plan", "purchased", "postpaid")
    }
    if usage["postpaidUsageCount"] is not None:
        assert spent["postpaid"] == Decimal(str(usage["postpaidUsageCount"]))
    allowance = Decimal(str(usage["maxCredit"]))
    expected = max(Decimal(0), min(allowance, allowance - spent["plan"]))
    assert Decimal(str(usage["currentCredit"])) == expected


def _csv_rows(history: dict[str, Any]) -> list[list[str]]:
    rows = [["start", "end", "plan", "purchased", "postpaid", *KINDS]]
    for bucket in history["buckets"]:
        credit = [str(bucket["credit"][pool]) for pool in ("plan", "purchased", "postpaid")]
        counts = [str(bucket["operations"][kind]) for kind in KINDS]
        rows.append([bucket["start"], bucket["end"], *credit, *counts])
    return rows


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[_Store]:
    opened = _Store(database_url, tmp_path / "data")
    yield opened
    opened.close()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=steps)
def test_history_of_the_current_period_agrees_with_the_usage_read(
    store: _Store, sequence: list[tuple[str, Any, Any]]
) -> None:
    store.play(sequence)

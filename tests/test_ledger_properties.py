"""The ledger under random operation sequences, checked against a small model of the pools.

A hypothesis state machine buys credit (with and without expiry), charges random kinds
and costs (some of which must be refused), refunds earlier keys (and unknown ones),
replays earlier keys with the same and with a different body, changes plans (now, or
from the next period), and moves the clock, also exactly onto and just before period
ends. After every step the books must
reconcile, no balance may be negative or past its limit, and every number the service
shows must equal the model's. Each example runs on a fresh database: a new SQLite file,
or the session's PostgreSQL database truncated.

The model is deliberately naive: plain Python lists, the spend order of SPEC 3 written
out directly, periods of a subscription anchored on the 10th at 00:00 UTC computed
with calendar arithmetic rather than the service's period code. After a refund or a
plan change, its plan credit is the current allowance less what plan credit paid for
the period's charges that stand, within [0, allowance]: a function of the plan and
the standing charges alone, so the service agreeing with it after every step proves
that no order of plan changes and refunds in a period changes what is left.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from flamel_usage.accounts.users import Plan, User
from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Database
from flamel_usage.http.api.admin.metering import charge_answer, refund_answer
from flamel_usage.http.routing import Response
from flamel_usage.ledger import balances as ledger
from tests.factories import Factory
from tests.store import copy_store

T = TypeVar("T")

UTC_ZONE = ZoneInfo("UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ANCHOR_DAY = 10
START = datetime(2026, 1, ANCHOR_DAY, tzinfo=UTC)
HOUR = 3_600_000_000
DAY = 24 * HOUR
COSTS = {"ttp": 1000, "edit": 1000, "image": 1000}
COUNTED = {"ttp", "edit"}
REPLAYED = (b"idempotent-replayed", b"true")
_TABLES = (
    "usage_days, usage_hours, ledger_entries, charges, sessions, api_keys, credit_purchases,"
    " accounts, users, plans"
)


def micros(instant: datetime) -> int:
    return (instant - EPOCH) // timedelta(microseconds=1)


def instant(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def period_start(now: int) -> int:
    """Start of the period containing ``now``: the latest 10th, 00:00 UTC, at or before it."""
    at = instant(now)
    year, month = at.year, at.month
    if at.day < ANCHOR_DAY:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return micros(datetime(year, month, ANCHOR_DAY, tzinfo=UTC))


def next_period_start(now: int) -> int:
    at = instant(period_start(now))
    year, month = (at.year, at.month + 1) if at.month < 12 else (at.year + 1, 1)
    return micros(datetime(year, month, ANCHOR_DAY, tzinfo=UTC))


def milli(value: float) -> int:
    """A JSON credit amount as millicredits."""
    return round(value * 1000)


# --- the model ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPlan:
    plan: Plan
    max_credit: int
    max_ttp: int | None
    max_edit: int | None
    postpaid: bool


@dataclass
class ModelAccount:
    user: User
    terms: ModelPlan
    period: int
    plan: int
    pending: ModelPlan | None = None
    ttp: int = 0
    edit: int = 0
    postpaid_used: int = 0

    @property
    def max_credit(self) -> int:
        return self.terms.max_credit

    @property
    def max_ttp(self) -> int | None:
        return self.terms.max_ttp

    @property
    def max_edit(self) -> int | None:
        return self.terms.max_edit

    @property
    def postpaid(self) -> bool:
        return self.terms.postpaid

    def roll(self, now: int) -> None:
        """What the service shows (and writes on the next write) at ``now``."""
        start = period_start(now)
        if start != self.period:
            assert start > self.period
            if self.pending is not None:
                self.terms, self.pending = self.pending, None
            self.period, self.plan = start, self.max_credit
            self.ttp = self.edit = self.postpaid_used = 0

    def limit(self, kind: str) -> int | None:
        return {"ttp": self.max_ttp, "edit": self.max_edit}.get(kind)

    def count(self, kind: str) -> int:
        return {"ttp": self.ttp, "edit": self.edit}.get(kind, 0)

    def add_count(self, kind: str, delta: int) -> None:
        if kind == "ttp":
            self.ttp += delta
        elif kind == "edit":
            self.edit += delta


@dataclass
class ModelPurchase:
    id: int
    user_id: int
    remaining: int
    expires_at: int | None

    def live(self, now: int) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass
class ModelCharge:
    key: str
    user_id: int
    kind: str
    cost_sent: int | None
    status: int
    body: bytes
    period: int
    from_plan: int = 0
    parts: list[tuple[int, int]] = field(default_factory=list)
    postpaid: int = 0
    refunded: bool = False


@dataclass
class Counters:
    """How often each interesting outcome happened, to see that the runs cover them."""

    seen: dict[str, int] = field(default_factory=dict)

    def note(self, what: str) -> None:
        self.seen[what] = self.seen.get(what, 0) + 1


COVERAGE = Counters()

plan_credits = st.sampled_from([0, 1, 3, 5])
limits = st.sampled_from([None, 0, 1, 2, 3])
amounts = st.sampled_from([250, 1000, 2000, 5000])
costs = st.sampled_from([None, 1, 250, 500, 1000, 1500, 2000, 3000, 5000, 12_345])
small_costs = st.sampled_from([None, 1, 250, 500])
kinds = st.sampled_from(["ttp", "edit", "image"])
expiries = st.sampled_from(
    [None, None, "1us", "1h", "1d", "10d", "40d", "period_end", "period_end+1us"]
)
moves = st.sampled_from(["1us", "1h", "1d", "9d", "40d", "period_end-1us", "period_end"])


class LedgerMachine(RuleBasedStateMachine):
    #: Set by the test: how to get a fresh, migrated, empty database for one example
    #: (on SQLite, a copy of the migrated store ``sqlite_migrated``, in ``sqlite_dir``).
    database_url: str = ""
    sqlite_migrated: Path | None = None
    sqlite_dir = Path()
    _files = itertools.count()

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = micros(START)
        self.db = self.run(self._open())
        self.factory = Factory(self.db, lambda: self.now, UTC_ZONE)
        self.accounts: list[ModelAccount] = []
        self.plans: list[ModelPlan] = []
        self.purchases: dict[int, ModelPurchase] = {}
        self.charges: dict[str, ModelCharge] = {}
        self.serial = itertools.count(1)
        self.ledger_seen: list[tuple[Any, ...]] = []

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def _charge_and_check(self, account: ModelAccount, kind: str, cost: int | None) -> str:
        """A fresh charge, its status and answer checked against the model's."""
        key = f"key/{next(self.serial)}"
        answer = self._charge(account, kind, cost, key)
        expected = self._model_charge(account, kind, cost, key, answer.body)
        COVERAGE.note(f"charge-{expected.status}")
        assert answer.status == expected.status, (answer, expected)
        assert REPLAYED not in answer.headers
        body = orjson.loads(answer.body)
        if expected.status == 201:
            charge = body["charge"]
            assert (
                milli(charge["fromPlanCredit"]),
                milli(charge["fromPurchasedCredit"]),
                milli(charge["postpaid"]),
            ) == (expected.from_plan, sum(part for _, part in expected.parts), expected.postpaid)
            assert milli(charge["cost"]) == (COSTS[kind] if cost is None else cost)
            assert charge["idempotencyKey"] == key
            assert body["usage"] == self._expected_dto(account)
        else:
            reason = "insufficient_credit" if expected.status == 402 else f"{kind}_limit_exceeded"
            assert (body["success"], body["code"], body["data"]) == (
                False,
                expected.status,
                reason,
            )
        return key

    async def _open(self) -> Database:
        if self.sqlite_migrated is not None:
            path = self.sqlite_dir / f"example-{next(self._files)}.sqlite3"
            copy_store(self.sqlite_migrated, path)
            db = Database.from_url(f"sqlite:///{path}")
            await db.open()
            return db
        db = Database.from_url(self.database_url)
        await db.open()
        async with db.transaction() as conn:
            await conn.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
        return db

    def teardown(self) -> None:
        try:
            self.run(self.db.close())
        finally:
            self.loop.close()

    # --- steps ------------------------------------------------------------------------

    @initialize(
        plans=st.lists(
            st.tuples(plan_credits, limits, limits, st.booleans()), min_size=3, max_size=3
        )
    )
    def create_users(self, plans: list[tuple[int, int | None, int | None, bool]]) -> None:
        """Three plans; a user on each of the first two (the third is one to move to)."""
        for credits, max_ttp, max_edit, postpaid in plans:
            plan = self.run(
                self.factory.plan(
                    credits=credits, max_ttp=max_ttp, max_edit=max_edit, postpaid=postpaid
                )
            )
            self.plans.append(ModelPlan(plan, credits * 1000, max_ttp, max_edit, postpaid))
        for terms in self.plans[:2]:
            user = self.run(self.factory.user(terms.plan))
            self.accounts.append(
                ModelAccount(
                    user=user, terms=terms, period=period_start(self.now), plan=terms.max_credit
                )
            )

    @rule(who=st.integers(0, 1), amount=amounts, expiry=expiries)
    def purchase(self, who: int, amount: int, expiry: str | None) -> None:
        account = self.accounts[who]
        expires_at = None if expiry is None else self._instant(expiry)
        bought = self.run(self.factory.purchase(account.user, amount / 1000, expires_at=expires_at))
        account.roll(self.now)
        self.purchases[bought.id] = ModelPurchase(bought.id, account.user.id, amount, expires_at)

    @rule(target=keys, who=st.integers(0, 1), kind=kinds, cost=costs)
    def charge(self, who: int, kind: str, cost: int | None) -> str:
        return self._charge_and_check(self.accounts[who], kind, cost)

    @rule(target=keys, who=st.integers(0, 1), kind=kinds, cost=small_costs)
    def charge_small(self, who: int, kind: str, cost: int | None) -> str:
        return self._charge_and_check(self.accounts[who], kind, cost)

    @rule(key=keys, same=st.booleans(), who=st.integers(0, 1), kind=kinds, cost=costs)
    def replay(self, key: str, same: bool, who: int, kind: str, cost: int | None) -> None:
        """The key again: with its first body, or with another (which may match by chance)."""
        first = self.charges[key]
        account = self._account(first.user_id) if same else self.accounts[who]
        if same:
            kind, cost = first.kind, first.cost_sent
        same = (account.user.id, kind, cost) == (first.user_id, first.kind, first.cost_sent)
        try:
            answer = self._charge(account, kind, cost, key)
        except Refusal as error:
            refusal: str | None = error.reason
        else:
            refusal = None
            assert REPLAYED in answer.headers
            assert (answer.status, answer.body) == (first.status, first.body)
        assert refusal == (None if same else "idempotency_key_reused")
        COVERAGE.note("replay" if same else "reused")

    @rule(key=keys, unknown=st.integers(0, 5))
    def refund(self, key: str, unknown: int) -> None:
        self._refund(f"unknown/{next(self.serial)}" if unknown == 0 else key)

    @rule(who=st.integers(0, 1), which=st.integers(0, 2), at_next_period=st.booleans())
    def change_plan(self, who: int, which: int, at_next_period: bool) -> None:
        account, terms = self.accounts[who], self.plans[which]
        self.run(self._change_plan(account, terms, at_next_period))
        account.roll(self.now)
        if at_next_period:
            account.pending = None if terms == account.terms else terms
            COVERAGE.note("change-at-next-period")
            return
        COVERAGE.note("change-now")
        account.terms, account.pending = terms, None
        account.plan = self._plan_due(account)

    @rule(move=moves)
    def advance(self, move: str) -> None:
        target = self._instant(move)
        assert target > self.now
        self.now = target

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def books_agree_with_the_ledger_and_the_model(self) -> None:
        if not self.accounts:
            return
        assert self.run(self.factory.reconcile()) == []
        for account in self.accounts:
            usage = self.run(self.factory.usage(account.user))
            account.roll(self.now)
            assert 0 <= usage.current_credit <= usage.max_credit
            assert usage.additional_credit >= 0
            # A count may stand above a limit that a plan change lowered (counts are
            # kept); the model, which refuses at the limit, checks the rest.
            assert usage.ttp_count >= 0
            assert usage.edit_count >= 0
            assert usage.postpaid_used is None or usage.postpaid_used >= 0
            assert usage.to_dto() == self._expected_dto(account)

    @invariant()
    def stored_rows_are_never_negative_and_the_ledger_only_grows(self) -> None:
        if not self.accounts:
            return

        async def read() -> tuple[Any, list[tuple[Any, ...]]]:
            async with self.db.read() as conn:
                lows = await conn.fetchone(
                    "SELECT MIN(plan_credit), MIN(ttp_count), MIN(edit_count),"
                    " MIN(postpaid_used), (SELECT MIN(remaining) FROM credit_purchases)"
                    " FROM accounts"
                )
                rows = await conn.fetchall(
                    "SELECT id, user_id, at, entry_type, pool, amount, period_start,"
                    " purchase_id, charge_id, note FROM ledger_entries ORDER BY id"
                )
            return lows, [tuple(row) for row in rows]

        lows, rows = self.run(read())
        assert all(low is None or low >= 0 for low in tuple(lows))
        assert rows[: len(self.ledger_seen)] == self.ledger_seen
        self.ledger_seen = rows

    @invariant()
    def each_live_purchase_holds_what_the_model_says(self) -> None:
        """Which purchase paid is visible only here: totals agree under any spend order."""

        async def read() -> dict[int, int]:
            async with self.db.read() as conn:
                rows = await conn.fetchall("SELECT id, remaining FROM credit_purchases")
            return {row["id"]: row["remaining"] for row in rows}

        stored = self.run(read())
        assert set(stored) == set(self.purchases)
        for purchase in self.purchases.values():
            if purchase.live(self.now):
                assert stored[purchase.id] == purchase.remaining, purchase
            else:
                assert stored[purchase.id] in (0, purchase.remaining), purchase

    # --- helpers ----------------------------------------------------------------------

    def _instant(self, name: str) -> int:
        end = next_period_start(self.now)
        return {
            "1us": self.now + 1,
            "1h": self.now + HOUR,
            "1d": self.now + DAY,
            "9d": self.now + 9 * DAY,
            "10d": self.now + 10 * DAY,
            "40d": self.now + 40 * DAY,
            "period_end": end,
            "period_end-1us": max(end - 1, self.now + 1),
            "period_end+1us": end + 1,
        }[name]

    async def _change_plan(
        self, account: ModelAccount, terms: ModelPlan, at_next_period: bool
    ) -> None:
        async with self.db.transaction() as conn:
            await ledger.change_plan(
                conn,
                account.user.id,
                terms.plan.name,
                at_next_period=at_next_period,
                now=self.now,
                zone=UTC_ZONE,
            )

    def _plan_due(self, account: ModelAccount) -> int:
        """The allowance less the plan credit of the period's standing charges, clamped."""
        standing = sum(
            charge.from_plan
            for charge in self.charges.values()
            if charge.user_id == account.user.id
            and charge.period == account.period
            and charge.status == 201
            and not charge.refunded
        )
        return max(0, min(account.max_credit, account.max_credit - standing))

    def _account(self, user_id: int) -> ModelAccount:
        return next(account for account in self.accounts if account.user.id == user_id)

    def _charge(self, account: ModelAccount, kind: str, cost: int | None, key: str) -> Response:
        """The charge's outcome, rendered as the API answers it."""
        outcome = self.run(
            self.factory.charge(
                account.user, kind, key, None if cost is None else cost / 1000, costs=COSTS
            )
        )
        return charge_answer(outcome)

    def _model_charge(
        self, account: ModelAccount, kind: str, cost_sent: int | None, key: str, body: bytes
    ) -> ModelCharge:
        """The expected outcome of a fresh charge, applied to the model."""
        account.roll(self.now)
        cost = COSTS[kind] if cost_sent is None else cost_sent
        record = ModelCharge(key, account.user.id, kind, cost_sent, 201, body, account.period)
        self.charges[key] = record
        limit = account.limit(kind)
        if limit is not None and account.count(kind) >= limit:
            record.status = 429
            return record
        from_plan = min(account.plan, cost)
        owed = cost - from_plan
        live = sorted(
            (
                purchase
                for purchase in self.purchases.values()
                if purchase.user_id == account.user.id
                and purchase.remaining > 0
                and purchase.live(self.now)
            ),
            key=lambda p: (p.expires_at is None, p.expires_at or 0, p.id),
        )
        parts: list[tuple[int, int]] = []
        for purchase in live:
            if not owed:
                break
            part = min(purchase.remaining, owed)
            parts.append((purchase.id, part))
            owed -= part
        if owed and not account.postpaid:
            record.status = 402
            return record
        account.plan -= from_plan
        for purchase_id, part in parts:
            self.purchases[purchase_id].remaining -= part
        account.postpaid_used += owed
        account.add_count(kind, 1)
        record.from_plan, record.parts, record.postpaid = from_plan, parts, owed
        return record

    def _refund(self, key: str) -> None:
        record = self.charges.get(key)
        expected = (
            "charge_not_found"
            if record is None
            else "not_refundable"
            if record.status != 201
            else "already_refunded"
            if record.refunded
            else None
        )
        try:
            body = refund_answer(self.run(self.factory.refund(key))).body
        except Refusal as error:
            refusal: str | None = error.reason
        else:
            refusal = None
        assert refusal == expected
        if refusal is not None:
            COVERAGE.note(f"refund-{refusal}")
            return
        assert record is not None
        assert record.status == 201
        assert not record.refunded
        COVERAGE.note("refund")
        account = self._account(record.user_id)
        account.roll(self.now)
        record.refunded = True
        if record.period == account.period:
            COVERAGE.note("refund-same-period")
            account.plan = self._plan_due(account)
            account.postpaid_used -= record.postpaid
            account.add_count(record.kind, -1)
        else:
            COVERAGE.note("refund-earlier-period")
        for purchase_id, part in record.parts:
            purchase = self.purchases[purchase_id]
            if purchase.live(self.now):
                purchase.remaining += part
            else:
                COVERAGE.note("refund-to-expired-purchase")
        answer = orjson.loads(body)
        charge = answer["charge"]
        assert charge["idempotencyKey"] == key
        assert charge["refundedAt"] is not None
        assert (
            milli(charge["fromPlanCredit"]),
            milli(charge["fromPurchasedCredit"]),
            milli(charge["postpaid"]),
        ) == (record.from_plan, sum(part for _, part in record.parts), record.postpaid)
        assert answer["usage"] == self._expected_dto(account)

    def _expected_dto(self, account: ModelAccount) -> dict[str, Any]:
        account.roll(self.now)
        purchased = sum(
            purchase.remaining
            for purchase in self.purchases.values()
            if purchase.user_id == account.user.id and purchase.live(self.now)
        )
        end = next_period_start(self.now)
        return {
            "currentCredit": _credits(account.plan),
            "additionalCredit": _credits(purchased),
            "maxCredit": _credits(account.max_credit),
            "period": f"{instant(account.period).isoformat()}/{instant(end).isoformat()}",
            "ttpCount": account.ttp,
            "maxTtpCount": account.max_ttp,
            "editCount": account.edit,
            "maxEditCount": account.max_edit,
            "postpaidUsageCount": _credits(account.postpaid_used) if account.postpaid else None,
        }


def _credits(amount: int) -> int | float:
    return amount // 1000 if amount % 1000 == 0 else amount / 1000


def test_ledger_state_machine(database_url: str, tmp_path: Path, migrated_sqlite: Path) -> None:
    sqlite = database_url.startswith("sqlite")
    COVERAGE.seen.clear()
    machine = type(
        "LedgerMachineUnderTest",
        (LedgerMachine,),
        {
            "database_url": database_url,
            "sqlite_migrated": migrated_sqlite if sqlite else None,
            "sqlite_dir": tmp_path,
        },
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # The runs must reach every kind of outcome, or the model checks little.
    for outcome in (
        "charge-201",
        "charge-402",
        "charge-429",
        "replay",
        "reused",
        "refund",
        "change-now",
        "change-at-next-period",
    ):
        assert COVERAGE.seen.get(outcome, 0) > 0, (outcome, COVERAGE.seen)


def test_the_model_periods_are_anchored_on_the_tenth() -> None:
    assert period_start(micros(START)) == micros(START)
    assert period_start(micros(START) - 1) == micros(datetime(2025, 12, 10, tzinfo=UTC))
    assert next_period_start(micros(datetime(2026, 12, 31, tzinfo=UTC))) == micros(
        datetime(2027, 1, 10, tzinfo=UTC)
    )

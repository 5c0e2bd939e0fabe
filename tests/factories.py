"""Test data made through the real services, so tests start from states the service can reach."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from itertools import count
from zoneinfo import ZoneInfo

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.passwords import hash_password
from flamel_usage.db.gateway import Database
from flamel_usage.ledger import balances as ledger
from flamel_usage.ledger import rollup
from flamel_usage.ledger.reconcile import reconcile
from flamel_usage.metering import charges, holds, purchases, refunds
from flamel_usage.metering.outcomes import ChargeOutcome, Held, HoldOutcome, Refunded

_serial = count(1)


@functools.cache
def _hashed(password: str) -> str:
    """One hash per password for the whole run: each costs tens of milliseconds by
    design, and tests make many users with the same password."""
    return hash_password(password)


class Factory:
    def __init__(self, db: Database, clock: Callable[[], int], zone: ZoneInfo) -> None:
        self.db = db
        self.clock = clock
        self.zone = zone

    async def plan(
        self,
        *,
        credits: int = 100,
        period: str = "month",
        max_ttp: int | None = 10,
        max_edit: int | None = None,
        postpaid: bool = False,
        name: str | None = None,
    ) -> accounts.Plan:
        async with self.db.transaction() as conn:
            return await accounts.create_plan(
                conn,
                name=name or f"plan-{next(_serial)}",
                period_unit=period,
                max_credit=credits * 1000,
                max_ttp=max_ttp,
                max_edit=max_edit,
                billing_mode="postpaid" if postpaid else "prepaid",
                now=self.clock(),
            )

    async def user(
        self,
        plan: accounts.Plan | None = None,
        *,
        anchor: datetime | None = None,
        password: str | None = None,
        email: str | None = None,
    ) -> accounts.User:
        plan = plan or await self.plan()
        # As a server's start does: the history reads the day rollup kept in its zone.
        await rollup.key_days(self.db, self.zone)
        async with self.db.transaction() as conn:
            return await accounts.create_user(
                conn,
                email=email or f"user{next(_serial)}@example.com",
                plan_name=plan.name,
                anchor=anchor,
                password_hash=_hashed(password) if password else None,
                now=self.clock(),
                zone=self.zone,
            )

    async def key(self, user: accounts.User, *, expires_at: int | None = None) -> str:
        async with self.db.transaction() as conn:
            issued = await auth.issue_key(conn, user.id, expires_at=expires_at, now=self.clock())
        return issued.key

    async def expired_key(self, user: accounts.User, *, at: int | None = None) -> str:
        """A key that expired ``at`` (default now): issued live, then expired as an operator
        does it, since a key cannot be created already expired."""
        async with self.db.transaction() as conn:
            issued = await auth.issue_key(conn, user.id, expires_at=None, now=self.clock())
            await auth.set_key_expiry(conn, issued.id, self.clock() if at is None else at)
        return issued.key

    async def purchase(
        self,
        user: accounts.User,
        credits: float,
        *,
        expires_at: int | None = None,
        idempotency_key: str | None = None,
    ) -> purchases.Purchase:
        request = purchases.PurchaseRequest(user.id, round(credits * 1000), expires_at)
        async with self.db.transaction() as conn:
            bought = await purchases.buy_credits(
                conn, request, idempotency_key=idempotency_key, now=self.clock(), zone=self.zone
            )
        return bought.purchase

    async def usage(self, user: accounts.User) -> ledger.Usage:
        async with self.db.read() as conn:
            return await ledger.read_usage(conn, user.id, self.clock(), self.zone)

    async def reconcile(self) -> list[str]:
        async with self.db.read() as conn:
            return await reconcile(conn, self.zone)

    async def charge(
        self,
        user: accounts.User,
        kind: str,
        key: str,
        cost: float | None = None,
        *,
        costs: dict[str, int] | None = None,
    ) -> ChargeOutcome:
        """Charge ``kind`` (``cost`` in credits, default: the kind's cost) under ``key``."""
        milli = None if cost is None else round(cost * 1000)
        request = charges.ChargeRequest(user.id, kind, milli)
        async with self.db.transaction() as conn:
            return await charges.charge(
                conn,
                request,
                idempotency_key=key,
                costs=costs if costs is not None else {"ttp": 1000, "edit": 1000, "image": 1000},
                now=self.clock(),
                zone=self.zone,
            )

    async def refund(self, key: str) -> Refunded:
        """Refund the charge made with ``key``."""
        async with self.db.transaction() as conn:
            return await refunds.refund(conn, key, now=self.clock(), zone=self.zone)

    async def hold(
        self,
        user: accounts.User,
        kind: str,
        key: str,
        cost: float | None = None,
        *,
        ttl_seconds: int | None = None,
    ) -> HoldOutcome:
        """Hold ``kind`` (``cost`` in credits, default: the kind's cost) under ``key``."""
        milli = None if cost is None else round(cost * 1000)
        request = holds.HoldRequest(user.id, kind, milli, ttl_seconds)
        async with self.db.transaction() as conn:
            return await holds.create(
                conn,
                request,
                idempotency_key=key,
                costs={"ttp": 1000, "edit": 1000, "image": 1000},
                now=self.clock(),
                zone=self.zone,
            )

    async def settle(self, hold_id: int, cost: float) -> Held:
        async with self.db.transaction() as conn:
            return await holds.settle(
                conn, hold_id, round(cost * 1000), now=self.clock(), zone=self.zone
            )

    async def release(self, hold_id: int) -> Held:
        async with self.db.transaction() as conn:
            return await holds.release(conn, hold_id, now=self.clock(), zone=self.zone)

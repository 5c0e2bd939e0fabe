"""Buying credit, at most once per idempotency key.

A purchase adds credit that survives period ends until its expiry (if any). Sold twice
after a lost answer it is money the customer never paid, so a purchase may carry an
idempotency key, as a charge does, through the same machinery
(``metering.idempotency``): the key's lock, then its record read by user and key, then
the purchase, its ledger entry and the record, all in the caller's one transaction. The
record is the purchase's own row (migration 0013): the key, the request's fingerprint
and the usage the answer showed, so a retry gets the first answer back, marked
replayed, whatever was bought or spent since. A purchase's key is its own: it is not
checked against the keys of charges and holds (they live in ``charges``).

Without a key a purchase is made every time it is asked, as before keys existed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import orjson

from flamel_usage.accounts.users import live_user_id
from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Connection, Row, UniqueViolation
from flamel_usage.ledger.balances import Usage, append_entry, locked_account, read_usage
from flamel_usage.metering import idempotency

#: A purchase's record: ``idempotency.claim`` reads it by user and key.
READ_RECORD = (
    "SELECT id, user_id, amount, expires_at, created_at, fingerprint, response"
    " FROM credit_purchases WHERE user_id = ? AND idempotency_key = ?"
)
_INSERT = (
    "INSERT INTO credit_purchases (user_id, amount, remaining, expires_at, created_at,"
    " idempotency_key, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_RECORD_USAGE = "UPDATE credit_purchases SET response = ? WHERE user_id = ? AND id = ?"


@dataclass(frozen=True, slots=True)
class Purchase:
    id: int
    user_id: int
    amount: int
    expires_at: int | None
    created_at: int


@dataclass(frozen=True, slots=True)
class PurchaseRequest:
    user_id: int
    amount: int
    expires_at: int | None

    def fingerprint(self) -> str:
        """What makes two purchase requests "the same" for a key: the body as sent."""
        expires = "never" if self.expires_at is None else str(self.expires_at)
        text = f"purchase|{self.user_id}|{self.amount}|{expires}"
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Bought:
    """The purchase and the user's usage right after it; ``replayed``: the outcome
    recorded under the key by an earlier request, and nothing was sold now."""

    purchase: Purchase
    usage: Usage
    replayed: bool = False


async def buy_credits(
    conn: Connection,
    request: PurchaseRequest,
    *,
    idempotency_key: str | None,
    now: int,
    zone: ZoneInfo,
) -> Bought:
    """Sell ``request``'s credit, once per ``idempotency_key`` when there is one; the
    key's first outcome replayed, or ``idempotency_key_reused`` for another body."""
    fingerprint = None
    if idempotency_key is not None:
        fingerprint = request.fingerprint()
        first = await idempotency.claim(
            conn, request.user_id, idempotency_key, fingerprint, read=READ_RECORD
        )
        if first is not None:
            return _replayed(first)
    if request.expires_at is not None and request.expires_at <= now:
        raise Refusal("bad_request", "expiresAt is not in the future: the credit would never count")
    user_id, amount = request.user_id, request.amount
    await live_user_id(conn, user_id)
    account = await locked_account(conn, user_id, now, zone)
    try:
        purchase_id = await conn.fetchval(
            _INSERT, user_id, amount, amount, request.expires_at, now, idempotency_key, fingerprint
        )
    except UniqueViolation:
        # Another user's purchase holds the key: the transaction is rolled back.
        raise Refusal("idempotency_key_reused", idempotency.REUSED) from None
    await append_entry(
        conn,
        user_id,
        now,
        "purchase",
        "purchase",
        amount,
        account["period_start"],
        purchase_id=purchase_id,
    )
    usage = await read_usage(conn, user_id, now, zone)
    if idempotency_key is not None:
        response = orjson.dumps({"usage": usage.to_dto()}).decode()
        await conn.execute(_RECORD_USAGE, response, user_id, purchase_id)
    return Bought(Purchase(purchase_id, user_id, amount, request.expires_at, now), usage)


def _replayed(row: Row) -> Bought:
    purchase = Purchase(
        row["id"], row["user_id"], row["amount"], row["expires_at"], row["created_at"]
    )
    usage = idempotency.usage_of(orjson.loads(row["response"])["usage"])
    return Bought(purchase, usage, replayed=True)

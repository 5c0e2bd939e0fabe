"""Idempotency keys, and the record that keeps each key's outcome.

The first charge request with a key is applied and its outcome recorded under the key,
in the charge's own transaction; a later request with the key and the same body gets
that outcome back, marked replayed, and changes nothing; one with another body is
refused (``idempotency_key_reused``). Requests with one key wait on a lock named after
it, so two at the same instant are applied once.

The record is the key's row of ``charges``. Its columns hold the charge's numbers;
``status`` holds how it ended in the numbers of the HTTP answers it has held since
migration 0002 (``CHARGED``, or the status of the refusal's reason in the table), which
the ledger's queries select standing charges by; ``response`` holds what the columns do
not: for a charge the usage right after it (the contract's ``UsageInfoDto``, as
``Usage.to_dto`` gives it), for a refusal its reason and message, under the names of the
answer (``usage``; ``data``, ``message``). Records written before outcomes were typed
hold the whole first answer under those names, so every record reads alike, and a replay
renders the outcome the first answer was rendered from: the same bytes.

A record is found by its user and key, so that it lives with its user's rows in a store
sharded by user; the key's uniqueness across users is the store's unique index, whose
violation is answered ``idempotency_key_reused`` like any other reuse.

Records are kept ``FLAMEL_IDEMPOTENCY_RETENTION_DAYS``: ``prune`` then deletes a
refusal's record and retires a charge's (the charge stays, with its ledger entries): its
key becomes ``RETIRED`` and its id, which no client's key can be (a key never starts with
a space), so the client's key may be used again, and its replay body is dropped.

A purchase made with a key is its key's record in its own row (``metering.purchases``),
found by ``claim`` as a charge's is, under the same lock and the same refusals;
``prune`` retires it by forgetting its key, fingerprint and replay body.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import orjson

from flamel_usage.core.errors import REASONS, Refusal
from flamel_usage.core.money import parse_credits
from flamel_usage.core.periods import Period
from flamel_usage.db.gateway import Connection, Database, Row, UniqueViolation
from flamel_usage.ledger.balances import CHARGED, Usage
from flamel_usage.metering.outcomes import Charge, Charged, ChargeOutcome, Refused

#: 1-255 printable ASCII characters, no space at either end: HTTP servers strip those
#: from header values, so such a key would not be the same key over HTTP and the CLI.
IDEMPOTENCY_KEY_PATTERN = r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)

# The record's statements, by name: ``bench/charges.py`` runs them too.
READ_RECORD = (
    "SELECT id, idempotency_key, fingerprint, user_id, kind, cost, status, response, from_plan,"
    " from_purchased, postpaid, created_at, held, expires_at FROM charges"
    " WHERE user_id = ? AND idempotency_key = ?"
)
INSERT_RECORD = (
    "INSERT INTO charges (idempotency_key, fingerprint, user_id, kind, cost, status, response,"
    " from_plan, from_purchased, postpaid, period_start, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
RECORD_USAGE = "UPDATE charges SET response = ? WHERE user_id = ? AND id = ?"

#: The start of a retired record's key (see the module's docstring).
RETIRED = " retired:"
#: Records pruned per transaction: each holds SQLite's write lock, or PostgreSQL's row
#: locks, for a few milliseconds, and charges go on between them.
PRUNE_BATCH = 500
#: The records still holding their key, oldest first, through migration 0012's index.
_KEYED_BEFORE = (
    "SELECT id FROM charges WHERE substr(idempotency_key, 1, 1) <> ' ' AND created_at < ?"
    " AND status {} ? ORDER BY created_at LIMIT ?"
)
_DELETE_REFUSALS = f"DELETE FROM charges WHERE id IN ({_KEYED_BEFORE.format('<>')})"  # noqa: S608
_RETIRE_CHARGES = (
    f"UPDATE charges SET idempotency_key = '{RETIRED}' || id, response = '{{}}'"  # noqa: S608
    f" WHERE id IN ({_KEYED_BEFORE.format('=')})"
)
#: A purchase's record is retired by forgetting its key (the purchase stays), oldest
#: first, through migration 0013's index.
_RETIRE_PURCHASES = (
    "UPDATE credit_purchases SET idempotency_key = NULL, fingerprint = NULL, response = NULL"
    " WHERE id IN (SELECT id FROM credit_purchases WHERE idempotency_key IS NOT NULL"
    " AND created_at < ? ORDER BY created_at LIMIT ?)"
)
_MICROS_PER_DAY = 86_400_000_000


def idempotency_key(value: str | None) -> str:
    """``value`` if it is a valid idempotency key, else ``invalid_idempotency_key``."""
    if value is None or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise Refusal(
            "invalid_idempotency_key",
            "send an Idempotency-Key of 1-255 printable ASCII characters,"
            " with no space at either end",
        )
    return value


async def lock(conn: Connection, key: str) -> None:
    """Hold ``key`` until the transaction ends: a charge or refund under it runs alone."""
    await conn.lock_name(f"charge:{key}")


async def read_record(conn: Connection, user_id: int, key: str) -> tuple[str, ChargeOutcome] | None:
    """The fingerprint and the replayed outcome of ``user_id``'s record under ``key``."""
    row = await conn.fetchone(READ_RECORD, user_id, key)
    if row is None:
        return None
    return row["fingerprint"], replayed_charge(row)


def replayed_charge(row: Row) -> ChargeOutcome:
    """The outcome a charge's record (a row of ``READ_RECORD``) replays."""
    if row["status"] != CHARGED:
        return replayed_refusal(row)
    recorded = orjson.loads(row["response"])
    charge = Charge(
        row["id"],
        row["idempotency_key"],
        row["user_id"],
        row["kind"],
        row["cost"],
        row["from_plan"],
        row["from_purchased"],
        row["postpaid"],
        row["created_at"],
    )
    return Charged(charge, usage_of(recorded["usage"]), replayed=True)


#: Why a key is refused for a request other than its first, whichever the request.
REUSED = "this Idempotency-Key was used for a different charge, hold or purchase"


def replayed_refusal(row: Row) -> Refused:
    recorded = orjson.loads(row["response"])
    return Refused(recorded["data"], recorded.get("message"), True)


async def claim(
    conn: Connection, user_id: int, key: str, fingerprint: str, *, read: str = READ_RECORD
) -> Row | None:
    """``user_id``'s record (a row of ``read``) under ``key`` made by this request (by its
    ``fingerprint``), None for a key new to the user; ``idempotency_key_reused`` when the
    key was used for another request of the user, a charge's key for a hold included
    (``record`` refuses one used for another user).

    ``read`` finds the record by user and key (``?`` twice, in that order), with its
    ``fingerprint``: a charge's or hold's is its ``charges`` row (``READ_RECORD``), a
    purchase's its ``credit_purchases`` row (``metering.purchases``).

    Takes the key's lock first, so the answer holds until the transaction ends.
    """
    await lock(conn, key)
    row = await conn.fetchone(read, user_id, key)
    if row is None:
        return None
    if row["fingerprint"] != fingerprint:
        raise Refusal("idempotency_key_reused", REUSED)
    return row


async def first_outcome(
    conn: Connection, user_id: int, key: str, fingerprint: str
) -> ChargeOutcome | None:
    """The outcome recorded under ``key`` for this charge request, None for a key new to
    ``user_id`` (see ``claim``)."""
    row = await claim(conn, user_id, key, fingerprint)
    return None if row is None else replayed_charge(row)


async def record(
    conn: Connection,
    fingerprint: str,
    charge: Charge,
    period_start: int,
    *,
    refused: Refused | None = None,
) -> int:
    """Record ``charge`` under its key, made or ``refused``; the id it is given (its
    ``id`` is not read). A charge made gets its usage from ``record_usage`` once applied.
    """
    if refused is None:
        status, recorded = CHARGED, {}
    else:
        status = REASONS[refused.reason].status
        recorded = {"data": refused.reason, "message": refused.message}
    try:
        charge_id = await conn.fetchval(
            INSERT_RECORD,
            charge.idempotency_key,
            fingerprint,
            charge.user_id,
            charge.kind,
            charge.cost,
            status,
            orjson.dumps(recorded).decode(),
            charge.from_plan,
            charge.from_purchased,
            charge.postpaid,
            period_start,
            charge.created_at,
        )
    except UniqueViolation:
        # Another user's record holds the key: the transaction is rolled back, as for
        # every refusal that is raised.
        raise Refusal("idempotency_key_reused", REUSED) from None
    return int(charge_id)


async def record_usage(conn: Connection, user_id: int, charge_id: int, usage: Usage) -> None:
    response = orjson.dumps({"usage": usage.to_dto()}).decode()
    await conn.execute(RECORD_USAGE, response, user_id, charge_id)


async def prune(db: Database, now: int, retention_days: int) -> int:
    """Delete or retire the records older than ``retention_days``, ``PRUNE_BATCH`` at a
    time, each batch in a transaction of its own; how many."""
    before = now - retention_days * _MICROS_PER_DAY
    pruned = 0
    batches: list[tuple[str, tuple[int, ...]]] = [
        (_DELETE_REFUSALS, (before, CHARGED, PRUNE_BATCH)),
        (_RETIRE_CHARGES, (before, CHARGED, PRUNE_BATCH)),
        (_RETIRE_PURCHASES, (before, PRUNE_BATCH)),
    ]
    for statement, args in batches:
        while True:
            async with db.transaction() as conn:
                done = await conn.execute(statement, *args)
            pruned += done
            if done < PRUNE_BATCH:
                break
            await asyncio.sleep(0)  # the requests waiting for the store go first
    return pruned


def usage_of(recorded: dict[str, Any]) -> Usage:
    """The ``Usage`` a record's ``usage`` was written from: ``to_dto`` gives it back."""

    def credit(name: str) -> int:
        return parse_credits(recorded[name], name, allow_zero=True)

    start, end = (datetime.fromisoformat(end) for end in recorded["period"].split("/"))
    postpaid = recorded["postpaidUsageCount"]
    return Usage(
        current_credit=credit("currentCredit"),
        additional_credit=credit("additionalCredit"),
        max_credit=credit("maxCredit"),
        period=Period(start, end),
        ttp_count=recorded["ttpCount"],
        max_ttp=recorded["maxTtpCount"],
        edit_count=recorded["editCount"],
        max_edit=recorded["maxEditCount"],
        postpaid_used=None if postpaid is None else credit("postpaidUsageCount"),
    )

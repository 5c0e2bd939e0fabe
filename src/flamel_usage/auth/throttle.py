"""Slowing down guessing: failed authentications counted per client and per account.

Each bucket (``key:<client>``, ``login-client:<client>``, ``login-account:<hash>``)
counts failures in a fixed window. Past the budget, every attempt in that bucket is
refused with ``429 too_many_requests`` and ``Retry-After`` until the window ends, the
right answers included: otherwise a blocked client could go on guessing and would be
told when it guessed right. Valid keys of other clients never wait: their bucket is
another row. The counts live in the database, so they hold across workers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flamel_usage.accounts.service import email_key
from flamel_usage.db import Connection
from flamel_usage.errors import ApiError

MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class Budget:
    failures: int
    window_seconds: int


class TooManyRequests(ApiError):
    status, reason = 429, "too_many_requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed attempts: wait before trying again")
        self.headers = ((b"retry-after", str(retry_after).encode()),)


def key_bucket(client: str) -> str:
    return f"key:{client}"


def login_buckets(client: str, email: str) -> tuple[str, str]:
    """The client's bucket, and the account's (hashed: no attempted address is stored).

    The account is the address as users are looked up by (``email_key``): every
    spelling of one address shares one budget of guesses.
    """
    account = hashlib.sha256(email_key(email).encode()).hexdigest()
    return f"login-client:{client}", f"login-account:{account}"


def refuse_if_over(failures: int | None, window_end: int | None, now: int, budget: Budget) -> None:
    """Raise the 429 when a bucket's current window already holds ``budget`` failures."""
    if failures is None or window_end is None or window_end <= now:
        return
    if failures >= budget.failures:
        raise TooManyRequests(_seconds_until(window_end, now))


async def check(conn: Connection, buckets: tuple[str, ...], now: int, budget: Budget) -> None:
    """Refuse now if any of ``buckets`` has used up its budget in its current window."""
    marks = ", ".join("?" * len(buckets))
    rows = await conn.fetchall(
        f"SELECT failures, window_end FROM auth_failures WHERE bucket IN ({marks})",  # noqa: S608
        *buckets,
    )
    for row in rows:
        refuse_if_over(row["failures"], row["window_end"], now, budget)


async def record_failure(conn: Connection, bucket: str, now: int, budget: Budget) -> None:
    """Count one failure in ``bucket``; past the budget, answer it with the 429."""
    fresh_end = now + budget.window_seconds * MICROS
    row = await conn.fetchone(
        "INSERT INTO auth_failures (bucket, window_end, failures) VALUES (?, ?, 1)"
        " ON CONFLICT (bucket) DO UPDATE SET"
        " failures = CASE WHEN auth_failures.window_end <= ? THEN 1"
        " ELSE auth_failures.failures + 1 END,"
        " window_end = CASE WHEN auth_failures.window_end <= ? THEN ?"
        " ELSE auth_failures.window_end END"
        " RETURNING failures, window_end",
        bucket,
        fresh_end,
        now,
        now,
        fresh_end,
    )
    assert row is not None
    if row["failures"] > budget.failures:
        raise TooManyRequests(_seconds_until(row["window_end"], now))


async def forget(conn: Connection, bucket: str) -> None:
    await conn.execute("DELETE FROM auth_failures WHERE bucket = ?", bucket)


async def delete_ended(conn: Connection, now: int) -> None:
    await conn.execute("DELETE FROM auth_failures WHERE window_end <= ?", now)


def _seconds_until(window_end: int, now: int) -> int:
    return max(1, -(-(window_end - now) // MICROS))

"""Slowing down guessing, without handing anyone a switch that locks a customer out.

Failures are counted per bucket in a fixed window; past a bucket's budget the attempts
it judges are refused with ``429 too_many_requests`` and ``Retry-After`` until the
window ends. The counts live in the database, so they hold across workers and machines.

API keys (bucket ``key:<client>``): past the budget a client's wrong keys are refused
unchecked and uncounted (so a flood costs one read each, never a write), but a valid
key is always answered, and never pays a throttle lookup. Keys carry 256 random bits:
nobody guesses one, so the budget bounds load and noise, and refusing a valid key would
only let a few wrong keys from behind a shared address (a NAT, a proxy, the platform's
own back end) lock out every customer there.

Passwords can be guessed, so a sign-in past the budget is refused before its password
is checked, the right one included: otherwise a blocked client could go on guessing
and would be told when it guessed right. Which budget judges a sign-in depends on who
asks:

- a browser that signed in to the account before, shown by its device cookie (set on
  every successful sign-in and signed for that account; see ``cookies``), is judged by
  its own bucket ``login-device:<id>`` alone. Nobody else's failures lock it out, and
  a stolen device cookie buys no more than that budget of guesses;
- any other client is judged by its address's bucket ``login-client:<client>`` and the
  account's ``login-account:<hash>``, so an attacker with many addresses still gets
  only the account's budget of guesses per window. Whoever exhausts that budget locks
  out only the account's unknown clients (the owner on a new browser) until the window
  ends; a successful sign-in clears neither bucket, so the owner signing in gives an
  attacker no fresh guesses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flamel_usage.accounts.users import email_key
from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import Connection, Database

MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class Budget:
    failures: int
    window_seconds: int


def key_bucket(client: str) -> str:
    return f"key:{client}"


def login_buckets(client: str, email: str, device_id: str | None) -> tuple[str, ...]:
    """The buckets that judge a sign-in: a known device's own, else the client's and the
    account's (hashed: no attempted address is stored).

    The account is the address as users are looked up by (``email_key``): every
    spelling of one address shares one budget of guesses.
    """
    if device_id is not None:
        return (device_bucket(device_id),)
    account = hashlib.sha256(email_key(email).encode()).hexdigest()
    return f"login-client:{client}", f"login-account:{account}"


def device_bucket(device_id: str) -> str:
    return f"login-device:{device_id}"


async def check(conn: Connection, buckets: tuple[str, ...], now: int, budget: Budget) -> None:
    """Refuse now if any of ``buckets`` has used up its budget in its current window."""
    marks = ", ".join("?" * len(buckets))
    rows = await conn.fetchall(
        f"SELECT failures, window_end FROM auth_failures WHERE bucket IN ({marks})",  # noqa: S608
        *buckets,
    )
    for row in rows:
        if row["window_end"] > now and row["failures"] >= budget.failures:
            raise _too_many(row["window_end"], now)


async def record_failures(db: Database, buckets: tuple[str, ...], now: int, budget: Budget) -> None:
    """Count one failure in each of ``buckets``; the 429 for the one that went past its
    budget (another worker's failure may have come first).

    A transaction of its own, never a statement on a read's connection: on SQLite the
    transaction waits for the write lock with the event loop free, so a failure arriving
    while another process writes holds up no other request of this worker.
    """
    fresh_end = now + budget.window_seconds * MICROS
    async with db.transaction() as conn:
        windows = [
            await conn.fetchone(
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
            for bucket in buckets
        ]
    ends = [row["window_end"] for row in windows if row and row["failures"] > budget.failures]
    if ends:
        raise _too_many(max(ends), now)


async def forget(conn: Connection, bucket: str) -> None:
    await conn.execute("DELETE FROM auth_failures WHERE bucket = ?", bucket)


async def delete_ended(conn: Connection, now: int) -> None:
    await conn.execute("DELETE FROM auth_failures WHERE window_end <= ?", now)


def _too_many(window_end: int, now: int) -> Refusal:
    """``too_many_requests``, to retry once the window ends (whole seconds, at least 1)."""
    seconds = max(1, -(-(window_end - now) // MICROS))
    message = "too many failed attempts: wait before trying again"
    return Refusal("too_many_requests", message, retry_after=seconds)

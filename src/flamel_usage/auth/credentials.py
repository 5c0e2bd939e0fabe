"""Who is calling: API keys and login sessions, resolved to a user id.

Every failure is one of the contract's reasons. A revoked key, an unknown key and the
key of a deleted user all answer ``wrong_api_key``, so that a caller learns nothing
about which keys once existed; only a key that is live but past its expiry says
``api_key_expired``, as the contract asks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal, NamedTuple

from flamel_usage.accounts.users import live_user_id, normalise_email
from flamel_usage.auth import cookies, keys, throttle
from flamel_usage.auth.passwords import (
    hash_password,
    needs_rehash,
    verify_password,
    verify_password_dummy,
)
from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import INVISIBLE, SPACE, UNICODE_SPACE, refuse_invisible
from flamel_usage.db.gateway import Connection, Database, Row

#: Live keys (neither revoked nor expired) a user may hold when making one themselves;
#: the operator is not held to it.
MAX_LIVE_KEYS = 20
#: Longest key name, in characters, once trimmed.
MAX_KEY_NAME = 64
_NAME_CHAR = "[^\\x00-\\x1f\\x7f" + INVISIBLE + "]"
_NAME_EDGE = "[^\\x00-\\x20\\x7f" + UNICODE_SPACE + INVISIBLE + "]"
#: What ``key_name`` takes, as the API's document states it: at most ``MAX_KEY_NAME``
#: characters between optional surrounding spaces, the first and last of them not a
#: space, none of them a control or invisible character.
KEY_NAME_PATTERN = (
    f"^{SPACE}*(?:{_NAME_EDGE}|{_NAME_EDGE}{_NAME_CHAR}{{0,{MAX_KEY_NAME - 2}}}{_NAME_EDGE})"
    f"{SPACE}*$"
)

KeyState = Literal["active", "expired", "revoked"]


def key_name(text: str | None) -> str | None:
    """The name as stored: trimmed, 1-64 characters, nothing invisible; None for none.

    A name is shown to people next to the key's prefix, so it is held to what can be read:
    no control, zero-width or bidirectional character (``refuse_invisible``).
    """
    if text is None:
        return None
    name = text.strip()
    refuse_invisible(name, "name")
    if not 1 <= len(name) <= MAX_KEY_NAME:
        raise Refusal("bad_request", f"name must be 1-{MAX_KEY_NAME} characters once trimmed")
    return name


@dataclass(frozen=True, slots=True)
class IssuedKey:
    id: int
    user_id: int
    key: str
    prefix: str
    name: str | None
    created_at: int
    expires_at: int | None


async def issue_key(
    conn: Connection,
    user_id: int,
    *,
    expires_at: int | None,
    now: int,
    name: str | None = None,
    max_live: int | None = None,
) -> IssuedKey:
    """A new key, shown this once.

    An expiry at or before now is refused, as for purchased credit: the key would never
    work. An existing key is expired at once with ``set_key_expiry``. With ``max_live``,
    a user who holds that many live keys already gets ``too_many_keys``; the count and
    the insert are serialised per user, so two requests at once cannot both pass it.
    """
    name = key_name(name)
    if expires_at is not None and expires_at <= now:
        raise Refusal("bad_request", "expiresAt is not in the future: the key would never work")
    await live_user_id(conn, user_id)
    if max_live is not None:
        await conn.lock_name(f"api_keys.user.{user_id}")
        live = await conn.fetchval(
            "SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?)",
            user_id,
            now,
        )
        if live >= max_live:
            raise Refusal("too_many_keys", f"at most {max_live} live keys: revoke one first")
    key = keys.new_api_key()
    key_id = await conn.fetchval(
        "INSERT INTO api_keys (user_id, prefix, key_hash, name, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        user_id,
        keys.key_prefix(key),
        keys.key_hash(key),
        name,
        now,
        expires_at,
    )
    return IssuedKey(key_id, user_id, key, keys.key_prefix(key), name, now, expires_at)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key after its creation: never the key itself."""

    id: int
    prefix: str
    name: str | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None

    def state(self, now: int) -> KeyState:
        """``revoked`` before ``expired``: a revoked key never comes back, an expired one
        can (the operator may move its expiry)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


async def list_keys(conn: Connection, user_id: int) -> list[KeyInfo]:
    await live_user_id(conn, user_id)
    rows = await conn.fetchall(
        "SELECT id, prefix, name, created_at, expires_at, revoked_at, last_used_at"
        " FROM api_keys WHERE user_id = ? ORDER BY id",
        user_id,
    )
    return [
        KeyInfo(
            row["id"],
            row["prefix"],
            row["name"],
            row["created_at"],
            row["expires_at"],
            row["revoked_at"],
            row["last_used_at"],
        )
        for row in rows
    ]


async def revoke_key(conn: Connection, key_id: int, now: int, *, owner: int | None = None) -> None:
    """Revoke the key; revoking it again changes nothing (its first revocation time stays).

    With ``owner``, only that user's key: another user's key id is ``key_not_found``,
    exactly as an id that does not exist, so that ids of others leak nothing.
    """
    sql = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"
    args: list[object] = [now, key_id]
    if owner is not None:
        sql += " AND user_id = ?"
        args.append(owner)
    changed = await conn.execute(sql, *args)
    if not changed:
        raise Refusal("key_not_found", "no such key")


async def set_key_expiry(conn: Connection, key_id: int, expires_at: int | None) -> None:
    changed = await conn.execute(
        "UPDATE api_keys SET expires_at = ? WHERE id = ?", expires_at, key_id
    )
    if not changed:
        raise Refusal("key_not_found", "no such key")


async def rename_key(conn: Connection, key_id: int, name: str | None) -> None:
    """Give the key ``name`` (``key_name``'s rules), or take its name away with None."""
    changed = await conn.execute(
        "UPDATE api_keys SET name = ? WHERE id = ?", key_name(name), key_id
    )
    if not changed:
        raise Refusal("key_not_found", "no such key")


class KeyOwner(NamedTuple):
    """Who a key belongs to (a named tuple: built on every keyed request)."""

    key_id: int
    user_id: int


#: The live key of a hash and its user: the one query of a request made with a key.
KEY_OWNER = (
    "SELECT k.id, k.user_id, k.key_hash, k.expires_at"
    " FROM api_keys k JOIN users u ON u.id = k.user_id"
    " WHERE k.key_hash = ? AND k.revoked_at IS NULL AND u.deleted_at IS NULL"
)


async def user_for_api_key(
    conn: Connection, key: str, now: int, *, client: str, budget: throttle.Budget
) -> KeyOwner:
    """The live key ``key`` and its user, or the contract's 401; for a wrong key from a
    client past its budget, the 429.

    A valid key is never refused for its client's wrong ones, and costs one query. A
    wrong one is counted by ``count_wrong_key``, once this read is over.
    """
    if keys.is_well_formed(key):
        digest = keys.key_hash(key)
        row = await conn.fetchone(KEY_OWNER, digest)
        if row is not None and hmac.compare_digest(row["key_hash"], digest):
            if row["expires_at"] is not None and row["expires_at"] <= now:
                raise Refusal("api_key_expired")
            return KeyOwner(row["id"], row["user_id"])
    await throttle.check(conn, (throttle.key_bucket(client),), now, budget)
    raise Refusal("wrong_api_key")


async def count_wrong_key(db: Database, client: str, now: int, budget: throttle.Budget) -> None:
    """Count a wrong key against its client; the 429 when that goes past the budget.

    Apart from the read that found the key wrong: the count is a write, and a write
    must not hold the read's connection (on SQLite, the worker's only one) while it
    waits for the store's write lock.
    """
    await throttle.record_failures(db, (throttle.key_bucket(client),), now, budget)


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SignedIn(NamedTuple):
    session_id: str
    #: The device cookie that marks this browser as one that signed in to the account.
    device_cookie: str


async def login(
    db: Database,
    email: str,
    password: str,
    *,
    now: int,
    ttl_seconds: int,
    client: str,
    device_cookie: str | None,
    secret: str,
    budget: throttle.Budget,
) -> SignedIn:
    """A new session for the user whose password this is, else ``invalid_credentials``.

    A browser whose device cookie shows it signed in to this account before is judged
    by its own budget only, any other client by its own and the account's (``throttle``
    says why); past one, the attempt is refused before any password is checked. The
    check (tens of milliseconds of argon2id) runs in a thread and outside any database
    lock, and an unknown email costs the same check as a known one, so response time
    does not tell which addresses have accounts. A stored hash of an older scheme or
    cost (``needs_rehash``) is replaced in the transaction that opens the session.
    """
    try:
        address: str | None = normalise_email(email)
    except Refusal:
        address = None
    async with db.read() as conn:
        row = None
        if address is not None:
            row = await conn.fetchone(
                "SELECT id, password_hash FROM users WHERE email = ? AND deleted_at IS NULL",
                address,
            )
        device_id = None
        if row is not None and device_cookie is not None:
            device_id = cookies.device_id_from_cookie(device_cookie, row["id"], secret)
        buckets = throttle.login_buckets(client, email, device_id)
        await throttle.check(conn, buckets, now, budget)
    stored = await _verified_hash(password, row)
    if stored is None or row is None:
        await throttle.record_failures(db, buckets, now, budget)
        raise Refusal("invalid_credentials")
    rehashed = await asyncio.to_thread(hash_password, password) if needs_rehash(stored) else None
    async with db.transaction() as conn:
        session_id = cookies.new_session_id()
        await conn.execute(
            "INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            _session_hash(session_id),
            row["id"],
            now,
            now + ttl_seconds * 1_000_000,
        )
        if rehashed is not None:
            await _replace_password_hash(conn, row["id"], stored, rehashed)
        if device_id is None:
            device_id = cookies.new_session_id()
        else:  # the owner's own mistakes are forgiven, as nobody else's count there
            await throttle.forget(conn, throttle.device_bucket(device_id))
    return SignedIn(session_id, cookies.device_cookie_value(device_id, row["id"], secret))


async def _verified_hash(password: str, row: Row | None) -> str | None:
    """The user's stored hash when ``password`` matches it, else None. Checked in a
    thread; with no user or no password, the same time is spent on a dummy."""
    stored: str | None = None if row is None else row["password_hash"]
    if stored is None:
        await asyncio.to_thread(verify_password_dummy, password)
        return None
    return stored if await asyncio.to_thread(verify_password, password, stored) else None


async def _replace_password_hash(conn: Connection, user_id: int, old: str, new: str) -> None:
    """Upgrade a hash of an older scheme or cost, just verified, to today's.

    Only while the hash is still ``old``: a password set meanwhile stays as set.
    """
    await conn.execute(
        "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
        new,
        user_id,
        old,
    )


async def user_for_session(conn: Connection, session_id: str, now: int) -> int | None:
    user_id = await conn.fetchval(
        "SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id_hash = ? AND s.expires_at > ? AND u.deleted_at IS NULL",
        _session_hash(session_id),
        now,
    )
    return None if user_id is None else int(user_id)


async def logout(conn: Connection, session_id: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE id_hash = ?", _session_hash(session_id))


async def delete_expired_sessions(conn: Connection, now: int) -> None:
    """Sessions past their expiry no longer sign anyone in; nothing else deletes them."""
    await conn.execute("DELETE FROM sessions WHERE expires_at <= ?", now)

"""Creating and looking up plans and users.

A user is created together with its subscription and the first period's ledger entry,
in one transaction, so that no user ever exists without an account to read.

A user may carry an external id: the platform's own id for that customer, by which a
session in the platform's store names its user (SPEC 7, ``auth.platform_sessions``).
It is unique among live users, so a deleted user's id can be given to a new one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import INVISIBLE, MAX_INT, SPACE, UNICODE_SPACE, refuse_invisible
from flamel_usage.core.periods import PeriodUnit, from_micros, period_containing, to_micros
from flamel_usage.db.gateway import Connection, Row, UniqueViolation

BillingMode = Literal["prepaid", "postpaid"]

#: A character of an address: not "@", whitespace, a control or an invisible character.
_ADDRESS_CHAR = "[^@\\x00-\\x20\\x7f" + UNICODE_SPACE + INVISIBLE + "]"
_LOCAL_PART, _DOMAIN = 64, 189
#: Longest email taken, in characters: RFC 5321's 256 for a path, less its brackets.
MAX_EMAIL_LENGTH = _LOCAL_PART + 1 + _DOMAIN
#: An email as it may be sent: at most 64 characters before the one "@" and 189 after
#: it, between spaces that are trimmed. The API's document states this pattern, and
#: ``normalise_email`` holds the trimmed address to it.
EMAIL_PATTERN = (
    f"^{SPACE}*{_ADDRESS_CHAR}{{1,{_LOCAL_PART}}}@{_ADDRESS_CHAR}{{1,{_DOMAIN}}}{SPACE}*$"
)
_EMAIL = re.compile(EMAIL_PATTERN)
#: Longest plan name, in characters.
MAX_PLAN_NAME = 64
#: A new plan's name: letters, digits, space, '.', '_' or '-', starting with a letter or
#: digit and not ending with a space (stated in the document, checked by ``create_plan``).
PLAN_NAME_PATTERN = f"^[A-Za-z0-9](?:[A-Za-z0-9 ._-]{{0,{MAX_PLAN_NAME - 2}}}[A-Za-z0-9._-])?$"
_PLAN_NAME = re.compile(PLAN_NAME_PATTERN)
#: Longest external id, in characters: room for any id a platform mints (a UUID is 36).
MAX_EXTERNAL_ID = 255
_ID_CHAR = "[^\\x00-\\x1f\\x7f" + INVISIBLE + "]"
_ID_EDGE = "[^\\x00-\\x20\\x7f" + UNICODE_SPACE + INVISIBLE + "]"
#: What ``external_id_value`` takes, as the API's document states it: kept exactly, so
#: 1-255 characters with no space at either end, none of them a control or invisible one.
EXTERNAL_ID_PATTERN = f"^(?:{_ID_EDGE}|{_ID_EDGE}{_ID_CHAR}{{0,{MAX_EXTERNAL_ID - 2}}}{_ID_EDGE})$"


@dataclass(frozen=True, slots=True)
class Plan:
    id: int
    name: str
    period_unit: PeriodUnit
    max_credit: int
    max_ttp: int | None
    max_edit: int | None
    billing_mode: BillingMode

    @classmethod
    def from_row(cls, row: Row) -> Plan:
        return cls(
            id=row["id"],
            name=row["name"],
            period_unit=row["period_unit"],
            max_credit=row["max_credit"],
            max_ttp=row["max_ttp"],
            max_edit=row["max_edit"],
            billing_mode=row["billing_mode"],
        )


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    plan_name: str
    anchor: datetime
    external_id: str | None = None


def external_id_value(value: str | None) -> str | None:
    """An external id as it is stored (``EXTERNAL_ID_PATTERN``), or None for none.

    Never trimmed nor case-folded: it must equal, character for character, what the
    platform writes into its sessions (a number there is its decimal digits here). So
    a blank, spaces at either end or an invisible character, which no platform id has
    and which would never match, is a 400.
    """
    if value is None:
        return None
    refuse_invisible(value, "externalId")
    if not 1 <= len(value) <= MAX_EXTERNAL_ID or value != value.strip():
        raise Refusal(
            "bad_request",
            f"externalId must be 1-{MAX_EXTERNAL_ID} characters, without spaces at either end",
        )
    return value


def email_key(email: str) -> str:
    """An address as it is stored and compared: trimmed, lower case, Unicode NFC.

    So that one address is one user however it was typed: ``é`` composed or as ``e`` and
    a combining accent, in any case. Lower case rather than ``casefold``, which turns
    ``ß`` into ``ss``: IDNA2008 keeps those apart, so ``straße.de`` and ``strasse.de``
    are two domains, and two mailboxes.
    """
    return unicodedata.normalize("NFC", email.strip().lower())


def normalise_email(email: str) -> str:
    """``email_key`` of a valid address, else a 400 saying what is wrong with it."""
    address = email_key(email)
    refuse_invisible(address, "email")
    if not _EMAIL.fullmatch(address):
        raise Refusal("bad_request", "email is not a valid address")
    return address


def _plan_key(name: str) -> str:
    """A plan name as names are compared, and kept unique by the index
    ``plans_name_ignoring_case``: trimmed, lower case, so that ``Basic``, ``basic`` and
    ``Basic `` are one plan."""
    return name.strip().lower()


async def create_plan(
    conn: Connection,
    *,
    name: str,
    period_unit: str,
    max_credit: int,
    max_ttp: int | None,
    max_edit: int | None,
    billing_mode: str,
    now: int,
) -> Plan:
    refuse_invisible(name, "plan name")
    if not _PLAN_NAME.fullmatch(name):
        raise Refusal(
            "bad_request",
            f"plan name: 1-{MAX_PLAN_NAME} letters, digits, spaces, '.', '_' or '-',"
            " starting with a letter or digit and not ending with a space",
        )
    if period_unit not in get_args(PeriodUnit):
        raise Refusal("bad_request", "periodUnit must be 'month' or 'year'")
    if billing_mode not in get_args(BillingMode):
        raise Refusal("bad_request", "billingMode must be 'prepaid' or 'postpaid'")
    for field, limit in (("maxTtpCount", max_ttp), ("maxEditCount", max_edit)):
        if limit is not None and not 0 <= limit <= MAX_INT:
            raise Refusal("bad_request", f"{field} must be a whole number >= 0 or null")
    try:
        row = await conn.fetchone(
            "INSERT INTO plans (name, period_unit, max_credit, max_ttp, max_edit, billing_mode,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
            name,
            period_unit,
            max_credit,
            max_ttp,
            max_edit,
            billing_mode,
            now,
        )
    except UniqueViolation:
        raise Refusal(
            "plan_exists", f"a plan named {name!r} exists, or one that differs only in case"
        ) from None
    assert row is not None
    return Plan.from_row(row)


async def list_plans(conn: Connection) -> list[Plan]:
    return [Plan.from_row(row) for row in await conn.fetchall("SELECT * FROM plans ORDER BY id")]


async def plan_by_name(conn: Connection, name: str) -> Plan:
    row = await conn.fetchone("SELECT * FROM plans WHERE lower(trim(name)) = ?", _plan_key(name))
    if row is None:
        raise Refusal("plan_not_found", f"no plan named {name!r}")
    return Plan.from_row(row)


async def create_user(
    conn: Connection,
    *,
    email: str,
    plan_name: str,
    anchor: datetime | None,
    password_hash: str | None,
    now: int,
    zone: ZoneInfo,
    external_id: str | None = None,
) -> User:
    """A user, its subscription anchored at ``anchor`` (default now) and its first period.

    The password arrives hashed: hashing is slow on purpose and must not run while the
    transaction holds its locks. ``external_id`` comes from ``external_id_value``.
    """
    address = normalise_email(email)
    plan = await plan_by_name(conn, plan_name)
    anchor_us = to_micros(anchor) if anchor is not None else now
    anchor_us -= anchor_us % 1_000_000
    try:
        user_id = await conn.fetchval(
            "INSERT INTO users (email, password_hash, created_at, external_id)"
            " VALUES (?, ?, ?, ?) RETURNING id",
            address,
            password_hash,
            now,
            external_id,
        )
    except UniqueViolation as clash:
        if _EXTERNAL_ID_INDEX in str(clash):
            raise _external_id_taken() from None
        raise Refusal("user_exists", "a user with this email exists") from None
    period = period_containing(from_micros(anchor_us), plan.period_unit, from_micros(now), zone)
    start, end = to_micros(period.start), to_micros(period.end)
    await conn.execute(
        "INSERT INTO accounts (user_id, plan_id, anchor_at, period_start, period_end, plan_credit)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        user_id,
        plan.id,
        anchor_us,
        start,
        end,
        plan.max_credit,
    )
    await conn.execute(
        "INSERT INTO ledger_entries (user_id, at, entry_type, pool, amount, period_start)"
        " VALUES (?, ?, 'period_start', 'plan', ?, ?)",
        user_id,
        now,
        plan.max_credit,
        start,
    )
    return User(user_id, address, plan.name, from_micros(anchor_us), external_id)


#: What both stores' unique-violation messages say when the external id is taken (the
#: column in SQLite's, the index ``users_external_id`` in PostgreSQL's), and no other.
_EXTERNAL_ID_INDEX = "external_id"


def _external_id_taken() -> Refusal:
    """``user_exists``, as for an email: a user with that identity exists already."""
    return Refusal("user_exists", "another user has this externalId")


async def user_by_id(conn: Connection, user_id: int) -> User:
    """The live user ``user_id`` with its plan and anchor, else ``user_not_found``."""
    row = await conn.fetchone(
        "SELECT u.id, u.email, u.external_id, p.name AS plan, a.anchor_at FROM users u"
        " JOIN accounts a ON a.user_id = u.id JOIN plans p ON p.id = a.plan_id"
        " WHERE u.id = ? AND u.deleted_at IS NULL",
        user_id,
    )
    if row is None:
        raise Refusal("user_not_found", "no such user")
    return User(
        row["id"], row["email"], row["plan"], from_micros(row["anchor_at"]), row["external_id"]
    )


async def user_id_by_external_id(conn: Connection, external_id: str) -> int | None:
    """The live user the platform knows as ``external_id``, if any."""
    found = await conn.fetchval(
        "SELECT id FROM users WHERE external_id = ? AND deleted_at IS NULL", external_id
    )
    return None if found is None else int(found)


async def set_external_id(conn: Connection, user_id: int, external_id: str | None) -> None:
    """Give the user ``external_id`` (from ``external_id_value``), or take it away with None.

    Another live user with that id is ``user_exists``: two users for one platform
    customer would make a session's user a coin toss.
    """
    await live_user_id(conn, user_id)
    try:
        await conn.execute("UPDATE users SET external_id = ? WHERE id = ?", external_id, user_id)
    except UniqueViolation:
        raise _external_id_taken() from None


@dataclass(frozen=True, slots=True)
class Subscription:
    plan: str
    pending_plan: str | None


async def subscription(conn: Connection, user_id: int) -> Subscription:
    """The plan a user is on, and the plan it moves to at the next period start, if any."""
    row = await conn.fetchone(
        "SELECT p.name AS plan, q.name AS pending FROM accounts a JOIN plans p ON p.id = a.plan_id"
        " LEFT JOIN plans q ON q.id = a.pending_plan_id WHERE a.user_id = ?",
        user_id,
    )
    if row is None:
        raise Refusal("user_not_found", "no such user")
    return Subscription(row["plan"], row["pending"])


LIVE_USER = "SELECT id FROM users WHERE id = ? AND deleted_at IS NULL"


async def live_user_id(conn: Connection, user_id: int) -> int:
    """``user_id`` if such a user exists and is not deleted, else ``user_not_found``."""
    found = await conn.fetchval(LIVE_USER, user_id)
    if found is None:
        raise Refusal("user_not_found", "no such user")
    return int(found)


async def user_id_by_email(conn: Connection, email: str) -> int:
    found = await conn.fetchval(
        "SELECT id FROM users WHERE email = ? AND deleted_at IS NULL", normalise_email(email)
    )
    if found is None:
        raise Refusal("user_not_found", "no such user")
    return int(found)


async def email_of(conn: Connection, user_id: int) -> str:
    """The user's email as stored (normalised): what a signed-in page greets them with."""
    found = await conn.fetchval("SELECT email FROM users WHERE id = ?", user_id)
    if found is None:
        raise Refusal("user_not_found", "no such user")
    return str(found)


async def delete_user(conn: Connection, user_id: int, now: int) -> None:
    """Mark the user deleted and end its sessions; its keys stop working with it.

    The rows stay: the ledger of a deleted user is still the record of what it paid.
    """
    await live_user_id(conn, user_id)
    await conn.execute("UPDATE users SET deleted_at = ? WHERE id = ?", now, user_id)
    await conn.execute("DELETE FROM sessions WHERE user_id = ?", user_id)

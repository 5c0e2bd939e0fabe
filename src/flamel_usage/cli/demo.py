"""The demo account ``flamel-usage serve --demo`` makes on first start, and its key."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.passwords import hash_new_password
from flamel_usage.core.config import Settings
from flamel_usage.core.errors import Refusal
from flamel_usage.core.periods import from_micros, to_micros
from flamel_usage.db.gateway import Connection, Database
from flamel_usage.http.context import system_clock
from flamel_usage.metering import purchases

DEMO_EMAIL = "demo@flamel.local"
DEMO_PASSWORD = "demo-password"  # noqa: S105  (a documented demo login, not a secret)
DEMO_PLAN = "Demo"


async def ensure_demo(db: Database, settings: Settings) -> str:
    """The demo account's API key: created with the account on first start, then reused.

    Keys are stored only as hashes, so the demo key is kept in the data directory
    (readable by its owner only) to print the same curl line on every start.
    """
    key_file = settings.data_dir / "demo-api-key"
    now = system_clock()
    password_hash = await hash_new_password(DEMO_PASSWORD)
    async with db.transaction() as conn:
        try:
            user_id = await accounts.user_id_by_email(conn, DEMO_EMAIL)
        except Refusal as refusal:
            if refusal.reason != "user_not_found":
                raise
            user_id = await _create_demo_account(conn, password_hash, now, settings.timezone)
            key_file.unlink(missing_ok=True)  # a key of an earlier demo account
        if key_file.exists():
            return key_file.read_text().strip()
        issued = await auth.issue_key(conn, user_id, expires_at=None, now=now)
    _write_private(key_file, issued.key)
    return issued.key


async def _create_demo_account(
    conn: Connection, password_hash: str, now: int, zone: ZoneInfo
) -> int:
    """The demo user on the demo plan (made unless it exists), with credit bought."""
    if DEMO_PLAN not in {plan.name for plan in await accounts.list_plans(conn)}:
        await accounts.create_plan(
            conn,
            name=DEMO_PLAN,
            period_unit="month",
            max_credit=1000 * 1000,
            max_ttp=100,
            max_edit=50,
            billing_mode="prepaid",
            now=now,
        )
    user = await accounts.create_user(
        conn,
        email=DEMO_EMAIL,
        plan_name=DEMO_PLAN,
        anchor=None,
        password_hash=password_hash,
        now=now,
        zone=zone,
    )
    expires = to_micros(from_micros(now) + timedelta(days=90))
    bought = purchases.PurchaseRequest(user.id, 250 * 1000, expires)
    await purchases.buy_credits(conn, bought, idempotency_key=None, now=now, zone=zone)
    return user.id


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")

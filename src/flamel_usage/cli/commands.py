"""The subcommands that operate the ledger: one function each, found in ``COMMANDS``.

Each works on the configured database through the same services as the admin API, so
the two can never disagree about what is valid, and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.passwords import hash_new_password
from flamel_usage.core.config import Settings
from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import parse_id, parse_instant
from flamel_usage.core.money import parse_credits
from flamel_usage.core.periods import to_micros
from flamel_usage.db import sqlite
from flamel_usage.db.gateway import Database
from flamel_usage.http.api.admin.holds import hold_answer
from flamel_usage.http.api.admin.metering import charge_answer, refund_answer
from flamel_usage.http.bodies import outbound
from flamel_usage.http.context import system_clock
from flamel_usage.ledger import balances as ledger
from flamel_usage.ledger.reconcile import reconcile as reconcile_books
from flamel_usage.metering import charges, holds, idempotency, purchases, refunds
from flamel_usage.metering.outcomes import Charged, ChargeOutcome, Held, HoldOutcome, Refunded
from flamel_usage.webhooks import endpoints as webhooks
from flamel_usage.webhooks.addresses import public_target
from flamel_usage.webhooks.events import EVENT_TYPES

T = TypeVar("T")
Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]


async def with_database(
    settings: Settings,
    work: Callable[[Database], Awaitable[T]],
    *,
    reads_only: bool = False,
    migrates_itself: bool = False,
) -> T:
    """``work`` on the configured store.

    Work that writes creates and migrates the store on first use, as a new operator
    expects (``migrates_itself``: the work is the migration, so that it can tell what
    it applied). Work that only reads refuses a store missing or not migrated
    (``DatabaseNotReady``): one made for it would be empty and consistent, and would
    report a mistyped URL as "all clear".
    """
    db = Database.from_url(settings.database_url, timeout=settings.database_timeout_seconds)
    if reads_only:
        await db.open_migrated()
    else:
        await db.open()
    try:
        if not reads_only and not migrates_itself:
            await db.migrate()
        return await work(db)
    finally:
        await db.close()


def _optional_instant(text: str | None, field: str) -> int | None:
    return None if text is None else to_micros(parse_instant(text, field))


async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = await with_database(settings, Database.migrate, migrates_itself=True)
    print(f"applied: {applied or 'nothing'}")
    return 0


async def create_plan(args: argparse.Namespace, settings: Settings) -> int:
    now = system_clock()

    async def create(db: Database) -> accounts.Plan:
        async with db.transaction() as conn:
            return await accounts.create_plan(
                conn,
                name=args.name,
                period_unit=args.period,
                max_credit=parse_credits(args.credits, "--credits", allow_zero=True),
                max_ttp=args.max_ttp,
                max_edit=args.max_edit,
                billing_mode="postpaid" if args.postpaid else "prepaid",
                now=now,
            )

    print((await with_database(settings, create)).id)
    return 0


async def create_user(args: argparse.Namespace, settings: Settings) -> int:
    now = system_clock()
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    password_hash = None if password is None else await hash_new_password(password)
    anchor = None if args.anchor is None else parse_instant(args.anchor, "--anchor")
    external_id = accounts.external_id_value(args.external_id)

    async def create(db: Database) -> accounts.User:
        async with db.transaction() as conn:
            return await accounts.create_user(
                conn,
                email=args.email,
                plan_name=args.plan,
                anchor=anchor,
                password_hash=password_hash,
                now=now,
                zone=settings.timezone,
                external_id=external_id,
            )

    print((await with_database(settings, create)).id)
    return 0


async def change_plan(args: argparse.Namespace, settings: Settings) -> int:
    now = system_clock()

    async def change(db: Database) -> None:
        async with db.transaction() as conn:
            user_id = await accounts.user_id_by_email(conn, args.email)
            await ledger.change_plan(
                conn,
                user_id,
                args.plan,
                at_next_period=args.at_next_period,
                now=now,
                zone=settings.timezone,
                thresholds=settings.alert_thresholds,
            )

    await with_database(settings, change)
    return 0


async def create_key(args: argparse.Namespace, settings: Settings) -> int:
    now = system_clock()
    expires = _optional_instant(args.expires, "--expires")

    async def create(db: Database) -> auth.IssuedKey:
        async with db.transaction() as conn:
            user_id = await accounts.user_id_by_email(conn, args.email)
            return await auth.issue_key(conn, user_id, expires_at=expires, name=args.name, now=now)

    print((await with_database(settings, create)).key)
    return 0


async def revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    now = system_clock()
    key_id = parse_id(args.key_id, "KEY_ID")

    async def revoke(db: Database) -> None:
        async with db.transaction() as conn:
            await auth.revoke_key(conn, key_id, now)

    await with_database(settings, revoke)
    return 0


async def buy_credits(args: argparse.Namespace, settings: Settings) -> int:
    now, zone = system_clock(), settings.timezone
    amount = parse_credits(args.amount, "AMOUNT")
    expires = _optional_instant(args.expires, "--expires")
    sent_key = args.idempotency_key
    key = None if sent_key is None else idempotency.idempotency_key(sent_key)

    async def buy(db: Database) -> purchases.Bought:
        async with db.transaction() as conn:
            user_id = await accounts.user_id_by_email(conn, args.email)
            return await purchases.buy_credits(
                conn,
                purchases.PurchaseRequest(user_id, amount, expires),
                idempotency_key=key,
                now=now,
                zone=zone,
            )

    print((await with_database(settings, buy)).purchase.id)
    return 0


async def charge(args: argparse.Namespace, settings: Settings) -> int:
    now, zone = system_clock(), settings.timezone
    key = idempotency.idempotency_key(args.idempotency_key)
    cost = None if args.cost is None else parse_credits(args.cost, "--cost")

    async def charge_one(db: Database) -> ChargeOutcome:
        async with db.transaction() as conn:
            user_id = await accounts.user_id_by_email(conn, args.email)
            return await charges.charge(
                conn,
                charges.ChargeRequest(user_id, args.kind, cost),
                idempotency_key=key,
                costs=settings.operation_costs,
                now=now,
                zone=zone,
                thresholds=settings.alert_thresholds,
            )

    outcome = await with_database(settings, charge_one)
    print(charge_answer(outcome).body.decode())
    return 0 if isinstance(outcome, Charged) else 1


async def refund(args: argparse.Namespace, settings: Settings) -> int:
    now, zone = system_clock(), settings.timezone
    key = idempotency.idempotency_key(args.idempotency_key)

    async def refund_one(db: Database) -> Refunded:
        async with db.transaction() as conn:
            return await refunds.refund(conn, key, now=now, zone=zone)

    print(refund_answer(await with_database(settings, refund_one)).body.decode())
    return 0


#: What ``backup`` and ``restore`` say on PostgreSQL, rather than copy something.
POSTGRES_BACKUP = (
    "the database is PostgreSQL: back it up with PostgreSQL's own tools, e.g."
    ' `pg_dump --format=custom --file=PATH "$FLAMEL_DATABASE_URL"` (restore with'
    ' `pg_restore --clean --if-exists --dbname="$FLAMEL_DATABASE_URL" PATH`), or'
    " continuous WAL archiving with a base backup (pg_basebackup) for point-in-time"
    " recovery; the README's Backups section gives the commands"
)


async def backup(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.from_url(settings.database_url)
    if not isinstance(db, sqlite.SQLiteDatabase):
        print(f"flamel-usage: backup_not_embedded: {POSTGRES_BACKUP}", file=sys.stderr)
        return 2
    target = Path(args.path)
    await asyncio.to_thread(sqlite.backup, db.path, target)
    print(f"backup: {target} ({target.stat().st_size} bytes, quick_check ok)")
    return 0


async def restore(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.from_url(settings.database_url)
    if not isinstance(db, sqlite.SQLiteDatabase):
        print(f"flamel-usage: backup_not_embedded: {POSTGRES_BACKUP}", file=sys.stderr)
        return 2
    await asyncio.to_thread(sqlite.restore, Path(args.path), db.path)
    print(f"restored: {db.path} from {args.path}; `flamel-usage reconcile` checks it")
    return 0


async def create_hold(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the API's answer; exit 1 when the hold was refused, as for a charge."""
    now, zone = system_clock(), settings.timezone
    key = idempotency.idempotency_key(args.idempotency_key)
    cost = None if args.cost is None else parse_credits(args.cost, "--cost")
    if args.ttl is not None and not 1 <= args.ttl <= holds.MAX_TTL_SECONDS:
        raise Refusal("bad_request", f"--ttl must be 1 to {holds.MAX_TTL_SECONDS} seconds")

    async def hold_one(db: Database) -> HoldOutcome:
        async with db.transaction() as conn:
            user_id = await accounts.user_id_by_email(conn, args.email)
            return await holds.create(
                conn,
                holds.HoldRequest(user_id, args.kind, cost, args.ttl),
                idempotency_key=key,
                costs=settings.operation_costs,
                now=now,
                zone=zone,
                thresholds=settings.alert_thresholds,
            )

    outcome = await with_database(settings, hold_one)
    print(hold_answer(outcome, 201).body.decode())
    return 0 if isinstance(outcome, Held) else 1


async def settle_hold(args: argparse.Namespace, settings: Settings) -> int:
    now, zone = system_clock(), settings.timezone
    hold_id = parse_id(args.hold_id, "HOLD_ID")
    cost = parse_credits(args.cost, "COST", allow_zero=True)

    async def settle_one(db: Database) -> Held:
        async with db.transaction() as conn:
            return await holds.settle(conn, hold_id, cost, now=now, zone=zone)

    print(hold_answer(await with_database(settings, settle_one)).body.decode())
    return 0


async def release_hold(args: argparse.Namespace, settings: Settings) -> int:
    now, zone = system_clock(), settings.timezone
    hold_id = parse_id(args.hold_id, "HOLD_ID")

    async def release_one(db: Database) -> Held:
        async with db.transaction() as conn:
            return await holds.release(conn, hold_id, now=now, zone=zone)

    print(hold_answer(await with_database(settings, release_one)).body.decode())
    return 0


async def list_holds(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the API's answer: ``{"holds": [...]}``."""
    now = system_clock()

    async def active(db: Database) -> list[outbound.Hold]:
        async with db.read() as conn:
            user_id = await accounts.user_id_by_email(conn, args.email)
            return [
                outbound.Hold.of(hold) for hold in await holds.active_holds(conn, user_id, now=now)
            ]

    listed = outbound.HoldList(await with_database(settings, active, reads_only=True))
    print(outbound.body_response(listed).body.decode())
    return 0


async def reconcile(args: argparse.Namespace, settings: Settings) -> int:
    async def check(db: Database) -> list[str]:
        async with db.read() as conn:
            return await reconcile_books(conn, settings.timezone)

    problems = await with_database(settings, check, reads_only=True)
    for problem in problems:
        print(problem)
    print("reconcile: " + (f"{len(problems)} difference(s)" if problems else "clean"))
    return 1 if problems else 0


def _print(body: outbound.ResponseBody) -> None:
    """A webhook command's result, as the admin API answers it."""
    print(msgspec.json.encode(body).decode())


async def add_webhook(args: argparse.Namespace, settings: Settings) -> int:
    now = system_clock()
    events = args.event or list(EVENT_TYPES)
    target = await public_target(args.url, allow_private=settings.webhook_allow_private)

    async def add(db: Database) -> tuple[webhooks.Endpoint, str]:
        async with db.transaction() as conn:
            return await webhooks.create(conn, target, events, args.description, now=now)

    endpoint, secret = await with_database(settings, add)
    _print(outbound.CreatedWebhookEndpoint(outbound.WebhookEndpoint.of(endpoint), secret))
    return 0


async def list_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    async def read(db: Database) -> list[webhooks.Endpoint]:
        async with db.read() as conn:
            return await webhooks.list_all(conn)

    found = await with_database(settings, read)
    _print(outbound.WebhookEndpointList([outbound.WebhookEndpoint.of(e) for e in found]))
    return 0


async def remove_webhook(args: argparse.Namespace, settings: Settings) -> int:
    endpoint_id = parse_id(args.webhook_id, "WEBHOOK_ID")

    async def remove(db: Database) -> None:
        async with db.transaction() as conn:
            await webhooks.remove(conn, endpoint_id)

    await with_database(settings, remove)
    return 0


async def webhook_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    endpoint_id = parse_id(args.webhook_id, "WEBHOOK_ID")

    async def read(db: Database) -> list[webhooks.Delivery]:
        async with db.read() as conn:
            return await webhooks.deliveries(conn, endpoint_id, limit=args.limit)

    found = await with_database(settings, read)
    _print(outbound.WebhookDeliveryList([outbound.WebhookDelivery.of(d) for d in found]))
    return 0


async def redeliver_webhook(args: argparse.Namespace, settings: Settings) -> int:
    now = system_clock()
    endpoint_id = parse_id(args.webhook_id, "WEBHOOK_ID")
    delivery_id = parse_id(args.delivery_id, "DELIVERY_ID")

    async def redeliver(db: Database) -> webhooks.Delivery:
        async with db.transaction() as conn:
            return await webhooks.redeliver(conn, endpoint_id, delivery_id, now=now)

    _print(outbound.WebhookDelivery.of(await with_database(settings, redeliver)))
    return 0


#: Each subcommand by ``(command, action)``; ``action`` is None for one-word commands.
COMMANDS: dict[tuple[str, str | None], Command] = {
    ("migrate", None): migrate,
    ("plans", "create"): create_plan,
    ("users", "create"): create_user,
    ("users", "change-plan"): change_plan,
    ("keys", "create"): create_key,
    ("keys", "revoke"): revoke_key,
    ("credits", "buy"): buy_credits,
    ("charge", None): charge,
    ("refund", None): refund,
    ("holds", "create"): create_hold,
    ("holds", "settle"): settle_hold,
    ("holds", "release"): release_hold,
    ("holds", "list"): list_holds,
    ("reconcile", None): reconcile,
    ("backup", None): backup,
    ("restore", None): restore,
    ("webhooks", "add"): add_webhook,
    ("webhooks", "list"): list_webhooks,
    ("webhooks", "remove"): remove_webhook,
    ("webhooks", "deliveries"): webhook_deliveries,
    ("webhooks", "redeliver"): redeliver_webhook,
}


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """The subcommand ``args`` names, and its exit code."""
    return await COMMANDS[args.command, getattr(args, "action", None)](args, settings)

"""``flamel-usage``: run the service and operate the ledger from a terminal.

Every command works on the configured database (``FLAMEL_DATABASE_URL`` or
``--database-url``) through the same services as the admin API, so the two can
never disagree about what is valid.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import credentials as auth
from flamel_usage.auth.passwords import hash_new_password
from flamel_usage.cli.terminal import show_usage
from flamel_usage.client import DEFAULT_BASE_URL
from flamel_usage.core.config import ConfigError, Settings
from flamel_usage.core.errors import Refusal
from flamel_usage.core.inputs import parse_id, parse_instant
from flamel_usage.core.money import parse_credits
from flamel_usage.core.periods import from_micros, to_micros
from flamel_usage.db.gateway import Database, DatabaseNotReady
from flamel_usage.db.migrate import MigrationEdited
from flamel_usage.http import metrics
from flamel_usage.http.api.admin.metering import charge_answer, refund_answer
from flamel_usage.http.context import system_clock
from flamel_usage.ledger import balances as ledger
from flamel_usage.ledger.reconcile import reconcile
from flamel_usage.metering import charges, idempotency, refunds
from flamel_usage.metering.outcomes import Charged, ChargeOutcome, Refunded

T = TypeVar("T")

DEMO_EMAIL = "demo@flamel.local"
DEMO_PASSWORD = "demo-password"  # noqa: S105  (a documented demo login, not a secret)
DEMO_PLAN = "Demo"
#: A command that only reads found no database, or one not migrated: never "all clear".
EXIT_DATABASE_NOT_READY = 5
_EXIT_CODES = (
    "exit codes: 0 done; 1 reconcile found differences, a charge was refused, or usage"
    " failed otherwise; 2 bad arguments, input or settings, or the database does not"
    " answer; 3 usage: credential refused or missing; 4 usage: server unreachable;"
    f" {EXIT_DATABASE_NOT_READY} the database does not exist or is not migrated (reconcile,"
    " which only reads, never creates nor migrates it: the other commands do)."
)


def _cpu_cores() -> int:
    """The cores this process may run on (Linux), else the machine's (macOS has no
    affinity call): ``serve``'s default number of workers."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="overrides FLAMEL_DATABASE_URL")
    parser = argparse.ArgumentParser(
        prog="flamel-usage", description=__doc__.splitlines()[0], epilog=_EXIT_CODES
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4010)
    serve.add_argument(
        "--workers",
        type=int,
        default=_cpu_cores(),
        help="worker processes (default: one per CPU core, the fastest found by scripts/bench)",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="create a demo account on first start, print a curl line",
    )

    usage = commands.add_parser("usage", help="show an API key's usage, as a customer sees it")
    usage.add_argument("--api-key", help="default: FLAMEL_API_KEY")
    usage.add_argument("--base-url", default=DEFAULT_BASE_URL)
    shape = usage.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the UsageInfoDto unchanged")
    shape.add_argument(
        "--history", action="store_true", help="one bar a day of the current period's spending"
    )

    commands.add_parser("migrate", parents=[common], help="apply pending migrations")

    plans = commands.add_parser("plans").add_subparsers(dest="action", required=True)
    plan = plans.add_parser("create", parents=[common])
    plan.add_argument("name")
    plan.add_argument("--credits", required=True, help="credit allowance per period")
    plan.add_argument("--period", required=True, choices=["month", "year"])
    plan.add_argument("--max-ttp", type=int)
    plan.add_argument("--max-edit", type=int)
    plan.add_argument("--postpaid", action="store_true")

    users = commands.add_parser("users").add_subparsers(dest="action", required=True)
    user = users.add_parser("create", parents=[common])
    user.add_argument("email")
    user.add_argument("--plan", required=True)
    user.add_argument("--anchor", help="ISO 8601 start of the first period (default now)")
    user.add_argument("--password-stdin", action="store_true", help="read a login password")
    user.add_argument(
        "--external-id", help="the platform's id of this user, which its sessions carry"
    )

    change = users.add_parser("change-plan", parents=[common])
    change.add_argument("email")
    change.add_argument("--plan", required=True)
    change.add_argument(
        "--at-next-period", action="store_true", help="from the next period start (default: now)"
    )

    keys = commands.add_parser("keys").add_subparsers(dest="action", required=True)
    key = keys.add_parser("create", parents=[common])
    key.add_argument("email")
    key.add_argument("--expires", help="ISO 8601 expiry")
    key.add_argument("--name", help="what the key is for (1-64 characters), shown with it")
    revoke = keys.add_parser("revoke", parents=[common])
    revoke.add_argument("key_id")

    credits = commands.add_parser("credits").add_subparsers(dest="action", required=True)
    buy = credits.add_parser("buy", parents=[common])
    buy.add_argument("email")
    buy.add_argument("amount")
    buy.add_argument("--expires", help="ISO 8601 expiry of the purchased credit")

    charge = commands.add_parser("charge", parents=[common], help="charge one operation")
    charge.add_argument("email")
    charge.add_argument("kind")
    charge.add_argument("--cost", help="credits (default: the kind's configured cost)")
    charge.add_argument("--idempotency-key", required=True)
    refund = commands.add_parser("refund", parents=[common], help="refund a charge, once")
    refund.add_argument("idempotency_key")

    commands.add_parser(
        "reconcile",
        parents=[common],
        help=f"exit 1 if balances and ledger differ, {EXIT_DATABASE_NOT_READY} if the"
        " database does not exist or is not migrated",
    )
    return parser


async def _with_database(
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


def _settings(args: argparse.Namespace) -> Settings:
    environ = dict(os.environ)
    if args.database_url:
        environ["FLAMEL_DATABASE_URL"] = args.database_url
    return Settings.from_environ(environ)


def _optional_instant(text: str | None, field: str) -> int | None:
    return None if text is None else to_micros(parse_instant(text, field))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    now = system_clock()
    zone = settings.timezone
    match (args.command, getattr(args, "action", None)):
        case ("migrate", _):
            applied = await _with_database(settings, Database.migrate, migrates_itself=True)
            print(f"applied: {applied or 'nothing'}")
        case ("plans", "create"):

            async def create_plan(db: Database) -> accounts.Plan:
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

            print((await _with_database(settings, create_plan)).id)
        case ("users", "create"):
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
            password_hash = None if password is None else await hash_new_password(password)
            anchor = None if args.anchor is None else parse_instant(args.anchor, "--anchor")
            external_id = accounts.external_id_value(args.external_id)

            async def create_user(db: Database) -> accounts.User:
                async with db.transaction() as conn:
                    return await accounts.create_user(
                        conn,
                        email=args.email,
                        plan_name=args.plan,
                        anchor=anchor,
                        password_hash=password_hash,
                        now=now,
                        zone=zone,
                        external_id=external_id,
                    )

            print((await _with_database(settings, create_user)).id)
        case ("users", "change-plan"):

            async def change_plan(db: Database) -> None:
                async with db.transaction() as conn:
                    user_id = await accounts.user_id_by_email(conn, args.email)
                    await ledger.change_plan(
                        conn,
                        user_id,
                        args.plan,
                        at_next_period=args.at_next_period,
                        now=now,
                        zone=zone,
                    )

            await _with_database(settings, change_plan)
        case ("keys", "create"):
            expires = _optional_instant(args.expires, "--expires")

            async def create_key(db: Database) -> auth.IssuedKey:
                async with db.transaction() as conn:
                    user_id = await accounts.user_id_by_email(conn, args.email)
                    return await auth.issue_key(
                        conn, user_id, expires_at=expires, name=args.name, now=now
                    )

            print((await _with_database(settings, create_key)).key)
        case ("keys", "revoke"):
            key_id = parse_id(args.key_id, "KEY_ID")

            async def revoke(db: Database) -> None:
                async with db.transaction() as conn:
                    await auth.revoke_key(conn, key_id, now)

            await _with_database(settings, revoke)
        case ("credits", "buy"):
            amount = parse_credits(args.amount, "AMOUNT")
            expires = _optional_instant(args.expires, "--expires")

            async def buy(db: Database) -> ledger.Purchase:
                async with db.transaction() as conn:
                    user_id = await accounts.user_id_by_email(conn, args.email)
                    return await ledger.buy_credits(
                        conn, user_id, amount, expires_at=expires, now=now, zone=zone
                    )

            print((await _with_database(settings, buy)).id)
        case ("charge", _):
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
                    )

            outcome = await _with_database(settings, charge_one)
            print(charge_answer(outcome).body.decode())
            return 0 if isinstance(outcome, Charged) else 1
        case ("refund", _):
            key = idempotency.idempotency_key(args.idempotency_key)

            async def refund_one(db: Database) -> Refunded:
                async with db.transaction() as conn:
                    return await refunds.refund(conn, key, now=now, zone=zone)

            print(refund_answer(await _with_database(settings, refund_one)).body.decode())
        case ("reconcile", _):

            async def check(db: Database) -> list[str]:
                async with db.read() as conn:
                    return await reconcile(conn)

            problems = await _with_database(settings, check, reads_only=True)
            for problem in problems:
                print(problem)
            print("reconcile: " + (f"{len(problems)} difference(s)" if problems else "clean"))
            return 1 if problems else 0
    return 0


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
                zone=settings.timezone,
            )
            user_id = user.id
            expires = to_micros(from_micros(now) + timedelta(days=90))
            await ledger.buy_credits(
                conn, user_id, 250 * 1000, expires_at=expires, now=now, zone=settings.timezone
            )
            key_file.unlink(missing_ok=True)
        if key_file.exists():
            return key_file.read_text().strip()
        issued = await auth.issue_key(conn, user_id, expires_at=None, now=now)
    _write_private(key_file, issued.key)
    return issued.key


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from flamel_usage.core.logs import logging_config
    from flamel_usage.http.protocol import LimitedHttpToolsProtocol

    if args.database_url:
        os.environ["FLAMEL_DATABASE_URL"] = args.database_url
    os.environ["FLAMEL_DATA_DIR"] = str(settings.data_dir)
    # uvicorn re-raises the SIGTERM it drained on; exiting 0 then tells a supervisor
    # that the stop was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    settings.resolved_session_secret()
    if args.demo:
        key = asyncio.run(_with_database(settings, lambda db: ensure_demo(db, settings)))
        print(
            f"Demo account ready. Try:\n"
            f"  curl -s -H 'X-Api-Key: {key}' http://{args.host}:{args.port}/api/users/me/usage\n"
            f"  flamel-usage usage --api-key {key} --base-url http://{args.host}:{args.port}\n"
            f"or sign in at http://{args.host}:{args.port}/ as {DEMO_EMAIL} / {DEMO_PASSWORD}\n",
            flush=True,
        )
    uvicorn.run(
        "flamel_usage.http.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # Bounds each request's head while it arrives; uvicorn's own would not.
        http=LimitedHttpToolsProtocol,
        # Applied by uvicorn in this process and in each worker it starts.
        log_config=logging_config(settings.log_format, access_log=settings.access_log),
        log_level="info",
        access_log=False,  # the app writes its own, with the route pattern and request id
        # Who the client is (for the throttle) is the app's decision alone: the peer, or
        # FLAMEL_CLIENT_ADDRESS_HEADER when configured. uvicorn's own proxy-header
        # rewriting would trust X-Forwarded-For from any local peer.
        proxy_headers=False,
        server_header=False,
    )
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "usage":
        api_key = args.api_key or os.environ.get("FLAMEL_API_KEY")
        return show_usage(api_key, args.base_url, as_json=args.json, history=args.history)
    try:
        settings = _settings(args)
        if args.command == "serve":
            with metrics.shared_by_workers():  # /metrics sums the workers' counts
                return _serve(args, settings)
        return asyncio.run(_run(args, settings))
    except DatabaseNotReady as error:
        print(
            f"flamel-usage: database_not_ready: {error}: check the URL,"
            " or run `flamel-usage migrate`",
            file=sys.stderr,
        )
        return EXIT_DATABASE_NOT_READY
    except (Refusal, ConfigError, MigrationEdited, ValueError) as error:
        reason = getattr(error, "reason", "invalid")
        print(f"flamel-usage: {reason}: {error}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error, asyncpg.PostgresError) as error:
        # The message of a connection error can name the host; the URL itself never.
        print(f"flamel-usage: database_unavailable: {type(error).__name__}", file=sys.stderr)
        return 2

"""The command line of ``flamel-usage``: its subcommands, arguments and exit codes."""

from __future__ import annotations

import argparse
import os

from flamel_usage.client import DEFAULT_BASE_URL
from flamel_usage.webhooks.events import EVENT_TYPES

DESCRIPTION = "``flamel-usage``: run the service and operate the ledger from a terminal."
#: A command that only reads found no database, or one not migrated: never "all clear".
EXIT_DATABASE_NOT_READY = 5
_EXIT_CODES = (
    "exit codes: 0 done; 1 reconcile found differences, a charge or hold was refused, or usage"
    " failed otherwise; 2 bad arguments, input or settings, or the database does not"
    " answer; 3 usage: credential refused or missing; 4 usage: server unreachable;"
    f" {EXIT_DATABASE_NOT_READY} the database does not exist or is not migrated (reconcile,"
    " which only reads, never creates nor migrates it: the other commands do)."
)


def cpu_cores() -> int:
    """The cores this process may run on (Linux), else the machine's (macOS has no
    affinity call): ``serve``'s default number of workers."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and its arguments; ``--help`` lists the exit codes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="overrides FLAMEL_DATABASE_URL")
    parser = argparse.ArgumentParser(
        prog="flamel-usage", description=DESCRIPTION, epilog=_EXIT_CODES
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4010)
    serve.add_argument(
        "--workers",
        type=int,
        default=cpu_cores(),
        help="worker processes (default: one per CPU core, the fastest found by scripts/bench)",
    )
    serve.add_argument(
        "--server",
        choices=["granian", "uvicorn"],
        default="granian",
        help="HTTP server (default granian, the fastest found by scripts/bench; uvicorn"
        " answers every over-limit head in the API's envelope and takes any FLAMEL_MAX_HEADERS)",
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
    buy.add_argument(
        "--idempotency-key", help="sell at most once under this key (a retry sells nothing)"
    )

    charge = commands.add_parser("charge", parents=[common], help="charge one operation")
    charge.add_argument("email")
    charge.add_argument("kind")
    charge.add_argument("--cost", help="credits (default: the kind's configured cost)")
    charge.add_argument("--idempotency-key", required=True)
    refund = commands.add_parser("refund", parents=[common], help="refund a charge, once")
    refund.add_argument("idempotency_key")

    backup = commands.add_parser(
        "backup",
        parents=[common],
        help="copy the SQLite database to a new file PATH, while servers run and write",
    )
    backup.add_argument("path")
    restore = commands.add_parser(
        "restore",
        parents=[common],
        help="put a backup back in place of the SQLite database (every server stopped)",
    )
    restore.add_argument("path")
    holds = commands.add_parser("holds").add_subparsers(dest="action", required=True)
    hold = holds.add_parser("create", parents=[common], help="hold credit for a long job")
    hold.add_argument("email")
    hold.add_argument("kind")
    hold.add_argument("--cost", help="most the job may cost (default: the kind's cost)")
    hold.add_argument("--ttl", type=int, help="seconds until released by itself (default 900)")
    hold.add_argument("--idempotency-key", required=True)
    settle = holds.add_parser("settle", parents=[common], help="keep the actual cost")
    settle.add_argument("hold_id")
    settle.add_argument("cost")
    release = holds.add_parser("release", parents=[common], help="give everything back")
    release.add_argument("hold_id")
    listed = holds.add_parser("list", parents=[common], help="a user's active holds")
    listed.add_argument("email")
    hooks = commands.add_parser("webhooks", help="webhook endpoints and their deliveries")
    hook_actions = hooks.add_subparsers(dest="action", required=True)
    add = hook_actions.add_parser("add", parents=[common], help="register an endpoint")
    add.add_argument("url")
    add.add_argument(
        "--event",
        action="append",
        choices=list(EVENT_TYPES),
        help="an event type to send (repeat it; default: every type)",
    )
    add.add_argument("--description")
    hook_actions.add_parser("list", parents=[common], help="the endpoints, without secrets")
    remove = hook_actions.add_parser("remove", parents=[common])
    remove.add_argument("webhook_id")
    log = hook_actions.add_parser("deliveries", parents=[common], help="newest first")
    log.add_argument("webhook_id")
    log.add_argument("--limit", type=int, default=50)
    again = hook_actions.add_parser("redeliver", parents=[common], help="send a delivery again")
    again.add_argument("webhook_id")
    again.add_argument("delivery_id")

    commands.add_parser(
        "reconcile",
        parents=[common],
        help=f"exit 1 if balances and ledger differ, {EXIT_DATABASE_NOT_READY} if the"
        " database does not exist or is not migrated",
    )
    return parser

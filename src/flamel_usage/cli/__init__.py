"""``flamel-usage``: run the service and operate the ledger from a terminal.

``parser`` declares the command line, ``commands`` runs the subcommands that operate the
ledger (one function each), ``serve`` the service and ``demo`` its demo account;
``terminal`` shows a customer's usage. ``main`` turns every refusal into one line on
stderr and an exit code (``flamel-usage --help`` lists them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
from collections.abc import Sequence

import asyncpg

from flamel_usage.cli import commands
from flamel_usage.cli.parser import EXIT_DATABASE_NOT_READY, build_parser
from flamel_usage.cli.serve import serve
from flamel_usage.cli.terminal import show_usage
from flamel_usage.core.config import ConfigError, Settings
from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import DatabaseNotReady
from flamel_usage.db.migrate import MigrationEdited
from flamel_usage.db.sqlite import DataDirInUse

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Settings:
    environ = dict(os.environ)
    if args.database_url:
        environ["FLAMEL_DATABASE_URL"] = args.database_url
    return Settings.from_environ(environ)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "usage":
        api_key = args.api_key or os.environ.get("FLAMEL_API_KEY")
        return show_usage(api_key, args.base_url, as_json=args.json, history=args.history)
    try:
        settings = _settings(args)
        if args.command == "serve":
            return serve(args, settings)
        return asyncio.run(commands.run(args, settings))
    except DatabaseNotReady as error:
        print(
            f"flamel-usage: database_not_ready: {error}: check the URL,"
            " or run `flamel-usage migrate`",
            file=sys.stderr,
        )
        return EXIT_DATABASE_NOT_READY
    except (Refusal, ConfigError, MigrationEdited, DataDirInUse, ValueError) as error:
        reason = getattr(error, "reason", "invalid")
        print(f"flamel-usage: {reason}: {error}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error, asyncpg.PostgresError) as error:
        # The message of a connection error can name the host; the URL itself never.
        print(f"flamel-usage: database_unavailable: {type(error).__name__}", file=sys.stderr)
        return 2

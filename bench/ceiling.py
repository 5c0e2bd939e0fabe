"""The ceiling for GET /api/users/me/usage: the same work as a bare ASGI callable.

    .venv/bin/python bench/ceiling.py --port 4011 --workers 2 [--server granian] [--fixed]
    # FLAMEL_DATABASE_URL set, except with --fixed

Same statements as the service, imported from it (``user_for_api_key``'s key lookup,
then ``read_usage``'s one-row read), the service's key check and credit numbers, same
database (FLAMEL_DATABASE_URL: sqlite3 with the service's pragmas, or an asyncpg pool of
the service's size that, like the service's, sends no reset query on release), same
JSON, same server (``--server``: uvicorn or granian, each with the options
``flamel-usage serve`` gives it), and nothing else: no routing, no envelope beyond
401/403, no record of the key's last use (the service batches those writes), billing
zone UTC, periods taken as current (the benchmark seed keeps them so).

``--fixed``: no database at all, one fixed JSON body for every request: what the server
alone can answer, the limit no app under it reaches.
"""

import argparse
import hmac
import multiprocessing
import os
import sqlite3
import time
from datetime import UTC, datetime

import asyncpg
import orjson
from benchlib import numbered

from flamel_usage.auth import keys
from flamel_usage.auth.credentials import KEY_OWNER
from flamel_usage.cli.serve import granian_http1
from flamel_usage.core.config import Settings
from flamel_usage.core.money import credits_value
from flamel_usage.ledger.balances import USAGE

PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000", "foreign_keys=ON")
HEADERS = [(b"content-type", b"application/json; charset=utf-8"), (b"cache-control", b"no-store")]


def iso(us: int) -> str:
    return datetime.fromtimestamp(us // 1_000_000, UTC).isoformat()


async def usage(one, sql, key, now):
    digest = keys.key_hash(key) if keys.is_well_formed(key) else ""
    found = await one(sql[0], digest) if digest else None
    if found is None or not hmac.compare_digest(found[2], digest):
        return 401, b'{"success":false,"code":401,"data":"wrong_api_key"}'
    if found[3] is not None and found[3] <= now:
        return 401, b'{"success":false,"code":401,"data":"api_key_expired"}'
    row = await one(sql[1], found[1], now, found[1])
    return 200, orjson.dumps(
        {
            "currentCredit": credits_value(row[6]),
            "additionalCredit": credits_value(row[-1]),  # USAGE ends with the purchased credit
            "maxCredit": credits_value(row[11]),
            "period": f"{iso(row[4])}/{iso(row[5])}",
            "ttpCount": row[7],
            "maxTtpCount": row[12],
            "editCount": row[8],
            "maxEditCount": row[13],
            "postpaidUsageCount": credits_value(row[9]) if row[14] == "postpaid" else None,
        }
    )


async def keep_session(conn):
    """No reset query on release, as the service's pool (asyncpg still rolls back)."""


def create_app():
    url = os.environ["FLAMEL_DATABASE_URL"]
    sqlite = url.startswith("sqlite:///")
    state = {}

    async def one(sql, *args):
        return state["db"].execute(sql, args).fetchone()

    async def answer(key, now):
        if sqlite:
            return await usage(one, (KEY_OWNER, USAGE), key, now)
        async with state["pool"].acquire() as conn:
            return await usage(conn.fetchrow, state["sql"], key, now)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                if sqlite:
                    state["db"] = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
                    for pragma in PRAGMAS:
                        state["db"].execute(f"PRAGMA {pragma}")
                else:
                    state["pool"] = await asyncpg.create_pool(
                        url, min_size=1, max_size=10, reset=keep_session
                    )
                    state["sql"] = (numbered(KEY_OWNER), numbered(USAGE))
                await send({"type": "lifespan.startup.complete"})
            if not sqlite:
                await state["pool"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-api-key"), None)
        status, body = (
            (403, b'{"success":false,"code":403,"data":"not_logged_in"}')
            if key is None
            else await answer(key, time.time_ns() // 1000)
        )
        await send({"type": "http.response.start", "status": status, "headers": HEADERS})
        await send({"type": "http.response.body", "body": body})

    return app


FIXED_BODY = orjson.dumps(
    {
        "currentCredit": 1000,
        "additionalCredit": 250,
        "maxCredit": 1000,
        "period": "2026-01-01T00:00:00+00:00/2026-02-01T00:00:00+00:00",
        "ttpCount": 0,
        "maxTtpCount": 100,
        "editCount": 0,
        "maxEditCount": 50,
        "postpaidUsageCount": None,
    }
)


def create_fixed_app():
    """A body of the usage read's size for every request, nothing read, nothing looked up."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": FIXED_BODY})

    return app


def run_granian(target, args):
    from granian.constants import HTTPModes, Interfaces
    from granian.server import Server

    multiprocessing.set_start_method("spawn", force=True)  # as ``serve`` starts them

    Server(
        target,
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=granian_http1(Settings.from_environ()),
        log_access=False,
    ).serve()


def run_uvicorn(target, args):
    import uvicorn

    uvicorn.run(
        target,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4011)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument("--fixed", action="store_true", help="one fixed body, no database")
    args = parser.parse_args()
    target = "ceiling:create_fixed_app" if args.fixed else "ceiling:create_app"
    (run_granian if args.server == "granian" else run_uvicorn)(target, args)

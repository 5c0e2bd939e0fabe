"""Charges per second through HTTP on each store, next to a raw transaction loop.

    .venv/bin/python bench/charges.py [--seconds 10] [--connections 16] [--workers 2]

For each store (SQLite in a temp dir, PostgreSQL in a private database on
FLAMEL_TEST_POSTGRES_URL's server) it seeds 1,000 postpaid accounts (a charge is never
refused, so every request does the full work), starts `flamel-usage serve`, drives
`POST /api/admin/charges` with wrk (fresh Idempotency-Key each, random user) and then
runs the raw loop: the same kind of write (account update + ledger insert per
transaction) without HTTP, in one Python process (SQLite) or 16 concurrent asyncpg
transactions (PostgreSQL). It checks that reconcile is clean afterwards, prints a table
and writes it as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from flamel_usage.accounts import service as accounts
from flamel_usage.db import Database
from flamel_usage.ledger import service as ledger

HERE = Path(__file__).resolve().parent
USERS = 1000
TOKEN = secrets.token_urlsafe(16)
POSTGRES_URL = os.environ.get(
    "FLAMEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ZONE_ENV = {"FLAMEL_TIMEZONE": "UTC"}


async def seed(url: str) -> None:
    db = Database.from_url(url)
    await db.open()
    await db.migrate()
    now = time.time_ns() // 1000
    async with db.transaction() as conn:
        await accounts.create_plan(
            conn,
            name="bench",
            period_unit="month",
            max_credit=10**6 * 1000,
            max_ttp=None,
            max_edit=None,
            billing_mode="postpaid",
            now=now,
        )
        for number in range(USERS):
            await accounts.create_user(
                conn,
                email=f"bench{number}@example.com",
                plan_name="bench",
                anchor=None,
                password_hash=None,
                now=now,
                zone=__import__("zoneinfo").ZoneInfo("UTC"),
            )
    await db.close()


async def reconcile(url: str) -> list[str]:
    db = Database.from_url(url)
    await db.open()
    try:
        async with db.read() as conn:
            return await ledger.reconcile(conn)
    finally:
        await db.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cli = Path(sys.executable).with_name("flamel-usage")
    process = subprocess.Popen(
        [str(cli), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(1.0)  # let every worker finish its start-up
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start within 30 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def run_wrk(port: int, seconds: int, connections: int, run: str) -> dict[str, float]:
    env = {**os.environ, "BENCH_ADMIN_TOKEN": TOKEN, "BENCH_USERS": str(USERS), "BENCH_RUN": run}
    output = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(HERE / "charges.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    statuses = {int(s): int(c) for s, c in re.findall(r"STATUS (\d+) (\d+)", output)}
    p50, p99 = (int(v) / 1000 for v in re.search(r"LATENCY p50=(\d+) p99=(\d+)", output).groups())
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = sum(count for status, count in statuses.items() if status != 201)
    return {
        "per_second": rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_201": errors,
        "requests": sum(statuses.values()),
    }


def raw_sqlite(path: Path, seconds: float) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        user = done % USERS + 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE accounts SET postpaid_used = postpaid_used + 1 WHERE user_id = ?", (user,)
        )
        conn.execute(
            "INSERT INTO ledger_entries (user_id, at, entry_type, pool, amount, period_start)"
            " VALUES (?, 0, 'grant', 'postpaid', 0, 0)",
            (user,),
        )
        conn.execute("COMMIT")
        done += 1
    conn.close()
    return done / seconds


async def raw_postgres(url: str, seconds: float, concurrency: int = 16) -> float:
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    deadline = time.monotonic() + seconds
    counts = [0] * concurrency

    async def loop(index: int) -> None:
        async with pool.acquire() as conn:
            while time.monotonic() < deadline:
                user = (counts[index] * concurrency + index) % USERS + 1
                async with conn.transaction():
                    await conn.execute(
                        "UPDATE accounts SET postpaid_used = postpaid_used + 1 WHERE user_id = $1",
                        user,
                    )
                    await conn.execute(
                        "INSERT INTO ledger_entries (user_id, at, entry_type, pool, amount,"
                        " period_start) VALUES ($1, 0, 'grant', 'postpaid', 0, 0)",
                        user,
                    )
                counts[index] += 1

    await asyncio.gather(*(loop(index) for index in range(concurrency)))
    await pool.close()
    return sum(counts) / seconds


async def admin_sql(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def bench_store(store: str, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    if store == "sqlite":
        path = workdir / "bench.sqlite3"
        url = f"sqlite:///{path}"
    else:
        name = f"flamel_bench_{os.getpid()}"
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}"'))
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
        url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    asyncio.run(seed(url))
    env = {
        **os.environ,
        **ZONE_ENV,
        "FLAMEL_DATABASE_URL": url,
        "FLAMEL_ADMIN_TOKEN": TOKEN,
        "FLAMEL_DATA_DIR": str(workdir / "data"),
    }
    process, port = start_server(env, args.workers)
    try:
        http = run_wrk(port, args.seconds, args.connections, f"{store}-{os.getpid()}")
    finally:
        stop_server(process)
    problems = asyncio.run(reconcile(url))
    raw = (
        raw_sqlite(path, args.seconds)
        if store == "sqlite"
        else asyncio.run(raw_postgres(url, args.seconds))
    )
    if store == "postgresql":
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    return {
        "store": store,
        **http,
        "raw_per_second": raw,
        "ratio": http["per_second"] / raw,
        "reconcile_clean": not problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            rows.append(bench_store(store, args, Path(tmp) / store))
    print(
        f"{'store':<11}{'charges/s':>11}{'p50 ms':>8}{'p99 ms':>8}{'non-201':>9}"
        f"{'raw tx/s':>10}{'ratio':>7}  reconcile"
    )
    for row in rows:
        print(
            f"{row['store']:<11}{row['per_second']:>11.0f}{row['p50_ms']:>8.1f}"
            f"{row['p99_ms']:>8.1f}{row['non_201']:>9}{row['raw_per_second']:>10.0f}"
            f"{row['ratio']:>7.2f}  {'clean' if row['reconcile_clean'] else 'DIFFERS'}"
        )
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    target = results / f"charges-{time.strftime('%Y%m%dT%H%M%S')}.json"
    target.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"written: {target.relative_to(HERE.parent)}")
    return 0 if all(row["reconcile_clean"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

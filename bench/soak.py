"""The soak: bounded mixed load on `flamel-usage serve --workers 2` for minutes on end.

Not part of the tests. `.venv/bin/python bench/soak.py` runs 10 minutes (`--minutes`) on
the embedded SQLite (`--store postgresql` for a private database on
FLAMEL_TEST_POSTGRES_URL), seeded like `scripts/bench --quick` (10,000 users, 100,000
ledger entries). The load is bounded: `--rate` requests per second at most (default 150),
over `--connections` connections (default 8), mixed as the platform sends it:

- 70% usage reads (`GET /api/users/me/usage`, a random user's key);
- 20% charges with a fresh Idempotency-Key (a random user and kind), each tenth of them
  sent twice (a client's retry: replayed, charged once);
- 5% refunds of a charge answered 201 earlier in the run (each once);
- 5% purchases of one credit.

Each minute it prints the resident set (VmRSS) of each worker, requests, p50 and p99
(and the p99 of the usage reads alone), and errors: an answer other than the intended
ones (200/201, and 402/429 for a charge refused by credit or limit) or no answer. On
SQLite also the WAL, sampled each second from the shared-memory index SQLite keeps
beside it (read, never locked, so the soak changes nothing): the most frames it held in
the minute (what every read may have to look through before the database file) and its
file's size.

At the end: `flamel-usage reconcile` on the store, then the targets: RSS growth under
10 MB per worker after the first minute, p99 of the last minute within 20% of the second
minute, no errors, reconcile clean. Exit 0 when all pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from benchlib import HOST, VENV_BIN, Server, admin, database_url, free_port
from seed import api_key, postgres_seed, sqlite_seed

TOKEN = "soak-admin-token-" + "x" * 24
KINDS = ("ttp", "edit", "image")
INTENDED = {
    "read": {200},
    "charge": {201, 402, 429},
    "refund": {200},
    "purchase": {201},
}
#: Users charged and refunded: not user 1, whose history the benchmark reads.
FIRST_USER = 2


@dataclass
class Minute:
    latencies: list[float] = field(default_factory=list)
    #: The usage reads' alone: a tail the writes make shows in ``latencies`` only.
    read_latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wal_frames: int = 0

    def p(self, fraction: float, *, reads_only: bool = False) -> float:
        ordered = sorted(self.read_latencies if reads_only else self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def wal_frames(database: Path) -> int | None:
    """The frames in ``database``'s WAL now: ``mxFrame`` of the WAL index's header, the
    32-bit word at byte 16 of the ``-shm`` file, in the machine's byte order (SQLite's
    file format, "WAL-index format"). None when there is no index (no WAL open)."""
    try:
        with open(f"{database}-shm", "rb") as index:
            header = index.read(20)
    except OSError:
        return None
    return int.from_bytes(header[16:20], sys.byteorder) if len(header) == 20 else None


def rss_mb(pid: int) -> float | None:
    """The resident set (VmRSS) of a process now, in MB (10^6 bytes)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 / 1e6 if match else None


class Load:
    """The mixed requests, paced to ``rate`` per second over ``connections``."""

    def __init__(self, base_url: str, users: int, rate: float, connections: int) -> None:
        self.base_url = base_url
        self.users = users
        self.interval = 1.0 / rate
        self.connections = connections
        self.rng = random.Random(15)
        self.charged: list[str] = []
        self.serial = 0
        self.minute = Minute()

    def _user(self) -> int:
        return self.rng.randint(FIRST_USER, self.users)

    async def _one(self, client: httpx.AsyncClient) -> None:
        pick = self.rng.random()
        self.serial += 1
        sends: list[tuple[str, str, dict[str, str], object]]
        if pick < 0.70:
            kind = "read"
            headers = {"X-Api-Key": api_key(self._user())}
            sends = [(kind, "/api/users/me/usage", headers, None)]
        elif pick < 0.90 or not self.charged:
            kind = "charge"
            key = f"soak-{self.serial}"
            body = {"userId": self._user(), "kind": self.rng.choice(KINDS)}
            headers = {"Idempotency-Key": key, "Authorization": f"Bearer {TOKEN}"}
            sends = [(kind, "/api/admin/charges", headers, body)]
            if self.serial % 10 == 0:
                sends.append(sends[0])
        elif pick < 0.95:
            kind = "refund"
            key = self.charged.pop(self.rng.randrange(len(self.charged)))
            path = f"/api/admin/charges/{key}/refund"
            sends = [(kind, path, {"Authorization": f"Bearer {TOKEN}"}, None)]
        else:
            kind = "purchase"
            path = f"/api/admin/users/{self._user()}/credits"
            sends = [(kind, path, {"Authorization": f"Bearer {TOKEN}"}, {"amount": 1})]
        sent: set[str] = set()
        for kind, path, headers, body in sends:
            started = time.perf_counter()
            try:
                if body is None and kind == "read":
                    answer = await client.get(path, headers=headers)
                else:
                    answer = await client.post(path, headers=headers, json=body)
                status = str(answer.status_code)
                ok = answer.status_code in INTENDED[kind]
            except httpx.HTTPError as error:
                status, ok = type(error).__name__, False
            if kind == "charge" and status == "201" and headers["Idempotency-Key"] not in sent:
                sent.add(headers["Idempotency-Key"])
                self.charged.append(headers["Idempotency-Key"])  # refundable from now on
            minute = self.minute
            minute.latencies.append(time.perf_counter() - started)
            if kind == "read":
                minute.read_latencies.append(minute.latencies[-1])
            minute.statuses[f"{kind} {status}"] = minute.statuses.get(f"{kind} {status}", 0) + 1
            if not ok:
                minute.errors += 1

    async def run_until(self, deadline: float) -> None:
        slots = asyncio.Semaphore(self.connections)
        pending: set[asyncio.Task[None]] = set()
        limits = httpx.Limits(max_connections=self.connections)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=30) as client:
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                await slots.acquire()
                task = asyncio.create_task(self._one(client))
                pending.add(task)
                task.add_done_callback(lambda done: (pending.discard(done), slots.release()))
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    next_at = time.monotonic()  # behind: never a burst to catch up
            if pending:
                await asyncio.wait(pending, timeout=60)


async def _watch_wal(load: Load, database: Path) -> None:
    """Keep the most frames the WAL held in the current minute, sampled each second."""
    while True:
        frames = wal_frames(database)
        if frames is not None:
            load.minute.wal_frames = max(load.minute.wal_frames, frames)
        await asyncio.sleep(1)


async def soak(
    args: argparse.Namespace, server: Server, users: int, database: Path | None
) -> list[dict[str, Any]]:
    load = Load(f"http://{HOST}:{server.port}", users, args.rate, args.connections)
    watcher = None if database is None else asyncio.create_task(_watch_wal(load, database))
    started = time.monotonic()
    rows = []
    for number in range(1, args.minutes + 1):
        load.minute = Minute()
        await load.run_until(started + number * 60)
        rss = [rss_mb(pid) for pid in server.worker_pids()]
        minute = load.minute
        row: dict[str, Any] = {
            "minute": number,
            "rss_mb": [None if value is None else round(value, 1) for value in rss],
            "requests": len(minute.latencies),
            "p50_ms": round(minute.p(0.50), 2),
            "p99_ms": round(minute.p(0.99), 2),
            "read_p99_ms": round(minute.p(0.99, reads_only=True), 2),
            "errors": minute.errors,
            "statuses": minute.statuses,
        }
        wal = ""
        if database is not None:
            row["wal_frames"] = minute.wal_frames
            wal_file = Path(f"{database}-wal")
            row["wal_file_mb"] = round(wal_file.stat().st_size / 1e6, 1) if wal_file.exists() else 0
            wal = f"  wal {row['wal_frames']:6d} frames at most, file {row['wal_file_mb']} MB"
        rows.append(row)
        workers = "  ".join(f"{value} MB" for value in row["rss_mb"])
        print(
            f"minute {number:3d}  rss/worker {workers}  requests {row['requests']:6d}"
            f"  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms"
            f" (reads {row['read_p99_ms']:6.2f})"
            f"  errors {row['errors']}" + wal,
            flush=True,
        )
        if minute.errors:
            print(f"    {minute.statuses}", flush=True)
    if watcher is not None:
        watcher.cancel()
    return rows


def targets(rows: list[dict[str, Any]], reconciled: bool) -> list[tuple[bool, str]]:
    found = []
    first, last = rows[0]["rss_mb"], rows[-1]["rss_mb"]
    growth = [round(b - a, 1) for a, b in zip(first, last, strict=False) if a and b]
    found.append(
        (
            bool(growth) and max(growth) < 10,
            f"RSS growth after the first minute < 10 MB per worker: {growth} MB",
        )
    )
    if len(rows) >= 3:
        second, final = rows[1]["p99_ms"], rows[-1]["p99_ms"]
        found.append(
            (
                final <= second * 1.2,
                f"p99 of the last minute within 20% of the second: {final} vs {second} ms",
            )
        )
    errors = sum(row["errors"] for row in rows)
    found.append((errors == 0, f"no errors: {errors}"))
    found.append((reconciled, "reconcile clean"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=150.0, help="requests/s at most")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.minutes < 2:
        parser.error("--minutes: at least 2 (growth is measured after the first)")

    work = Path(tempfile.mkdtemp(prefix="flamel-soak-"))
    seeded = sqlite_seed(args.users, args.entries)
    database_name, database = None, None
    if args.store == "sqlite":
        database = work / "soak.sqlite3"
        shutil.copy(seeded.path, database)
        url = f"sqlite:///{database}"
    else:
        database_name = f"flamel_soak_{int(time.time())}"
        asyncio.run(admin(f'CREATE DATABASE "{database_name}"'))
        url = database_url(database_name)
        asyncio.run(postgres_seed(seeded.path, url))
    env = {
        "PATH": str(VENV_BIN) + ":/usr/bin:/bin",
        "FLAMEL_DATABASE_URL": url,
        "FLAMEL_DATA_DIR": str(work / "data"),
        "FLAMEL_ADMIN_TOKEN": TOKEN,
        "FLAMEL_SESSION_SECRET": "soak-" + TOKEN,
        "FLAMEL_TIMEZONE": "UTC",
    }
    port = free_port()
    argv_serve = [str(VENV_BIN / "flamel-usage"), "serve", "--host", HOST, "--port", str(port)]
    server = Server(
        "soak", [*argv_serve, "--workers", str(args.workers)], env, port, work / "serve.log"
    )
    print(
        f"soak: {args.minutes} min, {args.store}, {args.workers} workers, at most"
        f" {args.rate:g} requests/s over {args.connections} connections",
        flush=True,
    )
    try:
        server.start(ready_path="/healthz")
        rows = asyncio.run(soak(args, server, args.users, database))
    finally:
        server.stop()
    checked = subprocess.run(
        [str(VENV_BIN / "flamel-usage"), "reconcile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(checked.stdout.strip().splitlines()[-1] if checked.stdout else checked.stderr.strip())
    results = targets(rows, checked.returncode == 0)
    print("targets:")
    for passed, text in results:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    if database_name is not None:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(passed for passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

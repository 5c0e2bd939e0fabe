"""One benchmark run of flamel-usage against Prism and a bare-ASGI ceiling, and charges/s.

    scripts/bench [--quick] [--seconds 8] [--rounds 3] [--workers 2]
                  [--parts read,flat,charges,holds,history,sessions]

(``scripts/bench`` installs wrk and the pinned Prism CLI first, then runs this file with
the project's venv.) Everything listens on and is called at 127.0.0.1.

Data: ``bench/seed.py`` seeds SQLite (cached under bench/.cache per parameters and day)
with --users users (one API key each, plans of every kind) and --entries ledger
entries, and copies it into a private PostgreSQL database on FLAMEL_TEST_POSTGRES_URL's
server, dropped at the end. The run works on copies, so the cache stays clean.

read: ``GET /api/users/me/usage`` with a random valid key per request
  (``bench/usage.lua``), at each --connections level, --rounds rounds, the contenders
  alternating (their order rotates by round): ours-sqlite and ours-pg
  (``flamel-usage serve --workers N``, under its default server, granian),
  ours-uvicorn-sqlite (the same under ``--server uvicorn``), ceiling-sqlite and ceiling-pg
  (``bench/ceiling.py``: the same statements as a bare ASGI callable under uvicorn with
  the options and worker count ``serve --server uvicorn`` uses), ceiling-granian-sqlite and
  ceiling-granian-pg (the same callable under granian, the fastest server found),
  fixed-granian (``bench/ceiling.py --fixed``: one fixed body of the read's size, no
  database, under granian: the server's own limit), prism (``prism mock`` of the packaged seed spec
  ``src/flamel_usage/http/openapi/openapi-seed.yaml``, one process, as its CLI runs by default:
  a log line per request, as the issue measured it) and prism-quiet (the same with
  ``-v warn``; printed as ``ours/quiet``, not judged). Each
  measurement starts its server, warms up for --warmup s, measures for --seconds s,
  reads the peak RSS (VmHWM) of every worker process and stops the server. Before it,
  every key's ``last_used_at`` is cleared, so that each measurement starts from the
  same state whatever the service does with it (today: batched writes). Figures are
  medians over rounds; errors are summed, peak RSS is the largest. Ours is printed
  against each ceiling; the targets are judged against the fastest ceiling of its store.
flat: ours-sqlite at the first connection level on --flat-users users vs --users users,
  both with --entries entries, alternating.
charges: ``POST /api/admin/charges`` (``bench/charges.lua``) on each store next to a raw
  single-process loop of the same statements (``bench/charges.py``), alternating; then
  ``reconcile`` must be clean on both stores.
holds: a hold's life, ``POST /api/admin/holds`` then its settle (``bench/holds.lua``),
  next to ``POST /api/admin/charges`` (``bench/charges.lua``) on the same server, each
  store, the two alternating (their order rotates by round); printed: holds/s (holds
  made, each then settled) next to charges/s; then ``reconcile`` must be clean.
history: ``GET /api/users/me/usage/history`` (by day, then by hour: the current period)
  with the key of the seed's user with 10,000 charges in its current period
  (``seed.HISTORY_USER``), ``bench/usage.lua`` with ``BENCH_PATH``, at --history-connections,
  on each store (ours-sqlite, ours-pg), alternating; ``--parts history`` runs it alone.
webhooks: ``POST /api/admin/charges`` as in charges, on each store, with one webhook
  endpoint registered (every event type, sent to a receiver in this process:
  ``bench/webhooks.py``) next to none, alternating; judged: >= 80% of the charges/s.
sessions: ``GET /api/users/me/usage`` on SQLite with the platform's session (a
  connect-redis session in Redis per cookie, ``bench/sessions.py``: --sessions of them,
  one random cookie per request) next to the same read with a random API key, the same
  server settings for both (the session store configured), at each --connections level,
  alternating; judged: the session read at >= 60% of the key read's requests/s.

Workers: 2 by default, one per core of the 2-core machine this runs on (``flamel-usage
serve`` itself defaults to 1). Results: a table on stdout, everything in
``bench/results/bench-<timestamp>.json``. Exit status: 0 when every target passed,
1 when one failed, 2 when the run could not be completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import charges
import granian
import seed
import sessions
import uvicorn
import webhooks
from benchlib import (
    HERE,
    HOST,
    ROOT,
    VENV_BIN,
    CpuWindow,
    Server,
    admin,
    database_url,
    execute,
    free_port,
    median,
    wait_quiet,
    wrk,
)

from flamel_usage.core import config
from flamel_usage.ledger.history import GRANULARITIES

PRISM = HERE / ".tools" / "node_modules" / ".bin" / "prism"
SPEC = ROOT / "src" / "flamel_usage" / "http" / "openapi" / "openapi-seed.yaml"
USAGE_PATH = "/api/users/me/usage"
HISTORY_PATH = "/api/users/me/usage/history"
#: The issue's target for the history read on SQLite at 16 connections.
HISTORY_P99_MS = 20.0
#: The platform issue's target: the session read's requests/s against the key read's.
SESSION_PER_KEY = 0.60
PARTS = ("read", "flat", "charges", "holds", "history", "sessions", "webhooks")
#: Charges/s with one webhook endpoint registered, at least this share of those with none.
WEBHOOK_PER_NONE = 0.80
CONTENDERS = (
    "ours-sqlite",
    "ceiling-granian-sqlite",
    "ceiling-sqlite",
    "ours-uvicorn-sqlite",
    "fixed-granian",
    "ours-pg",
    "ceiling-granian-pg",
    "ceiling-pg",
    "prism",
    "prism-quiet",
)
#: The ceilings ours is printed against, by the name of their column.
CEILINGS = {
    "ceiling": "ceiling-{store}",
    "granian": "ceiling-granian-{store}",
    "fixed": "fixed-granian",
}
TOKEN = secrets.token_urlsafe(24)


def log(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Store:
    name: str  # sqlite / postgresql
    url: str
    path: Path | None = None  # the SQLite file


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path, database: str) -> None:
        self.args = args
        self.workdir = workdir
        self.database = database  # the private PostgreSQL database's name
        self.deadline = time.monotonic() + args.max_minutes * 60
        self.measurements = 0
        self.quiet_waited = 0.0

    def quiet(self) -> None:
        """Wait for other processes to calm down, within the run's --quiet-budget."""
        budget = self.args.quiet_budget - self.quiet_waited
        self.quiet_waited += wait_quiet(min(self.args.quiet_wait, max(0.0, budget)), log=log)

    # --- servers ---------------------------------------------------------------------

    def server_env(self, url: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAMEL_")}
        if url is not None:
            env |= {
                config.DATABASE_URL.name: url,
                config.TIMEZONE.name: "UTC",
                config.DATA_DIR.name: str(self.workdir / "data"),
                config.SESSION_SECRET.name: "bench-" + TOKEN,
                config.ADMIN_TOKEN.name: TOKEN,
            }
        return env

    def server(
        self, contender: str, store: Store | None, extra_env: dict[str, str] | None = None
    ) -> Server:
        port = free_port()
        workers = str(self.args.workers)
        if contender.startswith("ours"):
            argv = [str(VENV_BIN / "flamel-usage"), "serve", "--host", HOST, "--port", str(port)]
            argv += ["--workers", workers]
            if "-uvicorn-" in contender:
                argv += ["--server", "uvicorn"]
        elif contender.startswith(("ceiling", "fixed")):
            argv = [sys.executable, str(HERE / "ceiling.py"), "--host", HOST, "--port", str(port)]
            argv += ["--workers", workers]
            if "-granian" in contender:
                argv += ["--server", "granian"]
            if contender.startswith("fixed"):
                argv += ["--fixed"]
        else:
            argv = [str(PRISM), "mock", "-h", HOST, "-p", str(port), str(SPEC)]
            if contender == "prism-quiet":
                argv[2:2] = ["-v", "warn"]
        self.measurements += 1
        log_path = self.workdir / "logs" / f"{self.measurements:03d}-{contender}.log"
        env = self.server_env(None if store is None else store.url) | (extra_env or {})
        return Server(contender, argv, env, port, log_path).start(USAGE_PATH)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RuntimeError(f"the run took longer than --max-minutes {self.args.max_minutes}")

    # --- keys' last use --------------------------------------------------------------

    def reset_keys(self, store: Store) -> None:
        clear = "UPDATE api_keys SET last_used_at = NULL WHERE last_used_at IS NOT NULL"
        if store.path is not None:
            conn = sqlite3.connect(store.path, isolation_level=None)
            try:
                conn.execute(clear)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        else:
            asyncio.run(execute(store.url, clear, "VACUUM api_keys"))

    def keys_touched(self, store: Store) -> int:
        count = "SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL"
        if store.path is not None:
            conn = sqlite3.connect(store.path)
            try:
                return int(conn.execute(count).fetchone()[0])
            finally:
                conn.close()
        return int(asyncio.run(execute(store.url, count))[0])

    # --- one read measurement --------------------------------------------------------

    def measure_read(
        self,
        contender: str,
        store: Store | None,
        keys: Path,
        connections: int,
        seed_no: int,
        path: str = USAGE_PATH,
        header: str = "X-Api-Key",
        extra_env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One wrk measurement of ``contender``: ``keys`` is a file of values of ``header``
        (API keys, or session cookies), one picked at random per request."""
        self.check_time()
        if store is not None:
            self.reset_keys(store)
        self.quiet()
        server = self.server(contender, store, extra_env)
        env = {
            "BENCH_KEYS": str(keys),
            "BENCH_SEED": str(seed_no),
            "BENCH_PATH": path,
            "BENCH_HEADER": header,
        }
        url = f"http://{HOST}:{server.port}"
        try:
            if self.args.warmup > 0:
                wrk(
                    url,
                    HERE / "usage.lua",
                    seconds=self.args.warmup,
                    connections=connections,
                    env={**env, "BENCH_SEED": str(seed_no + 50_000)},
                )
            window = self.window(server)
            result = wrk(
                url, HERE / "usage.lua", seconds=self.args.seconds, connections=connections, env=env
            )
            others = window.other_cores()
            rss = server.peak_rss_per_worker()
        finally:
            server.stop()
        row = {
            "contender": contender,
            "connections": connections,
            "per_second": result.per_second,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "requests": result.requests,
            "errors": result.errors({200}),
            "statuses": result.statuses,
            "socket_errors": result.socket_errors,
            "peak_rss_mb_per_worker": rss,
            "workers": len(rss),
            "other_cores": others,
        }
        if store is not None:
            row["keys_used"] = self.keys_touched(store)
        log(
            f"  {contender:<15} c={connections:<3} {result.per_second:>9.0f} req/s"
            f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms"
            f"  errors {row['errors']}  RSS {max(rss, default=0):.1f} MB  others {others:.2f} cores"
        )
        return row

    def window(self, server: Server | None) -> CpuWindow:
        roots = [] if server is None or server.process is None else [server.process.pid]
        return CpuWindow(roots, self.database)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of one contender at one level; errors summed, RSS at its peak."""
    return {
        "per_second": median(r["per_second"] for r in rows),
        "p50_ms": median(r["p50_ms"] for r in rows),
        "p99_ms": median(r["p99_ms"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "peak_rss_mb_per_worker": max(
            (max(r["peak_rss_mb_per_worker"], default=0.0) for r in rows), default=0.0
        ),
        "workers": rows[0]["workers"],
        "rounds": len(rows),
        "other_cores_max": max(r["other_cores"] for r in rows),
        **({"keys_used": median(r["keys_used"] for r in rows)} if "keys_used" in rows[0] else {}),
    }


# --- parts -------------------------------------------------------------------------------


def part_read(
    run: Run, stores: dict[str, Store], keys: Path, contenders: list[str]
) -> dict[str, Any]:
    args = run.args
    measurements: list[dict[str, Any]] = []
    for level_index, connections in enumerate(args.connections):
        for round_no in range(args.rounds):
            log(f"read: {connections} connections, round {round_no + 1}/{args.rounds}")
            shift = round_no % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                store = stores.get(store_of(contender) or "")
                row = run.measure_read(
                    contender, store, keys, connections, 1000 * level_index + round_no + 1
                )
                measurements.append({**row, "round": round_no + 1})
    summary = []
    for connections in args.connections:
        found = {
            contender: summarise(
                [
                    m
                    for m in measurements
                    if m["contender"] == contender and m["connections"] == connections
                ]
            )
            for contender in contenders
        }
        for contender, figures in found.items():
            entry = {"connections": connections, "contender": contender, **figures}
            store = store_of(contender)
            if contender.startswith("ours") and store is not None:
                for column, pattern in CEILINGS.items():
                    ceiling = found.get(pattern.format(store=store))
                    entry[f"ours_per_{column}"] = (
                        figures["per_second"] / ceiling["per_second"] if ceiling else None
                    )
                ceilings = [
                    found[c]["per_second"]
                    for c in found
                    if c.startswith("ceiling") and store_of(c) == store
                ]
                entry["ours_per_fastest_ceiling"] = (
                    figures["per_second"] / max(ceilings) if ceilings else None
                )
                for name, prism in (
                    ("prism", found.get("prism")),
                    ("prism_quiet", found.get("prism-quiet")),
                ):
                    entry[f"ours_per_{name}"] = (
                        figures["per_second"] / prism["per_second"] if prism else None
                    )
            summary.append(entry)
    return {"measurements": measurements, "summary": summary}


def part_flat(
    run: Run, small: seed.Seed, small_store: Store, large: seed.Seed, large_store: Store
) -> dict[str, Any]:
    args = run.args
    connections = args.connections[0]
    variants = {
        "small": (small, small_store),
        "large": (large, large_store),
    }
    measurements = []
    for round_no in range(args.rounds):
        log(
            f"flat: {small.users:,} vs {large.users:,} users, {connections} connections,"
            f" round {round_no + 1}/{args.rounds}"
        )
        order = ["small", "large"] if round_no % 2 == 0 else ["large", "small"]
        for name in order:
            data, store = variants[name]
            row = run.measure_read("ours-sqlite", store, data.keys, connections, 7000 + round_no)
            measurements.append({**row, "data": name, "users": data.users, "round": round_no + 1})
    result: dict[str, Any] = {"connections": connections, "measurements": measurements}
    for name, (data, _) in variants.items():
        rows = [m for m in measurements if m["data"] == name]
        result[name] = {"users": data.users, "entries": data.entries, **summarise(rows)}
    result["large_per_small"] = result["large"]["per_second"] / result["small"]["per_second"]
    return result


def part_charges(run: Run, stores: dict[str, Store], users: int) -> dict[str, Any]:
    args = run.args
    pid = os.getpid()
    measurements = []
    for round_no in range(args.rounds):
        for name, store in stores.items():
            run.check_time()
            log(f"charges: {name}, round {round_no + 1}/{args.rounds}")
            run.quiet()
            server = run.server("ours-" + ("pg" if name == "postgresql" else name), store)
            url = f"http://{HOST}:{server.port}"
            env = {
                "BENCH_ADMIN_TOKEN": TOKEN,
                "BENCH_USERS": str(users),
                "BENCH_SEED": str(round_no + 1),
            }
            try:
                if args.warmup > 0:
                    wrk(
                        url,
                        HERE / "charges.lua",
                        seconds=args.warmup,
                        connections=args.charge_connections,
                        env={**env, "BENCH_RUN": f"warm-{name}-{round_no}-{pid}"},
                    )
                window = run.window(server)
                http = wrk(
                    url,
                    HERE / "charges.lua",
                    seconds=args.seconds,
                    connections=args.charge_connections,
                    env={**env, "BENCH_RUN": f"http-{name}-{round_no}-{pid}"},
                )
                others = window.other_cores()
                rss = server.peak_rss_per_worker()
            finally:
                server.stop()
            tag = f"raw-{name}-{round_no}-{pid}"
            run.quiet()
            window = run.window(None)
            if store.path is not None:
                raw = asyncio.run(
                    charges.raw_sqlite(str(store.path), args.seconds, users, tag, round_no + 1)
                )
            else:
                raw = asyncio.run(
                    charges.raw_postgres(
                        store.url, args.seconds, users, tag, round_no + 1, args.charge_connections
                    )
                )
            raw_others = window.other_cores()
            refusals = sum(http.statuses.get(s, 0) for s in charges.REFUSALS)
            row = {
                "store": name,
                "round": round_no + 1,
                "per_second": http.per_second,
                "p50_ms": http.p50_ms,
                "p99_ms": http.p99_ms,
                "requests": http.requests,
                "refusals": refusals,
                "errors": http.errors(charges.OK | charges.REFUSALS),
                "statuses": http.statuses,
                "replayed": http.replayed,
                "peak_rss_mb_per_worker": rss,
                "raw_per_second": raw["per_second"],
                "raw_requests": raw["requests"],
                "raw_refusals": raw["refusals"],
                "other_cores": others,
                "raw_other_cores": raw_others,
            }
            log(
                f"  {name:<10} http {http.per_second:8.0f}/s (p99 {http.p99_ms:.1f} ms,"
                f" errors {row['errors']}, refusals {refusals})  raw {raw['per_second']:8.0f}/s"
                f"  others {max(others, raw_others):.2f} cores"
            )
            measurements.append(row)
    summary = []
    for name, store in stores.items():
        rows = [m for m in measurements if m["store"] == name]
        problems = asyncio.run(asyncio.wait_for(seed.reconcile(store.url), timeout=600))
        entry = {
            "store": name,
            "per_second": median(r["per_second"] for r in rows),
            "p50_ms": median(r["p50_ms"] for r in rows),
            "p99_ms": median(r["p99_ms"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "refusals": sum(r["refusals"] for r in rows),
            "raw_per_second": median(r["raw_per_second"] for r in rows),
            "peak_rss_mb_per_worker": max(
                max(r["peak_rss_mb_per_worker"], default=0.0) for r in rows
            ),
            "reconcile_problems": len(problems),
            "reconcile_sample": problems[:5],
        }
        entry["ratio"] = entry["per_second"] / entry["raw_per_second"]
        summary.append(entry)
    return {
        "connections": args.charge_connections,
        "measurements": measurements,
        "summary": summary,
    }


def part_holds(run: Run, stores: dict[str, Store], users: int) -> dict[str, Any]:
    """Holds (made, then settled) per second next to charges per second, per store."""
    args = run.args
    pid = os.getpid()
    measurements = []
    for round_no in range(args.rounds):
        for name, store in stores.items():
            run.check_time()
            log(f"holds: {name}, round {round_no + 1}/{args.rounds}")
            run.quiet()
            server = run.server("ours-" + ("pg" if name == "postgresql" else name), store)
            url = f"http://{HOST}:{server.port}"
            scripts = ["charges", "holds"][:: 1 if round_no % 2 == 0 else -1]
            row: dict[str, Any] = {"store": name, "round": round_no + 1}
            try:
                for script in scripts:
                    env = {
                        "BENCH_ADMIN_TOKEN": TOKEN,
                        "BENCH_USERS": str(users),
                        "BENCH_SEED": str(round_no + 1),
                        "BENCH_RUN": f"{script}-{name}-{round_no}-{pid}",
                    }
                    http = wrk(
                        url,
                        HERE / f"{script}.lua",
                        seconds=args.seconds,
                        connections=args.charge_connections,
                        env=env,
                    )
                    made = http.statuses.get(201, 0)
                    ok = charges.OK | charges.REFUSALS | ({200} if script == "holds" else set())
                    row[script] = {
                        "per_second": http.per_second * made / max(http.requests, 1),
                        "requests_per_second": http.per_second,
                        "p99_ms": http.p99_ms,
                        "errors": http.errors(ok),
                        "statuses": http.statuses,
                    }
            finally:
                server.stop()
            log(
                f"  {name:<10} holds {row['holds']['per_second']:8.0f}/s"
                f"  charges {row['charges']['per_second']:8.0f}/s"
                f"  errors {row['holds']['errors'] + row['charges']['errors']}"
            )
            measurements.append(row)
    summary = []
    for name, store in stores.items():
        rows = [m for m in measurements if m["store"] == name]
        problems = asyncio.run(asyncio.wait_for(seed.reconcile(store.url), timeout=600))
        entry = {
            "store": name,
            "holds_per_second": median(r["holds"]["per_second"] for r in rows),
            "charges_per_second": median(r["charges"]["per_second"] for r in rows),
            "holds_p99_ms": median(r["holds"]["p99_ms"] for r in rows),
            "errors": sum(r["holds"]["errors"] + r["charges"]["errors"] for r in rows),
            "reconcile_problems": len(problems),
        }
        entry["ratio"] = entry["holds_per_second"] / entry["charges_per_second"]
        summary.append(entry)
    return {
        "connections": args.charge_connections,
        "measurements": measurements,
        "summary": summary,
    }


def part_webhooks(run: Run, stores: dict[str, Store], users: int) -> dict[str, Any]:
    """Charges/s with one webhook endpoint registered next to none, on each store."""
    args = run.args
    pid = os.getpid()
    receiver = webhooks.Receiver()
    measurements = []
    try:
        for round_no in range(args.rounds):
            for name, store in stores.items():
                variants = ["none", "one"] if round_no % 2 == 0 else ["one", "none"]
                for variant in variants:
                    run.check_time()
                    log(f"webhooks: {name}, {variant} endpoint(s), round {round_no + 1}")
                    run.quiet()
                    contender = "ours-" + ("pg" if name == "postgresql" else name)
                    server = run.server(contender, store, webhooks.SERVER_ENV)
                    url = f"http://{HOST}:{server.port}"
                    env = {
                        "BENCH_ADMIN_TOKEN": TOKEN,
                        "BENCH_USERS": str(users),
                        "BENCH_SEED": str(100 + round_no),
                    }
                    endpoint = None
                    try:
                        if variant == "one":
                            endpoint = webhooks.register(url, TOKEN, receiver.url)
                        run_tag = f"hooks-{variant}-{name}-{round_no}-{pid}"
                        if args.warmup > 0:
                            wrk(
                                url,
                                HERE / "charges.lua",
                                seconds=args.warmup,
                                connections=args.charge_connections,
                                env={**env, "BENCH_RUN": "warm-" + run_tag},
                            )
                        sent_before = receiver.received
                        window = run.window(server)
                        http = wrk(
                            url,
                            HERE / "charges.lua",
                            seconds=args.seconds,
                            connections=args.charge_connections,
                            env={**env, "BENCH_RUN": run_tag},
                        )
                        others = window.other_cores()
                        if endpoint is not None:
                            webhooks.remove(url, TOKEN, endpoint)
                    finally:
                        server.stop()
                    row = {
                        "store": name,
                        "endpoints": variant,
                        "round": round_no + 1,
                        "per_second": http.per_second,
                        "p99_ms": http.p99_ms,
                        "errors": http.errors(charges.OK | charges.REFUSALS),
                        "webhooks_received": receiver.received - sent_before,
                        "other_cores": others,
                    }
                    log(
                        f"  {name:<10} {variant:<4} {http.per_second:8.0f}/s"
                        f" (p99 {http.p99_ms:.1f} ms, errors {row['errors']},"
                        f" webhooks sent {row['webhooks_received']})"
                    )
                    measurements.append(row)
    finally:
        receiver.close()
    summary = []
    for name in stores:
        found = {
            variant: [m for m in measurements if m["store"] == name and m["endpoints"] == variant]
            for variant in ("none", "one")
        }
        none = median(m["per_second"] for m in found["none"])
        one = median(m["per_second"] for m in found["one"])
        summary.append(
            {
                "store": name,
                "none_per_second": none,
                "one_per_second": one,
                "ratio": one / none,
                "errors": sum(m["errors"] for rows in found.values() for m in rows),
                "webhooks_received": sum(m["webhooks_received"] for m in found["one"]),
            }
        )
    return {"measurements": measurements, "summary": summary}


def part_history(run: Run, stores: dict[str, Store]) -> dict[str, Any]:
    """The usage history of the seed's user with 10,000 charges, on each store."""
    args = run.args
    keys = run.workdir / "history-key.txt"
    keys.write_text(seed.api_key(seed.HISTORY_USER) + "\n")
    connections = args.history_connections
    measurements = []
    for round_no in range(args.rounds):
        for granularity in GRANULARITIES:
            log(f"history by {granularity}: {connections} connections, round {round_no + 1}")
            names = list(stores) if round_no % 2 == 0 else list(stores)[::-1]
            for name in names:
                row = run.measure_read(
                    f"ours-{name}",
                    stores[name],
                    keys,
                    connections,
                    9000 + round_no,
                    f"{HISTORY_PATH}?granularity={granularity}",
                )
                measurements.append({**row, "granularity": granularity, "round": round_no + 1})
    summary = [
        {
            "contender": f"ours-{name}",
            "granularity": granularity,
            "connections": connections,
            **summarise(
                [
                    m
                    for m in measurements
                    if m["contender"] == f"ours-{name}" and m["granularity"] == granularity
                ]
            ),
        }
        for name in stores
        for granularity in GRANULARITIES
    ]
    return {
        "user_id": seed.HISTORY_USER,
        "charges": seed.HISTORY_CHARGES,
        "measurements": measurements,
        "summary": summary,
    }


def part_sessions(run: Run, store: Store, keys: Path, users: int) -> dict[str, Any]:
    """The usage read with a connect-redis session next to the read with an API key."""
    args = run.args
    prefix = f"flamel-bench-{os.getpid()}-{secrets.token_hex(4)}:"
    cookies = run.workdir / "session-cookies.txt"
    log(f"sessions: {args.sessions:,} connect-redis sessions under {prefix} ...")
    secret = run.server_env(store.url)["FLAMEL_SESSION_SECRET"]
    extra_env = {
        "FLAMEL_SESSION_STORE": sessions.REDIS_URL,
        "FLAMEL_SESSION_STORE_PREFIX": prefix,
        "FLAMEL_LOGIN_URL": "https://platform.example.com/login",
    }
    credentials = {"key": (keys, "X-Api-Key"), "session": (cookies, "Cookie")}
    measurements = []
    try:
        sessions.write_sessions(prefix, secret, users, args.sessions, cookies)
        for connections in args.connections:
            for round_no in range(args.rounds):
                log(f"sessions: {connections} connections, round {round_no + 1}/{args.rounds}")
                order = list(credentials) if round_no % 2 == 0 else list(credentials)[::-1]
                for credential in order:
                    values, header = credentials[credential]
                    row = run.measure_read(
                        "ours-sqlite",
                        store,
                        values,
                        connections,
                        11_000 + round_no,
                        header=header,
                        extra_env=extra_env,
                    )
                    measurements.append({**row, "credential": credential, "round": round_no + 1})
    finally:
        sessions.remove_sessions(prefix)
    summary = []
    for connections in args.connections:
        found = {
            credential: summarise(
                [
                    m
                    for m in measurements
                    if m["credential"] == credential and m["connections"] == connections
                ]
            )
            for credential in credentials
        }
        ratio = found["session"]["per_second"] / found["key"]["per_second"]
        for credential, figures in found.items():
            summary.append(
                {
                    "connections": connections,
                    "credential": credential,
                    **figures,
                    "session_per_key": ratio,
                }
            )
    return {"sessions": args.sessions, "measurements": measurements, "summary": summary}


# --- targets and the table ---------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def target(name: str, passed: bool, detail: str) -> None:
        found.append({"target": name, "pass": passed, "detail": detail})

    read = results.get("read", {}).get("summary", [])
    rows = {(r["contender"], r["connections"]): r for r in read}
    levels = sorted({r["connections"] for r in read})
    if read:
        # A ratio against a contender that answered errors means nothing: say so, loudly.
        failing = sorted({f"{r['contender']} (c={r['connections']})" for r in read if r["errors"]})
        target(
            "read: every contender answered without errors",
            not failing,
            ", ".join(failing) or "none failed",
        )
    for contender, store in (("ours-sqlite", "SQLite"), ("ours-pg", "PostgreSQL")):
        if not all((contender, c) in rows for c in levels):
            continue
        ratios = [(c, rows[(contender, c)].get("ours_per_fastest_ceiling")) for c in levels]
        ratios = [(c, v) for c, v in ratios if v is not None]
        if ratios:
            target(
                f"read on {store} >= 75% of its fastest ceiling",
                all(v >= 0.75 for _, v in ratios),
                ", ".join(f"{c} conns {v:.1%}" for c, v in ratios),
            )
    prism = [
        (c, rows[("ours-sqlite", c)].get("ours_per_prism"))
        for c in levels
        if ("ours-sqlite", c) in rows
    ]
    prism = [(c, v) for c, v in prism if v is not None]
    if prism:
        target(
            "read on SQLite >= 8x Prism",
            all(v >= 8 for _, v in prism),
            ", ".join(f"{c} conns {v:.1f}x" for c, v in prism),
        )
    if ("ours-sqlite", 64) in rows:
        p99 = rows[("ours-sqlite", 64)]["p99_ms"]
        target("read on SQLite p99 < 10 ms at 64 connections", p99 < 10, f"{p99:.2f} ms")
    for entry in results.get("charges", {}).get("summary", []):
        target(
            f"charges on {entry['store']} >= 50% of the raw loop",
            entry["ratio"] >= 0.5,
            f"{entry['per_second']:.0f}/s vs {entry['raw_per_second']:.0f}/s"
            f" = {entry['ratio']:.1%}",
        )
        target(
            f"charges on {entry['store']}: no errors but refusals, reconcile clean",
            entry["errors"] == 0 and entry["reconcile_problems"] == 0,
            f"{entry['errors']} errors, {entry['refusals']} refusals,"
            f" {entry['reconcile_problems']} reconcile differences",
        )
    for entry in results.get("holds", {}).get("summary", []):
        target(
            f"holds on {entry['store']}: no errors but refusals, reconcile clean",
            entry["errors"] == 0 and entry["reconcile_problems"] == 0,
            f"{entry['holds_per_second']:.0f} holds/s, {entry['charges_per_second']:.0f}"
            f" charges/s; {entry['errors']} errors, {entry['reconcile_problems']} reconcile"
            " differences",
        )
    for entry in results.get("webhooks", {}).get("summary", []):
        target(
            f"charges on {entry['store']} with one webhook endpoint >= {WEBHOOK_PER_NONE:.0%}"
            " of none",
            entry["ratio"] >= WEBHOOK_PER_NONE and entry["errors"] == 0,
            f"{entry['one_per_second']:.0f}/s vs {entry['none_per_second']:.0f}/s"
            f" = {entry['ratio']:.1%}, {entry['webhooks_received']} webhooks sent,"
            f" {entry['errors']} errors",
        )
    flat = results.get("flat")
    if flat:
        ratio = flat["large_per_small"]
        target(
            "read cost flat in data size (within 10%)",
            abs(ratio - 1) <= 0.10,
            f"{flat['small']['users']:,} users {flat['small']['per_second']:.0f} req/s,"
            f" {flat['large']['users']:,} users {flat['large']['per_second']:.0f} req/s"
            f" ({ratio - 1:+.1%})",
        )
    for entry in results.get("history", {}).get("summary", []):
        if entry["contender"] == "ours-sqlite" and entry["connections"] == 16:
            target(
                f"history by {entry['granularity']} on SQLite p99 < {HISTORY_P99_MS:.0f} ms"
                " at 16 connections",
                entry["p99_ms"] < HISTORY_P99_MS and entry["errors"] == 0,
                f"{entry['p99_ms']:.2f} ms, {entry['errors']} errors",
            )
    for entry in results.get("sessions", {}).get("summary", []):
        if entry["credential"] == "session":
            target(
                f"session read >= {SESSION_PER_KEY:.0%} of the key read at"
                f" {entry['connections']} connections",
                entry["session_per_key"] >= SESSION_PER_KEY and entry["errors"] == 0,
                f"{entry['session_per_key']:.1%}, {entry['errors']} errors",
            )
    peaks = [
        m["peak_rss_mb_per_worker"]
        for part in ("read", "flat", "history", "sessions")
        for m in results.get(part, {}).get("measurements", [])
        if m["contender"].startswith("ours")
    ] + [m["peak_rss_mb_per_worker"] for m in results.get("charges", {}).get("measurements", [])]
    peak = max((max(p, default=0.0) for p in peaks), default=None)
    if peak is not None:
        target("peak RSS < 80 MB per worker (ours)", peak < 80, f"{peak:.1f} MB at most")
    return found


def _noise(results: dict[str, Any]) -> dict[str, Any] | None:
    """How much CPU other processes took during the measurements (the machine may be shared)."""
    found = [
        m["other_cores"]
        for part in ("read", "flat", "history", "sessions")
        for m in results.get(part, {}).get("measurements", [])
    ]
    for m in results.get("charges", {}).get("measurements", []):
        found += [m["other_cores"], m["raw_other_cores"]]
    found += [m["other_cores"] for m in results.get("webhooks", {}).get("measurements", [])]
    if not found:
        return None
    return {
        "measurements": len(found),
        "median": median(found),
        "max": max(found),
        "busy": sum(1 for value in found if value > 0.25),
    }


def is_prism(contender: str) -> bool:
    return contender.startswith("prism")


def store_of(contender: str) -> str | None:
    """The store a contender reads (``sqlite``, ``pg``), None for Prism and the fixed body."""
    store = contender.rsplit("-", 1)[-1]
    return store if store in ("sqlite", "pg") else None


def _ratio(value: float | None, suffix: str = "") -> str:
    return "" if value is None else f"{value:.2f}{suffix}"


def table(results: dict[str, Any]) -> str:
    args = results["args"]
    lines = []
    data = results["data"]
    read = results.get("read")
    if read:
        lines.append(
            f"GET /api/users/me/usage: {data['users']:,} users, {data['entries']:,} ledger"
            f" entries; {args['workers']} workers; median of {args['rounds']} round(s)"
            f" x {args['seconds']} s; random valid key per request"
        )
        lines.append(
            "ours/ceiling: against the same query under uvicorn; ours/granian: under granian"
            " (the fastest); ours/fixed: a fixed body under granian, no query"
        )
        lines.append(
            f"{'conns':>5}  {'contender':<23}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>9}"
            f"{'errors':>8}{'RSS/worker MB':>15}{'ours/Prism':>12}{'ours/quiet':>12}"
            f"{'ours/ceiling':>14}{'ours/granian':>14}{'ours/fixed':>12}"
        )
        for r in read["summary"]:
            lines.append(
                f"{r['connections']:>5}  {r['contender']:<23}{r['per_second']:>9.0f}"
                f"{r['p50_ms']:>8.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}"
                f"{r['peak_rss_mb_per_worker']:>11.1f} x{r['workers']:<2}"
                f"{_ratio(r.get('ours_per_prism'), 'x'):>12}"
                f"{_ratio(r.get('ours_per_prism_quiet'), 'x'):>12}"
                f"{_ratio(r.get('ours_per_ceiling')):>14}"
                f"{_ratio(r.get('ours_per_granian')):>14}"
                f"{_ratio(r.get('ours_per_fixed')):>12}"
            )
    flat = results.get("flat")
    if flat:
        lines.append("")
        lines.append(
            f"flat data (ours-sqlite, {flat['connections']} connections, {data['entries']:,}"
            " entries each):"
        )
        for name in ("small", "large"):
            f = flat[name]
            lines.append(
                f"  {f['users']:>7,} users {f['per_second']:>9.0f} req/s  p50 {f['p50_ms']:.2f} ms"
                f"  p99 {f['p99_ms']:.2f} ms  errors {f['errors']}"
            )
    charged = results.get("charges")
    if charged:
        lines.append("")
        lines.append(
            f"POST /api/admin/charges ({charged['connections']} connections) vs raw loop of the"
            " same statements:"
        )
        lines.append(
            f"  {'store':<11}{'charges/s':>10}{'p50 ms':>8}{'p99 ms':>9}{'errors':>8}"
            f"{'refusals':>10}{'raw tx/s':>10}{'ratio':>7}  reconcile"
        )
        for r in charged["summary"]:
            lines.append(
                f"  {r['store']:<11}{r['per_second']:>10.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>9.2f}"
                f"{r['errors']:>8}{r['refusals']:>10}{r['raw_per_second']:>10.0f}"
                f"{r['ratio']:>7.2f}  "
                + ("clean" if not r["reconcile_problems"] else f"{r['reconcile_problems']} diffs")
            )
    held = results.get("holds")
    if held:
        lines.append("")
        lines.append(
            f"holds (POST /api/admin/holds, then its settle) next to charges"
            f" ({held['connections']} connections):"
        )
        lines.append(
            f"  {'store':<11}{'holds/s':>9}{'charges/s':>11}{'ratio':>7}{'p99 ms':>8}"
            f"{'errors':>8}  reconcile"
        )
        for r in held["summary"]:
            lines.append(
                f"  {r['store']:<11}{r['holds_per_second']:>9.0f}{r['charges_per_second']:>11.0f}"
                f"{r['ratio']:>7.2f}{r['holds_p99_ms']:>8.2f}{r['errors']:>8}  "
                + ("clean" if not r["reconcile_problems"] else f"{r['reconcile_problems']} diffs")
            )
    history = results.get("history")
    if history:
        lines.append("")
        lines.append(
            f"GET /api/users/me/usage/history (the current period) of user {history['user_id']}"
            f" with {history['charges']:,} charges in it; median of {args['rounds']} round(s)"
        )
        lines.append(
            f"{'conns':>5}  {'contender':<15}{'by':<6}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>9}"
            f"{'errors':>8}{'RSS/worker MB':>15}"
        )
        for r in history["summary"]:
            lines.append(
                f"{r['connections']:>5}  {r['contender']:<15}{r['granularity']:<6}"
                f"{r['per_second']:>9.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}"
                f"{r['peak_rss_mb_per_worker']:>11.1f} x{r['workers']:<2}"
            )
    read_sessions = results.get("sessions")
    if read_sessions:
        lines.append("")
        lines.append(
            f"GET /api/users/me/usage on SQLite with a connect-redis session"
            f" ({read_sessions['sessions']:,} of them) vs an API key; median of"
            f" {args['rounds']} round(s)"
        )
        lines.append(
            f"{'conns':>5}  {'credential':<12}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>9}"
            f"{'errors':>8}{'session/key':>13}"
        )
        for r in read_sessions["summary"]:
            lines.append(
                f"{r['connections']:>5}  {r['credential']:<12}{r['per_second']:>9.0f}"
                f"{r['p50_ms']:>8.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}"
                f"{_ratio(r['session_per_key'] if r['credential'] == 'session' else None):>13}"
            )
    noise = results.get("other_cores")
    if noise:
        lines.append("")
        lines.append(
            f"other processes during the {noise['measurements']} measurements: median"
            f" {noise['median']:.2f}, max {noise['max']:.2f} cores;"
            f" {noise['busy']} measurement(s) above 0.25 cores"
        )
    lines.append("")
    lines.append("targets:")
    for t in results["targets"]:
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['detail']}")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="10,000 users, 100,000 entries, 1 round of 3 s"
    )
    parser.add_argument("--users", type=int, help="default 100000 (quick: 10000)")
    parser.add_argument("--entries", type=int, help="default 1000000 (quick: 100000)")
    parser.add_argument("--flat-users", type=int, default=1000)
    parser.add_argument("--seconds", type=float, help="per measurement; default 8 (quick: 3)")
    parser.add_argument("--warmup", type=float, help="before each; default 2 (quick: 1)")
    parser.add_argument("--rounds", type=int, help="default 3 (quick: 1)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--connections", default="16,64", help="read levels (default 16,64)")
    parser.add_argument("--charge-connections", type=int, default=16)
    parser.add_argument("--history-connections", type=int, default=16)
    parser.add_argument(
        "--sessions", type=int, help="connect-redis sessions (default 10000; quick: 1000)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"default {','.join(PARTS)}")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--max-minutes", type=float, default=60, help="give up after (default 60)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="before each measurement, wait at most this long (s) for other processes to use"
        " < 0.25 cores (the machine may be shared); default 30",
    )
    parser.add_argument(
        "--quiet-budget",
        type=float,
        help="seconds of such waiting in all; default 300 (quick: 30)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's work directory")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "users": 10_000 if quick else 100_000,
        "entries": 100_000 if quick else 1_000_000,
        "seconds": 3.0 if quick else 8.0,
        "warmup": 1.0 if quick else 2.0,
        "rounds": 1 if quick else 3,
        "quiet_budget": 30.0 if quick else 300.0,
        "sessions": 1_000 if quick else 10_000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.connections = [int(c) for c in args.connections.split(",")]
    args.parts = [p for p in args.parts.split(",") if p]
    args.contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown or not set(args.parts) <= set(PARTS):
        parser.error(f"unknown contenders or parts: {sorted(unknown)} {args.parts}")
    return args


def _versions() -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "granian": granian.__version__,
        "sqlite": sqlite3.sqlite_version,
        "cores": str(os.cpu_count()),
    }
    try:
        found["wrk"] = subprocess.run(
            ["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split(" [")[0]
        if PRISM.exists():
            found["prism"] = subprocess.run(
                [str(PRISM), "--version"], capture_output=True, text=True, timeout=30, check=False
            ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return found


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    if shutil.which("wrk") is None:
        log("wrk is missing: run scripts/bench, which installs it")
        return 2
    uses_prism = "read" in args.parts and any(is_prism(c) for c in args.contenders)
    if uses_prism and not PRISM.exists():
        log(f"Prism is missing at {PRISM.relative_to(ROOT)}: run scripts/bench, which installs it")
        return 2
    stamp = time.strftime("%Y%m%dT%H%M%S")
    workdir = seed.CACHE / f"run-{stamp}-{os.getpid()}"
    workdir.mkdir(parents=True)
    pg_name = f"flamel_bench_{stamp.lower()}_{os.getpid()}"
    pg_created = False
    needs_pg = (
        "charges" in args.parts
        or "holds" in args.parts
        or "webhooks" in args.parts
        or "history" in args.parts
        or ("read" in args.parts and any(store_of(c) == "pg" for c in args.contenders))
    )
    started = time.monotonic()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": dict(vars(args)),
        "machine": _versions(),
        "data": {"users": args.users, "entries": args.entries},
    }
    ok = False
    try:
        run = Run(args, workdir, pg_name)
        main_seed = seed.sqlite_seed(args.users, args.entries, log=log)
        log(f"data: {main_seed.path.relative_to(ROOT)} ({'cached' if main_seed.cached else 'new'})")
        results["data"]["counts"] = main_seed.counts
        results["data"]["seed_seconds"] = main_seed.seconds
        results["data"]["seed_cached"] = main_seed.cached
        sqlite_path = workdir / "main.sqlite3"
        shutil.copyfile(main_seed.path, sqlite_path)
        stores = {"sqlite": Store("sqlite", f"sqlite:///{sqlite_path}", sqlite_path)}
        if needs_pg:
            asyncio.run(admin(f'CREATE DATABASE "{pg_name}"'))
            pg_created = True
            url = database_url(pg_name)
            log(f"seeding PostgreSQL database {pg_name} from the SQLite seed ...")
            copied = asyncio.run(seed.postgres_seed(sqlite_path, url))
            conn_version = asyncio.run(execute(url, "SHOW server_version"))[0]
            results["machine"]["postgresql"] = conn_version
            results["data"]["postgres_seed_seconds"] = copied["seconds"]
            log(f"  copied in {copied['seconds']} s")
            stores["postgresql"] = Store("postgresql", url)
        read_stores = {"sqlite": stores["sqlite"]}
        if "postgresql" in stores:
            read_stores["pg"] = stores["postgresql"]
        if "read" in args.parts:
            contenders = [
                c
                for c in CONTENDERS
                if c in args.contenders and store_of(c) in (None, *read_stores)
            ]
            results["read"] = part_read(run, read_stores, main_seed.keys, contenders)
        if "flat" in args.parts:
            small = seed.sqlite_seed(args.flat_users, args.entries, log=log)
            small_path = workdir / "flat.sqlite3"
            shutil.copyfile(small.path, small_path)
            small_store = Store("sqlite", f"sqlite:///{small_path}", small_path)
            results["flat"] = part_flat(run, small, small_store, main_seed, stores["sqlite"])
        if "charges" in args.parts:
            results["charges"] = part_charges(run, stores, args.users)
        if "holds" in args.parts:
            results["holds"] = part_holds(run, stores, args.users)
        if "webhooks" in args.parts:
            results["webhooks"] = part_webhooks(run, stores, args.users)
        if "history" in args.parts:
            results["history"] = part_history(run, read_stores)
        if "sessions" in args.parts:
            results["sessions"] = part_sessions(run, stores["sqlite"], main_seed.keys, args.users)
        ok = True
    except KeyboardInterrupt:
        log("interrupted")
    except (RuntimeError, OSError, subprocess.SubprocessError, asyncpg.PostgresError) as error:
        log(f"the run failed: {type(error).__name__}: {error}")
    finally:
        if pg_created:
            try:
                asyncio.run(admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            except (OSError, asyncpg.PostgresError) as error:
                log(f"could not drop database {pg_name}: {error}")
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work directory (logs, databases) kept: {workdir.relative_to(ROOT)}")
    results["seconds"] = round(time.monotonic() - started, 1)
    results["complete"] = ok
    results["targets"] = targets(results) if ok else []
    results["other_cores"] = _noise(results)
    if results["other_cores"] is not None and ok:
        results["other_cores"]["quiet_waited_seconds"] = round(run.quiet_waited, 1)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    target_file = out / f"bench-{stamp}.json"
    target_file.write_text(json.dumps(results, indent=2) + "\n")
    if ok:
        log("")
        log(table(results))
    log(f"\nwritten: {target_file.relative_to(ROOT)} ({results['seconds']:.0f} s in all)")
    if not ok:
        return 2
    return 0 if all(t["pass"] for t in results["targets"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())

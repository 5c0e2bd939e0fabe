"""Reads/s and charges/s through nginx with one, two and three nodes on one PostgreSQL.

The nodes and nginx are deploy/'s (``tests/deploy.py`` renders them, as the three-node
test does): each node ``flamel-usage serve --workers 1`` from the systemd unit, nginx
with the site file, its upstream cut to the nodes measured. wrk sends through nginx
``GET /api/users/me/usage`` with a random seeded key (``usage.lua``) and then
``POST /api/admin/charges`` with fresh idempotency keys (``charges.lua``), each after a
warm-up; the table gives req/s, p50/p99, errors and the cores other processes used
meanwhile (the machine may be shared: read the figures with that column).

    .venv/bin/python bench/nodes.py [--seconds 8] [--rounds 1] [--nodes 1,2,3]

Needs nginx (Debian's), wrk and PostgreSQL at FLAMEL_TEST_POSTGRES_URL (allowed to
create databases); every process listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import seed
from benchlib import (
    HERE,
    ROOT,
    CpuWindow,
    Server,
    admin,
    database_url,
    free_port,
    median,
    wait_quiet,
    wrk,
)

sys.path.insert(0, str(ROOT))  # tests/deploy.py renders deploy/'s files

from tests.deploy import nginx, nginx_binary, node_command

TOKEN = secrets.token_urlsafe(24)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure")
    parser.add_argument("--seconds", type=float, default=8.0, help="each wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--read-connections", type=int, default=32)
    parser.add_argument("--charge-connections", type=int, default=16)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--entries", type=int, default=100_000)
    return parser.parse_args()


def _node_env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAMEL_")}
    return env | {
        "FLAMEL_DATABASE_URL": url,
        "FLAMEL_DATA_DIR": str(data_dir),
        "FLAMEL_ADMIN_TOKEN": TOKEN,
        "FLAMEL_SESSION_SECRET": "bench-nodes-" + TOKEN,
        "FLAMEL_TIMEZONE": "UTC",
        "FLAMEL_CLIENT_ADDRESS_HEADER": "X-Forwarded-For",
        "FLAMEL_SHUTDOWN_DRAIN_SECONDS": "0",
    }


def _measure(
    args: argparse.Namespace, count: int, url: str, keys: Path, workdir: Path, round_no: int
) -> dict[str, dict[str, float]]:
    binary = nginx_binary()
    if binary is None:
        raise SystemExit("nginx is needed: apt-get install nginx")
    results: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        nodes = []
        for place in range(count):
            port = free_port()
            log = workdir / f"node-{count}-{place}-{round_no}.log"
            server = Server(f"node{place}", node_command(port), _node_env(url, workdir), port, log)
            stack.callback(server.stop)
            nodes.append(server.start("/readyz"))
        directory = Path(tempfile.mkdtemp(prefix=f"nginx-{count}-", dir=workdir))
        base_url = stack.enter_context(nginx(binary, directory, [n.port for n in nodes]))
        roots = [n.process.pid for n in nodes if n.process is not None]
        runs = {
            "reads": (HERE / "usage.lua", args.read_connections, {200}, {"BENCH_KEYS": str(keys)}),
            "charges": (
                HERE / "charges.lua",
                args.charge_connections,
                {201, 402, 429},
                {"BENCH_ADMIN_TOKEN": TOKEN, "BENCH_USERS": str(args.users)},
            ),
        }
        for name, (script, connections, ok, env) in runs.items():
            env = env | {"BENCH_SEED": str(round_no + 1)}
            tag = f"{count}-{round_no}-{os.getpid()}-{time.monotonic_ns()}"
            wait_quiet(20, log=print)
            if args.warmup > 0:
                wrk(
                    base_url,
                    script,
                    seconds=args.warmup,
                    connections=connections,
                    env=env | {"BENCH_RUN": f"warm-{tag}"},
                )
            window = CpuWindow(roots, None)
            found = wrk(
                base_url,
                script,
                seconds=args.seconds,
                connections=connections,
                env=env | {"BENCH_RUN": f"run-{tag}"},
            )
            others = window.other_cores()
            results[name] = {
                "per_second": found.per_second,
                "p50_ms": found.p50_ms,
                "p99_ms": found.p99_ms,
                "errors": found.errors(ok),
                "others": others,
            }
            print(
                f"  {count} node(s) {name:<8} {found.per_second:8.0f}/s"
                f"  p50 {found.p50_ms:6.2f} ms  p99 {found.p99_ms:7.2f} ms"
                f"  errors {found.errors(ok)}  others {others:.2f} cores",
                flush=True,
            )
    return results


def main() -> int:
    args = _arguments()
    counts = [int(n) for n in args.nodes.split(",")]
    seed.CACHE.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="nodes-", dir=seed.CACHE))
    data = seed.sqlite_seed(args.users, args.entries, log=print)
    name = f"flamel_bench_nodes_{os.getpid()}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        url = database_url(name)
        print(f"seeding PostgreSQL {name}: {args.users:,} users, {args.entries:,} entries ...")
        asyncio.run(seed.postgres_seed(data.path, url))
        rows: dict[int, list[dict[str, dict[str, float]]]] = {n: [] for n in counts}
        for round_no in range(args.rounds):
            for count in counts:
                print(f"round {round_no + 1}/{args.rounds}: {count} node(s)", flush=True)
                rows[count].append(_measure(args, count, url, data.keys, workdir, round_no))
        problems = asyncio.run(seed.reconcile(url))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(
        f"\nmedians over {args.rounds} round(s), {args.seconds:.0f} s each, through nginx;"
        f" {os.cpu_count()} cores shared by nginx, wrk, the nodes and PostgreSQL"
    )
    print("| nodes | reads/s | read p50/p99 ms | charges/s | charge p50/p99 ms | errors |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for count in counts:
        read = {k: median(r["reads"][k] for r in rows[count]) for k in rows[count][0]["reads"]}
        charge = {
            k: median(r["charges"][k] for r in rows[count]) for k in rows[count][0]["charges"]
        }
        print(
            f"| {count} | {read['per_second']:.0f} | {read['p50_ms']:.1f} / {read['p99_ms']:.1f}"
            f" | {charge['per_second']:.0f} | {charge['p50_ms']:.1f} / {charge['p99_ms']:.1f}"
            f" | {read['errors'] + charge['errors']:.0f} |"
        )
    print(f"reconcile after the charges: {'clean' if not problems else problems[:5]}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

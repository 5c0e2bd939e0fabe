"""The CPU one usage read costs inside the worker, without a server or a network.

    .venv/bin/python bench/profile.py [--reads 20000] [--rounds 5] [--app ceiling] [--flame]
                                      [--history day|hour] [--timezone UTC]

The app (``flamel_usage.http.app.create_app``, started through its lifespan) on a copy of
the quick benchmark seed (SQLite, 10,000 users), called in a tight loop as the server
calls it: one ASGI ``http`` scope for ``GET /api/users/me/usage`` with a random valid API
key, its ``receive`` and ``send``. Prints the CPU time (``time.process_time``) per read,
the median and the least of --rounds, which a busy machine disturbs far less than
requests per second. ``--app ceiling``: the same loop on ``bench/ceiling.py``'s app.

``--history day`` (or ``hour``): ``GET /api/users/me/usage/history`` by that granularity
instead, the current period of the seed's user with 10,000 charges in it
(``seed.HISTORY_USER``), with its key; ``--timezone`` the billing zone (default UTC, as
the seed's; in another the lifespan first rebuilds the copy's day rollup in that zone,
outside the measured loop).

``--flame`` runs the same loop under py-spy (from PyPI, a test dependency) and writes the
flame graph to ``bench/results/usage-read-<timestamp>.svg``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The counters as served (``http.metrics.shared_by_workers``): in files shared by the
# workers, which prometheus_client decides when it is imported.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flamel-metrics-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)

import seed

from flamel_usage.http.app import create_app

HERE = Path(__file__).resolve().parent
USERS = 10_000
ENTRIES = 100_000
USAGE = "/api/users/me/usage"
HISTORY = "/api/users/me/usage/history"


async def _started(app: Any) -> tuple[asyncio.Queue[dict[str, str]], asyncio.Task[None]]:
    """The app's lifespan started as a server starts it; put ``lifespan.shutdown`` on the
    queue and await the task to stop it."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        assert message["type"].endswith(".complete"), message
        started.set()

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    await started.wait()
    return inbox, task


def _scope(key: bytes, path: str, query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:4010"),
            (b"x-api-key", key),
            (b"user-agent", b"wrk"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4010),
    }


async def _reads(
    app: Any, count: int, rounds: int, keys: list[bytes], history: str | None
) -> list[float]:
    lifespan, stopped = await _started(app)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    picks = random.Random(1)
    per_read = []
    for _ in range(rounds):
        if history is None:
            scopes = [_scope(picks.choice(keys), USAGE, b"") for _ in range(count)]
        else:
            query = f"granularity={history}".encode()
            scopes = [_scope(keys[0], HISTORY, query) for _ in range(count)]
        started = time.process_time()
        for scope in scopes:
            await app(scope, receive, send)
        per_read.append((time.process_time() - started) / count)
    await lifespan.put({"type": "lifespan.shutdown"})
    await stopped
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    return per_read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20_000, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--app", choices=["ours", "ceiling"], default="ours")
    parser.add_argument("--flame", action="store_true", help="write a py-spy flame graph")
    parser.add_argument("--history", choices=["day", "hour"], help="the history read instead")
    parser.add_argument("--timezone", default="UTC", help="the billing zone (default UTC)")
    args = parser.parse_args()
    if args.history and args.app == "ceiling":
        parser.error("the ceiling has no history: --history reads ours")
    data = seed.sqlite_seed(USERS, ENTRIES, log=lambda message: print(message, file=sys.stderr))
    if args.flame:
        out = HERE / "results" / f"{args.app}-read-{time.strftime('%Y%m%dT%H%M%S')}.svg"
        out.parent.mkdir(exist_ok=True)
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        argv = [sys.executable, __file__, "--reads", str(args.reads), "--rounds", "1"]
        argv += ["--app", args.app, "--timezone", args.timezone]
        argv += ["--history", args.history] if args.history else []
        subprocess.run([spy, "record", "-r", "500", "-o", str(out), "--", *argv], check=True)
        print(f"flame graph: {out.relative_to(HERE.parent)}")
        return 0
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / "profile.sqlite3"
        shutil.copyfile(data.path, copy)
        os.environ.update(
            {
                "FLAMEL_DATABASE_URL": f"sqlite:///{copy}",
                "FLAMEL_DATA_DIR": work,
                "FLAMEL_TIMEZONE": args.timezone,
                "FLAMEL_SESSION_SECRET": "profile-" + "x" * 32,
            }
        )
        keys = [line.encode() for line in data.keys.read_text().split()]
        if args.history:
            keys = [seed.api_key(seed.HISTORY_USER).encode()]
        if args.app == "ours":
            app = create_app()
        else:
            import ceiling

            app = ceiling.create_app()
        per_read = asyncio.run(_reads(app, args.reads, args.rounds, keys, args.history))
    rounds = ", ".join(f"{seconds * 1e6:.1f}" for seconds in per_read)
    read = f"history by {args.history} ({args.timezone})" if args.history else "usage read"
    print(
        f"{args.app} {read} in-process: {statistics.median(per_read) * 1e6:.1f} µs CPU"
        f" per read, least {min(per_read) * 1e6:.1f} (median of {args.rounds} x"
        f" {args.reads:,}; rounds: {rounds})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

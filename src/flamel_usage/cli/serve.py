"""``flamel-usage serve``: the service under granian (or uvicorn), its workers and signals.

Each server is one function below, started with the same app factory, the same worker
count, our own logging (the app writes the access log, with the route pattern and
request id), no proxy-header rewriting (who the client is, for the throttle, is the
app's decision alone: the peer, or FLAMEL_CLIENT_ADDRESS_HEADER when configured) and
the request head bounded while it arrives (size, header lines, time).

granian is the default: under ``scripts/bench`` the same bare ASGI callable answers one
and a half to two and a half times the requests under it that it answers under uvicorn
(README, Performance). uvicorn stays selectable because its
limits are ours (``http/protocol.py``): any ``FLAMEL_MAX_HEADERS``, and a 431 in the API's
envelope however large the head; granian's parser caps header lines at 100 and answers
a head larger than its buffer with a bare 431.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from flamel_usage.cli.commands import with_database
from flamel_usage.cli.demo import DEMO_EMAIL, DEMO_PASSWORD, ensure_demo
from flamel_usage.core.config import Settings
from flamel_usage.http import metrics

if TYPE_CHECKING:
    from granian.http import HTTP1Settings

APP_FACTORY = "flamel_usage.http.app:create_app"
#: granian's parser reads at most this many header lines and answers more with a bare 431.
GRANIAN_MAX_HEADERS = 100
#: granian's bounds for its HTTP/1 buffer, in bytes, and its header read timeout, in ms.
GRANIAN_MIN_BUFFER = 8192
GRANIAN_MAX_HEADER_TIMEOUT_MS = 60_000


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the service under ``args.server`` until it is stopped; 0 on a clean stop."""
    if args.database_url:
        os.environ["FLAMEL_DATABASE_URL"] = args.database_url
    os.environ["FLAMEL_DATA_DIR"] = str(settings.data_dir)
    # uvicorn re-raises the SIGTERM it drained on; exiting 0 then tells a supervisor
    # that the stop was clean. granian sets its own handlers, which return normally.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    settings.resolved_session_secret()
    if args.demo:
        key = asyncio.run(with_database(settings, lambda db: ensure_demo(db, settings)))
        print(
            f"Demo account ready. Try:\n"
            f"  curl -s -H 'X-Api-Key: {key}' http://{args.host}:{args.port}/api/users/me/usage\n"
            f"  flamel-usage usage --api-key {key} --base-url http://{args.host}:{args.port}\n"
            f"or sign in at http://{args.host}:{args.port}/ as {DEMO_EMAIL} / {DEMO_PASSWORD}\n",
            flush=True,
        )
    with metrics.shared_by_workers():  # /metrics sums the workers' counts
        SERVERS[args.server](args, settings)
    return 0


def run_granian(args: argparse.Namespace, settings: Settings) -> None:
    """granian's ASGI interface over HTTP/1.1 (the API serves no HTTP/2), its workers
    spawned processes that each build the app from the environment."""
    # Imported here, so that every other command starts without the server.
    from granian.constants import HTTPModes, Interfaces
    from granian.server import Server

    from flamel_usage.core.logs import logging_config

    # Workers start as new interpreters, as uvicorn's do, not forks of this process:
    # this one imported prometheus_client before PROMETHEUS_MULTIPROC_DIR was set, and a
    # fork would keep its per-process counters instead of the shared ones.
    multiprocessing.set_start_method("spawn", force=True)
    if settings.max_headers > GRANIAN_MAX_HEADERS:
        raise SystemExit(
            f"FLAMEL_MAX_HEADERS={settings.max_headers}: granian reads at most"
            f" {GRANIAN_MAX_HEADERS} header lines; use --server uvicorn for more"
        )
    Server(
        APP_FACTORY,
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=granian_http1(settings),
        log_dictconfig=logging_config(settings.log_format, access_log=settings.access_log),
        log_access=False,  # the app writes its own
        # A worker that dies is replaced, as uvicorn does; /metrics keeps its counts.
        respawn_failed_workers=True,
        respawn_interval=1.0,
    ).serve()


def granian_http1(settings: Settings) -> HTTP1Settings:
    """The request head's bounds in granian: its buffer holds twice the largest head we
    take, so a head up to that size reaches the app, which answers 431 in the envelope
    (``http/app.py``), and a larger one is stopped by granian while it arrives; its
    header read timeout runs from when the connection opens or the last response went
    out, as ours does."""
    from granian.http import HTTP1Settings

    timeout_ms = round(settings.header_timeout_seconds * 1000)
    return HTTP1Settings(
        header_read_timeout=min(max(timeout_ms, 1), GRANIAN_MAX_HEADER_TIMEOUT_MS),
        keep_alive=True,
        max_buffer_size=max(2 * settings.max_header_bytes, GRANIAN_MIN_BUFFER),
    )


def run_uvicorn(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from flamel_usage.core.logs import logging_config
    from flamel_usage.http.protocol import LimitedHttpToolsProtocol

    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # Bounds each request's head while it arrives; uvicorn's own would not.
        http=LimitedHttpToolsProtocol,
        # Applied by uvicorn in this process and in each worker it starts.
        log_config=logging_config(settings.log_format, access_log=settings.access_log),
        log_level="info",
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


SERVERS: dict[str, Callable[[argparse.Namespace, Settings], None]] = {
    "granian": run_granian,
    "uvicorn": run_uvicorn,
}


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)

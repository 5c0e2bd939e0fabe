"""``flamel-usage serve``: the service under uvicorn, its workers and its signals."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from flamel_usage.cli.commands import with_database
from flamel_usage.cli.demo import DEMO_EMAIL, DEMO_PASSWORD, ensure_demo
from flamel_usage.core.config import Settings
from flamel_usage.http import metrics


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the service under uvicorn until it is stopped; 0 on a clean stop."""
    if args.database_url:
        os.environ["FLAMEL_DATABASE_URL"] = args.database_url
    os.environ["FLAMEL_DATA_DIR"] = str(settings.data_dir)
    # uvicorn re-raises the SIGTERM it drained on; exiting 0 then tells a supervisor
    # that the stop was clean.
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
        _run_uvicorn(args, settings)
    return 0


def _run_uvicorn(args: argparse.Namespace, settings: Settings) -> None:
    # Imported here, so that every other command starts without uvicorn.
    import uvicorn

    from flamel_usage.core.logs import logging_config
    from flamel_usage.http.protocol import LimitedHttpToolsProtocol

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


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)

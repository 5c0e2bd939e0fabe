"""``flamel-usage serve``: the service under granian (or uvicorn), and a graceful stop.

``serve`` itself does not answer HTTP: it prepares what every worker shares (the metrics
directory, the drain flag), starts the HTTP server as a child process (``run_server``
below: one function per server, each started with the same app factory, worker count,
our own logging, no proxy-header rewriting and the request head bounded while it
arrives), and stands between it and the supervisor's signals. On SIGTERM or SIGINT it
raises the drain flag (``http/drain.py``: ``/readyz`` answers 503 and answers close
their connections), keeps the server serving for ``FLAMEL_SHUTDOWN_DRAIN_SECONDS`` so
that the load balancer moves away, then sends the server SIGTERM: it stops listening,
finishes the requests in flight, runs the app's shutdown (keys' last use is recorded)
and exits; ``serve`` exits 0. Doing the drain here rather than inside the server keeps
it the same whichever server runs the workers and however it handles its own signals.

granian is the default: under ``scripts/bench`` the same bare ASGI callable answers one
and a half to two and a half times the requests under it that it answers under uvicorn
(README, Performance). uvicorn stays selectable because its limits are ours
(``http/protocol.py``): any ``FLAMEL_MAX_HEADERS``, and a 431 in the API's envelope
however large the head; granian's parser caps header lines at 100 and answers a head
larger than its buffer with a bare 431.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from flamel_usage.cli.commands import with_database
from flamel_usage.cli.demo import DEMO_EMAIL, DEMO_PASSWORD, ensure_demo
from flamel_usage.core.config import Settings
from flamel_usage.http import metrics
from flamel_usage.http.drain import DRAIN_FLAG_VARIABLE

if TYPE_CHECKING:
    from granian.http import HTTP1Settings

APP_FACTORY = "flamel_usage.http.app:create_app"
#: granian's parser reads at most this many header lines and answers more with a bare 431.
GRANIAN_MAX_HEADERS = 100
#: granian's bounds for its HTTP/1 buffer, in bytes, and its header read timeout, in ms.
GRANIAN_MIN_BUFFER = 8192
GRANIAN_MAX_HEADER_TIMEOUT_MS = 60_000
#: The server's process: not ``-m`` this module, which ``flamel_usage.cli`` imports first.
_SERVER = "from flamel_usage.cli.serve import run_server; run_server()"
#: The server's exit code when the app could not start (uvicorn's).
_STARTUP_FAILED = 3
#: The signals that start a graceful stop.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _StopRequested(Exception):
    pass


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the service under ``args.server`` until it is stopped; 0 on a clean stop."""
    if args.database_url:
        os.environ["FLAMEL_DATABASE_URL"] = args.database_url
    os.environ["FLAMEL_DATA_DIR"] = str(settings.data_dir)
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
    # /metrics sums the workers' counts; the flag tells every worker the node drains.
    with metrics.shared_by_workers(), _drain_flag() as flag:
        command = [sys.executable, "-c", _SERVER, args.server, args.host, str(args.port)]
        server = subprocess.Popen([*command, str(args.workers)])
        return _supervise(server, flag, settings.shutdown_drain_seconds)


@contextmanager
def _drain_flag() -> Iterator[Path]:
    """The flag's path (not created yet), named in ``FLAMEL_DRAIN_FLAG`` for the server."""
    with tempfile.TemporaryDirectory(prefix="flamel-run-") as directory:
        flag = Path(directory) / "draining"
        os.environ[DRAIN_FLAG_VARIABLE] = str(flag)
        try:
            yield flag
        finally:
            del os.environ[DRAIN_FLAG_VARIABLE]


def _supervise(server: subprocess.Popen[bytes], flag: Path, drain_seconds: float) -> int:
    """Wait for the server; on a stop signal, drain, stop it, and exit 0 if it stopped cleanly."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _request_stop)
    try:
        # The server ending by itself (it could not start, say) ends serve with its code.
        return _exit_code(server.wait())
    except _StopRequested:
        pass
    for signum in _STOP_SIGNALS:  # one stop is enough; a terminal's Ctrl-C reaches both
        signal.signal(signum, signal.SIG_IGN)
    flag.touch()
    try:
        server.wait(timeout=drain_seconds)  # a Ctrl-C in a terminal stopped it already
    except subprocess.TimeoutExpired:
        server.send_signal(signal.SIGTERM)
        server.wait()
    return 0 if server.returncode in (0, -signal.SIGTERM, -signal.SIGINT) else 1


def _request_stop(signum: int, frame: object) -> None:
    raise _StopRequested


def _exit_code(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


# --- The HTTP server: the child process ``serve`` runs ----------------------------------


def run_server() -> None:
    """``SERVER HOST PORT WORKERS`` from the command line, settings from the environment."""
    name, host, port, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    where = argparse.Namespace(host=host, port=port, workers=workers)
    SERVERS[name](where, Settings.from_environ())


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
    """uvicorn with our head limits (``http/protocol.py``) and its own worker supervisor."""
    # Imported here, so that every other command starts without uvicorn.
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from flamel_usage.core.logs import logging_config
    from flamel_usage.http.protocol import LimitedHttpToolsProtocol

    class Workers(Multiprocess):
        """uvicorn's workers, but the listening socket is closed as soon as they are told
        to stop: uvicorn's own keeps it open until the last one has finished its requests,
        so that new connections would wait in the backlog and be reset, where a closed
        port makes a proxy try the next node at once."""

        def terminate_all(self) -> None:
            super().terminate_all()
            for sock in self.sockets:
                sock.close()

    # uvicorn re-raises the SIGTERM it stopped on; exiting 0 then tells serve that the
    # stop was clean.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    config = uvicorn.Config(
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
        access_log=False,  # the app writes its own, with the route pattern and request id
        # Who the client is (for the throttle) is the app's decision alone: the peer, or
        # FLAMEL_CLIENT_ADDRESS_HEADER when configured. uvicorn's own proxy-header
        # rewriting would trust X-Forwarded-For from any local peer.
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the SIGINT it stopped on (a terminal's Ctrl-C reaches this process
    # too): the stop was clean all the same.
    with suppress(KeyboardInterrupt):
        if args.workers > 1:
            Workers(config, sockets=[config.bind_socket()]).run()
            return
        server.run()
    if not server.started:
        sys.exit(_STARTUP_FAILED)


SERVERS: dict[str, Callable[[argparse.Namespace, Settings], None]] = {
    "granian": run_granian,
    "uvicorn": run_uvicorn,
}


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)

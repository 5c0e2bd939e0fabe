"""Real ``flamel-usage`` processes for tests: the server on a free port, the CLI, the store.

``running_server(environ)`` is the one-liner: it starts ``flamel-usage serve`` on a free
port of 127.0.0.1 with exactly the ``FLAMEL_*`` settings given (the caller's own
``FLAMEL_*`` variables never leak in), waits until every worker answers, yields the base
URL, and stops the process with SIGTERM (SIGKILL to its whole process group if it does
not stop in time). ``server_process(environ)`` is the same but yields the
``ServerProcess``, for tests that need its output or its exit code.

Everything is bounded: starting, stopping, each CLI call. The server's output goes to a
temporary file (deleted afterwards); it is attached as a note to any exception raised
while starting or inside the ``with`` block, so pytest shows it with the failure.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
CLI_TIMEOUT_S = 30.0
#: What the app logs once per worker when its lifespan has started, under any server.
WORKER_READY = "worker ready"


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("flamel-usage")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "flamel_usage"]


def child_env(environ: dict[str, str]) -> dict[str, str]:
    """This process's environment without any ``FLAMEL_*`` variable, plus ``environ``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLAMEL_")}
    env.update(environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    environ: dict[str, str],
    *args: str,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``flamel-usage ARGS`` with ``environ``; never waits longer than ``CLI_TIMEOUT_S``."""
    return subprocess.run(
        [*cli_command(), *args],
        env=child_env(environ),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        cwd=cwd,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One ``flamel-usage serve`` process (and its workers, in its own process group)."""

    def __init__(
        self,
        environ: dict[str, str],
        *,
        workers: int = 1,
        extra_args: Sequence[str] = (),
        cwd: Path | None = None,
        command: Sequence[str] | None = None,
        port: int | None = None,
    ) -> None:
        """``command``, when given, is the whole command line instead of ``flamel-usage
        serve`` with these options; it must listen on 127.0.0.1:``port``."""
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.returncode: int | None = None
        fd, name = tempfile.mkstemp(prefix="flamel-serve-", suffix=".log")
        self.log_path = Path(name)
        command = (
            list(command)
            if command is not None
            else [
                *cli_command(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                *extra_args,
            ]
        )
        # No drain unless a test asks for one: stopping each server would take seconds.
        environ = {"FLAMEL_SHUTDOWN_DRAIN_SECONDS": "0", **environ}
        try:
            self.process = subprocess.Popen(
                command,
                env=child_env(environ),
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,  # its own process group: workers can be killed with it
            )
        except BaseException:
            self.log_path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until the server answers HTTP and every worker has started, or fail with its output."""
        deadline = time.monotonic() + timeout
        answered = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"flamel-usage serve exited with {self.process.returncode} before answering"
                )
            if not answered:
                with suppress(httpx.TransportError):
                    httpx.get(f"{self.base_url}/api-json", timeout=2.0)
                    answered = True
            if answered and self.output().count(WORKER_READY) >= self.workers:
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"flamel-usage serve did not get ready within {timeout} s (answered: {answered})"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait at most ``timeout``; SIGKILL the process group if needed.

        Returns the exit code (negative for a signal, as ``Popen`` reports it).
        """
        if self.returncode is not None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.process.wait(timeout=timeout)
        # Workers left behind by a parent that exited would keep the port: end them too.
        self._kill_group()
        self.returncode = self.process.returncode
        return self.returncode

    def _kill_group(self) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def kill(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """A crash: SIGKILL the whole process group (the server and every worker) at once.

        Nothing gets to clean up. Waits at most ``timeout`` for the server process to be
        reaped and returns its exit code (``-SIGKILL``).
        """
        self._kill_group()
        self.process.wait(timeout=timeout)
        self.returncode = self.process.returncode
        return self.returncode

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.log_path.unlink(missing_ok=True)


@contextmanager
def server_process(
    environ: dict[str, str],
    *,
    workers: int = 1,
    extra_args: Sequence[str] = (),
    cwd: Path | None = None,
) -> Iterator[ServerProcess]:
    server = ServerProcess(environ, workers=workers, extra_args=extra_args, cwd=cwd)
    try:
        server.wait_until_ready()
        yield server
    except BaseException as error:
        server.stop()
        error.add_note(f"--- flamel-usage serve output ---\n{server.output()}")
        raise
    finally:
        server.close()


@contextmanager
def running_server(
    environ: dict[str, str], *, workers: int = 1, extra_args: Sequence[str] = ()
) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a ``flamel-usage serve`` running with ``environ``."""
    with server_process(environ, workers=workers, extra_args=extra_args) as server:
        yield server.base_url


def http_client(base_url: str, **headers: str) -> httpx.Client:
    """A client that opens a new connection per request, so requests spread over workers."""
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=10.0,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def single_line(text: str) -> str:
    """``text`` when it is exactly one non-empty line (with its newline), else fail."""
    assert re.fullmatch(r"[^\n]+\n?", text), f"expected exactly one line, got {text!r}"
    return text.rstrip("\n")

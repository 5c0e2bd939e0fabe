"""What the benchmarks share: servers on 127.0.0.1, wrk runs, peak RSS, PostgreSQL admin."""

from __future__ import annotations

import http.client
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"  # every server and every request of the benchmarks stays on loopback
POSTGRES_URL = os.environ.get(
    "FLAMEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``, for the raw asyncpg loops."""
    head, *rest = sql.split("?")
    return head + "".join(f"${number}{part}" for number, part in enumerate(rest, start=1))


def median(values: Iterable[float]) -> float:
    found = list(values)
    return float(statistics.median(found)) if found else float("nan")


# --- servers -----------------------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ppid(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set (VmHWM) of a process, in MB (10^6 bytes)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 / 1e6 if match else None


@dataclass
class Server:
    """A server process of ours (own session, so it and its workers stop together)."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, ready_path: str = "/", timeout: float = 60.0) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", ready_path)
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s; see {self.log}")
        time.sleep(1.0)  # the first answer proves one worker: give the others their start-up
        return self

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server's spawned workers (granian's and
        uvicorn's, grandchildren under `flamel-usage serve`'s supervisor), else the server."""
        assert self.process is not None
        pid = self.process.pid
        spawned = [child for child in _descendants(pid) if "spawn_main" in _cmdline(child)]
        return spawned or [pid]

    def peak_rss_per_worker(self) -> list[float]:
        return [rss for pid in self.worker_pids() if (rss := peak_rss_mb(pid)) is not None]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass


# --- other processes' CPU ---------------------------------------------------------------
#
# The machine may be shared (other sessions' test runs): each measurement waits for a quiet
# machine first and reports how many cores processes other than the benchmark's used.

TICKS = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def _process_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = _children(todo.pop())
        found += children
        todo += children
    return found


def _ours(roots: Iterable[int], database: str | None) -> list[int]:
    """The benchmark's processes: ``roots`` and their descendants, this process, and the
    PostgreSQL processes serving ``database`` or no database (the shared helpers)."""
    pids = {os.getpid()}
    for root in roots:
        pids |= {root, *_descendants(root)}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in pids:
            command = _cmdline(int(entry.name))
            if command.startswith("postgres"):
                backend = "(" in command or "[local]" in command
                if not backend or (database is not None and f" {database} " in command):
                    pids.add(int(entry.name))
    return sorted(pids)


class CpuWindow:
    """From its creation: the cores used by processes other than the benchmark's."""

    def __init__(self, roots: Sequence[int], database: str | None = None) -> None:
        self.roots, self.database = roots, database
        self.start = time.monotonic()
        self.busy = _busy_ticks()
        self.ours = {pid: _process_ticks(pid) for pid in _ours(roots, database)}
        self.children = _children_seconds()

    def other_cores(self) -> float:
        """Call while the servers still run (their CPU is read from /proc)."""
        elapsed = time.monotonic() - self.start
        busy = (_busy_ticks() - self.busy) / TICKS
        ours = sum(
            _process_ticks(pid) - self.ours.get(pid, 0) for pid in _ours(self.roots, self.database)
        )
        waited = _children_seconds() - self.children  # wrk and the like, finished by now
        return max(0.0, (busy - ours / TICKS - waited) / elapsed) if elapsed > 0 else 0.0


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(max_wait: float, limit: float = 0.25, log: Any = print) -> float:
    """Wait at most ``max_wait`` s until other processes use < ``limit`` cores (sampled
    while nothing of the benchmark runs); the seconds waited."""
    started = time.monotonic()
    told = False
    while True:
        before = _busy_ticks()
        time.sleep(0.5)
        cores = (_busy_ticks() - before) / TICKS / 0.5
        waited = time.monotonic() - started
        if cores < limit or waited >= max_wait:
            if told:
                state = "quiet" if cores < limit else "still busy"
                log(f"    (after {waited:.0f} s, machine {state}: others use {cores:.2f} cores)")
            return waited
        if not told:
            log(f"    waiting for a quiet machine: other processes use {cores:.2f} cores ...")
            told = True


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class WrkResult:
    per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    statuses: dict[int, int]
    socket_errors: int
    replayed: int = 0  # answers marked Idempotent-Replayed (charges.lua counts them)

    def errors(self, ok: Iterable[int]) -> int:
        """Requests that failed: statuses not in ``ok``, connect/read/write/timeouts, and
        replayed answers (every request sends a new idempotency key)."""
        allowed = set(ok)
        wrong = sum(count for status, count in self.statuses.items() if status not in allowed)
        return wrong + self.socket_errors + self.replayed


def wrk(
    url: str,
    script: Path,
    *,
    seconds: float,
    connections: int,
    env: dict[str, str],
    threads: int = 2,
) -> WrkResult:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        argv,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    output = done.stdout
    if done.returncode != 0 or "Requests/sec" not in output:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or output}")
    statuses = {int(s): int(c) for s, c in re.findall(r"^STATUS (\d+) (\d+)$", output, re.M)}
    latency = re.search(r"^LATENCY p50=(\d+) p99=(\d+)$", output, re.M)
    p50, p99 = (int(v) / 1000 for v in latency.groups()) if latency else (float("nan"),) * 2
    found_rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    rate = float(found_rate.group(1)) if found_rate else 0.0
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = sum(int(v) for v in sockets.groups()) if sockets else 0
    replayed = re.search(r"^REPLAYED (\d+)$", output, re.M)
    return WrkResult(
        rate,
        p50,
        p99,
        sum(statuses.values()),
        statuses,
        socket_errors,
        int(replayed.group(1)) if replayed else 0,
    )


# --- PostgreSQL --------------------------------------------------------------------------


def database_url(name: str) -> str:
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def execute(url: str, *statements: str) -> list[Any]:
    """Run statements on ``url`` in autocommit; the value of each (first column, first row)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [await conn.fetchval(sql) for sql in statements]
    finally:
        await conn.close()

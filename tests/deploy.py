"""deploy/'s files, rendered to run here: the nodes from the systemd unit and the settings
file, nginx from the site file, as the current user from a temporary prefix.

What is replaced is only what a host decides (ports, paths, secrets, the database): the
rest, timeouts, retries, headers, the unit's command line, is the operator's file as
shipped. ``tests/test_nodes.py`` and ``bench/nodes.py`` both run through this.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from tests.processes import cli_command, free_port

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SITE = DEPLOY / "nginx" / "flamel-usage.conf"
UNIT = DEPLOY / "systemd" / "flamel-usage@.service"
SETTINGS = DEPLOY / "flamel-usage.env.example"
_UPSTREAM_SERVER = re.compile(r"(?m)^([ \t]*server )127\.0\.0\.1:\d+(.*)\n")
_LISTEN = re.compile(r"(?m)^([ \t]*)listen 80;")


def unit_service_section() -> dict[str, str]:
    """The unit's ``[Service]`` settings (a repeated one: its last value)."""
    section = UNIT.read_text().split("[Service]", 1)[1].split("\n[", 1)[0]
    values = {}
    for line in section.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def node_command(port: int) -> list[str]:
    """The unit's ExecStart for the instance ``port``, with this checkout's flamel-usage."""
    argv = shlex.split(unit_service_section()["ExecStart"].replace("%i", str(port)))
    if Path(argv[0]).name != "flamel-usage" or argv[1] != "serve":
        raise ValueError(f"the unit does not run flamel-usage serve: {argv}")
    return [*cli_command(), *argv[1:]]


def example_settings() -> dict[str, str]:
    settings = {}
    for line in SETTINGS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name] = value
    return settings


def nginx_site(node_ports: list[int], port: int) -> str:
    """The site file with one upstream server line (the first's parameters) per node
    port, listening on 127.0.0.1:``port``."""
    site = SITE.read_text()
    servers = list(_UPSTREAM_SERVER.finditer(site))
    if not servers or not _LISTEN.search(site):
        raise ValueError(f"{SITE}: no upstream server lines or no 'listen 80;'")
    indent, parameters = servers[0].group(1), servers[0].group(2)
    lines = "".join(f"{indent}127.0.0.1:{p}{parameters}\n" for p in node_ports)
    site = site[: servers[0].start()] + lines + site[servers[-1].end() :]
    return _LISTEN.sub(rf"\g<1>listen 127.0.0.1:{port};", site)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@contextmanager
def nginx(binary: str, directory: Path, node_ports: list[int]) -> Iterator[str]:
    """nginx in the foreground with the site in front of ``node_ports``; its base URL.
    Its logs are ``directory/error.log`` and ``access.log``."""
    port = free_port()
    (directory / "site.conf").write_text(nginx_site(node_ports, port))
    temp = {"client_body": "body", "proxy": "proxy", "fastcgi": "fcgi", "uwsgi": "uwsgi"}
    temp["scgi"] = "scgi"
    for name in temp.values():
        (directory / name).mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root nginx would switch to nobody
    paths = "".join(f"    {kind}_temp_path {directory / name};\n" for kind, name in temp.items())
    (directory / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log {directory}/access.log;\n{paths}"
        f"    include {directory}/site.conf;\n}}\n"
    )
    command = [binary, "-p", str(directory), "-e", str(directory / "error.log")]
    command += ["-c", str(directory / "nginx.conf"), "-g", "daemon off;"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(directory / 'error.log').read_text()}")
            with suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not answer within 10 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

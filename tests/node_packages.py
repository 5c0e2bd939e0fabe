"""Node.js and the npm packages pinned in ``tests/interop``, for the interop tests.

The packages come from ``tests/interop/package-lock.json`` through ``npm ci``, run once
per change of the lockfile (a stamp in ``node_modules`` records which lockfile it
installed) and under a file lock, so test processes started together do not install
over each other. A machine without Node fails loudly: these tests never pass without
having checked anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

INTEROP_DIR = Path(__file__).parent / "interop"
NPM_CI_TIMEOUT_S = 300
_STAMP = INTEROP_DIR / "node_modules" / ".flamel-lockfile-sha256"


def require_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"`{tool}` is not on PATH: the interop tests need Node.js 20+ and npm to run the"
            " real npm packages (apt-get install nodejs npm; .ci/run installs them)."
        )
    return path


def node_with_packages() -> str:
    """The path of ``node``, with ``tests/interop``'s locked packages installed."""
    node = require_tool("node")
    wanted = hashlib.sha256((INTEROP_DIR / "package-lock.json").read_bytes()).hexdigest()
    with open(INTEROP_DIR / "package-lock.json", "rb") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_EX)
        if not _STAMP.exists() or _STAMP.read_text() != wanted:
            _npm_ci(require_tool("npm"))
            _STAMP.write_text(wanted)
    return node


def _npm_ci(npm: str) -> None:
    command = [npm, "ci", "--prefix", str(INTEROP_DIR), "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=NPM_CI_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` took more than {NPM_CI_TIMEOUT_S}s")
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed:\n{result.stdout}\n{result.stderr}")

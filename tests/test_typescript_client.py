"""The TypeScript client (clients/typescript) against a real server, and its types against
the OpenAPI document that server serves.

The client's own tests (``node --test``) need a running ``flamel-usage serve``: this module
starts one, seeds the plans they use, and runs ``npm test`` (the build, then the tests)
with the server's address in the environment. Nothing is skipped: a machine without Node
fails loudly, and on a fresh clone the pinned packages are installed from the lockfile.

The types in ``src/openapi.ts`` are generated from ``GET /api-json``; when the served
document changes, the check below fails until they are regenerated (``npm run generate``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flamel_usage.core.errors import REASONS
from tests.conftest import ADMIN_TOKEN, SESSION_SECRET
from tests.processes import running_server

CLIENT_DIR = Path(__file__).parent.parent / "clients" / "typescript"
GENERATED_TYPES = CLIENT_DIR / "src" / "openapi.ts"
#: Where ``npm ci`` leaves the hash of the lockfile it installed, so it runs again only
#: when the lockfile changed.
INSTALLED_STAMP = CLIENT_DIR / "node_modules" / ".flamel-installed-lock"
NPM_CI_TIMEOUT_S = 300
NPM_TEST_TIMEOUT_S = 300
GENERATE_TIMEOUT_S = 60

SMALL_PLAN = {
    "name": "TS Small",
    "periodUnit": "month",
    "maxCredit": 10,
    "maxTtpCount": 2,
    "maxEditCount": 1,
}
LARGE_PLAN = {"name": "TS Large", "periodUnit": "month", "maxCredit": 1000}


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"`{tool}` is not on PATH: the TypeScript client's tests need Node.js 20+ and npm"
            " (apt-get install nodejs npm)."
        )
    return path


def _run(command: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``command`` in the client's directory; its output, or the test fails with it."""
    try:
        result = subprocess.run(
            command,
            cwd=CLIENT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` took more than {timeout} s")
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed:\n{result.stdout}\n{result.stderr}")
    output: str = result.stdout
    return output


@pytest.fixture(scope="module")
def npm() -> str:
    """npm, with the client's pinned packages installed (again only if the lockfile changed)."""
    _require("node")
    npm_path = _require("npm")
    lock = hashlib.sha256((CLIENT_DIR / "package-lock.json").read_bytes()).hexdigest()
    if not INSTALLED_STAMP.is_file() or INSTALLED_STAMP.read_text() != lock:
        _run([npm_path, "ci", "--no-audit", "--no-fund"], NPM_CI_TIMEOUT_S)
        INSTALLED_STAMP.write_text(lock)
    return npm_path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server on SQLite with the plans the client's tests use."""
    data = tmp_path_factory.mktemp("typescript-client")
    environ = {
        "FLAMEL_DATA_DIR": str(data),
        "FLAMEL_DATABASE_URL": f"sqlite:///{data / 'flamel.sqlite3'}",
        "FLAMEL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLAMEL_SESSION_SECRET": SESSION_SECRET,
        "FLAMEL_TIMEZONE": "UTC",
    }
    with running_server(environ) as base_url:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for plan in (SMALL_PLAN, LARGE_PLAN):
            response = httpx.post(f"{base_url}/api/admin/plans", json=plan, headers=headers)
            assert response.status_code == 201, response.text
        yield base_url


def test_the_client_against_a_real_server(npm: str, server: str) -> None:
    """``npm test``: builds the package and runs its tests (usage, admin calls, typed
    errors, idempotent charges and their retries) against ``server``."""
    reasons = {reason.name: reason.status for reason in REASONS.values()}
    environ = {
        **{name: value for name, value in os.environ.items() if not name.startswith("FLAMEL_")},
        "FLAMEL_TEST_URL": server,
        "FLAMEL_TEST_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLAMEL_TEST_SMALL_PLAN": str(SMALL_PLAN["name"]),
        "FLAMEL_TEST_LARGE_PLAN": str(LARGE_PLAN["name"]),
        "FLAMEL_TEST_REASONS": json.dumps(reasons),
    }
    output = _run([npm, "test"], NPM_TEST_TIMEOUT_S, env=environ)
    counts = dict(re.findall(r"^# (tests|pass) (\d+)$", output, re.MULTILINE))
    assert counts.get("tests", "0") != "0", output
    assert counts.get("pass") == counts["tests"], output  # none skipped, none left to do


def test_the_generated_types_are_those_of_the_served_document(
    npm: str, server: str, tmp_path: Path
) -> None:
    document = tmp_path / "api.json"
    document.write_bytes(httpx.get(f"{server}/api-json").raise_for_status().content)
    generated = tmp_path / "openapi.ts"
    _run(
        [npm, "run", "--silent", "generate", "--", str(document), "--out", str(generated)],
        GENERATE_TIMEOUT_S,
    )
    committed = GENERATED_TYPES.read_text().splitlines(keepends=True)
    fresh = generated.read_text().splitlines(keepends=True)
    if committed != fresh:
        diff = "".join(difflib.unified_diff(committed, fresh, "committed", "served", n=2))
        pytest.fail(
            "clients/typescript/src/openapi.ts is not the served document's types: run"
            " `npm run generate -- <url of a running server>/api-json` in clients/typescript"
            f" and commit it.\n{diff[:6000]}"
        )

"""Contract fuzzing: Schemathesis against a real ``flamel-usage serve``.

Each run starts its own server (``tests.processes.running_server``) on a fresh SQLite
database, seeds it through the admin API, and runs the ``schemathesis`` CLI against it
with every check, every phase (examples, coverage, fuzzing, stateful) and a bounded
number of examples, so the whole module stays well under CI's time limit:

1. the seed contract (``openapi-seed.yaml``) with a valid ``X-Api-Key``;
2. the seed contract with no credentials at all (its security also allows the
   ``connect.sid`` cookie, so this is a call it describes: ``403 not_logged_in``);
3. the served ``/api-json``, customer operations (tags ``users`` and ``auth``): usage,
   its history, login, logout, with the API key, the admin token and a real login in reach;
4. the served ``/api-json``, operator operations (tag ``admin``), stateful along the
   document's links (user -> keys/usage/credits/plan/delete, key -> update/revoke,
   charge -> refund by its Idempotency-Key);
5. the served ``/api-json``, self-service keys (tag ``keys``), with nothing but the
   ``connect.sid`` cookie of a user signed in for it (``POST /api/auth/login``): these
   operations refuse any ``X-Api-Key``, so the credentials of runs 3 and 4 would only
   ever be answered 403 session_required. Stateful along the link create -> revoke.

Runs 3, 4 and 5 together cover every operation of the document. They are separate so
that the operator run, which deletes users at random, cannot take away the user whose
key and password the customer run relies on, and each run sends the credentials its
operations take.

A failure shows Schemathesis' own report (which check, the response, a curl line to
reproduce it). Every server error it finds becomes a regression test below.

Knobs: ``FLAMEL_FUZZ_MAX_EXAMPLES`` (per operation and phase, and stateful scenarios;
default 50) and ``FLAMEL_FUZZ_SEED`` (default fixed, so CI is reproducible; set another
to explore).

One false alarm to know when exploring other seeds: Schemathesis 4 percent-decodes a
generated path value before it encodes it (``quote_all`` in its
``transport/serialization.py``), so an idempotency key such as ``a%C3b`` (valid: printable
ASCII) reaches ``POST /api/admin/charges/{idempotencyKey}/refund`` as ``a\ufffdb``, and
the server rightly answers 400 invalid_idempotency_key (or 404 when ``%41`` became
``A``). ST202 on that operation with ``%EF%BF%BD`` in the curl line is this, not a bug
of ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import flamel_usage.http.openapi
from tests.conftest import ADMIN_TOKEN
from tests.processes import child_env, running_server

SEED_SPEC = Path(flamel_usage.http.openapi.__file__).with_name("openapi-seed.yaml")
SEED_PATH = "/api/users/me/usage"
#: The statuses the seed lists for its operation.
SEED_STATUSES = {200, 401, 403}
MAX_EXAMPLES = int(os.environ.get("FLAMEL_FUZZ_MAX_EXAMPLES", "50"))
SEED = int(os.environ.get("FLAMEL_FUZZ_SEED", "20261125"))
#: One run's ceiling; a run takes well under a minute on two cores.
RUN_TIMEOUT_S = 240

PLAN = "Fuzz"
EMAIL = "fuzz@example.com"
PASSWORD = "correct horse battery staple"
#: The operation kinds of the server under test (the default FLAMEL_OPERATION_COSTS).
KINDS = ("ttp", "edit", "image")

# --- Schemathesis configuration -------------------------------------------------------------

#: Shared by every run: all checks on (the CLI's ``--exclude-checks`` takes some off).
_BASE_CONFIG = """\
[checks]
enabled = true
"""


#: For every run that includes the seed operation.
_SEED_OPERATION = """\
# The seed operation is served exactly as the contract defines it, and the contract is
# fixed: it lists 200, 401 and 403. The server also answers 429 too_many_requests (with
# Retry-After) to a client that sent too many wrong keys (SPEC 5), and fuzzing sends
# plenty. So Schemathesis' status code check is off for this one operation, and
# _assert_seed_statuses holds it to the seed's statuses plus exactly that 429 instead.
[[operations]]
include-operation-id = "UsersApiController_getMyUsage"
checks.status_code_conformance.enabled = false
"""


def _dictionaries(seeded: Seeded) -> str:
    """Realistic values that the document cannot state, because they are server data or
    server configuration rather than contract: the seeded user, plan and login, the
    configured operation kinds, and expiries (of purchases, of new keys) in the future."""
    return f"""\
[dictionaries.user_ids]
values = [{seeded.user_id}]

[dictionaries.doomed_user_ids]
values = [{seeded.doomed_user_id}]

[dictionaries.plans]
values = [{json.dumps(PLAN)}]

[dictionaries.kinds]
values = {json.dumps(list(KINDS))}

[dictionaries.hold_ttls]
values = [900, 86400]

[dictionaries.settle_costs]
values = [0]

[dictionaries.future_instants]
values = ["2099-12-31T23:59:59+00:00", "9000-01-01T00:00:00Z", "2999-06-30T12:00:00.5+09:00"]

[dictionaries.emails]
values = [{json.dumps(EMAIL)}]

[dictionaries.passwords]
values = [{json.dumps(PASSWORD)}]
"""


_CUSTOMER_OPERATIONS = """\
# Log in as the seeded user half of the time, so the 200 answer and its Set-Cookie are
# checked too, not only 401 invalid_credentials.
[[operations]]
include-operation-id = "AuthController_login"
parameters = { "body.email" = { dictionary = "emails", probability = 0.5 }, \
"body.password" = { dictionary = "passwords", probability = 0.5 } }

# Logging out without a session is not an error: there is nothing to end, so the server
# answers 204 and clears the cookie either way (idempotent, like the Express original).
# The document still names connect.sid as what logout consumes (tests/test_openapi.py
# pins that), so "no cookie" reads as invalid input to Schemathesis' negative check.
[[operations]]
include-operation-id = "AuthController_logout"
checks.negative_data_rejection.enabled = false

# The history's from must come before its to (each defaults to the current period's
# end), and a range has a longest length: rules across fields and the clock that the
# document states in words. A schema-valid range can thus be 400 invalid_range or
# range_too_long, an answer about the values, not a rejection of their shape.
[[operations]]
include-operation-id = "UsersApiController_getMyUsageHistory"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "429"]
"""

_ADMIN_OPERATIONS = """\
# Half of the generated ids and plan names are the seeded ones, so that operations get
# past 404 to their real work. (Operation sections below replace these for their own
# keys.)
[parameters]
"path.userId" = { dictionary = "user_ids", probability = 0.5 }
"body.userId" = { dictionary = "user_ids", probability = 0.5 }
"body.plan" = { dictionary = "plans", probability = 0.5 }

# kind must be one the server is configured with (FLAMEL_OPERATION_COSTS): server
# configuration, not contract, so the document says it in words. Generated data draws
# the kinds from the dictionary; the coverage phase, which ignores dictionaries and
# tries boundary strings for kind, does not count their 400 unknown_kind as a rejected
# valid request. 402 insufficient_credit is an answer about the account's state, as
# 409 and 429 are, not a rejection of the request's shape.
[[operations]]
include-operation-id = "AdminController_createCharge"
parameters = { "body.kind" = { dictionary = "kinds" } }
checks.positive_data_acceptance.expected-statuses = \
["2xx", "3xx", "401", "402", "403", "404", "409", "429", "5xx"]
phases.coverage.checks.positive_data_acceptance.enabled = false

# A hold: the same as a charge; it lasts long enough to be settled or released (one
# that expired is 409 hold_not_active, an answer about its state).
[[operations]]
include-operation-id = "AdminController_createHold"
parameters = { "body.kind" = { dictionary = "kinds" }, \
"body.ttlSeconds" = { dictionary = "hold_ttls", probability = 0.5 } }
checks.positive_data_acceptance.expected-statuses = \
["2xx", "3xx", "401", "402", "403", "404", "409", "429", "5xx"]
phases.coverage.checks.positive_data_acceptance.enabled = false

# Settling at more than the hold holds is 400: a statement about the hold's state that
# a schema cannot make. Half the settles keep nothing, which any hold allows.
[[operations]]
include-operation-id = "AdminController_settleHold"
parameters = { "body.cost" = { dictionary = "settle_costs", probability = 0.5 } }
checks.positive_data_acceptance.enabled = false

# A purchase or a new key must expire in the future (the credit would never count, the
# key never work, otherwise): a statement about the clock that a schema cannot make. Same
# treatment as kind above.
[[operations]]
include-operation-id = "AdminController_buyCredits"
parameters = { "body.expiresAt" = { dictionary = "future_instants" } }
phases.coverage.checks.positive_data_acceptance.enabled = false

[[operations]]
include-operation-id = "AdminController_createKey"
parameters = { "body.expiresAt" = { dictionary = "future_instants" } }
phases.coverage.checks.positive_data_acceptance.enabled = false

# DELETE gets the user seeded to be deleted, not the one the other operations work on.
[[operations]]
include-operation-id = "AdminController_deleteUser"
parameters = { "path.userId" = { dictionary = "doomed_user_ids", probability = 0.5 } }

# A webhook URL must be https and resolve to public addresses only, checked by looking
# the host up: a statement about DNS and the network that no schema can make (a
# schema-valid URL of a host that does not resolve, or resolves to 127.0.0.1, is 400).
[[operations]]
include-operation-id = "AdminController_createWebhook"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403"]

# Moving a user to a plan that does not exist is 404 plan_not_found: a 404 that is not
# about the user just created, so "created resource not found" does not follow from it.
[[operations]]
include-operation-id = "AdminController_changePlan"
checks.ensure_resource_availability.enabled = false
"""


_MY_KEYS_OPERATIONS = """\
# A new key must expire in the future: as for AdminController_createKey above.
[[operations]]
include-operation-id = "KeysController_createMyKey"
parameters = { "body.expiresAt" = { dictionary = "future_instants" } }
phases.coverage.checks.positive_data_acceptance.enabled = false
"""


def _session_auth(cookie: str) -> str:
    """The session cookie as the value of the document's ``connect.sid`` scheme, so that
    Schemathesis knows what the credential is (and leaves it out where it tests that an
    operation refuses a request without it)."""
    return f"""\
[auth.openapi."connect.sid"]
api_key = {json.dumps(cookie)}
"""


# --- runs ---------------------------------------------------------------------------------


@dataclass
class FuzzRun:
    """One ``schemathesis run``: its exit code, console output and JSON report."""

    returncode: int
    output: str
    report: dict[str, Any] = field(default_factory=dict)
    #: Every request and response, as a HAR log's entries.
    exchanges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def generated(self) -> int:
        return int(self.report.get("test_cases", {}).get("generated", 0))

    def summary(self) -> str:
        cases = self.report.get("test_cases", {})
        operations = self.report.get("operations", {})
        phases = {name: p.get("status") for name, p in self.report.get("phases", {}).items()}
        # The console's stateful lines: "Scenarios: N", "API Links: N covered / M ...".
        stateful = [
            " ".join(line.split())
            for line in self.output.splitlines()
            if line.strip().startswith(("Scenarios:", "API Links:"))
        ]
        return (
            f"{operations.get('tested')} operations, {cases.get('generated')} test cases"
            f" generated ({cases.get('without_checks')} without checks), seed {SEED},"
            f" max {MAX_EXAMPLES} examples, phases {phases}, {'; '.join(stateful)},"
            f" {self.report.get('running_time', 0):.1f} s"
        ).replace(", ,", ",")


def _schemathesis(
    tmp_path: Path, location: str, base_url: str, headers: dict[str, str], *args: str, config: str
) -> FuzzRun:
    """``schemathesis run`` as a subprocess; its JSON report read back."""
    reports = tmp_path / "schemathesis-report"
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(config, encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config_file),
        "--no-color",
        "run",
        location,
        "--url",
        base_url,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--report",
        "json,junit,har",
        "--report-dir",
        str(reports),
        *args,
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    completed = subprocess.run(
        command,
        cwd=tmp_path,  # nothing Schemathesis writes lands in the repository
        env=child_env({}),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = completed.stdout + completed.stderr

    def latest(kind: str) -> Any:
        found = sorted(reports.glob(f"{kind}-*.json"))
        return json.loads(found[-1].read_text(encoding="utf-8")) if found else {}

    exchanges = latest("har").get("log", {}).get("entries", [])
    return FuzzRun(completed.returncode, output, latest("json"), exchanges)


def _assert_seed_statuses(run: FuzzRun) -> None:
    """What ``_SEED_OPERATION`` takes off Schemathesis, checked here, exactly: every answer
    to ``GET /api/users/me/usage`` has a status the seed lists, or is the throttle's 429."""
    answers = [
        exchange["response"]
        for exchange in run.exchanges
        if exchange["request"]["method"] == "GET"
        and httpx.URL(exchange["request"]["url"]).path == SEED_PATH
    ]
    assert answers, run.output
    for answer in answers:
        status = answer["status"]
        assert status in SEED_STATUSES | {429}, (status, answer)
        if status == 429:
            assert json.loads(answer["content"]["text"])["data"] == "too_many_requests", answer
            headers = {h["name"].lower(): h["value"] for h in answer["headers"]}
            assert int(headers["retry-after"]) >= 1, answer


def _assert_clean(run: FuzzRun, record_property: Any, *, authenticated: bool) -> None:
    """No failure, no error; and, when credentials were given, that they worked."""
    print(run.summary())  # shown with -s or -rP; the closing note quotes it
    record_property("schemathesis_test_cases", run.generated)
    record_property("schemathesis_summary", run.summary())
    assert run.report, f"schemathesis wrote no JSON report:\n{run.output}"
    details = f"{run.summary()}\n\n{run.output}"
    assert not run.report.get("failures"), details
    assert not run.report.get("errors"), details
    assert run.returncode == 0, details
    assert run.generated > 0, run.output
    if authenticated:
        # Every operation answering only 401/403 would make the run vacuous.
        assert not run.report["warnings"].get("missing_auth"), run.output


@dataclass(frozen=True)
class Seeded:
    base_url: str
    api_key: str
    #: The user the key and the login belong to.
    user_id: int
    #: A user for DELETE to find. Created first, so it holds id 1, the id the coverage
    #: phase tries as the documented minimum, and the other one lives longer.
    doomed_user_id: int


def _seed(base_url: str) -> Seeded:
    """A plan, a user to delete, a user with a password and a live API key."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=base_url, headers=admin, timeout=10.0) as http:
        plan = {
            "name": PLAN,
            "periodUnit": "month",
            "maxCredit": 1000,
            "maxTtpCount": 100,
            "maxEditCount": 100,
        }
        http.post("/api/admin/plans", json=plan).raise_for_status()
        doomed = http.post("/api/admin/users", json={"email": f"doomed-{EMAIL}", "plan": PLAN})
        doomed.raise_for_status()
        user = http.post(
            "/api/admin/users", json={"email": EMAIL, "plan": PLAN, "password": PASSWORD}
        )
        user.raise_for_status()
        user_id = int(user.json()["id"])
        key = http.post(f"/api/admin/users/{user_id}/keys", json={})
        key.raise_for_status()
        usage = http.get("/api/users/me/usage", headers={"X-Api-Key": key.json()["key"]})
        assert usage.status_code == 200, usage.text
    return Seeded(base_url, key.json()["key"], user_id, int(doomed.json()["id"]))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the contract is the same on both stores, and each run costs time."""
    return f"sqlite:///{tmp_path / 'fuzz.sqlite3'}"


@pytest.fixture
def server(environ: dict[str, str]) -> Iterator[Seeded]:
    with running_server(environ) as base_url:
        yield _seed(base_url)


# --- the seed contract --------------------------------------------------------------------


def test_seed_contract_with_an_api_key(
    server: Seeded, tmp_path: Path, record_property: Any
) -> None:
    run = _schemathesis(
        tmp_path,
        str(SEED_SPEC),
        server.base_url,
        {"X-Api-Key": server.api_key},
        config=_BASE_CONFIG + _SEED_OPERATION,
    )
    _assert_clean(run, record_property, authenticated=True)
    _assert_seed_statuses(run)


def test_seed_contract_without_credentials(
    server: Seeded, tmp_path: Path, record_property: Any
) -> None:
    config = _BASE_CONFIG + _SEED_OPERATION
    run = _schemathesis(tmp_path, str(SEED_SPEC), server.base_url, {}, config=config)
    _assert_clean(run, record_property, authenticated=False)
    _assert_seed_statuses(run)


# --- the served document ------------------------------------------------------------------


def _full_headers(server: Seeded) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Api-Key": server.api_key}


def test_served_document_customer_operations(
    server: Seeded, tmp_path: Path, record_property: Any
) -> None:
    run = _schemathesis(
        tmp_path,
        f"{server.base_url}/api-json",
        server.base_url,
        _full_headers(server),
        "--include-tag",
        "users",
        "--include-tag",
        "auth",
        # No links lead to or from these operations: nothing to do statefully.
        "--phases",
        "examples,coverage,fuzzing",
        config=_BASE_CONFIG + _SEED_OPERATION + _dictionaries(server) + _CUSTOMER_OPERATIONS,
    )
    _assert_clean(run, record_property, authenticated=True)
    _assert_seed_statuses(run)
    assert run.report["operations"]["tested"] == 4, run.output


def test_served_document_admin_operations(
    server: Seeded, tmp_path: Path, record_property: Any
) -> None:
    run = _schemathesis(
        tmp_path,
        f"{server.base_url}/api-json",
        server.base_url,
        _full_headers(server),
        "--include-tag",
        "admin",
        config=_BASE_CONFIG + _dictionaries(server) + _ADMIN_OPERATIONS,
    )
    _assert_clean(run, record_property, authenticated=True)
    assert run.report["operations"]["tested"] == 26, run.output


MY_KEYS_EMAIL = "fuzz-keys@example.com"


def _signed_in(server: Seeded) -> str:
    """A user made for the keys run, signed in: the value of their ``connect.sid``."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        user = http.post(
            "/api/admin/users",
            json={"email": MY_KEYS_EMAIL, "plan": PLAN, "password": PASSWORD},
            headers=admin,
        )
        user.raise_for_status()
        login = http.post("/api/auth/login", json={"email": MY_KEYS_EMAIL, "password": PASSWORD})
        login.raise_for_status()
        cookie = login.cookies["connect.sid"]
        http.cookies.clear()
        listed = http.get("/api/users/me/keys", headers={"Cookie": f"connect.sid={cookie}"})
        assert listed.json() == {"keys": []}, listed.text
    return cookie


def test_served_document_my_keys_operations(
    server: Seeded, tmp_path: Path, record_property: Any
) -> None:
    run = _schemathesis(
        tmp_path,
        f"{server.base_url}/api-json",
        server.base_url,
        {},
        "--include-tag",
        "keys",
        config=_BASE_CONFIG
        + _session_auth(_signed_in(server))
        + _dictionaries(server)
        + _MY_KEYS_OPERATIONS,
    )
    _assert_clean(run, record_property, authenticated=True)
    assert run.report["operations"]["tested"] == 3, run.output
    # The cookie alone was sent: never an API key, which these operations refuse.
    sent = [{h["name"].lower() for h in e["request"]["headers"]} for e in run.exchanges]
    assert sent, run.output
    assert not any("x-api-key" in headers for headers in sent), run.output


# --- regression tests for what the fuzzing found -------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/api/users/me/usage", {"GET"}),
        ("DELETE", "/api/admin/charges", {"POST"}),
        ("PUT", "/api/admin/users/1", {"GET", "PATCH", "DELETE"}),
        ("PUT", "/api/admin/users/1/keys", {"GET", "POST"}),
    ],
)
async def test_405_names_the_allowed_methods(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.json()["data"] == "method_not_allowed"
    allow = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
    # HEAD is answered wherever GET is, so it may be listed with it.
    assert allow - {"HEAD"} == allowed

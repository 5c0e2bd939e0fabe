"""Three nodes behind Debian's nginx, with deploy/'s files: a storm, a crash, a rolling deploy.

The nodes are started from ``deploy/systemd/flamel-usage@.service``'s ``ExecStart`` (the
instance name, ``%i``, is the port) with ``deploy/flamel-usage.env.example``'s settings
(the database, secrets and data dir replaced by the test's; the drain shortened to bound
the test), and nginx runs ``deploy/nginx/flamel-usage.conf`` with its upstream ports and
listen line replaced: as the current user, from a temporary prefix, in the foreground.

Through nginx, clients read usage, charge with idempotency keys, refund, buy credit
with idempotency keys, and hold credit (with a key) then settle or release it, sending a
request again (the same key) after any failure until it has its real answer. Meanwhile
one node is SIGKILLed and restarted, then every node in turn gets SIGTERM and is started
again, as a rolling deploy would. Afterwards every acknowledged charge, purchase and hold
is in the ledger once and nothing else is, every refund seen is the one in the ledger,
every hold ended as its client asked, the purchased credit adds up, reconcile is clean,
the only failures clients saw were requests in flight when the node was killed, and the
rolling deploy cost no request at all.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from flamel_usage.client import AdminClient
from tests.conftest import ADMIN_TOKEN
from tests.deploy import example_settings, nginx, nginx_binary, node_command, unit_service_section
from tests.processes import ServerProcess, free_port, run_cli
from tests.store import reset_database, sql

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NODES = 3
#: The test's drain, shorter than the example's, so that the rolling deploy fits.
DRAIN_SECONDS = 1.0
USERS = 12
CLIENTS = 6
#: The wrong keys one client address may send per window, for the address check.
KEY_FAILURE_BUDGET = 3
#: What a hold reserves, in credits; it is settled at a random cost up to this, or
#: released.
HELD = 5


def _node_environ(database_url: str, data_dir: Path) -> dict[str, str]:
    environ = example_settings()
    assert environ["FLAMEL_CLIENT_ADDRESS_HEADER"] == "X-Forwarded-For"
    assert float(unit_service_section()["TimeoutStopSec"]) > float(
        environ["FLAMEL_SHUTDOWN_DRAIN_SECONDS"]
    ), "systemd would SIGKILL a node before its drain ends"
    environ.update(
        FLAMEL_DATABASE_URL=database_url,
        FLAMEL_DATA_DIR=str(data_dir),
        FLAMEL_ADMIN_TOKEN=ADMIN_TOKEN,
        FLAMEL_SESSION_SECRET="nodes-test-session-secret-of-32-bytes-or-more",
        FLAMEL_SHUTDOWN_DRAIN_SECONDS=str(DRAIN_SECONDS),
        FLAMEL_KEY_FAILURE_BUDGET=str(KEY_FAILURE_BUDGET),
        FLAMEL_LOG_FORMAT="text",
    )
    return environ


def _nginx_binary() -> str:
    found = nginx_binary()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: .ci/run installs Debian's")
        pytest.skip("nginx is not installed (.ci/run installs Debian's)")
    return found


# --- The storm ---------------------------------------------------------------------------

_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Failure:
    operation: str
    started: float
    ended: float
    detail: str


@dataclass
class Storm:
    base_url: str
    users: list[tuple[int, str]]  # (user id, API key)
    stop: threading.Event = field(default_factory=threading.Event)
    failures: list[Failure] = field(default_factory=list)
    reads: int = 0
    charged: dict[str, int] = field(default_factory=dict)  # key -> user id
    other_charge_outcomes: list[str] = field(default_factory=list)
    refunded: set[str] = field(default_factory=set)
    refund_outcomes: list[str] = field(default_factory=list)
    purchased: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> user, milli
    #: key -> (user id, hold id, how it was finished: the settled cost in millicredits,
    #: or None for released)
    holds: dict[str, tuple[int, int, int | None]] = field(default_factory=dict)
    #: Answers that were not what the client asked for, of purchases and holds.
    unexpected: list[str] = field(default_factory=list)

    def run(self) -> None:
        asyncio.run(self._clients())

    async def _clients(self) -> None:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30, limits=limits) as http:
            await asyncio.gather(*(self._client(http, random.Random(n)) for n in range(CLIENTS)))

    async def _client(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        admin = _ADMIN
        while not self.stop.is_set():
            user_id, key = rng.choice(self.users)
            roll = rng.random()
            refundable = sorted(set(self.charged) - self.refunded)
            if roll < 0.15 and refundable:
                charge_key = rng.choice(refundable)
                self.refunded.add(charge_key)  # no other client picks it meanwhile
                path = f"/api/admin/charges/{charge_key}/refund"
                answer = await self._until_answered(
                    http, http.build_request("POST", path, headers=admin)
                )
                reason = answer.json().get("data") if answer.status_code != 200 else "refunded"
                self.refund_outcomes.append(str(reason))
                if reason != "refunded" and reason != "already_refunded":
                    self.refunded.discard(charge_key)
            elif roll < 0.4:
                charge_key = f"storm-{uuid.uuid4()}"
                charge = http.build_request(
                    "POST",
                    "/api/admin/charges",
                    headers={**admin, "Idempotency-Key": charge_key},
                    json={"userId": user_id, "kind": "image"},
                )
                answer = await self._until_answered(http, charge)
                if answer.status_code == 201:
                    self.charged[charge_key] = user_id
                else:
                    self.other_charge_outcomes.append(answer.text)
            elif roll < 0.5:
                await self._purchase(http, user_id, rng.randint(1, 5000))
            elif roll < 0.6:
                await self._hold(http, user_id, rng)
            else:
                read = http.build_request("GET", "/api/users/me/usage", headers={"X-Api-Key": key})
                await self._until_answered(http, read)
                self.reads += 1

    async def _purchase(self, http: httpx.AsyncClient, user_id: int, milli: int) -> None:
        purchase_key = f"buy-{uuid.uuid4()}"
        purchase = http.build_request(
            "POST",
            f"/api/admin/users/{user_id}/credits",
            headers={**_ADMIN, "Idempotency-Key": purchase_key},
            json={"amount": milli / 1000},
        )
        answer = await self._until_answered(http, purchase)
        if answer.status_code == 201:
            self.purchased[purchase_key] = (user_id, milli)
        else:
            self.unexpected.append(f"purchase: {answer.status_code} {answer.text}")

    async def _hold(self, http: httpx.AsyncClient, user_id: int, rng: random.Random) -> None:
        """Hold ``HELD`` credits, then settle at a random cost up to it or release."""
        hold_key = f"hold-{uuid.uuid4()}"
        create = http.build_request(
            "POST",
            "/api/admin/holds",
            headers={**_ADMIN, "Idempotency-Key": hold_key},
            json={"userId": user_id, "kind": "image", "cost": HELD},
        )
        created = await self._until_answered(http, create)
        if created.status_code != 201:
            self.unexpected.append(f"hold: {created.status_code} {created.text}")
            return
        hold_id = created.json()["hold"]["holdId"]
        cost = rng.choice([None, rng.randint(0, HELD * 1000)])
        call, body = ("release", None) if cost is None else ("settle", {"cost": cost / 1000})
        finish = http.build_request(
            "POST", f"/api/admin/holds/{hold_id}/{call}", headers=_ADMIN, json=body
        )
        finished = await self._until_answered(http, finish)
        self.holds[hold_key] = (user_id, hold_id, cost)
        operation = f"POST {finish.url.path}"
        retried = any(failure.operation == operation for failure in self.failures)
        # After a retry, 409 hold_not_active may mean an earlier attempt went through
        # (the hold's state in the ledger is checked afterwards); the same call again
        # is otherwise answered its first answer.
        if finished.status_code == 200 or (
            retried and finished.json().get("data") == "hold_not_active"
        ):
            return
        self.unexpected.append(f"{call}: {finished.status_code} {finished.text}")

    async def _until_answered(
        self, http: httpx.AsyncClient, request: httpx.Request
    ) -> httpx.Response:
        """The request's real answer: sent again, the same, after every failure (no
        answer, or a 5xx: the request may or may not have been done)."""
        operation = f"{request.method} {request.url.path}"
        while True:
            started = time.monotonic()
            try:
                response = await http.send(request)
            except httpx.TransportError as error:
                detail = repr(error)
            else:
                if response.status_code < 500:
                    return response
                detail = f"{response.status_code} {response.text[:200]}"
            self.failures.append(Failure(operation, started, time.monotonic(), detail))
            await asyncio.sleep(0.05)


# --- The test ----------------------------------------------------------------------------


def _setup_users(base_url: str) -> list[tuple[int, str]]:
    plan = httpx.post(
        f"{base_url}/api/admin/plans",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"name": "Storm", "periodUnit": "month", "maxCredit": 1_000_000},
        timeout=10,
    )
    assert plan.status_code == 201, plan.text
    with AdminClient(ADMIN_TOKEN, base_url=base_url) as admin:
        users = [admin.create_user(f"node-{n}@example.com", "Storm") for n in range(USERS)]
        return [(user.id, admin.create_key(user.id).key) for user in users]


def _wrong_key_status(base_url: str, source: str) -> int:
    """A wrong key sent from the client address ``source`` (a loopback address), with an
    X-Forwarded-For of its own that nginx must not let count."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=base_url, transport=transport, timeout=10) as http:
        spoofed = f"10.9.{random.randrange(256)}.{random.randrange(256)}"
        answer = http.get(
            "/api/users/me/usage",
            headers={"X-Api-Key": "flm_" + "x" * 43, "X-Forwarded-For": spoofed},
        )
        return answer.status_code


def _start(environ: dict[str, str], port: int, cwd: Path) -> ServerProcess:
    node = ServerProcess(environ, command=node_command(port), port=port, cwd=cwd)
    try:
        node.wait_until_ready()
    except BaseException as error:
        node.stop()
        error.add_note(node.output())
        node.close()
        raise
    return node


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_three_nodes_behind_nginx_lose_and_double_nothing(
    database_url: str, tmp_path: Path
) -> None:
    reset_database(database_url)
    environ = _node_environ(database_url, tmp_path / "data")
    ports = [free_port() for _ in range(NODES)]
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    nodes: list[ServerProcess] = []
    with ExitStack() as cleanup:
        cleanup.callback(lambda: [node.close() for node in nodes])
        nodes.extend(_start(environ, port, tmp_path) for port in ports)
        base_url = cleanup.enter_context(nginx(_nginx_binary(), nginx_dir, ports))

        # The client's address is the one nginx saw: an address written by the client
        # into X-Forwarded-For neither escapes the wrong-key budget nor spends another's.
        assert [_wrong_key_status(base_url, "127.0.0.2") for _ in range(KEY_FAILURE_BUDGET)] == [
            401
        ] * KEY_FAILURE_BUDGET
        assert _wrong_key_status(base_url, "127.0.0.2") == 429
        assert _wrong_key_status(base_url, "127.0.0.3") == 401

        users = _setup_users(base_url)
        # A purchase without a key goes through nginx's location that does not resend it.
        unkeyed = httpx.post(
            f"{base_url}/api/admin/users/{users[0][0]}/credits",
            headers=_ADMIN,
            json={"amount": 1},
            timeout=10,
        )
        assert unkeyed.status_code == 201, unkeyed.text
        storm = Storm(base_url, users)
        clients = threading.Thread(target=storm.run)
        clients.start()
        try:
            time.sleep(3)
            killed_from = time.monotonic()
            nodes[0].kill()
            killed_until = time.monotonic()
            time.sleep(2)
            nodes[0].close()
            nodes[0] = _start(environ, ports[0], tmp_path)
            time.sleep(3)  # nginx tries the node again after its fail_timeout

            rolling_from = time.monotonic()
            for place, port in enumerate(ports):
                assert nodes[place].stop() == 0, nodes[place].output()
                nodes[place].close()
                nodes[place] = _start(environ, port, tmp_path)
                time.sleep(3)  # the site's fail_timeout: nginx sends to it again
            rolling_until = time.monotonic()
            time.sleep(1)
        finally:
            storm.stop.set()
            clients.join(timeout=60)
        assert not clients.is_alive()

    # nginx did meet the killed and the stopped nodes, and moved on.
    moved_on = (nginx_dir / "error.log").read_text().count("Connection refused")
    assert moved_on > 0
    print(
        f"storm: {storm.reads} reads, {len(storm.charged)} charges, {len(storm.refunded)}"
        f" refunds, {len(storm.purchased)} purchases, {len(storm.holds)} holds;"
        f" nginx moved on {moved_on} times;"
        f" failures seen by clients: {[(f.operation, f.detail) for f in storm.failures]}"
    )
    # Clients saw failures only for requests in flight on the killed node.
    for failure in storm.failures:
        assert failure.started <= killed_until, failure
        assert killed_from <= failure.ended, failure
        assert failure.ended < killed_until + 5, failure
    assert not [f for f in storm.failures if f.ended >= rolling_from], "rolling deploy failed"
    assert rolling_until - rolling_from > NODES * DRAIN_SECONDS
    assert storm.reads > 100
    assert len(storm.charged) > 50
    assert len(storm.refunded) > 5
    assert len(storm.purchased) > 10
    assert len(storm.holds) > 10
    assert storm.other_charge_outcomes == []
    assert set(storm.refund_outcomes) <= {"refunded", "already_refunded"}
    assert storm.unexpected == []

    # Every acknowledged charge is in the ledger once, and no other charge is.
    rows = sql(
        database_url,
        "SELECT idempotency_key, user_id, status, refunded_at FROM charges"
        " WHERE hold_state IS NULL",
    )
    assert {key: user for key, user, _, _ in rows} == storm.charged
    assert {status for _, _, status, _ in rows} == {201}
    assert {key for key, _, _, refunded_at in rows if refunded_at is not None} == storm.refunded
    doubled = sql(
        database_url,
        "SELECT charge_id, entry_type, pool FROM ledger_entries WHERE charge_id IS NOT NULL"
        " GROUP BY charge_id, entry_type, pool HAVING count(*) > 1",
    )
    assert doubled == []
    charged_entries = sql(
        database_url,
        "SELECT count(DISTINCT charge_id) FROM ledger_entries WHERE entry_type = 'charge'",
    )
    assert charged_entries == [(len(storm.charged) + len(storm.holds),)]

    # Every acknowledged purchase is in the ledger once, with its one entry, and no other
    # keyed purchase is; each user's purchased credit adds up (charges take plan credit).
    bought = sql(
        database_url,
        "SELECT idempotency_key, user_id, amount, remaining FROM credit_purchases"
        " WHERE idempotency_key IS NOT NULL",
    )
    assert {key: (user, amount) for key, user, amount, _ in bought} == storm.purchased
    assert all(remaining == amount for _, _, amount, remaining in bought)
    purchase_entries = sql(
        database_url,
        "SELECT p.idempotency_key, count(e.id) FROM credit_purchases p JOIN ledger_entries e"
        " ON e.purchase_id = p.id AND e.entry_type = 'purchase'"
        " WHERE p.idempotency_key IS NOT NULL GROUP BY p.idempotency_key",
    )
    assert dict(purchase_entries) == dict.fromkeys(storm.purchased, 1)
    expected = {user_id: 1000 if user_id == users[0][0] else 0 for user_id, _ in users}
    for user_id, milli in storm.purchased.values():  # 1000: the unkeyed purchase, above
        expected[user_id] += milli
    credit = "SELECT user_id, sum(remaining) FROM credit_purchases GROUP BY user_id"
    assert dict(sql(database_url, credit)) == {
        user_id: milli for user_id, milli in expected.items() if milli
    }

    # Every acknowledged hold is in the ledger once, ended as its client asked.
    held = sql(
        database_url,
        "SELECT idempotency_key, user_id, id, hold_state, cost FROM charges"
        " WHERE hold_state IS NOT NULL",
    )
    asked = {
        key: (user, hold_id, "released" if cost is None else "settled", cost or 0)
        for key, (user, hold_id, cost) in storm.holds.items()
    }
    ended = {
        key: (user, hold_id, state, cost if state == "settled" else 0)
        for key, user, hold_id, state, cost in held
    }
    assert ended == asked

    reconcile = run_cli(environ, "reconcile")
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
    assert reconcile.stdout.strip().endswith("reconcile: clean")

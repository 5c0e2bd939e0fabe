"""The SDK (``flamel_usage.client``) against a real ``flamel-usage serve``, on both stores.

Accounts are made through the ``factory`` (the real services, on the store the server
uses); the SDK then talks HTTP to the server process on 127.0.0.1, as a user's program
would. Each answer is compared with the raw ``GET /api/users/me/usage`` JSON.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import httpx
import pytest

from flamel_usage.accounts.users import User
from flamel_usage.client import (
    ApiKeyExpired,
    AsyncClient,
    Client,
    NotLoggedIn,
    TransportError,
    UsageInfo,
    WrongApiKey,
)
from flamel_usage.core.periods import from_micros, to_micros
from flamel_usage.db.gateway import Database
from tests.factories import Factory
from tests.processes import free_port, running_server

USAGE = "/api/users/me/usage"
FIELDS = {
    "current_credit": "currentCredit",
    "additional_credit": "additionalCredit",
    "max_credit": "maxCredit",
    "period": "period",
    "ttp_count": "ttpCount",
    "max_ttp_count": "maxTtpCount",
    "edit_count": "editCount",
    "max_edit_count": "maxEditCount",
    "postpaid_usage_count": "postpaidUsageCount",
}
PASSWORD = "correct horse battery staple"
#: A well-formed key that was never issued.
UNKNOWN_KEY = "flm_" + "A" * 43


def raw_usage(base_url: str, **headers: str) -> dict[str, object]:
    response = httpx.get(base_url + USAGE, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def assert_same(info: UsageInfo, raw: dict[str, object]) -> None:
    """``info`` is ``raw`` field by field, with the same Python types (ints stay ints)."""
    assert dict(info.raw) == raw
    for attribute, name in FIELDS.items():
        value = getattr(info, attribute)
        assert value == raw[name], name
        assert type(value) is type(raw[name]), name
        assert info[name] == raw[name]
    now = datetime.now(UTC)
    assert info.period_start <= now < info.period_end


async def prepaid_account(factory: Factory) -> tuple[User, str]:
    """100 credits a month, 10 TTP, unlimited edits; 2.5 bought; one TTP and one edit used."""
    plan = await factory.plan(credits=100, max_ttp=10, max_edit=None)
    user = await factory.user(plan, password=PASSWORD)
    await factory.purchase(user, 2.5)
    await factory.charge(user, "ttp", "client-ttp-1")
    await factory.charge(user, "edit", "client-edit-1", cost=0.25)
    return user, await factory.key(user)


async def postpaid_account(factory: Factory) -> tuple[User, str]:
    """1 credit a month, postpaid: a 3-credit charge leaves 2 credits of postpaid usage."""
    plan = await factory.plan(credits=1, max_ttp=None, max_edit=5, postpaid=True)
    user = await factory.user(plan)
    await factory.charge(user, "image", "client-image-1", cost=3)
    return user, await factory.key(user)


async def test_client_usage_is_the_raw_answer_field_by_field(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    _, prepaid_key = await prepaid_account(factory)
    _, postpaid_key = await postpaid_account(factory)
    with running_server(environ) as base_url:
        with Client(prepaid_key, base_url=base_url) as client:
            prepaid = client.usage()
        with Client(postpaid_key, base_url=base_url) as client:
            postpaid = client.usage()
        assert_same(prepaid, raw_usage(base_url, **{"X-Api-Key": prepaid_key}))
        assert_same(postpaid, raw_usage(base_url, **{"X-Api-Key": postpaid_key}))

    assert (prepaid.current_credit, prepaid.additional_credit) == (98.75, 2.5)
    assert (prepaid.max_credit, prepaid.ttp_count, prepaid.edit_count) == (100, 1, 1)
    assert (prepaid.ttp_left, prepaid.edits_left) == (9, None)
    assert prepaid.total_credit_left == 101.25
    assert prepaid.fraction_used == pytest.approx(0.0125)
    assert not prepaid.is_postpaid

    assert postpaid.is_postpaid
    assert postpaid.postpaid_usage_count == 2
    assert type(postpaid.postpaid_usage_count) is int
    assert (postpaid.current_credit, postpaid.fraction_used) == (0, 1.0)
    assert (postpaid.max_ttp_count, postpaid.edits_left) == (None, 5)


async def test_async_client_usage_is_the_raw_answer_field_by_field(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    _, key = await prepaid_account(factory)
    with running_server(environ) as base_url:
        async with AsyncClient(key, base_url=base_url) as client:
            info = await client.usage()
            again = await client.usage()  # the connection is reused
        assert_same(info, raw_usage(base_url, **{"X-Api-Key": key}))
    assert again == info


async def test_a_session_cookie_from_login_authenticates(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    user, key = await prepaid_account(factory)
    with running_server(environ) as base_url:
        login = httpx.post(
            base_url + "/api/auth/login",
            json={"email": user.email, "password": PASSWORD},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        cookie = login.cookies["connect.sid"]
        with Client(session_cookie=cookie, base_url=base_url) as client:
            by_session = client.usage()
        async with AsyncClient(session_cookie=cookie, base_url=base_url) as aclient:
            by_session_async = await aclient.usage()
        with Client(key, base_url=base_url) as client:
            by_key = client.usage()
        # The key wins over the cookie, as the server documents: a wrong one is refused.
        with (
            Client(UNKNOWN_KEY, session_cookie=cookie, base_url=base_url) as client,
            pytest.raises(WrongApiKey),
        ):
            client.usage()
        raw = raw_usage(base_url, Cookie=f"connect.sid={cookie}")
    assert_same(by_session, raw)
    assert by_session == by_session_async == by_key


async def test_refusals_raise_their_exceptions(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    user, _ = await prepaid_account(factory)
    an_hour_ago = to_micros(datetime.now(UTC)) - 3600 * 1_000_000
    expired = await factory.expired_key(user, at=an_hour_ago)
    with running_server(environ) as base_url:
        with Client(UNKNOWN_KEY, base_url=base_url) as client, pytest.raises(WrongApiKey) as wrong:
            client.usage()
        with Client(expired, base_url=base_url) as client, pytest.raises(ApiKeyExpired) as old:
            client.usage()
        with Client(base_url=base_url) as client, pytest.raises(NotLoggedIn) as anonymous:
            client.usage()
        forged = "s%3Anot-a-session.bad-signature"
        async with AsyncClient(session_cookie=forged, base_url=base_url) as aclient:
            with pytest.raises(NotLoggedIn):
                await aclient.usage()
    assert (wrong.value.status, wrong.value.reason) == (401, "wrong_api_key")
    assert (old.value.status, old.value.reason) == (401, "api_key_expired")
    assert (anonymous.value.status, anonymous.value.reason) == (403, "not_logged_in")


def test_a_closed_port_is_a_transport_error_within_the_timeout() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: it was just released
    started = time.monotonic()
    with (
        Client("flm_x", base_url=base_url, timeout=2, retries=0) as client,
        pytest.raises(TransportError) as caught,
    ):
        client.usage()
    assert time.monotonic() - started < 5
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.status is None


def test_a_closed_port_is_retried_before_it_is_raised() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    waits: list[float] = []
    with Client("flm_x", base_url=base_url, timeout=2, retries=2, backoff=0.01) as client:
        client._sleep = waits.append
        with pytest.raises(TransportError):
            client.usage()
    assert waits == [0.01, 0.02]


async def test_async_client_on_a_closed_port() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient("flm_x", base_url=base_url, timeout=2, retries=0) as client:
        with pytest.raises(TransportError) as caught:
            await client.usage()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_client_history_is_the_raw_answer_bucket_by_bucket(
    db: Database, factory: Factory, environ: dict[str, str]
) -> None:
    _, key = await prepaid_account(factory)
    start = factory.clock()  # when the account spent
    with running_server(environ) as base_url:
        with Client(key, base_url=base_url) as client:
            period = client.history()
            hours = client.history(
                from_=from_micros(start, UTC), to=date(2026, 11, 26), granularity="hour"
            )
        async with AsyncClient(key, base_url=base_url) as aclient:
            again = await aclient.history()
        raw = httpx.get(
            f"{base_url}/api/users/me/usage/history", headers={"X-Api-Key": key}, timeout=10
        ).json()
    assert again == period
    assert (period.timezone, period.granularity) == (raw["timezone"], raw["granularity"])
    assert (period.start.isoformat(), period.end.isoformat()) == (raw["from"], raw["to"])
    assert len(period.buckets) == len(raw["buckets"])
    for bucket, sent in zip(period.buckets, raw["buckets"], strict=True):
        assert (bucket.start.isoformat(), bucket.end.isoformat()) == (sent["start"], sent["end"])
        assert [bucket.plan, bucket.purchased, bucket.postpaid] == list(sent["credit"].values())
        assert dict(bucket.operations) == sent["operations"]
    assert sum(bucket.spent for bucket in period.buckets) == 1.25  # a TTP and a 0.25 edit
    assert hours.granularity == "hour"
    assert hours.start == from_micros(start, UTC)
    assert sum(bucket.operations["ttp"] for bucket in hours.buckets) == 1

"""``AdminClient`` and ``AsyncAdminClient``: the operator API for the platform's services.

Each method builds its ``Call`` here once, for both clients: the request, the answer it
expects and whether the request may be sent twice. That last is decided per call, by
what a second arrival would do on the server:

- sent again after any retryable failure (a transport error, ``502``-``504``, ``429``):
  ``get_user`` and ``user_usage`` (reads), ``change_plan`` (setting the plan twice sets it once),
  ``revoke_key`` (a revoked key stays revoked, with its first time), ``charge`` (its
  idempotency key makes the second arrival a replay of the first answer), ``buy_credits``
  (as ``charge``: a key of its own, sent by every attempt), ``refund``
  (a charge is refunded once; the second arrival is ``AlreadyRefunded``), ``hold`` (as
  ``charge``), ``settle_hold`` and ``release_hold`` (the same call again answers its
  first answer) and ``list_holds``;
- sent again only when it surely never reached the server (no connection was made) or
  the server refused it before doing anything (``429``): ``create_user`` and
  ``create_key``. A second arrival would make a second key (the server takes no
  idempotency key for these) or a ``UserExists`` that hides the first answer; after a
  lost answer they raise ``TransportError`` and the caller checks.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal, TypeVar
from urllib.parse import quote

import httpx

from ._admin_models import (
    ChargeResult,
    CreatedKey,
    Hold,
    HoldResult,
    PlanChange,
    PurchaseResult,
    User,
)
from ._answers import json_record, no_content
from ._models import UsageInfo
from ._transport import DEFAULT_BASE_URL, AsyncBase, Call, SyncBase
from ._webhooks import (
    CreatedWebhook,
    WebhookDelivery,
    WebhookEndpoint,
    delivery_list,
    endpoint_list,
    secret_of,
)

__all__ = ["AdminClient", "AsyncAdminClient"]

_Effective = Literal["now", "next_period"]
_T = TypeVar("_T")

#: Visible ASCII: what an ``Authorization`` header carries without breaking the request.
_BEARER = re.compile(r"[!-~]+")
#: The server's rule: 1-255 printable ASCII characters, no space at either end.
_IDEMPOTENCY_KEY = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")


def _check_bearer(token: object) -> str:
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if not _BEARER.fullmatch(token):
        raise ValueError("token must be non-empty visible ASCII without spaces")
    return token


def _check_id(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive id")
    return value


def _check_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def _check_credits(value: object, name: str) -> int | float:
    """A positive, finite amount of credits, sent as given (an int stays an int)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a positive finite number")
    return value


def _check_instant(value: object, name: str) -> str | None:
    """An aware datetime as ISO 8601, the server's format; None stays None."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime or None, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with tzinfo)")
    return value.isoformat()


def _check_external_id(value: object) -> str:
    """The platform's user id, a string or a whole number, sent as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _check_text(value, "external_id")


def _check_idempotency_key(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"idempotency_key must be a str, not {type(value).__name__}")
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise ValueError(
            "idempotency_key must be 1-255 printable ASCII characters, no space at either end"
        )
    return value


def _present(**fields: object) -> dict[str, object]:
    """The body's optional fields that were given: None means "leave it out"."""
    return {name: value for name, value in fields.items() if value is not None}


def _create_user(
    email: object, plan: object, external_id: object, anchor: object, password: object
) -> Call[User]:
    body = {
        "email": _check_text(email, "email"),
        "plan": _check_text(plan, "plan"),
        **_present(
            externalId=None if external_id is None else _check_external_id(external_id),
            anchor=_check_instant(anchor, "anchor"),
            password=None if password is None else _check_text(password, "password"),
        ),
    }
    return Call(
        "POST", "/api/admin/users", json_record(User.from_json), 201, json=body, idempotent=False
    )


def _get_user(user_id: object) -> Call[User]:
    path = f"/api/admin/users/{_check_id(user_id, 'user_id')}"
    return Call("GET", path, json_record(User.from_json))


def _user_usage(user_id: object) -> Call[UsageInfo]:
    path = f"/api/admin/users/{_check_id(user_id, 'user_id')}/usage"
    return Call("GET", path, json_record(UsageInfo.from_dto))


def _change_plan(user_id: object, plan: object, effective: object) -> Call[PlanChange]:
    if effective not in ("now", "next_period"):
        raise ValueError(f"effective must be 'now' or 'next_period', not {effective!r:.40}")
    path = f"/api/admin/users/{_check_id(user_id, 'user_id')}/plan"
    body = {"plan": _check_text(plan, "plan"), "effective": effective}
    return Call("PUT", path, json_record(PlanChange.from_json), json=body)


def _create_key(user_id: object, name: object, expires_at: object) -> Call[CreatedKey]:
    path = f"/api/admin/users/{_check_id(user_id, 'user_id')}/keys"
    body = _present(
        name=None if name is None else _check_text(name, "name"),
        expiresAt=_check_instant(expires_at, "expires_at"),
    )
    return Call("POST", path, json_record(CreatedKey.from_json), 201, json=body, idempotent=False)


def _revoke_key(key_id: object) -> Call[None]:
    path = f"/api/admin/keys/{_check_id(key_id, 'key_id')}/revoke"
    return Call("POST", path, no_content, 204)


def _replayable(parse: Callable[[object, bool], _T]) -> Callable[[httpx.Response], _T]:
    """A reader of an answer the server may replay: ``parse`` of the body, told whether
    it came marked ``Idempotent-Replayed: true``."""

    def read(response: httpx.Response) -> _T:
        replayed = response.headers.get("idempotent-replayed") == "true"
        return json_record(lambda data: parse(data, replayed))(response)

    return read


_read_purchase = _replayable(
    lambda data, replayed: PurchaseResult.from_json(data, replayed=replayed)
)
_read_charge = _replayable(lambda data, replayed: ChargeResult.from_json(data, replayed=replayed))
_read_hold = _replayable(lambda data, replayed: HoldResult.from_json(data, replayed=replayed))


def _keyed_post(
    path: str,
    read: Callable[[httpx.Response], _T],
    body: Mapping[str, object],
    idempotency_key: object,
) -> Call[_T]:
    """A POST made once per idempotency key (a new UUID4 when None), which every retry
    sends again: the server answers a second arrival with the first answer."""
    key = str(uuid.uuid4()) if idempotency_key is None else _check_idempotency_key(idempotency_key)
    headers = {"Idempotency-Key": key}
    return Call("POST", path, read, 201, json=body, headers=headers, idempotency_key=key)


def _buy_credits(
    user_id: object, amount: object, expires_at: object, idempotency_key: object
) -> Call[PurchaseResult]:
    path = f"/api/admin/users/{_check_id(user_id, 'user_id')}/credits"
    body = {
        "amount": _check_credits(amount, "amount"),
        **_present(expiresAt=_check_instant(expires_at, "expires_at")),
    }
    return _keyed_post(path, _read_purchase, body, idempotency_key)


def _charge(
    user_id: object, kind: object, cost: object, idempotency_key: object
) -> Call[ChargeResult]:
    body = {
        "userId": _check_id(user_id, "user_id"),
        "kind": _check_text(kind, "kind"),
        **_present(cost=None if cost is None else _check_credits(cost, "cost")),
    }
    return _keyed_post("/api/admin/charges", _read_charge, body, idempotency_key)


def _refund(idempotency_key: object) -> Call[ChargeResult]:
    key = _check_idempotency_key(idempotency_key)
    path = f"/api/admin/charges/{quote(key, safe='')}/refund"
    return Call("POST", path, json_record(ChargeResult.from_json), idempotency_key=key)


def _hold(
    user_id: object, kind: object, cost: object, ttl_seconds: object, idempotency_key: object
) -> Call[HoldResult]:
    body = {
        "userId": _check_id(user_id, "user_id"),
        "kind": _check_text(kind, "kind"),
        **_present(
            cost=None if cost is None else _check_credits(cost, "cost"),
            ttlSeconds=None if ttl_seconds is None else _check_id(ttl_seconds, "ttl_seconds"),
        ),
    }
    return _keyed_post("/api/admin/holds", _read_hold, body, idempotency_key)


def _settle_hold(hold_id: object, cost: object) -> Call[HoldResult]:
    path = f"/api/admin/holds/{_check_id(hold_id, 'hold_id')}/settle"
    return Call("POST", path, _read_hold, json={"cost": _check_credits(cost, "cost")})


def _release_hold(hold_id: object) -> Call[HoldResult]:
    return Call("POST", f"/api/admin/holds/{_check_id(hold_id, 'hold_id')}/release", _read_hold)


def _list_holds(user_id: object) -> Call[list[Hold]]:
    path = f"/api/admin/users/{_check_id(user_id, 'user_id')}/holds"
    return Call("GET", path, json_record(Hold.list_from_json))


def _create_webhook(url: object, events: object, description: object) -> Call[CreatedWebhook]:
    if not isinstance(events, list | tuple) or not all(isinstance(e, str) for e in events):
        raise TypeError("events must be a list of event type names")
    body = {
        "url": _check_text(url, "url"),
        "events": list(events),
        **_present(
            description=None if description is None else _check_text(description, "description")
        ),
    }
    read = json_record(CreatedWebhook.from_json)
    return Call("POST", "/api/admin/webhooks", read, 201, json=body, idempotent=False)


def _list_webhooks() -> Call[list[WebhookEndpoint]]:
    return Call("GET", "/api/admin/webhooks", json_record(endpoint_list))


def _webhook_path(webhook_id: object) -> str:
    return f"/api/admin/webhooks/{_check_id(webhook_id, 'webhook_id')}"


def _delete_webhook(webhook_id: object) -> Call[None]:
    return Call("DELETE", _webhook_path(webhook_id), no_content, 204)


def _rotate_webhook_secret(webhook_id: object) -> Call[str]:
    path = f"{_webhook_path(webhook_id)}/rotate"
    return Call("POST", path, json_record(secret_of), idempotent=False)


def _webhook_deliveries(webhook_id: object) -> Call[list[WebhookDelivery]]:
    return Call("GET", f"{_webhook_path(webhook_id)}/deliveries", json_record(delivery_list))


def _redeliver_webhook(webhook_id: object, delivery_id: object) -> Call[WebhookDelivery]:
    delivery = _check_id(delivery_id, "delivery_id")
    path = f"{_webhook_path(webhook_id)}/deliveries/{delivery}/redeliver"
    return Call("POST", path, json_record(WebhookDelivery.from_json), 202)


class AdminClient(SyncBase):
    """The operator API (``/api/admin/...``) with the server's admin token: users, their
    plans, API keys, purchased credit, charges and refunds. See the package docs."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        deadline: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            {"Authorization": f"Bearer {_check_bearer(token)}"},
            shown="",
            base_url=base_url,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            deadline=deadline,
            transport=transport,
        )

    def create_user(
        self,
        email: str,
        plan: str,
        *,
        external_id: str | int | None = None,
        anchor: datetime | None = None,
        password: str | None = None,
    ) -> User:
        """A new user on the plan named ``plan``; ``external_id`` is the platform's id for
        them (its sessions name the user by it), ``anchor`` when their periods start
        (default now), ``password`` for this service's own sign-in page. Sent once:
        ``UserExists`` if the email or external id is taken."""
        return self._send(_create_user(email, plan, external_id, anchor, password))

    def get_user(self, user_id: int) -> User:
        """The user: email, plan, anchor and external id; ``UserNotFound`` for an unknown id."""
        return self._send(_get_user(user_id))

    def user_usage(self, user_id: int) -> UsageInfo:
        """The user's usage, as they would read it; ``UserNotFound`` for an unknown id."""
        return self._send(_user_usage(user_id))

    def change_plan(self, user_id: int, plan: str, *, effective: _Effective = "now") -> PlanChange:
        """Move the user to the plan named ``plan``: ``"now"`` (the period and its counts
        stay; the plan credit becomes the new allowance less what was spent from plan
        credit this period) or at the ``"next_period"`` start."""
        return self._send(_change_plan(user_id, plan, effective))

    def create_key(
        self, user_id: int, *, name: str | None = None, expires_at: datetime | None = None
    ) -> CreatedKey:
        """A new API key for the user; its secret, ``.key``, is in this answer only. Sent once."""
        return self._send(_create_key(user_id, name, expires_at))

    def revoke_key(self, key_id: int) -> None:
        """Revoke the key at once; revoking it again changes nothing."""
        self._send(_revoke_key(key_id))

    def buy_credits(
        self,
        user_id: int,
        amount: float,
        *,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> PurchaseResult:
        """Add ``amount`` purchased credits, spent after the plan's, until ``expires_at``
        (default never), at most once per ``idempotency_key`` (default a new UUID4, sent
        again by every retry). ``IdempotencyKeyReused`` when the key named another
        purchase. Any error carries the key (``error.idempotency_key``): buying again
        with it is safe; pass your own (the order's id) to make it safe across restarts."""
        return self._send(_buy_credits(user_id, amount, expires_at, idempotency_key))

    def charge(
        self,
        user_id: int,
        kind: str,
        *,
        cost: float | None = None,
        idempotency_key: str | None = None,
    ) -> ChargeResult:
        """Charge one operation of ``kind`` (``cost`` credits, default the server's price
        for the kind), at most once per ``idempotency_key`` (default a new UUID4, sent
        again by every retry). Refusals: ``InsufficientCredit``, ``LimitExceeded``;
        ``IdempotencyKeyReused`` when the key named another charge. Any error carries the
        key (``error.idempotency_key``): charging again with it is safe."""
        return self._send(_charge(user_id, kind, cost, idempotency_key))

    def refund(self, idempotency_key: str) -> ChargeResult:
        """Reverse the charge made with ``idempotency_key``, once: what it took goes back
        to the pools it came from. ``AlreadyRefunded`` the second time."""
        return self._send(_refund(idempotency_key))

    def hold(
        self,
        user_id: int,
        kind: str,
        *,
        cost: float | None = None,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> HoldResult:
        """Reserve credit for a long job of ``kind``: at most ``cost`` credits (default the
        server's price), released by itself after ``ttl_seconds`` (default 900, at most
        86400) unless settled. Checked and taken as a charge is, once per
        ``idempotency_key`` (default a new UUID4); the same refusals as ``charge``."""
        return self._send(_hold(user_id, kind, cost, ttl_seconds, idempotency_key))

    def settle_hold(self, hold_id: int, cost: float) -> HoldResult:
        """Keep ``cost`` (at most the held cost) and give the rest back. Final:
        ``HoldNotActive`` for any other call on the hold afterwards."""
        return self._send(_settle_hold(hold_id, cost))

    def release_hold(self, hold_id: int) -> HoldResult:
        """Give back everything the hold took: the job failed. Final, as settling is."""
        return self._send(_release_hold(hold_id))

    def list_holds(self, user_id: int) -> list[Hold]:
        """The user's active holds, oldest first."""
        return self._send(_list_holds(user_id))

    def create_webhook(
        self, url: str, events: list[str], *, description: str | None = None
    ) -> CreatedWebhook:
        """Register an endpoint for ``events``; its signing secret, ``.secret``, is in
        this answer only. Sent once."""
        return self._send(_create_webhook(url, events, description))

    def list_webhooks(self) -> list[WebhookEndpoint]:
        """Every endpoint, without secrets."""
        return self._send(_list_webhooks())

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete the endpoint and its delivery log; ``NotFound`` for an unknown id."""
        self._send(_delete_webhook(webhook_id))

    def rotate_webhook_secret(self, webhook_id: int) -> str:
        """A new signing secret for the endpoint, in this answer only. Sent once."""
        return self._send(_rotate_webhook_secret(webhook_id))

    def webhook_deliveries(self, webhook_id: int) -> list[WebhookDelivery]:
        """The endpoint's delivery log, newest first."""
        return self._send(_webhook_deliveries(webhook_id))

    def redeliver_webhook(self, webhook_id: int, delivery_id: int) -> WebhookDelivery:
        """Send a delivery again now, with its webhook-id (receivers deduplicate by it)."""
        return self._send(_redeliver_webhook(webhook_id, delivery_id))


class AsyncAdminClient(AsyncBase):
    """The asyncio twin of ``AdminClient``: the same calls, awaited; ``await aclose()``."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        deadline: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            {"Authorization": f"Bearer {_check_bearer(token)}"},
            shown="",
            base_url=base_url,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            deadline=deadline,
            transport=transport,
        )

    async def create_user(
        self,
        email: str,
        plan: str,
        *,
        external_id: str | int | None = None,
        anchor: datetime | None = None,
        password: str | None = None,
    ) -> User:
        """See ``AdminClient.create_user``."""
        return await self._send(_create_user(email, plan, external_id, anchor, password))

    async def get_user(self, user_id: int) -> User:
        """See ``AdminClient.get_user``."""
        return await self._send(_get_user(user_id))

    async def user_usage(self, user_id: int) -> UsageInfo:
        """See ``AdminClient.user_usage``."""
        return await self._send(_user_usage(user_id))

    async def change_plan(
        self, user_id: int, plan: str, *, effective: _Effective = "now"
    ) -> PlanChange:
        """See ``AdminClient.change_plan``."""
        return await self._send(_change_plan(user_id, plan, effective))

    async def create_key(
        self, user_id: int, *, name: str | None = None, expires_at: datetime | None = None
    ) -> CreatedKey:
        """See ``AdminClient.create_key``."""
        return await self._send(_create_key(user_id, name, expires_at))

    async def revoke_key(self, key_id: int) -> None:
        """See ``AdminClient.revoke_key``."""
        await self._send(_revoke_key(key_id))

    async def buy_credits(
        self,
        user_id: int,
        amount: float,
        *,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> PurchaseResult:
        """See ``AdminClient.buy_credits``."""
        return await self._send(_buy_credits(user_id, amount, expires_at, idempotency_key))

    async def charge(
        self,
        user_id: int,
        kind: str,
        *,
        cost: float | None = None,
        idempotency_key: str | None = None,
    ) -> ChargeResult:
        """See ``AdminClient.charge``."""
        return await self._send(_charge(user_id, kind, cost, idempotency_key))

    async def refund(self, idempotency_key: str) -> ChargeResult:
        """See ``AdminClient.refund``."""
        return await self._send(_refund(idempotency_key))

    async def hold(
        self,
        user_id: int,
        kind: str,
        *,
        cost: float | None = None,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> HoldResult:
        """See ``AdminClient.hold``."""
        return await self._send(_hold(user_id, kind, cost, ttl_seconds, idempotency_key))

    async def settle_hold(self, hold_id: int, cost: float) -> HoldResult:
        """See ``AdminClient.settle_hold``."""
        return await self._send(_settle_hold(hold_id, cost))

    async def release_hold(self, hold_id: int) -> HoldResult:
        """See ``AdminClient.release_hold``."""
        return await self._send(_release_hold(hold_id))

    async def list_holds(self, user_id: int) -> list[Hold]:
        """See ``AdminClient.list_holds``."""
        return await self._send(_list_holds(user_id))

    async def create_webhook(
        self, url: str, events: list[str], *, description: str | None = None
    ) -> CreatedWebhook:
        """Register an endpoint for ``events``; its signing secret, ``.secret``, is in
        this answer only. Sent once."""
        return await self._send(_create_webhook(url, events, description))

    async def list_webhooks(self) -> list[WebhookEndpoint]:
        """Every endpoint, without secrets."""
        return await self._send(_list_webhooks())

    async def delete_webhook(self, webhook_id: int) -> None:
        """Delete the endpoint and its delivery log; ``NotFound`` for an unknown id."""
        await self._send(_delete_webhook(webhook_id))

    async def rotate_webhook_secret(self, webhook_id: int) -> str:
        """A new signing secret for the endpoint, in this answer only. Sent once."""
        return await self._send(_rotate_webhook_secret(webhook_id))

    async def webhook_deliveries(self, webhook_id: int) -> list[WebhookDelivery]:
        """The endpoint's delivery log, newest first."""
        return await self._send(_webhook_deliveries(webhook_id))

    async def redeliver_webhook(self, webhook_id: int, delivery_id: int) -> WebhookDelivery:
        """Send a delivery again now, with its webhook-id (receivers deduplicate by it)."""
        return await self._send(_redeliver_webhook(webhook_id, delivery_id))

"""The response bodies of our operations, and the one way they are sent: ``body_response``.

Each is built from the domain value it shows (``of``), with credit amounts as the usage
read writes them (``money.credits_value``: an integer when whole) and instants as ISO
8601 with their offset. Every field is always there, ``null`` when it has no value, in
the order declared: clients and tests read these bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

import msgspec
import orjson
from msgspec import Meta

from flamel_usage.accounts import users as accounts
from flamel_usage.auth import credentials as auth
from flamel_usage.core.inputs import MAX_INT
from flamel_usage.core.money import credits_value
from flamel_usage.core.periods import PeriodUnit, from_micros
from flamel_usage.http.bodies.fields import IdempotencyKey, credits, shown_instant
from flamel_usage.http.routing import JSON_HEADERS, Response
from flamel_usage.ledger import balances as ledger
from flamel_usage.ledger.history import Granularity, History
from flamel_usage.metering import outcomes as metering
from flamel_usage.metering import purchases
from flamel_usage.webhooks import endpoints as webhooks

#: Where the seed's schema of the usage read is; answers that include a user's usage
#: show it in exactly that form.
USAGE_SCHEMA_REF = "#/components/schemas/UsageInfoDto"

#: A user's usage, the seed's ``UsageInfoDto``, as ``Usage.to_dto`` writes it.
UsageDto = Annotated[msgspec.Raw, Meta(extra_json_schema={"$ref": USAGE_SCHEMA_REF})]


def usage_dto(usage: ledger.Usage) -> msgspec.Raw:
    return msgspec.Raw(orjson.dumps(usage.to_dto()))


def _shown(us: int) -> str:
    return from_micros(us).isoformat()


def _shown_if_any(us: int | None) -> str | None:
    return None if us is None else _shown(us)


class ResponseBody(msgspec.Struct, rename="camel"):
    """The base of every response body: camelCase in JSON, every field written."""


def body_response(
    body: ResponseBody, status: int = 200, headers: Iterable[tuple[bytes, bytes]] = ()
) -> Response:
    """The answer with ``body``. (The usage read's DTO, a dict, goes out through
    ``routing.json_response`` instead: orjson writes a dict faster, on the hot path.)"""
    return Response(status, msgspec.json.encode(body), [*JSON_HEADERS, *headers])


class ErrorEnvelope(ResponseBody):
    """The body of every error response."""

    success: Annotated[bool, Meta(extra_json_schema={"enum": [False]})]
    code: Annotated[int, Meta(description="The HTTP status, repeated.")]
    data: Annotated[
        str,
        Meta(
            pattern="^[a-z][a-z0-9_]*$",
            description="snake_case reason a client can branch on.",
            examples=["bad_request"],
        ),
    ]
    message: Annotated[str, Meta(description="Optional human-readable detail.")] | (
        msgspec.UnsetType
    ) = msgspec.UNSET


class LoginResponse(ResponseBody):
    expires_at: Annotated[str, shown_instant("When the session expires.")]


_Limit = Annotated[int, Meta(ge=0, le=MAX_INT)]


class Plan(ResponseBody):
    id: int
    name: Annotated[
        str,
        Meta(
            description="As created. Plans made before names were unique ignoring case may"
            " have a name outside today's rules (a later namesake got ' #<id>' appended).",
            examples=["Pro Monthly"],
        ),
    ]
    period_unit: PeriodUnit
    max_credit: Annotated[float, credits("Plan credit per period")]
    max_ttp_count: Annotated[
        _Limit | None, Meta(description="TTP charges per period; null = unlimited.")
    ]
    max_edit_count: Annotated[
        _Limit | None, Meta(description="Edit charges per period; null = unlimited.")
    ]
    billing_mode: Annotated[
        accounts.BillingMode,
        Meta(description="prepaid refuses charges beyond the credit; postpaid accrues them."),
    ]

    @classmethod
    def of(cls, plan: accounts.Plan) -> Plan:
        return cls(
            plan.id,
            plan.name,
            plan.period_unit,
            credits_value(plan.max_credit),
            plan.max_ttp,
            plan.max_edit,
            plan.billing_mode,
        )


class PlanList(ResponseBody):
    plans: list[Plan]


class User(ResponseBody):
    id: int
    email: Annotated[str, Meta(examples=["user@example.com"])]
    plan: Annotated[str, Meta(description="Plan name.")]
    anchor: Annotated[str, shown_instant("Subscription anchor.")]
    external_id: Annotated[
        str | None, Meta(description="The platform's id of this user; null = none.")
    ]

    @classmethod
    def of(cls, user: accounts.User) -> User:
        return cls(user.id, user.email, user.plan_name, user.anchor.isoformat(), user.external_id)


_KeyId = Annotated[int, Meta(description="Key id (not the secret).")]
_KeyPrefix = Annotated[str, Meta(description="Recognisable start of the key.")]
_KeyName = Annotated[str | None, Meta(description="The key's name; null = none.")]
_CreatedAt = Annotated[str, shown_instant("Creation time.")]
_ExpiresAt = Annotated[str | None, shown_instant("Expiry; null = never.")]


class CreatedKey(ResponseBody):
    """A new key, with its secret: the one answer that ever shows it."""

    id: _KeyId
    user_id: int
    key: Annotated[str, Meta(description="The secret for X-Api-Key. Shown only in this response.")]
    prefix: _KeyPrefix
    name: _KeyName
    created_at: _CreatedAt
    expires_at: _ExpiresAt

    @classmethod
    def of(cls, issued: auth.IssuedKey) -> CreatedKey:
        return cls(
            issued.id,
            issued.user_id,
            issued.key,
            issued.prefix,
            issued.name,
            _shown(issued.created_at),
            _shown_if_any(issued.expires_at),
        )


class KeyInfo(ResponseBody):
    """A key in a listing, the operator's and its owner's alike: never the secret."""

    id: _KeyId
    prefix: _KeyPrefix
    name: _KeyName
    state: Annotated[
        auth.KeyState,
        Meta(description="revoked: never works again; expired: past expiresAt; else active."),
    ]
    created_at: _CreatedAt
    expires_at: _ExpiresAt
    revoked_at: Annotated[str | None, shown_instant("Revocation time; null = live.")]
    last_used_at: Annotated[
        str | None,
        shown_instant("Last authenticated use (recorded within a minute); null = never."),
    ]

    @classmethod
    def of(cls, key: auth.KeyInfo, now: int) -> KeyInfo:
        return cls(
            key.id,
            key.prefix,
            key.name,
            key.state(now),
            _shown(key.created_at),
            _shown_if_any(key.expires_at),
            _shown_if_any(key.revoked_at),
            _shown_if_any(key.last_used_at),
        )


class KeyList(ResponseBody):
    keys: list[KeyInfo]

    @classmethod
    def of(cls, keys: Iterable[auth.KeyInfo], now: int) -> KeyList:
        return cls([KeyInfo.of(key, now) for key in keys])


class CreditPurchase(ResponseBody):
    id: int
    amount: Annotated[float, credits("Credit bought")]
    expires_at: Annotated[str | None, shown_instant("Expiry of this purchase; null = never.")]
    created_at: Annotated[str, shown_instant("Purchase time.")]


class BuyCreditsResponse(ResponseBody):
    purchase: CreditPurchase
    usage: UsageDto

    @classmethod
    def of(cls, purchase: purchases.Purchase, usage: ledger.Usage) -> BuyCreditsResponse:
        bought = CreditPurchase(
            purchase.id,
            credits_value(purchase.amount),
            _shown_if_any(purchase.expires_at),
            _shown(purchase.created_at),
        )
        return cls(bought, usage_dto(usage))


class ChangePlanResponse(ResponseBody):
    plan: Annotated[str, Meta(description="The plan in force now.")]
    pending_plan: Annotated[
        str | None, Meta(description="The plan that takes over at the next period start.")
    ]
    usage: UsageDto

    @classmethod
    def of(cls, subscription: accounts.Subscription, usage: ledger.Usage) -> ChangePlanResponse:
        return cls(subscription.plan, subscription.pending_plan, usage_dto(usage))


class Charge(ResponseBody):
    """One charge: what it cost and which pools paid for it."""

    id: int
    idempotency_key: Annotated[
        IdempotencyKey, Meta(description="The Idempotency-Key the charge was made with.")
    ]
    user_id: int
    kind: Annotated[str, Meta(examples=["ttp"])]
    cost: Annotated[float, credits("What the operation cost")]
    from_plan_credit: Annotated[float, credits("Part taken from the period's plan credit")]
    from_purchased_credit: Annotated[
        float, credits("Part taken from purchased credit, soonest-expiring first")
    ]
    postpaid: Annotated[float, credits("Part accrued as postpaid usage (0 on prepaid plans)")]
    created_at: Annotated[str, shown_instant("When the charge was made.")]
    refunded_at: Annotated[str | None, shown_instant("When it was refunded; null = not refunded.")]


class ChargeResult(ResponseBody):
    charge: Charge
    usage: UsageDto


class Hold(ResponseBody):
    """One hold: what it reserved, and what it holds now (active), kept (settled) or
    nothing (released or expired), per pool."""

    hold_id: int
    idempotency_key: Annotated[
        IdempotencyKey, Meta(description="The Idempotency-Key the hold was made with.")
    ]
    user_id: int
    kind: Annotated[str, Meta(examples=["image"])]
    state: Annotated[
        metering.HoldState,
        Meta(description="expired: released by itself, unsettled by expiresAt."),
    ]
    held: Annotated[float, credits("What the hold reserved")]
    cost: Annotated[float, credits("What it holds now, kept when settled, 0 when released")]
    from_plan_credit: Annotated[float, credits("Part of cost from the period's plan credit")]
    from_purchased_credit: Annotated[float, credits("Part of cost from purchased credit")]
    postpaid: Annotated[float, credits("Part of cost accrued as postpaid usage")]
    expires_at: Annotated[str, shown_instant("When it is released by itself unless settled.")]
    created_at: Annotated[str, shown_instant("When the hold was made.")]
    finished_at: Annotated[
        str | None, shown_instant("When it was settled, released or expired; null = active.")
    ]

    @classmethod
    def of(cls, hold: metering.Hold) -> Hold:
        return cls(
            hold.id,
            hold.idempotency_key,
            hold.user_id,
            hold.kind,
            hold.state,
            credits_value(hold.held),
            credits_value(hold.cost),
            credits_value(hold.from_plan),
            credits_value(hold.from_purchased),
            credits_value(hold.postpaid),
            _shown(hold.expires_at),
            _shown(hold.created_at),
            _shown_if_any(hold.finished_at),
        )


class HoldResult(ResponseBody):
    hold: Hold
    usage: UsageDto


class HoldList(ResponseBody):
    holds: Annotated[list[Hold], Meta(description="Active holds, oldest first.")]


class HistoryCredit(ResponseBody):
    """The credit a bucket's charges took, per pool."""

    plan: Annotated[float, credits("Plan credit spent", ge=0)]
    purchased: Annotated[float, credits("Purchased credit spent", ge=0)]
    postpaid: Annotated[float, credits("Accrued as postpaid usage", ge=0)]


class UsageHistoryBucket(ResponseBody):
    start: Annotated[str, shown_instant("Start of the bucket, with the billing zone's offset.")]
    end: Annotated[str, shown_instant("End of the bucket (excluded).")]
    credit: HistoryCredit
    operations: Annotated[
        dict[str, Annotated[int, Meta(ge=0)]],
        Meta(
            description="Charges per operation kind: every configured kind, zero included.",
            examples=[{"ttp": 3, "edit": 1, "image": 0}],
        ),
    ]


class UsageHistory(ResponseBody):
    timezone: Annotated[
        str,
        Meta(
            description="The billing zone (IANA name) the buckets are days or hours of.",
            examples=["Asia/Seoul"],
        ),
    ]
    granularity: Granularity
    start: Annotated[str, shown_instant("Start of the range, with the billing zone's offset.")] = (
        msgspec.field(name="from")
    )
    end: Annotated[
        str, shown_instant("End of the range (excluded), with the billing zone's offset.")
    ] = msgspec.field(name="to")
    buckets: Annotated[
        list[UsageHistoryBucket],
        Meta(
            description="One per calendar day or hour of the billing zone, in order, tiling"
            " [from, to): the first and last may be partial, a day across a DST change has"
            " 23 or 25 hours. Empty ones are there, at zero."
        ),
    ]

    @classmethod
    def of(cls, history: History) -> UsageHistory:
        # Each bucket ends where the next starts: one ISO string per boundary (a month
        # of hours has 745 of them).
        starts = [bucket.start.isoformat() for bucket in history.buckets]
        ends = [*starts[1:], history.end.isoformat()]
        buckets = [
            UsageHistoryBucket(
                bucket_start,
                bucket_end,
                HistoryCredit(
                    credits_value(bucket.plan),
                    credits_value(bucket.purchased),
                    credits_value(bucket.postpaid),
                ),
                dict(bucket.operations),
            )
            for bucket, bucket_start, bucket_end in zip(history.buckets, starts, ends, strict=True)
        ]
        return cls(history.timezone, history.granularity, starts[0], ends[-1], buckets)


class ReconcileReport(ResponseBody):
    ok: Annotated[bool, Meta(description="True when balances match the ledger.")]
    problems: Annotated[
        list[str], Meta(description="One line per account whose stored balance disagrees.")
    ]


class HealthStatus(ResponseBody):
    """What ``/healthz`` and ``/readyz`` answer; for probes, so not in the document."""

    status: Literal["ok", "ready"]


class WebhookEndpoint(ResponseBody):
    """An endpoint as listed: never its secret."""

    id: int
    url: str
    events: list[str]
    description: str | None
    enabled: Annotated[
        bool,
        Meta(description="false: disabled after 3 days of failures; a redelivery enables it."),
    ]
    created_at: Annotated[str, shown_instant("Registration time.")]
    disabled_at: Annotated[str | None, shown_instant("When it was disabled; null = enabled.")]

    @classmethod
    def of(cls, endpoint: webhooks.Endpoint) -> WebhookEndpoint:
        return cls(
            endpoint.id,
            endpoint.url,
            list(endpoint.events),
            endpoint.description,
            endpoint.enabled,
            _shown(endpoint.created_at),
            _shown_if_any(endpoint.disabled_at),
        )


_WebhookSecret = Annotated[
    str,
    Meta(
        description="The signing secret (whsec_ and base64), for a Standard Webhooks verifier."
        " Shown only in this response.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    ),
]


class CreatedWebhookEndpoint(ResponseBody):
    endpoint: WebhookEndpoint
    secret: _WebhookSecret


class WebhookEndpointList(ResponseBody):
    endpoints: list[WebhookEndpoint]


class WebhookSecret(ResponseBody):
    id: int
    secret: _WebhookSecret


class WebhookDelivery(ResponseBody):
    """One event for one endpoint: its attempts so far."""

    id: int
    endpoint_id: int
    webhook_id: Annotated[
        str, Meta(description="The webhook-id header: the same on every attempt.")
    ]
    type: Annotated[str, Meta(examples=["usage.threshold_reached"])]
    user_id: int
    status: Annotated[
        Literal["pending", "delivered", "failed"],
        Meta(description="failed: retried for a day (or the endpoint was disabled)."),
    ]
    attempts: int
    created_at: Annotated[str, shown_instant("When the event was written (or redelivered).")]
    next_attempt_at: Annotated[str, shown_instant("When it is (or was last) due.")]
    last_attempt_at: Annotated[str | None, shown_instant("Last attempt; null = none yet.")]
    last_status: Annotated[
        int | None, Meta(description="HTTP status of the last attempt; null = no answer.")
    ]
    last_error: Annotated[str | None, Meta(description="Why the last attempt failed.")]
    delivered_at: Annotated[str | None, shown_instant("When a 2xx came back.")]

    @classmethod
    def of(cls, delivery: webhooks.Delivery) -> WebhookDelivery:
        status: Literal["pending", "delivered", "failed"]
        if delivery.status == "delivered":
            status = "delivered"
        elif delivery.status == "failed":
            status = "failed"
        else:
            status = "pending"
        return cls(
            delivery.id,
            delivery.endpoint_id,
            delivery.message_id,
            delivery.event_type,
            delivery.user_id,
            status,
            delivery.attempts,
            _shown(delivery.created_at),
            _shown(delivery.next_attempt_at),
            _shown_if_any(delivery.last_attempt_at),
            delivery.last_status,
            delivery.last_error,
            _shown_if_any(delivery.delivered_at),
        )


class WebhookDeliveryList(ResponseBody):
    deliveries: list[WebhookDelivery]

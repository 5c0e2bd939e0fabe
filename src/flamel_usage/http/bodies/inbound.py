"""The request bodies of our operations, read by ``reading.read_body``.

Every one refuses unknown fields: a misspelt ``maxTtpCount`` must be an error, never a
silently unlimited plan. Field names are camelCase in JSON, snake_case here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from flamel_usage.accounts.users import (
    EMAIL_PATTERN,
    EXTERNAL_ID_PATTERN,
    MAX_EMAIL_LENGTH,
    MAX_EXTERNAL_ID,
    MAX_PLAN_NAME,
    PLAN_NAME_PATTERN,
    BillingMode,
)
from flamel_usage.auth.credentials import KEY_NAME_PATTERN, MAX_KEY_NAME
from flamel_usage.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from flamel_usage.core.inputs import MAX_INT
from flamel_usage.core.periods import PeriodUnit
from flamel_usage.http.bodies.fields import (
    EXPIRY_EXAMPLE,
    NO_NUL,
    CountLimit,
    CreditAllowance,
    CreditAmount,
    Instant,
    credits,
    sent_instant,
)
from flamel_usage.metering.holds import DEFAULT_TTL_SECONDS as DEFAULT_HOLD_TTL_SECONDS
from flamel_usage.metering.holds import MAX_TTL_SECONDS as MAX_HOLD_TTL_SECONDS
from flamel_usage.webhooks.addresses import MAX_URL_LENGTH
from flamel_usage.webhooks.endpoints import MAX_DESCRIPTION
from flamel_usage.webhooks.events import EVENT_TYPES

#: A key name as sent: generous room for surrounding spaces, which are trimmed.
_SENT_KEY_NAME = MAX_KEY_NAME * 4


class RequestBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """The base of every request body: camelCase in JSON, unknown fields refused."""

    #: Added to the generated schema (``http/openapi/schemas.py``), for what a field's
    #: type cannot say.
    json_schema_extra: ClassVar[dict[str, Any]] = {}


_Email = Annotated[str, Meta(max_length=MAX_EMAIL_LENGTH, pattern=NO_NUL)]
#: Tells readers and tools that a field is a password (Swagger UI masks it).
_PASSWORD = Meta(extra_json_schema={"format": "password"})
_PlanRef = Annotated[
    str, Meta(max_length=MAX_PLAN_NAME, pattern=NO_NUL, description="Name of an existing plan.")
]
_KEY_NAME_RULES = (
    f"1-{MAX_KEY_NAME} characters once trimmed, no control or invisible (format) character,"
    " such as a zero-width space or a bidirectional control"
)
_KeyName = Annotated[
    str,
    Meta(
        max_length=_SENT_KEY_NAME,
        description=f"What the key is for, shown with it: {_KEY_NAME_RULES}; null or absent ="
        " no name.",
        examples=["CI pipeline"],
        extra_json_schema={"pattern": KEY_NAME_PATTERN},
    ),
]


class LoginRequest(RequestBody):
    email: Annotated[_Email, Meta(examples=["user@example.com"])]
    password: Annotated[str, Meta(max_length=MAX_PASSWORD_LENGTH, pattern=NO_NUL), _PASSWORD]


_TtpLimit = Annotated[
    CountLimit, Meta(description="TTP charges per period; null or absent = unlimited.")
]
_EditLimit = Annotated[
    CountLimit, Meta(description="Edit charges per period; null or absent = unlimited.")
]


class CreatePlanRequest(RequestBody):
    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_PLAN_NAME,
            description="Plan name, unique ignoring case: letters, digits, space, '.', '_' or"
            " '-', starting with a letter or digit and not ending with a space.",
            examples=["Pro Monthly"],
            extra_json_schema={"pattern": PLAN_NAME_PATTERN},
        ),
    ]
    period_unit: PeriodUnit
    max_credit: Annotated[CreditAllowance, credits("Plan credit per period")]
    max_ttp_count: _TtpLimit | None = None
    max_edit_count: _EditLimit | None = None
    billing_mode: Annotated[
        BillingMode | None,
        Meta(
            description="prepaid refuses charges beyond the credit; postpaid accrues them."
            " null or absent = prepaid."
        ),
    ] = "prepaid"


_Anchor = Annotated[
    Instant, sent_instant("Subscription start that periods are anchored at; null or absent = now.")
]
_NewPassword = Annotated[
    str,
    Meta(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        pattern=NO_NUL,
        description="Lets the user log in; without it (null or absent) the user has only API keys.",
    ),
    _PASSWORD,
]


_EXTERNAL_ID_RULES = (
    f"unique among live users, kept exactly: 1-{MAX_EXTERNAL_ID} characters with no space at"
    " either end and no control or invisible (format) character"
)
_ExternalId = Annotated[
    str,
    Meta(
        max_length=MAX_EXTERNAL_ID,
        description="The platform's id of this user, which its sessions carry (passport.user"
        " unless configured; a number there is its decimal digits here): "
        f"{_EXTERNAL_ID_RULES}; null or absent = none.",
        examples=["64f1c2a9e8"],
        extra_json_schema={"pattern": EXTERNAL_ID_PATTERN},
    ),
]


class CreateUserRequest(RequestBody):
    email: Annotated[
        str,
        Meta(
            max_length=MAX_EMAIL_LENGTH,
            description="Stored trimmed, lower-cased and in Unicode NFC; must be unique (so"
            " compared that way). No control or invisible (format) character, such as a"
            " zero-width space or a bidirectional control.",
            examples=["user@example.com"],
            extra_json_schema={"pattern": EMAIL_PATTERN},
        ),
    ]
    plan: _PlanRef
    anchor: _Anchor | None = None
    password: _NewPassword | None = None
    external_id: _ExternalId | None = None


_NewExternalId = Annotated[
    _ExternalId, Meta(description=f"New externalId; null = none; {_EXTERNAL_ID_RULES}.")
]


class UpdateUserRequest(RequestBody):
    external_id: _NewExternalId | None


_KeyExpiry = Annotated[
    Instant, sent_instant("Expiry, in the future; null or absent = never.", EXPIRY_EXAMPLE)
]


class CreateKeyRequest(RequestBody):
    name: _KeyName | None = None
    expires_at: _KeyExpiry | None = None


_NewExpiry = Annotated[
    Instant, sent_instant("New expiry; null = never; absent = unchanged.", EXPIRY_EXAMPLE)
]
_NewName = Annotated[
    _KeyName, Meta(description=f"New name; null = none; absent = unchanged. {_KEY_NAME_RULES}.")
]


class UpdateKeyRequest(RequestBody):
    """A field left out stays as it is; null removes the expiry, the name."""

    json_schema_extra: ClassVar[dict[str, Any]] = {"minProperties": 1}

    expires_at: _NewExpiry | UnsetType | None = UNSET
    name: _NewName | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        if self.expires_at is UNSET and self.name is UNSET:
            raise ValueError("expiresAt or name is required (null removes the expiry, the name)")


_PurchaseExpiry = Annotated[
    Instant, sent_instant("Expiry of this purchase, in the future; null = never.", EXPIRY_EXAMPLE)
]


class BuyCreditsRequest(RequestBody):
    amount: Annotated[CreditAmount, credits("Credit bought")]
    expires_at: _PurchaseExpiry | None = None


class ChangePlanRequest(RequestBody):
    plan: Annotated[_PlanRef, Meta(description="Name of the plan to move to.")]
    effective: Annotated[
        Literal["now", "next_period"] | None,
        Meta(
            description="now (or null, or absent): new allowance from now, counts kept;"
            " next_period: from the next period start."
        ),
    ] = "now"


_Cost = Annotated[
    CreditAmount, credits("What this operation costs; default: the kind's configured cost")
]


_Kind = Annotated[
    str,
    Meta(
        max_length=32,
        pattern=NO_NUL,
        description="An operation kind from the server configuration"
        " (FLAMEL_OPERATION_COSTS; ttp, edit and image by default).",
        examples=["ttp"],
    ),
]


class CreateChargeRequest(RequestBody):
    user_id: Annotated[int, Meta(ge=1, le=MAX_INT, description="The user to charge.")]
    kind: _Kind
    cost: _Cost | UnsetType = UNSET


class CreateHoldRequest(RequestBody):
    user_id: Annotated[int, Meta(ge=1, le=MAX_INT, description="The user to hold credit of.")]
    kind: _Kind
    cost: (
        Annotated[
            CreditAmount,
            credits("The most the operation may cost; default: the kind's configured cost"),
        ]
        | UnsetType
    ) = UNSET
    ttl_seconds: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_HOLD_TTL_SECONDS,
                description=f"Seconds until the hold is released by itself unless settled;"
                f" default {DEFAULT_HOLD_TTL_SECONDS}.",
            ),
        ]
        | UnsetType
    ) = UNSET


class SettleHoldRequest(RequestBody):
    cost: Annotated[
        CreditAllowance,
        credits("What the operation cost, at most the held cost; the rest goes back"),
    ]


#: An event type; checked by ``webhooks.endpoints.event_types``, which names the known ones.
_EventType = Annotated[str, Meta(max_length=64, extra_json_schema={"enum": list(EVENT_TYPES)})]


class CreateWebhookRequest(RequestBody):
    url: Annotated[
        str,
        Meta(
            max_length=MAX_URL_LENGTH,
            description="https, to a host that resolves to public addresses only (plain http"
            " and private addresses only with FLAMEL_WEBHOOK_ALLOW_PRIVATE).",
            examples=["https://hooks.example.com/flamel"],
        ),
    ]
    events: Annotated[
        list[_EventType],
        Meta(min_length=1, max_length=4, description="The event types to send, distinct."),
    ]
    description: (
        Annotated[
            str,
            Meta(
                max_length=MAX_DESCRIPTION,
                pattern=NO_NUL,
                description="What the endpoint is for; null or absent = none.",
            ),
        ]
        | None
    ) = None

"""The Python SDK of Flamel's ``GET /api/users/me/usage``, its history, and the operator
API the platform's services charge through.

It speaks the public contract only (``UsageInfoDto``, the history's JSON, the admin
API's JSON and the error envelope), so it works against any server of this API:
``flamel-usage serve`` on ``http://127.0.0.1:4010`` (the default) or Flamel's own
(``https://beta.flamel.app``). It needs only ``httpx``: importing it loads none of the
server's code or dependencies.

Example::

    from flamel_usage.client import Client, ApiKeyExpired

    with Client("flm_...", base_url="http://127.0.0.1:4010") as client:
        try:
            info = client.usage()
        except ApiKeyExpired:
            raise SystemExit("time for a new API key")
    print(f"{info.total_credit_left} credits left until {info.period_end:%Y-%m-%d}")
    print(f"{info.fraction_used:.0%} of the plan used; TTP left: {info.ttp_left}")

``AsyncClient`` is the same for asyncio (``async with``, ``await client.usage()``).

Where the credit went, per day of the current period (``history()``)::

    with Client("flm_...") as client:
        history = client.history()  # or history(date(2026, 11, 1), date(2026, 12, 1))
    for day in history.buckets:
        print(f"{day.start:%m-%d} {day.spent:>8g}  {dict(day.operations)}")

Credentials
    ``Client(api_key)`` sends ``X-Api-Key``; ``Client(session_cookie=value)`` sends
    ``Cookie: connect.sid=<value>`` (the value exactly as ``POST /api/auth/login`` set
    it). With both, both are sent and the server lets the key win; with neither, the
    server answers ``NotLoggedIn``. The library never reads the environment for
    credentials (no implicit ``FLAMEL_API_KEY``): pass the key explicitly, e.g.
    ``Client(os.environ["FLAMEL_API_KEY"])``. httpx's own settings from the
    environment (proxies, CA bundle) apply as in httpx.

Options (every client)
    ``base_url`` (default ``http://127.0.0.1:4010``), ``timeout`` in seconds for each
    attempt (connect, read, write; default 10), ``retries`` (default 2; 0 disables),
    ``backoff`` (default 0.2 s), ``deadline`` (default 60 s: no attempt and no wait goes
    past it, counted from the start of the call), ``transport`` (an
    ``httpx.BaseTransport``, or an ``httpx.AsyncBaseTransport`` for the async clients:
    e.g. ``httpx.MockTransport`` in tests). Every request has
    ``User-Agent: flamel-usage-python/<version>``. Close a client with ``close()`` /
    ``await aclose()`` or use it as a context manager.

Retries
    A call is tried again, at most ``retries`` times and within its ``deadline``, after
    a connection failure, a timeout or a broken answer from the network
    (``TransportError``), after ``502``, ``503``, ``504`` (``ServerError``) and after
    ``429`` (``RateLimited``). It waits ``backoff * 2**attempt`` seconds (0.2, 0.4, ...,
    at most 10), or the server's ``Retry-After`` when one is sent; a ``Retry-After``
    longer than 60 s, or past the deadline, is not waited for: the error is raised at
    once, with ``retry_after`` set. Only calls that may reach the server twice are
    retried after the request may have arrived: the reads, and on ``AdminClient``
    ``change_plan``, ``revoke_key``, ``charge`` and ``buy_credits`` (the same idempotency
    key each time) and ``refund``. ``create_user`` and ``create_key`` are sent again only
    when no connection was made, or after a ``429``. Every other answer is never retried.

The answer: ``UsageInfo``
    A frozen record of the contract's fields in snake_case: ``current_credit``,
    ``additional_credit``, ``max_credit``, ``period``, ``ttp_count``,
    ``max_ttp_count``, ``edit_count``, ``max_edit_count``, ``postpaid_usage_count``
    (None means unlimited, or prepaid). Whole numbers stay ``int``. ``info.raw`` is the
    body as sent (camelCase, read-only) and ``info["currentCredit"]`` reads it. Helpers:
    ``total_credit_left``, ``fraction_used`` (of the plan credit, 0.0 to 1.0),
    ``period_start`` and ``period_end`` (aware datetimes), ``ttp_left`` and
    ``edits_left`` (None when unlimited), ``is_postpaid``. The body is parsed strictly:
    a missing field, a number sent as a string or a boolean, or a ``period`` that is
    not ``<start>/<end>`` with offsets raises ``InvalidResponse``; unknown fields are
    ignored.

The history: ``history(from_=None, to=None, granularity="day")`` -> ``UsageHistory``
    ``GET /api/users/me/usage/history``: the caller's spending over ``[from_, to)``, by
    default the current period. ``from_`` and ``to`` are each a ``date`` (midnight of
    that day in the billing zone) or an aware ``datetime``; ``granularity`` is
    ``"day"`` or ``"hour"`` (a naive datetime or another granularity is a
    ``ValueError``, raised before any request). ``UsageHistory`` has ``timezone`` (the
    billing zone's IANA name), ``granularity``, ``start`` and ``end`` (aware datetimes,
    the JSON's ``from`` and ``to``) and ``buckets``: a tuple of ``HistoryBucket``, one
    per calendar day (or hour) of the billing zone, clipped to the range, each with
    ``start``, ``end``, the credit spent per pool ``plan``, ``purchased`` and
    ``postpaid`` (net of refunds; ``int`` when whole, as in ``UsageInfo``), ``spent``
    (their sum) and ``operations`` (a read-only mapping of kind to count). It is parsed
    as strictly: a wrong type, a negative amount or buckets that do not follow one
    another from ``start`` to ``end`` raise ``InvalidResponse``. A range the server
    refuses (``from`` not before ``to``, longer than it allows) is an
    ``InvalidRequest`` with ``status`` 400 and the server's ``reason``.

The operator API: ``AdminClient(token)`` -> ``/api/admin/...``
    For the platform's services (a generation worker, the back end), with the server's
    ``FLAMEL_ADMIN_TOKEN`` sent as ``Authorization: Bearer``::

        from flamel_usage.client import AdminClient, ChargeRefused

        admin = AdminClient(os.environ["FLAMEL_ADMIN_TOKEN"], base_url=FLAMEL_URL)

        def run(job):
            key = f"render-{job.id}"  # one job is charged once, however often it is run
            try:
                admin.charge(job.user_id, "image", idempotency_key=key)
            except ChargeRefused as refusal:  # InsufficientCredit or LimitExceeded
                return job.refuse(refusal.reason)
            try:
                return job.render()
            except RenderFailed:
                admin.refund(key)  # everything the charge took goes back
                raise

    ``create_user(email, plan, external_id=, anchor=, password=)`` -> ``User``;
    ``get_user(user_id)`` -> ``User``; ``user_usage(user_id)`` -> ``UsageInfo``;
    ``change_plan(user_id, plan, effective="now" | "next_period")`` -> ``PlanChange``;
    ``create_key(user_id, name=, expires_at=)`` -> ``CreatedKey`` (its ``key`` is the
    secret, shown once);
    ``revoke_key(key_id)``; ``buy_credits(user_id, amount, expires_at=, idempotency_key=)``
    -> ``PurchaseResult`` (``purchase``, ``usage`` after it, ``replayed``);
    ``charge(user_id, kind, cost=, idempotency_key=)`` and
    ``refund(idempotency_key)`` -> ``ChargeResult`` (``charge``, ``usage`` after it,
    ``replayed``). ``AsyncAdminClient`` is the same with ``await``. Instants are aware
    datetimes; amounts in credits (``int`` when whole).

    A charge is applied at most once per idempotency key. Without one, ``charge()``
    makes a UUID4 and sends that same key on every retry, so a charge whose answer was
    lost is answered from the server's record (``replayed`` True), never charged twice.
    Pass your own key (the job's id) to make it safe across restarts of your worker;
    any error of ``charge()`` or ``refund()`` carries the key as ``idempotency_key``.
    ``buy_credits()`` does the same with a key of its own: a purchase is sold once.

Errors
    Every failure raises a ``FlamelError``, with ``status``, ``reason`` (the envelope's
    ``data``) and ``response`` when there was an answer::

        FlamelError
        ├── AuthenticationError     401 (any reason: admin_unauthorized...)
        │   ├── WrongApiKey         401 wrong_api_key
        │   └── ApiKeyExpired       401 api_key_expired
        ├── NotLoggedIn             403 not_logged_in
        ├── PermissionDenied        403 otherwise (admin_disabled...)
        ├── InvalidRequest          400 (bad_request, unknown_kind...), 413, 415, 431
        ├── NotFound                404
        │   └── UserNotFound, PlanNotFound, KeyNotFound, ChargeNotFound, HoldNotFound
        ├── Conflict                409
        │   └── UserExists, TooManyKeys, IdempotencyKeyReused, AlreadyRefunded,
        │       NotRefundable, HoldNotActive
        ├── ChargeRefused           the account cannot take the charge now
        │   ├── InsufficientCredit  402 insufficient_credit
        │   └── LimitExceeded       429 ttp_limit_exceeded, edit_limit_exceeded
        ├── RateLimited             429 otherwise; .retry_after in seconds, or None
        ├── ServerError             5xx, envelope or not (a proxy's HTML page)
        ├── InvalidResponse         not the contract's answer; .body is an excerpt
        └── TransportError          no answer; the httpx exception is __cause__

    Another status with the envelope (``405 method_not_allowed``...) is a plain
    ``FlamelError``; without it (a ``418`` in plain text, an HTML ``404``) it is
    ``InvalidResponse``. Invalid arguments raise ``TypeError`` or ``ValueError`` before
    anything is sent.
"""

from ._admin import AdminClient, AsyncAdminClient
from ._admin_models import (
    Charge,
    ChargeResult,
    CreatedKey,
    CreditPurchase,
    Hold,
    HoldResult,
    PlanChange,
    PurchaseResult,
    User,
)
from ._client import DEFAULT_BASE_URL, AsyncClient, Client
from ._exceptions import (
    AlreadyRefunded,
    ApiKeyExpired,
    AuthenticationError,
    ChargeNotFound,
    ChargeRefused,
    Conflict,
    FlamelError,
    HoldNotActive,
    HoldNotFound,
    IdempotencyKeyReused,
    InsufficientCredit,
    InvalidRequest,
    InvalidResponse,
    KeyNotFound,
    LimitExceeded,
    NotFound,
    NotLoggedIn,
    NotRefundable,
    PermissionDenied,
    PlanNotFound,
    RateLimited,
    ServerError,
    TooManyKeys,
    TransportError,
    UserExists,
    UserNotFound,
    WrongApiKey,
)
from ._models import HistoryBucket, UsageHistory, UsageInfo
from ._webhooks import (
    CreatedWebhook,
    InvalidWebhook,
    WebhookDelivery,
    WebhookEndpoint,
    verify_webhook,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "AdminClient",
    "AlreadyRefunded",
    "ApiKeyExpired",
    "AsyncAdminClient",
    "AsyncClient",
    "AuthenticationError",
    "Charge",
    "ChargeNotFound",
    "ChargeRefused",
    "ChargeResult",
    "Client",
    "Conflict",
    "CreatedKey",
    "CreatedWebhook",
    "CreditPurchase",
    "FlamelError",
    "HistoryBucket",
    "Hold",
    "HoldNotActive",
    "HoldNotFound",
    "HoldResult",
    "IdempotencyKeyReused",
    "InsufficientCredit",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidWebhook",
    "KeyNotFound",
    "LimitExceeded",
    "NotFound",
    "NotLoggedIn",
    "NotRefundable",
    "PermissionDenied",
    "PlanChange",
    "PlanNotFound",
    "PurchaseResult",
    "RateLimited",
    "ServerError",
    "TooManyKeys",
    "TransportError",
    "UsageHistory",
    "UsageInfo",
    "User",
    "UserExists",
    "UserNotFound",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WrongApiKey",
    "verify_webhook",
]

# Public names show where users import them from (``flamel_usage.client.Client``).
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value

"""The longer descriptions of ``operations``, kept apart so that the table reads as one."""

from __future__ import annotations

from flamel_usage.auth.credentials import MAX_LIVE_KEYS

MY_KEYS = """\
With the session cookie only: a request that sends X-Api-Key (valid or not; a blank one
counts as absent) is refused with 403 session_required, so that a key never mints or
revokes keys."""

_MY_KEYS_WRITE = (
    MY_KEYS
    + """ A request whose Origin names another site is refused with 403
origin_not_allowed."""
)

CREATE_MY_KEY = (
    _MY_KEYS_WRITE + " The secret is in this response only. At most"
    f" {MAX_LIVE_KEYS} live (neither revoked nor expired) keys per user."
)

REVOKE_MY_KEY = (
    _MY_KEYS_WRITE + " Revoking a key already revoked answers 204 again and keeps its first"
    " revocation time. Another user's key id is 404 key_not_found, as an unknown one is."
)

OWN_SIGN_IN_ONLY = (
    "Only while sessions are the server's own: when it reads the platform's session store"
    " (FLAMEL_SESSION_STORE), the platform signs customers in and out, and this answers 404"
    " not_found."
)

CHANGE_PLAN = (
    "Now: the current period and its counts stay; the plan credit becomes the new allowance"
    " less what plan credit already paid for this period. next_period: the change waits for"
    " the next period start. A change of period unit starts the new unit where the current"
    " period ends."
)

CHARGE = """\
Charges one operation, atomically: plan credit of the current period first, then
purchased credit (soonest-expiring first), then, on a postpaid plan, postpaid usage.
A prepaid charge that does not fit is refused whole (402 insufficient_credit), and a
TTP or edit charge beyond the plan's per-period limit is refused (429); a refusal
changes nothing.

The Idempotency-Key makes retries safe. The first answer for a key (201, 402 or 429)
is remembered; sending the same key and body again returns that same status and body
(usage as it was then), with the header `Idempotent-Replayed: true`, and charges
nothing. The same key with a different body is refused (409 idempotency_key_reused).
Other errors are not remembered: after fixing the request, sending it again is a
fresh attempt."""

BUY_CREDITS = """\
Purchased credit survives period ends until its own expiry.

Send an Idempotency-Key: the first answer for a key (201) is remembered, and sending the
same key and body again returns that same body (usage as it was then), with the header
`Idempotent-Replayed: true`, and sells nothing. The same key with a different body is
refused (409 idempotency_key_reused). The header is optional so that older clients keep
working, but without it a retry after a lost answer sells the credit twice."""

REFUND = """\
Reverses a successful charge, once. The charge is named by the Idempotency-Key it was
made with, URL-encoded in the path.

The refund restores exactly what the charge took, to the pools it came from: plan
credit, the same purchases, postpaid usage and the TTP/edit count. Purchased credit
that has expired since the charge stays expired, and plan credit of a period that has
ended is not restored; the ledger records such a part at zero, with the reason.
Postpaid usage and counts of an ended period are reversed against that period.

The answer's charge shows the charge's original split and its refundedAt; usage is
the user's usage after the refund."""

HISTORY = """\
The caller's spending per calendar day or hour of the billing zone, with the same
credentials as GET /api/users/me/usage. Each bucket holds what the charges made in it
took from plan credit, from purchased credit and as postpaid usage, and how many
operations of each kind; a refunded charge counts nowhere. Summed over the current
period, the buckets agree exactly with the usage read: the operations with ttpCount and
editCount, postpaid with postpaidUsageCount, and currentCredit is
max(0, min(maxCredit, maxCredit - plan)). Unknown query fields are ignored."""

HOLD = """\
Reserves credit for a long operation whose final cost is known only at its end. A hold
passes the same checks as a charge (402 insufficient_credit, 429 ttp_limit_exceeded or
edit_limit_exceeded), takes credit from the same pools in the same order and counts the
operation at once, all in one atomic step: the user's usage is exact while the job runs.

cost is the most the job may cost (default: the kind's configured cost); ttlSeconds
(default 900, at most 86400) is how long until the hold is released by itself unless
settled. The Idempotency-Key works as for a charge: the same key and body again get the
first answer, with Idempotent-Replayed: true.
"""

SETTLE_HOLD = """\
Keeps the actual cost (at most the held cost, else 400) and gives the rest back:
postpaid usage first, then purchased credit, then plan credit. Final: the same call
again returns the first answer with Idempotent-Replayed: true; any other call on a
settled, released or expired hold is 409 hold_not_active. What was taken from a period
that has ended stays with that period, as for refunds.
"""

RELEASE_HOLD = """\
Gives back everything the hold took, and the operation no longer counts (the job
failed). Final and idempotent as settling is. A hold that is neither settled nor
released by its expiresAt is released by itself.
"""

CREATE_WEBHOOK = """\
Events: usage.threshold_reached (plan credit used reaches each of FLAMEL_ALERT_THRESHOLDS),
credit.depleted (a prepaid account's credit reaches 0), limit.reached (the TTP or edit
count reaches its maximum), credit.expiring (purchased credit expires within
FLAMEL_ALERT_EXPIRY_DAYS); each fires at most once per user, threshold and period. Each
delivery is a POST of {"type", "timestamp", "data"} (data: userId, externalId when set,
the UsageInfoDto fields at that moment, and the event's own fields), signed per Standard
Webhooks with the secret in this answer (webhook-id, webhook-timestamp,
webhook-signature). A URL that is not https, or whose host resolves to a private,
loopback or link-local address, is refused (400 bad_request) unless the server allows
private addresses; it is checked again before every send."""

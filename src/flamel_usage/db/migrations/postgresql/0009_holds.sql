-- Holds (metering/holds.py): a hold is a charge whose cost may still shrink, kept in the
-- charge's own row, so plan credit due, the history and reconcile count it like one.
-- held: the cost reserved (NULL for a charge); hold_state: active, settled, released or
-- expired (released by itself); expires_at: when an active hold is released by itself;
-- finished_at and finish: when and by which call (with its answer's usage, replayed to
-- the same call again) it was settled or released.
ALTER TABLE charges ADD COLUMN held BIGINT;
ALTER TABLE charges ADD COLUMN hold_state TEXT;
ALTER TABLE charges ADD COLUMN expires_at BIGINT;
ALTER TABLE charges ADD COLUMN finished_at BIGINT;
ALTER TABLE charges ADD COLUMN finish TEXT;
CREATE INDEX charges_active_holds ON charges (user_id, expires_at) WHERE hold_state = 'active';

-- The earliest expiry among the account's active holds (NULL: none): the usage read and
-- the account's lock look at holds only once it has passed, so accounts without holds
-- pay nothing for them; the sweep finds the accounts to release holds of by it.
ALTER TABLE accounts ADD COLUMN hold_expiry BIGINT;
CREATE INDEX accounts_hold_expiry ON accounts (hold_expiry) WHERE hold_expiry IS NOT NULL;

-- The history leaves out active holds past their expiry (released on the next write):
-- the covering index of its read gains the two columns it filters them by.
DROP INDEX charges_user_spent;
CREATE INDEX charges_user_spent ON charges
    (user_id, created_at, status, refunded_at, kind, from_plan, from_purchased, postpaid,
     hold_state, expires_at);

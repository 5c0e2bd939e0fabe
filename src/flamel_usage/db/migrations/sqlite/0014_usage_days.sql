-- The usage history's daily rollup: per user, local day of the billing zone and
-- operation kind, what the charges that stand took from each pool and how many there
-- are, kept by the same writes as usage_hours (ledger/rollup.py), so that a history by
-- day sums one row per day and kind. `day` is the instant the local day starts
-- (microseconds; core/periods.local_midnight). The billing zone is a setting, so the
-- zone the rows are keyed in is recorded in usage_days_zone; a server that starts with
-- another zone configured, or finds no zone recorded (this migration leaves it empty),
-- rebuilds usage_days from the charges before it serves.
CREATE TABLE usage_days (
    user_id BIGINT NOT NULL,
    day BIGINT NOT NULL,
    kind TEXT NOT NULL,
    operations BIGINT NOT NULL,
    from_plan BIGINT NOT NULL,
    from_purchased BIGINT NOT NULL,
    postpaid BIGINT NOT NULL,
    PRIMARY KEY (user_id, day, kind)
) WITHOUT ROWID;

-- At most one row: the IANA name of the zone whose days usage_days holds.
CREATE TABLE usage_days_zone (
    zone TEXT NOT NULL
);

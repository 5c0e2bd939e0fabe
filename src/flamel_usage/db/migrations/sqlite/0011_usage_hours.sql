-- The usage history's rollup: per user, UTC hour and operation kind, what the charges
-- that stand took from each pool and how many there are. `hour` is the instant the
-- UTC hour starts (microseconds, a multiple of 3,600,000,000). Kept in the transaction
-- of each charge made (added) and each refund (taken back from the charge's hour), so
-- the history reads one row per hour and kind instead of every charge; reconcile checks
-- it against the ledger. A row whose charges were all refunded stays, at zero.
CREATE TABLE usage_hours (
    user_id BIGINT NOT NULL,
    hour BIGINT NOT NULL,
    kind TEXT NOT NULL,
    operations BIGINT NOT NULL,
    from_plan BIGINT NOT NULL,
    from_purchased BIGINT NOT NULL,
    postpaid BIGINT NOT NULL,
    PRIMARY KEY (user_id, hour, kind)
) WITHOUT ROWID;

-- Charges made before this migration.
INSERT INTO usage_hours (user_id, hour, kind, operations, from_plan, from_purchased, postpaid)
SELECT user_id, created_at / 3600000000 * 3600000000, kind, COUNT(*),
    SUM(from_plan), SUM(from_purchased), SUM(postpaid)
FROM charges
WHERE status = 201 AND refunded_at IS NULL
GROUP BY user_id, created_at / 3600000000 * 3600000000, kind;

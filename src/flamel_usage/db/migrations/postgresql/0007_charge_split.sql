-- What each charge took from each pool, on its own row (written in the charge's
-- transaction, zero for a refusal): plan credit, purchased credit, postpaid usage. The
-- usage history sums these over one index range of the user's standing charges, with no
-- join to the ledger; reconcile checks them against the charge's ledger entries.
ALTER TABLE charges ADD COLUMN from_plan BIGINT NOT NULL DEFAULT 0;
ALTER TABLE charges ADD COLUMN from_purchased BIGINT NOT NULL DEFAULT 0;
ALTER TABLE charges ADD COLUMN postpaid BIGINT NOT NULL DEFAULT 0;

-- Charges made before this migration: their split, from their ledger entries.
UPDATE charges SET
    from_plan = COALESCE((SELECT -SUM(e.amount) FROM ledger_entries e
        WHERE e.charge_id = charges.id AND e.entry_type = 'charge' AND e.pool = 'plan'), 0),
    from_purchased = COALESCE((SELECT -SUM(e.amount) FROM ledger_entries e
        WHERE e.charge_id = charges.id AND e.entry_type = 'charge' AND e.pool = 'purchase'), 0),
    postpaid = COALESCE((SELECT SUM(e.amount) FROM ledger_entries e
        WHERE e.charge_id = charges.id AND e.entry_type = 'charge' AND e.pool = 'postpaid'), 0)
WHERE status = 201;

-- Covers the history's read (the user's charges in a time range, with everything it
-- filters on and sums), so the read never visits the table. It replaces charges_user,
-- whose columns are its first two: whatever that served, this serves. Not partial on
-- standing charges: SQLite's planner preferred charges_user over such an index.
DROP INDEX charges_user;
CREATE INDEX charges_user_spent ON charges
    (user_id, created_at, status, refunded_at, kind, from_plan, from_purchased, postpaid);

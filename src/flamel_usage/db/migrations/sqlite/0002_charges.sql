-- Charges and their idempotency records, in one row: the key, a fingerprint of the
-- request that first used it, and the exact answer (status and body) given then, so a
-- replay returns the same answer, refusals included. Rows are never deleted: keys are
-- kept for the life of the ledger (the promise is at least 30 days).
CREATE TABLE charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    cost BIGINT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    period_start BIGINT,
    created_at BIGINT NOT NULL,
    refunded_at BIGINT
);
CREATE INDEX charges_user ON charges (user_id, created_at);

-- Which charge an entry belongs to: a refund reverses exactly these entries.
ALTER TABLE ledger_entries ADD COLUMN charge_id BIGINT REFERENCES charges (id);
CREATE INDEX ledger_entries_charge ON ledger_entries (charge_id);

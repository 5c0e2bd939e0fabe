-- Purchases take an Idempotency-Key (ledger/purchases.py): a purchase made with one
-- is also its key's record, in its own row, as a charge is in its: the key, a
-- fingerprint of the request that first used it, and the usage its answer showed, so
-- a retry is answered what the first request was and sells nothing. A purchase made
-- without a key keeps all three NULL, as does one whose record retention has retired.
ALTER TABLE credit_purchases ADD COLUMN idempotency_key TEXT;
ALTER TABLE credit_purchases ADD COLUMN fingerprint TEXT;
ALTER TABLE credit_purchases ADD COLUMN response TEXT;
-- Unique across users, as a charge's key is (docs/scaling.md: per user once sharded).
CREATE UNIQUE INDEX credit_purchases_idempotency_key ON credit_purchases (idempotency_key);
-- The records still holding their key, oldest first, for the retention's pruning.
CREATE INDEX credit_purchases_keyed_created ON credit_purchases (created_at)
    WHERE idempotency_key IS NOT NULL;

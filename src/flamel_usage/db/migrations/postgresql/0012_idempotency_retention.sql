-- Idempotency records are kept FLAMEL_IDEMPOTENCY_RETENTION_DAYS: the background pruning
-- (metering/idempotency.py) finds the records still holding their key, oldest first, here.
-- A retired record's key starts with a space, which no client's key does.
CREATE INDEX charges_keyed_created ON charges (created_at)
    WHERE substr(idempotency_key, 1, 1) <> ' ';

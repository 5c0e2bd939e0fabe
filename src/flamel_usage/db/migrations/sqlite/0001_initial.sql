-- Instants are integer microseconds since the Unix epoch (UTC); credit amounts are
-- integer millicredits. Both are exact and sort and compare the same on both stores.

CREATE TABLE plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    period_unit TEXT NOT NULL CHECK (period_unit IN ('month', 'year')),
    max_credit BIGINT NOT NULL CHECK (max_credit >= 0),
    max_ttp BIGINT CHECK (max_ttp >= 0),
    max_edit BIGINT CHECK (max_edit >= 0),
    billing_mode TEXT NOT NULL CHECK (billing_mode IN ('prepaid', 'postpaid')),
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);

-- A user's subscription and the balances of its current period: the usage read is one
-- row. period_start/period_end are the period these balances belong to; a read after
-- period_end shows a fresh period without writing, a write first rolls the row over.
CREATE TABLE accounts (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    plan_id BIGINT NOT NULL REFERENCES plans (id),
    anchor_at BIGINT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    plan_credit BIGINT NOT NULL CHECK (plan_credit >= 0),
    ttp_count BIGINT NOT NULL DEFAULT 0 CHECK (ttp_count >= 0),
    edit_count BIGINT NOT NULL DEFAULT 0 CHECK (edit_count >= 0),
    postpaid_used BIGINT NOT NULL DEFAULT 0 CHECK (postpaid_used >= 0)
);

CREATE TABLE credit_purchases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id),
    amount BIGINT NOT NULL CHECK (amount > 0),
    remaining BIGINT NOT NULL CHECK (remaining >= 0),
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_purchases_live ON credit_purchases (user_id, expires_at) WHERE remaining > 0;

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id),
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- Only a hash of the session id is stored: a copy of the database opens no session.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Append-only: every change of a balance or a count. amount is signed, in millicredits
-- for the credit pools (plan, purchase, postpaid) and in operations for the count pools
-- (ttp, edit). period_start ties plan, postpaid and count entries to their period.
CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id),
    at BIGINT NOT NULL,
    entry_type TEXT NOT NULL
        CHECK (entry_type IN ('period_start', 'purchase', 'grant', 'charge', 'refund', 'expiry')),
    pool TEXT NOT NULL CHECK (pool IN ('plan', 'purchase', 'postpaid', 'ttp', 'edit')),
    amount BIGINT NOT NULL,
    period_start BIGINT NOT NULL,
    purchase_id BIGINT REFERENCES credit_purchases (id),
    note TEXT
);
CREATE INDEX ledger_entries_user_period ON ledger_entries (user_id, period_start);
CREATE INDEX ledger_entries_purchase ON ledger_entries (purchase_id);

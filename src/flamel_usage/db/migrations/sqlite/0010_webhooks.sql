-- Webhooks (SPEC 9): the operator's endpoints, the outbox of events written in the
-- transaction of the change that caused them, one delivery row per endpoint and event
-- (the delivery log), and the alerts already fired, so each fires at most once per user,
-- alert and period.
CREATE TABLE webhook_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    failing_since BIGINT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE webhook_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- claimed_until is the lease of the dispatcher sending it: another one skips the row
-- until the lease ends (a dispatcher that died mid-send loses it, and the row is sent
-- again: at least once).
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BIGINT NOT NULL REFERENCES webhook_events (id),
    endpoint_id BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT,
    created_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_status INTEGER,
    last_error TEXT,
    delivered_at BIGINT
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, user_id, status, id);

CREATE TABLE webhook_alerts (
    user_id BIGINT NOT NULL,
    alert TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    fired_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, alert, period_start)
);

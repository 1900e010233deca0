-- Webhooks (issue 16): programs' endpoints, the events they subscribe to, and the outbox.
-- An event is written in the same transaction as the fact it reports (a final result, a meeting's
-- end, a ban); one delivery row per subscribed endpoint, claimed by one node at a time (a lease:
-- `claimed_until`), retried with backoff until delivered or past the retry window.
ALTER TABLE meetings ADD COLUMN started_at BIGINT;
UPDATE meetings SET started_at = (SELECT MIN(p.at) FROM presence p WHERE p.meeting_id = meetings.id);

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    program_id TEXT NOT NULL REFERENCES programs(id),
    url TEXT NOT NULL,
    description TEXT,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until BIGINT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT,
    disabled_reason TEXT,
    deleted_at BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX webhook_endpoints_program ON webhook_endpoints(program_id);

CREATE TABLE webhook_subscriptions (
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id),
    event_type TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, event_type)
);
CREATE INDEX webhook_subscriptions_type ON webhook_subscriptions(event_type, endpoint_id);

CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    program_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL REFERENCES webhook_events(id),
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id),
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT,
    claim_token TEXT,
    last_attempt_at BIGINT,
    last_status_code BIGINT,
    last_error TEXT,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, status, id);

CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries(id),
    endpoint_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);

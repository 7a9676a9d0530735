-- Events and webhooks. Events are written in the transaction of the change they describe
-- (a transactional outbox); each event fans out to one delivery per subscribed endpoint in that
-- same transaction, and the dispatcher works through due deliveries, recording every attempt.
CREATE TABLE events (
    id        TEXT    PRIMARY KEY,
    tenant_id TEXT    NOT NULL REFERENCES tenants (id),
    type      TEXT    NOT NULL,
    data      TEXT    NOT NULL,
    created   BIGINT  NOT NULL
);
CREATE INDEX events_tenant_type ON events (tenant_id, type, id);
CREATE INDEX events_tenant ON events (tenant_id, id);

CREATE TABLE webhook_endpoints (
    id                   TEXT    PRIMARY KEY,
    tenant_id            TEXT    NOT NULL REFERENCES tenants (id),
    url                  TEXT    NOT NULL,
    description          TEXT,
    -- JSON array of event types, or ["*"].
    enabled_events       TEXT    NOT NULL,
    status               TEXT    NOT NULL CHECK (status IN ('enabled', 'disabled')),
    disabled_reason      TEXT,
    -- Signing secrets, encrypted with webhooks.encryption_key; the previous one signs too until
    -- previous_secret_expires (secret rotation).
    secret               TEXT    NOT NULL,
    previous_secret      TEXT,
    previous_secret_expires BIGINT,
    -- Circuit breaker and automatic disabling.
    consecutive_failures BIGINT  NOT NULL DEFAULT 0,
    breaker_open_until   BIGINT,
    failing_since        BIGINT,
    created              BIGINT  NOT NULL,
    UNIQUE (tenant_id, id)
);

CREATE TABLE webhook_deliveries (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    endpoint_id     TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    -- A dispatcher's claim: nobody else sends this delivery before lease_until.
    lease_until     BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    created         BIGINT  NOT NULL,
    updated         BIGINT  NOT NULL,
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (event_id) REFERENCES events (id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

CREATE TABLE webhook_attempts (
    id               TEXT    PRIMARY KEY,
    tenant_id        TEXT    NOT NULL,
    delivery_id      TEXT    NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id      TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    attempted_at     BIGINT  NOT NULL,
    status_code      BIGINT,
    latency_ms       BIGINT  NOT NULL,
    error            TEXT,
    response_excerpt TEXT,
    created          BIGINT  NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);

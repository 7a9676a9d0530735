-- The billing core: keys, customers, invoices and their lines, payments, refunds, the ledger,
-- idempotency records and the audit trail. Every row carries its tenant, and references between
-- objects include the tenant so that one tenant's rows can never point at another's.
ALTER TABLE tenants ADD COLUMN invoice_prefix TEXT NOT NULL DEFAULT 'INV-';
-- The next invoice number; taken and incremented in the finalizing transaction, so numbers are gapless.
ALTER TABLE tenants ADD COLUMN next_invoice_number BIGINT NOT NULL DEFAULT 1;

CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    secret_hash TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    description TEXT,
    created     BIGINT  NOT NULL,
    last_used   BIGINT,
    revoked     BIGINT
);

CREATE TABLE customers (
    id        TEXT    PRIMARY KEY,
    tenant_id TEXT    NOT NULL REFERENCES tenants (id),
    name      TEXT,
    email     TEXT,
    currency  TEXT,
    metadata  TEXT    NOT NULL DEFAULT '{}',
    created   BIGINT  NOT NULL,
    UNIQUE (tenant_id, id)
);

CREATE TABLE invoices (
    id          TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency    TEXT    NOT NULL,
    number      TEXT,
    number_seq  BIGINT,
    due_date    BIGINT,
    subtotal    BIGINT  NOT NULL DEFAULT 0,
    tax         BIGINT  NOT NULL DEFAULT 0,
    total       BIGINT  NOT NULL DEFAULT 0,
    amount_paid     BIGINT NOT NULL DEFAULT 0,
    amount_refunded BIGINT NOT NULL DEFAULT 0,
    metadata    TEXT    NOT NULL DEFAULT '{}',
    created     BIGINT  NOT NULL,
    finalized_at            BIGINT,
    paid_at                 BIGINT,
    voided_at               BIGINT,
    marked_uncollectible_at BIGINT,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, number_seq),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    CHECK (total = subtotal + tax),
    CHECK (amount_paid >= 0 AND amount_paid <= total),
    CHECK (amount_refunded >= 0 AND amount_refunded <= amount_paid)
);
CREATE INDEX invoices_by_customer ON invoices (tenant_id, customer_id, id);
CREATE INDEX invoices_by_status ON invoices (tenant_id, status, id);

CREATE TABLE invoice_lines (
    id           TEXT    PRIMARY KEY,
    tenant_id    TEXT    NOT NULL,
    invoice_id   TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    quantity     BIGINT  NOT NULL CHECK (quantity > 0),
    unit_amount  BIGINT  NOT NULL CHECK (unit_amount >= 0),
    tax_rate_bps BIGINT,
    amount       BIGINT  NOT NULL,
    tax          BIGINT  NOT NULL,
    created      BIGINT  NOT NULL,
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX invoice_lines_by_invoice ON invoice_lines (invoice_id, id);

CREATE TABLE payments (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    invoice_id      TEXT    NOT NULL,
    customer_id     TEXT    NOT NULL,
    amount          BIGINT  NOT NULL CHECK (amount > 0),
    currency        TEXT    NOT NULL,
    amount_refunded BIGINT  NOT NULL DEFAULT 0,
    reference       TEXT,
    metadata        TEXT    NOT NULL DEFAULT '{}',
    created         BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, reference),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id),
    CHECK (amount_refunded >= 0 AND amount_refunded <= amount)
);
CREATE INDEX payments_by_invoice ON payments (tenant_id, invoice_id, id);

CREATE TABLE refunds (
    id          TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    payment_id  TEXT    NOT NULL,
    invoice_id  TEXT    NOT NULL,
    amount      BIGINT  NOT NULL CHECK (amount > 0),
    currency    TEXT    NOT NULL,
    reason      TEXT,
    metadata    TEXT    NOT NULL DEFAULT '{}',
    created     BIGINT  NOT NULL,
    FOREIGN KEY (tenant_id, payment_id) REFERENCES payments (tenant_id, id)
);
CREATE INDEX refunds_by_payment ON refunds (tenant_id, payment_id, id);

-- Append-only: a correction is a new entry, never an edit.
CREATE TABLE ledger_entries (
    id             TEXT    PRIMARY KEY,
    tenant_id      TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    account        TEXT    NOT NULL,
    customer_id    TEXT,
    amount         BIGINT  NOT NULL,
    currency       TEXT    NOT NULL,
    source_id      TEXT    NOT NULL,
    created        BIGINT  NOT NULL
);
CREATE INDEX ledger_entries_by_tenant ON ledger_entries (tenant_id, id);
CREATE INDEX ledger_entries_by_customer ON ledger_entries (tenant_id, customer_id, id);
-- dialect sqlite
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
-- dialect postgres
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only';
END;
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
-- dialect end

-- What each customer owes per currency: the running sum of their receivable postings.
CREATE TABLE customer_balances (
    tenant_id   TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    currency    TEXT    NOT NULL,
    balance     BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, currency)
);

CREATE TABLE idempotency_keys (
    tenant_id     TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    status_code   BIGINT  NOT NULL,
    response_body TEXT    NOT NULL,
    created       BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created);

CREATE TABLE audit_log (
    id         TEXT    PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    object_id  TEXT    NOT NULL,
    created    BIGINT  NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);

-- Credit notes: the document that reduces a finalized invoice (docs/billing.md). A credit note
-- credits lines of the invoice (or an amount), and its total goes, in this order, to what is
-- left to pay on the invoice, then to a refund of its payments and to the customer's credit
-- balance. Credit notes are numbered gaplessly per tenant, like invoices, and never change once
-- issued (append-only, as the ledger they post to).
-- dialect postgres
-- The columns added to tenants and invoices take a brief lock on each: never wait long for it.
SET LOCAL lock_timeout = '5s';
-- dialect end
ALTER TABLE tenants ADD COLUMN next_credit_note_number BIGINT NOT NULL DEFAULT 1;
-- What credit notes took off what was left to pay, and what they gave back after payment.
ALTER TABLE invoices ADD COLUMN pre_payment_credit_notes_amount BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN post_payment_credit_notes_amount BIGINT NOT NULL DEFAULT 0;

CREATE TABLE credit_notes (
    id          TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    number      TEXT    NOT NULL,
    number_seq  BIGINT  NOT NULL,
    invoice_id  TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    currency    TEXT    NOT NULL,
    reason      TEXT,
    memo        TEXT,
    subtotal    BIGINT  NOT NULL CHECK (subtotal >= 0),
    tax         BIGINT  NOT NULL CHECK (tax >= 0),
    total       BIGINT  NOT NULL CHECK (total > 0),
    pre_payment_amount BIGINT NOT NULL CHECK (pre_payment_amount >= 0),
    refund_amount      BIGINT NOT NULL CHECK (refund_amount >= 0),
    credit_amount      BIGINT NOT NULL CHECK (credit_amount >= 0),
    metadata    TEXT    NOT NULL DEFAULT '{}',
    created     BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, number_seq),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id),
    CHECK (total = subtotal + tax),
    CHECK (pre_payment_amount + refund_amount + credit_amount = total)
);
CREATE INDEX credit_notes_by_invoice ON credit_notes (tenant_id, invoice_id, id);
CREATE INDEX credit_notes_by_customer ON credit_notes (tenant_id, customer_id, id);

CREATE TABLE credit_note_lines (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    credit_note_id  TEXT    NOT NULL,
    -- The invoice line credited; NULL for a credit note of an amount.
    invoice_line_id TEXT,
    description     TEXT    NOT NULL,
    amount          BIGINT  NOT NULL CHECK (amount > 0),
    tax             BIGINT  NOT NULL CHECK (tax >= 0),
    created         BIGINT  NOT NULL,
    FOREIGN KEY (tenant_id, credit_note_id) REFERENCES credit_notes (tenant_id, id)
);
CREATE INDEX credit_note_lines_by_note ON credit_note_lines (tenant_id, credit_note_id, id);
CREATE INDEX credit_note_lines_by_invoice_line ON credit_note_lines (tenant_id, invoice_line_id);

-- dialect sqlite
CREATE TRIGGER credit_notes_no_update BEFORE UPDATE ON credit_notes
BEGIN SELECT RAISE(ABORT, 'credit notes are append-only'); END;
CREATE TRIGGER credit_notes_no_delete BEFORE DELETE ON credit_notes
BEGIN SELECT RAISE(ABORT, 'credit notes are append-only'); END;
CREATE TRIGGER credit_note_lines_no_update BEFORE UPDATE ON credit_note_lines
BEGIN SELECT RAISE(ABORT, 'credit notes are append-only'); END;
CREATE TRIGGER credit_note_lines_no_delete BEFORE DELETE ON credit_note_lines
BEGIN SELECT RAISE(ABORT, 'credit notes are append-only'); END;
-- dialect postgres
CREATE FUNCTION credit_notes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit notes are append-only';
END;
$$;
CREATE TRIGGER credit_notes_append_only BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION credit_notes_append_only();
CREATE TRIGGER credit_note_lines_append_only BEFORE UPDATE OR DELETE ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION credit_notes_append_only();
-- dialect end

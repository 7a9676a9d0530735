-- dialect postgres
SET LOCAL lock_timeout = '5s';
-- dialect end
DROP TABLE credit_note_lines;
DROP TABLE credit_notes;
-- dialect postgres
DROP FUNCTION credit_notes_append_only();
-- dialect end
ALTER TABLE invoices DROP COLUMN post_payment_credit_notes_amount;
ALTER TABLE invoices DROP COLUMN pre_payment_credit_notes_amount;
ALTER TABLE tenants DROP COLUMN next_credit_note_number;

-- Credit notes that deduct from their invoice's balance (Lago's `offset_amount_cents`): the
-- note's offset, and on the invoice the sum of its notes' offsets, which `total_due_amount_cents`
-- subtracts. A voided note keeps its offset: voiding drops only what is left to credit.
ALTER TABLE credit_notes
    ADD COLUMN offset_amount_cents bigint NOT NULL DEFAULT 0 CHECK (offset_amount_cents >= 0);
ALTER TABLE invoices
    ADD COLUMN offset_amount_cents bigint NOT NULL DEFAULT 0 CHECK (offset_amount_cents >= 0);

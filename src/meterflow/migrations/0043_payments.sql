-- Manual payments (`POST /api/v1/payments`): money a customer paid outside meterflow (a bank
-- transfer, a cheque) recorded against one finalized invoice. The invoice keeps the running
-- sum, which its `total_paid_amount_cents` shows and its amount due subtracts; once nothing is
-- due its payment status becomes `succeeded`.
CREATE TABLE payments (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    customer_id      uuid NOT NULL REFERENCES customers (id),
    invoice_id       uuid NOT NULL REFERENCES invoices (id),
    amount_cents     bigint NOT NULL CHECK (amount_cents > 0),
    currency         text NOT NULL,
    reference        text NOT NULL,
    paid_at          date NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_organization ON payments (organization_id, created_at DESC);
CREATE INDEX payments_invoice ON payments (invoice_id);
ALTER TABLE invoices
    ADD COLUMN paid_amount_cents bigint NOT NULL DEFAULT 0 CHECK (paid_amount_cents >= 0);

-- Add-ons, one-off invoices (their fees bill add-ons, no subscription), invoice void,
-- metadata and PDF files, and credit notes with their items.
CREATE TABLE add_ons (
    id                    uuid PRIMARY KEY,
    organization_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    code                  text NOT NULL,
    name                  text NOT NULL,
    invoice_display_name  text,
    description           text,
    amount_cents          bigint NOT NULL CHECK (amount_cents >= 0),
    amount_currency       text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz
);
-- A deleted add-on's code can be used again; fees keep pointing at the deleted row.
CREATE UNIQUE INDEX add_ons_code ON add_ons (organization_id, code) WHERE deleted_at IS NULL;

CREATE TABLE add_on_taxes (
    add_on_id  uuid NOT NULL REFERENCES add_ons (id) ON DELETE CASCADE,
    tax_id     uuid NOT NULL REFERENCES taxes (id) ON DELETE CASCADE,
    PRIMARY KEY (add_on_id, tax_id)
);

ALTER TABLE invoices
    ALTER COLUMN subscription_id DROP NOT NULL,
    ADD COLUMN voided_at timestamptz,
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '[]';

ALTER TABLE fees
    ALTER COLUMN subscription_id DROP NOT NULL,
    ADD COLUMN add_on_id uuid REFERENCES add_ons (id),
    ADD COLUMN description text;

-- The rendered PDF of an invoice, served at a URL holding `token` (a secret, as a
-- presigned URL is): made on the first download, kept.
CREATE TABLE invoice_files (
    invoice_id  uuid PRIMARY KEY REFERENCES invoices (id) ON DELETE CASCADE,
    token       text NOT NULL UNIQUE,
    pdf         bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credit_notes (
    id                                       uuid PRIMARY KEY,
    organization_id                          uuid NOT NULL REFERENCES organizations (id)
                                                 ON DELETE CASCADE,
    customer_id                              uuid NOT NULL REFERENCES customers (id),
    invoice_id                               uuid NOT NULL REFERENCES invoices (id),
    sequential_id                            integer NOT NULL,
    number                                   text NOT NULL,
    reason                                   text NOT NULL,
    description                              text,
    -- available, consumed, voided; NULL when nothing is credited (a refund only)
    credit_status                            text,
    -- pending, succeeded, failed; NULL when nothing is refunded
    refund_status                            text,
    currency                                 text NOT NULL,
    issuing_date                             date NOT NULL,
    taxes_rate                               numeric NOT NULL DEFAULT 0,
    taxes_amount_cents                       bigint NOT NULL,
    precise_taxes_amount_cents               numeric NOT NULL,
    coupons_adjustment_amount_cents          bigint NOT NULL,
    precise_coupons_adjustment_amount_cents  numeric NOT NULL,
    sub_total_excluding_taxes_amount_cents   bigint NOT NULL,
    total_amount_cents                       bigint NOT NULL,
    credit_amount_cents                      bigint NOT NULL,
    refund_amount_cents                      bigint NOT NULL,
    -- What is left to credit on the customer's next invoices.
    balance_amount_cents                     bigint NOT NULL CHECK (balance_amount_cents >= 0),
    applied_taxes                            jsonb NOT NULL DEFAULT '[]',
    metadata                                 jsonb NOT NULL DEFAULT '{}',
    voided_at                                timestamptz,
    created_at                               timestamptz NOT NULL DEFAULT now(),
    updated_at                               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (invoice_id, sequential_id)
);
CREATE INDEX credit_notes_listing ON credit_notes (organization_id, created_at DESC);
CREATE INDEX credit_notes_available ON credit_notes (customer_id, created_at)
    WHERE credit_status = 'available';

CREATE TABLE credit_note_items (
    id                    uuid PRIMARY KEY,
    credit_note_id        uuid NOT NULL REFERENCES credit_notes (id) ON DELETE CASCADE,
    fee_id                uuid NOT NULL REFERENCES fees (id),
    amount_cents          bigint NOT NULL CHECK (amount_cents > 0),
    precise_amount_cents  numeric NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_note_items_fee ON credit_note_items (fee_id);

-- Which invoice consumed how much of which credit note.
CREATE TABLE credit_note_uses (
    credit_note_id  uuid NOT NULL REFERENCES credit_notes (id) ON DELETE CASCADE,
    invoice_id      uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (credit_note_id, invoice_id)
);

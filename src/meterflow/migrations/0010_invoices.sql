-- Invoices the invoicer issues from closed periods, and their fees. `period_key` (the
-- subscription and the period's start) is unique: a closed period delivered twice, or a
-- replay of periods-closed, can never make a second invoice.
CREATE TABLE invoices (
    id                                      uuid PRIMARY KEY,
    organization_id                         uuid NOT NULL REFERENCES organizations (id)
                                                ON DELETE CASCADE,
    customer_id                             uuid NOT NULL REFERENCES customers (id),
    subscription_id                         uuid NOT NULL REFERENCES subscriptions (id),
    period_key                              text NOT NULL UNIQUE,
    sequential_id                           bigint NOT NULL,
    number                                  text NOT NULL,
    invoice_type                            text NOT NULL DEFAULT 'subscription',
    status                                  text NOT NULL,
    payment_status                          text NOT NULL DEFAULT 'pending',
    currency                                text NOT NULL,
    issuing_date                            date NOT NULL,
    period_start                            timestamptz NOT NULL,
    period_end                              timestamptz NOT NULL,
    fees_amount_cents                       bigint NOT NULL,
    coupons_amount_cents                    bigint NOT NULL DEFAULT 0,
    taxes_amount_cents                      bigint NOT NULL DEFAULT 0,
    sub_total_excluding_taxes_amount_cents  bigint NOT NULL,
    sub_total_including_taxes_amount_cents  bigint NOT NULL,
    prepaid_credit_amount_cents             bigint NOT NULL DEFAULT 0,
    credit_notes_amount_cents               bigint NOT NULL DEFAULT 0,
    total_amount_cents                      bigint NOT NULL,
    billing_periods                         jsonb NOT NULL DEFAULT '[]',
    -- A draft waits for the customer's grace period; NULL once finalized or when none.
    grace_until                             timestamptz,
    finalized_at                            timestamptz,
    closed_at                               timestamptz,
    created_at                              timestamptz NOT NULL DEFAULT now(),
    updated_at                              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, sequential_id)
);
CREATE INDEX invoices_listing ON invoices (organization_id, issuing_date DESC, created_at DESC);
CREATE INDEX invoices_drafts ON invoices (grace_until) WHERE status = 'draft';

-- The last invoice sequential_id of each customer (Lago numbers invoices per customer); the
-- row lock taken by the increment serialises two invoices of one customer.
CREATE TABLE invoice_sequences (
    customer_id         uuid PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    last_sequential_id  bigint NOT NULL
);

-- A charge fee remembers the aggregation state it priced (`aggregation`) and the period
-- whose usage it bills (`usage_period_start`), so that late events of that period are
-- priced on top of everything already invoiced for it.
CREATE TABLE fees (
    id                    uuid PRIMARY KEY,
    invoice_id            uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    subscription_id       uuid NOT NULL,
    position              integer NOT NULL,
    fee_type              text NOT NULL,
    charge_id             uuid,
    billable_metric_id    uuid,
    item_code             text NOT NULL,
    item_name             text NOT NULL,
    invoice_display_name  text,
    amount_cents          bigint NOT NULL,
    precise_amount        numeric NOT NULL,
    currency              text NOT NULL,
    units                 numeric NOT NULL,
    events_count          bigint,
    pay_in_advance        boolean NOT NULL DEFAULT false,
    invoiceable           boolean NOT NULL DEFAULT true,
    from_date             timestamptz NOT NULL,
    to_date               timestamptz NOT NULL,
    usage_period_start    timestamptz,
    is_adjustment         boolean NOT NULL DEFAULT false,
    aggregation           jsonb,
    amount_details        jsonb NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fees_invoice ON fees (invoice_id, position);
CREATE INDEX fees_usage ON fees (subscription_id, charge_id, usage_period_start)
    WHERE charge_id IS NOT NULL;

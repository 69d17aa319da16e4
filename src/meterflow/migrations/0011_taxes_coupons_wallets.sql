-- Taxes, coupons, wallets (prepaid credits) and the organization's own billing settings.
--
-- Taxes are deleted for good (as in Lago); the links to customers and plans go with them,
-- and invoices keep a snapshot of every tax they applied (`applied_taxes`), so a deleted
-- or changed tax never rewrites an issued invoice.

-- Lago's organization settings beyond name and timezone (billing_configuration,
-- net_payment_term, addresses...), as the API took them.
ALTER TABLE organizations ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';

CREATE TABLE taxes (
    id                       uuid PRIMARY KEY,
    organization_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    code                     text NOT NULL,
    name                     text NOT NULL,
    rate                     numeric NOT NULL CHECK (rate >= 0),
    description              text,
    applied_to_organization  boolean NOT NULL DEFAULT false,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, code)
);

CREATE TABLE customer_taxes (
    customer_id  uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    tax_id       uuid NOT NULL REFERENCES taxes (id) ON DELETE CASCADE,
    PRIMARY KEY (customer_id, tax_id)
);

CREATE TABLE plan_taxes (
    plan_id  uuid NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    tax_id   uuid NOT NULL REFERENCES taxes (id) ON DELETE CASCADE,
    PRIMARY KEY (plan_id, tax_id)
);

-- Coupons are soft-deleted (deleted_at) so that applied coupons and invoices still name
-- them; `status` turns 'terminated' on deletion or once expiration_at has passed.
CREATE TABLE coupons (
    id                  uuid PRIMARY KEY,
    organization_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    code                text NOT NULL,
    name                text NOT NULL,
    description         text,
    coupon_type         text NOT NULL,
    amount_cents        bigint,
    amount_currency     text,
    percentage_rate     numeric,
    frequency           text NOT NULL,
    frequency_duration  integer,
    reusable            boolean NOT NULL DEFAULT true,
    expiration          text NOT NULL DEFAULT 'no_expiration',
    expiration_at       timestamptz,
    status              text NOT NULL DEFAULT 'active',
    terminated_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE UNIQUE INDEX coupons_code ON coupons (organization_id, code) WHERE deleted_at IS NULL;

-- A coupon applied to a customer, with what is left of it. The invoicer changes the
-- remaining fields in the transaction that inserts the invoice they were used on, guarded
-- by their previous values, so a replayed period can never consume a coupon twice.
CREATE TABLE applied_coupons (
    id                            uuid PRIMARY KEY,
    organization_id               uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    coupon_id                     uuid NOT NULL REFERENCES coupons (id),
    customer_id                   uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    status                        text NOT NULL DEFAULT 'active',
    amount_cents                  bigint,
    amount_currency               text,
    percentage_rate               numeric,
    frequency                     text NOT NULL,
    frequency_duration            integer,
    frequency_duration_remaining  integer,
    amount_cents_remaining        bigint,
    created_at                    timestamptz NOT NULL DEFAULT now(),
    updated_at                    timestamptz NOT NULL DEFAULT now(),
    terminated_at                 timestamptz
);
CREATE INDEX applied_coupons_customer ON applied_coupons (customer_id, created_at)
    WHERE status = 'active';

-- Wallets hold prepaid credits; `balance_cents` is authoritative and credits are derived
-- from it through `rate_amount` (the price of one credit in the wallet's currency).
CREATE TABLE wallets (
    id                        uuid PRIMARY KEY,
    organization_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    customer_id               uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    name                      text,
    code                      text,
    status                    text NOT NULL DEFAULT 'active',
    currency                  text NOT NULL,
    rate_amount               numeric NOT NULL CHECK (rate_amount > 0),
    priority                  integer NOT NULL DEFAULT 50,
    balance_cents             bigint NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
    consumed_amount_cents     bigint NOT NULL DEFAULT 0,
    expiration_at             timestamptz,
    attributes                jsonb NOT NULL DEFAULT '{}',
    last_consumed_credit_at   timestamptz,
    terminated_at             timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wallets_customer ON wallets (customer_id) WHERE status = 'active';
CREATE UNIQUE INDEX wallets_code ON wallets (customer_id, code)
    WHERE status = 'active' AND code IS NOT NULL;

CREATE TABLE wallet_transactions (
    id                  uuid PRIMARY KEY,
    wallet_id           uuid NOT NULL REFERENCES wallets (id) ON DELETE CASCADE,
    invoice_id          uuid REFERENCES invoices (id) ON DELETE SET NULL,
    status              text NOT NULL,
    source              text NOT NULL DEFAULT 'manual',
    transaction_status  text NOT NULL,
    transaction_type    text NOT NULL,
    amount_cents        bigint NOT NULL,
    name                text,
    metadata            jsonb NOT NULL DEFAULT '[]',
    settled_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wallet_transactions_wallet ON wallet_transactions (wallet_id, created_at);
-- One consumption per wallet and invoice: finalizing twice cannot consume twice.
CREATE UNIQUE INDEX wallet_transactions_invoice ON wallet_transactions (wallet_id, invoice_id)
    WHERE transaction_type = 'outbound';

-- What the invoice applied, as Lago shows it: its taxes, and the coupon credits.
ALTER TABLE invoices
    ADD COLUMN applied_taxes jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN credits jsonb NOT NULL DEFAULT '[]';

ALTER TABLE fees
    ADD COLUMN precise_coupons_amount_cents numeric NOT NULL DEFAULT 0,
    ADD COLUMN taxes_amount_cents bigint NOT NULL DEFAULT 0,
    ADD COLUMN taxes_precise_amount_cents numeric NOT NULL DEFAULT 0,
    ADD COLUMN taxes_rate numeric NOT NULL DEFAULT 0,
    -- The fee's amount of each tax, by tax code ({code: {lago_id, amount_cents}}); names and
    -- rates are in its invoice's applied_taxes.
    ADD COLUMN applied_taxes jsonb NOT NULL DEFAULT '{}';

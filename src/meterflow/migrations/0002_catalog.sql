-- The catalog the ingest API serves: customers, billable metrics, plans with their charges
-- and subscriptions, each owned by one organization. External ids and codes are unique per
-- organization among live objects; deleted objects stay (deleted_at) so that ids remain
-- resolvable. `version` grows with every change and is the catalog record's version.
CREATE TABLE customers (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    external_id      text NOT NULL,
    sequential_id    bigint NOT NULL,
    name             text,
    email            text,
    currency         text,
    timezone         text,
    attributes       jsonb NOT NULL DEFAULT '{}',
    version          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE UNIQUE INDEX customers_external_id ON customers (organization_id, external_id)
    WHERE deleted_at IS NULL;

CREATE TABLE billable_metrics (
    id                uuid PRIMARY KEY,
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    code              text NOT NULL,
    name              text NOT NULL,
    aggregation_type  text NOT NULL,
    field_name        text,
    recurring         boolean NOT NULL DEFAULT false,
    filters           jsonb NOT NULL DEFAULT '[]',
    attributes        jsonb NOT NULL DEFAULT '{}',
    version           integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE UNIQUE INDEX billable_metrics_code ON billable_metrics (organization_id, code)
    WHERE deleted_at IS NULL;

CREATE TABLE plans (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    code             text NOT NULL,
    name             text NOT NULL,
    interval         text NOT NULL,
    amount_cents     bigint NOT NULL,
    amount_currency  text NOT NULL,
    pay_in_advance   boolean NOT NULL DEFAULT false,
    attributes       jsonb NOT NULL DEFAULT '{}',
    version          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE UNIQUE INDEX plans_code ON plans (organization_id, code) WHERE deleted_at IS NULL;

-- A charge lives inside its plan: it is published nested in the plan's record.
CREATE TABLE charges (
    id                  uuid PRIMARY KEY,
    plan_id             uuid NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    billable_metric_id  uuid NOT NULL REFERENCES billable_metrics (id),
    position            integer NOT NULL,
    charge_model        text NOT NULL,
    pay_in_advance      boolean NOT NULL DEFAULT false,
    invoiceable         boolean NOT NULL DEFAULT true,
    prorated            boolean NOT NULL DEFAULT false,
    min_amount_cents    bigint NOT NULL DEFAULT 0,
    properties          jsonb NOT NULL DEFAULT '{}',
    filters             jsonb NOT NULL DEFAULT '[]',
    attributes          jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX charges_plan ON charges (plan_id, position);
CREATE INDEX charges_billable_metric ON charges (billable_metric_id);

CREATE TABLE subscriptions (
    id                uuid PRIMARY KEY,
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    external_id       text NOT NULL,
    customer_id       uuid NOT NULL REFERENCES customers (id),
    plan_id           uuid NOT NULL REFERENCES plans (id),
    name              text,
    billing_time      text NOT NULL,
    subscription_at   timestamptz NOT NULL,
    started_at        timestamptz,
    ending_at         timestamptz,
    terminated_at     timestamptz,
    canceled_at       timestamptz,
    status            text NOT NULL,
    version           integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- One live subscription per external id; a terminated one frees the id for a new one.
CREATE UNIQUE INDEX subscriptions_external_id ON subscriptions (organization_id, external_id)
    WHERE status IN ('active', 'pending');
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

-- Catalog records written in the same transaction as the change they describe, then sent
-- to the catalog topic and deleted: a crash between commit and send delays a record, never
-- loses it.
CREATE TABLE catalog_outbox (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL,
    lago_id          uuid NOT NULL,
    organization_id  uuid NOT NULL,
    version          integer NOT NULL,
    body             jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Lifetime usage (`/api/v1/subscriptions/{external_id}/lifetime_usage`): the usage amount a
-- subscription had before meterflow billed it, as its owner states it. The rest of its
-- lifetime usage is read where it lives: the charge fees of its finalized invoices and the
-- aggregator's current usage. Keyed by the external id, which a plan change keeps.
CREATE TABLE lifetime_usages (
    id                                     uuid PRIMARY KEY,
    organization_id                        uuid NOT NULL REFERENCES organizations (id),
    external_subscription_id               text NOT NULL,
    external_historical_usage_amount_cents bigint NOT NULL DEFAULT 0
        CHECK (external_historical_usage_amount_cents >= 0),
    created_at                             timestamptz NOT NULL DEFAULT now(),
    updated_at                             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, external_subscription_id)
);

-- Usage alerts (`/api/v1/subscriptions/{external_id}/alerts`): thresholds on a subscription's
-- current usage (its amount, or one metric's amount or units). The webhooks service checks
-- each live alert every METERFLOW_ALERTS_INTERVAL seconds against the aggregator's current
-- usage: the thresholds crossed upward since `previous_value` are recorded in
-- `triggered_alerts` and announced (`alert.triggered`) in the same transaction that moves
-- `previous_value`, so a crossing is announced once.
CREATE TABLE alerts (
    id                 uuid PRIMARY KEY,
    organization_id    uuid NOT NULL REFERENCES organizations (id),
    subscription_id    uuid NOT NULL REFERENCES subscriptions (id),
    code               text NOT NULL,
    name               text,
    alert_type         text NOT NULL,
    billable_metric_id uuid REFERENCES billable_metrics (id),
    -- [{"code": text|null, "value": decimal text, "recurring": bool}], values ascending.
    thresholds         jsonb NOT NULL,
    previous_value     numeric NOT NULL DEFAULT 0,
    last_processed_at  timestamptz,
    -- The clock's time, not the transaction's: alerts created at once list in their order.
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);
CREATE UNIQUE INDEX alerts_code ON alerts (subscription_id, code) WHERE deleted_at IS NULL;
CREATE INDEX alerts_due ON alerts (last_processed_at NULLS FIRST) WHERE deleted_at IS NULL;

CREATE TABLE triggered_alerts (
    id                 uuid PRIMARY KEY,
    organization_id    uuid NOT NULL REFERENCES organizations (id),
    alert_id           uuid NOT NULL REFERENCES alerts (id),
    subscription_id    uuid NOT NULL REFERENCES subscriptions (id),
    previous_value     numeric NOT NULL,
    current_value      numeric NOT NULL,
    crossed_thresholds jsonb NOT NULL,
    triggered_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX triggered_alerts_alert ON triggered_alerts (alert_id, triggered_at DESC);

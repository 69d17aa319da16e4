-- Late usage: one row per `late_usage` message of periods-closed (events that arrived after
-- their period closed). `late_key` is unique and the row is inserted in the transaction
-- that applies the message, so a message delivered twice, or a replay of the topic,
-- applies once. `outcome`:
--   'refreshed'  merged into its period's draft invoice (`invoice_id`);
--   'pending'    the period's invoice is finalized, or not written yet: the next invoice
--                of the subscription (of a later period) bills it as adjustment fees;
--   'adjusted'   billed so, on `invoice_id`.
CREATE TABLE late_usage (
    late_key         text PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    subscription_id  uuid NOT NULL,
    period_key       text NOT NULL,
    period_start     timestamptz NOT NULL,
    period_end       timestamptz NOT NULL,
    charges          jsonb NOT NULL,
    outcome          text NOT NULL,
    invoice_id       uuid REFERENCES invoices (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX late_usage_pending ON late_usage (subscription_id, period_start)
    WHERE outcome = 'pending';

-- A draft's coupon uses: each applied coupon's remaining amount and periods before and
-- after the draft took its share, so that a refresh gives the share back (as Lago does)
-- and prices the coupons again.
ALTER TABLE invoices ADD COLUMN coupon_uses jsonb NOT NULL DEFAULT '[]';

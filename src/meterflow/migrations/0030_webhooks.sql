-- Webhooks (Lago's contract): the organization's endpoints, its signing keys, one row per
-- (change, endpoint) written in the transaction of the change it announces (the outbox;
-- its id is the X-Lago-Unique-Key), and every delivery attempt the worker made.
CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    webhook_url      text NOT NULL,
    signature_algo   text NOT NULL DEFAULT 'hmac',
    name             text,
    -- NULL: every webhook type.
    event_types      text[],
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, webhook_url)
);

-- Created on first use: the HMAC secret and the RSA key of the JWT signatures.
CREATE TABLE webhook_keys (
    organization_id  uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    hmac_key         text NOT NULL,
    private_key_pem  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhooks (
    id                   uuid PRIMARY KEY,
    organization_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    webhook_endpoint_id  uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    webhook_type         text NOT NULL,
    object_type          text NOT NULL,
    object_id            uuid NOT NULL,
    -- The body sent; NULL until the worker renders it (changes written by the invoicer's
    -- single statement), then fixed so every retry sends the same bytes.
    payload              json,
    -- pending (to send, or being sent under a lease until next_attempt_at), succeeded, failed
    status               text NOT NULL DEFAULT 'pending',
    attempts             integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    last_http_status     integer,
    last_error           text,
    delivered_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_due ON webhooks (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhooks_listing ON webhooks (organization_id, created_at DESC);

CREATE TABLE webhook_attempts (
    id               bigserial PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer NOT NULL,
    http_status      integer,
    error            text,
    -- succeeded, retrying, failed (no try left)
    outcome          text NOT NULL,
    next_attempt_at  timestamptz
);
CREATE INDEX webhook_attempts_of ON webhook_attempts (webhook_id, attempt);

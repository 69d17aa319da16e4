-- Organizations own every other object; API keys are stored as SHA-256 digests only.
CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'UTC',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key_digest       bytea NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now()
);

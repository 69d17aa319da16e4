-- The web console's users (one organization each), their sessions and failed sign-ins.
-- Passwords are stored as argon2 hashes only; a session is known by the SHA-256 digest of
-- its cookie, so a copy of this table cannot sign anybody in.
CREATE TABLE console_users (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email            text NOT NULL,
    password_hash    text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX console_users_email ON console_users (lower(email));

CREATE TABLE console_sessions (
    token_digest  bytea PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES console_users (id) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

-- Consecutive failed sign-ins per email (whether or not a user has it): each one past the
-- first few makes the next attempt wait longer; a successful sign-in clears the row.
CREATE TABLE console_sign_in_failures (
    email            text PRIMARY KEY,
    failures         integer NOT NULL,
    last_failure_at  timestamptz NOT NULL
);

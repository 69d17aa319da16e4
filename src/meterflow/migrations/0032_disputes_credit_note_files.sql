-- An invoice's lost payment dispute, and the rendered PDF of a credit note (served as an
-- invoice's is, at a URL holding a secret token).
ALTER TABLE invoices ADD COLUMN payment_dispute_lost_at timestamptz;

CREATE TABLE credit_note_files (
    credit_note_id  uuid PRIMARY KEY REFERENCES credit_notes (id) ON DELETE CASCADE,
    token           text NOT NULL UNIQUE,
    pdf             bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

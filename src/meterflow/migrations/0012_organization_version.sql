-- The organization's catalog record version, grown by every change through
-- `PUT /api/v1/organizations` (the first record, at creation, is version 1).
ALTER TABLE organizations ADD COLUMN version integer NOT NULL DEFAULT 1;
